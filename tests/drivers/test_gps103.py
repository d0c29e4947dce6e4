"""gps103 beyond the shared vectors: the keyword table (shared with Coban SMS texts), keywords nobody
knows, photo announcements and cell-only messages."""

from __future__ import annotations

import re

import pytest

import drivers
from drivers import (
    Command,
    CommandType,
    InvalidCommand,
    Transport,
    UnsupportedCommand,
    Via,
    alarms,
    decode_stream,
)
from drivers.gps103 import KEYWORD_ALARMS, Gps103Session
from drivers.sms_text import parse_tracker_sms
from tests import vectors

IMEI = "868683020235846"


def _tcp(frame: str) -> dict:
    out = decode_stream(
        [frame.encode()],
        now=vectors.NOW,
        protocol="auto",
        transport=Transport.TCP,
        messages=True,
    ).summary()
    assert out["protocol"] == "gps103" and out["error"] is None
    [report] = out["reports"]
    return report


def _with_fix(keyword: str) -> str:
    return f"imei:{IMEI},{keyword},1602020913,,F,011344.000,A,0447.7273,N,07538.9934,W,0.00,0,;"


#: Traccar's Gps103ProtocolDecoder.decodeAlarm, word for word.
TRACCAR = {
    "help me": alarms.SOS,
    "low battery": alarms.LOW_BATTERY,
    "stockade": alarms.GEOFENCE,
    "move": alarms.MOVEMENT,
    "speed": alarms.OVERSPEED,
    "door alarm": alarms.DOOR,
    "ac alarm": alarms.POWER_CUT,
    "accident alarm": alarms.ACCIDENT,
    "sensor alarm": alarms.VIBRATION,
    "bonnet alarm": alarms.BONNET,
    "footbrake alarm": alarms.FOOT_BRAKE,
    "DTC": alarms.FAULT,
    "T:+28.0": alarms.TEMPERATURE,
    "oil 51.67": alarms.FUEL_LEAK,
    "oil1": alarms.FUEL_LEAK,
}


@pytest.mark.parametrize(("keyword", "alarm"), TRACCAR.items())
def test_traccar_keywords_give_traccar_alarms_with_the_position(keyword: str, alarm: str) -> None:
    report = _tcp(_with_fix(keyword))
    assert report["alarms"] == [alarm]
    assert report["event"] == "alarm"
    assert report["lat"] == pytest.approx(4.795455)
    assert report["time"] == "2016-02-02T01:13:44Z"


@pytest.mark.parametrize(("keyword", "alarm"), KEYWORD_ALARMS.items())
def test_a_keyword_is_the_same_alarm_over_tcp_and_by_sms(keyword: str, alarm: str) -> None:
    assert _tcp(_with_fix(keyword))["alarms"] == [alarm]
    text = f"{keyword}!\nlat:4.795455\nlong:-75.64989\nspeed:0.00\nT:16/02/02 01:13"
    [report] = parse_tracker_sms(text, sender="+15551234567", device_id=IMEI, received=None, now=vectors.NOW)
    assert report.alarms == (alarm,)


def test_shock_and_power_alarms_are_alarms_over_tcp() -> None:
    assert _tcp(_with_fix("shock alarm"))["alarms"] == [alarms.VIBRATION]
    assert _tcp(_with_fix("power alarm"))["alarms"] == [alarms.POWER_CUT]


@pytest.mark.parametrize("keyword", ["acc alarm", "gps lost", "T:", "T:hot", "oil lots"])
def test_any_keyword_still_gives_the_position_and_time(keyword: str) -> None:
    report = _tcp(_with_fix(keyword))
    assert report["lat"] == pytest.approx(4.795455)
    assert report["lon"] == pytest.approx(-75.64989)
    assert report["time"] == "2016-02-02T01:13:44Z"
    assert report["attributes"]["keyword"] == keyword


def test_photo_announcement_carries_its_position() -> None:
    report = _tcp(
        "imei:864180034124375,vt14,190116192753,,F,172750.000,A,3649.2186,N,00235.8411,W,0.00,0,,0,0,51.93%,,+22;"
    )
    assert report["event"] == "photo_announce"
    assert report["attributes"]["photo_packets"] == 14
    assert report["lat"] == pytest.approx(36.82031)
    assert report["time"] == "2019-01-16T17:27:50Z"


def test_cell_only_message_keeps_its_time_and_names_its_cell() -> None:
    report = _tcp(f"imei:{IMEI},tracker,1602020913,,L,,,177d,,cb5e,,,;")
    assert report["event"] == "cell"
    assert report["lat"] is None and report["valid"] is False
    assert report["time"] == "2016-02-02T09:13:00Z"
    assert report["attributes"]["lac"] == 0x177D
    assert report["attributes"]["cid"] == 0xCB5E


def test_cell_only_alarm_is_an_alarm_with_its_cell_and_seconds() -> None:
    report = _tcp("imei:864895030279986,ac alarm,180404174252,,L,,,296a,,51f7,,,")
    assert report["event"] == "alarm" and report["alarms"] == [alarms.POWER_CUT]
    assert report["time"] == "2018-04-04T17:42:52Z"
    assert (report["attributes"]["lac"], report["attributes"]["cid"]) == (0x296A, 0x51F7)


def test_cell_only_message_without_a_date_has_no_time() -> None:
    report = _tcp("imei:359710041100000,tracker,000000000,,L,,,fa8,,c9af,,,,,0,0,0.00%,,")
    assert report["event"] == "cell"
    assert report["time"] is None


def _command(kind: CommandType, **params: object) -> Command:
    return Command(type=kind, device_id="123456789012345", params=params)


@pytest.mark.parametrize(
    ("kind", "params", "wire"),
    [
        (CommandType.POSITION_SINGLE, {}, "B"),
        (CommandType.POSITION_PERIODIC, {"frequency": 300}, "C,05m"),  # Traccar's encoder test
        (CommandType.POSITION_PERIODIC, {"frequency": 10}, "C,10s"),
        (CommandType.POSITION_PERIODIC, {"frequency": 90}, "C,90s"),
        (CommandType.POSITION_PERIODIC, {"frequency": 7200}, "C,02h"),
        (CommandType.POSITION_STOP, {}, "D"),
        (CommandType.ENGINE_STOP, {}, "J"),
        (CommandType.ENGINE_RESUME, {}, "K"),
        (CommandType.ALARM_ARM, {}, "L"),
        (CommandType.ALARM_DISARM, {}, "M"),
        (CommandType.ALARM_SPEED, {"speed": 80}, "H,080"),  # Traccar's custom example
        (CommandType.REQUEST_PHOTO, {}, "160"),
        (CommandType.CUSTOM, {"data": "H,080"}, "H,080"),
    ],
)
def test_gprs_commands_are_traccars_bytes(kind: CommandType, params: dict, wire: str) -> None:
    encoded = Gps103Session().encode(_command(kind, **params))
    assert encoded == f"**,imei:123456789012345,{wire}".encode()


@pytest.mark.parametrize(
    ("kind", "params", "sms"),
    [
        (CommandType.POSITION_PERIODIC, {"frequency": 60}, "fix060s060s***n123456"),
        (CommandType.POSITION_PERIODIC, {"frequency": 600}, "fix010m010m***n123456"),
        (
            CommandType.POSITION_PERIODIC,
            {"frequency": 240, "devicePassword": "654321"},
            "fix240s240s***n654321",
        ),
        (CommandType.POSITION_SINGLE, {}, "smslink123456"),
        (CommandType.POSITION_STOP, {}, "nofix123456"),
        (CommandType.ENGINE_STOP, {}, "stop123456"),
        (CommandType.ENGINE_RESUME, {}, "resume123456"),
        (CommandType.ALARM_ARM, {}, "arm123456"),
        (CommandType.ALARM_DISARM, {}, "disarm123456"),
        (CommandType.ALARM_SPEED, {"speed": 80}, "speed123456 080"),
        (CommandType.SET_TIMEZONE, {"timezone": 0}, "time zone123456 0"),
        (CommandType.SET_TIMEZONE, {"timezone": "UTC-3"}, "time zone123456 -3"),
        (CommandType.REBOOT_DEVICE, {}, "reset123456"),
        (CommandType.CUSTOM, {"data": "check123456"}, "check123456"),
    ],
)
def test_sms_commands_carry_the_device_password(kind: CommandType, params: dict, sms: str) -> None:
    assert drivers.encode_sms("gps103", _command(kind, **params)) == sms


@pytest.mark.parametrize(
    ("kind", "params", "via", "reason"),
    [
        (CommandType.POSITION_PERIODIC, {"frequency": 150}, Via.DATA,
         "frequency 150 s is not 1..99 seconds, minutes or hours, which is what a Coban takes (try 120 s)"),
        (CommandType.POSITION_PERIODIC, {"frequency": 3601}, Via.SMS,
         "frequency 3601 s is not 1..255 seconds, minutes or hours, which is what a Coban takes"
         " (try 3600 s)"),
        (CommandType.POSITION_PERIODIC, {"frequency": "often"}, Via.DATA,
         "frequency must be a whole number, not 'often'"),
        (CommandType.SET_TIMEZONE, {"timezone": 5.5}, Via.SMS,
         "timezone 5.5 h has minutes; gps103 takes whole hours"),
        (CommandType.SET_TIMEZONE, {"timezone": "Europe/Paris"}, Via.SMS,
         "'Europe/Paris' is not a UTC offset"),
        (CommandType.ENGINE_STOP, {"devicePassword": "12345"}, Via.SMS,
         "devicePassword '12345' is not 6 digits"),
        (CommandType.CUSTOM, {"data": "x" * 161}, Via.SMS, "161 characters do not fit one SMS (160)"),
        (CommandType.CUSTOM, {"data": "café"}, Via.DATA, "data has character U+00E9 at 3"),
        (CommandType.CUSTOM, {}, Via.DATA, "missing parameter 'data'"),
        (CommandType.ENGINE_STOP, {"frequency": 60}, Via.DATA, "unknown parameter 'frequency'"),
    ],
)  # fmt: skip
def test_bad_commands_are_refused_with_the_reason(
    kind: CommandType, params: dict, via: Via, reason: str
) -> None:
    with pytest.raises(InvalidCommand, match=re.escape(reason)):
        drivers.check_command("gps103", _command(kind, **params), via=via)


def test_check_command_fills_defaults_and_converts() -> None:
    checked = drivers.check_command("gps103", _command(CommandType.POSITION_PERIODIC, frequency="300"))
    assert checked.params == {"frequency": 300}
    assert drivers.supported_commands("gps103", Via.SMS) >= {
        CommandType.ENGINE_STOP,
        CommandType.REBOOT_DEVICE,
    }
    with pytest.raises(UnsupportedCommand, match="'requestPhoto' is not supported over SMS"):
        drivers.check_command("gps103", _command(CommandType.REQUEST_PHOTO), via=Via.SMS)
    with pytest.raises(UnsupportedCommand, match="'rebootDevice' is not supported over data"):
        drivers.check_command("gps103", _command(CommandType.REBOOT_DEVICE))


def test_the_answer_to_a_photo_request_is_a_command_result() -> None:
    session = Gps103Session()
    assert session.expects_answer(_command(CommandType.REQUEST_PHOTO))
    assert not session.expects_answer(_command(CommandType.ENGINE_STOP))
    announce = (
        b"imei:864180034124375,vt14,190116192753,,F,172750.000,A,3649.2186,N,00235.8411,W,0.00,0,,0,0,"
        b"51.93%,,+22"
    )
    assert [report.event for report in session.decode(announce, now=vectors.NOW).reports] == [
        "photo_announce"
    ]
    session.encode(_command(CommandType.REQUEST_PHOTO))
    position, answer = session.decode(announce, now=vectors.NOW).reports
    assert position.event == "photo_announce"
    assert (answer.event, answer.device_id) == ("commandResult", "864180034124375")
    assert answer.attributes == {"result": "vt14", "photo_packets": 14}
