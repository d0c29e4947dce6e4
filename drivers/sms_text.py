"""Tracker SMS texts: Coban position replies, alarms and acknowledgements, as normalized reports.

:func:`parse_tracker_sms` is pure (time comes in) and transport-independent: the relay knows the text
came by SMS; the only SMS detail in a report is ``attributes[attr.SENDER]``.

Coban texts (protocol ``gps103``, the family's TCP protocol) come in several firmware layouts, all
with ``lat:``/``long:`` decimal degrees, ``speed:`` in km/h and a ``T:`` date in the tracker's time
zone, or ``Lac:`` cell ids when there is no fix. The date order differs between firmwares
(``yy/mm/dd`` and ``dd/mm/yy`` both exist); the reading closest to the SMS time that is not in the
future wins. ``attributes[attr.TIME_SOURCE]`` says how the report's time was found:

* ``device_zone``: ``T:`` in the tracker's zone, known to the caller (``zone``);
* ``inferred_zone``: ``T:`` in a zone inferred from the service-centre timestamp. The SMS leaves the
  tracker moments after it writes ``T:``, so ``T:`` minus that timestamp is the zone when it lies within
  :data:`ZONE_TOLERANCE` of a whole quarter hour between -12:00 and +14:00 (zone 0, what
  ``relay provision`` configures with ``time zone123456 0``, is one of them);
* ``sms_centre``: the service-centre timestamp, when ``T:`` fits no zone (a stale fix, a clock off by
  minutes) or is missing;
* ``device_utc``: ``T:`` taken as UTC, when neither a zone nor a service-centre timestamp is known.

Bofan PT-502/PT-600 texts: no public sample of a reply exists, so none is recognised and the caller
quarantines them verbatim (to re-decode once a sample confirms a layout). Unknown texts give ``None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import alarms
from . import attributes as attr
from ._model import Report
from .gps103 import KEYWORD_ALARMS

COBAN = "gps103"

#: Alarm words of Coban texts (lower case, as a phrase; a space may be missing) to alarm names: the
#: keyword table of the TCP driver, so a tracker's alarm is the same alarm by SMS and over the network.
#: A word followed by ``:`` is a field (``speed:0.00``), never an alarm.
COBAN_ALARMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(r"\b" + re.escape(word).replace(r"\ ", r"\s?") + r"\b(?!\s*:)"), alarm)
    for word, alarm in KEYWORD_ALARMS.items()
)

_NUMBER = r"-?\d+(?:\.\d+)?"
_LAT = re.compile(rf"(?<![a-z])lat\s*:\s*(?P<hemi>[NS])?\s*(?P<value>{_NUMBER})", re.IGNORECASE)
_LON = re.compile(rf"(?:long|lon|lng)\s*:\s*(?P<hemi>[EW])?\s*(?P<value>{_NUMBER})", re.IGNORECASE)
_SPEED = re.compile(rf"speed\s*:\s*(?P<value>{_NUMBER})", re.IGNORECASE)
_COURSE = re.compile(r"\bdir\s*:\s*(?P<value>\d+(?:\.\d+)?)", re.IGNORECASE)
_DATE_TIME = re.compile(
    r"""(?P<a>\d\d)/(?P<b>\d\d)/(?P<c>\d\d)   # yy/mm/dd or dd/mm/yy
        \s+(?P<hour>\d\d):(?P<minute>\d\d)(?::(?P<second>\d\d))?""",
    re.VERBOSE,
)
_LAC = re.compile(r"\blac\s*:\s*(?P<lac>[0-9a-f]{1,8})[\s,]+(?P<cid>[0-9a-f]{1,8})\b", re.IGNORECASE)
_LINK = re.compile(rf"maps\?[^\s]*?\bq=(?:loc:)?(?P<lat>{_NUMBER})\s*,\s*(?P<lon>{_NUMBER})", re.IGNORECASE)
_BATTERY_PCT = re.compile(r"\b(?:bat|battery)\s*:\s*(?P<value>\d{1,3})\s*%", re.IGNORECASE)
_BATTERY_V = re.compile(r"\b(?P<level>[FL])\s*:\s*(?P<value>\d+(?:\.\d+)?)\s*V\b")
_IMEI = re.compile(r"(?:imei:?\s*)?(?<!\d)(?P<imei>\d{15})(?!\d)", re.IGNORECASE)
_FUEL = re.compile(r"\boil\s*(?P<value>\d+(?:\.\d+)?)\s*%", re.IGNORECASE)
_ON_OFF = {"on": True, "off": False}
_STATUS_FLAGS = re.compile(r"\b(?P<name>pwr|power|door|acc)\s*:\s*(?P<value>on|off)\b", re.IGNORECASE)
_GSM_SIGNAL = re.compile(r"\bgsm signal\s*:\s*(?P<value>\d+)", re.IGNORECASE)
_STATUS_KEYS = re.compile(r"^\s*(?:power|battery|gprs|gps|acc|door|gsm signal|apn|ip)\s*:", re.I | re.M)
_ACK = re.compile(r"\b(?:ok|succeed|success|successful)\s*!*\s*$", re.IGNORECASE)
_ACK_MAX_LENGTH = 60
#: How far ahead of the reference time a tracker's clock may run before a date reading is rejected.
_FUTURE_SLACK = timedelta(days=1)
#: Zones span -12:00..+14:00; a larger gap between T: and the SMS time is a stale or wrong clock.
_MAX_ZONE = timedelta(hours=14)
_MIN_ZONE = timedelta(hours=-12)
_QUARTER = timedelta(minutes=15)
#: How far ``T:`` minus the service-centre time may be from a quarter hour for the zone to be inferred:
#: ``T:`` is cut to the minute and the SMS takes seconds to reach the centre.
ZONE_TOLERANCE = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class _Clock:
    """What the text's ``T:`` is read against."""

    #: The service-centre time, else the relay's clock.
    reference: datetime
    #: ``reference`` is the service-centre time.
    stamped: bool
    #: The tracker's UTC offset, when the caller knows it.
    zone: timedelta | None


def parse_tracker_sms(
    text: str,
    *,
    sender: str | None,
    device_id: str | None,
    received: datetime | None,
    now: datetime,
    zone: timedelta | None = None,
) -> list[Report] | None:
    """Reports from one tracker SMS, or ``None`` when the text is not a known tracker format.

    :param sender: the SMS sender (kept as ``attributes[attr.SENDER]``).
    :param device_id: the device the sender maps to (``[modem.senders]``); ``None`` falls back to an
        IMEI printed in the text, if any.
    :param received: the service-centre timestamp (zone-aware), used to resolve the tracker's date
        order and time zone; ``None`` when unknown.
    :param now: the relay's clock, the reference when ``received`` is ``None``.
    :param zone: the tracker's UTC offset (its ``time zone`` setting) when known; ``None`` = unknown.

    Position texts give one report (event ``position``, or ``alarm`` with ``alarms``); texts without a
    fix give a report without a position (``valid`` false, ``lac``/``cid``, last known position as
    ``last_lat``/``last_lon``). Acknowledgements of SMS commands give event ``commandResult`` with
    ``attributes[attr.RESULT]``, and ``check`` status replies event ``status``. Never raises for any text.
    """
    cleaned = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not cleaned:
        return None
    attributes: dict[str, Any] = {}
    if sender:
        attributes[attr.SENDER] = sender
    imei = _IMEI.search(cleaned)
    if device_id is None and imei:
        device_id = imei.group("imei")
    try:
        clock = _Clock((received or now).astimezone(UTC), received is not None, zone)
        report = _coban(cleaned, device_id, attributes, clock)
    except ValueError:
        # A range check in Report (a latitude of 95, say): not a text we can trust.
        return None
    return None if report is None else [report]


def _coban(
    text: str, device_id: str | None, attributes: dict[str, Any], clock: _Clock
) -> Report | None:
    lat_match, lon_match = _LAT.search(text), _LON.search(text)
    lac_match = _LAC.search(text)
    if lat_match and lon_match:
        return _coban_position(text, device_id, attributes, clock, lat_match, lon_match)
    if lac_match:
        return _coban_no_fix(text, device_id, attributes, clock, lac_match)
    if _STATUS_KEYS.search(text) and len(_STATUS_KEYS.findall(text)) >= 2:
        _status_flags(text, attributes)
        attributes[attr.RESULT] = text
        return Report(protocol=COBAN, device_id=device_id, event="status", attributes=attributes)
    if len(text) <= _ACK_MAX_LENGTH and "\n" not in text and _ACK.search(text):
        attributes[attr.RESULT] = text
        return Report(protocol=COBAN, device_id=device_id, event="commandResult", attributes=attributes)
    return None


def _coban_position(
    text: str,
    device_id: str | None,
    attributes: dict[str, Any],
    clock: _Clock,
    lat_match: re.Match[str],
    lon_match: re.Match[str],
) -> Report:
    lat = _signed(lat_match, "S")
    lon = _signed(lon_match, "W")
    speed = _SPEED.search(text)
    course = _COURSE.search(text)
    found_alarms, keyword = _keyword_alarms(text[: lat_match.start()], _after_fields(text))
    _common_attributes(text, attributes, keyword)
    if (battery := _BATTERY_V.search(text)) and battery.group("level") == "L":
        found_alarms.append(alarms.LOW_BATTERY)
    time = _coban_time(text, clock, attributes)
    return Report(
        protocol=COBAN,
        device_id=device_id,
        event="alarm" if found_alarms else "position",
        time=time,
        valid=True,
        lat=lat,
        lon=lon,
        speed_kmh=float(speed.group("value")) if speed else None,
        course_deg=float(course.group("value")) if course else None,
        alarms=tuple(dict.fromkeys(found_alarms)),
        attributes=attributes,
    )


def _coban_no_fix(
    text: str,
    device_id: str | None,
    attributes: dict[str, Any],
    clock: _Clock,
    lac: re.Match[str],
) -> Report:
    found_alarms, keyword = _keyword_alarms(text[: lac.start()])
    attributes[attr.LAC] = int(lac.group("lac"), 16)
    attributes[attr.CID] = int(lac.group("cid"), 16)
    link = _LINK.search(text)
    if link:
        attributes[attr.LAST_LAT] = float(link.group("lat"))
        attributes[attr.LAST_LON] = float(link.group("lon"))
    _common_attributes(text, attributes, keyword)
    return Report(
        protocol=COBAN,
        device_id=device_id,
        event="alarm" if found_alarms else "position",
        time=_coban_time(text, clock, attributes),
        valid=False,
        alarms=tuple(dict.fromkeys(found_alarms)),
        attributes=attributes,
    )


def _signed(match: re.Match[str], negative: str) -> float:
    value = float(match.group("value"))
    hemisphere = match.group("hemi")
    return -abs(value) if hemisphere and hemisphere.upper() == negative else value


def _after_fields(text: str) -> str:
    """Lines that hold no position field or link (where the TK-203 layout puts its alarm word)."""
    lines = text.split("\n")[1:]
    return "\n".join(line for line in lines if not _LAT.search(line) and "maps" not in line.lower())


def _keyword_alarms(prefix: str, elsewhere: str = "") -> tuple[list[str], str | None]:
    """Alarms named in the text (before the fields, or on a line of their own) and the keyword.

    The keyword (``help me``, ``acc off``, ``oil``, ...) is the text before the first field.
    """
    lowered = re.sub(r"https?://\S+", " ", (prefix + "\n" + elsewhere).lower())
    lowered = re.sub(r"\bimei:?\s*\d+", " ", lowered)
    found = [alarm for pattern, alarm in COBAN_ALARMS if pattern.search(lowered)]
    first_line = prefix.lower().strip().split("\n", 1)[0]
    keyword = re.sub(r"[!.]+$", "", re.sub(r"\s+", " ", first_line)).strip() or None
    if keyword:
        keyword = re.sub(r"\s*\d+(?:\.\d+)?%$", "", keyword)
    return found, keyword


def _common_attributes(text: str, attributes: dict[str, Any], keyword: str | None) -> None:
    if keyword:
        attributes[attr.KEYWORD] = keyword
        if keyword.startswith("acc on"):
            attributes[attr.IGNITION] = True
        elif keyword.startswith("acc off"):
            attributes[attr.IGNITION] = False
    _status_flags(text, attributes)
    if fuel := _FUEL.search(text):
        attributes[attr.FUEL_PCT] = float(fuel.group("value"))
    if battery := _BATTERY_PCT.search(text):
        attributes[attr.BATTERY_PCT] = int(battery.group("value"))
    if voltage := _BATTERY_V.search(text):
        attributes[attr.BATTERY_V] = float(voltage.group("value"))
    if imei := _IMEI.search(text):
        attributes[attr.IMEI] = imei.group("imei")
    if raw := _raw_time(text):
        attributes[attr.TIME_RAW] = raw


def _status_flags(text: str, attributes: dict[str, Any]) -> None:
    names = {"pwr": "power", attr.POWER: "power", attr.DOOR: "door", "acc": "ignition"}
    for match in _STATUS_FLAGS.finditer(text):
        attributes[names[match.group("name").lower()]] = _ON_OFF[match.group("value").lower()]
    if signal := _GSM_SIGNAL.search(text):
        attributes[attr.RSSI] = int(signal.group("value"))
    if battery := _BATTERY_PCT.search(text):
        attributes[attr.BATTERY_PCT] = int(battery.group("value"))


def _raw_time(text: str) -> str | None:
    match = _DATE_TIME.search(text)
    return match.group(0) if match else None


def _coban_time(text: str, clock: _Clock, attributes: dict[str, Any]) -> datetime | None:
    """The time of the text in UTC, its ``time_source`` noted in ``attributes`` (see the module
    docstring for the rules)."""
    local = _local_time(text, clock)
    if local is None:
        if not clock.stamped:
            return None
        attributes[attr.TIME_SOURCE] = "sms_centre"
        return clock.reference
    if clock.zone is not None:
        attributes[attr.TIME_SOURCE] = "device_zone"
        return local - clock.zone
    if not clock.stamped:
        attributes[attr.TIME_SOURCE] = "device_utc"
        return local
    offset = local - clock.reference
    zone = round(offset / _QUARTER) * _QUARTER
    if _MIN_ZONE <= zone <= _MAX_ZONE and abs(offset - zone) <= ZONE_TOLERANCE:
        attributes[attr.TIME_SOURCE] = "inferred_zone"
        return local - zone
    attributes[attr.TIME_SOURCE] = "sms_centre"
    return clock.reference


def _local_time(text: str, clock: _Clock) -> datetime | None:
    """The ``T:`` date and time as printed (a naive reading, labelled UTC), its date order chosen by
    the reference time; ``None`` when there is none."""
    match = _DATE_TIME.search(text)
    if match is None:
        return None
    a, b, c = (int(match.group(name)) for name in ("a", "b", "c"))
    hour, minute = int(match.group("hour")), int(match.group("minute"))
    second = int(match.group("second") or 0)
    candidates = []
    for year, month, day in ((a, b, c), (c, b, a)):
        try:
            candidates.append(datetime(2000 + year, month, day, hour, minute, second, tzinfo=UTC))
        except ValueError:
            continue
    # Compare in UTC where the zone is known; otherwise the reading may be up to a zone ahead.
    shift = clock.zone if clock.zone is not None else timedelta(0)
    ahead = timedelta(0) if clock.zone is not None else _MAX_ZONE
    candidates = [value for value in candidates if value - shift <= clock.reference + ahead + _FUTURE_SLACK]
    if not candidates:
        return None
    return min(candidates, key=lambda value: abs(value - shift - clock.reference))
