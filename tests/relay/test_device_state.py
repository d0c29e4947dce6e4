"""Each device's live state: what ``relay status`` shows is the device's newest report and fix at once,
and still after the relay stopped; without a config it shows the sinks the journal knows."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from drivers import Report
from relay.cli import main
from relay.journal import Entry
from relay.journal._devices import LiveDevices
from tests import devices
from tests.broker import Mosquitto
from tests.relay.test_crash import RelayProcess

IMEI = "868683020419374"


async def login_then_position(port: int, index: int) -> None:
    with trio.fail_after(20):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(devices.gps103_login(IMEI))
            assert await stream.receive_some(16) == b"LOAD"
            await stream.send_all(devices.gps103_position(IMEI, index))
            assert await stream.receive_some(16) == b"ON"


def status(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    capsys.readouterr()
    assert main(["status", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


async def test_a_login_then_a_position_is_the_last_report_and_fix_at_once_and_after_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    relay = RelayProcess(tmp_path)
    relay.start()
    try:
        await login_then_position(relay.port, 7)
        (device,) = status(capsys, "--config", str(relay.config))["devices"]
        assert (device["device_id"], device["last_event"], device["last_fix"]) == (
            IMEI,
            "position",
            devices.iso(7),
        )
        relay.stop()
    finally:
        relay.kill()
    # The row itself, written at shutdown (not only made up from the newest reports by `relay status`).
    with sqlite3.connect(relay.data / "journal.sqlite3") as db:
        row = db.execute(
            "SELECT last_event, last_time, last_lat FROM devices WHERE device_id = ?", (IMEI,)
        ).fetchone()
    assert row[0] == "position" and row[1] == devices.iso(7) and row[2] is not None
    (device,) = status(capsys, "--config", str(relay.config))["devices"]
    assert (device["last_event"], device["last_fix"]) == ("position", devices.iso(7))
    assert main(["status", "--config", str(relay.config)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if IMEI in line)
    assert "position" in line and devices.iso(7) in line


async def test_relay_status_without_a_config_shows_the_sinks_of_the_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broker = Mosquitto(tmp_path)  # never started: the reports wait in the journal
    relay = RelayProcess(tmp_path, broker)
    relay.start()
    try:
        await login_then_position(relay.port, 1)
        relay.stop()
    finally:
        relay.kill()
    found = status(capsys, "--data-dir", str(relay.data))
    assert [(sink["sink"], sink["pending"]) for sink in found["sinks"]] == [("broker", 2)]
    assert main(["status", "--data-dir", str(relay.data)]) == 0
    out = capsys.readouterr().out
    assert "sink broker: backlog 2" in out and "store only" not in out


async def test_a_device_silent_past_its_limit_across_a_restart_gets_one_device_offline(
    tmp_path: Path,
) -> None:
    from tests.broker import Subscriber

    broker = Mosquitto(tmp_path)
    broker.start()
    registry = f'[[devices]]\nid = "{IMEI}"\nname = "bike 1"\noffline_after_s = 1\n'
    relay = RelayProcess(tmp_path, broker, extra=registry)
    subscriber = Subscriber(broker, "relay/crash/#")
    try:
        relay.start()
        await login_then_position(relay.port, 3)
        events = [report["event"] for report in await subscriber.wait_for(3)]
        assert events == ["deviceOnline", "login", "position"]
        relay.stop()  # the silence goes on while the relay is down
        await trio.sleep(1.5)
        relay.start()
        reports = await subscriber.wait_for(4)
        assert reports[3]["event"] == "deviceOffline" and reports[3]["device_id"] == IMEI
        relay.stop()
        relay.start()  # already offline: not published again
        await trio.sleep(2.5)
        assert [report["event"] for report in subscriber.reports()].count("deviceOffline") == 1
    finally:
        relay.kill()
        subscriber.close()
        broker.stop()


async def test_relay_devices_joins_the_registry_and_the_live_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = f'[[devices]]\nid = "{IMEI}"\nname = "bike 1"\n[[devices]]\nid = "4711"\nname = "bike 2"\n'
    relay = RelayProcess(tmp_path, extra=registry)
    relay.start()
    try:
        await login_then_position(relay.port, 5)
    finally:
        relay.stop()
        relay.kill()
    capsys.readouterr()
    assert main(["devices", "show", IMEI, "--json", "--config", str(relay.config)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["registry"]["name"] == "bike 1" and shown["state"]["last_event"] == "position"
    assert main(["devices", "list", "--config", str(relay.config)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any("bike 1" in line and devices.iso(5) in line for line in lines)
    assert any("bike 2" in line and "never seen" in line for line in lines)
    assert main(["devices", "show", "nope", "--config", str(relay.config)]) == 1
    # A technician watching the log sees the tracker arrive and leave, at info level.
    log = relay.log.read_text()
    assert f"event=device_recognised device={IMEI} protocol=gps103 transport=tcp" in log
    assert f"event=device_disconnected device={IMEI}" in log


def test_check_config_names_duplicate_devices_and_bad_time_zones(tmp_path: Path) -> None:
    from relay.config import ConfigError, load

    path = tmp_path / "relay.toml"
    path.write_text(
        '[[devices]]\nid = "1"\nphone = "+1 555 123"\n[[devices]]\nid = "1"\n'
        '[[devices]]\nid = "2"\nphone = "+1555123"\ntimezone = "Mars/Olympus"\n'
    )
    with pytest.raises(ConfigError) as raised:
        load(path)
    found = {(problem.key, problem.found) for problem in raised.value.problems}
    assert ("devices[1].id", "'1'") in found and ("devices[2].timezone", "'Mars/Olympus'") in found
    assert ("devices[2].phone", "'+1555123'") in found
    assert all(problem.file == str(path) for problem in raised.value.problems)


def test_only_a_new_login_frame_is_written_at_once() -> None:
    """A device that sends the same login at every connect does not rewrite its row each time (SD
    wear); a changed login frame (what a passthrough upstream replays) is written in its commit."""
    live = LiveDevices()
    now = datetime.now(UTC)

    def login(raw: bytes, seq: int) -> list[tuple]:
        entry = Entry(Report(protocol="gps103", device_id=IMEI, event="login"), raw, "tcp", "p", now)
        changes = live.changes([entry], seq)
        rows, flushed = live.rows_due(changes, 1000.0 + seq)
        live.apply(changes, flushed, 1000.0 + seq)
        return rows

    assert len(login(b"##,imei:1,A;", 1)) == 1  # new device: written at once (and a first flush)
    assert login(b"##,imei:1,A;", 2) == []  # the same frame again: only in the 10 s flush
    assert [row[15] for row in login(b"##,imei:1,B;", 3)] == [b"##,imei:1,B;"]
    assert live.get(IMEI).login_raw == b"##,imei:1,B;"
