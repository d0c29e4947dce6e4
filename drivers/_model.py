"""What every driver produces: reports, decode results, commands, and the one error it may raise.

A driver never does I/O. It turns bytes into :class:`Report` objects and the exact reply bytes the
device waits for; the relay decides when to send them (only after the report is committed).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

KNOTS_TO_KMH = 1.852


class Transport(enum.StrEnum):
    """How the bytes reached the relay."""

    TCP = "tcp"
    UDP = "udp"
    HTTP = "http"
    SMS = "sms"
    SERIAL = "serial"


class DriverError(ValueError):
    """The peer sent bytes the driver cannot use: the one channel for bad input.

    Raised by ``Session.decode`` for one bad frame (the session stays usable) and by
    ``Session.frames`` when the stream cannot be framed at all; :meth:`Session.events` hands it out,
    in order among the decoded frames, with :attr:`wire` set. The relay quarantines :attr:`wire`,
    sends :attr:`replies` (what the protocol answers to bad input, such as an HTTP 400; nothing was
    stored, so nothing is acknowledged), and closes the stream after them when :attr:`close` is set.
    Any other exception leaving a driver is a bug in the driver.
    """

    def __init__(
        self,
        protocol: str,
        message: str,
        *,
        data: bytes = b"",
        offset: int | None = None,
        replies: tuple[bytes, ...] = (),
        close: bool = False,
    ) -> None:
        self.protocol = protocol
        self.reason = message
        self.data = data
        self.offset = offset
        self.replies = replies
        self.close = close
        #: The exact bytes of the stream this error is about (set by the session).
        self.wire = data
        where = f" at byte {offset}" if offset is not None else ""
        excerpt = f" ({data[:24].hex()}{'…' if len(data) > 24 else ''})" if data else ""
        super().__init__(f"{protocol}: {message}{where}{excerpt}")


class FramingError(DriverError):
    """The stream cannot be cut into frames (oversized or garbage): close the connection."""

    def __init__(self, protocol: str, message: str, *, data: bytes = b"", offset: int | None = None) -> None:
        super().__init__(protocol, message, data=data, offset=offset, close=True)


class DriverBug(DriverError):
    """A driver raised something other than :class:`DriverError`: a bug, kept as bad input (its frame
    quarantined) so that it never costs the frames around it. The original is ``__cause__``."""


#: The longest device id accepted (IMEIs are 15 digits; OsmAnd ids are typed by people).
MAX_DEVICE_ID = 64
_DEVICE_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_DEVICE_ID}}}")


class InvalidDeviceId(ValueError):
    """A device id outside the safe set (see :func:`check_device_id`)."""


def check_device_id(value: str) -> str:
    """The device id in its one normal form, or :class:`InvalidDeviceId` saying what is wrong.

    The normal form is the id with surrounding white space removed. It must then be 1 to
    :data:`MAX_DEVICE_ID` printable ASCII characters, without spaces: an id goes into MQTT topics,
    file names, log lines and other platforms' databases, where a control character, an invisible
    Unicode character or an over-long string breaks or misleads whoever reads it.
    """
    if _DEVICE_ID.fullmatch(value):
        return value
    stripped = value.strip()
    if _DEVICE_ID.fullmatch(stripped):
        return stripped
    if not stripped:
        raise InvalidDeviceId("device id is empty")
    if len(stripped) > MAX_DEVICE_ID:
        raise InvalidDeviceId(f"device id of {len(stripped)} characters exceeds {MAX_DEVICE_ID}")
    bad = next(index for index, char in enumerate(stripped) if not "\x21" <= char <= "\x7e")
    raise InvalidDeviceId(
        f"device id {stripped.encode('unicode_escape').decode('ascii')!r} has character"
        f" U+{ord(stripped[bad]):04X} at {bad}: only printable ASCII without spaces is accepted"
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        raise ValueError("report times must be timezone-aware (UTC)")
    return value.astimezone(UTC)


#: Plausible ranges of a report's numbers; anything else is a decoding error.
_RANGES = (
    ("lat", -90.0, 90.0),
    ("lon", -180.0, 180.0),
    ("speed_kmh", 0.0, 2000.0),
    ("course_deg", 0.0, 360.0),
)
_fullmatch_id = _DEVICE_ID.fullmatch
_set = object.__setattr__


def _out_of_range(
    lat: float | None, lon: float | None, speed: float | None, course: float | None
) -> ValueError:
    """The error for the first number of a report outside its range (or of a lone lat/lon)."""
    if (lat is None) != (lon is None):
        return ValueError("lat and lon come together or not at all")
    for (name, low, high), value in zip(_RANGES, (lat, lon, speed, course), strict=True):
        if value is not None and not low <= value <= high:
            return ValueError(f"{name} {value!r} outside {low}..{high}")
    raise AssertionError("no number out of range")


@dataclass(frozen=True, init=False)
class Report:
    """One normalized message from a device.

    Units are fixed: km/h, degrees, metres, UTC. Messages without a position (login, heartbeat,
    photo chunk) have ``lat``/``lon`` of ``None`` and say what they were in ``event``.
    Construction validates ranges and the device id (:func:`check_device_id`, raising
    :class:`InvalidDeviceId`), so a report that exists is a plausible report.

    The fields may be given by keyword (the usual way) or, on a driver's hot path, by position in
    the order below. Construction is one function (validation included, no per-field
    ``object.__setattr__``): it runs for every frame, so it costs about a microsecond.
    """

    protocol: str
    device_id: str | None
    event: str = "position"
    time: datetime | None = None
    valid: bool | None = None
    lat: float | None = None
    lon: float | None = None
    altitude_m: float | None = None
    speed_kmh: float | None = None
    course_deg: float | None = None
    satellites: int | None = None
    alarms: tuple[str, ...] = ()
    driver_id: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    media: bytes | None = None
    media_type: str | None = None

    def __init__(
        self,
        protocol: str,
        device_id: str | None,
        event: str = "position",
        time: datetime | None = None,
        valid: bool | None = None,
        lat: float | None = None,
        lon: float | None = None,
        altitude_m: float | None = None,
        speed_kmh: float | None = None,
        course_deg: float | None = None,
        satellites: int | None = None,
        alarms: tuple[str, ...] = (),
        driver_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        media: bytes | None = None,
        media_type: str | None = None,
    ) -> None:
        if device_id is not None and not _fullmatch_id(device_id):
            device_id = check_device_id(device_id)
        if time is not None and time.tzinfo is not UTC:
            time = _utc(time)
        # NaN fails every comparison, so "not low <= value <= high" rejects it too.
        if lat is None:
            if lon is not None:
                raise _out_of_range(lat, lon, speed_kmh, course_deg)
        elif lon is None or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            raise _out_of_range(lat, lon, speed_kmh, course_deg)
        if (speed_kmh is not None and not 0.0 <= speed_kmh <= 2000.0) or (
            course_deg is not None and not 0.0 <= course_deg <= 360.0
        ):
            raise _out_of_range(lat, lon, speed_kmh, course_deg)
        if alarms.__class__ is list:
            alarms = tuple(alarms)
        # One dict for all the fields: the frozen class's own __setattr__ refuses each of them.
        _set(
            self,
            "__dict__",
            {
                "protocol": protocol,
                "device_id": device_id,
                "event": event,
                "time": time,
                "valid": valid,
                "lat": lat,
                "lon": lon,
                "altitude_m": altitude_m,
                "speed_kmh": speed_kmh,
                "course_deg": course_deg,
                "satellites": satellites,
                "alarms": alarms,
                "driver_id": driver_id,
                "attributes": {} if attributes is None else attributes,
                "media": media,
                "media_type": media_type,
            },
        )

    @property
    def has_position(self) -> bool:
        return self.lat is not None

    def to_json(self) -> dict[str, Any]:
        """The normalized report as JSON-ready data (without the relay's ``id`` and ``received_at``)."""
        return {
            "device_id": self.device_id,
            "protocol": self.protocol,
            "time": format_time(self.time),
            "valid": self.valid,
            "lat": _round(self.lat, 7),
            "lon": _round(self.lon, 7),
            "altitude_m": self.altitude_m,
            "speed_kmh": _round(self.speed_kmh, 3),
            "course_deg": self.course_deg,
            "satellites": self.satellites,
            "alarms": list(self.alarms),
            "event": self.event,
            "driver_id": self.driver_id,
            "attributes": dict(self.attributes),
            "media": {"type": self.media_type, "bytes": len(self.media)} if self.media is not None else None,
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def format_time(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with ``Z``; milliseconds only when present."""
    if value is None:
        return None
    if value.tzinfo is not UTC:  # the common case (UTC already) skips the conversion: a hot path
        value = value.astimezone(UTC)
    if value.microsecond:
        return value.isoformat(timespec="milliseconds")[:-6] + "Z"
    return value.isoformat(timespec="seconds")[:-6] + "Z"


@dataclass(slots=True)
class Decoded:
    """The outcome of decoding one frame: zero or more reports, and the bytes to answer with.

    ``replies`` must be sent, in order, only after ``reports`` are durable. ``device_id`` is the
    identity learned from this frame (a login), if any. From :meth:`Session.events`, every report
    carries the session's device id and ``wire`` holds the exact bytes the frame took off the stream
    (delimiters, and noise skipped before it, included). ``close``: the protocol ends the stream
    after these replies (HTTP ``Connection: close``).
    """

    reports: tuple[Report, ...] = ()
    replies: tuple[bytes, ...] = ()
    device_id: str | None = None
    wire: bytes = b""
    close: bool = False


class CommandType(enum.StrEnum):
    """Downlink commands a driver may encode; the values are Traccar's command type names."""

    CUSTOM = "custom"
    REBOOT_DEVICE = "rebootDevice"
    POSITION_SINGLE = "positionSingle"
    POSITION_PERIODIC = "positionPeriodic"
    POSITION_STOP = "positionStop"
    ENGINE_STOP = "engineStop"
    ENGINE_RESUME = "engineResume"
    REQUEST_PHOTO = "requestPhoto"
    OUTPUT_CONTROL = "outputControl"
    SET_TIMEZONE = "setTimezone"
    ALARM_SPEED = "alarmSpeed"
    ALARM_ARM = "alarmArm"
    ALARM_DISARM = "alarmDisarm"
    SOS_NUMBER = "sosNumber"
    MESSAGE = "message"
    VOICE_MESSAGE = "voiceMessage"


class Via(enum.StrEnum):
    """The channel a command goes over: the device's own data session (TCP/UDP), or an SMS."""

    DATA = "data"
    SMS = "sms"


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """A command for one device; ``params`` depend on the type (see ``drivers.PARAMETERS``)."""

    type: CommandType
    device_id: str
    params: Mapping[str, Any] = field(default_factory=dict)


class UnsupportedCommand(DriverError):
    """This protocol, over this channel, has no encoding for this command type."""


class InvalidCommand(DriverError):
    """The command's parameters are wrong (missing, of the wrong type, out of range, too long for the
    protocol or for one SMS); the message says which and why."""
