"""Device ids from the field are untrusted: a hostile id must never wedge forwarding, share a topic with
another device, or put control characters into a log line."""

from __future__ import annotations

import io
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import pytest
import trio

from drivers import InvalidDeviceId, Report, check_device_id
from relay.journal import Entry, Journal
from relay.logs import LogfmtFormatter, log_event
from relay.sinks._mqtt import topic_segment
from tests.broker import Mosquitto, Subscriber

from .harness import running_relay, wait_until

HOSTILE = ["x%01y", "x%7Fy", "x%C2%85y", "x%EF%BF%BFy", "x%0D%0Ay", "%20", "a%20b", "x" * 65]


async def http_get(port: int, query: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET /?{query} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(4096):
                answer += chunk
    return answer


@pytest.mark.parametrize("raw", ["x\x01y", "x\x7fy", "x\x85y", "x\uffffy", "a b", "", " ", "é", "x" * 65])
def test_ids_outside_the_safe_set_are_refused_with_a_reason(raw: str) -> None:
    with pytest.raises(InvalidDeviceId, match="device id"):
        check_device_id(raw)
    with pytest.raises(InvalidDeviceId):
        Report(protocol="osmand", device_id=raw)


def test_the_one_normalisation_strips_surrounding_white_space() -> None:
    assert check_device_id(" 865456055519122\r\n") == "865456055519122"
    assert Report(protocol="osmand", device_id="\t7\t").device_id == "7"
    assert check_device_id("x" * 64) == "x" * 64


@pytest.mark.parametrize("device", ["a/b", "a_b", "a%2Fb", "+", "#", "~", "x\x01y", "é", "status"])
def test_topic_segments_are_reversible_and_never_special(device: str) -> None:
    segment = topic_segment(device)
    assert not set(segment) & set("/+#\x00") and segment.isascii() and segment.isprintable()
    assert unquote(segment) == device
    assert segment != topic_segment(None)


def test_ids_that_differ_only_in_special_characters_get_distinct_topics() -> None:
    ids = ["a/b", "a_b", "a+b", "a#b", "a%2Fb", "a%b"]
    assert len({topic_segment(device) for device in ids}) == len(ids)


def test_log_lines_escape_every_control_character() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    logger = logging.getLogger("test.device_ids")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log_event(logger, logging.INFO, "seen", device="x\r\nlevel=error forged\x1b[2J\u202e\x85")
    finally:
        logger.removeHandler(handler)
    line = stream.getvalue()
    assert line.count("\n") == 1 and line.endswith("\n")
    assert not any(char in line[:-1] for char in "\r\x1b\u202e\x85")
    assert r'device="x\r\nlevel\=error' not in line  # '=' is inside quotes, not a forged key
    assert r"\x1b[2J\u202e\x85" in line


@pytest.mark.slow
@pytest.mark.parametrize("query_id", HOSTILE)
async def test_a_hostile_id_is_quarantined_and_forwarding_goes_on(
    tmp_path: Path, broker: Mosquitto, query_id: str
) -> None:
    subscriber = Subscriber(broker, "relay/#")
    try:
        async with running_relay(tmp_path, broker.url) as running:
            answer = await http_get(running.port, f"id={query_id}&lat=52.1&lon=4.3")
            assert answer.startswith(b"HTTP/1.1 400"), answer
            answer = await http_get(running.port, "id=good-1&lat=52.1&lon=4.3")
            assert answer.startswith(b"HTTP/1.1 200"), answer
            reports = await subscriber.wait_for(1)
            assert [report["device_id"] for report in reports] == ["good-1"]
            rows = running.journal.quarantine_rows()
            assert len(rows) == 1 and ("device id" in rows[0]["reason"] or "missing id" in rows[0]["reason"])
            sink = running.sinks[0]
            assert sink.connects == 1  # the broker never dropped the relay
    finally:
        subscriber.close()


@pytest.mark.slow
async def test_a_bad_id_stored_by_an_older_relay_is_published_under_an_escaped_topic(
    tmp_path: Path, broker: Mosquitto
) -> None:
    journal = Journal.open(tmp_path / "journal.sqlite3", site="test-site")
    now = datetime.now(UTC)
    for device in ("x\x01y", "a/b", "a_b"):
        report = Report(protocol="osmand", device_id="placeholder", lat=52.1, lon=4.3)
        object.__setattr__(report, "device_id", device)  # as a relay without the check stored it
        journal.write_now([Entry(report, None, "http", "127.0.0.1:1", now)])
    journal.close()
    with sqlite3.connect(tmp_path / "journal.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM reports WHERE device_id = ?", ("x\x01y",)).fetchone() == (1,)
    subscriber = Subscriber(broker, "relay/#")
    try:
        async with running_relay(tmp_path, broker.url) as running:
            await subscriber.wait_for(3)
            await wait_until(lambda: running.sinks[0].backlog() == 0, what="an empty backlog")
            topics = sorted(topic for topic, _, _ in subscriber.messages if not topic.endswith("/status"))
            assert topics == [
                "relay/test-site/a%2Fb/position",
                "relay/test-site/a_b/position",
                "relay/test-site/x%01y/position",
            ]
            assert running.sinks[0].connects == 1
    finally:
        subscriber.close()
