"""gps103 beyond the shared vectors: the keyword table (shared with Coban SMS texts), keywords nobody
knows, photo announcements and cell-only messages."""

from __future__ import annotations

import pytest

from drivers import Transport, alarms, decode_stream
from drivers.gps103 import KEYWORD_ALARMS
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
