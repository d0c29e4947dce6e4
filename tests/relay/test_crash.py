"""``kill -9`` the relay: every report it acknowledged is still published after it restarts."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import trio

from tests import devices
from tests.broker import Mosquitto, Subscriber, free_tcp_udp_port

IMEI = "868683020419374"


class RelayProcess:
    """The relay as its own process, so that it can be killed; forwarding to ``broker`` if given."""

    def __init__(
        self, directory: Path, broker: Mosquitto | None = None, *, relay: str = "", extra: str = ""
    ) -> None:
        """``relay``: more ``[relay]`` keys (TOML lines); ``extra``: TOML appended to the config (more
        sections, ``[[devices]]``)."""
        self.port = free_tcp_udp_port()
        self.data = directory / "data"
        self.config = directory / "relay.toml"
        sink = (
            f'[[sinks]]\nname = "broker"\ntype = "mqtt"\nurl = "{broker.url}"\ntopic_prefix = "relay/crash"\n'
            "retry_min_s = 0.2\nretry_max_s = 1.0\n"
            if broker is not None
            else ""
        )
        self.config.write_text(
            f'[relay]\nsite = "crash"\ndata_dir = "{self.data}"\n{relay}\n'
            f'[listen]\nhost = "127.0.0.1"\nport = {self.port}\n[journal]\ncommit_interval_ms = 5\n'
            + sink
            + extra
        )
        self.log = directory / "relay.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "relay", "run", "--config", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.process.poll() is None, self.log.read_text()
                time.sleep(0.05)
        raise AssertionError("relay did not start listening")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


async def send_until_killed(relay: RelayProcess, first: int, count: int, kill_after: int | None) -> list[int]:
    """Send acknowledged positions one by one; return the indexes the relay acknowledged."""
    acknowledged: list[int] = []
    stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
    try:
        for index in range(first, first + count):
            if kill_after is not None and len(acknowledged) == kill_after:
                relay.kill()
                break
            await stream.send_all(devices.gps103_position(IMEI, index))
            if await stream.receive_some(16) != b"ON":
                break
            acknowledged.append(index)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await stream.aclose()
    return acknowledged


async def test_acknowledged_reports_survive_sigkill_with_and_without_a_broker(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    broker.start()
    relay = RelayProcess(tmp_path, broker)
    subscriber = Subscriber(broker, "relay/crash/#")
    try:
        # 1. Broker down: reports pile up in the journal, then the relay is killed.
        broker.stop()
        relay.start()
        acked = await send_until_killed(relay, 0, 100, kill_after=None)
        assert len(acked) == 100
        relay.kill()
        broker.start()
        subscriber.close()
        subscriber = Subscriber(broker, "relay/crash/#")
        # 2. Broker up: killed in the middle of a stream, while publishing.
        relay.start()
        acked += await send_until_killed(relay, 1000, 400, kill_after=250)
        relay.start()
        wanted = {devices.iso(index) for index in acked}
        with trio.move_on_after(60):
            while not wanted <= {report["time"] for report in subscriber.reports()}:
                await trio.sleep(0.1)
        published = {report["time"] for report in subscriber.reports()}
        assert sorted(wanted - published) == []
        relay.stop()
    finally:
        relay.stop()
        subscriber.close()
        broker.stop()
    # No report published twice beyond the in-flight window of the crash.
    ids = [report["id"] for report in subscriber.reports()]
    assert len(ids) - len(set(ids)) <= 2 * 50  # the window in flight + one window not yet saved


async def _slow_answers(listener: trio.SocketListener, broker_port: int, delay: float) -> None:
    """A proxy to the broker that hands the broker's answers (PUBACKs) back ``delay`` s late."""

    async def forward(source: trio.SocketStream, target: trio.SocketStream, late: bool) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async for data in source:
                if late:
                    await trio.sleep(delay)
                await target.send_all(data)
        await target.aclose()

    async def one(client: trio.SocketStream) -> None:
        broker = await trio.open_tcp_stream("127.0.0.1", broker_port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward, client, broker, False)
            nursery.start_soon(forward, broker, client, True)

    await trio.serve_listeners(one, [listener])


async def test_a_clean_stop_waits_for_the_brokers_acknowledgements(tmp_path: Path) -> None:
    """SIGTERM while PUBACKs are on their way: the relay waits for them, saves its cursor, and the
    next start sends nothing again (a report sent twice is what a kill -9 may cost, not a stop)."""
    broker = Mosquitto(tmp_path)
    broker.start()
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    proxy_port = listener.socket.getsockname()[1]
    sink = (
        f'[[sinks]]\nname = "broker"\ntype = "mqtt"\nurl = "mqtt://127.0.0.1:{proxy_port}"\n'
        'topic_prefix = "relay/crash"\nretry_min_s = 0.2\nretry_max_s = 1.0\n'
    )
    relay = RelayProcess(tmp_path, extra=sink)
    subscriber = Subscriber(broker, "relay/crash/#")
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_slow_answers, listener, broker.port, 0.7)
            await trio.to_thread.run_sync(relay.start)
            stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
            await stream.send_all(devices.gps103_login(IMEI))
            await stream.receive_some()
            await stream.send_all(devices.gps103_position(IMEI, 1))
            await subscriber.wait_for(2)  # on the broker; the PUBACKs are still on their way
            await stream.aclose()
            await trio.to_thread.run_sync(relay.stop)
            await trio.to_thread.run_sync(relay.start)
            await trio.sleep(3)
            events = [report["event"] for report in subscriber.reports()]
            assert events == ["login", "position"]
            nursery.cancel_scope.cancel()
    finally:
        relay.kill()
        subscriber.close()
        broker.stop()
