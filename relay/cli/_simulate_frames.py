"""What ``relay simulate``'s trackers say and expect to hear back: pure functions, no sockets, no clock.

A :class:`Track` is a loop around a depot driven at each leg's speed; :meth:`Track.at` gives the
position, course and speed at a time, all consistent with each other. A :class:`Tracker` turns track
points into the exact frames one device model sends (its login, positions, alarms, heartbeats, the
PT-600's photo) and says which replies the device waits for (:class:`Reply`): the bytes a real
device checks before it goes on. :func:`script` decides what a tracker sends at each tick.

Every frame here decodes with our own drivers to the values it was built from (tests/relay/
test_simulate.py checks that for every protocol); the expected replies are written from the protocols'
descriptions (/work/shared/protocols.md), not taken from the drivers, so a relay that answers wrongly
is caught.
"""

from __future__ import annotations

import abc
import base64
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar
from urllib.parse import urlencode

from drivers._crc import crc16_ibm, crc16_x25

KNOTS_PER_KMH = 1 / 1.852
METRES_PER_DEGREE = 111_320.0

SOS = "sos"
OVERSPEED = "overspeed"
#: Above this speed a tracker raises an overspeed alarm (once per pass over a fast leg).
SPEED_LIMIT_KMH = 60.0
#: A tracker sends an SOS on this tick and then every :data:`SOS_EVERY` ticks.
FIRST_SOS = 2
SOS_EVERY = 25
#: A heartbeat follows the position of tick 1 and then every :data:`HEARTBEAT_EVERY` ticks.
HEARTBEAT_EVERY = 10
#: The PT-600 takes a photo on tick 1 and then every :data:`PHOTO_EVERY` ticks.
PHOTO_EVERY = 100


# -- the track -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """Where a tracker is at ``time``: degrees, km/h, degrees clockwise from north, metres."""

    time: datetime
    lat: float
    lon: float
    speed_kmh: float
    course_deg: float
    altitude_m: float = 519.0
    satellites: int = 9


#: The default depot (a yard in Munich) and the loop driven around it: corners in metres east and north
#: of the depot, each with the speed of the leg that starts there (the 68 km/h leg is a fast road).
DEPOT = (48.137430, 11.575490)
LOOP: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 25.0),
    (400.0, 0.0, 45.0),
    (800.0, 200.0, 68.0),
    (800.0, 650.0, 45.0),
    (400.0, 750.0, 30.0),
    (0.0, 600.0, 20.0),
)


@dataclass(frozen=True)
class Track:
    """A closed loop driven round and round at each leg's constant speed."""

    depot: tuple[float, float] = DEPOT
    corners: tuple[tuple[float, float, float], ...] = LOOP
    _legs: list[tuple[float, float, float, float, float, float]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        legs = []
        for index, (east, north, speed) in enumerate(self.corners):
            next_east, next_north, _ = self.corners[(index + 1) % len(self.corners)]
            length = math.hypot(next_east - east, next_north - north)
            seconds = length / (speed / 3.6)
            legs.append((east, north, next_east - east, next_north - north, speed, seconds))
        object.__setattr__(self, "_legs", legs)

    @property
    def lap_s(self) -> float:
        """Seconds one lap takes."""
        return sum(leg[5] for leg in self._legs)

    @property
    def length_m(self) -> float:
        return sum(math.hypot(leg[2], leg[3]) for leg in self._legs)

    def at(self, time: datetime, elapsed_s: float) -> TrackPoint:
        """The point reached ``elapsed_s`` seconds into the loop (laps repeat), stamped ``time``."""
        left = elapsed_s % self.lap_s
        leg = self._legs[-1]
        for leg in self._legs:  # stops at the leg being driven
            if left < leg[5]:
                break
            left -= leg[5]
        east, north, d_east, d_north, speed, seconds = leg
        left = min(left, seconds)
        fraction = left / seconds
        lat0, lon0 = self.depot
        lat = lat0 + (north + d_north * fraction) / METRES_PER_DEGREE
        lon = lon0 + (east + d_east * fraction) / (METRES_PER_DEGREE * math.cos(math.radians(lat0)))
        course = math.degrees(math.atan2(d_east, d_north)) % 360
        return TrackPoint(time=time, lat=lat, lon=lon, speed_kmh=speed, course_deg=round(course, 1))


# -- replies ---------------------------------------------------------------------------------------------

#: The longest reply a pattern waits for before the bytes are called wrong.
MAX_REPLY = 1024


@dataclass(frozen=True)
class Reply:
    """A reply a device waits for: exact bytes, or a pattern (the reply carries the relay's clock, or
    is the relay's request) that ends with ``end``."""

    what: str
    exact: bytes = b""
    pattern: re.Pattern[bytes] | None = None
    end: bytes = b""

    def cut(self, buffer: bytes) -> int | None:
        """How many bytes at the front of a TCP stream's ``buffer`` are this reply (right or wrong);
        ``None`` while more must be read."""
        if self.pattern is None:
            if not self.exact.startswith(buffer[: len(self.exact)]):
                return min(len(buffer), len(self.exact))  # already wrong: no need to wait
            return len(self.exact) if len(buffer) >= len(self.exact) else None
        end = buffer.find(self.end)
        if end >= 0:
            return end + len(self.end)
        return len(buffer) if len(buffer) > MAX_REPLY else None

    def problem(self, reply: bytes) -> str | None:
        """What is wrong with ``reply``, or ``None`` when it is the one expected."""
        if self.pattern is None and reply == self.exact:
            return None
        if self.pattern is not None and self.pattern.fullmatch(reply):
            return None
        wanted = self.exact if self.pattern is None else self.pattern.pattern
        return f"wrong {self.what}: expected {_shown(wanted)}, got {_shown(reply)}"


def _shown(data: bytes) -> str:
    if all(32 <= byte < 127 or byte in (10, 13) for byte in data):
        return repr(data.decode("ascii"))
    return data.hex()


@dataclass(frozen=True)
class Message:
    """One frame a tracker sends (the relay keeps one report of it) and the replies it waits for.

    ``photo``: the JPEG a PT-600 hands over after this announcement, one chunk per relay request; the
    relay keeps a second report, the photo, once it has every chunk.
    """

    kind: str
    frame: bytes
    replies: tuple[Reply, ...] = ()
    alarm: str | None = None
    photo: bytes | None = None


PHOTO_REQUEST = Reply("photo chunk request", pattern=re.compile(rb"#PHD(\d+),(\d+)\r\n"), end=b"\r\n")


def photo_chunk(request: bytes, photo: bytes, sent: int) -> tuple[bytes, int]:
    """The PT-600's answer to the relay's ``#PHD<offset>,<len>`` request after ``sent`` bytes went out:
    the chunk frame and the new count.

    :raises ValueError: the request is not one a camera can serve (not the next bytes of the photo).
    """
    match = PHOTO_REQUEST.pattern.fullmatch(request) if PHOTO_REQUEST.pattern else None
    if match is None:
        raise ValueError(f"not a photo chunk request: {_shown(request)}")
    offset, length = int(match[1]), int(match[2])
    if offset != sent or not 0 < length <= len(photo) - sent:
        raise ValueError(
            f"photo chunk request {_shown(request)} does not ask for the next bytes "
            f"(sent {sent} of {len(photo)})"
        )
    return pt502_chunk(offset, photo[offset : offset + length]), offset + length


# -- the trackers ----------------------------------------------------------------------------------------


class Tracker(abc.ABC):
    """One device of one protocol: the frames it sends and the replies it waits for."""

    protocol: ClassVar[str]
    #: Transports the device model reports over.
    transports: ClassVar[tuple[str, ...]] = ("tcp",)
    #: Alarms it can raise.
    alarms: ClassVar[tuple[str, ...]] = (SOS, OVERSPEED)
    #: It takes photos (the PT-600).
    camera: ClassVar[bool] = False
    #: Digits of its device id.
    id_digits: ClassVar[int] = 15

    def __init__(self, device_id: str, transport: str = "tcp") -> None:
        self.device_id = device_id
        self.transport = transport

    def login(self, point: TrackPoint) -> list[Message]:
        """What the device sends first on each new connection, at ``point``."""
        return []

    @abc.abstractmethod
    def report(self, point: TrackPoint, alarm: str | None = None) -> Message:
        """A position, or an alarm at that position."""

    def heartbeat(self) -> Message | None:
        return None

    def photo(self, point: TrackPoint, jpeg: bytes) -> Message | None:
        return None


def script(tracker: Tracker, tick: int, point: TrackPoint, previous: TrackPoint | None) -> list[Message]:
    """What ``tracker`` sends at ``tick`` (0, 1, 2... one per report interval) at ``point``.

    One report each tick: an SOS on tick :data:`FIRST_SOS` and every :data:`SOS_EVERY` after it, an
    overspeed alarm when the speed goes over :data:`SPEED_LIMIT_KMH` (``previous`` point was not), else
    a position; a camera takes a photo on tick 1 and every :data:`PHOTO_EVERY` ticks instead. A
    heartbeat follows on tick 1 and every :data:`HEARTBEAT_EVERY` ticks.
    """
    alarm = None
    if tick % SOS_EVERY == FIRST_SOS and SOS in tracker.alarms:
        alarm = SOS
    elif (
        point.speed_kmh > SPEED_LIMIT_KMH
        and (previous is None or previous.speed_kmh <= SPEED_LIMIT_KMH)
        and OVERSPEED in tracker.alarms
    ):
        alarm = OVERSPEED
    photo = tracker.photo(point, jpeg_for(tracker.device_id, tick)) if tick % PHOTO_EVERY == 1 else None
    messages = [photo or tracker.report(point, alarm)]
    if tick % HEARTBEAT_EVERY == 1 and (heartbeat := tracker.heartbeat()) is not None:
        messages.append(heartbeat)
    return messages


#: A 48x32 gradient (ImageMagick, quality 50): the picture in every simulated photo.
_PICTURE = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1R"
    "V19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
    "Y2NjY2NjY2NjY2NjY2P/wAARCAAgADADASIAAhEBAxEB/8QAFQABAQAAAAAAAAAAAAAAAAAAAAT/xAAVEAEBAAAAAAAAAAAA"
    "AAAAAAAAE//EABcBAQEBAQAAAAAAAAAAAAAAAAAFAwT/xAAVEQEBAAAAAAAAAAAAAAAAAAAAE//aAAwDAQACEQMRAD8AjmTV"
    "zJtqueSSZNXMmVJJJk1cyZUkrmTVzJplVSSSZNXMmVJJJk1cyZUk/9k="
)


def jpeg_for(device_id: str, tick: int) -> bytes:
    """A real JPEG of a few chunks: :data:`_PICTURE` with a comment segment naming the device and tick,
    padded with bytes that include CR LF and ``$POS,`` (the chunk framing must carry them, not cut there)."""
    comment = f"relay simulate: {device_id} tick {tick}\r\n$POS,".encode()
    comment += bytes((index * 37 + tick) % 256 for index in range(2600))
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return _PICTURE[:2] + segment + _PICTURE[2:]


def device_id(protocol_index: int, transport: str, index: int, digits: int) -> str:
    """A stable id per protocol, transport and device number, of ``digits`` (10, 12 or 15) digits; 15
    digits read as an IMEI (TAC ``86555``..., Luhn check digit)."""
    core = f"{protocol_index}{1 if transport == 'udp' else 0}{index:06d}"
    if digits == 15:
        body = "865550" + core
        return body + str(_luhn(body))
    return ("0555" + core)[-digits:] if digits == 12 else ("55" + core)[-digits:]


def _luhn(digits: str) -> int:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return (10 - total % 10) % 10


def _ddmm(value: float, degree_digits: int) -> str:
    """NMEA ``ddmm.mmmm`` of ``abs(value)`` with ``degree_digits`` degree digits."""
    value = abs(value)
    degrees = int(value)
    minutes = round((value - degrees) * 60, 4)
    if minutes >= 60:
        degrees, minutes = degrees + 1, 0.0
    return f"{degrees:0{degree_digits}d}{minutes:07.4f}"


def _knots(kmh: float) -> float:
    return kmh * KNOTS_PER_KMH


# gps103: the Coban BN-407 -------------------------------------------------------------------------------


class Gps103(Tracker):
    """Logs in (``LOAD``), positions without a reply, heartbeats (``ON``), ``help me`` answered with
    ``**,imei:<imei>,E;``, ``speed`` for overspeed."""

    protocol = "gps103"
    transports = ("tcp", "udp")
    KEYWORDS: ClassVar[dict[str | None, str]] = {None: "tracker", SOS: "help me", OVERSPEED: "speed"}

    def login(self, point: TrackPoint) -> list[Message]:
        frame = f"##,imei:{self.device_id},A;".encode()
        return [Message("login", frame, (Reply("login reply", b"LOAD"),))]

    def report(self, point: TrackPoint, alarm: str | None = None) -> Message:
        when = point.time
        frame = (
            f"imei:{self.device_id},{self.KEYWORDS[alarm]},{when:%y%m%d%H%M%S},,F,{when:%H%M%S}.000,A,"
            f"{_ddmm(point.lat, 2)},{'N' if point.lat >= 0 else 'S'},"
            f"{_ddmm(point.lon, 3)},{'E' if point.lon >= 0 else 'W'},"
            f"{_knots(point.speed_kmh):.2f},{point.course_deg:.1f},{point.altitude_m:.0f},1,0,50%,,;"
        ).encode()
        replies = ()
        if alarm == SOS:
            replies = (Reply("SOS acknowledgement", f"**,imei:{self.device_id},E;".encode()),)
        return Message("alarm" if alarm else "position", frame, replies, alarm=alarm)

    def heartbeat(self) -> Message:
        return Message("heartbeat", f"{self.device_id};".encode(), (Reply("heartbeat reply", b"ON"),))


# gt06: Concox ------------------------------------------------------------------------------------------


def gt06_frame(kind: int, content: bytes, serial: int) -> bytes:
    """``78 78 len kind content serial crc 0D 0A``, CRC-16/X-25 over len..serial."""
    body = bytes([len(content) + 5, kind]) + content + (serial & 0xFFFF).to_bytes(2, "big")
    return b"\x78\x78" + body + crc16_x25(body).to_bytes(2, "big") + b"\r\n"


class Gt06(Tracker):
    """Login (0x01), GPS+LBS positions (0x12), status heartbeats (0x13), GPS+LBS+status alarms (0x16):
    every one waits for its ack ``78 78 05 <type> <serial> <crc> 0D 0A``."""

    protocol = "gt06"
    ALARM_CODES: ClassVar[dict[str, int]] = {SOS: 0x01, OVERSPEED: 0x06}
    #: MCC 262 (Germany), MNC 1, LAC, cell id.
    CELL = bytes.fromhex("0106" "01" "2a3b" "00c4d5")

    def __init__(self, device_id: str, transport: str = "tcp") -> None:
        super().__init__(device_id, transport)
        self.serial = 0

    def _send(self, kind: str, type_: int, content: bytes, alarm: str | None = None) -> Message:
        self.serial = (self.serial + 1) & 0xFFFF
        ack = gt06_frame(type_, b"", self.serial)
        frame = gt06_frame(type_, content, self.serial)
        return Message(kind, frame, (Reply(f"{kind} ack", ack),), alarm=alarm)

    def login(self, point: TrackPoint) -> list[Message]:
        self.serial = 0
        return [self._send("login", 0x01, bytes.fromhex(self.device_id.rjust(16, "0")))]

    def report(self, point: TrackPoint, alarm: str | None = None) -> Message:
        when = point.time
        flags = round(point.course_deg) % 360 | 0x1000  # GPS fixed
        if point.lat >= 0:
            flags |= 0x0400
        if point.lon < 0:
            flags |= 0x0800
        gps = (
            bytes([when.year - 2000, when.month, when.day, when.hour, when.minute, when.second])
            + bytes([0xC0 | point.satellites])
            + round(abs(point.lat) * 1_800_000).to_bytes(4, "big")
            + round(abs(point.lon) * 1_800_000).to_bytes(4, "big")
            + bytes([round(point.speed_kmh)])
            + flags.to_bytes(2, "big")
        )
        if alarm is None:
            return self._send("position", 0x12, gps + self.CELL)
        # Terminal info: ACC on, GPS tracking; voltage level 6 of 6; GSM signal 4; the alarm; English.
        status = bytes([0x42, 6, 4, self.ALARM_CODES[alarm], 0x02])
        return self._send("alarm", 0x16, gps + bytes([len(self.CELL) + 1]) + self.CELL + status, alarm)

    def heartbeat(self) -> Message:
        return self._send("heartbeat", 0x13, bytes([0x42, 6, 4, 0, 0x02]))


# h02: SinoTrack ----------------------------------------------------------------------------------------

_H02_TIME_REPLY = rb"\*HQ,%s,V4,V1,20\d{12}#"


class H02(Tracker):
    """``*HQ`` text: ``V1`` positions answered ``*HQ,<id>,V4,V1,<yyyyMMddHHmmss>#``, ``HTBT`` heartbeats
    echoed; alarms are cleared (active low) status bits: 1 SOS, 2 overspeed."""

    protocol = "h02"
    transports = ("tcp", "udp")
    id_digits = 10
    #: Status with bit 10 (ignition) set and no alarm bit cleared.
    STATUS: ClassVar[dict[str | None, str]] = {None: "FFFFFFFF", SOS: "FFFFFFFD", OVERSPEED: "FFFFFFFB"}

    def report(self, point: TrackPoint, alarm: str | None = None) -> Message:
        when = point.time
        frame = (
            f"*HQ,{self.device_id},V1,{when:%H%M%S},A,{_ddmm(point.lat, 2)},{'N' if point.lat >= 0 else 'S'},"
            f"{_ddmm(point.lon, 3)},{'E' if point.lon >= 0 else 'W'},{_knots(point.speed_kmh):06.2f},"
            f"{point.course_deg:03.0f},{when:%d%m%y},{self.STATUS[alarm]}#"
        ).encode()
        pattern = re.compile(_H02_TIME_REPLY % self.device_id.encode())
        reply = Reply("V4 reply", pattern=pattern, end=b"#")
        return Message("alarm" if alarm else "position", frame, (reply,), alarm=alarm)

    def heartbeat(self) -> Message:
        frame = f"*HQ,{self.device_id},HTBT,100#".encode()
        return Message("heartbeat", frame, (Reply("heartbeat echo", f"*HQ,{self.device_id},HTBT#".encode()),))


# teltonika: FMB ----------------------------------------------------------------------------------------


class Teltonika(Tracker):
    """TCP: the IMEI handshake (``01``), then codec 8 packets answered with their record count (4 bytes).
    UDP: each datagram answered ``00 05 <packet id> 01 <AVL packet id> <count>``. An SOS is a panic-
    priority record."""

    protocol = "teltonika"
    transports = ("tcp", "udp")
    alarms = (SOS,)

    def __init__(self, device_id: str, transport: str = "tcp") -> None:
        super().__init__(device_id, transport)
        self.packet_id = 0

    def login(self, point: TrackPoint) -> list[Message]:
        if self.transport == "udp":
            return []
        frame = len(self.device_id).to_bytes(2, "big") + self.device_id.encode()
        return [Message("login", frame, (Reply("IMEI accept", b"\x01"),))]

    @staticmethod
    def record(point: TrackPoint, alarm: str | None) -> bytes:
        """One codec 8 record; IO: ignition and movement on, GSM signal 4, external 12.8 V."""
        priority = 2 if alarm == SOS else 0
        return (
            round(point.time.timestamp() * 1000).to_bytes(8, "big")
            + bytes([priority])
            + round(point.lon * 1e7).to_bytes(4, "big", signed=True)
            + round(point.lat * 1e7).to_bytes(4, "big", signed=True)
            + round(point.altitude_m).to_bytes(2, "big", signed=True)
            + round(point.course_deg).to_bytes(2, "big")
            + bytes([point.satellites])
            + round(point.speed_kmh).to_bytes(2, "big")
            + bytes([0, 4])  # event IO id, total IO count
            + bytes([3, 239, 1, 240, 1, 21, 4])
            + bytes([1, 66]) + (12800).to_bytes(2, "big")
            + bytes([0, 0])
        )

    def report(self, point: TrackPoint, alarm: str | None = None) -> Message:
        data = bytes([0x08, 1]) + self.record(point, alarm) + bytes([1])
        kind = "alarm" if alarm else "position"
        if self.transport == "udp":
            self.packet_id = (self.packet_id + 1) & 0xFFFF
            avl_id = self.packet_id & 0xFF
            body = (
                self.packet_id.to_bytes(2, "big") + b"\x01" + bytes([avl_id])
                + len(self.device_id).to_bytes(2, "big") + self.device_id.encode() + data
            )
            ack = b"\x00\x05" + self.packet_id.to_bytes(2, "big") + b"\x01" + bytes([avl_id, 1])
            frame = len(body).to_bytes(2, "big") + body
            return Message(kind, frame, (Reply("record count", ack),), alarm=alarm)
        frame = b"\x00\x00\x00\x00" + len(data).to_bytes(4, "big") + data + crc16_ibm(data).to_bytes(4, "big")
        return Message(kind, frame, (Reply("record count", (1).to_bytes(4, "big")),), alarm=alarm)


# watch: kids' watches -------------------------------------------------------------------------------------


class Watch(Tracker):
    """``[SG*<id>*<len>*...]``: ``LK`` links (the first is its hello) echoed, ``UD`` positions without a
    reply, ``AL`` alarms (status bit 16: SOS) answered ``AL``."""

    protocol = "watch"
    alarms = (SOS,)
    id_digits = 10

    def _frame(self, content: str) -> bytes:
        return f"[SG*{self.device_id}*{len(content):04X}*{content}]".encode()

    def login(self, point: TrackPoint) -> list[Message]:
        return [self._link("login")]

    def _link(self, kind: str) -> Message:
        reply = Reply("LK reply", self._frame("LK"))
        return Message(kind, self._frame("LK,1200,0,87"), (reply,))

    def heartbeat(self) -> Message:
        return self._link("heartbeat")

    def report(self, point: TrackPoint, alarm: str | None = None) -> Message:
        when = point.time
        status = "00010010" if alarm == SOS else "00000010"
        content = (
            f"{'AL' if alarm else 'UD'},{when:%d%m%y},{when:%H%M%S},A,{abs(point.lat):.6f},"
            f"{'N' if point.lat >= 0 else 'S'},{abs(point.lon):.6f},{'E' if point.lon >= 0 else 'W'},"
            f"{point.speed_kmh:.2f},{point.course_deg:.1f},{point.altitude_m:.1f},{point.satellites},"
            f"100,87,1200,0,{status},1,1,262,1,10811,50405,-70,0"
        )
        replies = (Reply("AL reply", self._frame("AL")),) if alarm else ()
        return Message("alarm" if alarm else "position", self._frame(content), replies, alarm=alarm)


# tk103: the original TK103 ------------------------------------------------------------------------------


class Tk103(Tracker):
    """``(<12-char id><type>...)``: the ``BP05`` login answered ``(<id>AP05)``, ``BP00`` handshakes
    (heartbeats) answered ``(<id>AP01HSO)``, ``BR00`` positions without a reply, ``BO01`` alarms
    (digit 2 SOS, 5 overspeed)."""

    protocol = "tk103"
    transports = ("tcp", "udp")
    id_digits = 12
    ALARM_DIGITS: ClassVar[dict[str, str]] = {SOS: "2", OVERSPEED: "5"}

    def __init__(self, device_id: str, transport: str = "tcp") -> None:
        super().__init__(device_id, transport)
        self.imei = "35" + device_id.rjust(13, "0")[-13:]

    @staticmethod
    def fix(point: TrackPoint) -> str:
        """``yymmdd A ddmm.mmmmN dddmm.mmmmE speed(5) hhmmss course(6) status(8) L odometer``."""
        when = point.time
        return (
            f"{when:%y%m%d}A{_ddmm(point.lat, 2)}{'N' if point.lat >= 0 else 'S'}"
            f"{_ddmm(point.lon, 3)}{'E' if point.lon >= 0 else 'W'}{point.speed_kmh:05.1f}{when:%H%M%S}"
            f"{point.course_deg:06.2f}01000000L0001E240"
        )

    def login(self, point: TrackPoint) -> list[Message]:
        frame = f"({self.device_id}BP05{self.imei}{self.fix(point)})".encode()
        return [Message("login", frame, (Reply("login reply", f"({self.device_id}AP05)".encode()),))]

    def report(self, point: TrackPoint, alarm: str | None = None) -> Message:
        kind = f"BO01{self.ALARM_DIGITS[alarm]}" if alarm else "BR00"
        frame = f"({self.device_id}{kind}{self.fix(point)})".encode()
        return Message("alarm" if alarm else "position", frame, alarm=alarm)

    def heartbeat(self) -> Message:
        frame = f"({self.device_id}BP00{self.imei}HSO)".encode()
        return Message("heartbeat", frame, (Reply("handshake reply", f"({self.device_id}AP01HSO)".encode()),))


# pt502: the Bofan PT-600 ---------------------------------------------------------------------------------


def pt502_chunk(offset: int, data: bytes) -> bytes:
    """A photo chunk as the camera sends it: ``BF FB <xor> <len LE>`` + ``$PHD<offset>,<len>,`` + the
    JPEG bytes + CR LF; ``len`` counts the whole frame, ``xor`` is over everything after the header."""
    payload = f"$PHD{offset},{len(data)},".encode() + data + b"\r\n"
    xor = 0
    for byte in payload:
        xor ^= byte
    return b"\xbf\xfb" + bytes([xor]) + (len(payload) + 5).to_bytes(2, "little") + payload


class Pt502(Tracker):
    """``$POS`` positions and ``$IN1`` (SOS) / ``$SPD`` (overspeed) alarms without a reply; a photo is
    announced with ``$PHO<size>-1`` and handed over chunk by chunk as the relay asks (``#PHD``)."""

    protocol = "pt502"
    camera = True
    id_digits = 10
    EVENTS: ClassVar[dict[str | None, str]] = {None: "POS", SOS: "IN1", OVERSPEED: "SPD"}

    def _line(self, event: str, point: TrackPoint) -> bytes:
        when = point.time
        return (
            f"${event},{self.device_id},{when:%H%M%S}.000,A,"
            f"{_ddmm(point.lat, 2)},{'N' if point.lat >= 0 else 'S'},"
            f"{_ddmm(point.lon, 3)},{'E' if point.lon >= 0 else 'W'},{_knots(point.speed_kmh):.2f},"
            f"{point.course_deg:.2f},{when:%d%m%y},,,A/00010,00000/1a,0,0,0/12345//5b{point.satellites:x}/\r\n"
        ).encode()

    def report(self, point: TrackPoint, alarm: str | None = None) -> Message:
        return Message("alarm" if alarm else "position", self._line(self.EVENTS[alarm], point), alarm=alarm)

    def photo(self, point: TrackPoint, jpeg: bytes) -> Message:
        return Message("photo", self._line(f"PHO{len(jpeg)}-1", point), photo=jpeg)


# osmand: Traccar Client over HTTP ------------------------------------------------------------------------

_HTTP_OK = re.compile(rb"HTTP/1\.1 200 OK\r\n(?:[^\r\n]*\r\n)*\r\n")


class Osmand(Tracker):
    """Traccar Client: one HTTP ``POST /?id=...&lat=...`` per position on a kept-alive connection, each
    answered ``200 OK``; alarms as ``alarm=sos`` / ``alarm=overspeed``."""

    protocol = "osmand"

    def report(self, point: TrackPoint, alarm: str | None = None) -> Message:
        query = {
            "id": self.device_id,
            "timestamp": int(point.time.timestamp()),
            "lat": f"{point.lat:.6f}",
            "lon": f"{point.lon:.6f}",
            "speed": f"{_knots(point.speed_kmh):.2f}",
            "bearing": f"{point.course_deg:.1f}",
            "altitude": f"{point.altitude_m:.1f}",
            "accuracy": "5.0",
            "batt": "87",
        }
        if alarm:
            query["alarm"] = alarm
        frame = (
            f"POST /?{urlencode(query)} HTTP/1.1\r\nHost: relay\r\nUser-Agent: relay-simulate\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        reply = Reply("HTTP 200", pattern=_HTTP_OK, end=b"\r\n\r\n")
        return Message("alarm" if alarm else "position", frame, (reply,), alarm=alarm)


TRACKERS: dict[str, type[Tracker]] = {
    tracker.protocol: tracker for tracker in (Pt502, Gps103, Gt06, H02, Teltonika, Watch, Tk103, Osmand)
}


def tick_time(start: datetime, tick: int, rate: float) -> datetime:
    """When tick ``tick`` of a device that started at ``start`` is due, at ``rate`` reports a second."""
    return start + timedelta(seconds=tick / rate)
