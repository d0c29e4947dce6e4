"""Sinks against servers that misbehave: huge answers, trickled answers, a broker that never
acknowledges or drops the relay after each publish, and credentials in sink URLs (used, never logged)."""

from __future__ import annotations

import base64
import itertools
import logging
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from relay.config import parse, redact_url
from relay.errors import ConfigError
from relay.logs import LogfmtFormatter
from relay.sinks._http import ANSWER_CHARS
from tests import devices
from tests.broker import Mosquitto, Subscriber, free_port
from tests.http_server import RecordingServer, Request
from tests.relay.harness import relay_config, running_relay, wait_until
from tests.relay.test_http_sink import dead_letters, http_sink, reports_of
from tests.relay.test_osmand_sink import osmand_sink

IMEIS = [f"86868302{index:07d}" for index in range(3)]


async def send_positions(port: int, per_device: int) -> int:
    """``per_device`` gps103 positions from each of IMEIS (answered by the relay); returns the total."""
    async with trio.open_nursery() as nursery:
        for imei in IMEIS:
            frames = [devices.gps103_position(imei, n) for n in range(per_device)]
            nursery.start_soon(partial(devices.tcp_exchange, port, frames, replies=1))
    return per_device * len(IMEIS)


def mqtt_sink(url: str, **settings: Any) -> dict[str, Any]:
    return {"name": "broker", "type": "mqtt", "url": url, "topic_prefix": "relay/test-site", **settings}


def logged_lines(records: list[logging.LogRecord]) -> str:
    """The log as the relay writes it (logfmt, with every field, not only the message)."""
    formatter = LogfmtFormatter()
    return "\n".join(formatter.format(record) for record in records)


# -- a broker that never acknowledges ------------------------------------------------------------


class SilentBroker:
    """A fake MQTT 3.1.1 broker on loopback: CONNACKs every CONNECT, answers PINGREQ, records every
    PUBLISH and never sends a PUBACK. With ``hang_up_on_publish`` it closes the connection on the first
    PUBLISH instead; with ``answer_pings=False`` it leaves PINGREQs unanswered too. (mosquitto cannot be
    told to withhold PUBACKs.)"""

    def __init__(self, port: int, *, hang_up_on_publish: bool = False, answer_pings: bool = True) -> None:
        self.port = port
        self.hang_up_on_publish = hang_up_on_publish
        self.answer_pings = answer_pings
        self.pings = 0
        #: (client id, trio time) of every CONNECT.
        self.connects: list[tuple[str, float]] = []
        #: (connection number, topic, payload) of every PUBLISH.
        self.publishes: list[tuple[int, str, bytes]] = []

    def relay_connects(self) -> list[float]:
        return [when for client_id, when in self.connects if client_id.startswith("relay-")]

    def report_publishes(self) -> list[tuple[int, bytes]]:
        return [(number, payload) for number, topic, payload in self.publishes if topic.endswith("position")]

    async def serve(
        self, *, task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.CancelScope() as scope:
            listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._connection, listeners)
                task_status.started(scope)

    async def _connection(self, stream: trio.SocketStream) -> None:
        reader = _PacketReader(stream)
        number = len(self.connects)
        async with stream:
            while (packet := await reader.packet()) is not None:
                kind, flags, body = packet
                if kind == 1:  # CONNECT: protocol name, level, flags, keepalive, then the client id
                    assert body[2:6] == b"MQTT" and body[6] == 4, "MQTT 3.1.1 expected"
                    length = int.from_bytes(body[10:12], "big")
                    self.connects.append((body[12 : 12 + length].decode(), trio.current_time()))
                    number = len(self.connects)
                    await stream.send_all(b"\x20\x02\x00\x00")  # CONNACK, accepted
                elif kind == 3:  # PUBLISH: topic, packet id (QoS > 0), payload
                    length = int.from_bytes(body[:2], "big")
                    topic = body[2 : 2 + length].decode()
                    start = 2 + length + (2 if flags & 0x06 else 0)
                    self.publishes.append((number, topic, body[start:]))
                    if self.hang_up_on_publish:
                        return
                elif kind == 12:  # PINGREQ
                    self.pings += 1
                    if self.answer_pings:
                        await stream.send_all(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    return


class _PacketReader:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def _need(self, count: int) -> bool:
        while len(self.buffer) < count:
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:
                return False
            if not data:
                return False
            self.buffer += data
        return True

    async def packet(self) -> tuple[int, int, bytes] | None:
        """(packet type, flags, body) of the next control packet, or None at the end of the stream."""
        if not await self._need(2):
            return None
        length, multiplier, index = 0, 1, 1
        while True:  # the remaining length: 7 bits a byte, least significant first
            if not await self._need(index + 1):
                return None
            byte = self.buffer[index]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            index += 1
            if not byte & 0x80:
                break
        if not await self._need(index + length):
            return None
        first = self.buffer[0]
        body = bytes(self.buffer[index : index + length])
        del self.buffer[: index + length]
        return first >> 4, first & 0x0F, body


def check_in_order(reports: list[dict[str, Any]], per_device: int) -> None:
    arrival: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for report in reports:  # arrival order, a duplicate after the first ignored
        if report["id"] not in seen:
            seen.add(report["id"])
            arrival[report["device_id"]].append(report["time"])
    assert {device: len(times) for device, times in arrival.items()} == dict.fromkeys(IMEIS, per_device)
    for device, times in arrival.items():
        assert times == sorted(times), f"{device} arrived out of order"


async def test_an_idle_connection_pings_and_a_broker_that_stops_answering_is_dropped(tmp_path: Path) -> None:
    """With nothing to send, the sink sends a PINGREQ each keepalive; one left unanswered for a
    keepalive drops the connection, and the sink connects again."""
    silent = SilentBroker(free_port(), answer_pings=False)
    sink = mqtt_sink(f"mqtt://127.0.0.1:{silent.port}", keepalive_s=5, retry_min_s=0.2, retry_max_s=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(silent.serve)
        async with running_relay(tmp_path / "relay", sinks=[sink]) as relay:
            mqtt = relay.sinks[0]
            await wait_until(lambda: mqtt.connected, what="connected")
            connected = trio.current_time()
            await wait_until(lambda: silent.pings >= 1, timeout=8, what="a PINGREQ within a keepalive")
            await wait_until(lambda: mqtt.last_error is not None, timeout=8, what="the dead broker dropped")
            assert "keepalive failed" in mqtt.last_error
            assert trio.current_time() - connected >= 9.5  # the ping's answer had its whole keepalive
            await wait_until(lambda: len(silent.relay_connects()) >= 2, timeout=5, what="connected again")
        nursery.cancel_scope.cancel()


async def test_a_broker_that_never_acknowledges_is_dropped_and_the_window_sent_again(tmp_path: Path) -> None:
    # A persistent subscriber on the real broker first, so it gets what is published once the real
    # broker takes over the port from the silent one.
    broker = Mosquitto(tmp_path, persistence=True)
    broker.start()
    subscriber = Subscriber(broker, "relay/#", persistent=True)
    broker.wait_saved()
    broker.stop()
    silent = SilentBroker(broker.port)
    sink = mqtt_sink(broker.url, puback_timeout_s=1, inflight=20, retry_min_s=0.5, retry_max_s=1)
    try:
        async with trio.open_nursery() as nursery:
            async with running_relay(tmp_path / "relay", sinks=[sink]) as relay:
                mqtt = relay.sinks[0]
                total = await send_positions(relay.port, 10)  # a backlog, then a broker to take it
                silent_scope = await nursery.start(silent.serve)
                await wait_until(lambda: len(silent.report_publishes()) >= 20, what="a window published")
                assert mqtt.connected and mqtt.acknowledged == 0
                assert mqtt.last_delivery is None

                await wait_until(lambda: not mqtt.connected, timeout=5, what="the stalled broker dropped")
                assert mqtt.puback_timeouts >= 1
                assert "PUBACK" in (mqtt.last_error or "")
                def windows() -> list[list[bytes]]:
                    by_connection: dict[int, list[bytes]] = defaultdict(list)
                    for number, payload in silent.report_publishes():
                        by_connection[number].append(payload)
                    return list(by_connection.values())

                def sent_again() -> bool:
                    return len(windows()) >= 2 and len(windows()[1]) >= len(windows()[0])

                await wait_until(sent_again, what="the window sent again on a new connection")
                first, again = windows()[:2]
                assert len(first) >= 15 and first == again  # the same reports, in the same order

                silent_scope.cancel()
                broker.start()
                await wait_until(lambda: mqtt.acknowledged >= total, timeout=30, what="every report PUBACKed")
                assert mqtt.connected and mqtt.last_delivery is not None
                reports = await subscriber.wait_for(total)
            nursery.cancel_scope.cancel()
    finally:
        subscriber.close()
        broker.stop()
    check_in_order(reports, 10)


async def test_reconnects_slow_down_while_no_connection_gets_a_report_acknowledged(tmp_path: Path) -> None:
    silent = SilentBroker(free_port(), hang_up_on_publish=True)
    sink = mqtt_sink(f"mqtt://127.0.0.1:{silent.port}", retry_min_s=0.05, retry_max_s=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(silent.serve)
        async with running_relay(tmp_path / "relay", sinks=[sink]) as relay:
            await send_positions(relay.port, 1)
            await wait_until(lambda: len(silent.relay_connects()) >= 9, timeout=40, what="nine connections")
            assert relay.sinks[0].acknowledged == 0
        nursery.cancel_scope.cancel()
    connects = silent.relay_connects()
    intervals = [later - earlier for earlier, later in itertools.pairwise(connects)]
    # Reset on every CONNACK the backoff never passes 2 * retry_min_s (0.1 s); growing, it reaches
    # retry_max_s: one of the later waits is far longer than a reset backoff could be.
    assert max(intervals[3:8]) > 0.3, intervals


async def test_http_retries_slow_down_until_a_2xx_also_when_live_first(tmp_path: Path) -> None:
    failed_at: list[float] = []

    def failing(request: Request) -> tuple[int, bytes]:
        failed_at.append(trio.current_time())
        return 503, b"maintenance"

    server = RecordingServer(failing)
    sink = http_sink(server.url, drain="live_first", retry_min_s=0.05, retry_max_s=2)
    async with trio.open_nursery() as nursery:
        await server.start(nursery)
        async with running_relay(tmp_path / "relay", sinks=[sink]) as relay:
            await send_positions(relay.port, 1)
            await wait_until(lambda: len(failed_at) >= 9, timeout=40, what="nine attempts")
            server.handler = None  # 200 from now on
            await wait_until(lambda: relay.sinks[0].acknowledged >= 3, timeout=10, what="the delivery")
            assert relay.sinks[0].poster.failures == 0
        nursery.cancel_scope.cancel()
    intervals = [later - earlier for earlier, later in itertools.pairwise(failed_at)]
    assert max(intervals[3:8]) > 0.3, intervals


# -- answers too big or too slow -----------------------------------------------------------------


async def test_a_huge_error_answer_is_read_only_in_part(tmp_path: Path) -> None:
    server = RecordingServer()
    server.mode = "huge"
    server.huge_bytes = 64 * 1024 * 1024
    async with trio.open_nursery() as nursery:
        await server.start(nursery)
        async with running_relay(tmp_path / "relay", sinks=[http_sink(server.url)]) as relay:
            http = relay.sinks[0]
            total = await send_positions(relay.port, 2)
            await wait_until(lambda: http.stats.retries >= 2, what="two huge answers")
            huge_answers = len(server.requests)
            assert http.answers_cut >= 2
            assert (http.last_error or "").startswith("HTTP 500: xxxx")
            server.mode = "ok"
            await wait_until(lambda: http.acknowledged >= total, what="the delivery after the huge answers")
            statistics = relay.statistics()
        nursery.cancel_scope.cancel()
    # The relay hung up after its excerpt: the server could push no more than the sockets' buffers.
    assert server.huge_sent < huge_answers * 16 * 1024 * 1024
    assert statistics["sink_central_answers_cut"] >= 2
    assert len({report["id"] for report in reports_of(server.accepted)}) == total


async def test_a_huge_refusal_is_parked_with_an_excerpt(tmp_path: Path) -> None:
    server = RecordingServer(lambda request: (400, b"no " * 10_000_000))
    async with trio.open_nursery() as nursery:
        await server.start(nursery)
        async with running_relay(tmp_path / "relay", sinks=[http_sink(server.url)]) as relay:
            http = relay.sinks[0]
            total = await send_positions(relay.port, 1)
            await wait_until(lambda: http.acknowledged >= total, what="the batch parked")
            assert http.stats.dead_lettered == total and http.answers_cut >= 1
        nursery.cancel_scope.cancel()
    (letter,) = dead_letters(relay.config.database)
    assert letter["status"] == 400 and letter["answer"] == ("no " * 1000)[:ANSWER_CHARS]


@pytest.mark.parametrize("kind", ["http", "osmand"])
async def test_a_trickling_server_is_given_up_on_at_the_request_deadline(tmp_path: Path, kind: str) -> None:
    server = RecordingServer()
    server.mode = "trickle"
    server.trickle_s = 0.1  # each byte well within timeout_s (0.5 s): only a whole-request deadline helps
    make = http_sink if kind == "http" else osmand_sink
    sink = make(server.url, request_deadline_s=1.0)
    async with trio.open_nursery() as nursery:
        await server.start(nursery)
        async with running_relay(tmp_path / "relay", sinks=[sink]) as relay:
            posting = relay.sinks[0]
            started = trio.current_time()
            total = await send_positions(relay.port, 1)
            await wait_until(lambda: posting.deadlines >= 1, timeout=10, what="the deadline")
            assert 1.0 <= trio.current_time() - started < 5
            assert "request_deadline_s" in (posting.last_error or "") and not posting.connected
            server.mode = "ok"
            await wait_until(lambda: posting.acknowledged >= total, what="the delivery after the deadline")
            assert posting.last_delivery is not None
        nursery.cancel_scope.cancel()


# -- credentials in URLs -------------------------------------------------------------------------


async def test_mqtt_url_credentials_authenticate_and_are_never_logged(tmp_path: Path, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    broker = Mosquitto(tmp_path, users={"relay": "secret"})
    broker.start()
    try:
        good = f"mqtt://relay:secret@127.0.0.1:{broker.port}"
        async with running_relay(tmp_path / "relay", sinks=[mqtt_sink(good)]) as relay:
            total = await send_positions(relay.port, 2)
            await wait_until(lambda: relay.sinks[0].acknowledged >= total, what="delivery as the user")
        wrong = f"mqtt://relay:secret-not@127.0.0.1:{broker.port}"
        sink = mqtt_sink(wrong, retry_min_s=0.05, retry_max_s=0.1)
        async with running_relay(tmp_path / "refused", sinks=[sink]) as relay:
            await wait_until(lambda: relay.sinks[0].last_error is not None, what="the refusal")
            await wait_until(lambda: "mqtt_disconnected" in caplog.text, what="the refusal logged")
            assert not relay.sinks[0].connected
            assert "refused" in relay.sinks[0].last_error
    finally:
        broker.stop()
    log = logged_lines(caplog.records)
    assert "url=mqtt://relay:***@127.0.0.1" in log
    assert "secret" not in log


async def test_http_url_credentials_go_as_basic_auth_and_are_never_logged(
    tmp_path: Path, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    server = RecordingServer()
    server.mode = "500"
    url = f"http://relay:se%40cret@127.0.0.1:{server.port}/api"
    async with trio.open_nursery() as nursery:
        await server.start(nursery)
        async with running_relay(tmp_path / "relay", sinks=[http_sink(url)]) as relay:
            total = await send_positions(relay.port, 1)
            await wait_until(lambda: relay.sinks[0].stats.retries >= 1, what="a retry logged")
            server.mode = "ok"
            await wait_until(lambda: relay.sinks[0].acknowledged >= total, what="the delivery")
        nursery.cancel_scope.cancel()
    expected = "Basic " + base64.b64encode(b"relay:se@cret").decode()
    assert {request.headers.get("authorization") for request in server.requests} == {expected}
    assert {request.target for request in server.requests} == {"/api"}
    log = logged_lines(caplog.records)
    assert "event=forwarding" in log and "event=http_retry" in log
    assert "url=http://relay:***@127.0.0.1" in log
    assert "cret" not in log


def test_url_credentials_are_decoded_and_not_given_twice() -> None:
    def sink_config(**sink: Any) -> dict[str, Any]:
        return relay_config(Path("/tmp/unused"), sinks=[{"name": "s", **sink}])

    config = parse(sink_config(type="mqtt", url="mqtt://us%40er:p%3Ass@broker:1884"))
    settings = config.sinks[0]
    assert (settings.username, settings.password) == ("us@er", "p:ss")
    assert (settings.host, settings.port) == ("broker", 1884)
    assert settings.target == "mqtt://us%40er:***@broker:1884"

    twice = [
        {"type": "mqtt", "url": "mqtt://u:p@broker", "username": "v"},
        {"type": "mqtt", "url": "mqtt://u:p@broker", "password": "q"},
        {"type": "http", "url": "https://u:p@central/api", "token": "t"},
        {"type": "osmand", "url": "https://u:p@traccar", "headers": {"authorization": "Basic x"}},
    ]
    for sink in twice:
        with pytest.raises(ConfigError) as raised:
            parse(sink_config(**sink))
        assert "credentials in the URL or in" in str(raised.value), sink

    with pytest.raises(ConfigError) as raised:
        parse(sink_config(type="mqtt", url="htp://user:hunter2@broker"))
    assert "hunter2" not in str(raised.value) and "htp://user:***@broker" in str(raised.value)


def test_redact_url_hides_passwords_and_lone_user_names() -> None:
    assert redact_url("mqtts://relay:s3cr%2Ft@host:8883") == "mqtts://relay:***@host:8883"
    # A user name alone may well be a token (some brokers take one there): hidden too.
    assert redact_url("https://token@host/api?x=a@b") == "https://***@host/api?x=a@b"
    assert redact_url("https://u:p@w@host:bad/x") == "https://u:***@host:bad/x"
    assert redact_url("http://host/path?user=a:b@c") == "http://host/path?user=a:b@c"
    assert redact_url("not a url") == "not a url"
