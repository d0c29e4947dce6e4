"""Commands by SMS through the running relay's own modem task (the pty modem emulator), while TCP goes
on: via = "sms" to a device with a phone, and a command that waited past the device's sms_after_s."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import trio

from relay.journal import prepare_command
from relay.service import Running
from tests.modem_emulator import ModemEmulator
from tests.relay.harness import running_relay, wait_until

BN407 = "868683020419374"
PHONE = "+639171234567"
LOGIN = f"##,imei:{BN407},A;".encode()
POSITION = f"imei:{BN407},tracker,261120100000,,F,080000.000,A,5101.1234,N,00007.0001,W,1,2;".encode()


async def queue(relay: Running, type: str, params: dict | None = None, **fields: object) -> str:
    commands = relay.journal.commands
    command = prepare_command(
        device_id=BN407, type=type, params=params, source="test", now=datetime.now(UTC),
        protocol_of=commands.protocol_of, phone_of=commands.phone_of, **fields,
    )  # fmt: skip
    await relay.journal.append(relay.journal.queue_command(command))
    return command.id


def states(relay: Running, command_id: str) -> list[str]:
    return [
        r.document["attributes"]["command_state"]
        for r in relay.journal.read_after(0, 10_000)
        if r.event == "commandResult" and r.document["attributes"].get("command_id") == command_id
    ]


def modem_settings(emulator: ModemEmulator) -> dict:
    return {"port": str(emulator.link), "command_timeout_s": 0.5, "reopen_delay_s": 0.1}


async def test_a_command_via_sms_leaves_by_the_modem_while_tcp_keeps_working(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    emulator = ModemEmulator(link=tmp_path / "ttyUSB2", replies={"fix060s060s***n123456": ["fix ok"]})
    await nursery.start(emulator.run)
    devices = [{"id": BN407, "protocol": "gps103", "phone": PHONE}]
    async with running_relay(tmp_path / "relay", modem=modem_settings(emulator), devices=devices) as relay:
        await wait_until(lambda: "AT+CMGL=4" in emulator.commands, what="the modem's first scan")
        async with await trio.open_tcp_stream("127.0.0.1", relay.port) as device:
            await device.send_all(LOGIN)
            assert await device.receive_some(100) == b"LOAD"
            by_sms = await queue(relay, "positionPeriodic", {"frequency": 60}, via="sms")
            after = await queue(relay, "positionSingle")  # over data, after the SMS one: in order
            # TCP goes on while the modem sends.
            await device.send_all(f"{BN407};".encode())
            with trio.fail_after(5):
                assert await device.receive_some(100) == b"ON"
            await wait_until(lambda: emulator.sent, 10, "the SMS sent")
            assert (emulator.sent[0].destination, emulator.sent[0].text) == (PHONE, "fix060s060s***n123456")
            # The device answers by SMS ("fix ok"): acknowledged; then the data command goes.
            await wait_until(lambda: states(relay, by_sms)[-1:] == ["acknowledged"], 10, "the SMS answer")
            with trio.fail_after(5):
                assert await device.receive_some(100) == f"**,imei:{BN407},B".encode()
            await wait_until(lambda: states(relay, after)[-1:] == ["acknowledged"], 5, "acknowledged")
        answer = next(r for r in relay.journal.read_after(0, 1000) if r.event == "commandResult"
                      and r.document["attributes"]["command_state"] == "acknowledged")  # fmt: skip
        assert answer.document["attributes"]["command_via"] == "sms"
        assert answer.document["attributes"]["result"] == "fix ok"
        assert answer.transport == "sms"
        assert len(emulator.deleted) == 1  # the answer, stored, left the modem


async def test_a_command_waiting_past_sms_after_s_goes_by_sms(tmp_path: Path, nursery: trio.Nursery) -> None:
    emulator = ModemEmulator(link=tmp_path / "ttyUSB2")
    await nursery.start(emulator.run)
    devices = [{"id": BN407, "protocol": "gps103", "phone": PHONE, "sms_after_s": 1}]
    async with running_relay(tmp_path / "relay", modem=modem_settings(emulator), devices=devices) as relay:
        await wait_until(lambda: "AT+CMGL=4" in emulator.commands, what="the modem's first scan")
        command = await queue(relay, "engineStop")  # over data; the device is away
        await trio.sleep(0.5)
        assert not emulator.sent
        await wait_until(lambda: emulator.sent, 10, "the SMS sent")
        assert emulator.sent[0].text == "stop123456"
        # Stored once the modem confirmed it (a moment after the emulator saw it); a Coban answers by
        # SMS: it waits.
        await wait_until(lambda: states(relay, command) == ["queued", "sent"], 5, "the sent state stored")
        rows = relay.journal.commands.pending()
        assert rows[0].via.value == "sms"


async def test_via_sms_is_refused_without_a_phone_or_a_modem(tmp_path: Path) -> None:
    import pytest

    from relay.errors import CommandRefused

    devices = [{"id": BN407, "protocol": "gps103", "phone": PHONE}]
    async with running_relay(tmp_path, devices=devices) as relay:
        with pytest.raises(CommandRefused, match="cannot take SMS"):
            await queue(relay, "engineStop", via="sms")
