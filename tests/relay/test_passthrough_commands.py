"""A platform behind the passthrough sink sends a command down the device's upstream session: the bytes
reach the device byte for byte, on its live connection, or at its next one."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.relay.harness import receive_exactly, running_relay, wait_until
from tests.relay.test_passthrough import passthrough_sink
from tests.upstream import Upstream

BN407 = "868683020419374"
LOGIN = f"##,imei:{BN407},A;".encode()
POSITION = f"imei:{BN407},tracker,261120100000,,F,080000.000,A,5101.1234,N,00007.0001,W,1,2;".encode()


async def test_a_platforms_command_bytes_reach_the_device(tmp_path: Path, nursery: trio.Nursery) -> None:
    upstream = Upstream()
    await upstream.start(nursery)
    sink = passthrough_sink(upstream.port, idle_timeout_s=30)
    async with running_relay(tmp_path, sinks=[sink]) as relay:
        async with await trio.open_tcp_stream("127.0.0.1", relay.port) as device:
            await device.send_all(LOGIN)
            assert await receive_exactly(device, b"LOAD") == b"LOAD"
            await device.send_all(POSITION)
            await wait_until(
                lambda: any(s.device_id == BN407 and len(s.frames) >= 2 for s in upstream.sessions), 10
            )
            session = next(s for s in upstream.sessions if s.device_id == BN407)
            assert session.stream is not None
            # The platform answered LOAD (to the login): that is no command. Now it sends one.
            command = f"**,imei:{BN407},C,05m".encode()
            await session.stream.send_all(command)
            assert await receive_exactly(device, command) == command  # byte for byte, nothing else
            assert await receive_exactly(device, b"x", timeout=0.3) == b""
        # The device is away: the next command waits for its next connection.
        second = f"**,imei:{BN407},J".encode()
        await session.stream.send_all(second)
        await wait_until(lambda: relay.journal.commands.pending(BN407), 5, "the command queued")
        async with await trio.open_tcp_stream("127.0.0.1", relay.port) as device:
            await device.send_all(LOGIN)
            assert await receive_exactly(device, b"LOAD" + second) == b"LOAD" + second
            def states() -> list[str]:
                return [r.document["attributes"]["command_state"] for r in relay.journal.read_after(0, 1000)
                        if r.event == "commandResult"]  # fmt: skip

            await wait_until(lambda: states() == ["queued", "sent", "acknowledged"] * 2, 5, "acknowledged")
        sources = {r.document["attributes"]["command_source"] for r in relay.journal.read_after(0, 1000)
                   if r.event == "commandResult"}  # fmt: skip
        assert sources == {"passthrough:platform"}
