"""A stream's first frame decides its protocol, so it must not decide its fate: an alarm as the first
frame is stored on every transport, and bytes no driver recognises cost only themselves, never the
frames behind them."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from drivers import StreamSniffer, Transport
from drivers import get as get_driver
from relay.journal import Journal, Quarantined
from relay.journal import retry_quarantine as retry
from tests.drivers.test_first_frame_alarms import CASES, PT502_IN1

from .harness import running_relay, wait_until

JUNK = b"HELLO? is anybody there\r\n"


async def send_tcp(port: int, data: bytes) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        with trio.move_on_after(1):  # whatever the device is answered; then the device hangs up
            await stream.receive_some(4096)


def test_the_sniffer_skips_an_unknown_frame_to_the_next_boundary() -> None:
    sniffer = StreamSniffer(Transport.TCP)
    sniffer.receive_data(JUNK + PT502_IN1[:10])
    assert sniffer.recognise() is get_driver("pt502")
    assert sniffer.skipped == JUNK and sniffer.head == PT502_IN1[:10]


def test_the_sniffer_gives_up_after_its_limit() -> None:
    sniffer = StreamSniffer(Transport.TCP)
    sniffer.receive_data(b"z" * 5000)
    assert sniffer.recognise() is None
    sniffer = StreamSniffer(Transport.TCP)
    sniffer.receive_data(b"nothing known;" * 10)
    assert sniffer.recognise(final=True) is None


# A datagram is one frame: junk before an alarm is tried on streams only.
STREAM_CASES = [
    pytest.param(*case, junk, id=f"{case[0]}-{case[1].value}-{'junk-then-alarm' if junk else 'alarm-first'}")
    for case in CASES
    for junk in ([b"", JUNK] if case[1] is Transport.TCP else [b""])
]


@pytest.mark.slow
@pytest.mark.parametrize(("protocol", "transport", "frame", "alarm", "junk"), STREAM_CASES)
async def test_an_alarm_opening_a_stream_is_stored(
    tmp_path: Path, protocol: str, transport: Transport, frame: bytes, alarm: str, junk: bytes
) -> None:
    async with running_relay(tmp_path) as relay:
        if transport is Transport.TCP:
            await send_tcp(relay.port, junk + frame)
        else:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto(frame, ("127.0.0.1", relay.port))
        await wait_until(
            lambda: relay.journal.stats.committed_reports >= 1, timeout=10, what="the alarm stored"
        )
        reports = relay.journal.read_after(0, 10)
        assert [report.protocol for report in reports] == [protocol] * len(reports)
        assert any(alarm in report.document["alarms"] for report in reports)
        quarantined = [row["raw"] for row in relay.journal.quarantine_rows()]
        if junk and not quarantined:  # a framer that skips noise before its start mark (tk103) keeps it
            assert reports[0].raw is not None and reports[0].raw.startswith(junk)
        else:
            assert quarantined == ([junk] if junk else [])


@pytest.mark.slow
async def test_frames_behind_an_unknown_first_frame_are_answered(tmp_path: Path) -> None:
    imei = "868683020419374"
    frames = [f"##,imei:{imei},A;".encode(), f"{imei};".encode()]
    async with running_relay(tmp_path) as relay:
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        async with stream:
            await stream.send_all(JUNK + b"".join(frames))
            answer = b""
            with trio.fail_after(10):
                while answer != b"LOADON":
                    answer += await stream.receive_some(100)
        rows = relay.journal.quarantine_rows()
        assert [row["raw"] for row in rows] == [JUNK]
        assert "no driver recognises these bytes" in rows[0]["reason"]


def test_quarantine_retry_turns_old_refused_pt600_alarm_lines_into_reports(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    journal = Journal.open(tmp_path / "journal.sqlite3")
    received = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    journal.write_now(  # what a relay before this fix quarantined: the line was not recognised
        [
            Quarantined(PT502_IN1, "no driver recognises this stream", "tcp", "10.0.0.7:4000", received),
            Quarantined(PT502_IN1, "no driver recognises this datagram", "udp", "10.0.0.7:4001", received),
        ]
    )
    outcomes = retry(journal, senders={})
    assert [outcome.error for outcome in outcomes] == [None, None]
    reports = journal.read_after(0, 10)
    assert [report.document["alarms"] for report in reports] == [["sos"], ["sos"]]
    assert [report.document["received_at"] for report in reports] == ["2026-11-20T10:00:00Z"] * 2
    assert journal.quarantine_rows() == []
    journal.close()
