"""gps103: the Coban "imei:" text protocol (TK103B, GPS-103/303/306, BN-407 4G bike tracker).

Frames are ASCII, delimited by ``;``, CR/LF or ``*`` on TCP, one per datagram on UDP. The device
waits for ``LOAD`` after its login (``##,imei:<imei>,A;``) and ``ON`` after each heartbeat
(``<imei>;``). Data messages carry the device's *local* date and hour plus the UTC time of day; UTC
is rebuilt from both (see :func:`_rebuild_utc`). Speeds on the wire are knots.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from . import alarms
from . import attributes as attr
from ._commands import device_password, whole_hours
from ._model import (
    KNOTS_TO_KMH,
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
from ._text import knots_to_kmh, nmea_coordinate, optional_float, utc_datetime

PROTOCOL = "gps103"
#: The factory SMS password of Coban trackers.
COBAN_PASSWORD = "123456"

#: One frame at the front of the buffer: delimiters before it, the frame, every delimiter after it.
_FRAME = re.compile(rb"[;\r\n*]*+([^;\r\n*]++)[;\r\n*]++")
_LEADING = re.compile(rb"[;\r\n*]++")
_DELIMITERS = b";\r\n*"
_IMEI = re.compile(rb"\d{15}")
#: A data message with a GPS fix, from its fifth field (``F``) on. Each field is checked by the
#: converter that reads it.
_FIX = re.compile(
    r"""
                                        # imei, keyword, local time, rfid: already split off
    F ,                                 # F: a GPS fix (L: none, see _message)
    (?P<utc_time>[^,]*) ,               # hhmmss[.sss], UTC
    (?P<validity>[^,]*) ,               # A valid, V not
    (?:
        (?P<lat_hemisphere_first>[NS]) ,    # some firmware puts each hemisphere first:
        (?P<lat_after>[^,]*) ,              # N|S,ddmm.mmmm,E|W,dddmm.mmmm
        (?P<lon_hemisphere_first>[^,]*) ,
        (?P<lon_after>[^,]*)
    |
        (?P<lat>[^,]*) ,                    # ddmm.mmmm
        (?P<lat_hemisphere>[^,]*) ,         # N or S
        (?P<lon>[^,]*) ,                    # dddmm.mmmm
        (?P<lon_hemisphere>[^,]*)           # E or W
    )
    (?: , (?P<speed>[^,]*) )?           # knots
    (?: , (?P<course>[^,]*) )?          # degrees
    (?: , (?P<altitude>[^,]*) )?        # metres
    (?: , (?P<columns>.*) )?            # protocol 18: acc, door, fuel 1 %, fuel 2 %, temperature
    """,
    re.VERBOSE | re.DOTALL,
)
#: The common data message, whole, as the framer cuts it: ``[<imei>]imei:<imei>,<keyword>,<local
#: yymmddhhmm[ss]>,<rfid>,F,<utc hhmmss[.sss]>,A|V,ddmm.mmmm,[N|S],dddmm.mmmm,[E|W][,knots[,course
#: [,altitude[,columns]]]]``, every number well formed. :func:`_fast_message` decodes it as
#: :func:`_message` does; anything else (and any value :func:`_fast_message` doubts) takes the
#: general path.
_FAST = re.compile(
    rb"(\d{15})?imei:(\d+),([^,]*),(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)?,([^,]*),F,(\d\d)(\d\d)(\d\d)(?:\.\d*)?,([AV]),"
    rb"(\d*)(\d\d\.\d+),([NS]?),(\d*)(\d\d\.\d+),([EW]?)"
    rb"(?:,(\d+(?:\.\d+)?)?(?:,(\d+(?:\.\d+)?)?(?:,(-?\d+(?:\.\d+)?)?(?:,([ -~]*[!-:<-~])?)?)?)?)?"
)
#: What :func:`_keyword` made of the keywords seen (it is pure), for the fast path; bounded, as a
#: device may put anything there.
_KEYWORD_CACHE: dict[str, tuple[tuple[str, ...], dict[str, Any], str]] = {}
_KEYWORD_CACHE_SIZE = 256
#: Keywords that are no alarm and no attribute (see :func:`_keyword`).
_PLAIN_KEYWORDS = frozenset({"", "tracker", "001"})
# Traccar's rule: a message holding "imei:" and at most 30 characters long is a login.
_LOGIN_MAX_LENGTH = 30

#: Coban keyword to alarm, in Traccar's vocabulary: the one table for the keyword field of a TCP/UDP
#: message and for the alarm words of a Coban SMS text (:mod:`drivers.sms_text`). Keys are lower case.
KEYWORD_ALARMS: dict[str, str] = {
    # Traccar's Gps103ProtocolDecoder.decodeAlarm (it also maps "acc on"/"acc off" to powerOn/powerOff
    # in later versions; here they are the ignition attribute, as the SMS texts' reference says).
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
    "dtc": alarms.FAULT,
    "oil": alarms.FUEL_LEAK,
    # Coban's other words for the same alarms (SMS texts, newer firmwares).
    "heip me": alarms.SOS,  # a manual's spelling
    "sos": alarms.SOS,
    "low bat": alarms.LOW_BATTERY,
    "power alarm": alarms.POWER_CUT,
    "power cut": alarms.POWER_CUT,
    "power off": alarms.POWER_CUT,
    "shock alarm": alarms.VIBRATION,
    "vibration": alarms.VIBRATION,
    "geofence": alarms.GEOFENCE,
    "geo-fence": alarms.GEOFENCE,
}


def keyword_alarm(keyword: str) -> str | None:
    """The alarm a TCP/UDP keyword field names (case ignored), or ``None``.

    Besides :data:`KEYWORD_ALARMS`, ``T:<degrees>`` is a temperature alarm and ``oil<...>`` (``oil1``,
    ``oil 51.67``) a fuel alarm, as in Traccar.
    """
    key = keyword.strip().lower()
    if key in KEYWORD_ALARMS:
        return KEYWORD_ALARMS[key]
    if key.startswith("t:"):
        return alarms.TEMPERATURE
    if key.startswith("oil"):
        return alarms.FUEL_LEAK
    return None


def sniff(head: bytes, transport: Transport) -> Match:
    """``##,imei:``, ``imei:``, or a 15-digit IMEI followed by ``;`` or ``imei:``."""
    for prefix in (b"##,imei:", b"imei:"):
        if head.startswith(prefix):
            return Match.YES
        if prefix.startswith(head):
            return Match.MORE
    digits = len(head) - len(head.lstrip(b"0123456789"))
    if digits == len(head):
        # Only digits so far: a heartbeat IMEI in the making.
        return Match.MORE if digits < 15 else Match.YES if digits == 15 else Match.NO
    if digits != 15:
        return Match.NO
    rest = head[15:]
    if rest[:1] in (b";", b"\r", b"\n") or rest.startswith(b"imei:"):
        return Match.YES
    return Match.MORE if b"imei:".startswith(rest) else Match.NO


class Gps103Session(Session):
    protocol = PROTOCOL
    transports = frozenset({Transport.TCP, Transport.UDP, Transport.SERIAL})
    # Photo packets (``vr``) carry hex-encoded JPEG slices of ~1 KB; 8 KB leaves room.
    max_frame = 8192

    def __init__(self, transport: Transport = Transport.TCP, *, device_id: str | None = None) -> None:
        super().__init__(transport, device_id=device_id)
        self._photo_parts: dict[int, bytes] = {}
        self._photo_expected = 0
        #: A ``160`` went out on this session and its ``vt`` answer has not come yet.
        self._photo_requested = False

    def _next_frame(self) -> bytes | None:
        buffer = self._buffer
        found = _FRAME.match(buffer)
        if found is None:
            if buffer and buffer[0] in _DELIMITERS and (leading := _LEADING.match(buffer)) is not None:
                del buffer[: leading.end()]
            return None
        # Every delimiter byte that follows goes with this frame (";\r\n" is one terminator).
        frame = bytes(buffer[found.start(1) : found.end(1)])
        del buffer[: found.end()]
        return frame

    def decode(self, frame: bytes, *, now: datetime) -> Decoded:
        if (found := _FAST.fullmatch(frame)) is not None and (decoded := _fast_message(found)) is not None:
            return decoded
        try:
            text = frame.decode("ascii").strip().rstrip(";")
        except UnicodeDecodeError:
            raise DriverError(PROTOCOL, "frame is not ASCII", data=frame) from None
        replies: list[bytes] = []

        if _IMEI.fullmatch(text.encode()):
            return Decoded(
                (Report(protocol=PROTOCOL, device_id=text, event="heartbeat"),), (b"ON",), device_id=text
            )
        start = text.find("imei:")
        if start < 0:
            raise DriverError(PROTOCOL, "no 'imei:' in message", data=frame)
        if start > 0 and not text.startswith("##"):  # "##,imei:<imei>,A" is the login
            # "<imei>imei:<imei>,..." is a heartbeat and a message in one: answer ON, then parse.
            if not _IMEI.fullmatch(text[:start].encode()):
                raise DriverError(PROTOCOL, f"unexpected prefix {text[:start]!r}", data=frame)
            replies.append(b"ON")
        if len(text) <= _LOGIN_MAX_LENGTH:
            imei = text[start + 5 :].split(",", 1)[0]
            if not imei.isdigit():
                raise DriverError(PROTOCOL, f"login without a numeric IMEI: {imei!r}", data=frame)
            report = Report(protocol=PROTOCOL, device_id=imei, event="login")
            return Decoded((report,), (b"LOAD",), device_id=imei)

        fields = text[start + 5 :].split(",")
        imei = fields[0]
        if not imei.isdigit():
            raise DriverError(PROTOCOL, f"device id {imei!r} is not numeric", data=frame)
        try:
            report = self._decode_fields(fields, text[start + 5 :], frame)
        except (ValueError, IndexError) as error:
            raise DriverError(PROTOCOL, f"bad message: {error}", data=frame) from None
        if report is None:
            return Decoded((), tuple(replies), device_id=imei)
        if alarms.SOS in report.alarms:
            # Acknowledge the SOS, or the tracker keeps calling and texting its owner.
            replies.append(f"**,imei:{imei},E;".encode())
        if report.event == "photo_announce" and self._photo_requested:
            # The answer to our "160"; an announcement the device makes on its own answers nothing.
            self._photo_requested = False
            packets = report.attributes[attr.PHOTO_PACKETS]
            answer = Report(
                protocol=PROTOCOL,
                device_id=imei,
                event="commandResult",
                attributes={attr.RESULT: f"vt{packets}", attr.PHOTO_PACKETS: packets},
            )
            return Decoded((report, answer), tuple(replies), device_id=imei)
        return Decoded((report,), tuple(replies), device_id=imei)

    def _decode_fields(self, fields: list[str], body: str, frame: bytes) -> Report | None:
        imei = fields[0]
        keyword = fields[1] if len(fields) > 1 else ""
        if keyword == "OBD":
            return _decode_obd(imei, fields)
        if keyword == "vr":
            return self._photo_packet(imei, fields, frame)
        announce = keyword.startswith("vt") and keyword[2:].isdigit()
        if announce:
            # A photo in this many packets follows; the announcement carries a position too.
            self._photo_expected = int(keyword[2:])
            self._photo_parts.clear()
            report = _message(imei, "", fields, body)
            return replace(
                report,
                event="photo_announce",
                attributes={**report.attributes, attr.PHOTO_PACKETS: self._photo_expected},
            )
        return _message(imei, keyword, fields, body)

    def _photo_packet(self, imei: str, fields: list[str], frame: bytes) -> Report | None:
        try:
            packet = bytes.fromhex(fields[2])
        except (ValueError, IndexError):
            raise DriverError(PROTOCOL, "photo packet is not hex", data=frame) from None
        if len(packet) < 6:
            raise DriverError(PROTOCOL, "photo packet too short", data=frame)
        index = int.from_bytes(packet[:2], "little")
        self._photo_parts[index] = packet[4:-2]
        if not self._photo_expected or len(self._photo_parts) < self._photo_expected:
            return None
        image = b"".join(self._photo_parts[i] for i in sorted(self._photo_parts))
        self._photo_parts.clear()
        self._photo_expected = 0
        return Report(protocol=PROTOCOL, device_id=imei, event="photo", media=image, media_type="image/jpeg")

    supported_commands = frozenset({
        CommandType.CUSTOM, CommandType.POSITION_SINGLE, CommandType.POSITION_PERIODIC,
        CommandType.POSITION_STOP, CommandType.ENGINE_STOP, CommandType.ENGINE_RESUME,
        CommandType.ALARM_ARM, CommandType.ALARM_DISARM, CommandType.REQUEST_PHOTO, CommandType.ALARM_SPEED,
    })  # fmt: skip
    #: The device answers ``160`` with a ``vt<packets>`` announcement, then the photo; Traccar's
    #: decoder knows no other answer over TCP.
    answered_commands = frozenset({CommandType.REQUEST_PHOTO})
    #: The Coban SMS commands (the GPS103/TK103B manuals; ``relay provision`` sends the same forms).
    sms_commands = frozenset({
        CommandType.CUSTOM, CommandType.POSITION_SINGLE, CommandType.POSITION_PERIODIC,
        CommandType.POSITION_STOP, CommandType.ENGINE_STOP, CommandType.ENGINE_RESUME,
        CommandType.ALARM_ARM, CommandType.ALARM_DISARM, CommandType.ALARM_SPEED,
        CommandType.SET_TIMEZONE, CommandType.REBOOT_DEVICE,
    })  # fmt: skip

    def _encode(self, command: Command) -> bytes:
        code = _command_code(command)
        if command.type is CommandType.REQUEST_PHOTO:
            self._photo_requested = True
        return f"**,imei:{command.device_id},{code}".encode()

    @classmethod
    def _encode_sms(cls, command: Command) -> str:
        params = command.params
        if command.type is CommandType.CUSTOM:
            return str(params["data"])  # the whole text, password included
        password = device_password(PROTOCOL, command, COBAN_PASSWORD, r"\d{6}", "6 digits")
        match command.type:
            case CommandType.POSITION_PERIODIC:
                every = _sms_interval(params["frequency"])
                return f"fix{every}{every}***n{password}"  # with the ACC on, with it off, no end
            case CommandType.SET_TIMEZONE:
                return f"time zone{password} {whole_hours(PROTOCOL, command)}"
            case CommandType.ALARM_SPEED:
                return f"speed{password} {_speed(params['speed'])}"
        return f"{_SMS_WORDS[command.type]}{password}"


#: The Coban SMS command word of each type that takes nothing but the password.
_SMS_WORDS: dict[CommandType, str] = {
    CommandType.POSITION_SINGLE: "smslink",  # answers with a map link to the current position
    CommandType.POSITION_STOP: "nofix",
    CommandType.ENGINE_STOP: "stop",
    CommandType.ENGINE_RESUME: "resume",
    CommandType.ALARM_ARM: "arm",
    CommandType.ALARM_DISARM: "disarm",
    CommandType.REBOOT_DEVICE: "reset",
}


def _message(imei: str, keyword: str, fields: list[str], body: str) -> Report:
    """A data message: ``imei:<imei>,<keyword>,<local yymmddhhmm[ss]>,<rfid>,F,<utc hhmmss>,A|V,<lat>,
    N|S,<lon>,E|W,<knots>,<course>,<altitude>,...``, a cell-only ``...,L,,,<lac>,,<cid>,,,`` or the
    alternative decimal-degree layout. Any keyword gives the message's position and time."""
    if len(fields) >= 11 and _is_hhmmss(fields[5]) and _is_digits(fields[6], 6) and fields[4] != "F":
        return _decode_alternative(imei, fields)
    if len(fields) < 5:
        return Report(protocol=PROTOCOL, device_id=imei, event=keyword or "message")

    report_alarms, attributes, event = _keyword(keyword)
    rfid = fields[3] if len(fields) > 3 else ""
    driver_id = rfid if keyword == "rfid" and rfid else None
    if fields[4] != "F":
        # "L": no GPS fix; the cell is all there is, and the time is the device's own stamp.
        if len(fields) > 9:
            if fields[7]:
                attributes[attr.LAC] = int(fields[7], 16)
            if fields[9]:
                attributes[attr.CID] = int(fields[9], 16)
        _protocol18(fields[14:], attributes)
        if not report_alarms:
            event = "cell" if attr.LAC in attributes or attr.CID in attributes else "no_fix"
        return Report(
            protocol=PROTOCOL,
            device_id=imei,
            event=event,
            time=_local_time(fields[2]),
            valid=False,
            alarms=report_alarms,
            driver_id=driver_id,
            attributes=attributes,
        )

    fix = _FIX.fullmatch(body, len(fields[0]) + len(fields[1]) + len(fields[2]) + len(fields[3]) + 4)
    if fix is None:
        raise ValueError(f"a fix without a whole position ({len(fields)} fields)")
    utc_time, validity, lat_first, lat_after, lon_first, lon_after, *position = fix.groups()
    lat, lat_hemisphere, lon, lon_hemisphere, knots, degrees, metres, columns = position
    if lat_first is not None:
        lat, lat_hemisphere, lon, lon_hemisphere = lat_after, lat_first, lon_after, lon_first
    latitude = nmea_coordinate(lat, lat_hemisphere)
    longitude = nmea_coordinate(lon, lon_hemisphere)
    speed = knots_to_kmh(knots) if knots is not None else None
    course = optional_float(degrees) if degrees is not None else None
    altitude = optional_float(metres) if metres is not None else None
    if columns is not None:
        _protocol18(fields[14:], attributes)  # the columns, already split
    return Report(
        protocol=PROTOCOL,
        device_id=imei,
        event=event,
        time=_rebuild_utc(fields[2], utc_time),
        valid=validity == "A",
        lat=latitude,
        lon=longitude,
        altitude_m=altitude,
        speed_kmh=speed if speed is not None else 0.0,
        course_deg=course if course is not None else 0.0,
        alarms=report_alarms,
        driver_id=driver_id,
        attributes=attributes,
    )


def _fast_message(found: re.Match[bytes]) -> Decoded | None:
    """The :class:`Decoded` of a :data:`_FAST` match, exactly as :meth:`Gps103Session.decode` makes it
    on its general path, or ``None`` where that path must decide (a keyword with a meaning of its
    own, a value out of range: the general path raises or falls back as it always has)."""
    (heartbeat, imei, keyword, yy, mo, dd, hh, mi, own_seconds, rfid, uh, um, us, validity,
     la, lam, lah, lo, lom, loh, knots, course, altitude, columns) = found.groups()  # fmt: skip
    frame = found.string
    if len(frame) <= _LOGIN_MAX_LENGTH or not frame.isascii():
        return None
    keyword_text = keyword.decode("ascii")
    if keyword_text in _PLAIN_KEYWORDS:
        report_alarms: tuple[str, ...] = ()
        attributes: dict[str, Any] = {}
        event = "position"
    elif keyword_text in ("OBD", "vr") or keyword_text.startswith("vt"):
        return None
    elif (known := _KEYWORD_CACHE.get(keyword_text)) is not None:
        report_alarms, known_attributes, event = known
        attributes = dict(known_attributes)
    else:
        report_alarms, attributes, event = _keyword(keyword_text)
        if len(_KEYWORD_CACHE) < _KEYWORD_CACHE_SIZE:
            _KEYWORD_CACHE[keyword_text] = (report_alarms, dict(attributes), event)
    seconds = int(us)
    lat_minutes = float(lam)
    lon_minutes = float(lom)
    if seconds > 59 or lat_minutes >= 60 or lon_minutes >= 60:
        return None
    if own_seconds is not None and int(own_seconds) > 59:
        return None
    hour = int(hh)
    minute = int(mi)
    offset = hour * 60 + minute - (int(uh) * 60 + int(um))
    if offset > 12 * 60:
        offset -= 24 * 60
    elif offset < -12 * 60:
        offset += 24 * 60
    latitude = (int(la) if la else 0) + lat_minutes / 60
    longitude = (int(lo) if lo else 0) + lon_minutes / 60
    if columns is not None:
        _protocol18(columns.decode("ascii").split(","), attributes)
    device_id = imei.decode("ascii")
    try:
        local = datetime(2000 + int(yy), int(mo), int(dd), hour, minute, seconds, tzinfo=UTC)
        report = Report(
            PROTOCOL,
            device_id,
            event,
            local - timedelta(minutes=offset) if offset else local,
            validity == b"A",
            -latitude if lah == b"S" else latitude,
            -longitude if loh == b"W" else longitude,
            float(altitude) if altitude else None,
            float(knots) * KNOTS_TO_KMH if knots else 0.0,
            float(course) if course else 0.0,
            None,
            report_alarms,
            rfid.decode("ascii") if keyword_text == "rfid" and rfid else None,
            attributes,
        )
    except ValueError:  # a date that is none, a number out of range
        return None
    if heartbeat is None and not report_alarms:
        return Decoded((report,), (), device_id)
    # "<imei>imei:<imei>,..." is a heartbeat too; an SOS is acknowledged (see decode).
    replies = (b"ON",) if heartbeat is not None else ()
    if alarms.SOS in report_alarms:
        replies += (f"**,imei:{device_id},E;".encode(),)
    return Decoded((report,), replies, device_id)


def _command_code(command: Command) -> str:
    params = command.params
    match command.type:
        case CommandType.POSITION_SINGLE:
            return "B"
        case CommandType.POSITION_PERIODIC:
            return f"C,{_interval(params['frequency'])}"
        case CommandType.POSITION_STOP:
            return "D"
        case CommandType.ENGINE_STOP:
            return "J"
        case CommandType.ENGINE_RESUME:
            return "K"
        case CommandType.ALARM_ARM:
            return "L"
        case CommandType.ALARM_DISARM:
            return "M"
        case CommandType.ALARM_SPEED:
            return f"H,{_speed(params['speed'])}"
        case CommandType.REQUEST_PHOTO:
            return "160"
        case CommandType.CUSTOM:
            return str(params["data"])
    raise UnsupportedCommand(PROTOCOL, f"command {command.type.value!r} is not supported")


def _interval(seconds: int) -> str:
    """A GPRS interval, two digits and a unit: ``10s``, ``05m``, ``01h`` (Traccar's encoder).

    :raises InvalidCommand: the interval is not a whole number of one of those units.
    """
    return _in_units(seconds, 99, "{:02d}")


def _sms_interval(seconds: int) -> str:
    """An SMS interval, three digits and a unit: ``030s``, ``005m``, ``002h`` (at most 255 each)."""
    return _in_units(seconds, 255, "{:03d}")


def _in_units(seconds: int, most: int, digits: str) -> str:
    for unit, size in (("s", 1), ("m", 60), ("h", 3600)):
        if seconds % size == 0 and seconds // size <= most:
            return digits.format(seconds // size) + unit
    raise InvalidCommand(
        PROTOCOL,
        f"positionPeriodic: frequency {seconds} s is not 1..{most} seconds, minutes or hours, which is"
        f" what a Coban takes (try {_nearest(seconds, most)} s)",
    )


def _nearest(seconds: int, most: int) -> int:
    if seconds < most * 60:
        return round(seconds / 60) * 60
    return min(round(seconds / 3600), most) * 3600


def _speed(kmh: int) -> str:
    """A Coban speed limit: three digits, km/h."""
    return f"{kmh:03d}"


def _is_digits(value: str, length: int) -> bool:
    return len(value) == length and value.isdigit()


def _is_hhmmss(value: str) -> bool:
    return len(value) >= 6 and value[:6].isdigit() and (len(value) == 6 or value[6] == ".")


def _keyword(keyword: str) -> tuple[tuple[str, ...], dict[str, Any], str]:
    """Alarms, attributes and event name carried by the keyword field."""
    attributes: dict[str, Any] = {}
    alarm = keyword_alarm(keyword)
    if alarm == alarms.TEMPERATURE:
        if (value := _number(keyword[2:])) is not None:
            attributes[attr.TEMPERATURE_C] = value
    elif alarm == alarms.FUEL_LEAK:
        value = keyword[3:].strip()
        if value and not value.isdigit() and (fuel := _number(value)) is not None:
            attributes[attr.FUEL_RAW] = fuel
    elif keyword == "acc on":
        attributes[attr.IGNITION] = True
    elif keyword == "acc off":
        attributes[attr.IGNITION] = False
    if alarm or keyword not in ("", "tracker", "001"):
        attributes[attr.KEYWORD] = keyword
    return ((alarm,) if alarm else ()), attributes, "alarm" if alarm else "position"


def _number(text: str) -> float | None:
    """A number, or ``None`` for an empty or garbled one (a keyword's value never costs the position)."""
    try:
        return optional_float(text)
    except ValueError:
        return None


def _protocol18(columns: list[str], attributes: dict[str, Any]) -> None:
    """The "protocol 18" columns after altitude: acc, door, fuel 1 %, fuel 2 %, temperature."""
    names = (attr.IGNITION, attr.DOOR, attr.FUEL_PCT, attr.FUEL2_PCT, attr.TEMPERATURE_C)
    for name, value in zip(names, columns, strict=False):
        value = value.strip()
        if not value:
            continue
        if name in (attr.IGNITION, attr.DOOR):
            if value in ("0", "1"):
                attributes[name] = value == "1"
        else:
            try:
                attributes[name] = float(value.rstrip("%"))
            except ValueError:
                continue


def _local_time(local_stamp: str, *, seconds: int | None = None) -> datetime | None:
    """The device's local ``yymmddhhmm[ss]`` (or ``yy/mm/dd hh:mm``) as it is, or ``None`` when it is
    not a date (``000000000``). Taken as UTC: trackers the relay provisions run on time zone 0.

    :param seconds: the seconds to use instead of the stamp's own.
    """
    digits = local_stamp if local_stamp.isdigit() else "".join(ch for ch in local_stamp if ch.isdigit())
    if len(digits) < 10:
        return None
    own_seconds = int(digits[10:12]) if len(digits) >= 12 else 0
    if own_seconds > 59:
        return None
    if seconds is None:
        seconds = own_seconds
    try:
        return datetime(
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            seconds,
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _rebuild_utc(local_stamp: str, utc_time: str) -> datetime | None:
    """UTC from the device's local ``yymmddhhmm[ss]`` (or ``yy/mm/dd hh:mm``) and UTC ``hhmmss``.

    The local date and hh:mm are taken, the seconds come from the UTC field, and the difference
    between local and UTC hh:mm (wrapped into -12 h..+12 h) is subtracted. When the UTC field is not
    a time, the local stamp is used as it is, with seconds 0.
    """
    if not _is_hhmmss(utc_time):
        return _local_time(local_stamp, seconds=0)
    seconds = int(utc_time[4:6])
    if seconds > 59:
        raise ValueError("second must be in 0..59")
    local = _local_time(local_stamp, seconds=seconds)
    if local is None:
        return None
    offset = (local.hour * 60 + local.minute) - (int(utc_time[0:2]) * 60 + int(utc_time[2:4]))
    if offset > 12 * 60:
        offset -= 24 * 60
    elif offset < -12 * 60:
        offset += 24 * 60
    return local - timedelta(minutes=offset) if offset else local


def _decode_alternative(imei: str, fields: list[str]) -> Report:
    """``imei:<imei>,<name>,<event>,<sensor id>,<sensor V>,hhmmss,ddmmyy,rssi,fix,lat,lon,speed,course,
    alt,hdop,sats,ign,charge,error`` with decimal degrees and km/h (the ``*``-terminated layout)."""

    def number(index: int) -> float | None:
        if len(fields) <= index:
            return None
        try:
            return optional_float(fields[index])
        except ValueError:
            return None

    attributes: dict[str, Any] = {attr.NAME: fields[1]}
    if fields[2].strip("-"):
        attributes[attr.KEYWORD] = fields[2]
    if (rssi := number(7)) is not None:
        attributes[attr.RSSI] = int(rssi)
    if (hdop := number(14)) is not None:
        attributes[attr.HDOP] = hdop
    if len(fields) > 16 and fields[16] in ("0", "1"):
        attributes[attr.IGNITION] = fields[16] == "1"
    if len(fields) > 17 and fields[17] in ("0", "1"):
        attributes[attr.CHARGE] = fields[17] == "1"
    satellites = number(15)
    return Report(
        protocol=PROTOCOL,
        device_id=imei,
        time=utc_datetime(fields[6], fields[5]),
        valid=fields[8] not in ("0", ""),
        lat=float(fields[9]),
        lon=float(fields[10]),
        speed_kmh=number(11) or 0.0,
        course_deg=number(12) or 0.0,
        altitude_m=number(13),
        satellites=int(satellites) if satellites is not None else None,
        attributes=attributes,
    )


#: The odometer column is in km; it is stored as ``odometer_m``.
_OBD_ODOMETER_KM = "odometer_km"
_OBD_COLUMNS = (
    _OBD_ODOMETER_KM,
    attr.FUEL_INSTANT,
    attr.FUEL_AVERAGE,
    attr.ENGINE_HOURS,
    attr.OBD_SPEED_KMH,
    attr.ENGINE_LOAD_PCT,
    attr.COOLANT_TEMPERATURE_C,
    attr.THROTTLE_PCT,
    attr.RPM,
    attr.BATTERY_V,
)


def _decode_obd(imei: str, fields: list[str]) -> Report:
    """``imei:<imei>,OBD,<yymmddhhmmss>,odometer,fuel inst,fuel avg,hours,speed,load%,coolant,
    throttle%,rpm,battery,DTCs...`` (no position)."""
    attributes: dict[str, Any] = {}
    for name, value in zip(_OBD_COLUMNS, fields[3:13], strict=False):
        value = value.strip().rstrip("%")
        if value in ("", "+", "-"):
            continue
        try:
            attributes[name] = float(value)
        except ValueError:
            continue
    if (odometer_km := attributes.pop(_OBD_ODOMETER_KM, None)) is not None:
        attributes[attr.ODOMETER_M] = round(odometer_km * 1000)
    codes = [code for code in fields[13:] if code.strip()]
    report_alarms: tuple[str, ...] = ()
    if codes:
        attributes[attr.DTCS] = " ".join(codes)
        report_alarms = (alarms.FAULT,)
    return Report(protocol=PROTOCOL, device_id=imei, event="obd", alarms=report_alarms, attributes=attributes)


DRIVER = register(PROTOCOL, sniff, Gps103Session)
