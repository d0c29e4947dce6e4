"""osmand: positions over HTTP/1.1 (OsmAnd, Traccar Client, Transistorsoft background-geolocation, scripts).

A TCP stream that starts with ``GET ``, ``POST ``, ``PUT `` or ``HEAD `` is a sequence of HTTP/1.1
requests on one connection (keep-alive). The framer cuts whole requests: the head up to its blank
line (at most :data:`MAX_HEAD` bytes), then a ``Content-Length`` or chunked body; a request larger
than ``max_frame`` is refused before its body arrives.

Two request forms are decoded (protocols.md section 9):

* the query form, in the URL or a form-encoded body: ``id``/``deviceid``, ``lat``/``lon`` or
  ``location=lat,lon``, ``timestamp`` (unix seconds, milliseconds, ISO 8601, or
  ``yyyy-MM-dd HH:mm:ss`` taken as UTC), ``speed`` in knots, ``bearing``/``heading``, ``altitude``,
  ``accuracy``, ``hdop``, ``batt``, ``charge``, ``driverUniqueId``, ``valid``,
  ``cell=mcc,mnc,lac,cid[,rssi]``, ``wifi=mac,rssi``, ``alarm=sos[,overspeed...]`` (Traccar's alarm
  names, as Traccar reads them and the relay's OsmAnd sink sends them); any other parameter becomes an
  attribute under the name the device gave it;
* the JSON form of Transistorsoft background-geolocation: ``{"device_id", "location": {...}}`` with one
  location object or an array of them, speed in m/s.

Every request is answered. A usable one gets ``HTTP/1.1 200 OK`` with an empty body. A request that
is unusable (no device id, a malformed coordinate or number) raises :class:`DriverError` carrying its
``400 Bad Request`` in ``replies``: the relay quarantines it and then answers. A request that cannot
be framed (a head or body too large) also says ``close``: send the reply, then close. A client that
asked for ``Connection: close`` gets a :class:`Decoded` with ``close`` set.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from . import alarms
from . import attributes as attr
from ._model import KNOTS_TO_KMH, Decoded, DriverError, Report, Transport
from ._registry import register
from ._session import Match, Session, UpstreamAck

PROTOCOL = "osmand"

#: The request methods that open a stream (the sniffer) and that are answered with 200.
METHODS = ("GET", "POST", "PUT", "HEAD")
_SNIFF_PREFIXES = tuple(f"{method} ".encode() for method in METHODS)

#: The largest request head (request line, headers and the blank line) accepted.
MAX_HEAD = 8192
#: The most header lines in one request.
MAX_HEADERS = 100
#: The longest chunk-size line (with extensions) or trailer line of a chunked body.
MAX_CHUNK_LINE = 1024
#: The most parameters in a query string or form body.
MAX_PARAMS = 256
#: Java's ``Integer.MAX_VALUE``: Traccar reads a numeric timestamp below it as seconds, above as ms.
_SECONDS_LIMIT = 2**31 - 1
#: Report accepts speeds up to this; a faster "position" is a malformed one.
_MAX_SPEED_KMH = 2000.0
_MPS_TO_KMH = 3.6
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_HEX = frozenset(b"0123456789abcdefABCDEF")

_REASONS = {
    200: "OK",
    400: "Bad Request",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    505: "HTTP Version Not Supported",
}

#: The one reply to a usable request that keeps the connection open.
REPLY_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
#: The reply to a usable request whose client asked to close the connection.
REPLY_OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def sniff(head: bytes, transport: Transport) -> Match:
    """``GET ``, ``POST ``, ``PUT `` or ``HEAD `` at the very start of a stream."""
    if head.startswith(_SNIFF_PREFIXES):
        return Match.YES
    if any(prefix.startswith(head) for prefix in _SNIFF_PREFIXES):
        return Match.MORE
    return Match.NO


class OsmandSession(Session):
    """One HTTP/1.1 connection: requests framed one after the other, each answered in order."""

    protocol = PROTOCOL
    transports = frozenset({Transport.TCP, Transport.HTTP})
    # Transistorsoft batches locations in one request (``location`` arrays); 64 KiB holds ~100.
    max_frame = 65536

    def __init__(self, transport: Transport = Transport.TCP, *, device_id: str | None = None) -> None:
        super().__init__(transport, device_id=device_id)
        #: Why the connection ends, once a request asked for it or could not be framed.
        self._closed_by: str | None = None
        #: Where the chunk scan of the pending chunked request resumes (0: not scanning).
        self._chunk_scan = 0

    def _reset_framer(self) -> None:
        self._chunk_scan = 0

    @classmethod
    def upstream_ack(cls, wire: bytes, *, login: bool) -> UpstreamAck | None:
        """Every request is answered with a response (its head, and a body of ``Content-Length``)."""
        return UpstreamAck("an HTTP response", _response_length)

    def _next_frame(self) -> bytes | None:
        buffer = self._buffer
        if self._closed_by is not None:
            return None
        if not self._chunk_scan:
            # Blank lines before a request line are ignored (RFC 9112 section 2.2).
            while buffer and buffer[0] in b"\r\n":
                del buffer[0]
        if not buffer:
            return None
        end = _head_end(buffer)
        if end is None:
            if len(buffer) >= MAX_HEAD:
                return self._cut_fatal(MAX_HEAD, "request head too large")
            return None
        try:
            head = _parse_head(bytes(buffer[:end]))
        except _Reject as reject:
            return self._cut_fatal(end, reject.reason)
        if head.chunked:
            try:
                position, done = _walk_chunks(buffer, self._chunk_scan or end, None)
            except _Reject as reject:
                return self._cut_fatal(len(buffer), reject.reason)
            if not done or position > self.max_frame:
                if len(buffer) > self.max_frame:
                    return self._cut_fatal(self.max_frame + 1, "chunked body too large")
                self._chunk_scan = position
                return None
            self._chunk_scan = 0
            return self._cut_request(position, head)
        if end + head.length > self.max_frame:
            return self._cut_fatal(end, "body too large")
        if len(buffer) < end + head.length:
            return None
        return self._cut_request(end + head.length, head)

    def _cut_request(self, end: int, head: _Head) -> bytes:
        if head.close:
            self._closed_by = "the client asked to close"
        return self._cut(end)

    def _cut_fatal(self, end: int, why: str) -> bytes:
        """Cut what decode needs to answer a request that cannot be framed, and drop the rest."""
        frame = bytes(self._buffer[:end])
        self._buffer.clear()
        self._chunk_scan = 0
        self._closed_by = why
        return frame

    def decode(self, frame: bytes, *, now: datetime) -> Decoded:
        """The reports of one request and the HTTP reply to it (``close`` when the request asked).

        A request that cannot be framed (head over :data:`MAX_HEAD`, body over ``max_frame``, a
        malformed head) is still cut, short, so that it is answered with a 4xx.

        :raises DriverError: a bad request, carrying its 4xx reply; ``close`` when the connection
            cannot go on after it.
        """
        head: _Head | None = None
        try:
            head, body = _parse_request(frame, self.max_frame)
            params = _params(head.target.partition("?")[2])
            if head.is_json(body):
                device_id, reports = _decode_json(body, params, now)
            else:
                params.extend(_params(body.decode("utf-8", "replace")))
                device_id, reports = _decode_query(params, now)
        except _Reject as reject:
            raise _rejected(reject, head, frame) from None
        reply = REPLY_OK_CLOSE if head.close else REPLY_OK
        if head.keep_alive_1_0:
            reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        return Decoded(tuple(reports), (reply,), device_id=device_id, close=head.close)


# -- errors ------------------------------------------------------------------------------------


class _Reject(Exception):
    """A request the relay answers with an HTTP error; ``fatal`` ends the connection."""

    def __init__(self, status: int, reason: str, *, fatal: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.fatal = fatal


def _rejected(reject: _Reject, head: _Head | None, frame: bytes) -> DriverError:
    close = reject.fatal or head is None or head.close
    body = f"{reject.reason}\n".encode()
    lines = [
        f"HTTP/1.1 {reject.status} {_REASONS[reject.status]}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
    ]
    if close:
        lines.append("Connection: close")
    elif head is not None and head.keep_alive_1_0:
        lines.append("Connection: keep-alive")
    reply = ("\r\n".join(lines) + "\r\n\r\n").encode()
    if head is None or head.method != "HEAD":
        reply += body
    reason = f"{reject.status} {reject.reason}"
    return DriverError(PROTOCOL, reason, data=frame, replies=(reply,), close=close)


# -- HTTP framing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Head:
    method: str
    target: str
    headers: Mapping[str, str]
    #: HTTP/1.0 (the default there is to close).
    http_1_0: bool
    chunked: bool
    #: The Content-Length (0 when chunked or absent).
    length: int

    @property
    def close(self) -> bool:
        tokens = self._connection_tokens()
        return "close" in tokens or (self.http_1_0 and "keep-alive" not in tokens)

    @property
    def keep_alive_1_0(self) -> bool:
        return self.http_1_0 and not self.close

    def _connection_tokens(self) -> set[str]:
        return {token.strip().lower() for token in self.headers.get("connection", "").split(",")}

    def is_json(self, body: bytes) -> bool:
        content_type = self.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type == "application/json" or content_type.endswith("+json"):
            return True
        if content_type in ("", "text/plain", "application/octet-stream"):
            return body.lstrip()[:1] in (b"{", b"[")
        return False


def _head_end(buffer: bytes | bytearray) -> int | None:
    """Index just past the blank line that ends the head (CRLF or bare LF line ends), or ``None``."""
    limit = min(len(buffer), MAX_HEAD)
    crlf = buffer.find(b"\n\r\n", 0, limit)
    lf = buffer.find(b"\n\n", 0, limit)
    if crlf < 0 and lf < 0:
        return None
    if lf < 0 or 0 <= crlf < lf:
        return crlf + 3
    return lf + 2


#: The last head parsed and what it parsed to: the framer parses each head to find where its
#: request ends, then decode parses the same bytes again. One tuple, replaced whole.
_last_head: tuple[bytes, _Head] | None = None


def _parse_head(head: bytes) -> _Head:
    """The request line and headers. :raises _Reject: (always fatal) the head is not HTTP/1.x."""
    global _last_head
    last = _last_head
    if last is not None and last[0] == head:
        return last[1]
    parsed = _parse_head_text(head)
    _last_head = (bytes(head), parsed)
    return parsed


def _parse_head_text(head: bytes) -> _Head:
    lines = head.decode("latin-1").split("\n")
    lines = [line.removesuffix("\r") for line in lines]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise _Reject(400, "empty request", fatal=True)
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise _Reject(400, "malformed request line", fatal=True)
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise _Reject(400, "malformed method", fatal=True)
    if not target or not target.isprintable() or not target.isascii():
        raise _Reject(400, "malformed request target", fatal=True)
    found = _VERSION.fullmatch(version)
    if found is None:
        raise _Reject(400, "malformed HTTP version", fatal=True)
    if found.group(1) != "1":
        raise _Reject(505, f"{version} is not supported", fatal=True)
    if len(lines) - 1 > MAX_HEADERS:
        raise _Reject(431, f"more than {MAX_HEADERS} header lines", fatal=True)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise _Reject(400, "malformed header line", fatal=True)
        value = value.strip(" \t")
        if any((ord(ch) < 32 and ch != "\t") or ord(ch) == 127 for ch in value):
            raise _Reject(400, f"control character in header {name}", fatal=True)
        key = name.lower()
        if key == "content-length" and key in headers and headers[key] != value:
            raise _Reject(400, "conflicting Content-Length headers", fatal=True)
        headers[key] = f"{headers[key]}, {value}" if key in headers and key != "content-length" else value
    chunked = False
    length = 0
    if "transfer-encoding" in headers:
        if "content-length" in headers:
            raise _Reject(400, "both Transfer-Encoding and Content-Length", fatal=True)
        codings = [coding.strip().lower() for coding in headers["transfer-encoding"].split(",")]
        if codings != ["chunked"]:
            raise _Reject(501, f"transfer coding {headers['transfer-encoding']!r}", fatal=True)
        chunked = True
    elif "content-length" in headers:
        text = headers["content-length"]
        # 10 digits: anything longer is far over max_frame anyway.
        if not text.isdigit() or not text.isascii() or len(text) > 10:
            raise _Reject(400, f"bad Content-Length {text[:20]!r}", fatal=True)
        length = int(text)
    return _Head(
        method=method,
        target=target,
        headers=headers,
        http_1_0=found.group(2) == "0",
        chunked=chunked,
        length=length,
    )


def _walk_chunks(buffer: bytes | bytearray, position: int, body: list[bytes] | None) -> tuple[int, bool]:
    """Walk a chunked body from the chunk-size line at ``position``.

    Returns ``(end, True)`` with the index just past the body and its trailers, or ``(resume, False)``
    with where to resume when the body is incomplete. Chunk data is appended to ``body`` if given.

    :raises _Reject: a malformed chunk-size line, chunk end or trailer.
    """
    while True:
        newline = buffer.find(b"\n", position, position + MAX_CHUNK_LINE)
        if newline < 0:
            if len(buffer) - position >= MAX_CHUNK_LINE:
                raise _Reject(400, "chunk-size line too long", fatal=True)
            return position, False
        size_text = bytes(buffer[position:newline]).rstrip(b"\r").split(b";", 1)[0].strip(b" \t")
        # Eight hex digits is 4 GiB, already far beyond any max_frame.
        if not size_text or len(size_text) > 8 or not set(size_text) <= _HEX:
            raise _Reject(400, f"bad chunk size {size_text[:16]!r}", fatal=True)
        size = int(size_text, 16)
        if size == 0:
            return _walk_trailers(buffer, position, newline + 1)
        data_start = newline + 1
        data_end = data_start + size
        after = bytes(buffer[data_end : data_end + 2])
        if after == b"\r\n":
            following = data_end + 2
        elif after[:1] == b"\n":
            following = data_end + 1
        elif after in (b"", b"\r"):
            return position, False
        else:
            raise _Reject(400, "chunk data not followed by a line end", fatal=True)
        if body is not None:
            body.append(bytes(buffer[data_start:data_end]))
        position = following


def _walk_trailers(buffer: bytes | bytearray, last_chunk: int, position: int) -> tuple[int, bool]:
    while True:
        newline = buffer.find(b"\n", position, position + MAX_CHUNK_LINE)
        if newline < 0:
            if len(buffer) - position >= MAX_CHUNK_LINE:
                raise _Reject(400, "trailer line too long", fatal=True)
            return last_chunk, False
        if not bytes(buffer[position:newline]).rstrip(b"\r"):
            return newline + 1, True
        position = newline + 1


def _parse_request(frame: bytes, max_frame: int) -> tuple[_Head, bytes]:
    """The head and the (de-chunked) body of one framed request.

    :raises _Reject: not a complete HTTP/1.x request of at most ``max_frame`` bytes.
    """
    frame = frame.lstrip(b"\r\n")
    end = _head_end(frame)
    if end is None:
        if len(frame) >= MAX_HEAD:
            raise _Reject(431, f"request head larger than {MAX_HEAD} bytes", fatal=True)
        raise _Reject(400, "incomplete request head", fatal=True)
    head = _parse_head(frame[:end])
    if head.method not in METHODS:
        raise _Reject(405, f"method {head.method} not allowed")
    if head.chunked:
        chunks: list[bytes] = []
        stop, done = _walk_chunks(frame, end, chunks)
        if not done or stop > max_frame:
            if len(frame) > max_frame:
                raise _Reject(413, f"request larger than {max_frame} bytes", fatal=True)
            raise _Reject(400, "incomplete chunked body", fatal=True)
        body = b"".join(chunks)
    else:
        stop = end + head.length
        if stop > max_frame:
            raise _Reject(413, f"request larger than {max_frame} bytes", fatal=True)
        if len(frame) < stop:
            raise _Reject(400, f"body has {len(frame) - end} of {head.length} bytes", fatal=True)
        body = frame[end:stop]
    if frame[stop:].strip(b"\r\n"):
        raise _Reject(400, f"{len(frame) - stop} bytes after the request", fatal=True)
    return head, body


# -- the query form --------------------------------------------------------------------------


def _params(query: str) -> list[tuple[str, str]]:
    """The ``name=value`` pairs of a query string or a form body."""
    try:
        return parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_PARAMS)
    except ValueError:
        raise _Reject(400, f"more than {MAX_PARAMS} parameters") from None


def _decode_query(params: list[tuple[str, str]], now: datetime) -> tuple[str, list[Report]]:
    """One report from the query-form parameters (later parameters override earlier ones)."""
    fields: dict[str, str] = {}
    cells: list[str] = []
    wifis: list[str] = []
    for name, value in params:
        if name == "cell":
            cells.append(value)
        elif name == "wifi":
            wifis.append(value)
        else:
            fields[name] = value.strip()
    device_id = fields.pop("id", "") or fields.pop("deviceid", "")
    fields.pop("deviceid", None)
    if not device_id:
        raise _Reject(400, "missing id or deviceid")

    lat = _float(fields, "lat")
    lon = _float(fields, "lon")
    location = fields.pop("location", "")
    if location:
        parts = location.split(",")
        if len(parts) != 2:
            raise _Reject(400, f"bad location {location[:40]!r}: expected lat,lon")
        lat, lon = _finite(parts[0], "location"), _finite(parts[1], "location")
    _check_position(lat, lon)

    attributes: dict[str, Any] = {}
    stamp = fields.pop("timestamp", "")
    time = _parse_time(stamp) if stamp else now
    valid_text = fields.pop("valid", "")
    valid = valid_text.lower() in ("true", "1") if valid_text else True
    knots = _float(fields, "speed")
    course = _course(_float(fields, "bearing"), "bearing")
    heading = _course(_float(fields, "heading"), "heading")
    altitude = _float(fields, "altitude")
    if (accuracy := _float(fields, "accuracy")) is not None:
        attributes[attr.ACCURACY_M] = accuracy
    if (hdop := _float(fields, "hdop")) is not None:
        attributes[attr.HDOP] = hdop
    if (battery := _float(fields, "batt")) is not None:
        attributes[attr.BATTERY_PCT] = battery
    if charge := fields.pop("charge", ""):
        attributes[attr.CHARGE] = charge.lower() in ("true", "1")
    driver_id = fields.pop("driverUniqueId", "") or None
    found = _alarms(fields.pop("alarm", ""), attributes)
    for index, cell in enumerate(cells):
        _cell(cell, attributes, first=index == 0)
    if wifis:
        attributes[attr.WIFI] = [_wifi(wifi) for wifi in wifis]
    for name, value in fields.items():
        if name not in attributes:
            attributes[name] = _typed(value)

    has_position = lat is not None
    report = _report(
        device_id=device_id,
        event="alarm" if found else "position" if has_position else "status",
        time=time,
        valid=valid if has_position else None,
        lat=lat,
        lon=lon,
        altitude_m=altitude,
        speed_kmh=_speed(knots * KNOTS_TO_KMH if knots is not None else None, "speed"),
        course_deg=course if course is not None else heading,
        alarms=found,
        driver_id=driver_id,
        attributes=attributes,
    )
    return device_id, [report]


def _alarms(value: str, attributes: dict[str, Any]) -> tuple[str, ...]:
    """The known alarm names in an ``alarm`` parameter; unknown ones stay the ``alarm`` attribute."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in alarms.ALL]
    if unknown:
        attributes[attr.ALARM] = ",".join(unknown)
    return tuple(dict.fromkeys(name for name in names if name in alarms.ALL))


def _float(fields: dict[str, str], name: str) -> float | None:
    """Remove ``name`` from ``fields``; ``None`` if absent or empty. :raises _Reject: not a number."""
    text = fields.pop(name, "")
    return _finite(text, name) if text else None


def _finite(text: str, name: str) -> float:
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        raise _Reject(400, f"{name} {text[:40]!r} is not a number")
    value = float(text)
    if not math.isfinite(value):
        raise _Reject(400, f"{name} {text[:40]!r} is out of range")
    return value


def _check_position(lat: float | None, lon: float | None) -> None:
    if (lat is None) != (lon is None):
        raise _Reject(400, "lat and lon must come together")
    if lat is not None and not -90.0 <= lat <= 90.0:
        raise _Reject(400, f"lat {lat} outside -90..90")
    if lon is not None and not -180.0 <= lon <= 180.0:
        raise _Reject(400, f"lon {lon} outside -180..180")


def _speed(kmh: float | None, name: str) -> float | None:
    """Negative means unknown (Transistorsoft sends -1); faster than any vehicle is malformed."""
    if kmh is None or kmh < 0:
        return None
    if kmh > _MAX_SPEED_KMH:
        raise _Reject(400, f"{name} {kmh:.0f} km/h is out of range")
    return kmh


def _course(degrees: float | None, name: str) -> float | None:
    """Negative means unknown (Transistorsoft sends -1); 360 and above wrap around."""
    if degrees is None or degrees < 0:
        return None
    return degrees if degrees <= 360.0 else degrees % 360.0


def _parse_time(text: str) -> datetime:
    """Unix seconds, or ms when above 2^31 - 1; ISO 8601; ``yyyy-MM-dd HH:mm:ss``. UTC unless marked.

    :raises _Reject: none of these.
    """
    text = text.strip()
    try:
        if _INTEGER.fullmatch(text):
            value = int(text)
            if abs(value) < _SECONDS_LIMIT:
                return _EPOCH + timedelta(seconds=value)
            return _EPOCH + timedelta(milliseconds=value)
        if _NUMBER.fullmatch(text):
            seconds = float(text)
            if abs(seconds) >= _SECONDS_LIMIT:
                seconds /= 1000
            return _EPOCH + timedelta(seconds=seconds)
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise _Reject(400, f"bad timestamp {text[:40]!r}") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise _Reject(400, f"timestamp {text[:40]!r} out of range") from None


def _cell(text: str, attributes: dict[str, Any], *, first: bool) -> None:
    """``mcc,mnc,lac,cid[,rssi]``: the first cell fills ``mcc``/``mnc``/``lac``/``cid``/``rssi``."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (4, 5) or not all(_INTEGER.fullmatch(part) for part in parts):
        raise _Reject(400, f"bad cell {text[:40]!r}: expected mcc,mnc,lac,cid[,rssi]")
    cell = dict(zip((attr.MCC, attr.MNC, attr.LAC, attr.CID, attr.RSSI), map(int, parts), strict=False))
    if first:
        attributes.update(cell)
    else:
        attributes.setdefault("cells", []).append(cell)


def _wifi(text: str) -> dict[str, Any]:
    mac, comma, rssi = text.partition(",")
    if not comma or not _INTEGER.fullmatch(rssi.strip()):
        raise _Reject(400, f"bad wifi {text[:40]!r}: expected mac,rssi")
    return {"mac": mac.strip().replace("-", ":").lower(), attr.RSSI: int(rssi)}


def _typed(value: str) -> Any:
    """A free parameter as the JSON value it looks like: bool, int, float, or the text itself."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if _INTEGER.fullmatch(value) and len(value) <= 18:
        return int(value)
    if _NUMBER.fullmatch(value):
        number = float(value)
        if math.isfinite(number):
            return number
    return value


def _report(**fields: Any) -> Report:
    try:
        return Report(protocol=PROTOCOL, **fields)
    except ValueError as error:  # Report's own range checks; the parsers above should prevent this
        raise _Reject(400, str(error)) from None


# -- the JSON form (Transistorsoft background-geolocation) ------------------------------------


def _decode_json(body: bytes, params: list[tuple[str, str]], now: datetime) -> tuple[str, list[Report]]:
    """Reports from ``{"device_id": ..., "location": {...} | [{...}, ...]}``.

    The device id may also come from the URL (``?id=``); a root without ``location`` but with
    ``coords`` is one location (the plugin's ``httpRootProperty: "."``).
    """
    try:
        root = json.loads(body)
    except (ValueError, RecursionError):
        raise _Reject(400, "body is not JSON") from None
    if isinstance(root, list):
        root = {"location": root}
    if not isinstance(root, dict):
        raise _Reject(400, "JSON body is not an object")
    device_id = root.get("device_id")
    if device_id is None:
        query = dict(params)
        device_id = query.get("id") or query.get("deviceid")
    if isinstance(device_id, bool) or not isinstance(device_id, str | int) or not str(device_id).strip():
        raise _Reject(400, "missing device_id")
    device_id = str(device_id).strip()
    locations = root.get("location", root if "coords" in root else None)
    if isinstance(locations, dict):
        locations = [locations]
    if not isinstance(locations, list) or not locations:
        raise _Reject(400, "no location in JSON body")
    return device_id, [_location(item, device_id, now) for item in locations]


def _location(item: Any, device_id: str, now: datetime) -> Report:
    if not isinstance(item, dict):
        raise _Reject(400, "location is not an object")
    coords = item.get("coords")
    if not isinstance(coords, dict):
        raise _Reject(400, "location without coords")
    lat = _json_number(coords.get("latitude"), "latitude")
    lon = _json_number(coords.get("longitude"), "longitude")
    if lat is None or lon is None:
        raise _Reject(400, "coords without latitude and longitude")
    _check_position(lat, lon)
    stamp = item.get("timestamp")
    if stamp is not None and not isinstance(stamp, str):
        raise _Reject(400, "timestamp is not a string")
    speed = _json_number(coords.get("speed"), "speed")

    attributes: dict[str, Any] = {}
    extras = item.get("extras")
    if isinstance(extras, dict):
        attributes.update(extras)
    if (accuracy := _json_number(coords.get("accuracy"), "accuracy")) is not None and accuracy >= 0:
        attributes[attr.ACCURACY_M] = accuracy
    battery = item.get("battery")
    if isinstance(battery, dict):
        level = _json_number(battery.get("level"), "battery level")
        if level is not None and 0 <= level <= 1:
            # The plugin reports 0..1 and -1 for "unknown".
            attributes[attr.BATTERY_PCT] = round(level * 100, 1)
        if isinstance(battery.get("is_charging"), bool):
            attributes[attr.CHARGE] = battery["is_charging"]
    if isinstance(item.get("is_moving"), bool):
        attributes[attr.MOTION] = item["is_moving"]
    if (odometer := _json_number(item.get("odometer"), "odometer")) is not None:
        attributes[attr.ODOMETER_M] = odometer
    # The plugin's own "event" (motionchange, geofence, heartbeat...) says what triggered the fix.
    if isinstance(item.get("event"), str):
        attributes[attr.TRIGGER] = item["event"]
    activity = item.get("activity")
    if isinstance(activity, dict) and isinstance(activity.get("type"), str):
        attributes[attr.ACTIVITY] = activity["type"]
    if isinstance(item.get("uuid"), str):
        attributes[attr.UUID] = item["uuid"]
    if item.get("mock") is True:
        attributes[attr.MOCK] = True

    return _report(
        device_id=device_id,
        time=_parse_time(stamp) if stamp else now,
        valid=True,
        lat=lat,
        lon=lon,
        altitude_m=_json_number(coords.get("altitude"), "altitude"),
        speed_kmh=_speed(speed * _MPS_TO_KMH if speed is not None else None, "speed"),
        course_deg=_course(_json_number(coords.get("heading"), "heading"), "heading"),
        attributes=attributes,
    )


def _json_number(value: Any, name: str) -> float | None:
    """A JSON number as a finite float; ``None`` when absent or null. :raises _Reject: anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Reject(400, f"{name} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise _Reject(400, f"{name} is out of range") from None
    if not math.isfinite(number):
        raise _Reject(400, f"{name} is out of range")
    return number


# -- the encoder: a report as the query form (the relay's OsmAnd sink) ---------------------------

#: Report attributes that have a parameter of their own in the query form.
_NAMED_ATTRIBUTES = {attr.BATTERY_PCT: "batt", attr.ACCURACY_M: "accuracy"}


def encode_position(document: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    """The query-form parameters for a report (``Report.to_json()``), or ``None`` when it has no
    position (the query form cannot carry one without). This decoder reads them back as the same
    position, time, speed, course, alarms and driver id.

    Speed goes in knots; every attribute without a parameter of its own goes under its own name
    (booleans as ``true``/``false``, lists and tables as JSON).
    """
    if document.get("lat") is None or document.get("lon") is None:
        return None
    stamp = document.get("time") or document.get("received_at")
    params: dict[str, str] = {"id": str(document.get("device_id") or "")}
    if stamp:
        params["timestamp"] = str(int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()))
    params["lat"] = _encode_number(document["lat"])
    params["lon"] = _encode_number(document["lon"])
    if document.get("valid") is not None:
        params["valid"] = _encode_value(document["valid"])
    if document.get("speed_kmh") is not None:
        params["speed"] = _encode_number(round(document["speed_kmh"] / KNOTS_TO_KMH, 3))
    optional: dict[str, Any] = {
        "bearing": document.get("course_deg"),
        "altitude": document.get("altitude_m"),
        "sat": document.get("satellites"),
        "driverUniqueId": document.get("driver_id"),
    }
    if document.get("alarms"):
        optional["alarm"] = ",".join(document["alarms"])
    attributes = document.get("attributes") or {}
    for name, key in _NAMED_ATTRIBUTES.items():
        optional[key] = attributes.get(name)
    for name, value in attributes.items():
        if name not in _NAMED_ATTRIBUTES and name not in params and name not in optional:
            optional[name] = value
    for key, value in optional.items():
        if value is not None:
            params[key] = _encode_value(value)
    return list(params.items())


def _encode_number(value: float | int) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _encode_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _encode_number(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


DRIVER = register(PROTOCOL, sniff, OsmandSession)


def _response_length(buffer: bytes) -> int:
    """Bytes of the complete HTTP response at the front of ``buffer``, or 0."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return 0
    length = 0
    for line in buffer[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            length = int(value)
    total = end + 4 + length
    return total if len(buffer) >= total else 0
