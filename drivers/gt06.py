"""gt06: the Concox binary protocol (GT06/GT06N, JM-VL, GK310, many clones incl. SinoTrack-like 4G units).

Framing (Traccar ``Gt06FrameDecoder``)::

    78 78 | len(1) | type | body | serial(2) | crc(2) | 0D 0A        total = len + 5
    79 79 | len(2) | type | body | serial(2) | crc(2) | 0D 0A        total = len + 6

``len`` counts type..crc. When the declared length does not end in ``0D 0A`` (some devices send
``len`` 0 for WiFi packets, or a wrong one), the frame is cut at the first ``0D 0A`` instead. The CRC
is CRC-16/X-25 over len..serial. It is *not* enforced: many real devices send bad CRCs and Traccar never
checks, so a mismatch is only recorded as ``crc_ok: false`` in the report's attributes.

The device logs in with its IMEI (``0x01``); later packets carry no id, so the session remembers it
(and the timezone the login may announce, which later GPS times are corrected by). Nearly every packet
is acknowledged with ``78 78 05 <type> <serial> <crc> 0D 0A``; login and heartbeat must be, or the
device never reports / reconnects.
"""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from . import alarms
from . import attributes as attr
from ._binary import Reader, ShortFrame, code_name
from ._commands import check_length
from ._crc import crc16_x25
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
from ._session import Match, Session, UpstreamAck

PROTOCOL = "gt06"

START = b"\x78\x78"
START_EXTENDED = b"\x79\x79"
TRAILER = b"\r\n"
#: Header bytes before the type: start(2) + len(1), or start(2) + len(2) for 0x7979 frames.
HEADER = 3
HEADER_EXTENDED = 4
#: Serial(2) + CRC(2) after the body.
FOOTER = 4
#: Coordinates are in 1/30000 of a minute: degrees = value / 1 800 000.
COORDINATE_SCALE = 1_800_000.0
#: Voltage level 0..6 in status blocks; Traccar reports it as a percentage.
VOLTAGE_LEVELS = 6


class PacketType(enum.IntEnum):
    """The packet types this driver decodes (the byte after the length), so errors name them.
    Traccar's names in comments where they differ from ours."""

    LOGIN = 0x01
    GPS = 0x10
    GPS_LBS_6 = 0x11
    GPS_LBS_1 = 0x12
    HEARTBEAT = 0x13
    STRING = 0x15
    GPS_LBS_STATUS_1 = 0x16
    WIFI = 0x17  # with len 0: WiFi list; otherwise GPS + LBS + RFID
    LBS_EXTEND = 0x18
    LBS_STATUS = 0x19
    GPS_PHONE = 0x1A
    GPS_LBS_EXTEND = 0x1E
    STRING_INFO = 0x21
    GPS_LBS_2 = 0x22
    LBS_MULTIPLE_3 = 0x24
    GPS_LBS_STATUS_2 = 0x26
    GPS_LBS_STATUS_3 = 0x27
    LBS_MULTIPLE_1 = 0x28
    LBS_WIFI = 0x2C
    GPS_LBS_4 = 0x2D
    LBS_MULTIPLE_2 = 0x2E
    GPS_LBS_5 = 0x31
    GPS_LBS_STATUS_4 = 0x32  # 0x7878 framing; 0x7979 0x32 is the AZ735 GPS packet
    AZ735_ALARM = 0x33
    X1_GPS = 0x34
    STATUS_2 = 0x36  # 0x7878 framing (Jimi IoT 4G); 0x7979 0x36 is X1 photo data
    GPS_LBS_3 = 0x37
    ALARM_MODULE = 0x39  # Jimi IoT 4G
    WIFI_2 = 0x69
    GPS_MODULAR = 0x70
    COMMAND = 0x80
    TIME_REQUEST = 0x8A
    INFO = 0x94
    ALARM = 0x95
    SERIAL_DATA = 0x9B
    GPS_2 = 0xA0  # 4G: LAC 4 bytes, cell id 8 bytes
    LBS_2 = 0xA1
    WIFI_3 = 0xA2  # also GPS_LBS_STATUS_5 on LW 4G units, see LW4G_LENGTH
    FENCE_MULTI = 0xA4
    LBS_ALARM = 0xA5
    WIFI_ALARM = 0xA9  # Jimi IoT 4G
    WIFI_4 = 0xF3




#: Types whose body starts with the 18-byte GPS block.
GPS_TYPES = frozenset(
    {
        PacketType.GPS,
        PacketType.GPS_LBS_6,
        PacketType.GPS_LBS_1,
        PacketType.GPS_LBS_STATUS_1,
        PacketType.WIFI,
        PacketType.GPS_PHONE,
        PacketType.GPS_LBS_EXTEND,
        PacketType.GPS_LBS_2,
        PacketType.GPS_LBS_STATUS_2,
        PacketType.GPS_LBS_STATUS_3,
        PacketType.GPS_LBS_4,
        PacketType.GPS_LBS_5,
        PacketType.GPS_LBS_STATUS_4,
        PacketType.GPS_LBS_3,
        PacketType.GPS_2,
        PacketType.FENCE_MULTI,
        PacketType.X1_GPS,
    }
)
#: GPS types followed by a cell (LBS) block.
GPS_LBS_TYPES = GPS_TYPES - {PacketType.GPS, PacketType.X1_GPS}
#: Types with LTE cells (LAC 4 bytes, cell id 8 bytes).
LTE_TYPES = frozenset({PacketType.GPS_2, PacketType.FENCE_MULTI, PacketType.LBS_ALARM})
#: Types with a status block (terminal info, voltage, GSM signal, alarm, language) after the cell.
STATUS_TYPES = frozenset(
    {
        PacketType.GPS_LBS_STATUS_1,
        PacketType.GPS_LBS_STATUS_2,
        PacketType.GPS_LBS_STATUS_3,
        PacketType.GPS_LBS_STATUS_4,
        PacketType.FENCE_MULTI,
        PacketType.LBS_STATUS,
        PacketType.LBS_ALARM,
    }
)
#: Cell-only types with a status block (no GPS, no LBS length byte).
LBS_STATUS_TYPES = frozenset({PacketType.LBS_STATUS, PacketType.LBS_ALARM})
#: Types carrying a list of cells after a time stamp.
MULTI_LBS_TYPES = frozenset(
    {
        PacketType.LBS_EXTEND,
        PacketType.LBS_MULTIPLE_3,
        PacketType.LBS_MULTIPLE_1,
        PacketType.LBS_WIFI,
        PacketType.LBS_MULTIPLE_2,
        PacketType.LBS_2,
        PacketType.WIFI_3,
    }
)
#: 0x7878 types that get no generic acknowledgement (Traccar's exceptions).
NO_ACK_TYPES = frozenset(
    {
        PacketType.COMMAND,
        0x81,
        0x82,
        PacketType.TIME_REQUEST,
        PacketType.STRING_INFO,
        PacketType.INFO,
        0x8C,
        PacketType.SERIAL_DATA,
        0x38,
        PacketType.X1_GPS,
        PacketType.WIFI_4,
    }
)
#: 0x7979 types acknowledged in 0x7979 framing, and those acknowledged in 0x7878 framing.
EXTENDED_ACK_EXTENDED = frozenset({PacketType.GPS_LBS_STATUS_4, PacketType.AZ735_ALARM, 0x41})
EXTENDED_ACK_SHORT = frozenset({PacketType.GPS_MODULAR, 0xF1, 0xF2, 0x40})
#: Variants Traccar tells apart by type and declared length (``decodeVariant``).
#: VXT01: 0x12/0x16 with a status block holding power volts; its alarm byte is not an alarm and
#: terminal-info alarm 7 means overspeed.
VXT01_LENGTH = 0x24
#: S5: 0x12 with a status block (power volts, alarm byte), oil, temperature and odometer.
S5_LENGTH = 0x2B
#: WeTrust: 0x12 with odometer, driver card and a card alarm flag.
WETRUST_LENGTH = 0x29
#: SL4X: 0x7878 0x32 of these lengths: cell with a 2-byte MNC and 8-byte cell id, status, altitude.
SL4X_LENGTHS = frozenset({0x27, 0x29})
#: SEEWORLD: 0x16 whose cell id is 4 bytes.
SEEWORLD_LENGTH = 0x26
#: OBD6: 0x13 with a 2-byte signal word (satellites, GSM) before the alarm byte.
OBD6_LENGTH = 0x13
#: LW 4G units: 0xA2 is a GPS + 4G cell + status packet, not a WiFi list.
LW4G_LENGTH = 0x40
#: A 0x13 body of this length is the JM01-style information layout (no mapped alarm).
INFO_HEARTBEAT_BODY = 16
#: Types whose language byte lends its high nibble to the alarm code (Traccar: extension += lang >> 4 << 8).
LANGUAGE_EXTENDED_TYPES = frozenset(
    {PacketType.GPS_LBS_STATUS_3, PacketType.FENCE_MULTI, PacketType.ALARM_MODULE}
)

#: The alarm byte of the status block, and the alarm code of the 4G alarm packets (Traccar's
#: ``decodeAlarm``, default model). Codes above 0xFF come from the packets whose language byte lends
#: its high nibble to the code (0x27, 0x39, 0xA4, 0xA9).
ALARM_CODES: dict[int, str] = {
    0x01: alarms.SOS,
    0x02: alarms.POWER_CUT,
    0x03: alarms.VIBRATION,
    0x04: alarms.GEOFENCE_ENTER,
    0x05: alarms.GEOFENCE_EXIT,
    0x06: alarms.OVERSPEED,
    0x09: alarms.VIBRATION,
    0x0C: alarms.TAMPERING,
    0x0E: alarms.LOW_BATTERY,
    0x0F: alarms.LOW_BATTERY,
    0x11: alarms.POWER_OFF,
    0x13: alarms.TAMPERING,
    0x14: alarms.DOOR,
    0x18: alarms.REMOVING,
    0x19: alarms.LOW_BATTERY,
    0x1A: alarms.HARD_BRAKING,
    0x1B: alarms.HARD_CORNERING,
    0x23: alarms.FALL_DOWN,
    0x25: alarms.TAMPERING,
    0x26: alarms.HARD_ACCELERATION,
    0x27: alarms.HARD_BRAKING,
    0x28: alarms.HARD_BRAKING,
    0x29: alarms.HARD_ACCELERATION,
    0x2A: alarms.HARD_CORNERING,
    0x2B: alarms.HARD_CORNERING,
    0x2C: alarms.ACCIDENT,
    0x2E: alarms.HARD_CORNERING,
    0x30: alarms.JAMMING,
    0x32: alarms.TAMPERING,
    0x33: alarms.LOCK,
    0x34: alarms.UNLOCK,
    0x53: alarms.FUEL_LEAK,
    0x5B: alarms.TEMPERATURE,
    0x5C: alarms.TEMPERATURE,
    0xC9: alarms.IDLE,
    0x0107: alarms.JAMMING,
    0x010B: alarms.JAMMING,
}
#: Codes that mean something else on some models (Traccar picks by the device's configured model).
LW_ALARM_CODES: dict[int, str] = {0x18: alarms.ACCIDENT, 0x19: alarms.HARD_ACCELERATION}
SEEWORLD_ALARM_CODES: dict[int, str] = {0x28: alarms.HARD_CORNERING, 0x29: alarms.ACCIDENT}
VL_ALARM_CODES: dict[int, str] = {0x09: alarms.TOW, 0x28: alarms.POWER_OFF, 0x30: alarms.HARD_BRAKING}
VL_MODELS = frozenset({"VL103", "LL303", "VL512", "G18"})

#: Bits 3-5 of the terminal-info byte (7 is overspeed on VXT01 units).
TERMINAL_ALARMS: dict[int, str] = {
    1: alarms.VIBRATION,
    2: alarms.POWER_CUT,
    3: alarms.LOW_BATTERY,
    4: alarms.SOS,
    6: alarms.GEOFENCE,
    7: alarms.REMOVING,
}

#: Event codes of the JC100/JC400 ``0x95`` alarm packet (0x01 is sos in the long forms, general in
#: the short one).
EVENT_ALARMS: dict[int, str] = {
    0x01: alarms.SOS,
    0x0E: alarms.LOW_POWER,
    0x76: alarms.TEMPERATURE,
    0x80: alarms.VIBRATION,
    0x87: alarms.OVERSPEED,
    0x88: alarms.POWER_CUT,
    0x90: alarms.HARD_ACCELERATION,
    0x91: alarms.HARD_BRAKING,
    0x92: alarms.HARD_CORNERING,
    0x93: alarms.ACCIDENT,
}

#: Events of module 0x2B in the modular ``0x70`` packet.
MODULAR_EVENTS: dict[int, str] = {
    0x11: alarms.LOW_BATTERY,
    0x12: alarms.LOW_POWER,
    0x13: alarms.POWER_CUT,
    0x14: alarms.REMOVING,
}
#: Events of module 0x34 (event, time, content) in the modular ``0x70`` packet.
MODULAR_EVENT_RECORDS: dict[int, str] = {
    0x10: alarms.DOOR,
    0x12: alarms.REMOVING,
    0x14: alarms.GEOFENCE_ENTER,
    0x15: alarms.GEOFENCE_EXIT,
    0x16: alarms.TEMPERATURE,
    0x1A: alarms.LOW_BATTERY,
    0x1B: alarms.OVERSPEED,
    0x1C: alarms.POWER_ON,
    0x1D: alarms.POWER_OFF,
    0x20: alarms.VIBRATION,
    0x21: alarms.POWER_CUT,
    0x23: alarms.TAMPERING,
}
#: The status byte of the AZ735 ``0x7979 0x33`` alarm packet (0xA0/0xA1 arm and disarm).
AZ735_ALARMS: dict[int, str] = {
    0xA2: alarms.LOW_BATTERY,
    0xA3: alarms.LOW_BATTERY,
    0xA4: alarms.GENERAL,
    0xA5: alarms.DOOR,
}

#: Command texts (Concox SMS/GPRS command set) per command type.
COMMAND_TEXTS: dict[CommandType, str] = {
    CommandType.ENGINE_STOP: "Relay,1#",
    CommandType.ENGINE_RESUME: "Relay,0#",
    CommandType.REBOOT_DEVICE: "RESET#",
    CommandType.POSITION_SINGLE: "WHERE#",
}
#: The longest command text: a short frame's length byte counts type, length, flag, text, serial, CRC.
MAX_COMMAND_TEXT = 255 - (1 + 1 + 4 + 2 + 2)
#: The Concox ``TIMER`` range, in seconds (upload interval with the ACC on).
MIN_TIMER_S = 5
MAX_TIMER_S = 18_000
#: The 4-byte "server flag" the device echoes in its 0x15 answer.
SERVER_FLAG = b"\x00\x00\x00\x00"

_LOCATION_TEXT = re.compile(
    r"""Current\ position!
        Lat:(?P<ns>[NS])(?P<lat>\d+\.\d+),
        Lon:(?P<ew>[EW])(?P<lon>\d+\.\d+),
        Course:(?P<course>\d+\.\d+),
        Speed:(?P<speed>\d+\.\d+),
        DateTime:(?P<date>\d{4}-\d\d-\d\d)\ +(?P<time>\d\d:\d\d:\d\d)""",
    re.VERBOSE,
)


def alarm_of(code: int, model: str | None = None) -> str | None:
    """The alarm an alarm byte (or 4G alarm code) means, for the device ``model`` if one is known.

    Traccar reads a few codes differently by the device's configured model: ``LW*`` (0x18 accident,
    0x19 hardAcceleration), ``SEEWORLD`` (0x28 hardCornering, 0x29 accident) and VL103/LL303/VL512/G18
    (0x09 tow, 0x28 powerOff, 0x30 hardBraking). Without a model the default table applies.
    """
    name = (model or "").upper()
    if name.startswith("LW") and code in LW_ALARM_CODES:
        return LW_ALARM_CODES[code]
    if name == "SEEWORLD" and code in SEEWORLD_ALARM_CODES:
        return SEEWORLD_ALARM_CODES[code]
    if name in VL_MODELS and code in VL_ALARM_CODES:
        return VL_ALARM_CODES[code]
    return ALARM_CODES.get(code)


def sniff(head: bytes, transport: Transport) -> Match:
    """``78 78`` or ``79 79``."""
    if head[:2] in (START, START_EXTENDED):
        return Match.YES
    if head in (b"", START[:1], START_EXTENDED[:1]):
        return Match.MORE
    return Match.NO


def frame_bytes(type_: int, content: bytes, serial: int, *, extended: bool = False) -> bytes:
    """A complete frame: start, length, ``type``, ``content``, ``serial``, CRC-16/X-25, ``0D 0A``."""
    length = 1 + len(content) + FOOTER
    header = START_EXTENDED + length.to_bytes(2, "big") if extended else START + bytes([length])
    packet = header + bytes([type_]) + content + (serial & 0xFFFF).to_bytes(2, "big")
    return packet + crc16_x25(packet[2:]).to_bytes(2, "big") + TRAILER


class _Packet(NamedTuple):
    extended: bool
    declared_length: int
    #: The declared length matched the frame.
    consistent: bool
    type: int
    #: Everything after the type byte, up to the trailer (body, serial and CRC).
    data: bytes
    #: The body: ``data`` without serial and CRC.
    body: bytes
    serial: int
    crc_ok: bool | None


class Gt06Session(Session):
    protocol = PROTOCOL
    transports = frozenset({Transport.TCP})
    # 0x7979 frames could declare up to 64 KB; real ones (photos in 1 KB chunks) stay far below.
    max_frame = 8192

    def __init__(self, transport: Transport = Transport.TCP, *, device_id: str | None = None) -> None:
        super().__init__(transport, device_id=device_id)
        #: Offset of the device clock from UTC, learned from the login (None: assume UTC).
        self.timezone: timedelta | None = None
        #: The device model (Traccar's per-device ``model``): a few alarm codes and status layouts
        #: depend on it (see :func:`alarm_of`). None, the default, reads them as standard models do.
        self.model: str | None = None
        self._command_serial = 0

    # -- framing (Gt06FrameDecoder) --------------------------------------------------------------

    def _next_frame(self) -> bytes | None:
        buffer = self._buffer
        if not buffer:
            return None
        start = bytes(buffer[:2])
        if start not in (START, START_EXTENDED):
            if len(buffer) >= 2 or buffer[0] not in (START[0], START_EXTENDED[0]):
                raise FramingError(
                    PROTOCOL, "stream does not start with 7878 or 7979", data=bytes(buffer[:16])
                )
            return None
        extended = start == START_EXTENDED
        header = HEADER_EXTENDED if extended else HEADER
        if len(buffer) < header:
            return None
        total = int.from_bytes(buffer[2:header], "big") + header + len(TRAILER)
        if total <= self.max_frame and len(buffer) >= total and buffer[total - 2 : total] == TRAILER:
            return self._cut(total)
        # The declared length is wrong (0 for some WiFi packets, short for some logins): cut at the
        # first CR LF, as Traccar does, so the device gets its answer. While the declared end is not
        # reached yet, only a CR LF that ends what has arrived counts: a frame whose data holds CR LF
        # and that arrives in pieces is then still cut at its true end (unless a piece ends there).
        end = buffer.find(TRAILER, header)
        if end < 0:
            return None
        if len(buffer) < total <= self.max_frame and end + len(TRAILER) != len(buffer):
            return None
        return self._cut(end + len(TRAILER))

    # -- decoding (Gt06ProtocolDecoder) ----------------------------------------------------------

    def decode(self, frame: bytes, *, now: datetime) -> Decoded:
        packet = _split(frame)
        reader = Reader(packet.data, body_length=len(packet.body))
        try:
            return self._decode(packet, reader, now)
        except ShortFrame as error:
            why = f"type {code_name(PacketType, packet.type)} too short: {error}"
            raise DriverError(PROTOCOL, why, data=frame) from None
        except ValueError as error:
            why = f"type {code_name(PacketType, packet.type)}: {error}"
            raise DriverError(PROTOCOL, why, data=frame) from None

    def _decode(self, packet: _Packet, reader: Reader, now: datetime) -> Decoded:
        type_ = packet.type
        attributes: dict[str, Any] = {}
        if packet.crc_ok is False:
            attributes[attr.CRC_OK] = False
        found: list[str] = []

        if type_ == PacketType.LOGIN and not packet.extended:
            return self._login(packet, reader)
        if type_ == PacketType.TIME_REQUEST and not packet.extended:
            clock = now.astimezone(UTC)
            content = bytes(
                [clock.year - 2000, clock.month, clock.day, clock.hour, clock.minute, clock.second]
            )
            return Decoded((), (frame_bytes(PacketType.TIME_REQUEST, content, packet.serial),))

        report: Report | None
        # 0x17 is a WiFi list when its length is wrong (often 0); with a true length it is GPS + RFID.
        wifi_list = type_ == PacketType.WIFI and not packet.consistent
        if type_ in (PacketType.WIFI_2, PacketType.WIFI_4) or wifi_list:
            report, replies = self._wifi(packet, reader, attributes)
            return Decoded((report,), replies)
        if packet.extended and type_ in (PacketType.GPS_LBS_STATUS_4, PacketType.AZ735_ALARM):
            report = self._az735(packet, reader, attributes, found)
        elif type_ == PacketType.WIFI_3 and packet.declared_length == LW4G_LENGTH and not packet.extended:
            report = self._lw4g(reader, attributes, found)
        elif type_ == PacketType.ALARM_MODULE and not packet.extended:
            report = self._alarm_module(reader, attributes, found)
        elif type_ == PacketType.WIFI_ALARM:
            report = self._wifi_alarm(reader, attributes, found)
        elif type_ == PacketType.STATUS_2 and not packet.extended:
            report = self._status_2(packet, reader, attributes, found)
        elif packet.extended and type_ == PacketType.GPS_MODULAR:
            report = self._modular(reader, attributes, found)
        elif type_ in GPS_TYPES and not packet.body:
            report = None  # an empty location packet: a keep-alive some units send
        elif type_ in GPS_TYPES:
            report = self._location(packet, reader, attributes, found)
        elif type_ == PacketType.HEARTBEAT:
            self._heartbeat(packet, reader, attributes, found)
            report = self._report("heartbeat", attributes, found)
        elif type_ in LBS_STATUS_TYPES:
            self._cell(reader, attributes, lte=type_ in LTE_TYPES, wide=False)
            self._status(reader, attributes, found, alarm=True)
            report = self._report("alarm" if found else "status", attributes, found)
        elif type_ in MULTI_LBS_TYPES:
            report = self._multi_lbs(type_, reader, attributes)
        elif type_ == PacketType.STRING:
            report = self._string(reader, attributes)
        elif type_ == PacketType.STRING_INFO:
            report = self._string_info(reader, attributes)
        elif type_ == PacketType.INFO:
            report = self._info(reader, attributes)
        elif type_ == PacketType.ALARM:
            report = self._alarm_packet(packet, reader, attributes, found)
        elif type_ == PacketType.SERIAL_DATA:
            reader.skip(1)  # external device type
            attributes[attr.RESULT] = reader.take(max(reader.left, 0)).hex()
            report = self._report("serial", attributes, found)
        else:
            # Unknown to us, but the data is kept: the report carries the raw body.
            attributes[attr.TYPE] = type_
            attributes[attr.RAW] = packet.body.hex()
            report = self._report("message", attributes, found)
        return Decoded((report,) if report is not None else (), self._ack(packet))

    def _ack(self, packet: _Packet) -> tuple[bytes, ...]:
        """The generic acknowledgement (Traccar's rule, protocols.md §4.3)."""
        if packet.extended:
            if packet.type in EXTENDED_ACK_EXTENDED:
                return (frame_bytes(packet.type, b"", packet.serial, extended=True),)
            if packet.type in EXTENDED_ACK_SHORT:
                return (frame_bytes(packet.type, b"", packet.serial),)
            return ()
        if packet.type in NO_ACK_TYPES:
            return ()
        return (frame_bytes(packet.type, b"", packet.serial),)

    def _report(self, event: str, attributes: dict[str, Any], found: list[str], **fields: Any) -> Report:
        return Report(
            protocol=PROTOCOL,
            device_id=self.device_id,
            event=event,
            alarms=tuple(dict.fromkeys(found)),
            attributes=attributes,
            **fields,
        )

    def _login(self, packet: _Packet, reader: Reader) -> Decoded:
        imei = reader.take(8).hex()[1:]
        if not imei.isdigit():
            raise ValueError(f"login IMEI {imei!r} is not BCD digits")
        attributes: dict[str, Any] = {}
        if packet.crc_ok is False:
            attributes[attr.CRC_OK] = False
        timezone = None
        if reader.left >= 4:
            attributes[attr.DEVICE_TYPE] = reader.u16()
            bits = reader.u16()
            hhmm = bits >> 4
            minutes = (hhmm // 100) * 60 + hhmm % 100
            # Bit 3 set: west of Greenwich.
            timezone = timedelta(minutes=-minutes if bits & 0x08 else minutes)
            attributes[attr.TIMEZONE_MIN] = int(timezone.total_seconds() // 60)
        self.device_id = imei
        self.timezone = timezone
        report = Report(protocol=PROTOCOL, device_id=imei, event="login", attributes=attributes)
        return Decoded((report,), (frame_bytes(PacketType.LOGIN, b"", packet.serial),), device_id=imei)

    # -- blocks ------------------------------------------------------------------------------------

    def _device_time(self, raw: bytes) -> datetime:
        """Six binary bytes ``YY MM DD hh mm ss`` in the device's timezone, to UTC."""
        year, month, day, hour, minute, second = raw
        local = datetime(2000 + year, month, day, hour, minute, second, tzinfo=UTC)
        return local - self.timezone if self.timezone else local

    def _gps(
        self,
        reader: Reader,
        attributes: dict[str, Any],
        *,
        satellites: bool = True,
        speed: bool = True,
    ) -> dict[str, Any]:
        """The GPS block: time, [length/satellites], lat, lon, [speed km/h], course and flags."""
        time = self._device_time(reader.take(6))
        sats = reader.u8() & 0x0F if satellites else None
        lat = reader.uint(4) / COORDINATE_SCALE
        lon = reader.uint(4) / COORDINATE_SCALE
        speed_kmh = float(reader.u8()) if speed else 0.0
        flags = reader.u16()
        if not flags & 0x0400:  # bit 10: north
            lat = -lat
        if flags & 0x0800:  # bit 11: west
            lon = -lon
        if flags & 0x4000:  # bit 14: the ACC state (bit 15) is present
            attributes[attr.IGNITION] = bool(flags & 0x8000)
        return {
            "time": time,
            "valid": bool(flags & 0x1000),
            "lat": lat,
            "lon": lon,
            "speed_kmh": speed_kmh,
            "course_deg": _course(flags),
            "satellites": sats,
        }

    def _cell(
        self, reader: Reader, attributes: dict[str, Any], *, lte: bool, wide: bool, long_cid: bool = False
    ) -> None:
        """MCC, MNC (2 bytes when MCC bit 15 is set), LAC and cell id (wider on 4G types)."""
        mcc = reader.u16()
        mnc = reader.u16() if mcc & 0x8000 or wide else reader.u8()
        lac = reader.uint(4) if lte else reader.u16()
        cid = reader.uint(8) if lte else reader.uint(4) if wide or long_cid else reader.uint(3)
        attributes.update({attr.MCC: mcc & 0x7FFF, attr.MNC: mnc, attr.LAC: lac, attr.CID: cid})

    def _sized_cell(
        self,
        packet: _Packet,
        reader: Reader,
        attributes: dict[str, Any],
        *,
        lte: bool,
        long_cid: bool = False,
    ) -> bool:
        """A cell block led by its length byte, which counts itself; whatever the length covers past
        the cell is skipped, so the status block after it is found even when the cell is longer than
        we read. Length 0 means no cell: the status block follows at once, unless a zero-filled block
        follows instead (Traccar skips up to 45 bytes of it). True when a cell was read."""
        start = reader.pos
        length = reader.u8()
        if length == 0:
            if not any((packet.data + TRAILER)[start + 10 : start + 46]):
                reader.skip(min(max(reader.left, 0), 45))
            return False
        self._cell(reader, attributes, lte=lte, wide=False, long_cid=long_cid)
        reader.pos = max(reader.pos, min(start + length, reader.body_length))
        return True

    def _terminal_info(
        self, info: int, attributes: dict[str, Any], found: list[str], *, vxt01: bool = False
    ) -> None:
        """The terminal-info byte: flags, and an alarm in bits 3-5."""
        attributes.update(
            {
                attr.STATUS: info,
                attr.ARMED: bool(info & 0x01),
                attr.IGNITION: bool(info & 0x02),
                attr.CHARGE: bool(info & 0x04),
                attr.GPS_TRACKING: bool(info & 0x40),
                attr.BLOCKED: bool(info & 0x80),
            }
        )
        bits = (info >> 3) & 0x07
        if bits == 7 and vxt01:
            found.append(alarms.OVERSPEED)
        elif bits in TERMINAL_ALARMS:
            found.append(TERMINAL_ALARMS[bits])

    def _alarm_byte(
        self,
        reader: Reader,
        attributes: dict[str, Any],
        found: list[str],
        *,
        extended: bool,
        mapped: bool = True,
    ) -> None:
        """The alarm byte; with ``extended`` the next (language) byte's high nibble is its bits 8-11."""
        code = reader.u8()
        if extended and reader.pos < len(reader.data):
            code |= (reader.data[reader.pos] >> 4) << 8
        attributes[attr.ALARM_CODE] = code
        if mapped and (name := alarm_of(code, self.model)) is not None:
            found.append(name)

    @staticmethod
    def _battery_level(level: int, attributes: dict[str, Any]) -> None:
        if level <= VOLTAGE_LEVELS:
            attributes[attr.BATTERY_PCT] = level * 100 // VOLTAGE_LEVELS
        else:
            attributes[attr.BATTERY_RAW] = level

    def _status(
        self,
        reader: Reader,
        attributes: dict[str, Any],
        found: list[str],
        *,
        alarm: bool,
        power: bool = False,
        vxt01: bool = False,
        extended_code: bool = False,
    ) -> None:
        """Terminal info, voltage level (or power volts), GSM signal, [alarm byte]; optional tail.

        VXT01 units send an alarm byte that is not an alarm code (kept as ``alarm_code`` only).
        """
        if reader.left < 1:
            return
        self._terminal_info(reader.u8(), attributes, found, vxt01=vxt01)
        if power and reader.left >= 2:
            attributes[attr.POWER_V] = reader.u16() / 100
        elif reader.left >= 1:
            self._battery_level(reader.u8(), attributes)
        if reader.left >= 1:
            attributes[attr.RSSI] = reader.u8()
        if alarm and reader.left >= 1:
            self._alarm_byte(reader, attributes, found, extended=extended_code, mapped=not vxt01)

    def _heartbeat(
        self, packet: _Packet, reader: Reader, attributes: dict[str, Any], found: list[str]
    ) -> None:
        """0x13: the status block, in the layout the variant (declared length) and model call for."""
        model = (self.model or "").upper()
        if len(packet.body) == INFO_HEARTBEAT_BODY:
            # Information content, satellites(2), alarm, language, battery %, mode, volts, ...: Traccar
            # reads no alarm from this layout.
            reader.skip(5)
            attributes[attr.BATTERY_PCT] = reader.u8()
        elif packet.declared_length == OBD6_LENGTH:
            self._terminal_info(reader.u8(), attributes, found)
            signal = reader.u16()
            attributes[attr.SATELLITES_VISIBLE] = ((signal >> 10) & 0x1F) + ((signal >> 5) & 0x1F)
            attributes[attr.RSSI] = signal & 0x1F
            self._alarm_byte(reader, attributes, found, extended=False)
            reader.skip(1)  # language
            attributes[attr.BATTERY_PCT] = reader.u8()
            reader.skip(1)  # working mode
            attributes[attr.POWER_V] = reader.u16() / 100
        elif model.startswith("LW") or model in ("SEEWORLD", "R11"):
            # Per-model layouts: R11 sends power volts for the voltage level; LW units power volts
            # (12 bits, 0.1 V) and SEEWORLD units power volts (1 V) where the alarm byte would be.
            self._terminal_info(reader.u8(), attributes, found)
            if model == "R11":
                attributes[attr.POWER_V] = reader.u16() / 100
            else:
                self._battery_level(reader.u8(), attributes)
            attributes[attr.RSSI] = reader.u8()
            if model.startswith("LW") and reader.left >= 2:
                attributes[attr.POWER_V] = (reader.u16() & 0x0FFF) / 10
            elif model == "SEEWORLD" and reader.left >= 1:
                attributes[attr.POWER_V] = float(reader.u8())
            elif reader.left >= 1:
                self._alarm_byte(reader, attributes, found, extended=False)
        else:
            self._status(reader, attributes, found, alarm=reader.left >= 4)

    def _location(
        self, packet: _Packet, reader: Reader, attributes: dict[str, Any], found: list[str]
    ) -> Report:
        type_, length = packet.type, packet.declared_length
        if type_ == PacketType.X1_GPS:
            reader.skip(4)  # data and alarm flags
        fields = self._gps(reader, attributes)
        if type_ == PacketType.GPS_LBS_STATUS_4 and length in SL4X_LENGTHS:
            self._sl4x_status(reader, attributes, found)
            return self._report("alarm" if found else "position", attributes, found, **fields)
        vxt01 = type_ in (PacketType.GPS_LBS_1, PacketType.GPS_LBS_STATUS_1) and length == VXT01_LENGTH
        s5 = type_ == PacketType.GPS_LBS_1 and length == S5_LENGTH
        if type_ in GPS_LBS_TYPES:
            lte, wide = type_ in LTE_TYPES, type_ == PacketType.GPS_LBS_6
            if type_ in STATUS_TYPES and not vxt01:
                # Status packets put the cell block's length first (VXT01 units do not).
                if reader.left >= 1:
                    long_cid = type_ == PacketType.GPS_LBS_STATUS_1 and length == SEEWORLD_LENGTH
                    self._sized_cell(packet, reader, attributes, lte=lte, long_cid=long_cid)
            elif reader.left >= _cell_size(lte=lte, wide=wide):
                self._cell(reader, attributes, lte=lte, wide=wide)
        if vxt01 or s5:
            self._status(reader, attributes, found, alarm=True, power=True, vxt01=vxt01)
            if s5 and reader.left >= 7:
                attributes[attr.OIL] = reader.u16()
                temperature = reader.u8()
                attributes[attr.TEMPERATURE_C] = -(temperature & 0x7F) if temperature & 0x80 else temperature
                attributes[attr.ODOMETER_M] = reader.uint(4) * 10
        elif type_ == PacketType.GPS_LBS_1 and length == WETRUST_LENGTH and reader.left >= 5:
            attributes[attr.ODOMETER_M] = reader.uint(4)
            attributes[attr.CARD] = _text(reader.take(reader.u8()))
            if reader.left >= 1 and reader.u8() > 0:
                found.append(alarms.GENERAL)  # the card alarm flag
        elif type_ in STATUS_TYPES:
            extended = type_ in LANGUAGE_EXTENDED_TYPES
            self._status(reader, attributes, found, alarm=True, extended_code=extended)
        elif type_ == PacketType.WIFI and reader.left >= 8:
            driver = reader.take(8).hex()
            fields["driver_id"] = driver
        elif type_ in (PacketType.GPS_LBS_2, PacketType.GPS_2) and reader.left >= 1:
            attributes[attr.IGNITION] = reader.u8() > 0
        event = "alarm" if found else "position"
        return self._report(event, attributes, found, **fields)

    def _sl4x_status(self, reader: Reader, attributes: dict[str, Any], found: list[str]) -> None:
        """SL4X 0x32 after the GPS block: cell length, MCC, 2-byte MNC, LAC, 8-byte cell id (Traccar
        then skips length - 9 bytes), the status block with its alarm byte, altitude."""
        length = reader.u8()
        mcc, mnc, lac, cid = reader.u16(), reader.u16(), reader.u16(), reader.uint(8)
        attributes.update({attr.MCC: mcc & 0x7FFF, attr.MNC: mnc, attr.LAC: lac, attr.CID: cid})
        reader.skip(min(max(length - 9, 0), max(reader.left, 0)))
        if reader.left >= 4:
            self._status(reader, attributes, found, alarm=True)

    def _lw4g(self, reader: Reader, attributes: dict[str, Any], found: list[str]) -> Report:
        """0xA2 from LW 4G units: GPS, 4G cell, network indicator, status with power volts, alarm."""
        fields = self._gps(reader, attributes)
        self._cell(reader, attributes, lte=True, wide=False)
        reader.skip(1)  # network indicator
        self._terminal_info(reader.u8(), attributes, found)
        attributes[attr.POWER_V] = reader.u16() / 100
        self._battery_level(reader.u8(), attributes)
        attributes[attr.RSSI] = reader.u8()
        self._alarm_byte(reader, attributes, found, extended=False)
        return self._report("alarm" if found else "position", attributes, found, **fields)

    def _alarm_module(self, reader: Reader, attributes: dict[str, Any], found: list[str]) -> Report:
        """0x39 (Jimi IoT 4G): GPS, a typed cell (type >= 3: 4G), status, alarm + language, modules."""
        fields = self._gps(reader, attributes)
        lte = reader.u8() >= 3
        mcc = reader.u16()
        mnc = reader.u16() if mcc & 0x8000 else reader.u8()
        lac = reader.uint(4 if lte else 2)
        cid = reader.uint(8 if lte else 3)
        reader.skip(2 if lte else 1)  # cell signal
        attributes.update({attr.MCC: mcc & 0x7FFF, attr.MNC: mnc, attr.LAC: lac, attr.CID: cid})
        self._status(reader, attributes, found, alarm=True, extended_code=True)
        if reader.left >= 1:
            reader.skip(1)  # language
        self._status_modules(reader, attributes)
        return self._report("alarm" if found else "position", attributes, found, **fields)

    def _status_2(
        self, packet: _Packet, reader: Reader, attributes: dict[str, Any], found: list[str]
    ) -> Report:
        """0x7878 0x36 (Jimi IoT 4G): status block with alarm, language, modules.

        Other devices (VL103) send a GPS packet under the same type; unless the modules fill the
        body exactly the packet is not this layout and is kept raw, so GPS bytes raise no alarm.
        """
        status: dict[str, Any] = {}
        alarms_found: list[str] = []
        self._status(reader, status, alarms_found, alarm=True)
        if reader.left >= 1:
            reader.skip(1)  # language
        if not self._status_modules(reader, status):
            attributes.update({attr.TYPE: packet.type, attr.RAW: packet.body.hex()})
            return self._report("message", attributes, found)
        attributes.update(status)
        found.extend(alarms_found)
        return self._report("alarm" if found else "status", attributes, found)

    @staticmethod
    def _status_modules(reader: Reader, attributes: dict[str, Any]) -> bool:
        """``type(2) length(1) data`` modules after a Jimi IoT status block; True if they fill the body."""
        while reader.left >= 3:
            module, length = reader.u16(), reader.u8()
            if length > reader.left:
                return False
            data = reader.take(length)
            if module == 0x18 and length >= 2:
                attributes[attr.BATTERY_V] = int.from_bytes(data[:2], "big") / 100
            elif module == 0x32 and length >= 1:
                attributes[attr.STARTUP_STATUS] = data[0]
            elif module == 0x6A and length >= 1:
                attributes[attr.BATTERY_PCT] = data[0]
        return reader.left == 0

    def _wifi_alarm(self, reader: Reader, attributes: dict[str, Any], found: list[str]) -> Report:
        """0xA9 (Jimi IoT 4G): time, cells (2G or 4G), WiFi access points, alarm code + language."""
        time = _optional_time(reader.take(6), self.timezone)
        mcc = reader.u16()
        attributes[attr.MCC] = mcc & 0x7FFF
        attributes[attr.MNC] = reader.u16() if mcc & 0x8000 else reader.u8()
        lte = reader.u8() > 0
        for index in range(reader.u8()):
            lac, cid = reader.uint(4 if lte else 2), reader.uint(8 if lte else 3)
            reader.skip(1)  # signal
            if index == 0:
                attributes.update({attr.LAC: lac, attr.CID: cid})
        reader.skip(1)  # timing advance
        count = reader.u8()
        reader.skip(7 * count)  # MAC and signal of each access point
        attributes[attr.WIFI_COUNT] = count
        self._alarm_byte(reader, attributes, found, extended=True)
        return self._report("alarm" if found else "lbs", attributes, found, time=time)

    def _az735(self, packet: _Packet, reader: Reader, attributes: dict[str, Any], found: list[str]) -> Report:
        """0x7979 0x32/0x33 (AZ735): time, GPS length (0 = no fix) and block, sized cell + signal,
        extra cells, WiFi, status byte (on 0x33: an alarm or the arm state), reserved."""
        fields: dict[str, Any] = {"time": self._device_time(reader.take(6))}
        if reader.u8():
            sats = reader.u8() & 0x0F
            lat = reader.uint(4) / COORDINATE_SCALE
            lon = reader.uint(4) / COORDINATE_SCALE
            speed = float(reader.u8())
            flags = reader.u16()
            fields.update(
                valid=bool(flags & 0x1000),
                lat=lat if flags & 0x0400 else -lat,
                lon=-lon if flags & 0x0800 else lon,
                speed_kmh=speed,
                course_deg=_course(flags),
                satellites=sats,
            )
        if reader.left >= 1 and self._sized_cell(packet, reader, attributes, lte=False):
            attributes[attr.RSSI] = reader.u8()
        for _block in ("cells", "wifi"):
            if reader.left >= 1:
                reader.skip(reader.u8())
        if reader.left >= 1:
            status = reader.u8()
            attributes[attr.STATUS] = status
            if packet.type == PacketType.AZ735_ALARM:
                if status in (0xA0, 0xA1):
                    attributes[attr.ARMED] = status == 0xA0
                elif status in AZ735_ALARMS:
                    found.append(AZ735_ALARMS[status])
        event = "alarm" if found else "position" if "lat" in fields else "status"
        return self._report(event, attributes, found, **fields)

    def _modular(self, reader: Reader, attributes: dict[str, Any], found: list[str]) -> Report:
        """0x70: a list of ``type(2) length(2) data`` modules."""
        fields: dict[str, Any] = {}
        while reader.left >= 4:
            module, length = reader.u16(), reader.u16()
            if length > reader.left:
                break
            data = reader.take(length)
            if module == 0x03:
                attributes[attr.ICCID] = data.hex()
            elif module == 0x09 and length >= 1:
                fields["satellites"] = data[0]
            elif module == 0x18 and length >= 2:
                attributes[attr.BATTERY_V] = int.from_bytes(data[:2], "big") / 100
            elif module == 0x28 and length >= 1:
                attributes[attr.HDOP] = data[0] / 10
            elif module == 0x2B and length >= 1:
                attributes[attr.EVENT_CODE] = data[0]
                if data[0] in MODULAR_EVENTS:
                    found.append(MODULAR_EVENTS[data[0]])
            elif module == 0x34 and length >= 1:
                attributes[attr.EVENT_CODE] = data[0]
                if data[0] in MODULAR_EVENT_RECORDS:
                    found.append(MODULAR_EVENT_RECORDS[data[0]])
            elif module == 0x2E and length >= 4:
                attributes[attr.ODOMETER_M] = int.from_bytes(data[:4], "little")
            elif module == 0x33 and length >= 18:
                lat = int.from_bytes(data[7:11], "big") / COORDINATE_SCALE
                lon = int.from_bytes(data[11:15], "big") / COORDINATE_SCALE
                flags = int.from_bytes(data[16:18], "big")
                fields.update(
                    time=datetime.fromtimestamp(int.from_bytes(data[:4], "big"), UTC),
                    satellites=data[4],
                    altitude_m=float(int.from_bytes(data[5:7], "big", signed=True)),
                    lat=lat if flags & 0x0400 else -lat,
                    lon=-lon if flags & 0x0800 else lon,
                    speed_kmh=float(data[15]),
                    course_deg=_course(flags),
                    valid=bool(flags & 0x1000),
                )
        event = "alarm" if found else "position" if "lat" in fields else "status"
        return self._report(event, attributes, found, **fields)

    def _multi_lbs(self, type_: int, reader: Reader, attributes: dict[str, Any]) -> Report:
        time = _optional_time(reader.take(6), self.timezone)
        if reader.left >= 3:
            mcc = reader.u16()
            attributes[attr.MCC] = mcc & 0x7FFF
            attributes[attr.MNC] = reader.u16() if mcc & 0x8000 and reader.left >= 2 else reader.u8()
            wide = type_ in (PacketType.LBS_2, PacketType.WIFI_3)
            if reader.left >= (12 if wide else 5):
                attributes[attr.LAC] = reader.uint(4 if wide else 2)
                attributes[attr.CID] = reader.uint(8 if wide else 3)
        return self._report("lbs", attributes, [], time=time)

    def _wifi(
        self, packet: _Packet, reader: Reader, attributes: dict[str, Any]
    ) -> tuple[Report, tuple[bytes, ...]]:
        """WiFi packets: a BCD time, then access points; the answer echoes the time (no serial, no CRC)."""
        stamp = reader.take(6)
        time = _bcd_time(stamp)
        # WiFi packets reuse the length byte as the access point count.
        if packet.type == PacketType.WIFI_4:
            count = reader.u8() if reader.left >= 1 else 0
        else:
            count = packet.declared_length
        attributes[attr.WIFI_COUNT] = count
        report = self._report("wifi", attributes, [], time=time)
        if packet.type == PacketType.WIFI_4:
            return report, ()
        reply = START + bytes([0, packet.type]) + stamp + TRAILER
        return report, (reply,)

    def _string(self, reader: Reader, attributes: dict[str, Any]) -> Report:
        """0x15: the answer to a 0x80 command: length, server flag, text, [language].

        Some firmwares send length 0; the text then runs to the first NUL.
        """
        length = reader.u8()
        if reader.left >= 4:
            reader.skip(4)  # server flag, as we sent it
        rest = reader.take(max(reader.left, 0))
        text = _text(rest[: length - 4] if 4 < length <= len(rest) + 4 else rest)
        attributes[attr.RESULT] = text
        if text.startswith("<ICCID:"):
            attributes[attr.ICCID] = text[7:].rstrip(">")
        return self._report("commandResult", attributes, [])

    def _string_info(self, reader: Reader, attributes: dict[str, Any]) -> Report:
        """0x21: server flag, encoding (1 ASCII, 2 UTF-16BE), text. Some firmwares answer WHERE# in it."""
        reader.skip(4)
        encoding = reader.u8()
        raw = reader.take(max(reader.left, 0))
        text = raw.decode("utf-16-be", "replace") if encoding == 2 else _text(raw)
        attributes[attr.RESULT] = text
        match = _LOCATION_TEXT.search(text)
        if match is None:
            return self._report("commandResult", attributes, [])
        lat = float(match["lat"]) * (-1 if match["ns"] == "S" else 1)
        lon = float(match["lon"]) * (-1 if match["ew"] == "W" else 1)
        time = datetime.fromisoformat(f"{match['date']}T{match['time']}").replace(tzinfo=UTC)
        return self._report(
            "commandResult",
            attributes,
            [],
            time=time,
            valid=True,
            lat=lat,
            lon=lon,
            course_deg=float(match["course"]) % 360,
            speed_kmh=float(match["speed"]),
        )

    def _info(self, reader: Reader, attributes: dict[str, Any]) -> Report:
        """0x94 information packets, by sub-type."""
        subtype = reader.u8()
        attributes[attr.INFO_TYPE] = subtype
        rest = reader.take(max(reader.left, 0))
        driver_id = None
        if subtype == 0x00 and len(rest) >= 2:
            attributes[attr.POWER_V] = int.from_bytes(rest[:2], "big") / 100
        elif subtype in (0x04, 0x0D):
            attributes[attr.TEXT] = _text(rest)
        elif subtype == 0x05 and rest:
            attributes[attr.DOOR] = bool(rest[0] & 0x01)
        elif subtype == 0x0A and len(rest) >= 26:
            attributes[attr.IMEI] = rest[:8].hex()[1:]
            attributes[attr.IMSI] = rest[8:16].hex()
            attributes[attr.ICCID] = rest[16:26].hex().rstrip("f")
        elif subtype == 0x1B:
            if rest[:1] == b"\x02" and len(rest) >= 6:  # STX, type, 4-byte card id, checksum, ETX
                driver_id = rest[2:6].hex()
            else:
                text = _text(rest).strip()
                attributes[attr.SERIAL] = text
                driver_id = text.removeprefix("RFID:") or None
        elif subtype == 0x1E and len(rest) >= 8:
            attributes[attr.TEMPERATURE_C] = int.from_bytes(rest[:4], "big", signed=True) / 10
            attributes[attr.HUMIDITY_PCT] = int.from_bytes(rest[4:8], "big") / 10
        else:
            attributes[attr.RAW] = rest.hex()
        return self._report("info", attributes, [], driver_id=driver_id)

    def _alarm_packet(
        self, packet: _Packet, reader: Reader, attributes: dict[str, Any], found: list[str]
    ) -> Report:
        """0x95 (JC100/JC400): time and event code, with a position in the long forms."""
        fields: dict[str, Any] = {}
        long_form = reader.left > 7
        if packet.body[:2] == b"\xff\xff":
            reader.skip(3)  # marker and channel
            fields = self._gps(reader, attributes)
            reader.skip(3)
        elif long_form:
            # Time, lat, lon and flags only: no satellites, no speed.
            fields = self._gps(reader, attributes, satellites=False, speed=False)
        else:
            fields["time"] = _optional_time(reader.take(6), self.timezone)
        code = reader.u8()
        attributes[attr.EVENT_CODE] = code
        if code == 0x01 and not long_form:
            found.append(alarms.GENERAL)
        elif code in EVENT_ALARMS:
            found.append(EVENT_ALARMS[code])
        files = packet.body[reader.pos :].split(b"\x00")
        names = [_text(name) for name in files if name.startswith(b"EVENT_")]
        if names:
            attributes[attr.EVENT_FILES] = ",".join(names)
        return self._report("alarm" if found else "event", attributes, found, **fields)

    # -- encoding (Gt06ProtocolEncoder) ----------------------------------------------------------

    @classmethod
    def upstream_ack(cls, wire: bytes, *, login: bool) -> UpstreamAck | None:
        """A login (type 0x01, or whatever frame identifies the device) is answered with a frame."""
        if wire[:2] not in (START, START_EXTENDED):
            return None
        header = HEADER_EXTENDED if wire[:2] == START_EXTENDED else HEADER
        if login or wire[header : header + 1] == bytes([PacketType.LOGIN]):
            return UpstreamAck.through("the login reply", TRAILER)
        return None

    supported_commands = frozenset({*COMMAND_TEXTS, CommandType.POSITION_PERIODIC, CommandType.CUSTOM})
    #: A Concox device answers every 0x80 text command with a 0x15 (or 0x21) text.
    answered_commands = supported_commands
    #: The same texts are the device's SMS commands (sent from an authorised number).
    sms_commands = supported_commands

    def _encode(self, command: Command) -> bytes:
        """A 0x80 text command; the serial counts up per session."""
        text = _command_text(command)
        check_length(PROTOCOL, command, "the command text", text, MAX_COMMAND_TEXT)
        payload = SERVER_FLAG + text.encode("ascii")
        serial = self._command_serial
        self._command_serial = (serial + 1) & 0xFFFF
        return frame_bytes(PacketType.COMMAND, bytes([len(payload)]) + payload, serial)

    @classmethod
    def _encode_sms(cls, command: Command) -> str:
        return _command_text(command)


def _command_text(command: Command) -> str:
    if command.type in COMMAND_TEXTS:
        return COMMAND_TEXTS[command.type]
    if command.type is CommandType.POSITION_PERIODIC:
        seconds = command.params["frequency"]
        if not MIN_TIMER_S <= seconds <= MAX_TIMER_S:
            raise InvalidCommand(
                PROTOCOL,
                f"positionPeriodic: frequency {seconds} s is outside {MIN_TIMER_S}..{MAX_TIMER_S},"
                " what a Concox TIMER takes",
            )
        return f"TIMER,{seconds}#"
    if command.type is CommandType.CUSTOM:
        if command.params["hex"]:
            raise InvalidCommand(PROTOCOL, "custom: a gt06 command is text (a Concox one, STATUS# say)")
        return str(command.params["data"])
    raise UnsupportedCommand(PROTOCOL, f"command {command.type.value!r} is not supported")


def _split(frame: bytes) -> _Packet:
    """Header, type, data, serial and CRC check of one frame, tolerating a wrong declared length."""
    extended = frame[:2] == START_EXTENDED
    if frame[:2] not in (START, START_EXTENDED):
        raise DriverError(PROTOCOL, "frame does not start with 7878 or 7979", data=frame)
    header = HEADER_EXTENDED if extended else HEADER
    if len(frame) < header + 1:
        raise DriverError(PROTOCOL, f"frame of {len(frame)} bytes has no type", data=frame)
    declared = int.from_bytes(frame[2:header], "big")
    end = header + declared
    consistent = end >= header + 1 and frame[end : end + 2] == TRAILER and end + 2 == len(frame)
    if consistent:
        content_end = end
    elif frame.endswith(TRAILER):
        content_end = len(frame) - 2
    elif frame.endswith(b"\r"):
        content_end = len(frame) - 1
    else:
        content_end = len(frame)
    data = frame[header + 1 : content_end]
    if declared == 0 or len(data) < FOOTER:
        return _Packet(extended, declared, consistent, frame[header], data, data, 0, None)
    serial = int.from_bytes(data[-4:-2], "big")
    crc_ok = crc16_x25(frame[2 : content_end - 2]) == int.from_bytes(data[-2:], "big")
    return _Packet(extended, declared, consistent, frame[header], data, data[:-FOOTER], serial, crc_ok)


def _course(flags: int) -> float | None:
    """Bits 0-9 of the course/status word; 10 bits reach 1023, so values past 360 are noise."""
    course = flags & 0x03FF
    return float(course) if course <= 360 else None


def _cell_size(*, lte: bool, wide: bool) -> int:
    """Bytes of a cell block (with a 1-byte MNC)."""
    if lte:
        return 2 + 1 + 4 + 8
    return 2 + 2 + 2 + 4 if wide else 2 + 1 + 2 + 3


def _bcd_time(raw: bytes) -> datetime | None:
    digits = raw.hex()
    if not digits.isdigit():
        return None
    try:
        return datetime(
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _optional_time(raw: bytes, timezone: timedelta | None) -> datetime | None:
    """A binary time stamp that may be absent or garbage in cell-only packets."""
    year, month, day, hour, minute, second = raw
    try:
        local = datetime(2000 + year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        return None
    return local - timezone if timezone else local


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("ascii", "replace").strip()


DRIVER = register(PROTOCOL, sniff, Gt06Session)
