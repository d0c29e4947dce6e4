"""One relay port takes every protocol at once: trackers over TCP, UDP and HTTP, side by side."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from tests import vectors
from tests.relay.harness import running_relay, wait_until

#: Per protocol, how many position frames each simulated device sends.
FRAMES_PER_PROTOCOL = 6


def position_rows(protocol: str, transport: str) -> list[vectors.Vector]:
    """Rows that agree with their reference and decode to a position (Teltonika's TCP rows assert
    none, so for those a decoded position is enough), plus the login a session must start with."""
    rows = []
    login = None
    for vector in vectors.load(protocol):
        if (
            vector.row["transport"] != transport
            or vector.row.get("device_model")
            or vector.row.get("decoder_option")
        ):
            continue
        out = vectors.decode(vector)
        if vectors.mismatches(vector, out):
            continue
        if any(report["event"] == "login" for report in out["reports"]):
            login = login or vector
        elif any(report["lat"] is not None for report in out["reports"]):
            rows.append(vector)
    rows = rows[:FRAMES_PER_PROTOCOL]
    return [login, *rows] if login is not None and protocol in ("teltonika", "gt06") else rows


async def tcp_device(port: int, rows: list[vectors.Vector], replies: dict[str, list[bytes]]) -> None:
    """One connection per frame list; all of a protocol's frames in order, answers collected."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        for row in rows:
            for frame in row.frames():
                await stream.send_all(
                    frame
                    if frame.endswith((b";", b"\n", b")", b"]", b"#")) or row.row["encoding"] == "hex"
                    else frame + _delimiter(row)
                )
            expected = row.row.get("reply") or row.row.get("reply_derived")
            if expected:
                with trio.fail_after(10):
                    answer = await stream.receive_some(4096)
                replies.setdefault(row.id, []).append(answer)


def _delimiter(row: vectors.Vector) -> bytes:
    return {"gps103": b";", "pt502": b"\r\n"}.get(row.row["protocol"], b"")


async def udp_device(port: int, rows: list[vectors.Vector], replies: dict[str, list[bytes]]) -> None:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.bind(("127.0.0.1", 0))
        for row in rows:
            await sock.sendto(row.frames()[0], ("127.0.0.1", port))
            expected = row.row.get("reply") or row.row.get("reply_derived")
            if expected:
                with trio.fail_after(10):
                    answer, _ = await sock.recvfrom(4096)
                replies.setdefault(row.id, []).append(answer)


async def test_all_protocols_at_once_on_one_port(tmp_path: Path) -> None:
    tcp = {
        name: position_rows(name, "tcp")
        for name in ("pt502", "gps103", "gt06", "h02", "teltonika", "watch", "tk103")
    }
    udp = position_rows("teltonika", "udp")
    http = position_rows("osmand", "http")
    assert all(tcp.values()) and udp and http
    replies: dict[str, list[bytes]] = {}
    async with running_relay(tmp_path) as relay:
        async with trio.open_nursery() as nursery:
            for rows in tcp.values():
                nursery.start_soon(tcp_device, relay.port, rows, replies)
            nursery.start_soon(udp_device, relay.port, udp, replies)
            for row in http:  # a phone app: one HTTP request per connection
                nursery.start_soon(tcp_device, relay.port, [row], replies)
        wanted = {
            "pt502": {"tcp"},
            "gps103": {"tcp"},
            "gt06": {"tcp"},
            "h02": {"tcp"},
            "teltonika": {"tcp", "udp"},
            "watch": {"tcp"},
            "tk103": {"tcp"},
            "osmand": {"tcp"},
        }

        def transports_seen() -> dict[str, set[str]]:
            seen: dict[str, set[str]] = {}
            for report in relay.journal.read_after(0, 10_000):
                if report.has_position:
                    seen.setdefault(report.protocol, set()).add(report.transport)
            return seen

        await wait_until(lambda: transports_seen() == wanted, what="a position from every protocol")
        assert relay.journal.stats.quarantined == 0, relay.journal.quarantine_rows()

    for rows in [*tcp.values(), udp, http]:
        for row in rows:
            expected = row.row.get("reply") or row.row.get("reply_derived")
            if expected:
                assert bytes.fromhex(expected) in b"".join(replies[row.id]), row.id
    for row in http:
        assert b"".join(replies.get(row.id, [b""])).startswith(b"HTTP/1.1 200 OK") or not row.row.get("reply")


async def test_any_free_port_is_one_free_for_both_tcp_and_udp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", 0))
    udp_taken = taken.getsockname()[1]
    real = trio.open_tcp_listeners
    asked: list[int] = []

    async def first_on_the_taken_port(port: int, *, host: str | None = None) -> list[trio.SocketListener]:
        asked.append(port)
        return await real(udp_taken if len(asked) == 1 else port, host=host)

    monkeypatch.setattr(trio, "open_tcp_listeners", first_on_the_taken_port)
    try:
        async with running_relay(tmp_path) as relay:
            assert relay.port != udp_taken and asked == [0, 0]
    finally:
        taken.close()
