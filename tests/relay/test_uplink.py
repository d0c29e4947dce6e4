"""When the uplink comes back, the sinks are back within about a second, however long their backoff has
grown: a cheap TCP probe cuts the backoff short (and a server that answers but fails is not probed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from relay.sinks._retry import Uplink
from tests import devices
from tests.broker import Mosquitto, Subscriber, free_port
from tests.http_server import RecordingServer

from .harness import running_relay, wait_until

IMEI = "868683020419374"
#: A backoff this long would keep a sink away for half a minute after its server returned.
LONG_BACKOFF = {"retry_min_s": 30.0, "retry_max_s": 60.0}


async def test_a_probe_ends_the_wait_within_an_interval_of_the_server_returning() -> None:
    port = free_port()
    uplink = Uplink("127.0.0.1", port, probe_interval_s=0.2)
    async with trio.open_nursery() as nursery:
        waited: list[float] = []

        async def wait() -> None:
            started = trio.current_time()
            await uplink.wait(30)
            waited.append(trio.current_time() - started)

        for _ in range(5):  # five tasks, one prober
            nursery.start_soon(wait)
        await trio.sleep(1.0)
        probes_while_down = uplink.probes
        listener = (await trio.open_tcp_listeners(port, host="127.0.0.1"))[0]
        returned = trio.current_time()
    await listener.aclose()
    assert len(waited) == 5 and max(waited) < 30
    assert trio.current_time() - returned < 0.2 + 1.0
    assert probes_while_down <= 1.0 / 0.2 + 2  # one prober for all five waiters


async def test_with_probing_off_the_backoff_alone_decides() -> None:
    uplink = Uplink("127.0.0.1", free_port(), probe_interval_s=0)
    with trio.move_on_after(0.5) as scope:
        await uplink.wait(5)
    assert scope.cancelled_caught and uplink.probes == 0


@pytest.mark.slow
async def test_mqtt_is_back_within_a_second_of_the_broker_returning(
    tmp_path: Path, broker: Mosquitto
) -> None:
    broker.stop()
    mqtt = {"name": "broker", "type": "mqtt", "url": broker.url, "topic_prefix": "relay/x", **LONG_BACKOFF}
    async with running_relay(tmp_path, sinks=[mqtt]) as relay:
        sink = relay.sinks[0]
        assert await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 1)], replies=1)
        await wait_until(lambda: sink.last_error is not None, what="the broker missed")
        await trio.sleep(3)  # the sink is now in a backoff of 30 s or more
        broker.start()
        returned = trio.current_time()
        subscriber = Subscriber(broker, "relay/#")
        try:
            await wait_until(lambda: sink.connected, timeout=10, what="the sink back")
            back = trio.current_time() - returned
            await subscriber.wait_for(1)
        finally:
            subscriber.close()
    assert back < 1.5, f"the sink took {back:.2f} s to return"


@pytest.mark.slow
async def test_http_is_back_within_a_second_of_the_server_returning(tmp_path: Path) -> None:
    server = RecordingServer()
    sink = {"name": "central", "type": "http", "url": server.url, "batch_max_age_s": 0.1, **LONG_BACKOFF}
    async with trio.open_nursery() as nursery, running_relay(tmp_path, sinks=[sink]) as relay:
        assert await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 1)], replies=1)
        await wait_until(lambda: relay.sinks[0].last_error is not None, what="the server missed")
        await trio.sleep(3)
        await server.start(nursery)
        returned = trio.current_time()
        await wait_until(lambda: server.accepted, timeout=10, what="the batch delivered")
        back = trio.current_time() - returned
        nursery.cancel_scope.cancel()
    assert back < 1.5, f"the sink took {back:.2f} s to return"


@pytest.mark.slow
async def test_a_server_that_answers_5xx_is_not_hammered(tmp_path: Path) -> None:
    server = RecordingServer()
    server.mode = "503"
    sink = {"name": "central", "type": "http", "url": server.url, "batch_max_age_s": 0.1, **LONG_BACKOFF}
    async with trio.open_nursery() as nursery:
        await server.start(nursery)
        async with running_relay(tmp_path, sinks=[sink]) as relay:
            assert await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 1)], replies=1)
            await wait_until(lambda: server.requests, what="the first attempt")
            await trio.sleep(3)
            assert len(server.requests) == 1  # the backoff holds: the server is reachable, just failing
        nursery.cancel_scope.cancel()


@pytest.mark.slow
async def test_a_tls_failure_keeps_its_backoff(tmp_path: Path) -> None:
    """The server answers the TCP connect (a probe would succeed at once) but not TLS: that is a
    failing server, not an unreachable one, and must not be retried in a tight loop."""
    connections = 0

    async def plain(stream: trio.SocketStream) -> None:
        nonlocal connections
        connections += 1
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await stream.aclose()

    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    url = f"https://127.0.0.1:{port}/"
    sink = {"name": "central", "type": "http", "url": url, "batch_max_age_s": 0.1, **LONG_BACKOFF}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, plain, [listener])
        async with running_relay(tmp_path, sinks=[sink]) as relay:
            assert await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 1)], replies=1)
            await wait_until(lambda: relay.sinks[0].last_error is not None, what="the TLS failure")
            await trio.sleep(3)
        nursery.cancel_scope.cancel()
    assert connections <= 2, f"{connections} connections in 3 s: the backoff was cut short"


#: Probing twice a second: the sink is back within a second of the proxy accepting, handshake included.
FAST_PROBE = {"probe_interval_s": 0.5}


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def proxy_accepting(nursery: trio.Nursery, port: int, target: int) -> None:
    """From now on, a TCP proxy on ``port`` (refused until now: nothing listened) forwards to ``target``."""
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")

    async def forward(client: trio.SocketStream) -> None:
        async with client:
            upstream = await trio.open_tcp_stream("127.0.0.1", target)
            async with upstream, trio.open_nursery() as pipes:
                pipes.start_soon(_pipe, client, upstream)
                await _pipe(upstream, client)
                pipes.cancel_scope.cancel()

    nursery.start_soon(trio.serve_listeners, forward, listeners)


@pytest.mark.slow
async def test_mqtt_delivers_within_a_second_of_a_refusing_proxy_accepting_again(
    tmp_path: Path, broker: Mosquitto
) -> None:
    port = free_port()  # closed: every connect is refused, as by a dead uplink
    mqtt = {
        "name": "broker", "type": "mqtt", "url": f"mqtt://127.0.0.1:{port}", "topic_prefix": "relay/x",
        **LONG_BACKOFF, **FAST_PROBE,
    }  # fmt: skip
    subscriber = Subscriber(broker, "relay/x/+/position")
    try:
        async with trio.open_nursery() as nursery, running_relay(tmp_path, sinks=[mqtt]) as relay:
            sink = relay.sinks[0]
            assert await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 1)], replies=1)
            await wait_until(lambda: sink.last_error is not None, what="the connection refused")
            await trio.sleep(3)  # the sink is now in a backoff of 30 s or more
            await proxy_accepting(nursery, port, broker.port)
            accepted = trio.current_time()
            await wait_until(lambda: sink.connected, timeout=10, what="the sink back")
            connected = trio.current_time() - accepted
            await subscriber.wait_for(1, timeout=10)
            delivered = trio.current_time() - accepted
            nursery.cancel_scope.cancel()
    finally:
        subscriber.close()
    assert connected < 1.0 and delivered < 1.0, f"connected {connected:.2f} s, delivered {delivered:.2f} s"


@pytest.mark.slow
async def test_http_delivers_within_a_second_of_a_refusing_proxy_accepting_again(tmp_path: Path) -> None:
    server = RecordingServer()
    port = free_port()
    sink = {
        "name": "central", "type": "http", "url": f"http://127.0.0.1:{port}/", "batch_max_age_s": 0.05,
        **LONG_BACKOFF, **FAST_PROBE,
    }  # fmt: skip
    async with trio.open_nursery() as nursery, running_relay(tmp_path, sinks=[sink]) as relay:
        await server.start(nursery)
        assert await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 1)], replies=1)
        await wait_until(lambda: relay.sinks[0].last_error is not None, what="the connection refused")
        await trio.sleep(3)
        await proxy_accepting(nursery, port, server.port)
        accepted = trio.current_time()
        await wait_until(lambda: server.accepted, timeout=10, what="the batch delivered")
        delivered = trio.current_time() - accepted
        nursery.cancel_scope.cancel()
    assert delivered < 1.0, f"delivered {delivered:.2f} s after the proxy accepted"


async def test_relay_status_shows_the_uplink_windows_of_a_stopped_relay_and_a_restart_keeps_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two windows (before and after a broker outage), each with what it delivered, are in ``relay
    status`` after the relay stopped, and in ``/status`` of the next run."""
    import json
    import urllib.request

    from relay.cli import main
    from tests.relay.test_crash import RelayProcess

    broker = Mosquitto(tmp_path, persistence=True)  # the subscriber's session outlives the outage
    broker.start()
    status_port = free_port()
    relay = RelayProcess(tmp_path, broker, extra=f'[status]\nlisten = "127.0.0.1:{status_port}"\n')
    subscriber = Subscriber(broker, "relay/crash/#", persistent=True)

    async def send(first: int, count: int) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        for index in range(first, first + count):
            await stream.send_all(devices.gps103_position(IMEI, index))
            await stream.receive_some()
        await stream.aclose()

    try:
        await trio.to_thread.run_sync(relay.start)
        await send(0, 3)
        await subscriber.wait_for(3)
        await trio.sleep(1.5)  # the sink watch looks once a second
        await trio.to_thread.run_sync(broker.wait_saved)
        broker.stop()
        await send(3, 2)  # stored while the uplink is down
        await trio.sleep(2.5)
        broker.start()
        await subscriber.wait_for(5)
        await trio.sleep(1.5)
        await trio.to_thread.run_sync(relay.stop)

        capsys.readouterr()
        assert main(["status", "--json", "--config", str(relay.config)]) == 0
        (sink,) = json.loads(capsys.readouterr().out)["sinks"]
        assert sink["connected"] is False and sink["disconnected_since"]
        windows = sink["uplink_windows"]
        assert [w["drained"] for w in windows] == [3, 2] and not any(w["open"] for w in windows)
        assert windows[0]["came_up"] <= windows[1]["came_up"] and windows[0]["lasted_s"] >= 1
        assert main(["status", "--config", str(relay.config)]) == 0
        text = capsys.readouterr().out
        assert "uplink windows in the last 24 h: 2, 5 reports delivered" in text
        assert "uplink: disconnected since" in text

        await trio.to_thread.run_sync(relay.start)
        await trio.sleep(2.5)

        def fetch() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{status_port}/status", timeout=5) as answer:
                return json.loads(answer.read())

        (live,) = (await trio.to_thread.run_sync(fetch))["sinks"]
        assert live["connected"] is True and live["connected_since"]
        assert [w["drained"] for w in live["uplink_windows"]] == [3, 2, 0]
        assert live["uplink_windows"][-1]["open"]
    finally:
        relay.kill()
        subscriber.close()
        broker.stop()
