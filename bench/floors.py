"""Decode floors: per protocol, the least work that turns a frame into the same fields as its driver.

A floor is one compiled regex (text protocols) or a few ``struct`` reads (binary protocols) over the
bytes as received (the regex finds the frames too, so the floor frames as well as parses) and builds a
:class:`Fix` per position: device id, time (an aware UTC ``datetime``), validity, lat, lon, speed in
km/h, course, checked against the same ranges :class:`drivers.Report` checks. It handles only the
common position layouts and knows nothing of replies, alarms or attributes: it is what CPython
allows for the essential work, the yardstick the drivers are measured against (``python -m bench``
prints driver ÷ floor). The bench times it only on the vectors where it yields exactly the driver's
fields (:func:`bench.decode.floor_samples`), so a floor that skipped work would show up as not
covering them.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import parse_qsl

KNOTS = 1.852


class Fix(NamedTuple):
    """The fields every floor produces, as the driver's :class:`drivers.Report` has them."""

    device_id: str | None
    time: datetime | None
    valid: bool
    lat: float
    lon: float
    speed_kmh: float
    course_deg: float


def fix(
    device_id: str | None,
    time: datetime | None,
    valid: bool,
    lat: float,
    lon: float,
    speed: float,
    course: float,
) -> Fix:
    """A :class:`Fix` checked as a ``Report`` is: plausible numbers.

    :raises ValueError: a number out of range.
    """
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0 and 0.0 <= speed <= 2000.0):
        raise ValueError(f"implausible fix {device_id!r} {lat} {lon} {speed}")
    if not 0.0 <= course <= 360.0:
        raise ValueError(f"course {course} out of range")
    return Fix(device_id, time, valid, lat, lon, speed, course)


def _nmea(degrees: bytes, minutes: bytes, hemisphere: bytes) -> float:
    value = int(degrees or 0) + float(minutes) / 60
    return -value if hemisphere == b"S" or hemisphere == b"W" else value


# -- gps103: imei:<id>,<keyword>,<local yymmddhhmm[ss]>,<rfid>,F,<utc hhmmss[.sss]>,A|V,
#    lat,N,lon,E,knots,course

#: One gps103 data message with a GPS fix, terminator included (also the floor server's parser).
GPS103 = re.compile(
    rb"imei:(\d+),[^,;]*,(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)\d{0,2},[^,;]*,F,(\d\d)(\d\d)(\d\d)[.\d]*,([AV]),"
    rb"(\d*)(\d\d\.\d+),([NS]),(\d*)(\d\d\.\d+),([EW]?),([\d.]*),([\d.]*)[^;]*;?"
)


def gps103_fix(m: re.Match[bytes]) -> Fix:
    """The fields of one :data:`GPS103` match."""
    (imei, yy, mo, dd, hh, mi, uh, um, us, valid, la, lam, lah, lo, lom, loh, knots, course) = m.groups()
    local = datetime(2000 + int(yy), int(mo), int(dd), int(hh), int(mi), int(us), tzinfo=UTC)
    # The device sends its local date and hh:mm plus UTC hhmmss: the difference is its zone offset.
    offset = int(hh) * 60 + int(mi) - int(uh) * 60 - int(um)
    if offset > 720:
        offset -= 1440
    elif offset < -720:
        offset += 1440
    return fix(
        imei.decode(),
        local - timedelta(minutes=offset) if offset else local,
        valid == b"A",
        _nmea(la, lam, lah),
        _nmea(lo, lom, loh),
        float(knots) * KNOTS if knots else 0.0,
        float(course) if course else 0.0,
    )


def gps103(data: bytes) -> list[Fix]:
    return [gps103_fix(m) for m in GPS103.finditer(data)]


# -- h02: *HQ,<id>,V1,hhmmss,A|V,ddmm.mmmm,N,dddmm.mmmm,E,knots,course,ddmmyy,<status>#

_H02 = re.compile(
    rb"\*\w\w,(\d*),V\w*,(\d\d)(\d\d)(\d\d),([ABV]|\d+)?,(\d*)(\d\d\.\d+),([NS]), *(\d*)(\d\d\.\d+),([EW]), *"
    rb"(\d+\.?\d*),(\d+\.?\d*)?,(?:\d+,(?=\d{6}))?(\d\d)(\d\d)(\d\d)[^#]*#"
)


def h02(data: bytes) -> list[Fix]:
    found = []
    for m in _H02.finditer(data):
        (device, hh, mi, ss, valid, la, lam, lah, lo, lom, loh, knots, course, dd, mo, yy) = m.groups()
        found.append(
            fix(
                device.decode(),
                datetime(2000 + int(yy), int(mo), int(dd), int(hh), int(mi), int(ss), tzinfo=UTC),
                valid == b"A" or (valid is not None and valid.isdigit()),
                _nmea(la, lam, lah),
                _nmea(lo, lom, loh),
                float(knots) * KNOTS,
                float(course) if course else 0.0,
            )
        )
    return found


# -- tk103: (<11-12 char id><BR0x|BP05<imei>|BO01<n>><yymmdd>A|V<ddmm.mmmm>N<dddmm.mmmm>E
#    <km/h, 5 chars><hhmmss><course, 6 chars>...)

_TK103 = re.compile(
    rb"\((\w{11,12}?)(?:BR0\d|BP0[45]\d{0,15}|BO01\d)(\d\d)(\d\d)(\d\d)([AV]) *(\d*)(\d\d\.\d+)([NS]) *(\d*)"
    rb"(\d\d\.\d+)([EW])([ \d.]{5})(\d\d)(\d\d)(\d\d)([ \d.]{6})[^)]*\)"
)


def tk103(data: bytes) -> list[Fix]:
    found = []
    for m in _TK103.finditer(data):
        (device, yy, mo, dd, valid, la, lam, lah, lo, lom, loh, speed, hh, mi, ss, course) = m.groups()
        found.append(
            fix(
                device.decode(),
                datetime(2000 + int(yy), int(mo), int(dd), int(hh), int(mi), int(ss), tzinfo=UTC),
                valid == b"A",
                _nmea(la, lam, lah),
                _nmea(lo, lom, loh),
                float(speed.strip() or 0),
                float(course.strip() or 0),
            )
        )
    return found


# -- watch: [XX*<id>*<len>*UD|AL|UD2|UD_LTE...,ddmmyy,hhmmss,A|V,lat,N,lon,E,km/h,course,...]

_WATCH = re.compile(
    rb"\[\w\w\*(\w+)(?:\*[0-9A-Fa-f]{4})+\*(?:UD|AL|WT)\w*,(\d\d)(\d\d)(\d\d),(\d\d)(\d\d)(\d\d),([AV]),"
    rb" *(-?[\d.]+),([NS]?), *(-?[\d.]+),([EW]?),([\d.]*),([\d.]*),[^\]]*\]"
)


def watch(data: bytes) -> list[Fix]:
    found = []
    for m in _WATCH.finditer(data):
        (device, dd, mo, yy, hh, mi, ss, valid, lat, lah, lon, loh, speed, course) = m.groups()
        latitude = float(lat)
        longitude = float(lon)
        found.append(
            fix(
                device.decode(),
                datetime(2000 + int(yy), int(mo), int(dd), int(hh), int(mi), int(ss), tzinfo=UTC),
                valid == b"A",
                -latitude if lah == b"S" and latitude > 0 else latitude,
                -longitude if loh == b"W" and longitude > 0 else longitude,
                float(speed or 0),
                float(course or 0),
            )
        )
    return found


# -- pt502: $POS|$PHO..|$HDA..,<id>,hhmmss.sss,A|V,ddmm.mmmm,N,dddmm.mmmm,E,knots,course,ddmmyy,...

_PT502 = re.compile(
    rb"\$[A-Z]{3}[\w-]*,(\w+),(\d\d)(\d\d)(\d\d)[.\d]*,([AV]),(\d*)(\d\d\.\d+),([NS]),(\d*)(\d\d\.\d+),([EW]),"
    rb"([\d.]*),([\d.]*),(\d\d)(\d\d)(\d\d),[^\r\n#]*#?"
)


def pt502(data: bytes) -> list[Fix]:
    found = []
    for m in _PT502.finditer(data):
        (device, hh, mi, ss, valid, la, lam, lah, lo, lom, loh, knots, course, dd, mo, yy) = m.groups()
        found.append(
            fix(
                device.decode(),
                datetime(2000 + int(yy), int(mo), int(dd), int(hh), int(mi), int(ss), tzinfo=UTC),
                valid == b"A",
                _nmea(la, lam, lah),
                _nmea(lo, lom, loh),
                float(knots) * KNOTS if knots else 0.0,
                float(course) if course else 0.0,
            )
        )
    return found


# -- osmand: GET /?id=..&timestamp=<unix s>&lat=..&lon=..&speed=<knots>&bearing=.. HTTP/1.1

_OSMAND = re.compile(rb"GET /\?([^ ]*) HTTP/1\.[01]\r\n(?:[^\r\n]*\r\n)*?\r\n")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def osmand(data: bytes) -> list[Fix]:
    found = []
    for m in _OSMAND.finditer(data):
        query = dict(parse_qsl(m.group(1).decode()))
        if "lat" not in query or "id" not in query or "timestamp" not in query:
            continue
        stamp = query["timestamp"]
        if stamp.isdigit():
            number = int(stamp)
            when = _EPOCH + (timedelta(milliseconds=number) if number > 10**11 else timedelta(seconds=number))
        else:
            when = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
        found.append(
            fix(
                query["id"],
                when,
                query.get("valid", "true") in ("true", "1"),
                float(query["lat"]),
                float(query["lon"]),
                float(query.get("speed") or 0) * KNOTS,
                float(query.get("bearing") or query.get("heading") or 0),
            )
        )
    return found


# -- gt06: 78 78 <len> 12|22 <yy mm dd hh mi ss> <gps byte> <lat u32> <lon u32> <speed> <course u16> ...

_GT06_POSITION = struct.Struct(">BBBBBBBIIBH")
_GT06_POSITION_TYPES = frozenset({0x10, 0x11, 0x12, 0x16, 0x22, 0x26, 0x27, 0x32, 0x37, 0xA0, 0xA4})


def gt06(data: bytes, device_id: str = "") -> list[Fix]:
    """Position packets (0x12, 0x22) of a session whose login gave ``device_id``."""
    found = []
    at = 0
    while (at := data.find(b"\x78\x78", at)) >= 0 and at + 5 <= len(data):
        length = data[at + 2]
        kind = data[at + 3]
        if kind == 0x01:  # login: 8 bytes of BCD IMEI
            device_id = data[at + 4 : at + 12].hex().lstrip("0")
        elif kind in _GT06_POSITION_TYPES:
            yy, mo, dd, hh, mi, ss, _gps, lat, lon, speed, flags = _GT06_POSITION.unpack_from(data, at + 4)
            latitude = lat / 1_800_000
            longitude = lon / 1_800_000
            found.append(
                fix(
                    device_id,
                    datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=UTC),
                    bool(flags & 0x1000),
                    latitude if flags & 0x0400 else -latitude,
                    -longitude if flags & 0x0800 else longitude,
                    float(speed),
                    float(flags & 0x03FF),
                )
            )
        at += length + 5
    return found


# -- teltonika: 00000000 <len u32> <codec 08|8E> <count> records of
#    <ms u64><priority><lon i32><lat i32><alt i16><angle u16><satellites><speed u16> then IO elements

_TELTONIKA_GPS = struct.Struct(">QBiihHBH")
_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")


def teltonika(data: bytes, device_id: str = "") -> list[Fix]:
    """The records of a TCP codec 8 / 8E AVL packet of a session whose IMEI was ``device_id``."""
    found: list[Fix] = []
    if data[:4] != b"\x00\x00\x00\x00" or len(data) < 10 or data[8] not in (0x08, 0x8E):
        return found
    extended = data[8] == 0x8E
    count = _U16 if extended else _U8
    at = 10
    for _ in range(data[9]):
        millis, _priority, lon, lat, _alt, angle, satellites, speed = _TELTONIKA_GPS.unpack_from(data, at)
        found.append(
            fix(
                device_id,
                _EPOCH + timedelta(milliseconds=millis),
                satellites != 0,
                lat / 10_000_000,
                lon / 10_000_000,
                float(speed),
                float(angle),
            )
        )
        # Skip the IO elements: event id and total, then id+value groups of 1, 2, 4 and 8 bytes.
        at += _TELTONIKA_GPS.size + 2 * count.size
        for width in (1, 2, 4, 8):
            (n,) = count.unpack_from(data, at)
            at += count.size + n * (count.size + width)
        if extended:  # and variable-length values: id u16, length u16, bytes
            (n,) = _U16.unpack_from(data, at)
            at += 2
            for _ in range(n):
                (length,) = _U16.unpack_from(data, at + 2)
                at += 4 + length
    return found


#: Each protocol's floor, by driver name.
FLOORS: dict[str, Callable[[bytes], list[Fix]]] = {
    "gps103": gps103,
    "h02": h02,
    "tk103": tk103,
    "watch": watch,
    "pt502": pt502,
    "osmand": osmand,
    "gt06": gt06,
    "teltonika": teltonika,
}
