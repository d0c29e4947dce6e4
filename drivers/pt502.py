"""pt502: Bofan PT502 / PT500 / PT510 / PT600 / PT300X (the PT-600 camera tracker).

Frames are ASCII lines ``$<EVT>,<ID>,...`` ending in CR/LF (sometimes ``#`` before it). A frame may
be preceded by a 5-byte binary header ``BF FB <xor> <len LE16>``; with a text payload the header is
dropped and the payload split into lines (a PT-600 "long frame" carries several ``$POS`` records).
Photo chunks ``$PHD<offset>,<len>,<JPEG bytes>`` are cut by their own length, because JPEG bytes
contain CR/LF.

Photos are server-driven: a ``$PHO<size>`` position announces one, the relay requests it chunk by
chunk (``#PHD<offset>,<len>``), and the last chunk completes a ``photo`` report carrying the JPEG.
No reply is required for positions. Speeds on the wire are knots.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from . import alarms
from . import attributes as attr
from ._commands import device_password, whole_hours
from ._model import (
    Command,
    CommandType,
    Decoded,
    DriverError,
    FramingError,
    InvalidCommand,
    Report,
    Transport,
    UnsupportedCommand,
)
from ._registry import register
from ._session import Match, Session
from ._text import knots_to_kmh, nmea_coordinate, optional_float, utc_datetime

PROTOCOL = "pt502"

HEADER = b"\xbf\xfb"
HEADER_SIZE = 5
#: Largest photo chunk the relay asks for (Traccar's MAX_CHUNK_SIZE; larger chunks get lost on 2G).
PHOTO_CHUNK = 960
#: A photo larger than this is refused: the PT-600 takes ~6 KB JPEGs, 256 KB is far past any real one.
MAX_PHOTO = 256 * 1024
#: The factory SMS password of Bofan trackers (6 digits).
BOFAN_PASSWORD = "000000"

#: EVT code to alarm, in Traccar's vocabulary. SPD/LPA come from the PT502 manual's alarm switch list.
EVENT_ALARMS: dict[str, str] = {
    "IN1": alarms.SOS,
    "GOF": alarms.GEOFENCE,
    "GEO": alarms.GEOFENCE,
    "TOW": alarms.TOW,
    "HDA": alarms.HARD_ACCELERATION,
    "HDB": alarms.HARD_BRAKING,
    "FDA": alarms.FATIGUE_DRIVING,
    "SKA": alarms.VIBRATION,
    "PMA": alarms.MOVEMENT,
    "CPA": alarms.POWER_CUT,
    "SPD": alarms.OVERSPEED,
    "LPA": alarms.LOW_POWER,
}

#: A line's type field: ``$``, a capital, then capitals, digits or ``-`` (``POS``, ``IN1``, ``IU4``,
#: ``PHO3821-1``, ``FUS<imei>``), then ``,``. Traccar takes any type; the first capital keeps the
#: sniffer off other ``$`` protocols, and no h02 binary frame fits (its BCD hour byte is ``<= 0x23``).
_TYPE_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_CAPITALS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: The longest type field the sniffer waits for (``FUS`` + a 15-digit IMEI fits with room).
_MAX_TYPE = 32
_LINE_END = re.compile(rb"[\r\n]+")
_PHD = re.compile(rb"\$PHD(\d{1,7}),(\d{1,5}),")
_PHO = re.compile(r"PHO(\d+)(?:-\d+)?")
#: A position line after its ``$``: eleven fields, then the ``/``-separated extras. Each field is
#: checked by the converter that reads it.
_POSITION = re.compile(
    r"""
    (?P<event>[^,]*) ,              # EVT: POS, an alarm code (IN1, CPA...), PHO<size>...
    (?P<id>[^,]*) ,                 # device id, digits
    (?P<time>[^,]*) ,               # hhmmss.sss, UTC
    (?P<validity>[^,]*) ,           # A valid, V not
    (?P<lat>[^,]*) ,                # ddmm.mmmm
    (?P<lat_hemisphere>[^,]*) ,     # N or S
    (?P<lon>[^,]*) ,                # dddmm.mmmm
    (?P<lon_hemisphere>[^,]*) ,     # E or W
    (?P<speed>[^,]*) ,              # knots
    (?P<course>[^,]*) ,             # degrees
    (?P<date>[^,]*)                 # ddmmyy
    (?: , (?P<extras>.*) )?         # ,,<c>/in,out/adc,.../odometer/rfid/state/
    """,
    re.VERBOSE | re.DOTALL,
)


def sniff(head: bytes, transport: Transport) -> Match:
    """``BF FB``, or ``$`` + a capital + ``[A-Z0-9-]*`` + ``,``: every line type the decoder reads
    (positions, alarms such as ``$IN1``/``$IU4``/``$CPA``, photos, ``$FUS`` version reports)."""
    if head.startswith(HEADER):
        return Match.YES
    if head[:1] == HEADER[:1]:
        return Match.MORE if len(head) < 2 else Match.NO
    if head[:1] != b"$":
        return Match.MORE if not head else Match.NO
    for index, byte in enumerate(head[1 : _MAX_TYPE + 1], start=1):
        if byte == 0x2C:  # ","
            return Match.YES if index >= 2 else Match.NO
        if byte not in (_CAPITALS if index == 1 else _TYPE_CHARS):
            return Match.NO
    return Match.MORE if len(head) <= _MAX_TYPE else Match.NO


class Pt502Session(Session):
    protocol = PROTOCOL
    transports = frozenset({Transport.TCP, Transport.UDP, Transport.SERIAL})
    # A headered frame carries its 16-bit length; photo chunks are at most 960 bytes plus headers.
    max_frame = 65535 + HEADER_SIZE

    def __init__(self, transport: Transport = Transport.TCP, *, device_id: str | None = None) -> None:
        super().__init__(transport, device_id=device_id)
        self._photo: bytearray | None = None
        self._photo_size = 0
        #: A ``#PHO`` went out on this session and its ``$PHO`` answer has not come yet.
        self._photo_requested = False

    @property
    def photo_pending(self) -> bool:
        """A photo has been announced and not fully received."""
        return self._photo is not None

    def _next_frame(self) -> bytes | None:
        buffer = self._buffer
        while True:
            while buffer and buffer[0] in b"\r\n":
                del buffer[0]
            if not buffer:
                return None
            if buffer.startswith(HEADER):
                if len(buffer) < HEADER_SIZE:
                    return None
                total = int.from_bytes(buffer[3:5], "little")
                if buffer[HEADER_SIZE : HEADER_SIZE + 4] == b"$PHD" and total > HEADER_SIZE + 2:
                    if len(buffer) < total:
                        return None
                    frame = bytes(buffer[HEADER_SIZE : total - 2])
                    del buffer[:total]
                    return frame
                del buffer[:HEADER_SIZE]  # text payload: drop the header, split into lines
                continue
            if buffer.startswith(b"$PHD"):
                chunk = _PHD.match(buffer)
                if chunk is None:
                    whole_header = len(buffer) >= 20 or buffer.count(b",", 4) >= 2
                    if not whole_header:
                        return None
                    # The chunk's length is unknown, so nothing after it can be framed.
                    raise FramingError(PROTOCOL, "malformed $PHD header", data=bytes(buffer[:20]))
                end = chunk.end() + int(chunk.group(2))
                if len(buffer) < end:
                    return None
                return self._cut(end)
            # The line end (CR, LF, CR CR, CRLF) goes with its line: the stored wire bytes of one
            # frame then end with its own terminator.
            line_end = _LINE_END.search(buffer)
            if line_end is None:
                return None
            return self._cut(line_end.start(), line_end.end() - line_end.start())

    def decode(self, frame: bytes, *, now: datetime) -> Decoded:
        if frame.startswith(HEADER):
            frame = frame[HEADER_SIZE:]
        if frame.startswith(b"$PHD"):
            return self._photo_chunk(frame)
        try:
            text = frame.decode("ascii").strip().rstrip("#")
        except UnicodeDecodeError:
            raise DriverError(PROTOCOL, "frame is not ASCII", data=frame) from None
        if not text.startswith("$"):
            raise DriverError(PROTOCOL, "frame does not start with '$'", data=frame)
        if text.startswith("$FUS"):
            return self._version(text, frame)
        position = _POSITION.fullmatch(text, 1)
        if position is None:
            count = text.count(",") + 1
            raise DriverError(PROTOCOL, f"position has {count} fields, expected at least 11", data=frame)
        try:
            report = _position(position)
        except (ValueError, IndexError) as error:
            raise DriverError(PROTOCOL, f"bad position: {error}", data=frame) from None
        self.device_id = report.device_id
        replies: tuple[bytes, ...] = ()
        size = report.attributes.get("photo_size")
        answer: tuple[Report, ...] = ()
        if size is not None and self._photo_requested:
            # The answer to our #PHO (size 0: the camera took none).
            self._photo_requested = False
            result = {attr.RESULT: report.attributes[attr.EVENT_CODE], attr.PHOTO_SIZE: size}
            answer = (Report(protocol=PROTOCOL, device_id=report.device_id, event="commandResult",
                             attributes=result),)  # fmt: skip
        if size:
            if size > MAX_PHOTO:
                raise DriverError(PROTOCOL, f"photo of {size} bytes exceeds {MAX_PHOTO}", data=frame)
            self._photo = bytearray()
            self._photo_size = size
            replies = (_chunk_request(0, size),)
        return Decoded((report, *answer), replies, device_id=report.device_id)

    def _version(self, text: str, frame: bytes) -> Decoded:
        fields = text[4:].split(",")
        imei = fields[0]
        if not imei.isdigit():
            raise DriverError(PROTOCOL, f"version report without a numeric id: {imei!r}", data=frame)
        attributes = {attr.HARDWARE: fields[1]} if len(fields) > 1 else {}
        if len(fields) > 2:
            attributes[attr.MODULE] = fields[2]
        return Decoded((Report(protocol=PROTOCOL, device_id=imei, event="version", attributes=attributes),))

    def _photo_chunk(self, frame: bytes) -> Decoded:
        chunk = _PHD.match(frame)
        if chunk is None:
            raise DriverError(PROTOCOL, "malformed $PHD chunk", data=frame[:32])
        offset, length = int(chunk.group(1)), int(chunk.group(2))
        data = frame[chunk.end() : chunk.end() + length]
        if len(data) != length:
            raise DriverError(
                PROTOCOL, f"photo chunk says {length} bytes, carries {len(data)}", data=frame[:32]
            )
        if self._photo is None or offset != len(self._photo):
            # Not the chunk we asked for (none pending, or a resend): ignore it, keep the photo.
            return Decoded()
        self._photo += data
        if len(self._photo) < self._photo_size:
            return Decoded(replies=(_chunk_request(len(self._photo), self._photo_size),))
        image = bytes(self._photo[: self._photo_size])
        self._photo = None
        report = Report(
            protocol=PROTOCOL,
            device_id=self.device_id,
            event="photo",
            media=image,
            media_type="image/jpeg",
            attributes={attr.PHOTO_SIZE: len(image)},
        )
        return Decoded((report,))

    # Bofan takes the same command codes over GPRS (``#<code>``, Traccar's encoder) and by SMS
    # (``<password><code>``, the PT502 manual and Plaspy's PT-600 setup). GTI is the GPRS report
    # interval the PT-600 is provisioned with (``relay provision``); RST reboots, RCP (SMS only)
    # answers with the current position.
    supported_commands = frozenset({
        CommandType.CUSTOM, CommandType.OUTPUT_CONTROL, CommandType.SET_TIMEZONE, CommandType.ALARM_SPEED,
        CommandType.REQUEST_PHOTO, CommandType.POSITION_PERIODIC, CommandType.REBOOT_DEVICE,
    })  # fmt: skip
    #: The device answers ``#PHO`` with a ``$PHO<size>`` line (then the photo flow runs); Traccar's
    #: decoder knows no other answer over TCP.
    answered_commands = frozenset({CommandType.REQUEST_PHOTO})
    sms_commands = frozenset({
        CommandType.CUSTOM, CommandType.OUTPUT_CONTROL, CommandType.SET_TIMEZONE, CommandType.ALARM_SPEED,
        CommandType.POSITION_PERIODIC, CommandType.POSITION_SINGLE, CommandType.REBOOT_DEVICE,
    })  # fmt: skip

    def _encode(self, command: Command) -> bytes:
        if command.type is CommandType.CUSTOM:
            body = str(command.params["data"]).removeprefix("#")
        else:
            body = _code(command)
        if command.type is CommandType.REQUEST_PHOTO:
            self._photo_requested = True
        return f"#{body}\r\n".encode()

    @classmethod
    def _encode_sms(cls, command: Command) -> str:
        if command.type is CommandType.CUSTOM:
            return str(command.params["data"])  # the whole text, password included
        return device_password(PROTOCOL, command, BOFAN_PASSWORD, r"\d{6}", "6 digits") + _code(command)


def _code(command: Command) -> str:
    """The Bofan command code and its arguments (``OPC1,1``, ``GTI60``...), for GPRS and SMS alike."""
    params = command.params
    match command.type:
        case CommandType.OUTPUT_CONTROL:
            if params["index"] < 1:
                raise InvalidCommand(PROTOCOL, "outputControl: index 0: Bofan outputs count from 1")
            return f"OPC{params['index']},{params['data']}"
        case CommandType.SET_TIMEZONE:
            return f"TMZ{whole_hours(PROTOCOL, command)}"
        case CommandType.ALARM_SPEED:
            return f"SPD{params['speed']}"
        case CommandType.REQUEST_PHOTO:
            return "PHO"
        case CommandType.POSITION_PERIODIC:
            return f"GTI{params['frequency']}"
        case CommandType.POSITION_SINGLE:
            return "RCP"
        case CommandType.REBOOT_DEVICE:
            return "RST"
    raise UnsupportedCommand(PROTOCOL, f"command {command.type.value!r} is not supported")


def _chunk_request(received: int, size: int) -> bytes:
    return f"#PHD{received},{min(size - received, PHOTO_CHUNK)}\r\n".encode()


def _position(position: re.Match[str]) -> Report:
    """A :data:`_POSITION` line (its groups in order)."""
    (code, device_id, hhmmss, validity, lat, lat_hemisphere, lon, lon_hemisphere, knots, degrees, ddmmyy,
     extras) = position.groups()  # fmt: skip
    if not device_id.isdigit():
        raise ValueError(f"device id {device_id!r} is not numeric")
    attributes: dict[str, Any] = {attr.EVENT_CODE: code}
    found: list[str] = []
    if code in EVENT_ALARMS:
        found.append(EVENT_ALARMS[code])
    if code.startswith("PHO") and (photo := _PHO.fullmatch(code)):
        attributes[attr.PHOTO_SIZE] = int(photo.group(1))
    speed = knots_to_kmh(knots)
    course = optional_float(degrees)
    satellites: int | None = None
    driver_id: str | None = None
    groups = (extras or "").split("/")
    if len(groups) > 1:
        io = groups[1].split(",")
        if io[0]:
            attributes[attr.INPUT] = int(io[0], 2)
        if len(io) > 1 and io[1]:
            attributes[attr.OUTPUT] = int(io[1], 2)
    if len(groups) > 2 and groups[2]:
        for index, value in enumerate(groups[2].split(","), start=1):
            if value:
                attributes[f"adc{index}"] = int(value, 16)
    if len(groups) > 3 and groups[3]:
        attributes[attr.ODOMETER_M] = int(groups[3])
    if len(groups) > 4 and groups[4]:
        driver_id = groups[4]
    if len(groups) > 5 and len(groups[5]) == 3:
        state = int(groups[5], 16)
        attributes[attr.BATTERY_RAW] = state >> 8
        attributes[attr.RSSI] = (state >> 4) & 0xF
        satellites = state & 0xF
    return Report(
        protocol=PROTOCOL,
        device_id=device_id,
        event="alarm" if found else "position",
        time=utc_datetime(ddmmyy, hhmmss),
        valid=validity == "A",
        lat=nmea_coordinate(lat, lat_hemisphere),
        lon=nmea_coordinate(lon, lon_hemisphere),
        speed_kmh=speed if speed is not None else 0.0,
        course_deg=course if course is not None else 0.0,
        satellites=satellites,
        alarms=tuple(found),
        driver_id=driver_id,
        attributes=attributes,
    )


DRIVER = register(PROTOCOL, sniff, Pt502Session)
