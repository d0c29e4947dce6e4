"""SMS from a mapped Coban number, through the pty modem emulator and the relay, to a real mosquitto."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import trio

from drivers.sms_pdu import encode_deliver
from tests.broker import Mosquitto, Subscriber
from tests.modem_emulator import ModemEmulator
from tests.relay.harness import running_relay, wait_until

COBAN_NUMBER = "+639171234567"
COBAN_IMEI = "865456055519122"
COBAN_TEXT = (
    "lat:14.632742\nlong:121.001790\nspeed:0.00\nT:26/11/23 16:21\n"
    "http://maps.google.com/maps?f=q&q=14.632742,121.001790&z=16"
)
STAMP = datetime(2026, 11, 23, 8, 21, 30, tzinfo=UTC)


async def test_an_sms_position_reaches_mqtt_and_is_deleted_after_commit(
    tmp_path: Path, broker: Mosquitto, nursery: trio.Nursery
) -> None:
    emulator = ModemEmulator(link=tmp_path / "usb-SimTech_SIM7600-if02-port0")
    await nursery.start(emulator.run)
    subscriber = Subscriber(broker, "relay/#")
    modem = {
        "port": str(emulator.link),
        "senders": {COBAN_NUMBER: COBAN_IMEI},
        "command_timeout_s": 0.5,
        "reopen_delay_s": 0.1,
    }
    try:
        async with running_relay(tmp_path / "relay", broker.url, modem=modem) as relay:
            await wait_until(lambda: "AT+CMGL=4" in emulator.commands, what="the modem's first scan")
            index = emulator.deliver(encode_deliver(COBAN_NUMBER, COBAN_TEXT, timestamp=STAMP))
            unknown = emulator.deliver(encode_deliver("+15550001111", "hello there", timestamp=STAMP))
            await wait_until(lambda: len(emulator.deleted) == 2, what="both messages deleted")
            # Deleted means committed: the report and the quarantine row are in the journal.
            assert relay.journal.stats.committed_reports == 1
            assert relay.journal.stats.quarantined == 1
            reports = await subscriber.wait_for(1)
            rows = relay.journal.quarantine_rows()
    finally:
        subscriber.close()
    assert {index, unknown} == {slot for _, slot in emulator.deleted}
    report = reports[0]
    assert report["device_id"] == COBAN_IMEI and report["transport"] == "sms"
    assert abs(report["lat"] - 14.632742) < 1e-6 and abs(report["lon"] - 121.001790) < 1e-6
    assert rows[0]["transport"] == "sms" and "+15550001111" in rows[0]["reason"]
    assert bytes.fromhex(rows[0]["raw"].decode()) == encode_deliver(
        "+15550001111", "hello there", timestamp=STAMP
    )


async def test_an_sms_received_before_the_clock_is_set_is_kept_and_marked(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    emulator = ModemEmulator(link=tmp_path / "usb-SimTech_SIM7600-if02-port0")
    await nursery.start(emulator.run)
    modem = {"port": str(emulator.link), "senders": {COBAN_NUMBER: COBAN_IMEI}, "command_timeout_s": 0.5}
    async with running_relay(tmp_path / "relay", modem=modem) as relay:
        relay.listener.ingest.now = lambda: datetime(1970, 1, 1, 0, 0, 42, tzinfo=UTC)  # a Pi without RTC
        await wait_until(lambda: "AT+CMGL=4" in emulator.commands, what="the modem's first scan")
        emulator.deliver(encode_deliver(COBAN_NUMBER, COBAN_TEXT, timestamp=STAMP))
        await wait_until(lambda: len(emulator.deleted) == 1, what="the message deleted")
        (report,) = relay.journal.read_after(0, 10)
    assert report.document["attributes"]["clock_unsynced"] is True
    assert report.document["received_at"] == "1970-01-01T00:00:42Z"
