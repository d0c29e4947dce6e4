"""tk103: the original TK103/TK102 "(...)" protocol, over TCP and UDP.

A frame is ``(`` ... ``)``; text between a pair of ``$`` (a command's answer) may contain ``)``.
Two layouts:

* classic: ``(<12-char id><4-char type><data>)``, the position packed without separators:
  ``<yymmdd><A|V><ddmm.mmmm><N|S><dddmm.mmmm><E|W><speed km/h, 5 chars><hhmmss><course, 6 chars>
  <charge><ignition><3 io hex><fuel 3 hex>L<odometer hex>[+ddd.d temperature]``;
* comma: ``(<imei>,<type>,<ddmmyy>,<A|V>,<lat><N|S>,<lon><E|W>,<speed>,<hhmmss>,<course>,...)``.

The device waits for ``(<id>AP01HSO)`` after its ``BP00`` handshake and ``(<id>AP05)`` after its
``BP05`` login; like Traccar, only classic frames (12-character id) are answered. Speeds are km/h.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from . import alarms
from . import attributes as attr
from ._model import (
    Command,
    CommandType,
    Decoded,
    DriverError,
    InvalidCommand,
    Report,
    Transport,
    UnsupportedCommand,
)
from ._registry import register
from ._session import Match, Session
from ._text import nmea_coordinate, nmea_matched, utc_datetime

PROTOCOL = "tk103"

FRAME_START = b"("
FRAME_END = 0x29  # ")"
TEXT_QUOTE = 0x24  # "$": a command answer's text, which may hold ")"
#: Characters of the id in the classic layout.
CLASSIC_ID = 12
#: How far into a stream's first bytes the sniffer looks for "(" past leading noise.
SNIFF_WINDOW = 64

#: ``BO01`` alarm digit to alarm.
BO01_ALARMS: dict[str, str] = {
    "1": alarms.ACCIDENT,
    "2": alarms.SOS,
    "3": alarms.VIBRATION,
    "4": alarms.LOW_SPEED,
    "5": alarms.OVERSPEED,
    "6": alarms.GEOFENCE_EXIT,
}
#: ``BQ81`` alarm digit to alarm.
BQ81_ALARMS: dict[str, str] = {
    "0": alarms.LOW_BATTERY,
    "1": alarms.OVERSPEED,
    "2": alarms.IDLE,
    "3": alarms.HARD_ACCELERATION,
    "4": alarms.HARD_BRAKING,
    "5": alarms.TEMPERATURE,
}
#: Message type to alarm (the ZC.., DW3., DW5. families are the same events in three dialects).
TYPE_ALARMS: dict[str, str] = {
    **dict.fromkeys(("ZC11", "DW31", "DW51"), alarms.MOVEMENT),
    **dict.fromkeys(("ZC12", "DW32", "DW52"), alarms.LOW_BATTERY),
    **dict.fromkeys(("ZC13", "DW33", "DW53"), alarms.POWER_CUT),
    **dict.fromkeys(("ZC17", "DW37", "DW57"), alarms.REMOVING),
    **dict.fromkeys(("ZC25", "DW3E", "DW5E"), alarms.SOS),
    **dict.fromkeys(("ZC26", "DW3F", "DW5F"), alarms.TAMPERING),
    **dict.fromkeys(("ZC27", "DW40", "DW60"), alarms.LOW_POWER),
}
#: Message type to ignition state.
TYPE_IGNITION: dict[str, bool] = {
    **dict.fromkeys(("ZC15", "DW35", "DW55", "ZC29", "DW42", "DW62"), True),
    **dict.fromkeys(("ZC16", "DW36", "DW56"), False),
}
#: The keyword form of an alarm's data: ``,ALARM,<digit>,<number>,`` before the date (Traccar's
#: ``.text(",ALARM,")`` branch); the digit is the BO01/BQ81 alarm digit.
_ALARM_KEYWORD = re.compile(r",?ALARM,(?P<digit>\d),\d+,")
#: ``ZC20`` battery level (0..6) to percent.
BATTERY_LEVELS: dict[int, int] = {6: 100, 5: 80, 4: 50, 3: 20, 2: 10}
#: ``ZC20`` voltages of 65535 and a level of 255 mean "not measured".
NOT_MEASURED = 65535

_TYPE = re.compile(r"[A-Z]{2}[0-9][0-9A-Z]")
_COMMA = re.compile(r"(?P<id>[^,()]{1,20}),(?P<type>[A-Z]{2}[0-9][0-9A-Z]),(?P<data>.*)", re.DOTALL)
_HEADER = re.compile(
    rb"""
    \(
    (?:
        [0-9A-Za-z]{1,20},[A-Z]{2}[0-9][0-9A-Z][,)]    # (<imei>,<type>,
    |
        [0-9A-Za-z]{1,17}[A-Z]{2}[0-9][0-9A-Z]          # (<id><type>
    )
    """,
    re.VERBOSE,
)

# The classic packed position, one field per line (Traccar's Tk103ProtocolDecoder pattern, restated).
_CLASSIC_PATTERN = r"""
    (?P<prefix>.*?)                               # type data: an IMEI (BP05), an alarm digit (BO01)
    (?P<date>\d{6}),?                             # yymmdd
    (?P<validity>[AV]),?
    \ *(?P<lat>\d*\d\d\.\d+)(?P<lat_hemisphere>[NS]),?
    \ *(?P<lon>\d*\d\d\.\d+)(?P<lon_hemisphere>[EW]),?
    (?P<speed>[\ \d.]{1,5})(?:\d*,)?              # km/h
    (?P<time>\d{6}),?                             # hhmmss
    (?:
        (?:(?P<course6>[\ \d.]{6})|(?P<course2>\d\d)),?
        (?P<charge>[01])
        (?P<ignition>[01])
        (?P<io1>[0-9A-Fa-f])
        (?P<io2>[0-9A-Fa-f])
        (?P<io3>[0-9A-Fa-f])
        (?P<fuel>[0-9A-Fa-f]{3})
        L(?P<odometer>[0-9A-Fa-f]+)
    |
        (?P<course>\d+\.\d+)
    )?
    (?P<rest>.*?)
    (?P<temperature>[+-]\d{3}\.\d)?
    """
_CLASSIC = re.compile(_CLASSIC_PATTERN, re.VERBOSE | re.DOTALL)
#: A whole classic frame, ``(<12-character id><type><classic position>)``: the common frame, decoded
#: in one match (:meth:`Tk103Session.decode`); its groups are those :data:`_CLASSIC` gives the same
#: frame's data on the general path.
_FAST = re.compile(
    r"\( (?P<id>[0-9A-Za-z]{12}) (?P<type>[A-Z]{2}[0-9][0-9A-Z])" + _CLASSIC_PATTERN + r"\)",
    re.VERBOSE | re.DOTALL,
)
#: Types whose data is no classic position (see :meth:`Tk103Session._decode_body`).
_NOT_POSITIONS = frozenset({"BP00", "ZC20", "ZC03", "BZ00", "BV00"})


def sniff(head: bytes, transport: Transport) -> Match:
    """``(`` + an id and a four-character type (``BP05``, ``ZC20``...), packed or comma-separated.

    Leading noise before the ``(`` is tolerated within the first :data:`SNIFF_WINDOW` bytes, as long as
    a whole header follows it.
    """
    start = head.find(FRAME_START, 0, SNIFF_WINDOW)
    if start < 0:
        return Match.MORE if not head else Match.NO
    candidate = head[start:]
    if _HEADER.match(candidate):
        return Match.YES
    if start == 0 and len(candidate) < 24 and b")" not in candidate:
        return Match.MORE
    return Match.NO


class Tk103Session(Session):
    protocol = PROTOCOL
    transports = frozenset({Transport.TCP, Transport.UDP})
    # Command answers (ZC03) are the longest frames: a few hundred characters of settings text.
    max_frame = 2048

    def _next_frame(self) -> bytes | None:
        buffer = self._buffer
        start = buffer.find(FRAME_START)
        if start < 0:
            buffer.clear()  # noise between frames
            return None
        del buffer[:start]
        end = buffer.find(FRAME_END, 1)
        if end < 0:
            return None
        quote = buffer.find(TEXT_QUOTE, 1, end)
        if quote < 0:  # the usual case: no quoted text before the first ')'
            return self._cut(end + 1)
        quoted = False
        for index in range(1, len(buffer)):
            byte = buffer[index]
            if byte == TEXT_QUOTE:
                quoted = not quoted
            elif byte == FRAME_END and not quoted:
                return self._cut(index + 1)
        return None

    def decode(self, frame: bytes, *, now: datetime) -> Decoded:
        text = frame.decode("latin-1")
        # The common frame in one match. No comma in its first 21 characters: the comma layout
        # (_COMMA, tried first by the general path) cannot match it.
        if (found := _FAST.fullmatch(text)) is not None and frame.find(b",", 1, 22) < 0:
            kind = found["type"]
            if kind not in _NOT_POSITIONS:
                device_id = found["id"]
                try:
                    report = _classic_report(device_id, kind, found)
                except ValueError:
                    pass  # the general path says why
                else:
                    replies = (f"({device_id}AP05)".encode("latin-1"),) if kind == "BP05" else ()
                    return Decoded((report,), replies, device_id)
        text = text.strip()
        if not text.startswith("("):
            raise DriverError(PROTOCOL, "frame does not start with '('", data=frame)
        body = text[1:].removesuffix(")")
        try:
            return self._decode_body(body, frame)
        except DriverError:
            raise
        except (ValueError, IndexError) as error:
            raise DriverError(PROTOCOL, f"bad frame: {error}", data=frame) from None

    def _decode_body(self, body: str, frame: bytes) -> Decoded:
        comma = _COMMA.fullmatch(body)
        if comma:
            device_id, kind, data = comma["id"], comma["type"], comma["data"]
        elif _TYPE.fullmatch(body[CLASSIC_ID : CLASSIC_ID + 4]):
            device_id, kind = body[:CLASSIC_ID], body[CLASSIC_ID : CLASSIC_ID + 4]
            data = body[CLASSIC_ID + 4 :]
        elif found := _TYPE.search(body, 1):
            device_id, kind, data = body[: found.start()], found.group(), body[found.end() :]
        else:
            raise DriverError(PROTOCOL, "no id and message type", data=frame)
        replies: tuple[bytes, ...] = ()
        classic = not comma and len(device_id) == CLASSIC_ID
        if kind == "BP00":
            report = Report(protocol=PROTOCOL, device_id=device_id, event="heartbeat")
            replies = (f"({device_id}AP01HSO)".encode("latin-1"),) if classic else ()
            return Decoded((report,), replies, device_id=device_id)
        if kind == "BP05" and classic:
            replies = (f"({device_id}AP05)".encode("latin-1"),)
        if kind == "ZC20":
            report = _battery_report(device_id, data)
        elif kind == "ZC03":
            report = _command_result(device_id, data)
        elif kind.startswith("DW5") and comma:
            report = _cells_wifi(device_id, kind, data)
        elif kind == "BZ00":
            report = _cells(device_id, data)
        elif kind == "BV00":
            vin = {attr.VIN: data}
            report = Report(protocol=PROTOCOL, device_id=device_id, event="status", attributes=vin)
        elif comma:
            report = _comma_position(device_id, kind, data)
        else:
            report = _classic_position(device_id, kind, data)
        if report is None:
            attributes = {attr.TYPE: kind, attr.DATA: data}
            report = Report(protocol=PROTOCOL, device_id=device_id, event="message", attributes=attributes)
        return Decoded((report,), replies, device_id=device_id)

    supported_commands = frozenset({
        CommandType.CUSTOM, CommandType.ENGINE_STOP, CommandType.ENGINE_RESUME,
        CommandType.OUTPUT_CONTROL, CommandType.POSITION_SINGLE, CommandType.POSITION_PERIODIC,
        CommandType.POSITION_STOP, CommandType.REBOOT_DEVICE,
    })  # fmt: skip

    def _encode(self, command: Command) -> bytes:
        params = command.params
        match command.type:
            case CommandType.ENGINE_STOP:
                body = "AV010"
            case CommandType.ENGINE_RESUME:
                body = "AV011"
            case CommandType.OUTPUT_CONTROL:
                body = f"AV00{params['data']}"
            case CommandType.POSITION_SINGLE:
                body = "AP00"
            case CommandType.POSITION_PERIODIC:
                body = f"AR00{_interval(params['frequency'])}0000"
            case CommandType.POSITION_STOP:
                body = "AR0000000000"
            case CommandType.REBOOT_DEVICE:
                body = "AT00"
            case CommandType.CUSTOM:
                text = str(params["data"])
                if text.startswith("("):
                    return text.encode("latin-1")  # a complete frame, sent as it is
                body = text
            case _:
                raise UnsupportedCommand(PROTOCOL, f"command {str(command.type)!r} is not supported")
        return f"({command.device_id}{body})".encode("latin-1")


def _interval(seconds: Any) -> str:
    """The ``AR00`` interval: seconds as four hex digits (at most 0xFFFF)."""
    value = int(seconds)
    if not 0 < value <= 0xFFFF:
        raise InvalidCommand(PROTOCOL, f"positionPeriodic: frequency {value} s is outside 1..65535")
    return f"{value:04X}"


def _alarm_data(data: str) -> str:
    """The alarm digit(s) of a type's data: the digits themselves, or the digit of the keyword form."""
    keyword = _ALARM_KEYWORD.fullmatch(data)
    return keyword["digit"] if keyword else data


def _alarms_of(kind: str, data: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Alarms and ignition a message type (and, for BO01/BQ81, its alarm data) stands for.

    BO01 reads the first digit (Traccar ``charAt(0)``); BQ81 the whole number, so ``12`` is no alarm.
    """
    found: list[str] = []
    attributes: dict[str, Any] = {}
    data = _alarm_data(data)
    if kind == "BO01" and data[:1] in BO01_ALARMS:
        found.append(BO01_ALARMS[data[:1]])
    elif kind == "BQ81" and data.isdigit() and str(int(data)) in BQ81_ALARMS:
        found.append(BQ81_ALARMS[str(int(data))])
    elif kind in TYPE_ALARMS:
        found.append(TYPE_ALARMS[kind])
    if kind in TYPE_IGNITION:
        attributes[attr.IGNITION] = TYPE_IGNITION[kind]
    return tuple(found), attributes


def _fix_time(date: str, hhmmss: str, *, day_first: bool) -> datetime | None:
    """The fix time, or ``None`` for a date the device never set (``000007``, month 18...)."""
    ddmmyy = date if day_first else date[4:6] + date[2:4] + date[0:2]
    try:
        return utc_datetime(ddmmyy, hhmmss)
    except ValueError:
        return None


def _classic_position(device_id: str, kind: str, data: str) -> Report | None:
    match = _CLASSIC.fullmatch(data)
    if match is None:
        return None
    return _classic_report(device_id, kind, match)


#: What :func:`_alarms_of` made of the (type, prefix) pairs seen (it is pure); bounded, as the prefix
#: is whatever the device sends.
_ALARMS_CACHE: dict[tuple[str, str], tuple[tuple[str, ...], dict[str, Any]]] = {}
_ALARMS_CACHE_SIZE = 256


def _classic_report(device_id: str, kind: str, match: re.Match[str]) -> Report:
    """The report of a classic position (a :data:`_CLASSIC` or :data:`_FAST` match)."""
    (prefix, date, hhmmss, validity, lat_text, lat_hemisphere, lon_text, lon_hemisphere, speed,
     course6, course2, course_decimal, charge, temperature, rest) = match.group(
        "prefix", "date", "time", "validity", "lat", "lat_hemisphere", "lon", "lon_hemisphere", "speed",
        "course6", "course2", "course", "charge", "temperature", "rest",
    )  # fmt: skip
    if (known := _ALARMS_CACHE.get((kind, prefix))) is None:
        known = _alarms_of(kind, prefix)
        if len(_ALARMS_CACHE) < _ALARMS_CACHE_SIZE:
            _ALARMS_CACHE[kind, prefix] = known
    found, attributes = known[0], dict(known[1])
    attributes[attr.TYPE] = kind
    if kind == "BP05" and prefix.isdigit():
        attributes[attr.IMEI] = prefix
    if charge is not None:
        ignition, io1, io2, io3, fuel, odometer = match.group(
            "ignition", "io1", "io2", "io3", "fuel", "odometer"
        )
        attributes[attr.CHARGE] = charge == "0"  # 0 = on external power, charging
        attributes[attr.IGNITION] = ignition == "1"
        io1 = int(io1, 16)
        attributes[attr.INPUT] = io1 & 0x01
        attributes[attr.PANIC] = bool(io1 & 0x02)
        attributes[attr.OUTPUT] = (io1 >> 2) & 0x01
        attributes["io2"] = int(io2, 16)
        attributes["io3"] = int(io3, 16)
        attributes[attr.FUEL_RAW] = int(fuel, 16)
        attributes[attr.ODOMETER_M] = int(odometer, 16)
    if temperature:
        attributes[attr.TEMPERATURE_C] = float(temperature)
    if rest and (extra := rest.strip(", ")):
        attributes[attr.EXTRA] = extra
    course = course6 or course2 or course_decimal
    try:  # the date and time are six digits each (the regex): _fix_time, without its checks
        time: datetime | None = datetime(
            2000 + int(date[0:2]), int(date[2:4]), int(date[4:6]),
            int(hhmmss[0:2]), int(hhmmss[2:4]), int(hhmmss[4:6]), tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        time = None
    lat = nmea_matched(lat_text, lat_hemisphere)
    lon = nmea_matched(lon_text, lon_hemisphere)
    if time is None:
        attributes[attr.DEVICE_TIME] = f"{date},{hhmmss}"
        if lat == lon == 0:
            # A tracker that never had a fix: no date, zeros for a position. Nothing to place on a map.
            return Report(
                protocol=PROTOCOL, device_id=device_id, event="status", alarms=found, attributes=attributes
            )
    return Report(
        PROTOCOL,
        device_id,
        _event(kind, found),
        time,
        validity == "A",
        lat,
        lon,
        None,
        float(speed.strip() or 0),
        float(course.strip() or 0) if course else 0.0,
        None,
        found,
        None,
        attributes,
    )


def _event(kind: str, found: tuple[str, ...]) -> str:
    if kind == "BP05":
        return "login"
    return "alarm" if found else "position"


def _comma_position(device_id: str, kind: str, data: str) -> Report | None:
    """``[ALARM,<digit>,<number>,]ddmmyy,A|V,<lat><N|S>,<lon><E|W>,speed,hhmmss,course[,...]``."""
    alarm = ""
    if keyword := _ALARM_KEYWORD.match("," + data):
        alarm, data = keyword.group(), data[keyword.end() - 1 :]
    fields = data.split(",")
    if len(fields) < 6 or fields[1] not in ("A", "V") or fields[2][-1:] not in ("N", "S"):
        return None
    found, attributes = _alarms_of(kind, alarm)
    attributes[attr.TYPE] = kind
    time = _fix_time(fields[0], fields[5], day_first=True)
    if time is None:
        attributes[attr.DEVICE_TIME] = f"{fields[0]},{fields[5]}"
    if len(fields) > 7 and any(fields[7:]):
        attributes[attr.EXTRA] = ",".join(fields[7:])
    return Report(
        protocol=PROTOCOL,
        device_id=device_id,
        event=_event(kind, found),
        time=time,
        valid=fields[1] == "A",
        lat=nmea_coordinate(fields[2][:-1], fields[2][-1]),
        lon=nmea_coordinate(fields[3][:-1], fields[3][-1]),
        speed_kmh=float(fields[4] or 0),
        course_deg=float(fields[6] or 0) if len(fields) > 6 else 0.0,
        alarms=found,
        attributes=attributes,
    )


def _battery_report(device_id: str, data: str) -> Report:
    """``ZC20,ddmmyy,hhmmss,level 0..6,battery 10 mV,power 100 mV,installed``."""
    fields = data.split(",")
    attributes: dict[str, Any] = {}
    level, battery, power = int(fields[2]), int(fields[3]), int(fields[4])
    if level in BATTERY_LEVELS:
        attributes[attr.BATTERY_PCT] = BATTERY_LEVELS[level]
    if battery != NOT_MEASURED:
        attributes[attr.BATTERY_V] = round(battery * 0.01, 2)
    if power != NOT_MEASURED:
        attributes[attr.POWER_V] = round(power * 0.1, 1)
    return Report(
        protocol=PROTOCOL,
        device_id=device_id,
        event="status",
        time=_fix_time(fields[0], fields[1], day_first=True),
        attributes=attributes,
    )


def _command_result(device_id: str, data: str) -> Report:
    """``ZC03,ddmmyy,hhmmss,$<text>$``."""
    fields = data.split(",", 2)
    text = fields[2] if len(fields) > 2 else ""
    result = text[1:].split("$", 1)[0] if text.startswith("$") else text
    return Report(
        protocol=PROTOCOL,
        device_id=device_id,
        event="commandResult",
        time=_fix_time(fields[0], fields[1], day_first=True) if len(fields) > 2 else None,
        attributes={attr.RESULT: result},
    )


def _cells_wifi(device_id: str, kind: str, data: str) -> Report:
    """``DW5x,mcc,mnc,lac,cid,wifi count,(mac*rssi*channel,)*count,ddmmyy,hhmmss``."""
    fields = data.split(",")
    count = int(fields[4])
    wifi = []
    for entry in fields[5 : 5 + count]:
        mac, rssi, *_ = entry.split("*")
        wifi.append({"mac": mac, attr.RSSI: int(rssi)})
    found, attributes = _alarms_of(kind, "")
    mcc, mnc, lac, cid = (int(field) for field in fields[:4])
    attributes.update({attr.MCC: mcc, attr.MNC: mnc, attr.LAC: lac, attr.CID: cid})
    if wifi:
        attributes[attr.WIFI] = wifi
    return Report(
        protocol=PROTOCOL,
        device_id=device_id,
        event="alarm" if found else "cells",
        time=_fix_time(fields[5 + count], fields[6 + count], day_first=True),
        alarms=found,
        attributes=attributes,
    )


def _cells(device_id: str, data: str) -> Report:
    """``BZ00,mcc,mnc,lac hex,cid hex,...`` (the serving cell first)."""
    fields = data.lstrip(",").split(",")
    attributes = {
        attr.MCC: int(fields[0]),
        attr.MNC: int(fields[1]),
        attr.LAC: int(fields[2], 16),
        attr.CID: int(fields[3], 16),
    }
    return Report(protocol=PROTOCOL, device_id=device_id, event="cells", attributes=attributes)


DRIVER = register(PROTOCOL, sniff, Tk103Session)
