"""The AT driver (relay.sources) against the pty modem emulator: real serial I/O, real clock."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from drivers.sms_pdu import Concat, encode_deliver
from relay.sources._modem import (
    AtError,
    IncomingSms,
    Modem,
    ModemSettings,
    parse_cpms_lists,
    parse_cpms_usage,
    send_sms,
    serve_modem,
)
from tests.drivers.test_sms_pdu import DELIVERS, STATUS_REPORTS, SUBMITS
from tests.modem_emulator import ModemEmulator

COBAN_NUMBER = "+639171234567"
COBAN_TEXT = "lat:14.632742\nlong:121.001790\nspeed:0.00\nT:26/11/23 16:21\nhttp://maps.google.com/maps?f=q&q=14.632742,121.001790&z=16"
STAMP = datetime(2026, 11, 23, 8, 21, 30, tzinfo=UTC)
WAIT = 10  # seconds a test waits for something that should take milliseconds


def _settings(emulator: ModemEmulator, **overrides: object) -> ModemSettings:
    values: dict = {
        "port": str(emulator.link),
        "senders": {COBAN_NUMBER: "865456055519122"},
        "command_timeout_s": 0.5,
        "reopen_delay_s": 0.1,
        "concat_timeout_s": 600,
    }
    return ModemSettings(**(values | overrides))


@pytest.fixture
async def emulator(nursery: trio.Nursery, tmp_path: Path) -> ModemEmulator:
    emu = ModemEmulator(link=tmp_path / "usb-SimTech_SIM7600-if02-port0")
    await nursery.start(emu.run)
    return emu


class Inbox:
    """An on_sms that records messages; it can be told to fail, or to block until released."""

    def __init__(self) -> None:
        self.messages: list[IncomingSms] = []
        self.fail = False
        self.gate: trio.Event | None = None
        self.arrived = trio.Event()
        self.entered = trio.Event()

    async def __call__(self, sms: IncomingSms) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            raise RuntimeError("journal is full")
        self.messages.append(sms)
        self.arrived.set()
        self.arrived = trio.Event()

    async def wait_for(self, count: int) -> None:
        with trio.fail_after(WAIT):
            while len(self.messages) < count:
                await self.arrived.wait()


async def _until(condition, timeout: float = WAIT) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def _serve(
    nursery: trio.Nursery, emulator: ModemEmulator, inbox: Inbox, **kwargs: object
) -> trio.CancelScope:
    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            await serve_modem(_settings(emulator, **kwargs.pop("settings", {})), inbox, **kwargs)  # type: ignore[arg-type]

    nursery.start_soon(run)
    return scope


async def test_stored_messages_are_read_at_start_and_deleted_after_on_sms(emulator, nursery) -> None:
    first = emulator.deliver(encode_deliver(COBAN_NUMBER, COBAN_TEXT, timestamp=STAMP), announce="never")
    second = emulator.deliver(encode_deliver("+15550001111", "hello", timestamp=STAMP), announce="never")
    inbox = Inbox()
    await _serve(nursery, emulator, inbox)
    await inbox.wait_for(2)
    assert [m.text for m in inbox.messages] == [COBAN_TEXT, "hello"]
    assert inbox.messages[0].indices == (first,) and inbox.messages[1].indices == (second,)
    assert inbox.messages[0].sender == COBAN_NUMBER
    assert inbox.messages[0].message.timestamp == STAMP
    await _until(lambda: len(emulator.deleted) == 2)
    assert emulator.stored() == {}
    # The dialogue followed the recommended order: echo off, PDU mode, storage, +CMTI indications.
    commands = emulator.commands
    assert commands.index("ATE0") < commands.index("AT+CMGF=0") < commands.index("AT+CNMI=2,1,0,0,0")
    assert commands.index("AT+CNMI=2,1,0,0,0") < commands.index("AT+CMGL=4")
    assert emulator.cnmi == "2,1,0,0,0"


async def test_cmti_delivers_and_deletion_waits_for_on_sms_to_return(emulator, nursery) -> None:
    inbox = Inbox()
    inbox.gate = trio.Event()
    await _serve(nursery, emulator, inbox)
    await _until(lambda: "AT+CMGL=4" in emulator.commands)
    index = emulator.deliver(encode_deliver(COBAN_NUMBER, COBAN_TEXT, timestamp=STAMP))
    with trio.fail_after(WAIT):
        await inbox.entered.wait()
    await trio.sleep(0.3)
    assert emulator.deleted == [] and index in emulator.stored()  # on_sms has not returned: not deleted
    inbox.gate.set()
    await inbox.wait_for(1)
    await _until(lambda: emulator.deleted == [(emulator.mem[0], index)])
    assert f"AT+CMGR={index}" in emulator.commands


async def test_message_stays_on_the_modem_when_on_sms_raises(emulator, nursery, caplog) -> None:
    inbox = Inbox()
    inbox.fail = True
    await _serve(nursery, emulator, inbox, poll_interval_s=0.2)
    await _until(lambda: "AT+CMGL=4" in emulator.commands)
    index = emulator.deliver(encode_deliver(COBAN_NUMBER, COBAN_TEXT, timestamp=STAMP))
    with trio.fail_after(WAIT):
        await inbox.entered.wait()
    await trio.sleep(0.5)
    assert emulator.deleted == [] and index in emulator.stored()
    assert "stays on the modem" in caplog.text
    # Once on_sms works again, the next poll finds the message and it is handed over and deleted.
    inbox.fail = False
    await inbox.wait_for(1)
    await _until(lambda: emulator.deleted == [(emulator.mem[0], index)])


async def test_urc_in_the_middle_of_a_listing_is_not_lost(emulator, nursery) -> None:
    emulator.deliver(encode_deliver(COBAN_NUMBER, "one", timestamp=STAMP), announce="never")
    emulator.deliver(encode_deliver(COBAN_NUMBER, "two", timestamp=STAMP), announce="never")
    # A third arrives while the modem is printing the list: its +CMTI lands between list entries.
    third = emulator.deliver(
        encode_deliver(COBAN_NUMBER, "three", timestamp=STAMP), announce="mid-response", storage="ME"
    )
    inbox = Inbox()
    await _serve(nursery, emulator, inbox)
    await inbox.wait_for(3)
    assert sorted(m.text for m in inbox.messages) == ["one", "three", "two"]
    await _until(lambda: ("ME", third) in emulator.deleted)


async def test_concatenated_parts_are_joined_and_all_slots_deleted(emulator, nursery) -> None:
    inbox = Inbox()
    await _serve(nursery, emulator, inbox)
    await _until(lambda: "AT+CMGL=4" in emulator.commands)
    a = emulator.deliver(
        encode_deliver(
            COBAN_NUMBER, "lat:14.6 long:121.0 ", timestamp=STAMP, concat=Concat(ref=9, total=2, seq=2)
        )
    )
    await trio.sleep(0.2)
    assert inbox.messages == [] and emulator.deleted == []
    b = emulator.deliver(
        encode_deliver(COBAN_NUMBER, "help me! ", timestamp=STAMP, concat=Concat(ref=9, total=2, seq=1))
    )
    await inbox.wait_for(1)
    message = inbox.messages[0]
    assert message.text == "help me! lat:14.6 long:121.0 "
    assert message.indices == (b, a) and len(message.pdus) == 2
    await _until(lambda: len(emulator.deleted) == 2)


async def test_parts_that_never_complete_are_handed_over_incomplete(emulator, nursery) -> None:
    inbox = Inbox()
    await _serve(nursery, emulator, inbox, settings={"concat_timeout_s": 0.3})
    await _until(lambda: "AT+CMGL=4" in emulator.commands)
    index = emulator.deliver(
        encode_deliver(COBAN_NUMBER, "part one", timestamp=STAMP, concat=Concat(ref=1, total=3, seq=1))
    )
    await inbox.wait_for(1)
    message = inbox.messages[0].message
    assert message is not None and not message.complete and message.missing == (2, 3)
    await _until(lambda: emulator.deleted == [(emulator.mem[0], index)])


async def test_status_reports_and_stored_submits_are_deleted_without_on_sms(emulator, nursery) -> None:
    report = bytes.fromhex(STATUS_REPORTS[0][1]["pdu"])
    submit = bytes.fromhex(SUBMITS[0][1]["pdu"])
    emulator.deliver(report, announce="never")
    emulator.deliver(submit, announce="never", stat=3)
    emulator.deliver(encode_deliver(COBAN_NUMBER, "after", timestamp=STAMP), announce="never")
    inbox = Inbox()
    await _serve(nursery, emulator, inbox)
    await inbox.wait_for(1)
    await _until(lambda: len(emulator.deleted) == 3)
    assert [m.text for m in inbox.messages] == ["after"]


async def test_broken_pdu_reaches_on_sms_with_an_error_for_quarantine(emulator, nursery) -> None:
    emulator.deliver(bytes.fromhex("0043010C910661345542F60008A0050003000301306F3044"), announce="never")
    inbox = Inbox()
    await _serve(nursery, emulator, inbox)
    await inbox.wait_for(1)
    assert inbox.messages[0].message is None and "TP-MTI" in inbox.messages[0].error
    assert inbox.messages[0].pdus == (bytes.fromhex("0043010C910661345542F60008A0050003000301306F3044"),)
    await _until(lambda: len(emulator.deleted) == 1)


@pytest.mark.parametrize("style", ["telit", "same_line", "bare"])
async def test_header_shapes_vary_and_lengths_come_from_the_pdu(emulator, nursery, style: str) -> None:
    emulator.header_style = style
    emulator.header_length_bias = 53  # a header that lies about the length
    inbox = Inbox()
    await _serve(nursery, emulator, inbox)
    await _until(lambda: "AT+CMGL=4" in emulator.commands)
    emulator.deliver(encode_deliver(COBAN_NUMBER, COBAN_TEXT, timestamp=STAMP))
    await inbox.wait_for(1)
    assert inbox.messages[0].text == COBAN_TEXT


async def test_every_vector_pdu_survives_the_modem_path(emulator, nursery) -> None:
    emulator.capacity = 200
    for _, row in DELIVERS:
        emulator.deliver(bytes.fromhex(row["pdu"]), announce="never")
    inbox = Inbox()
    await _serve(nursery, emulator, inbox)
    singles = [r for _, r in DELIVERS if ((r["expect"].get("udh") or {}).get("total") or 1) == 1]
    await inbox.wait_for(len(singles))
    assert {m.text for m in inbox.messages} >= {r["expect"]["text"] for r in singles if r["expect"]["text"]}


async def test_silent_modem_is_reopened_and_reinitialised(emulator, nursery, caplog) -> None:
    caplog.set_level(logging.INFO, "relay.modem")
    inbox = Inbox()
    await _serve(nursery, emulator, inbox, poll_interval_s=0.2)
    await _until(lambda: emulator.commands.count("AT+CNMI=2,1,0,0,0") == 1)
    emulator.silent = True
    await _until(lambda: "did not answer" in caplog.text)
    emulator.silent = False
    await _until(lambda: emulator.commands.count("AT+CNMI=2,1,0,0,0") == 2)
    emulator.deliver(encode_deliver(COBAN_NUMBER, "back", timestamp=STAMP))
    await inbox.wait_for(1)
    assert inbox.messages[0].text == "back"


async def test_unplugged_modem_is_picked_up_again_on_its_new_device_node(emulator, nursery, caplog) -> None:
    caplog.set_level(logging.INFO, "relay.modem")
    inbox = Inbox()
    await _serve(nursery, emulator, inbox)
    await _until(lambda: emulator.cnmi != "")
    old_target = emulator.link.resolve()
    await emulator.unplug()
    await _until(lambda: "reopening" in caplog.text or "cannot open" in caplog.text)
    # A message arrives while the device is away: it waits in storage and is read at re-start.
    emulator.deliver(encode_deliver(COBAN_NUMBER, "stored while away", timestamp=STAMP), announce="never")
    await emulator.replug()
    assert emulator.link.resolve() != old_target
    await inbox.wait_for(1)
    assert inbox.messages[0].text == "stored while away"
    assert emulator.cnmi == "2,1,0,0,0"


async def test_garbage_on_the_line_is_ignored(emulator, nursery) -> None:
    inbox = Inbox()
    await _serve(nursery, emulator, inbox)
    await _until(lambda: "AT+CMGL=4" in emulator.commands)
    emulator.garbage(b"\r\n\xff\xfe AFSDLF SDKFJ\x00\r\n" + b"\x00" * 5000 + b"\r\n")
    emulator.deliver(encode_deliver(COBAN_NUMBER, "still fine", timestamp=STAMP))
    await inbox.wait_for(1)
    assert inbox.messages[0].text == "still fine"


async def test_storage_full_is_logged_and_drained(emulator, nursery, caplog) -> None:
    caplog.set_level(logging.INFO, "relay.modem")
    emulator.capacity = 2
    emulator.deliver(encode_deliver(COBAN_NUMBER, "a", timestamp=STAMP), announce="never", storage="ME")
    emulator.deliver(encode_deliver(COBAN_NUMBER, "b", timestamp=STAMP), announce="never", storage="ME")
    assert emulator.deliver(encode_deliver(COBAN_NUMBER, "c", timestamp=STAMP), storage="ME") is None  # full
    inbox = Inbox()
    inbox.fail = True
    await _serve(nursery, emulator, inbox, poll_interval_s=0.2)
    await _until(lambda: "storage full" in caplog.text)
    inbox.fail = False
    await inbox.wait_for(2)
    await _until(lambda: emulator.stored("ME") == {})
    # Room again: the service centre's retry now lands.
    assert emulator.deliver(emulator.refused.pop(), storage="ME") is not None
    await inbox.wait_for(3)


async def test_numeric_and_verbose_errors_are_readable(emulator) -> None:
    modem = await Modem.open(str(emulator.link), command_timeout_s=1)
    async with modem:
        await modem.command("ATE0")
        await modem.command("AT+CMEE=1")
        await modem.command("AT+CMGF=0")
        with pytest.raises(AtError, match=r"\+CMS ERROR: 321 \(invalid memory index\)"):
            await modem.command("AT+CMGR=7", prefix="+CMGR:")
        assert await modem.read_message(7) is None
        await modem.command("AT+CMEE=2")
        with pytest.raises(AtError, match=r"\+CMS ERROR: operation not supported|\+CMS ERROR: unknown"):
            await modem.command("AT+CNMI=3,3,3,3,3")
        await modem.command("AT+CMEE=0")
        with pytest.raises(AtError, match="ERROR"):
            await modem.command("AT+BOGUS")
        await modem.command("ATV0")
        assert await modem.command("AT+CSQ", prefix="+CSQ:") == ["+CSQ: 17,99"]
        with pytest.raises(AtError):
            await modem.command("AT+BOGUS")


async def test_missing_sim_pin_is_a_clear_error(emulator) -> None:
    emulator.pin_state = "SIM PIN"
    modem = await Modem.open(str(emulator.link), command_timeout_s=1)
    async with modem:
        with pytest.raises(Exception, match="SIM is not ready"):
            await modem.initialise()


async def test_send_sms_builds_a_pdu_the_modem_accepts(emulator) -> None:
    await send_sms(_settings(emulator), "+639171234567", "begin123456")
    long_text = "x" * 200
    await send_sms(_settings(emulator), "+639171234567", long_text)
    assert [s.text for s in emulator.sent] == ["begin123456", "x" * 153, "x" * 47]
    assert {s.destination for s in emulator.sent} == {"+639171234567"}


async def test_absent_port_is_retried_without_blocking_start(tmp_path, nursery, caplog) -> None:
    settings = ModemSettings(port=str(tmp_path / "nothing"), reopen_delay_s=0.05, command_timeout_s=0.2)
    inbox = Inbox()
    with trio.fail_after(1):
        await nursery.start(serve_modem, settings, inbox)
    await _until(lambda: caplog.text.count("cannot open modem port") >= 2)


def test_cpms_lists_in_every_shape_seen_on_real_modems() -> None:
    assert parse_cpms_lists('+CPMS: ("SM","ME"),("SM","ME"),("SM","ME")') == [["SM", "ME"]] * 3
    assert parse_cpms_lists('+CPMS: ("SM","ME"), ("SM","ME"), ("SM","ME")') == [["SM", "ME"]] * 3
    assert parse_cpms_lists('+CPMS: (("SM","BM","SR"),("SM"))') == [["SM", "BM", "SR"], ["SM"]]
    assert parse_cpms_lists('+CPMS: "SM","SM","SM"') == [["SM"], ["SM"], ["SM"]]
    assert parse_cpms_lists('+CPMS: (ME", "SR"), ("ME", "SR"), ("ME")') == [
        ["ME", "SR"],
        ["ME", "SR"],
        ["ME"],
    ]
    assert parse_cpms_lists("+CPMS: ") == []
    assert parse_cpms_lists("+CPMS: (),(),()") == [[], [], []]
    assert parse_cpms_lists('+CPMS: ("SM", "ME", "SM_P", "ME_P", "MT"),("SM")')[0][2] == "SM_P"
    assert parse_cpms_usage('+CPMS: "SM",2,10,"SM",2,10,"SM",2,10') == (2, 10)
    assert parse_cpms_usage('+CPMS: "MT", 0, 100, "MT", 0, 100') == (0, 100)
    assert parse_cpms_usage("+CPMS: 2,10,2,10,2,10") == (2, 10)


async def test_coban_sms_from_a_mapped_number_becomes_a_report_before_deletion(emulator, nursery) -> None:
    from drivers.sms import SmsRejected, message_reports

    committed: list = []
    quarantined: list[str] = []

    async def on_sms(sms: IncomingSms) -> None:
        # What the relay does: journal the report (or the quarantine row), then return.
        assert emulator.stored()  # still on the modem while we commit
        try:
            committed.extend(
                message_reports(sms.message, senders={COBAN_NUMBER: "865456055519122"}, now=STAMP)
            )
        except SmsRejected as error:
            quarantined.append(str(error))

    scope = trio.CancelScope()

    async def run() -> None:
        with scope:
            await serve_modem(_settings(emulator), on_sms)

    nursery.start_soon(run)
    await _until(lambda: "AT+CMGL=4" in emulator.commands)
    emulator.deliver(encode_deliver(COBAN_NUMBER, COBAN_TEXT, timestamp=STAMP))
    emulator.deliver(encode_deliver("+15550001111", COBAN_TEXT, timestamp=STAMP))
    await _until(lambda: len(emulator.deleted) == 2)
    [report] = committed
    assert (report.device_id, report.protocol, report.lat, report.lon) == (
        "865456055519122",
        "gps103",
        14.632742,
        121.00179,
    )
    assert quarantined == ["sms: sender +15550001111 is not in [modem.senders]"]
    scope.cancel()


async def test_modem_left_in_numeric_mode_with_verbose_errors_is_brought_round(emulator, nursery) -> None:
    emulator.verbose = False
    emulator.cmee = 2
    inbox = Inbox()
    await _serve(nursery, emulator, inbox)
    await _until(lambda: emulator.cnmi != "")
    assert emulator.verbose and emulator.cmee == 1 and not emulator.echo and emulator.pdu_mode
    emulator.deliver(encode_deliver(COBAN_NUMBER, "numeric", timestamp=STAMP))
    await inbox.wait_for(1)


async def test_cmti_naming_another_storage_is_read_from_there(emulator, nursery) -> None:
    inbox = Inbox()
    await _serve(nursery, emulator, inbox)
    await _until(lambda: "AT+CMGL=4" in emulator.commands)
    home = emulator.mem[0]
    other = "SM" if home == "ME" else "ME"
    index = emulator.deliver(encode_deliver(COBAN_NUMBER, "elsewhere", timestamp=STAMP), storage=other)
    await inbox.wait_for(1)
    await _until(lambda: (other, index) in emulator.deleted)
    assert f'AT+CPMS="{other}"' in emulator.commands


async def test_urc_before_the_send_prompt_is_kept(emulator) -> None:
    modem = await Modem.open(str(emulator.link), command_timeout_s=1)
    async with modem:
        await modem.initialise()
        emulator.inject_urc('+CMTI: "ME",4')
        await trio.sleep(0.05)
        await modem.send_text("+15551234567", "hello")
        assert [u.line for u in modem.pending_urcs()] == ['+CMTI: "ME",4']
    assert emulator.sent[-1].text == "hello"
