"""Commands down the device's own session, in a whole relay on real sockets: after the login is
answered, at once on a live connection, to a UDP device's last address, one at a time; expired never
sent; each change of state stored as a commandResult report."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path

import trio

from relay.journal import prepare_command
from relay.service import Running
from tests.relay.harness import receive_exactly, running_relay, wait_until

BN407 = "868683020419374"
LOGIN = f"##,imei:{BN407},A;".encode()
POSITION = f"imei:{BN407},tracker,261120100000,,F,080000.000,A,5101.1234,N,00007.0001,W,1,2;".encode()
DEVICES = [{"id": BN407, "protocol": "gps103"}, {"id": "1156802639", "protocol": "pt502"}]


async def queue(relay: Running, type: str, params: dict | None = None, **fields: object) -> str:
    journal = relay.journal
    command = prepare_command(
        device_id=fields.pop("device_id", BN407), type=type, params=params, source="test",
        now=datetime.now(UTC), protocol_of=journal.commands.protocol_of, **fields,
    )  # fmt: skip
    await journal.append(journal.commands.submit(command))
    return command.id


def states(relay: Running, command_id: str) -> list[str]:
    return [
        report.document["attributes"]["command_state"]
        for report in relay.journal.read_after(0, 10_000)
        if report.event == "commandResult" and report.document["attributes"].get("command_id") == command_id
    ]


async def test_a_queued_command_goes_right_after_the_login_is_answered(tmp_path: Path) -> None:
    async with running_relay(tmp_path, devices=DEVICES) as relay:
        first = await queue(relay, "positionPeriodic", {"frequency": 60})
        late = await queue(relay, "engineStop", expires_s=1)
        await trio.sleep(1.2)  # the engineStop expires while the device is away
        second = await queue(relay, "positionPeriodic", {"frequency": 300})
        async with await trio.open_tcp_stream("127.0.0.1", relay.port) as stream:
            await stream.send_all(LOGIN)
            expected = b"LOAD" + f"**,imei:{BN407},C,60s".encode() + f"**,imei:{BN407},C,05m".encode()
            assert await receive_exactly(stream, expected) == expected  # nothing of the engineStop
            await stream.send_all(POSITION)
            await wait_until(lambda: states(relay, second)[-1:] == ["acknowledged"], 5, "acknowledged")
        assert states(relay, first) == ["queued", "sent", "acknowledged"]
        assert states(relay, late) == ["queued", "expired"]
        # The device's state is its own: the relay's commandResult reports are no sign of its life.
        assert relay.journal.devices.get(BN407).last_event == "position"


async def test_a_command_goes_at_once_on_a_live_connection_and_waits_for_the_answer(tmp_path: Path) -> None:
    async with running_relay(tmp_path, devices=DEVICES) as relay:
        async with await trio.open_tcp_stream("127.0.0.1", relay.port) as stream:
            await stream.send_all(LOGIN)
            assert await receive_exactly(stream, b"LOAD") == b"LOAD"
            photo = await queue(relay, "requestPhoto")
            after = await queue(relay, "positionSingle")
            request = f"**,imei:{BN407},160".encode()
            assert await receive_exactly(stream, request) == request
            # The photo request is answered (vt<packets>): the next command waits for that.
            assert await receive_exactly(stream, b"x", timeout=0.5) == b""
            assert states(relay, photo) == ["queued", "sent"]
            await stream.send_all(
                f"imei:{BN407},vt2,261120100000,,F,080000.000,A,5101.1234,N,00007.0001,W,1,2;".encode()
            )
            single = f"**,imei:{BN407},B".encode()
            assert await receive_exactly(stream, single) == single
            await wait_until(lambda: states(relay, after)[-1:] == ["acknowledged"], 5, "acknowledged")
        assert states(relay, photo) == ["queued", "sent", "acknowledged"]
        answer = next(r for r in relay.journal.read_after(0, 1000) if r.event == "commandResult"
                  and r.document["attributes"]["command_state"] == "acknowledged")  # fmt: skip
        assert answer.document["attributes"]["result"] == "vt2"  # the device's answer, with its command
        assert answer.document["attributes"]["command_id"] == photo


async def test_a_command_in_flight_fails_when_its_connection_closes(tmp_path: Path) -> None:
    async with running_relay(tmp_path, devices=DEVICES) as relay:
        async with await trio.open_tcp_stream("127.0.0.1", relay.port) as stream:
            await stream.send_all(LOGIN)
            await receive_exactly(stream, b"LOAD")
            photo = await queue(relay, "requestPhoto")
            await receive_exactly(stream, f"**,imei:{BN407},160".encode())
        await wait_until(lambda: states(relay, photo)[-1:] == ["failed"], 5, "failed")


async def test_udp_commands_go_to_the_last_fresh_address_after_the_reply(tmp_path: Path) -> None:
    async with running_relay(tmp_path, devices=DEVICES) as relay:
        command = await queue(relay, "positionPeriodic", {"frequency": 60})
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            udp.setblocking(False)
            sock = trio.socket.from_stdlib_socket(udp)
            await sock.sendto(POSITION, ("127.0.0.1", relay.port))
            with trio.fail_after(5):
                data, _ = await sock.recvfrom(4096)
            assert data == f"**,imei:{BN407},C,60s".encode()  # gps103 answers positions with nothing
        await wait_until(lambda: states(relay, command)[-1:] == ["acknowledged"], 5, "acknowledged")
