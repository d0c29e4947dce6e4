"""``relay export`` in each format, with its filters, as a user runs it against a journal."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from drivers import Report
from relay.journal import FRAME_EVENT, Entry, Journal
from tests.test_cli import relay

GPX = "{http://www.topografix.com/GPX/1/1}"


def at(hour: int, minute: int = 0, second: int = 0, ms: int = 0) -> datetime:
    return datetime(2026, 11, 20, hour, minute, second, ms * 1000, tzinfo=UTC)


def position(device: str, lat: float, lon: float, **fields: object) -> Report:
    return Report(protocol="gps103", device_id=device, time=at(7), valid=True, lat=lat, lon=lon, **fields)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """Two devices' reports: positions, one heartbeat, one frame kept for passthrough."""
    journal = Journal.open(tmp_path / "journal.sqlite3")
    rows = [
        (position("a", 52.1, 4.3, altitude_m=12.5, alarms=("sos",), attributes={"odometer_m": 100}), at(8)),
        (Report(protocol="gps103", device_id="a", event="heartbeat"), at(8, 0, 0, 500)),
        (position("b", -33.9, 18.4, speed_kmh=30.0), at(9)),
        (Report(protocol="gps103", device_id="b", event=FRAME_EVENT), at(9, 30)),
        (position("a", 52.2, 4.4, attributes={"note": 'says "hi", twice'}), at(10)),
    ]
    journal.write_now([Entry(report, b"raw", "tcp", "peer", when) for report, when in rows])
    journal.close()
    return tmp_path


def export(data_dir: Path, *args: str) -> str:
    result = relay("export", "--data-dir", str(data_dir), *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress counter when stderr is not a terminal
    return result.stdout


def test_jsonl_skips_passthrough_frames_and_filters_by_device_and_time(data_dir: Path) -> None:
    every = [json.loads(line) for line in export(data_dir).splitlines()]
    assert [(r["device_id"], r["event"]) for r in every] == [
        ("a", "position"),
        ("a", "heartbeat"),
        ("b", "position"),
        ("a", "position"),
    ]
    assert every[0]["id"].endswith("-1") and every[0]["received_at"] == "2026-11-20T08:00:00Z"
    # 08:00:00.500 is after 08:00:00 though its stored text sorts before "08:00:00Z".
    window = export(data_dir, "--since", "2026-11-20T08:00:00.200Z", "--until", "2026-11-20T10:00:00Z")
    assert [json.loads(line)["received_at"] for line in window.splitlines()] == [
        "2026-11-20T08:00:00.500Z",
        "2026-11-20T09:00:00Z",
    ]
    only_a = export(data_dir, "--device", "a", "--since", "2026-11-20T08:00:00", "--limit", "2")
    assert [json.loads(line)["event"] for line in only_a.splitlines()] == ["position", "heartbeat"]


def test_csv_has_a_header_and_one_row_per_report_with_attributes_as_json(data_dir: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(export(data_dir, "--format", "csv"))))
    assert [(row["device_id"], row["event"]) for row in rows] == [
        ("a", "position"),
        ("a", "heartbeat"),
        ("b", "position"),
        ("a", "position"),
    ]
    first, heartbeat, second, last = rows
    assert (first["lat"], first["lon"], first["altitude_m"]) == ("52.1", "4.3", "12.5")
    assert json.loads(first["alarms"]) == ["sos"] and json.loads(first["attributes"]) == {"odometer_m": 100}
    assert heartbeat["lat"] == "" and heartbeat["time"] == ""
    assert second["speed_kmh"] == "30.0" and second["received_at"] == "2026-11-20T09:00:00Z"
    assert json.loads(last["attributes"]) == {"note": 'says "hi", twice'}
    limited = list(csv.DictReader(io.StringIO(export(data_dir, "--format", "csv", "--limit", "1"))))
    assert len(limited) == 1


def test_geojson_is_a_feature_collection_of_the_positions(data_dir: Path) -> None:
    collection = json.loads(export(data_dir, "--format", "geojson"))
    assert collection["type"] == "FeatureCollection"
    features = collection["features"]
    assert [feature["geometry"] for feature in features] == [
        {"type": "Point", "coordinates": [4.3, 52.1]},
        {"type": "Point", "coordinates": [18.4, -33.9]},
        {"type": "Point", "coordinates": [4.4, 52.2]},
    ]
    assert features[0]["properties"]["device_id"] == "a" and features[0]["properties"]["alarms"] == ["sos"]
    assert features[1]["properties"]["speed_kmh"] == 30.0
    only_b = json.loads(export(data_dir, "--format", "geojson", "--device", "b"))
    assert [f["properties"]["device_id"] for f in only_b["features"]] == ["b"]
    empty = json.loads(export(data_dir, "--format", "geojson", "--since", "2026-11-21T00:00:00Z"))
    assert empty == {"type": "FeatureCollection", "features": []}


def test_gpx_has_one_track_per_device_with_its_points_in_order(data_dir: Path) -> None:
    root = ET.fromstring(export(data_dir, "--format", "gpx"))
    assert root.tag == f"{GPX}gpx"
    tracks = {
        track.findtext(f"{GPX}name"): [
            (point.get("lat"), point.get("lon"), point.findtext(f"{GPX}time"), point.findtext(f"{GPX}ele"))
            for point in track.iter(f"{GPX}trkpt")
        ]
        for track in root.findall(f"{GPX}trk")
    }
    assert tracks == {
        "a": [
            ("52.1", "4.3", "2026-11-20T07:00:00Z", "12.5"),
            ("52.2", "4.4", "2026-11-20T07:00:00Z", None),
        ],
        "b": [("-33.9", "18.4", "2026-11-20T07:00:00Z", None)],
    }
    # --limit takes the oldest reports, whichever device they belong to.
    first_two = ET.fromstring(export(data_dir, "--format", "gpx", "--limit", "2"))
    assert [track.findtext(f"{GPX}name") for track in first_two.findall(f"{GPX}trk")] == ["a", "b"]


def test_a_device_the_journal_never_saw_is_an_error(data_dir: Path) -> None:
    result = relay("export", "--data-dir", str(data_dir), "--device", "nobody")
    assert result.returncode == 1 and result.stdout == ""
    journal = data_dir / "journal.sqlite3"
    assert result.stderr == f"error: device 'nobody' was never seen by the journal at {journal}\n"
    bad = relay("export", "--data-dir", str(data_dir), "--until", "tomorrow")
    assert bad.returncode == 1 and "--until: expected an ISO 8601 time" in bad.stderr
    missing = relay("export", "--data-dir", str(data_dir / "nowhere"))
    assert missing.returncode == 1 and "no journal at" in missing.stderr


async def test_tail_prints_reports_as_a_running_relay_commits_them(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    import trio

    from tests import devices
    from tests.relay.harness import running_relay

    a, b = "868683020419374", "868683020419375"
    command = [sys.executable, "-m", "relay", "tail", "--data-dir", str(tmp_path)]
    async with running_relay(tmp_path) as running:
        await devices.tcp_exchange(running.port, [devices.gps103_login(a)], replies=1)  # before: not shown
        tails = [
            await trio.lowlevel.open_process(
                [*command, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            for extra in (["--device", a], ["--human"])
        ]
        try:
            readers = [_Lines(process.stdout) for process in tails]
            for process in tails:
                started = await _Lines(process.stderr).next()
                assert started.startswith(f"tail: following {tmp_path / 'journal.sqlite3'} after report 1")
            await devices.tcp_exchange(running.port, [devices.gps103_position(b, 1)], replies=1)
            positions = [devices.gps103_position(a, index) for index in (2, 3)]
            await devices.tcp_exchange(running.port, positions, replies=1)
            shown = [json.loads(await readers[0].next()) for _ in range(2)]
            assert [(r["device_id"], r["time"]) for r in shown] == [(a, devices.iso(2)), (a, devices.iso(3))]
            human = [await readers[1].next() for _ in range(3)]
            expected = [[device, "gps103/tcp", "position"] for device in (b, a, a)]
            assert [line.split()[1:4] for line in human] == expected
            assert human[1].split()[4] == f"{shown[0]['lat']:.6f},{shown[0]['lon']:.6f}"
        finally:
            for process in tails:
                process.send_signal(signal.SIGINT)
            with trio.fail_after(10):
                codes = [await process.wait() for process in tails]
    assert codes == [0, 0]


class _Lines:
    """Text lines from a trio receive stream, each waited for (10 s at most)."""

    def __init__(self, stream: object) -> None:
        self.stream = stream
        self.buffer = b""

    async def next(self) -> str:
        import trio

        with trio.fail_after(10):
            while b"\n" not in self.buffer:
                chunk = await self.stream.receive_some(4096)  # type: ignore[attr-defined]
                assert chunk, f"the stream ended; so far: {self.buffer!r}"
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def test_export_to_a_file_counts_on_the_terminal(data_dir: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "relay", "export", "--data-dir", str(data_dir), "--format", "csv"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=60,
        )
        os.close(terminal)
        shown = b""
        while chunk := _read_or_end(controller):
            shown += chunk
    finally:
        os.close(controller)
    assert result.returncode == 0 and len(result.stdout.splitlines()) == 5  # the header and 4 reports
    assert shown.decode().endswith("\rexport: 4 reports\r\n")  # the terminal turns "\n" into "\r\n"


def _read_or_end(fd: int) -> bytes:
    import os

    try:
        return os.read(fd, 4096)
    except OSError:  # EIO: the other end is closed
        return b""
