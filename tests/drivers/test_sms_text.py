"""Tracker SMS texts (every ``tracker_sms`` row of ``sms_vectors.jsonl``) to normalized reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import alarms
from drivers.sms_text import parse_tracker_sms

from .test_sms_pdu import _ids, _rows

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TEXTS = _rows("tracker_sms")
COBAN_REPORTS = [(n, r) for n, r in TEXTS if r["family"] == "coban" and not r["expect"].get("ack")]
ACKS = [(n, r) for n, r in TEXTS if r["expect"].get("ack")]


def _parse(text: str, **kwargs):
    arguments = {"sender": "+15551234567", "device_id": "dev-1", "received": None, "now": NOW} | kwargs
    return parse_tracker_sms(text, **arguments)


@pytest.mark.parametrize(("line", "row"), COBAN_REPORTS, ids=_ids(COBAN_REPORTS))
def test_coban_text_gives_the_reference_report(line: int, row: dict) -> None:
    reports = _parse(row["text"])
    assert reports is not None and len(reports) == 1
    report = reports[0]
    expect = row["expect"]
    attributes = report.attributes
    assert report.protocol == "gps103"
    assert report.device_id == "dev-1"
    assert attributes["sender"] == "+15551234567"
    assert "transport" not in attributes
    if expect.get("fix") is False:
        assert report.lat is None and report.valid is False
        assert attributes["lac"] == int(expect["lac"], 16)
        assert attributes["cid"] == int(expect["cid"], 16)
        if "last_known_lat" in expect:
            assert attributes["last_lat"] == pytest.approx(expect["last_known_lat"], abs=1e-6)
            assert attributes["last_lon"] == pytest.approx(expect["last_known_lon"], abs=1e-6)
    else:
        assert report.lat == pytest.approx(expect["lat"], abs=1e-5)
        assert report.lon == pytest.approx(expect["lon"], abs=1e-5)
        assert report.speed_kmh == pytest.approx(expect["speed_kmh"], abs=0.1)
        assert report.valid is True
    expected_alarm = expect.get("alarm")
    assert list(report.alarms) == ([expected_alarm] if expected_alarm else [])
    assert report.event == ("alarm" if expected_alarm else "position")
    if "course" in expect:
        assert report.course_deg == expect["course"]
    for key in ("power", "door", "ignition", "battery_pct", "battery_v", "imei", "fuel_pct", "time_raw"):
        if key in expect:
            assert attributes[key] == expect[key], key
    if "keyword" in expect:
        assert attributes["keyword"] == expect["keyword"]
    inferred = expect.get("time_inferred") or expect.get("time")
    if inferred:
        assert report.time == datetime.fromisoformat(inferred).replace(tzinfo=UTC)


@pytest.mark.parametrize(("line", "row"), ACKS, ids=_ids(ACKS))
def test_acknowledgement_is_a_command_result(line: int, row: dict) -> None:
    [report] = _parse(row["text"]) or [None]
    assert report is not None
    assert report.event == "commandResult"
    assert report.attributes["result"] == row["text"]
    assert report.lat is None


def test_xexun_link_text_is_not_claimed_as_coban() -> None:
    [row] = [r for _, r in TEXTS if r["family"] == "other"]
    assert _parse(row["text"]) is None


@pytest.mark.parametrize(
    "text", ["", "   ", "hello, are you coming tonight?", "Your balance is 5.00 USD", "lat:"]
)
def test_unknown_texts_are_none_so_the_caller_quarantines_them(text: str) -> None:
    assert _parse(text) is None


def test_empty_link_coordinates_never_become_a_position() -> None:
    [report] = _parse(
        "Lac:2FA6,2E68\nT:05/06/17 20:35\nPWR:ON Door:OFF ACC:OFF\nhttp://maps.google.com/maps?f=q&q=,&z=16"
    )
    assert report.lat is None and "last_lat" not in report.attributes


def test_tracker_zone_comes_from_the_service_centre_timestamp() -> None:
    text = "lat:14.632742\nlong:121.001790\nspeed:0.00\nT:24/06/05 16:21\nhttp://maps.google.com/maps?f=q&q=1,2&z=16"
    # The tracker runs on Manila time (+08:00); the SMS centre stamps it 40 s later in its own zone.
    received = datetime(2024, 6, 5, 10, 21, 40, tzinfo=timezone(timedelta(hours=2)))
    [report] = _parse(text, received=received)
    assert report.time == datetime(2024, 6, 5, 8, 21, tzinfo=UTC)


def _at(clock: str) -> str:
    return f"lat:14.632742\nlong:121.001790\nspeed:0.00\nT:26/11/23 {clock}\nPwr: ON"


CENTRE = datetime(2026, 11, 23, 15, 48, 20, tzinfo=UTC)


@pytest.mark.parametrize("clock", ["15:40", "15:30", "16:00", "23:55"])
def test_a_tracker_time_that_fits_no_zone_gives_the_service_centre_time(clock: str) -> None:
    [report] = _parse(_at(clock), received=CENTRE)
    assert report.time == CENTRE
    assert report.attributes["time_source"] == "sms_centre"
    assert report.attributes["time_raw"] == f"26/11/23 {clock}"


@pytest.mark.parametrize(
    ("clock", "utc"),
    [
        ("15:48", datetime(2026, 11, 23, 15, 48, tzinfo=UTC)),  # zone 0, as `relay provision` sets it
        ("15:47", datetime(2026, 11, 23, 15, 47, tzinfo=UTC)),
        ("23:47", datetime(2026, 11, 23, 15, 47, tzinfo=UTC)),  # +08:00
        ("21:17", datetime(2026, 11, 23, 15, 47, tzinfo=UTC)),  # +05:30
        ("10:48", datetime(2026, 11, 23, 15, 48, tzinfo=UTC)),  # -05:00
    ],
)
def test_a_tracker_time_within_minutes_of_a_zone_infers_that_zone(clock: str, utc: datetime) -> None:
    [report] = _parse(_at(clock), received=CENTRE)
    assert report.time == utc
    assert report.attributes["time_source"] == "inferred_zone"


def test_a_known_zone_is_used_as_it_is() -> None:
    # Written at 23:40 in +08:00, sent eight minutes later: no zone fits, the known one applies.
    [report] = _parse(_at("23:40"), received=CENTRE, zone=timedelta(hours=8))
    assert report.time == datetime(2026, 11, 23, 15, 40, tzinfo=UTC)
    assert report.attributes["time_source"] == "device_zone"
    [report] = _parse(_at("23:40"), zone=timedelta(hours=8))
    assert report.time == datetime(2026, 11, 23, 15, 40, tzinfo=UTC)


def test_a_text_without_a_date_gets_the_service_centre_time() -> None:
    [report] = _parse("help me!\nLac:c742 dc90\nT:\nLast:\nT:00:00", received=CENTRE)
    assert report.time == CENTRE
    assert report.attributes["time_source"] == "sms_centre"
    [report] = _parse("help me!\nLac:c742 dc90\nT:\nLast:\nT:00:00")
    assert report.time is None


def test_without_a_service_centre_time_the_tracker_time_is_utc() -> None:
    [report] = _parse("lat:1.5 long:2.5 speed:3 T:26/11/23 09:00", now=NOW)
    assert report.time == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def test_date_order_is_chosen_by_the_reference_time() -> None:
    received = datetime(2013, 5, 12, 14, 7, tzinfo=UTC)
    [report] = _parse("lat:43.25 lon:76.95 speed:0.00 T:12/05/13 14:06", received=received)
    assert report.time == datetime(2013, 5, 12, 14, 6, tzinfo=UTC)
    received = datetime(2012, 5, 13, 14, 7, tzinfo=UTC)
    [report] = _parse("lat:43.25 lon:76.95 speed:0.00 T:12/05/13 14:06", received=received)
    assert report.time == datetime(2012, 5, 13, 14, 6, tzinfo=UTC)


def test_unknown_sender_falls_back_to_the_imei_in_the_text() -> None:
    [row] = [r for _, r in TEXTS if "bat:100%" in r["text"]]
    [report] = _parse(row["text"], device_id=None)
    assert report.device_id == "359710040291685"


def test_alarm_keywords_map_to_traccar_names() -> None:
    base = "\nlat:1.000000\nlong:2.000000\nspeed:0.00\nT:26/11/23 10:00"
    cases = {
        "help me!": alarms.SOS,
        "low battery!": alarms.LOW_BATTERY,
        "power alarm!": alarms.POWER_CUT,
        "shock alarm!": alarms.VIBRATION,
        "stockade!": alarms.GEOFENCE,
        "Move!": alarms.MOVEMENT,
        "speed 080!": alarms.OVERSPEED,
    }
    for keyword, alarm in cases.items():
        [report] = _parse(keyword + base)
        assert report.alarms == (alarm,), keyword
        assert report.event == "alarm"


def test_check_status_reply_is_a_status_report() -> None:
    text = "Power: ON\nBattery: 100%\nGPRS: ON\nGPS: OK\nACC: OFF\nDoor: OFF\nGSM Signal: 23\nAPN: internet"
    [report] = _parse(text)
    assert report.event == "status"
    assert report.attributes["battery_pct"] == 100
    assert report.attributes["power"] is True
    assert report.attributes["ignition"] is False
    assert report.attributes["rssi"] == 23


def test_out_of_range_coordinates_are_refused_not_raised() -> None:
    assert _parse("lat:95.0 long:10.0 speed:0.00 T:26/11/23 10:00") is None


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.text(max_size=300))
def test_any_text_gives_reports_or_none_never_an_exception(text: str) -> None:
    result = _parse(text)
    assert result is None or all(report.protocol == "gps103" for report in result)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(index=st.integers(0, len(COBAN_REPORTS) - 1), cut=st.integers(0, 200), noise=st.text(max_size=5))
def test_truncated_real_texts_never_raise(index: int, cut: int, noise: str) -> None:
    text = COBAN_REPORTS[index][1]["text"]
    _parse(text[:cut] + noise)
