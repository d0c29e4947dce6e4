"""The bench's code paths, tiny: so ``python -m bench`` keeps working. No figure is checked here —
speed is measured by the bench itself, never by a timed test."""

from __future__ import annotations

import socket
import sqlite3
import sys
from pathlib import Path

import pytest

from bench.decode import VECTORS, driver_fixes, floor_samples, same_fields
from bench.floors import FLOORS
from bench.frames import device
from bench.run import Profile, run, table
from drivers import Transport

pytestmark = pytest.mark.slow


def test_every_simulated_device_is_answered() -> None:
    # device() itself raises when a frame is not decoded to a report with a reply.
    made = [device(index, Transport.TCP) for index in range(8)] + [
        device(index, Transport.UDP) for index in range(6)
    ]
    assert {item.protocol for item in made} == {"gps103", "h02", "tk103", "watch", "teltonika"}
    assert len({item.device_id for item in made if item.transport is Transport.TCP}) == 8


def test_smoke_run_fills_every_figure() -> None:
    results = run(Profile.smoke())
    assert results["ingest"]["reports"] > 0
    assert results["ingest"]["closed"] == 0
    assert results["drain"]["reports"] == Profile.smoke().drain_reports
    assert results["memory"]["connections"] == Profile.smoke().idle_connections
    assert results["wear"]["reports"] > 0
    assert results["startup"]["runs"] == 1
    assert results["floor"]["floor"]["reports"] > 0
    assert results["floor"]["floor_stored"] >= results["floor"]["floor"]["reports"]
    assert results["light"]["reports"] > 0
    for outage in results["peer"]["outages"].values():
        assert outage["relay"]["messages"] == outage["bridge"]["messages"] == Profile.smoke().peer_backlog
    if VECTORS.is_dir():
        assert results["decode"]["gps103"]["frames_per_s"] > 0
        assert results["decode"]["gps103"]["floor"]["vectors"] > 0
    printed = table(results)
    for figure in ("ingest", "trio floor", "light load", "drain", "mosquitto bridge", "memory", "SD wear"):
        assert figure in printed


def test_the_floor_server_stores_and_answers_gps103_frames(tmp_path: Path) -> None:
    from bench.frames import device
    from bench.proc import Relay, free_tcp_udp_port

    port = free_tcp_udp_port()
    database = tmp_path / "floor.sqlite3"
    command = [sys.executable, "-m", "bench.floor", "--port", str(port), "--database", str(database)]
    frames = [device(index, Transport.TCP, only="gps103").frame for index in range(3)]
    with Relay(tmp_path / "unused.toml", port, command=command) as server:
        server.start()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
            for frame in frames:
                connection.sendall(frame)
                assert connection.recv(16) == b"ON"
    stored = sqlite3.connect(database).execute("SELECT device_id, raw FROM reports ORDER BY seq").fetchall()
    assert [(row[0], bytes(row[1])) for row in stored] == [
        (frame.split(b"imei:")[0].decode(), frame[frame.index(b"imei:") :]) for frame in frames
    ]


@pytest.mark.skipif(not VECTORS.is_dir(), reason="no reference vectors")
@pytest.mark.parametrize("protocol", sorted(FLOORS))
def test_each_decode_floor_gives_the_driver_fields_on_the_vectors_it_covers(protocol: str) -> None:
    """The floor does the driver's essential work: on every vector it covers, the same device id,
    time, validity, position, speed and course as the driver; and it covers some of each kind."""
    covered, usable = floor_samples(protocol)
    assert covered, f"the {protocol} floor covers none of its {usable} vectors"
    for sample in covered:
        assert same_fields(driver_fixes(protocol, sample), FLOORS[protocol](sample.data))
    # The bench's own load is one the floors must cover.
    if protocol in ("gps103", "tk103", "h02"):
        made = device(0, Transport.TCP, only=protocol)
        assert FLOORS[protocol](made.frame)[0].device_id == made.device_id


def test_the_proxy_refuses_while_down_and_cuts_open_connections() -> None:
    from bench.peer import Uplink

    with socket.create_server(("127.0.0.1", 0)) as target:
        uplink = Uplink(target.getsockname()[1])
        try:
            client = socket.create_connection(("127.0.0.1", uplink.port), timeout=5)
            server, _ = target.accept()
            client.sendall(b"ping")
            assert server.recv(4) == b"ping"
            uplink.down()
            assert client.recv(4) == b""
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", uplink.port), timeout=5)
            uplink.up()
            socket.create_connection(("127.0.0.1", uplink.port), timeout=5).close()
            client.close()
            server.close()
        finally:
            uplink.close()
