"""``relay provision`` and ``relay sms send`` against the pty modem emulator, with a scripted tracker."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from drivers.sms_pdu import encode_deliver
from relay.cli._sms import ProvisionRequest, run_provision
from relay.sources._modem import ModemSettings
from relay.sources._provision import Outcome, Step, bofan_steps, coban_interval, coban_steps, same_number
from tests.drivers.test_sms_text import ACKS
from tests.modem_emulator import ModemEmulator

TRACKER = "+639171234567"
COBAN_ACKS = {
    "begin123456": ["begin ok"],
    "time zone123456 0": ["time zone ok"],
    "apn123456 internet.globe.com.ph": ["APN OK"],
    "adminip123456 203.0.113.7 8888": ["adminip ok!"],
    "fix030s030s***n123456": ["fix030s***n ok"],
    "gprs123456": ["GPRS OK!"],
    "protocol123456 18": ["protocol18 ok"],
    "check123456": [
        "Power: ON\nBattery: 100%\nGPRS: ON\nGPS: OK\nAPN: internet.globe.com.ph\nIP: 203.0.113.7 PORT: 8888"
    ],
}


@pytest.fixture
async def emulator(nursery: trio.Nursery, tmp_path: Path) -> ModemEmulator:
    emu = ModemEmulator(link=tmp_path / "modem", reply_delay_s=0.05)
    await nursery.start(emu.run)
    return emu


def _request(**overrides: object) -> ProvisionRequest:
    values: dict = {
        "family": "coban",
        "to": TRACKER,
        "server": "203.0.113.7",
        "port": 8888,
        "apn": "internet.globe.com.ph",
        "wait_s": 2.0,
    }
    return ProvisionRequest(**(values | overrides))


async def test_provision_coban_drives_the_full_exchange(emulator: ModemEmulator) -> None:
    emulator.replies = COBAN_ACKS
    lines: list[str] = []
    status = await run_provision(
        ModemSettings(port=str(emulator.link), command_timeout_s=1), _request(), lines.append
    )
    assert status == 0
    assert [sent.text for sent in emulator.sent] == list(COBAN_ACKS)
    assert {sent.destination for sent in emulator.sent} == {TRACKER}
    output = "\n".join(lines)
    assert output.count("-> acknowledged") == len(COBAN_ACKS)
    assert "step 1/8: begin123456" in output and "'APN OK' -> acknowledged" in output
    assert output.endswith(f"{TRACKER}: 8 acknowledged of 8 steps")
    assert emulator.stored() == {}  # every reply was read and removed


async def test_each_outcome_is_reported(emulator: ModemEmulator) -> None:
    emulator.replies = dict(COBAN_ACKS)
    emulator.replies["apn123456 internet.globe.com.ph"] = ["password err"]  # not an acknowledgement
    del emulator.replies["gprs123456"]  # the tracker never answers this one
    # An unrelated SMS arriving meanwhile stays on the modem for the relay.
    other = encode_deliver("+15550001111", "lat:1 long:2", timestamp=datetime(2026, 1, 1, tzinfo=UTC))
    lines: list[str] = []

    async def stranger() -> None:
        await trio.sleep(0.3)
        emulator.deliver(other)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stranger)
        status = await run_provision(
            ModemSettings(port=str(emulator.link), command_timeout_s=1), _request(wait_s=1.0), lines.append
        )
    assert status == 1
    output = "\n".join(lines)
    assert "'password err' -> unexpected reply" in output
    assert "no reply in time (1 s)" in output
    assert f"{TRACKER}: 6 acknowledged, 1 unexpected reply, 1 no reply in time of 8 steps" in output
    assert other in [*emulator.stored("SM").values(), *emulator.stored("ME").values()]


async def test_late_acknowledgement_is_credited_to_its_step(emulator: ModemEmulator) -> None:
    emulator.replies = {"begin123456": [], "time zone123456 0": ["begin ok", "time ok"]}
    lines: list[str] = []
    request = _request(wait_s=0.8)
    settings = ModemSettings(port=str(emulator.link), command_timeout_s=1)
    modem_steps = request.steps()[:2]
    from relay.sources._modem import Modem
    from relay.sources._provision import provision

    modem = await Modem.open(settings.port, command_timeout_s=1)
    async with modem:
        await modem.initialise()
        results = await provision(modem, TRACKER, modem_steps, wait_s=0.8, out=lines.append)
    assert [r.outcome for r in results] == [Outcome.ACKNOWLEDGED, Outcome.ACKNOWLEDGED]
    assert results[0].late and not results[1].late
    assert any("late acknowledgement of step 1" in line for line in lines)


async def test_provision_and_sms_send_from_the_command_line(emulator: ModemEmulator) -> None:
    emulator.replies = {"000000APNinternet": ["APN set ok"], "000000SVR203.0.113.7,8888": ["SVR OK"]}
    command = [
        sys.executable,
        "-m",
        "relay",
        "provision",
        "bofan",
        "--to",
        TRACKER,
        "--server",
        "203.0.113.7",
    ]
    command += [
        "--apn",
        "internet",
        "--interval",
        "60",
        "--wait",
        "1",
        "--modem",
        str(emulator.link),
        "--timeout",
        "2",
    ]
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    output = result.stdout.decode()
    assert "step 1/3: 000000APNinternet" in output, result.stderr.decode()
    assert "'APN set ok' -> acknowledged" in output and "'SVR OK' -> acknowledged" in output
    assert "no reply in time" in output  # GTI got no answer
    assert result.returncode == 1
    assert [s.text for s in emulator.sent] == [
        "000000APNinternet",
        "000000SVR203.0.113.7,8888",
        "000000GTI60",
    ]

    send = [
        sys.executable,
        "-m",
        "relay",
        "sms",
        "send",
        "--to",
        TRACKER,
        "--port",
        str(emulator.link),
        "check123456",
    ]
    result = await trio.run_process(send, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert emulator.sent[-1].text == "check123456"


async def test_missing_modem_is_a_clear_command_line_error(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "relay",
        "sms",
        "send",
        "--to",
        TRACKER,
        "--port",
        str(tmp_path / "none"),
        "x",
    ]
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 1
    assert "cannot open modem port" in result.stderr.decode()
    command = [sys.executable, "-m", "relay", "sms", "send", "--to", TRACKER, "x"]
    result = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 1 and "no modem" in result.stderr.decode()


ACK_ROWS = [(n, r) for n, r in ACKS if r["expect"]["reply_to"][:1].isalpha()]


@pytest.mark.parametrize(("line", "row"), ACK_ROWS, ids=[f"line{n}" for n, _ in ACK_ROWS])
def test_every_published_coban_acknowledgement_matches_its_command(line: int, row: dict) -> None:
    command = row["expect"]["reply_to"]
    word = re.match(r"[a-z]+", command.lower())
    assert word is not None
    step = Step(command, (word.group()[:3],))
    assert step.acknowledged_by(row["text"])
    assert not step.acknowledged_by("password err" if word.group() != "password" else "pass err")


def test_coban_sequence_follows_the_documented_order() -> None:
    steps = coban_steps(
        server="relay.example", port=8888, apn="web", interval_s=300, apn_user="u", apn_password="p"
    )
    assert [s.command for s in steps] == [
        "begin123456",
        "time zone123456 0",
        "apn123456 web",
        "up123456 u p",
        "adminip123456 relay.example 8888",
        "fix005m005m***n123456",
        "gprs123456",
        "protocol123456 18",
        "check123456",
    ]
    assert steps[0].acknowledged_by("Begin OK!") and not steps[0].acknowledged_by("begin")
    assert steps[-1].acknowledged_by("GPRS: ON\nBattery: 80%")


def test_bofan_sequence_and_loose_matching() -> None:
    steps = bofan_steps(server="1.2.3.4", port=8888, apn="web", password="123123", device_id="12345678901234")
    assert [s.command for s in steps] == [
        "123123GID12345678901234",
        "123123APNweb",
        "123123SVR1.2.3.4,8888",
        "123123GTI30",
    ]
    assert steps[2].acknowledged_by("SVR set") and steps[2].acknowledged_by("server ok")
    assert not steps[2].acknowledged_by("APN OK")


def test_coban_interval_notation_and_number_matching() -> None:
    assert [coban_interval(s) for s in (10, 30, 255, 300, 7200, 10**7)] == [
        "010s",
        "030s",
        "255s",
        "005m",
        "120m",
        "255h",
    ]
    assert same_number("+639171234567", "09171234567") and same_number("639171234567", "+63 917 123 4567")
    assert not same_number("+449171234567", "+639171234567")
