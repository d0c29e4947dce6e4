"""teltonika: FMB/FMC/FMT… AVL data (codec 8, 8E, 16; GH3000 codec 7) and codec 12/13/14 text, TCP and UDP.

TCP (Traccar ``TeltonikaFrameDecoder``): the device opens with ``00 0F`` + its 15-digit IMEI and waits
for ``01``. Then every AVL packet is ``00000000 | length(4) | codec | N | records | N | CRC(4)`` and is
answered with N as 4 bytes, or the device sends it again. A lone ``FF`` is a keep-alive.

The CRC (CRC-16/IBM over codec..N) is enforced for AVL data: a packet with a bad CRC raises
:class:`DriverError` and gets no answer, so the device resends it. Codec 12/13/14 messages (answers to
our commands) get no answer at all, so one with a bad CRC cannot come again: it is decoded and marked
``crc_ok: false`` instead.

UDP: one datagram is one packet, ``length(2) | packet id(2) | type(1) | AVL packet id(1) | 00 0F | IMEI |
codec | N | records | N`` (no CRC), answered ``00 05 | packet id | 01 | AVL packet id | N``.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from . import alarms
from . import attributes as attr
from ._binary import Reader, code_name
from ._crc import crc16_ibm
from ._model import (
    Command,
    CommandType,
    Decoded,
    DriverError,
    FramingError,
    Report,
    Transport,
    UnsupportedCommand,
)
from ._registry import register
from ._session import Match, Session, UpstreamAck

PROTOCOL = "teltonika"

IMEI_LENGTH = 15
#: The TCP handshake: ``00 0F`` (the IMEI's length) then the IMEI.
IMEI_PREFIX = IMEI_LENGTH.to_bytes(2, "big")
HANDSHAKE_SIZE = 2 + IMEI_LENGTH
ACCEPT = b"\x01"
KEEP_ALIVE = 0xFF
AVL_PREAMBLE = b"\x00\x00\x00\x00"
#: Preamble(4) + data length(4) before the data; CRC(4) after it.
AVL_HEADER = 8
AVL_CRC = 4
#: UDP header: length(2), packet id(2), packet type(1), AVL packet id(1), IMEI length(2), IMEI.
UDP_HEADER = 8 + IMEI_LENGTH


class Codec(enum.IntEnum):
    """The codec byte that opens an AVL or text packet."""

    CODEC_7 = 0x07
    CODEC_8 = 0x08
    CODEC_8E = 0x8E
    CODEC_16 = 0x10
    CODEC_12 = 0x0C
    CODEC_13 = 0x0D
    CODEC_14 = 0x0E


class MessageType(enum.IntEnum):
    """Codec 12 message types: server command, device response; CAMERA is the camera's own
    sub-protocol."""

    COMMAND = 0x05
    RESPONSE = 0x06
    CAMERA = 0x0D


AVL_CODECS = frozenset({Codec.CODEC_7, Codec.CODEC_8, Codec.CODEC_8E, Codec.CODEC_16})
TEXT_CODECS = frozenset({Codec.CODEC_12, Codec.CODEC_13, Codec.CODEC_14})

#: Coordinates are signed 1e-7 degrees.
COORDINATE_SCALE = 10_000_000.0
#: Record priority 2 is "panic".
PRIORITY_PANIC = 2
#: Codec 7 (GH3000) times count seconds from this epoch in the low 30 bits.
CODEC_7_EPOCH = datetime(2007, 1, 1, tzinfo=UTC)

#: Well-known IO ids (FMB models) -> (attribute, converter). Every id is also kept as ``io<id>``.
IO_ATTRIBUTES: dict[int, tuple[str, Callable[[int], Any]]] = {
    1: ("din1", bool),
    2: ("din2", bool),
    3: ("din3", bool),
    4: ("din4", bool),
    9: ("adc1", lambda value: value / 1000),
    10: ("adc2", lambda value: value / 1000),
    16: (attr.ODOMETER_M, int),
    21: (attr.RSSI, int),
    66: (attr.POWER_V, lambda value: value / 1000),
    67: (attr.BATTERY_V, lambda value: value / 1000),
    69: (attr.GNSS_STATUS, int),
    72: (attr.TEMPERATURE_C, lambda value: value / 10),
    73: ("temperature2_c", lambda value: value / 10),
    74: ("temperature3_c", lambda value: value / 10),
    75: ("temperature4_c", lambda value: value / 10),
    84: (attr.FUEL_L, lambda value: value / 10),
    89: (attr.FUEL_PCT, int),
    113: (attr.BATTERY_PCT, int),
    179: ("dout1", bool),
    180: ("dout2", bool),
    181: (attr.PDOP, lambda value: value / 10),
    182: (attr.HDOP, lambda value: value / 10),
    199: (attr.TRIP_ODOMETER_M, int),
    205: (attr.CID, int),
    206: (attr.LAC, int),
    239: (attr.IGNITION, bool),
    240: (attr.MOVEMENT, bool),
    241: (attr.OPERATOR, int),
    10800: ("eye_temperature1_c", lambda value: value / 100),
    10801: ("eye_temperature2_c", lambda value: value / 100),
    10802: ("eye_temperature3_c", lambda value: value / 100),
    10803: ("eye_temperature4_c", lambda value: value / 100),
}
#: IO ids whose values are two's complement (temperatures), whatever their group's size.
SIGNED_IDS = frozenset({72, 73, 74, 75, 10800, 10801, 10802, 10803})
IBUTTON_ID = 78
GREEN_DRIVING = {1: alarms.HARD_ACCELERATION, 2: alarms.HARD_BRAKING, 3: alarms.HARD_CORNERING}
AUTO_GEOFENCE_ID = 175


def sniff(head: bytes, transport: Transport) -> Match:
    """TCP: ``00 0F`` + 15 digits (after optional ``FF`` pings), or an AVL packet header
    (``00000000``, a length under 64 KB, a known codec). UDP: the datagram header with ``00 0F`` +
    15 digits at offset 6 and an AVL codec after the IMEI."""
    if transport is Transport.UDP:
        return _sniff_udp(head)
    stripped = head.lstrip(bytes([KEEP_ALIVE]))
    if len(stripped) >= 2 and stripped[:2] == b"\x00\x00" and len(stripped) == len(head):
        return _sniff_avl(head)
    return _sniff_imei(stripped)


def _sniff_imei(data: bytes) -> Match:
    """``00 0F`` then 15 ASCII digits; MORE while the bytes so far fit."""
    if data[:2] != IMEI_PREFIX[: len(data)]:
        return Match.NO
    imei = data[2:HANDSHAKE_SIZE]
    if not all(0x30 <= byte <= 0x39 for byte in imei):
        return Match.NO
    return Match.YES if len(imei) == IMEI_LENGTH else Match.MORE


def _sniff_avl(head: bytes) -> Match:
    # The preamble and the high half of the length: AVL packets stay far below 64 KB.
    fixed = AVL_PREAMBLE + b"\x00\x00"
    if head[:6] != fixed[: len(head)]:
        return Match.NO
    if len(head) < AVL_HEADER + 2:
        return Match.MORE
    length = int.from_bytes(head[4:8], "big")
    codec, count = head[8], head[9]
    if codec in AVL_CODECS | TEXT_CODECS and count > 0 and length >= 3:
        return Match.YES
    return Match.NO


def _sniff_udp(head: bytes) -> Match:
    if len(head) > 4 and head[4] not in (0, 1):
        return Match.NO
    if len(head) > 6 and (found := _sniff_imei(head[6:])) is not Match.YES:
        return found
    if len(head) <= UDP_HEADER:
        return Match.MORE
    return Match.YES if head[UDP_HEADER] in AVL_CODECS else Match.NO


#: The fixed texts of codec 12 commands.
COMMAND_TEXTS: dict[CommandType, str] = {
    CommandType.ENGINE_STOP: "setdigout 1",
    CommandType.ENGINE_RESUME: "setdigout 0",
    CommandType.REBOOT_DEVICE: "cpureset",
    CommandType.POSITION_SINGLE: "getgps",
}


class TeltonikaSession(Session):
    protocol = PROTOCOL
    transports = frozenset({Transport.TCP, Transport.UDP})
    # FMB devices send at most ~1.3 KB of AVL data, camera chunks up to 2 KB; leave room.
    max_frame = 16384

    def __init__(self, transport: Transport = Transport.TCP, *, device_id: str | None = None) -> None:
        super().__init__(transport, device_id=device_id)
        self.photo_parts: list[bytes] = []

    # -- framing (TeltonikaFrameDecoder) ---------------------------------------------------------

    def _next_frame(self) -> bytes | None:
        buffer = self._buffer
        if not buffer:
            return None
        if buffer[0] == KEEP_ALIVE:
            return self._cut(1)
        if len(buffer) < 2:
            return None
        length = int.from_bytes(buffer[:2], "big")
        if length:
            if length != IMEI_LENGTH:
                raise FramingError(
                    PROTOCOL, f"IMEI length {length} (expected {IMEI_LENGTH})", data=bytes(buffer)
                )
            return self._cut(HANDSHAKE_SIZE) if len(buffer) >= HANDSHAKE_SIZE else None
        if len(buffer) < AVL_HEADER:
            return None
        if buffer[:4] != AVL_PREAMBLE:
            raise FramingError(PROTOCOL, "AVL packet does not start with 00000000", data=bytes(buffer[:16]))
        total = AVL_HEADER + int.from_bytes(buffer[4:8], "big") + AVL_CRC
        if total > self.max_frame:
            raise FramingError(
                PROTOCOL, f"AVL packet of {total} bytes (limit {self.max_frame})", data=bytes(buffer)
            )
        return self._cut(total) if len(buffer) >= total else None

    def datagram_frames(self, datagram: bytes) -> list[bytes]:
        """One UDP datagram is one packet, whatever its length field says."""
        return [datagram]

    # -- decoding (TeltonikaProtocolDecoder) -----------------------------------------------------

    def decode(self, frame: bytes, *, now: datetime) -> Decoded:
        try:
            if self.transport is Transport.UDP:
                return self._decode_udp(frame)
            return self._decode_tcp(frame)
        except (IndexError, ValueError, OverflowError, OSError) as error:
            if isinstance(error, DriverError):
                raise
            raise DriverError(PROTOCOL, f"malformed packet: {error}", data=frame) from None

    def _decode_tcp(self, frame: bytes) -> Decoded:
        if frame == bytes([KEEP_ALIVE]):
            return Decoded()
        if frame[:2] == IMEI_PREFIX:
            imei = frame[2:HANDSHAKE_SIZE].decode("ascii", "replace")
            if len(frame) != HANDSHAKE_SIZE or not imei.isdigit():
                raise DriverError(PROTOCOL, f"bad IMEI handshake {imei!r}", data=frame)
            self.device_id = imei
            report = Report(protocol=PROTOCOL, device_id=imei, event="login")
            return Decoded((report,), (ACCEPT,), device_id=imei)
        if len(frame) < AVL_HEADER + 3 + AVL_CRC or frame[:4] != AVL_PREAMBLE:
            raise DriverError(PROTOCOL, f"not an AVL packet ({len(frame)} bytes)", data=frame)
        declared = int.from_bytes(frame[4:8], "big")
        # A packet shorter than its length field (seen in the wild) is decoded as far as it goes.
        end = AVL_HEADER + declared if len(frame) == AVL_HEADER + declared + AVL_CRC else len(frame) - AVL_CRC
        data, crc = frame[AVL_HEADER:end], int.from_bytes(frame[end:], "big")
        crc_ok = crc16_ibm(data) == crc
        codec = data[0]
        if codec in TEXT_CODECS:
            return Decoded(self._text(data, crc_ok))
        if not crc_ok:
            raise DriverError(
                PROTOCOL, f"bad CRC (got {crc:04x}, expected {crc16_ibm(data):04x})", data=frame, offset=end
            )
        reports = self._avl(data, frame)
        return Decoded(reports, (len(reports).to_bytes(4, "big"),))

    def _decode_udp(self, frame: bytes) -> Decoded:
        if len(frame) < UDP_HEADER + 3:
            raise DriverError(PROTOCOL, f"UDP packet of {len(frame)} bytes is too short", data=frame)
        packet_id = frame[2:4]
        avl_packet_id = frame[5]
        if frame[6:8] != IMEI_PREFIX:
            raise DriverError(PROTOCOL, "UDP packet without a 15-digit IMEI", data=frame, offset=6)
        imei = frame[8:UDP_HEADER].decode("ascii", "replace")
        if not imei.isdigit():
            raise DriverError(PROTOCOL, f"UDP IMEI {imei!r} is not digits", data=frame, offset=8)
        self.device_id = imei
        reports = self._avl(frame[UDP_HEADER:], frame)
        reply = b"\x00\x05" + packet_id + b"\x01" + bytes([avl_packet_id, len(reports) & 0xFF])
        return Decoded(reports, (reply,), device_id=imei)

    def _avl(self, data: bytes, frame: bytes) -> tuple[Report, ...]:
        """``codec | N | records | N``: every record, or DriverError."""
        codec, count = data[0], data[1]
        if codec not in AVL_CODECS:
            raise DriverError(PROTOCOL, f"codec {code_name(Codec, codec)} carries no AVL records", data=frame)
        reader = Reader(data, 2)
        reports = []
        for _ in range(count):
            if codec == Codec.CODEC_7:
                reports.append(self._record_7(reader))
            else:
                reports.append(self._record(reader, codec))
        if reader.pos != len(data) - 1 or data[-1] != count:
            raise DriverError(
                PROTOCOL,
                f"{count} records end at byte {reader.pos} of {len(data)} (trailing count {data[-1]})",
                data=frame,
            )
        return tuple(reports)

    def _record(self, reader: Reader, codec: int) -> Report:
        """One codec 8 / 8E / 16 record."""
        fast = _read_record(reader.data, reader.pos, codec) if codec != Codec.CODEC_16 else None
        if fast is not None:
            millis, priority, lon_raw, lat_raw, altitude, course, satellites, speed, event_id, values, end = (
                fast
            )
            reader.pos = end
            time = datetime.fromtimestamp(millis / 1000, UTC)
            lon = lon_raw / COORDINATE_SCALE
            lat = lat_raw / COORDINATE_SCALE
        else:  # codec 16, or a record that runs past the data: the reader says where
            time = datetime.fromtimestamp(reader.uint(8) / 1000, UTC)
            priority = reader.uint(1)
            lon = _signed(reader.uint(4), 4) / COORDINATE_SCALE
            lat = _signed(reader.uint(4), 4) / COORDINATE_SCALE
            altitude = _signed(reader.uint(2), 2)
            course = reader.uint(2)
            satellites = reader.uint(1)
            speed = reader.uint(2)
            wide = codec in (Codec.CODEC_8E, Codec.CODEC_16)
            event_id = reader.uint(2 if wide else 1)
            if codec == Codec.CODEC_16:
                reader.uint(1)  # generation type
            reader.uint(2 if codec == Codec.CODEC_8E else 1)  # total IO count
            values = {}
            for size in (1, 2, 4, 8):
                for _ in range(reader.uint(2 if codec == Codec.CODEC_8E else 1)):
                    io_id = reader.uint(2 if wide else 1)
                    values[io_id] = (
                        (reader.uint(size), size) if size != 8 or io_id != IBUTTON_ID else reader.take(8)
                    )
            if codec == Codec.CODEC_8E:
                for _ in range(reader.uint(2)):
                    io_id = reader.uint(2)
                    values[io_id] = reader.take(reader.uint(2))
        attributes: dict[str, Any] = {attr.PRIORITY: priority, attr.EVENT_IO: event_id}
        found: list[str] = []
        if priority == PRIORITY_PANIC:
            found.append(alarms.SOS)
        driver_id = _io_attributes(values, event_id, attributes, found)
        return Report(
            protocol=PROTOCOL,
            device_id=self.device_id,
            event="alarm" if found else "position",
            time=time,
            valid=satellites > 0,
            lat=lat,
            lon=lon,
            altitude_m=float(altitude),
            speed_kmh=float(speed),
            course_deg=float(course) if course <= 360 else None,
            satellites=satellites,
            alarms=tuple(dict.fromkeys(found)),
            driver_id=driver_id,
            attributes=attributes,
        )

    def _record_7(self, reader: Reader) -> Report:
        """One GH3000 (codec 7) record: masks say which fields follow; floats for lat/lon."""
        stamp = reader.uint(4)
        time = CODEC_7_EPOCH + timedelta(seconds=stamp & 0x3FFFFFFF)
        attributes: dict[str, Any] = {attr.PRIORITY: stamp >> 30}
        fields: dict[str, Any] = {}
        global_mask = reader.uint(1)
        if global_mask & 0x01:
            mask = reader.uint(1)
            if mask & 0x01:
                lat, lon = reader.float32(), reader.float32()
                if -90 <= lat <= 90 and -180 <= lon <= 180:
                    fields.update(lat=lat, lon=lon)
            if mask & 0x02:
                fields["altitude_m"] = float(_signed(reader.uint(2), 2))
            if mask & 0x04:
                fields["course_deg"] = reader.uint(1) * 360 / 256
            if mask & 0x08:
                fields["speed_kmh"] = float(reader.uint(1))
            if mask & 0x10:
                fields["satellites"] = reader.uint(1)
                fields["valid"] = fields["satellites"] >= 3
            if mask & 0x20:
                attributes[attr.LAC] = reader.uint(2)
                attributes[attr.CID] = reader.uint(2)
            if mask & 0x40:
                attributes[attr.RSSI] = reader.uint(1)
            if mask & 0x80:
                attributes[attr.OPERATOR] = reader.uint(4)
        values: dict[int, tuple[int, int] | bytes] = {}
        for bit, size in ((0x02, 1), (0x04, 2), (0x08, 4)):
            if global_mask & bit:
                for _ in range(reader.uint(1)):
                    io_id = reader.uint(1)
                    values[io_id] = (reader.uint(size), size)
        found: list[str] = []
        driver_id = _io_attributes(values, 0, attributes, found)
        return Report(
            protocol=PROTOCOL,
            device_id=self.device_id,
            event="alarm" if found else "position",
            time=time,
            alarms=tuple(found),
            driver_id=driver_id,
            attributes=attributes,
            **fields,
        )

    def _text(self, data: bytes, crc_ok: bool) -> tuple[Report, ...]:
        """Codec 12/13/14: ``codec | 1 | type | size(4) | [time(4) | IMEI(8)] | payload | 1``."""
        codec, message_type = data[0], data[2]
        size = int.from_bytes(data[3:7], "big")
        payload = data[7 : 7 + size]
        attributes: dict[str, Any] = {}
        if not crc_ok:
            attributes[attr.CRC_OK] = False
        time = None
        if codec == Codec.CODEC_13 and len(payload) >= 4:
            time = datetime.fromtimestamp(int.from_bytes(payload[:4], "big"), UTC)
            payload = payload[4:]
        elif codec == Codec.CODEC_14 and len(payload) >= 8:
            attributes[attr.IMEI] = payload[:8].hex().lstrip("0")
            payload = payload[8:]
        if message_type == MessageType.CAMERA:
            # The camera's chunked photo sub-protocol: reported, not assembled (yet).
            attributes.update({attr.CAMERA_MESSAGE: payload[:1].hex(), attr.BYTES: len(payload)})
            event = "camera"
        else:
            if all(32 <= byte < 127 or byte in (9, 10, 13) for byte in payload):
                attributes[attr.RESULT] = payload.decode("ascii").strip()
            else:
                attributes[attr.RESULT_HEX] = payload.hex()
            attributes[attr.MESSAGE_TYPE] = int(message_type)
            event = "commandResult"
        return (
            Report(
                protocol=PROTOCOL, device_id=self.device_id, event=event, time=time, attributes=attributes
            ),
        )

    # -- encoding (TeltonikaProtocolEncoder) -----------------------------------------------------

    @classmethod
    def upstream_ack(cls, wire: bytes, *, login: bool) -> UpstreamAck | None:
        """The IMEI handshake is accepted with ``01``; an AVL packet with its record count."""
        if wire[:2] == IMEI_PREFIX:
            return UpstreamAck.exactly(
                "the IMEI accepted (01)",
                1,
                lambda answer: None if answer == ACCEPT else f"upstream refused the IMEI ({answer.hex()})",
            )
        if wire[:4] == AVL_PREAMBLE and len(wire) > AVL_HEADER + 1 and wire[AVL_HEADER] in AVL_CODECS:
            records = wire[AVL_HEADER + 1]

            def refusal(answer: bytes) -> str | None:
                taken = int.from_bytes(answer, "big")
                return None if taken == records else f"upstream took {taken} of {records} records"

            return UpstreamAck.exactly(f"a record count of {records}", 4, refusal)
        return None

    supported_commands = frozenset({*COMMAND_TEXTS, CommandType.CUSTOM})
    #: The device answers each codec 12 command with a codec 12 response (type 0x06).
    answered_commands = supported_commands

    def _encode(self, command: Command) -> bytes:
        """A codec 12 command. ``custom`` sends ``data`` as ASCII, or as bytes when ``hex`` is set."""
        if command.type in COMMAND_TEXTS:
            payload = COMMAND_TEXTS[command.type].encode("ascii")
        elif command.params["hex"]:
            payload = bytes.fromhex(command.params["data"])
        elif command.type is CommandType.CUSTOM:
            payload = str(command.params["data"]).encode("ascii")
        else:
            raise UnsupportedCommand(PROTOCOL, f"command {command.type.value!r} is not supported")
        return codec12(payload)


def codec12(payload: bytes, message_type: int = MessageType.COMMAND) -> bytes:
    """``00000000 | length | 0C 01 <type> | size(4) | payload | 01 | CRC(4)``."""
    data = bytes([Codec.CODEC_12, 1, message_type]) + len(payload).to_bytes(4, "big") + payload + b"\x01"
    return AVL_PREAMBLE + len(data).to_bytes(4, "big") + data + crc16_ibm(data).to_bytes(4, "big")


#: A record's fixed head: time (ms), priority, lon, lat, altitude, angle, satellites, speed.
_RECORD_HEAD = struct.Struct(">QBiihHBH")
_U16 = struct.Struct(">H")


def _read_record(data: bytes, pos: int, codec: int) -> tuple[Any, ...] | None:
    """A codec 8 / 8E record at ``pos`` read in one pass over ``data``: the head's numbers, the event
    id, the IO values (as :meth:`TeltonikaSession._record` keeps them) and where the record ends; or
    ``None`` when it runs past the data (the general reads then raise, saying where)."""
    end = len(data)
    if pos + _RECORD_HEAD.size > end:
        return None
    head = _RECORD_HEAD.unpack_from(data, pos)
    pos += _RECORD_HEAD.size
    extended = codec == Codec.CODEC_8E
    width = 2 if extended else 1  # of the counts and the ids
    if pos + 2 * width > end:
        return None
    event_id = _U16.unpack_from(data, pos)[0] if extended else data[pos]
    pos += 2 * width  # the event id and the total count
    values: dict[int, tuple[int, int] | bytes] = {}
    for size in (1, 2, 4, 8):
        if pos + width > end:
            return None
        count = _U16.unpack_from(data, pos)[0] if extended else data[pos]
        pos += width
        step = width + size
        if pos + count * step > end:
            return None
        for _ in range(count):
            io_id = _U16.unpack_from(data, pos)[0] if extended else data[pos]
            if size == 8 and io_id == IBUTTON_ID:
                values[io_id] = data[pos + width : pos + step]
            else:
                values[io_id] = (int.from_bytes(data[pos + width : pos + step], "big"), size)
            pos += step
    if extended:
        if pos + 2 > end:
            return None
        count = _U16.unpack_from(data, pos)[0]
        pos += 2
        for _ in range(count):
            if pos + 4 > end:
                return None
            io_id, length = _U16.unpack_from(data, pos)[0], _U16.unpack_from(data, pos + 2)[0]
            pos += 4
            if pos + length > end:
                return None
            values[io_id] = data[pos : pos + length]
            pos += length
    return (*head, event_id, values, pos)


def _signed(value: int, size: int) -> int:
    bits = size * 8
    return value - (1 << bits) if value >= 1 << (bits - 1) else value


def _io_attributes(
    values: dict[int, tuple[int, int] | bytes], event_id: int, attributes: dict[str, Any], found: list[str]
) -> str | None:
    """Raw ``io<id>`` values, the well-known ones by name, and the alarms they raise. Returns the
    iButton driver id, if any."""
    driver_id = None
    for io_id, item in values.items():
        if isinstance(item, bytes):
            attributes[f"io{io_id}"] = item.hex()
            if io_id == IBUTTON_ID and any(item):
                driver_id = item[::-1].hex()
            continue
        value, size = item
        attributes[f"io{io_id}"] = value
        if io_id in IO_ATTRIBUTES:
            name, convert = IO_ATTRIBUTES[io_id]
            attributes[name] = convert(_signed(value, size) if io_id in SIGNED_IDS else value)
        if io_id == 236 and value:
            found.append(alarms.GENERAL)
        elif io_id == 246 and value == 1:
            found.append(alarms.TOW)
        elif io_id == 247 and value:
            found.append(alarms.ACCIDENT)
        elif io_id == 249 and value == 1:
            found.append(alarms.JAMMING)
        elif io_id == 252 and value == 1:
            found.append(alarms.POWER_CUT)
        elif io_id == 253 and value in GREEN_DRIVING:
            found.append(GREEN_DRIVING[value])
        elif io_id == AUTO_GEOFENCE_ID and event_id == AUTO_GEOFENCE_ID:
            found.append(alarms.GEOFENCE_ENTER if value else alarms.GEOFENCE_EXIT)
    return driver_id


DRIVER = register(PROTOCOL, sniff, TeltonikaSession)
