"""h02: the SinoTrack ST-90x "*HQ" family (H02), over TCP and UDP.

Three frame shapes share one stream:

* text ``*XX,<id>,<type>,...#`` (``XX`` is a two-letter maker code: ``HQ``, ``TH``, ``hq``...);
* binary ``$`` frames: ``$``, the id in BCD (5 bytes, or 8 bytes holding a 15-digit IMEI), then BCD
  time, date, latitude, a battery byte, longitude with a flag nibble, speed and course, a 32-bit status;
  32 bytes in all (42 with the long id), sometimes followed by extension bytes this driver keeps in the
  frame but does not decode;
* ``X`` frames with the binary layout (decoded like ``$`` frames).

The 32 status bits are active low: a cleared bit raises an alarm (bit 0 vibration, bit 1 or 18 sos,
bit 2 overspeed, bit 19 powerCut); a set bit 10 means ignition on. Speeds on the wire are knots.

No reply is required. Like Traccar, the driver echoes heartbeats (``V0``, ``HTBT``), answers ``V1``
positions with ``*HQ,<id>,V4,V1,<yyyyMMddHHmmss>#`` and ``NBR`` cell reports with
``*HQ,<id>,V4,NBR,<yyyyMMddHHmmss>#``, the time taken from ``now``.

Commands are ``*HQ,<id>,<CMD>,<hhmmss>,<args>#``. The encoder has no clock: the ``hhmmss`` field is
the relay's clock of the last bytes decoded (or ``now`` given to ``encode``), else ``000000``; devices
use it only to match their ``V4`` answer (a ``commandResult`` with the position) to the command.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from . import alarms
from . import attributes as attr
from ._model import (
    KNOTS_TO_KMH,
    Command,
    CommandType,
    Decoded,
    DriverError,
    Report,
    Transport,
    UnsupportedCommand,
)
from ._registry import register
from ._session import Match, Session
from ._text import nmea_coordinate, nmea_matched, utc_datetime, utc_datetime_matched

PROTOCOL = "h02"

TEXT_START = 0x2A  # "*"
TEXT_END = b"#"
BINARY_START = 0x24  # "$"
X_START = 0x58  # "X"
_FRAME_STARTS = b"*$X"

#: Bytes of a binary frame up to its trailer: the fields end at byte 29 (short id) or 32 (long id).
BINARY_FRAME = 32
#: A binary frame whose 8-byte id holds a 15-digit IMEI (Traccar tells it by this exact length).
LONG_ID_FRAME = 42
#: Id bytes in the two binary layouts.
SHORT_ID_BYTES = 5
LONG_ID_BYTES = 8
#: Extension bytes after the 32 are kept in the frame up to this length (the longest seen is 48).
MAX_BINARY = 64
#: Bytes of the fields after the id: time and date, lat, battery, lon, speed and course, status.
_FIELD_BYTES = 6 + 4 + 1 + 5 + 3 + 4

#: Status bit (cleared = alarm) to alarm, in Traccar's order of precedence.
STATUS_ALARMS: tuple[tuple[int, str], ...] = (
    (0, alarms.VIBRATION),
    (1, alarms.SOS),
    (18, alarms.SOS),
    (2, alarms.OVERSPEED),
    (19, alarms.POWER_CUT),
)
IGNITION_BIT = 10

_PT502_HEADER = re.compile(rb"\$[A-Z]{3}[A-Z0-9-]*,")
_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")
#: Bytes ``str.strip`` removes from a latin-1 text (a frame ending in one takes the general path).
_TRAILING_SPACE = frozenset(bytes([byte]) for byte in range(256) if chr(byte).isspace())
#: ``type`` groups of a :data:`_POSITION` match that the general path decodes otherwise (or whose
#: match may differ from the general path's: V4, an answer, may match as a type too). ``None``: V4.
_NOT_POSITIONS = frozenset({None, "V0", "V3", "V4", "VP1"})
_TEXT_HEAD = re.compile(rb"\*[0-9A-Za-z]{2},")
#: A coordinate as most devices send it (``ddmm.mmmm``), read by :func:`nmea_matched`.
_PLAIN_COORDINATE = re.compile(r"\d*\d\d\.\d+", re.ASCII)

# One field per line; the three coordinate forms (ddmm.mmmm, dddmmmmmm, -dd-mm.mmmm) are told apart
# by _coordinate, the regex only takes the characters.
_POSITION = re.compile(
    r"""
    \*(?P<maker>\w\w),
    (?P<id>\d*),
    (?:V4,(?P<response>.*)|(?P<type>V[^,]*)),     # a V4 answer carries the command it answers
    (?P<time>\d{6})?,                             # hhmmss
    (?:(?P<validity>[ABV])?|(?P<coding>\d+)),     # A/V/B, or a "coding scheme" number (= valid)
    \ *(?P<lat>-?[\d.-]+),(?P<lat_hemisphere>[NS]),
    \ *(?P<lon>-?[\d.-]+),(?P<lon_hemisphere>[EW]),
    \ *(?P<speed>\d+\.?\d*),                      # knots
    (?P<course>\d+\.?\d*)?,
    (?:(?P<battery>\d+),(?=\d{6}(?:,|\#|$)))?        # battery, only where a date follows
    (?P<date>\d{6})?                              # ddmmyy
    (?P<tail>,[^#]*)?                             # [sim info,] status [, extras]
    \#?
    """,
    re.VERBOSE | re.DOTALL,
)
#: The fast path's regex (:meth:`H02Session.decode`): the general path's own, by another name.
_FAST = _POSITION


# -- sniffing and layout -----------------------------------------------------------------------


def _bcd_ok(byte: int) -> bool:
    return byte >> 4 <= 9 and byte & 0x0F <= 9


def _bcd(byte: int) -> int:
    return (byte >> 4) * 10 + (byte & 0x0F)


def _layout(data: bytes | bytearray, id_bytes: int) -> Match:
    """Whether ``data`` (marker first) has the binary layout with an id of ``id_bytes`` bytes.

    Checks the id digits, time, date, latitude and longitude as far as they are present; ``MORE``
    means every present byte fits and the check needs more of them.
    """
    limits = (
        # (offset from the end of the id, low, high) for BCD fields: hh mm ss dd mm yy
        (0, 0, 23),
        (1, 0, 59),
        (2, 0, 59),
        (3, 1, 31),
        (4, 1, 12),
        (5, 0, 99),
    )
    for index in range(1, 1 + id_bytes):
        if index >= len(data):
            return Match.MORE
        if not _bcd_ok(data[index]):
            return Match.NO
    base = 1 + id_bytes
    for offset, low, high in limits:
        index = base + offset
        if index >= len(data):
            return Match.MORE
        if not _bcd_ok(data[index]) or not low <= _bcd(data[index]) <= high:
            return Match.NO
    lat = base + 6
    for index in range(lat, lat + 4):  # DD MM mm mm
        if index >= len(data):
            return Match.MORE
        if not _bcd_ok(data[index]):
            return Match.NO
    if _bcd(data[lat]) > 90 or _bcd(data[lat + 1]) > 59:
        return Match.NO
    lon = lat + 5  # after the battery byte
    for index in range(lon, lon + 5):  # DD DM Mm mm mF: nine digits and a flag nibble
        if index >= len(data):
            return Match.MORE
        if index < lon + 4 and not _bcd_ok(data[index]):
            return Match.NO
        if index == lon + 4 and data[index] >> 4 > 9:
            return Match.NO
    degrees = _bcd(data[lon]) * 10 + (data[lon + 1] >> 4)
    minutes = (data[lon + 1] & 0x0F) * 10 + (data[lon + 2] >> 4)
    if degrees > 180 or minutes > 59:
        return Match.NO
    return Match.YES


def _binary_start(data: bytes | bytearray) -> Match:
    """Whether ``data`` starts a binary ``$``/``X`` frame of either layout."""
    short = _layout(data, SHORT_ID_BYTES)
    long = _layout(data, LONG_ID_BYTES)
    if Match.YES in (short, long):
        return Match.YES
    if Match.MORE in (short, long):
        return Match.MORE
    return Match.NO


def _text_start(data: bytes | bytearray) -> Match:
    """``*`` + two letters or digits + ``,``."""
    if len(data) >= 4:
        return Match.YES if _TEXT_HEAD.match(data) else Match.NO
    for index, byte in enumerate(data[1:4], start=1):
        if index < 3 and not (chr(byte).isascii() and chr(byte).isalnum()):
            return Match.NO
        if index == 3 and byte != 0x2C:
            return Match.NO
    return Match.YES if len(data) >= 4 else Match.MORE


def _frame_start(data: bytes | bytearray) -> Match:
    if not data:
        return Match.MORE
    if data[0] == TEXT_START:
        return _text_start(data)
    if data[0] in (BINARY_START, X_START):
        return _binary_start(data)
    return Match.NO


def sniff(head: bytes, transport: Transport) -> Match:
    """``*XX,`` text, or ``$``/``X`` followed by BCD id digits, time and position (the binary layout).

    ``$`` + three capitals + ``[A-Z0-9-]*`` + ``,`` is pt502 text, never h02: the BCD hour byte
    (at most ``0x23``) can never be one of those characters, and the check says so explicitly.
    """
    if head[:1] == b"$" and _PT502_HEADER.match(head):
        return Match.NO
    return _frame_start(head)


# -- the session -------------------------------------------------------------------------------


class H02Session(Session):
    protocol = PROTOCOL
    transports = frozenset({Transport.TCP, Transport.UDP})
    # Text frames are short; an SMS answer (the device's settings as text) is the longest seen.
    max_frame = 2048

    def _next_frame(self) -> bytes | None:
        buffer = self._buffer
        while buffer:
            verdict = _frame_start(buffer)
            if verdict is Match.MORE:
                return None
            if verdict is Match.NO:
                # Garbage (or CR/LF after a frame): drop up to the next byte that may start a frame.
                skip = 1
                while skip < len(buffer) and buffer[skip] not in _FRAME_STARTS:
                    skip += 1
                del buffer[:skip]
                continue
            if buffer[0] == TEXT_START:
                end = buffer.find(TEXT_END)
                return None if end < 0 else self._cut(end + 1)
            if len(buffer) < BINARY_FRAME:
                return None
            return self._cut(self._binary_length())
        return None

    def _binary_length(self) -> int:
        """The binary frame at the front, with whatever extension bytes follow it.

        Bytes after the first 32 belong to the frame until the next frame start, the end of the buffer,
        or :data:`MAX_BINARY`. A frame cut at exactly 32 because nothing more had arrived yet loses
        its extension to the garbage skipper; the decoded report is the same either way.
        """
        buffer = self._buffer
        for end in range(BINARY_FRAME, min(len(buffer), MAX_BINARY) + 1):
            if end == len(buffer) or _frame_start(buffer[end : end + LONG_ID_FRAME]) is not Match.NO:
                return end
        return BINARY_FRAME

    def decode(self, frame: bytes, *, now: datetime) -> Decoded:
        # The common frame, "*XX,<id>,V1|V2|...,<position layout>#": one match (the general path's
        # own), without the split into fields (strip, which the general path does first, would change
        # nothing: the frame starts with "*" and ends in no white space).
        if frame[:1] == b"*" and frame[-1:] not in _TRAILING_SPACE:
            text = frame.decode("latin-1")
            match = _FAST.fullmatch(text)
            if match is not None and (kind := match["type"]) not in _NOT_POSITIONS:
                identity = match["id"]
                device_id = identity or self.device_id or None
                try:
                    report = _position_report(match, device_id, now)
                except ValueError:
                    pass  # the general path says why
                else:
                    reply = _time_reply(identity, "V1", now) if kind == "V1" and identity else b""
                    return Decoded((report,), (reply,) if reply else (), device_id)
        start = frame.lstrip(b"\r\n\x00 ")[:1]
        try:
            if start in (b"$", b"X"):
                report = _decode_binary(frame.lstrip(b"\r\n\x00 "), self.device_id)
                return Decoded((report,), device_id=report.device_id)
            if start == b"*":
                return self._decode_text(frame.decode("latin-1").strip(), frame, now)
        except DriverError:
            raise
        except (ValueError, IndexError) as error:
            raise DriverError(PROTOCOL, f"bad frame: {error}", data=frame) from None
        raise DriverError(PROTOCOL, "frame starts with neither '*', '$' nor 'X'", data=frame)

    def _decode_text(self, text: str, frame: bytes, now: datetime) -> Decoded:
        body = text[1:].removesuffix("#")
        fields = body.split(",")
        if len(fields) < 3:
            raise DriverError(
                PROTOCOL, f"text frame has {len(fields)} fields, expected at least 3", data=frame
            )
        device_id = fields[1] or self.device_id or None
        if fields[1] and not fields[1].isdigit():
            raise DriverError(PROTOCOL, f"device id {fields[1]!r} is not numeric", data=frame)
        kind = fields[2]
        replies: list[bytes] = []
        if kind in ("V0", "HTBT"):
            # Echo the frame up to its type: the device waits for its heartbeat to come back.
            replies.append(("*" + ",".join(fields[:3]) + "#").encode("latin-1"))
            report = _heartbeat(device_id, fields)
        elif kind == "NBR":
            report = _cells_report(device_id, fields)
            replies.append(_time_reply(fields[1], "NBR", now))
        elif kind == "LINK":
            report = _link_report(device_id, fields)
        elif kind == "V3":
            report = _v3_report(device_id, fields)
        elif kind == "VP1":
            report = _vp1_report(device_id, fields)
        elif kind == "SMS":
            result = body.split(",", 3)[3] if len(fields) > 3 else ""
            report = Report(
                protocol=PROTOCOL,
                device_id=device_id,
                event="commandResult",
                attributes={attr.RESULT: result},
            )
        elif kind.startswith("V"):
            report = _text_position(text, device_id, fields, frame, now)
            if kind == "V1" and fields[1]:
                replies.append(_time_reply(fields[1], "V1", now))
        else:
            attributes = {attr.TYPE: kind, attr.DATA: ",".join(fields[3:])}
            report = Report(protocol=PROTOCOL, device_id=device_id, event="message", attributes=attributes)
        return Decoded((report,), tuple(reply for reply in replies if reply), device_id=device_id)

    supported_commands = frozenset({
        CommandType.CUSTOM, CommandType.ENGINE_STOP, CommandType.ENGINE_RESUME,
        CommandType.ALARM_ARM, CommandType.ALARM_DISARM, CommandType.POSITION_PERIODIC,
    })  # fmt: skip
    #: The device confirms each command with a ``V4,<command>,...`` position.
    answered_commands = supported_commands

    def _encode(self, command: Command) -> bytes:
        params = command.params
        match command.type:
            case CommandType.ENGINE_STOP:
                code, args = "S20", ("1", "1")
            case CommandType.ENGINE_RESUME:
                code, args = "S20", ("1", "0")
            case CommandType.ALARM_ARM:
                code, args = "SCF", ("0", "0")
            case CommandType.ALARM_DISARM:
                code, args = "SCF", ("1", "1")
            case CommandType.POSITION_PERIODIC:
                code, args = "S71", ("22", str(params["frequency"]))
            case CommandType.CUSTOM:
                text = str(params["data"])
                if text.startswith("*"):
                    return text.encode()  # a complete frame, sent as it is
                return f"*HQ,{command.device_id},{text.removesuffix('#')}#".encode()
            case _:
                raise UnsupportedCommand(PROTOCOL, f"command {str(command.type)!r} is not supported")
        time = self.now.strftime("%H%M%S") if self.now is not None else "000000"
        return f"*HQ,{command.device_id},{code},{time},{','.join(args)}#".encode()


def _time_reply(device_id: str, kind: str, now: datetime) -> bytes:
    if not device_id:
        return b""
    if now.year >= 1000:  # strftime's %Y pads no smaller year to four digits
        stamp = f"{now.year}{now.month:02d}{now.day:02d}{now.hour:02d}{now.minute:02d}{now.second:02d}"
    else:
        stamp = now.strftime("%Y%m%d%H%M%S")
    return f"*HQ,{device_id},V4,{kind},{stamp}#".encode()


# -- text messages -----------------------------------------------------------------------------


def _status(value: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    status = int(value, 16)
    return _status_alarms(status), {attr.STATUS: status, attr.IGNITION: bool(status >> IGNITION_BIT & 1)}


def _status_alarms(status: int) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for bit, name in STATUS_ALARMS if not status >> bit & 1))


def _coordinate(value: str, hemisphere: str) -> float:
    """``ddmm.mmmm`` (any number of degree digits), ``dddmmmmmm`` (minutes without the dot, four
    decimals) or ``-dd-mm.mmmm``; the sign comes from the hemisphere letter alone."""
    if _PLAIN_COORDINATE.fullmatch(value):  # the usual form
        result = nmea_matched(value, "N")
        if result > 180:
            raise ValueError(f"coordinate {value!r} out of range")
        return -result if hemisphere in ("S", "W") else result
    value = value.strip()
    if value.startswith("-") and value.count("-") == 2:
        degrees, minutes = value[1:].split("-")
        result = int(degrees) + float(minutes) / 60
    elif "." in value:
        result = nmea_coordinate(value.lstrip("-"), "N")
    else:
        if len(value) < 7 or not value.isdigit():
            raise ValueError(f"not a coordinate: {value!r}")
        result = int(value[:-6] or "0") + float(value[-6:-4] + "." + value[-4:]) / 60
    if result > 180:
        raise ValueError(f"coordinate {value!r} out of range")
    return -result if hemisphere in ("S", "W") else result


def _text_time(date: str | None, hhmmss: str | None, now: datetime) -> datetime:
    """The fix time; without a date the device's time of day is placed on ``now``'s date (or the day
    before, when that would be more than 12 hours ahead of ``now``); with neither, ``now``."""
    if not date and not hhmmss:
        return now
    hhmmss = hhmmss or "000000"
    if date:  # both six digits (the regex)
        return utc_datetime_matched(date, hhmmss)
    today = utc_datetime(now.strftime("%d%m%y"), hhmmss)
    return today - timedelta(days=1) if today - now > timedelta(hours=12) else today


def _text_position(
    text: str, device_id: str | None, fields: list[str], frame: bytes, now: datetime
) -> Report:
    match = _POSITION.fullmatch(text)
    if match is None:
        if len(fields) > 4 and fields[4] == "V":
            # No fix: the device fills the position fields with placeholders. Keep what it says.
            return Report(
                protocol=PROTOCOL,
                device_id=device_id,
                event="status",
                valid=False,
                attributes={attr.TYPE: fields[2], attr.DATA: ",".join(fields[3:])},
            )
        raise DriverError(PROTOCOL, f"{fields[2]} message does not have the position layout", data=frame)
    return _position_report(match, device_id, now)


def _position_report(match: re.Match[str], device_id: str | None, now: datetime) -> Report:
    """The report of a :data:`_POSITION` match."""
    (response, battery, tail_text, speed_text, coding, validity, course, date, hhmmss,
     lat, lat_h, lon, lon_h) = match.group(
        "response", "battery", "tail", "speed", "coding", "validity", "course", "date", "time",
        "lat", "lat_hemisphere", "lon", "lon_hemisphere",
    )  # fmt: skip
    attributes: dict[str, Any] = {}
    found: tuple[str, ...] = ()
    if response is not None:
        attributes[attr.RESULT] = response
    if battery:
        attributes[attr.BATTERY_RAW] = int(battery)
    tail = tail_text[1:].split(",") if tail_text else []
    if tail and _HEX8.fullmatch(tail[0]):
        status, extras = tail[0], tail[1:]
    elif len(tail) > 3 and _HEX8.fullmatch(tail[3]):
        status, extras = tail[3], tail[4:]
        if tail[2]:
            attributes[attr.ICCID] = tail[2]
    else:
        status, extras = None, tail
    if status is not None:
        if (known := _STATUS_CACHE.get(status)) is None:
            known = _status(status)
            if len(_STATUS_CACHE) < _STATUS_CACHE_SIZE:
                _STATUS_CACHE[status] = known
        found = known[0]
        attributes.update(known[1])
    altitude = _extras(extras, attributes) if extras else None
    speed = float(speed_text) * KNOTS_TO_KMH
    valid = coding is not None or validity == "A"
    answer = response is not None
    return Report(
        PROTOCOL,
        device_id,
        "alarm" if found else "commandResult" if answer else "position",
        _text_time(date, hhmmss, now),
        valid,
        _coordinate(lat, lat_h),
        _coordinate(lon, lon_h),
        altitude,
        speed,
        float(course) if course else 0.0,
        None,
        found,
        None,
        attributes,
    )


#: What :func:`_status` made of the status words seen (it is pure); bounded.
_STATUS_CACHE: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {}
_STATUS_CACHE_SIZE = 256


def _extras(extras: list[str], attributes: dict[str, Any]) -> float | None:
    """The fields after the status: ``odometer,temp,fuel,altitude,lac,cid`` when they have exactly that
    shape (returns the altitude), otherwise kept as text in ``extra``."""
    if not extras or not any(value.strip() for value in extras):
        return None
    if len(extras) == 6 and re.fullmatch(r"\d+\.\d+", extras[2]):
        try:
            attributes[attr.ODOMETER_M] = int(extras[0])
            attributes[attr.TEMPERATURE_C] = int(extras[1])
            attributes[attr.FUEL_RAW] = float(extras[2])
            attributes[attr.LAC] = int(extras[4], 16)
            attributes[attr.CID] = int(extras[5], 16)
            return float(extras[3])
        except ValueError:
            for name in (attr.ODOMETER_M, attr.TEMPERATURE_C, attr.FUEL_RAW, attr.LAC, attr.CID):
                attributes.pop(name, None)
    attributes[attr.EXTRA] = ",".join(value.strip() for value in extras)
    return None


def _heartbeat(device_id: str | None, fields: list[str]) -> Report:
    attributes: dict[str, Any] = {}
    if len(fields) > 3 and fields[3].isdigit():
        attributes[attr.BATTERY_PCT] = int(fields[3])
    return Report(protocol=PROTOCOL, device_id=device_id, event="heartbeat", attributes=attributes)


def _cells(values: Iterable[tuple[str, str, str]]) -> list[dict[str, int]]:
    cells = []
    for lac, cid, rssi in values:
        cell = {attr.LAC: int(lac), attr.CID: int(cid)}
        if rssi.strip():
            cell[attr.RSSI] = int(rssi)
        cells.append(cell)
    return cells


def _status_report(
    device_id: str | None, event: str, date: str, hhmmss: str, status: str, attributes: dict[str, Any]
) -> Report:
    found, status_attributes = _status(status)
    attributes.update(status_attributes)
    try:
        time: datetime | None = utc_datetime(date, hhmmss)
    except ValueError:
        # Seen in the field: "160169" (second 69). A cell or status report is worth keeping anyway.
        time = None
        attributes[attr.DEVICE_TIME] = f"{date},{hhmmss}"
    return Report(
        protocol=PROTOCOL,
        device_id=device_id,
        event=event,
        time=time,
        alarms=found,
        attributes=attributes,
    )


def _cells_report(device_id: str | None, fields: list[str]) -> Report:
    """``NBR,hhmmss,mcc,mnc,delay,count,(lac,cid,rssi)*count,ddmmyy,status[,...]``."""
    count = int(fields[7])
    end = 8 + 3 * count
    flat = fields[8:end]
    cells = _cells(zip(flat[0::3], flat[1::3], flat[2::3], strict=True))
    attributes: dict[str, Any] = {attr.MCC: int(fields[4]), attr.MNC: int(fields[5]), attr.CELLS: cells}
    if cells:
        attributes.update({attr.LAC: cells[0][attr.LAC], attr.CID: cells[0][attr.CID]})
    return _status_report(device_id, "cells", fields[end], fields[3], fields[end + 1], attributes)


def _link_report(device_id: str | None, fields: list[str]) -> Report:
    """``LINK,hhmmss,rssi,satellites,battery %,steps,turnovers,ddmmyy,status``."""
    attributes: dict[str, Any] = {
        attr.RSSI: int(fields[4]),
        attr.BATTERY_PCT: int(fields[6]),
        attr.STEPS: int(fields[7]),
        attr.TURNOVERS: int(fields[8]),
    }
    report = _status_report(device_id, "status", fields[9], fields[3], fields[10], attributes)
    return replace(report, satellites=int(fields[5]))


def _v3_report(device_id: str | None, fields: list[str]) -> Report:
    """``V3,hhmmss,<mcc 3 digits><mnc>,count,(lac,cid,?,rssi)*count,battery hex,reboot,X,ddmmyy,status``."""
    network, count = fields[4], int(fields[5])
    flat = fields[6:-5]
    if len(flat) < 4 * count or fields[-3] != "X":
        raise ValueError(f"V3 announces {count} cells, carries {len(flat) // 4}")
    cells = [{attr.LAC: int(flat[i * 4]), attr.CID: int(flat[i * 4 + 1])} for i in range(count)]
    attributes: dict[str, Any] = {
        attr.MCC: int(network[:3]),
        attr.MNC: int(network[3:] or "0"),
        attr.CELLS: cells,
    }
    if cells:
        attributes.update({attr.LAC: cells[0][attr.LAC], attr.CID: cells[0][attr.CID]})
    attributes[attr.BATTERY_RAW] = int(fields[-5], 16)
    return _status_report(device_id, "cells", fields[-2], fields[3], fields[-1], attributes)


def _vp1_report(device_id: str | None, fields: list[str]) -> Report:
    """``VP1,A|B,lat,N|S,lon,E|W,speed,course,ddmmyy`` or ``VP1,V,mcc,mnc,lac,cid,rssi[Y...]``."""
    if fields[3] == "V":
        triples = [cell.split(",") for cell in ",".join(fields[6:]).split("Y") if cell]
        cells = _cells((lac, cid, rssi) for lac, cid, rssi in triples)
        attributes: dict[str, Any] = {attr.MCC: int(fields[4]), attr.MNC: int(fields[5]), attr.CELLS: cells}
        return Report(protocol=PROTOCOL, device_id=device_id, event="cells", attributes=attributes)
    return Report(
        protocol=PROTOCOL,
        device_id=device_id,
        time=utc_datetime(fields[10], "000000"),
        valid=True,
        lat=_coordinate(fields[4], fields[5]),
        lon=_coordinate(fields[6], fields[7]),
        speed_kmh=float(fields[8]) * KNOTS_TO_KMH,
        course_deg=float(fields[9]),
    )


# -- binary frames -----------------------------------------------------------------------------


def _binary_layout(frame: bytes) -> int:
    """The id length of a binary frame: 5 bytes, or 8 when only that layout fits (or, both fitting,
    the frame is the 42 bytes of the long-id format)."""
    short = _layout(frame, SHORT_ID_BYTES) is Match.YES
    long = _layout(frame, LONG_ID_BYTES) is Match.YES
    if long and (not short or len(frame) == LONG_ID_FRAME):
        return LONG_ID_BYTES
    if short:
        return SHORT_ID_BYTES
    raise DriverError(PROTOCOL, "binary frame has no valid BCD id, time and position", data=frame)


def _digits(data: bytes) -> str:
    return data.hex()


def _battery(value: int) -> int | None:
    """The battery byte as a percentage: 1..6 are levels (Traccar's scale), 7..100 a percentage,
    F1..F6 levels again; 0 and anything else say nothing."""
    if 1 <= value <= 3:
        return (value - 1) * 10
    if 4 <= value <= 6:
        return (value - 1) * 20
    if 7 <= value <= 100:
        return value
    if 0xF1 <= value <= 0xF6:
        return value - 0xF0
    return None


def _decode_binary(frame: bytes, session_id: str | None) -> Report:
    id_bytes = _binary_layout(frame)
    needed = 1 + id_bytes + _FIELD_BYTES
    if len(frame) < needed:
        raise DriverError(
            PROTOCOL, f"binary frame of {len(frame)} bytes, expected at least {needed}", data=frame
        )
    device_id = _digits(frame[1 : 1 + id_bytes])[:15]
    if frame[:1] == b"X" and session_id:
        # X frames number the device differently; the session already knows who it is.
        device_id = session_id
    at = 1 + id_bytes
    t = [_bcd(byte) for byte in frame[at : at + 6]]
    time = utc_datetime(f"{t[3]:02d}{t[4]:02d}{t[5]:02d}", f"{t[0]:02d}{t[1]:02d}{t[2]:02d}")
    at += 6
    lat_digits = _digits(frame[at : at + 4])
    battery = frame[at + 4]
    at += 5
    lon_digits = _digits(frame[at : at + 5])
    flags = int(lon_digits[9], 16)
    speed_course = _digits(frame[at + 5 : at + 8])
    status = int.from_bytes(frame[at + 8 : at + 12], "big")
    if not speed_course[:3].isdigit() or not speed_course[4:].isdigit():
        raise DriverError(PROTOCOL, f"speed/course {speed_course} is not BCD", data=frame)
    lat = int(lat_digits[:2]) + int(lat_digits[2:]) / 10000 / 60
    lon = int(lon_digits[:3]) + int(lon_digits[3:9]) / 10000 / 60
    found = _status_alarms(status)
    attributes: dict[str, Any] = {attr.STATUS: status, attr.IGNITION: bool(status >> IGNITION_BIT & 1)}
    if (level := _battery(battery)) is not None:
        attributes[attr.BATTERY_PCT] = level
    if frame[:1] == b"X":
        attributes[attr.MARKER] = "X"
    return Report(
        protocol=PROTOCOL,
        device_id=device_id,
        event="alarm" if found else "position",
        time=time,
        valid=bool(flags & 0x02),
        lat=lat if flags & 0x04 else -lat,
        lon=lon if flags & 0x08 else -lon,
        speed_kmh=int(speed_course[:3]) * KNOTS_TO_KMH,
        course_deg=float((int(speed_course[3], 16) & 0x0F) * 100 + int(speed_course[4:])),
        alarms=found,
        attributes=attributes,
    )


DRIVER = register(PROTOCOL, sniff, H02Session)
