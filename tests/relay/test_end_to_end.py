"""A BN-407 over TCP and UDP and a PT-600 over TCP, through the relay, to a real mosquitto."""

from __future__ import annotations

from pathlib import Path

import trio

from tests import devices
from tests.broker import Mosquitto, Subscriber
from tests.relay.harness import running_relay, wait_until

BN407 = "868683020419374"
BN407_UDP = "359710049094643"
PT600 = "11560263"


async def test_trackers_are_answered_and_their_reports_reach_the_broker(
    tmp_path: Path, broker: Mosquitto
) -> None:
    subscriber = Subscriber(broker, "relay/#")
    try:
        async with running_relay(tmp_path, broker.url) as relay:
            tcp = await devices.tcp_exchange(
                relay.port,
                [devices.gps103_login(BN407), devices.gps103_position(BN407, 1), f"{BN407};".encode()],
                replies=1,
            )
            assert tcp == [b"LOAD", b"ON", b"ON"]
            udp = await devices.udp_exchange(
                relay.port, [devices.gps103_login(BN407_UDP), devices.gps103_position(BN407_UDP, 2)]
            )
            assert udp == [b"LOAD", b"ON"]
            stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
            async with stream:
                # A PT-600 long frame: binary header, then two $POS lines in one payload.
                payload = devices.pt502_position(PT600, 3) + devices.pt502_position(PT600, 4, "IN1")
                header = b"\xbf\xfb" + bytes([0]) + (len(payload) + 5).to_bytes(2, "little")
                await stream.send_all(header + payload)
                reports = await subscriber.wait_for(7)
    finally:
        subscriber.close()

    by_topic = {}
    for topic, payload, _ in subscriber.messages:
        by_topic.setdefault(topic, []).append(payload)
    assert by_topic["relay/test-site/status"][0] == b"online"
    positions = {
        (report["device_id"], report["time"]): report for report in reports if report["lat"] is not None
    }
    bn = positions[(BN407, devices.iso(1))]
    assert bn["protocol"] == "gps103" and bn["transport"] == "tcp" and bn["valid"] is True
    assert abs(bn["lat"] - (51 + 1.1234 / 60)) < 1e-6 and bn["lon"] < 0
    assert bn["site"] == "test-site" and bn["id"]
    assert positions[(BN407_UDP, devices.iso(2))]["transport"] == "udp"
    pt = positions[(PT600, devices.iso(4))]
    assert pt["protocol"] == "pt502" and pt["alarms"] == ["sos"] and pt["driver_id"] == "RFID4"
    assert pt["attributes"]["input"] == 2 and pt["attributes"]["adc1"] == 0x1A
    assert pt["speed_kmh"] == round(4 * 1.852, 3)
    events = {(report["device_id"], report["event"]) for report in reports}
    assert (BN407, "login") in events and (BN407, "heartbeat") in events
    topics = {topic for topic, _, _ in subscriber.messages}
    assert f"relay/test-site/{BN407}/position" in topics and f"relay/test-site/{BN407}/event" in topics


async def test_garbage_is_quarantined_and_other_devices_are_unaffected(tmp_path: Path) -> None:
    async with running_relay(tmp_path) as relay:
        garbage = await trio.open_tcp_stream("127.0.0.1", relay.port)
        await garbage.send_all(b"\x16\x03\x01 this is not a tracker protocol at all")
        assert await garbage.receive_some(100) == b""  # closed by the relay
        bad = await trio.open_tcp_stream("127.0.0.1", relay.port)
        await bad.send_all(b"imei:868683020419374,tracker,160929120948,,F,160944.000,A,99xx.1,S,0,W,0.00,0;")
        answers = await devices.tcp_exchange(relay.port, [devices.gps103_position(BN407, 5)], replies=1)
        assert answers == [b"ON"]
        await wait_until(lambda: relay.journal.stats.quarantined >= 2, what="quarantine rows")
        rows = relay.journal.quarantine_rows()
        reasons = {row["reason"] for row in rows}
        assert "no driver recognises this stream" in reasons
        assert any(reason.startswith("gps103: bad message") for reason in reasons)
        assert all(row["peer"].startswith("127.0.0.1:") and row["raw"] for row in rows)
        await bad.aclose()
        await garbage.aclose()


async def test_a_device_is_answered_only_after_its_report_is_committed(tmp_path: Path) -> None:
    async with running_relay(tmp_path) as relay:
        committed_at_reply = []
        for index in range(20):
            await devices.tcp_exchange(relay.port, [devices.gps103_position(BN407, index)], replies=1)
            committed_at_reply.append(relay.journal.stats.committed_reports)
        assert committed_at_reply == list(range(1, 21))


async def test_reports_received_before_the_clock_is_set_are_kept_and_marked(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    async with running_relay(tmp_path) as relay:
        relay.listener.ingest.now = lambda: datetime(1970, 1, 1, 0, 0, 42, tzinfo=UTC)  # a Pi without RTC
        assert await devices.tcp_exchange(relay.port, [devices.gps103_position(BN407, 1)], replies=1) == [
            b"ON"
        ]
        (report,) = relay.journal.read_after(0, 10)
    assert report.document["attributes"]["clock_unsynced"] is True
    assert report.document["received_at"] == "1970-01-01T00:00:42Z"
    assert report.document["time"] == devices.iso(1)  # the tracker's own GPS time is untouched


async def test_each_frame_is_stored_with_the_exact_bytes_received(tmp_path: Path) -> None:
    gps103 = [devices.gps103_login(BN407) + b"\r\n", devices.gps103_position(BN407, 2)]
    pt502 = devices.pt502_position(PT600, 3) + devices.pt502_position(PT600, 4)
    header = b"\xbf\xfb\x00" + (len(pt502) + 5).to_bytes(2, "little")
    async with running_relay(tmp_path) as relay:
        await devices.tcp_exchange(relay.port, gps103, replies=1)
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        async with stream:
            for byte in header + pt502:  # one byte per segment: the split must not matter
                await stream.send_all(bytes([byte]))
            await wait_until(lambda: relay.journal.stats.committed_reports == 4, what="four reports")
        raws = [report.raw for report in relay.journal.read_after(0, 10)]
    assert raws[:2] == gps103
    # Byte by byte, the final LF arrives after its line was cut at CR: it waits for the next frame.
    assert b"".join(raws[2:]) in (header + pt502, header + pt502[:-1]) and raws[2].startswith(header)
