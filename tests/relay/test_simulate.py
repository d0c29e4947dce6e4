"""``relay simulate``: its frames decode to what they were built from, its track is drivable, and it drives
a real relay (every protocol, TCP and UDP) whose reports arrive on MQTT; a wrong or missing reply fails it."""

from __future__ import annotations

import base64
import functools
import itertools
import math
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

import drivers
from drivers import Decoded, Report, Transport
from relay.cli._simulate import Plan, Stats, simulate
from relay.cli._simulate_frames import (
    DEPOT,
    OVERSPEED,
    PHOTO_REQUEST,
    SOS,
    TRACKERS,
    Message,
    Reply,
    Track,
    Tracker,
    TrackPoint,
    device_id,
    jpeg_for,
    photo_chunk,
    script,
)
from tests.broker import Mosquitto, Subscriber
from tests.relay.harness import running_relay, wait_until

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]

CASES = [(name, transport) for name, kind in TRACKERS.items() for transport in kind.transports]


def metres(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    north = (lat2 - lat1) * 111_320
    east = (lon2 - lon1) * 111_320 * math.cos(math.radians(lat1))
    return math.hypot(north, east)


class Device:
    """A tracker's frames fed to our own driver, as the relay would feed them."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.session = drivers.get(tracker.protocol).new_session(Transport(tracker.transport))

    def send(self, frame: bytes) -> tuple[list[Report], list[bytes]]:
        if self.tracker.transport == "udp":
            events = self.session.receive_datagram(frame, now=NOW)
        else:
            self.session.receive_data(frame)
            events = self.session.events(now=NOW)
        assert len(events) == 1 and isinstance(events[0], Decoded), events
        return list(events[0].reports), list(events[0].replies)

    def exchange(self, message: Message) -> tuple[list[Report], list[bytes]]:
        """Send ``message``; its expected replies must be exactly the driver's."""
        reports, replies = self.send(message.frame)
        if message.photo is None:
            assert len(replies) == len(message.replies), (message.kind, replies)
            for expected, reply in zip(message.replies, replies, strict=True):
                assert expected.problem(reply) is None, expected.problem(reply)
        return reports, replies


@pytest.mark.parametrize(("protocol", "transport"), CASES)
def test_every_frame_decodes_with_our_driver_to_what_it_was_built_from(protocol: str, transport: str) -> None:
    kind = TRACKERS[protocol]
    tracker = kind(device_id(3, transport, 7, kind.id_digits), transport)
    device = Device(tracker)
    point = Track().at(NOW, 100.0)  # on the fast leg, heading north
    for message in tracker.login(point):
        reports, _ = device.exchange(message)
        assert [report.device_id for report in reports] == [tracker.device_id]
    for alarm in (None, *kind.alarms):
        reports, _ = device.exchange(tracker.report(point, alarm))
        (report,) = reports
        assert report.device_id == tracker.device_id
        assert report.time == point.time
        assert report.lat == pytest.approx(point.lat, abs=2e-6)
        assert report.lon == pytest.approx(point.lon, abs=2e-6)
        assert report.speed_kmh == pytest.approx(point.speed_kmh, abs=0.6)
        assert report.course_deg == pytest.approx(point.course_deg, abs=0.6)
        assert report.alarms == ((alarm,) if alarm else ())
    if (heartbeat := tracker.heartbeat()) is not None:
        reports, replies = device.exchange(heartbeat)
        assert [report.device_id for report in reports] == [tracker.device_id] and replies


def test_the_pt600_photo_goes_over_chunk_by_chunk_as_the_driver_asks() -> None:
    tracker = TRACKERS["pt502"]("5500000007")
    device = Device(tracker)
    jpeg = jpeg_for(tracker.device_id, 1)
    announcement = tracker.photo(Track().at(NOW, 0.0), jpeg)
    assert announcement is not None
    reports, requests = device.exchange(announcement)
    assert reports[0].attributes["photo_size"] == len(jpeg)
    sent = chunks = 0
    while sent < len(jpeg):
        (request,) = requests
        assert PHOTO_REQUEST.problem(request) is None
        chunk, sent = photo_chunk(request, jpeg, sent)
        reports, requests = device.send(chunk)
        chunks += 1
    assert chunks == math.ceil(len(jpeg) / 960) > 1
    (photo,) = reports
    assert photo.event == "photo" and photo.media == jpeg and photo.device_id == tracker.device_id
    assert b"\r\n$POS," in jpeg and jpeg.startswith(b"\xff\xd8") and jpeg.endswith(b"\xff\xd9")


def test_a_camera_serves_only_the_next_bytes_of_its_photo() -> None:
    jpeg = bytes(2000)
    with pytest.raises(ValueError, match="next bytes"):
        photo_chunk(b"#PHD960,960\r\n", jpeg, 0)
    with pytest.raises(ValueError, match="next bytes"):
        photo_chunk(b"#PHD0,2001\r\n", jpeg, 0)
    with pytest.raises(ValueError, match="not a photo chunk request"):
        photo_chunk(b"#PHO\r\n", jpeg, 0)


def test_a_reply_is_cut_from_the_stream_and_a_wrong_one_is_caught_at_its_first_byte() -> None:
    ack = Reply("login reply", b"LOAD")
    assert ack.cut(b"LO") is None and ack.cut(b"LOADON") == 4 and ack.problem(b"LOAD") is None
    assert ack.cut(b"X") == 1  # no need to wait for the rest of a reply that is already wrong
    assert ack.problem(b"X") == "wrong login reply: expected 'LOAD', got 'X'"
    clock = TRACKERS["h02"]("5530000001").report(Track().at(NOW, 0.0)).replies[0]
    assert clock.cut(b"*HQ,5530000001,V4,V1,2026") is None
    assert clock.problem(b"*HQ,5530000001,V4,V1,20261125120000#") is None
    assert clock.problem(b"*HQ,5530000002,V4,V1,20261125120000#") is not None


def test_the_track_is_a_loop_driven_at_each_legs_speed_with_consistent_course_and_time() -> None:
    track = Track()
    seconds = range(math.ceil(track.lap_s) + 1)
    points = [track.at(NOW + timedelta(seconds=second), second) for second in seconds]
    start = track.at(NOW, track.lap_s)
    assert (start.lat, start.lon) == pytest.approx((DEPOT[0], DEPOT[1]))
    for before, after in itertools.pairwise(points):
        assert after.time - before.time == timedelta(seconds=1)
        moved = metres(before.lat, before.lon, after.lat, after.lon)
        # Over a corner part of the second is at the next leg's speed, and the corner is cut.
        assert moved <= max(before.speed_kmh, after.speed_kmh) / 3.6 + 0.01
        assert metres(DEPOT[0], DEPOT[1], after.lat, after.lon) < 1200
        if before.course_deg == after.course_deg:  # the same leg: distance and direction agree
            assert moved == pytest.approx(before.speed_kmh / 3.6, rel=1e-3)
            north = (after.lat - before.lat) * 111_320
            east = (after.lon - before.lon) * 111_320 * math.cos(math.radians(DEPOT[0]))
            assert math.degrees(math.atan2(east, north)) % 360 == pytest.approx(before.course_deg, abs=0.1)
    assert {point.speed_kmh for point in points} == {25.0, 45.0, 68.0, 30.0, 20.0}
    assert 120 < track.lap_s < 400  # a few minutes per lap


def test_the_script_sends_sos_overspeed_heartbeats_and_photos_now_and_then() -> None:
    track = Track()
    kinds: dict[str, list[tuple[int, str, str | None]]] = {}
    for protocol in ("pt502", "gps103"):
        tracker = TRACKERS[protocol](device_id(0, "tcp", 0, 15))
        sent = kinds.setdefault(protocol, [])
        previous: TrackPoint | None = None
        for tick in range(60):
            point = track.at(NOW + timedelta(seconds=tick), 40.0 + tick)
            messages = script(tracker, tick, point, previous)
            sent += [(tick, message.kind, message.alarm) for message in messages]
            previous = point
    gps103 = kinds["gps103"]
    # Ticks are 1 s apart from 40 s into the lap; the 68 km/h leg starts 93.4 s into it (tick 54).
    alarms = [(tick, alarm) for tick, _, alarm in gps103 if alarm]
    assert alarms == [(2, SOS), (27, SOS), (52, SOS), (54, OVERSPEED)]
    assert [tick for tick, kind, _ in gps103 if kind == "heartbeat"] == [1, 11, 21, 31, 41, 51]
    assert [tick for tick, kind, _ in kinds["pt502"] if kind == "photo"] == [1]
    assert not [kind for _, kind, _ in kinds["pt502"] if kind == "heartbeat"]  # the PT-600 has none


async def test_simulate_drives_a_relay_for_every_protocol_over_tcp_and_udp(
    tmp_path: Path, broker: Mosquitto
) -> None:
    subscriber = Subscriber(broker, "relay/#")
    tcp_stats, udp_stats = Stats(), Stats()
    try:
        async with running_relay(tmp_path, broker.url) as relay:
            plans = [
                (Plan(tuple(TRACKERS), "127.0.0.1", relay.port, devices=2, rate=10, duration=1.5), tcp_stats),
                (
                    Plan(
                        tuple(name for name, kind in TRACKERS.items() if "udp" in kind.transports),
                        "127.0.0.1",
                        relay.port,
                        devices=2,
                        rate=10,
                        duration=1.5,
                        transport="udp",
                    ),
                    udp_stats,
                ),
            ]
            async with trio.open_nursery() as nursery:
                for plan, stats in plans:
                    nursery.start_soon(simulate, plan, stats)
            tallies = [*tcp_stats.tallies.values(), *udp_stats.tallies.values()]
            expected = sum(tally.reports for tally in tallies)
            reports = await subscriber.wait_for(expected)
    finally:
        subscriber.close()
    assert tcp_stats.ok and udp_stats.ok, tcp_stats.problems + udp_stats.problems
    assert set(tcp_stats.tallies) == set(TRACKERS)
    assert set(udp_stats.tallies) == {"gps103", "h02", "teltonika", "tk103"}
    unique = {report["id"]: report for report in reports}
    assert len(unique) == expected
    for transport, stats in (("tcp", tcp_stats), ("udp", udp_stats)):
        for protocol, tally in stats.tallies.items():
            mine = [r for r in unique.values() if r["protocol"] == protocol and r["transport"] == transport]
            assert len(mine) == tally.reports > 10 and tally.sent >= 2 * 14  # ~15 ticks in 1.5 s at 10/s
            kind = TRACKERS[protocol]
            index = list(TRACKERS).index(protocol)
            ids = {device_id(index, transport, number, kind.id_digits) for number in (0, 1)}
            assert {r["device_id"] for r in mine} == ids
            positions = [r for r in mine if r["lat"] is not None]
            assert len(positions) >= tally.sent - tally.devices * 3  # all but logins and heartbeats
            for report in positions:
                assert metres(DEPOT[0], DEPOT[1], report["lat"], report["lon"]) < 1200
                assert any(abs(report["speed_kmh"] - leg) < 0.6 for leg in (20, 25, 30, 45, 68))
            assert any(SOS in r["alarms"] for r in mine), protocol
            assert tally.errors == 0 and tally.acked >= 2  # at least the logins or heartbeats
    photos = [r for r in unique.values() if r["event"] == "photo"]
    assert len(photos) == 2 == tcp_stats.tallies["pt502"].photos
    for photo in photos:
        assert base64.b64decode(photo["media"]["base64"]) == jpeg_for(photo["device_id"], 1)


async def test_a_missing_or_wrong_reply_is_an_error() -> None:
    async def wrong(stream: trio.SocketStream) -> None:
        await stream.receive_some(100)
        await stream.send_all(b"NO")
        await trio.sleep(5)

    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep(5)

    async with trio.open_nursery() as nursery:
        ports = []
        for handler in (wrong, silent):
            listeners = await nursery.start(functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
            ports.append(listeners[0].socket.getsockname()[1])
        results = []
        for port in ports:
            stats = Stats()
            plan = Plan(("gt06",), "127.0.0.1", port, rate=10, duration=0.2, reply_timeout=0.3)
            await simulate(plan, stats)
            results.append(stats)
        nursery.cancel_scope.cancel()
    wrong_stats, silent_stats = results
    assert not wrong_stats.ok and wrong_stats.tallies["gt06"].errors == 1
    assert wrong_stats.problems == [
        "gt06/tcp 865550200000006: login: wrong login ack: expected 787805010001d9dc0d0a, got 'NO'"
    ]
    assert not silent_stats.ok
    assert silent_stats.problems == ["gt06/tcp 865550200000006: no login ack within 0.3 s"]


def relay_simulate(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "relay", "simulate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_the_command_prints_a_summary_and_exits_0_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    async with running_relay(tmp_path) as relay:
        to = f"127.0.0.1:{relay.port}"
        timed = relay_simulate("--protocol", "gt06,gps103", "--to", to, "--rate", "5", "--duration", "1")
        endless = relay_simulate("--protocol", "teltonika", "--to", to, "--rate", "5", "--duration", "0")
        # Interrupted once it runs (a SIGINT while a loaded machine still imports kills it instead).
        frames = relay.listener.stats.frames_by_protocol
        await wait_until(lambda: frames[("teltonika", "tcp")] >= 4, 30, "the endless simulator reporting")
        endless.send_signal(signal.SIGINT)
        outputs = [await trio.to_thread.run_sync(process.communicate, 20) for process in (timed, endless)]
    assert (timed.returncode, endless.returncode) == (0, 0), outputs
    out, err = outputs[0]
    assert "simulating 1 device(s) each of gps103, gt06 over tcp" in err
    lines = out.splitlines()
    columns = ["protocol", "via", "devices", "sent", "acked", "errors", "reports", "alarms", "photos"]
    assert lines[0].split() == columns
    assert lines[1].split()[:2] == ["gps103", "tcp"] and lines[2].split()[:2] == ["gt06", "tcp"]
    assert lines[-1] == "ok: every reply came, as the protocols demand"
    out, err = outputs[1]
    assert "stopping" in err
    row = out.splitlines()[1].split()
    assert row[:3] == ["teltonika", "tcp", "1"] and row[5] == "0"  # no errors
    assert int(row[3]) >= 2  # with no duration, it kept reporting until the Ctrl-C


def test_the_command_refuses_a_protocol_without_that_transport_and_fails_without_a_relay() -> None:
    refused = relay_simulate("--protocol", "gt06", "--to", "127.0.0.1:1", "--transport", "udp")
    out, err = refused.communicate(timeout=20)
    assert refused.returncode == 2 and "gt06 devices do not use udp" in err
    nobody = relay_simulate("--protocol", "h02", "--to", "127.0.0.1:1", "--duration", "0.5")
    out, err = nobody.communicate(timeout=20)
    assert nobody.returncode == 1 and "cannot connect to 127.0.0.1:1" in err and "FAILED" in out
