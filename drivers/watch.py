"""watch: the "3G" kids' watch protocol (SeTracker family; makers ``3G``, ``SG``, ``CS``, ``ZJ``...).

A frame is ``[<MF>*<id>*[<index>*]<len>*<content>]``: a two-character maker code, the device id,
an optional four-hex-digit index (some firmwares number their frames), the content length as four
hex digits, and the content, whose type is the text before its first comma (``LK``, ``UD``, ``AL``...).
Binary payloads (photos, voice) escape five bytes: ``7D 01``=``}``, ``7D 02``=``[``, ``7D 03``=``]``,
``7D 04``=``,``, ``7D 05``=``*``. Wi-Fi names inside positions may hold brackets, so a frame ends at
the ``]`` that balances its ``[`` (or, earlier, at the ``]`` its length field points to).

The device waits for answers: ``LK`` -> ``LK``, ``AL...`` -> ``AL``, ``INIT`` -> ``INIT,1``,
``TKQ``/``TKQ2`` -> the same, ``JXTK`` -> ``JXTKR,1``, each framed as ``[<MF>*<id>*[<index>*]<len>*...]``
with the device's own maker code and index. Positions carry decimal degrees and km/h.

Commands are framed the same way, with the maker code and index style the device last used (``CS``
and no index before it has said anything).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from . import alarms
from . import attributes as attr
from ._model import Command, CommandType, Decoded, DriverError, Report, Transport, UnsupportedCommand
from ._registry import register
from ._session import Match, Session
from ._text import utc_datetime

PROTOCOL = "watch"

FRAME_START = 0x5B  # "["
FRAME_END = 0x5D  # "]"
ESCAPE = 0x7D  # "}"
#: Escape code to the byte it stands for.
UNESCAPE: dict[int, int] = {0x01: 0x7D, 0x02: 0x5B, 0x03: 0x5D, 0x04: 0x2C, 0x05: 0x2A}
ESCAPE_CODES: dict[int, bytes] = {byte: bytes((ESCAPE, code)) for code, byte in UNESCAPE.items()}
#: The index sent with commands to a device that numbers its frames (Traccar sends this one).
COMMAND_INDEX = "0001"
#: Maker code for commands to a device not heard from yet.
DEFAULT_MAKER = "CS"
#: Longest voice message assembled from ``JXTK`` chunks (a minute of AMR is ~100 KB).
MAX_AUDIO = 256 * 1024

#: Status bit (set = alarm) to alarm.
STATUS_ALARMS: tuple[tuple[int, str], ...] = (
    (0, alarms.LOW_BATTERY),
    (1, alarms.GEOFENCE_EXIT),
    (2, alarms.GEOFENCE_ENTER),
    (14, alarms.POWER_CUT),
    (16, alarms.SOS),
    (17, alarms.LOW_BATTERY),
    (18, alarms.GEOFENCE_EXIT),
    (19, alarms.GEOFENCE_ENTER),
    (20, alarms.REMOVING),
    (21, alarms.FALL_DOWN),
    (22, alarms.FALL_DOWN),
)
MOTION_BIT = 4

#: Health content types (compared case-insensitively).
HEALTH_TYPES = frozenset({"pulse", "heart", "blood", "bphrt", "btemp2", "temp", "oxygen"})

#: The bytes the framer's scan stops at: brackets and the escape.
_SPECIAL = re.compile(rb"[\[\]}]")
_HEADER = re.compile(
    rb"""
    \[
    (?P<maker>[0-9A-Za-z]{2})\*
    (?P<id>[0-9A-Za-z]{1,20})\*
    (?:(?P<index>[0-9A-Fa-f]{4})\*(?=[0-9A-Fa-f]{4}\*))?   # only when a length field follows
    (?P<length>[0-9A-Fa-f]{4})\*
    """,
    re.VERBOSE,
)

#: What the front of a header looks like before all of it has arrived.
_PARTIAL_HEADER = re.compile(
    rb"\[[0-9A-Za-z]{0,2}(?:\*[0-9A-Za-z]{0,20}(?:\*[0-9A-Fa-f]{0,4}(?:\*[0-9A-Fa-f]{0,4})?)?)?"
)


def sniff(head: bytes, transport: Transport) -> Match:
    """``[`` + a two-character maker code + ``*`` + an id + ``*``."""
    if not head:
        return Match.MORE
    if head[0] != FRAME_START:
        return Match.NO
    for index, byte in enumerate(head[1:], start=1):
        if index <= 2:
            if not (0x30 <= byte <= 0x39 or 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A):
                return Match.NO
        elif index == 3:
            if byte != 0x2A:
                return Match.NO
        elif byte == 0x2A:
            return Match.YES if index > 4 else Match.NO
        elif not 0x30 <= byte <= 0x39 and not 0x41 <= byte <= 0x5A and not 0x61 <= byte <= 0x7A:
            return Match.NO
        if index > 24:
            return Match.NO
    return Match.MORE


def unescape(data: bytes) -> bytes:
    """Undo the ``7D xx`` escapes; a ``7D`` followed by anything else stays as it is."""
    if ESCAPE not in data:
        return data
    out = bytearray()
    index = 0
    while index < len(data):
        byte = data[index]
        if byte == ESCAPE and index + 1 < len(data) and data[index + 1] in UNESCAPE:
            out.append(UNESCAPE[data[index + 1]])
            index += 2
        else:
            out.append(byte)
            index += 1
    return bytes(out)


def escape(data: bytes) -> bytes:
    """Escape ``} [ ] , *`` in a binary payload."""
    return b"".join(ESCAPE_CODES.get(byte, bytes((byte,))) for byte in data)


class WatchSession(Session):
    protocol = PROTOCOL
    transports = frozenset({Transport.TCP})
    # A photo (img) comes in one frame; 256 KiB is far above the ~30 KB JPEGs these watches take.
    max_frame = 256 * 1024

    def __init__(self, transport: Transport = Transport.TCP, *, device_id: str | None = None) -> None:
        super().__init__(transport, device_id=device_id)
        #: The device's maker code and whether it numbers its frames (for commands).
        self.maker = DEFAULT_MAKER
        self.has_index = False
        self._audio = bytearray()
        # Scan state of the frame at the front of the buffer, so a large frame arriving in many
        # chunks is scanned once: (next offset, bracket depth, content bytes seen, content start,
        # declared length).
        self._scan: tuple[int, int, int, int, int] | None = None

    def _reset_framer(self) -> None:
        self._scan = None

    def _next_frame(self) -> bytes | None:
        buffer = self._buffer
        while self._scan is None:
            start = buffer.find(b"[")
            if start < 0:
                buffer.clear()  # noise between frames
                return None
            del buffer[:start]
            header = _HEADER.match(buffer)
            if header is not None:
                self._scan = (header.end(), 1, 0, header.end(), int(header["length"], 16))
            elif _PARTIAL_HEADER.fullmatch(buffer):
                return None  # a header still arriving
            else:
                del buffer[:1]  # a stray "[": look for the next one
        offset, depth, seen, content, length = self._scan
        end = len(buffer)
        if seen == 0:
            # The usual frame: its length field is right and its content holds no bracket or escape,
            # so it ends exactly where the length says; checked with C-speed searches, not a byte loop.
            close = content + length
            if close < end and buffer[close] == FRAME_END:
                body = buffer[content:close]
                if body.find(b"[") < 0 and body.find(b"]") < 0 and body.find(ESCAPE) < 0:
                    self._scan = None
                    return self._cut(close + 1)
        while offset < end:
            # Plain bytes only count: jump to the next bracket or escape (a C-speed search).
            special = _SPECIAL.search(buffer, offset)
            if special is None:
                seen += end - offset
                offset = end
                break
            seen += special.start() - offset
            offset = special.start()
            byte = buffer[offset]
            if byte == ESCAPE and offset + 1 < end and buffer[offset + 1] in UNESCAPE:
                offset += 2
                seen += 1
                continue
            if byte == ESCAPE and offset + 1 == end:
                break  # the escape's second byte has not arrived
            if byte == FRAME_START:
                depth += 1
            elif byte == FRAME_END:
                depth -= 1
                if depth == 0 or seen == length:
                    self._scan = None
                    return self._cut(offset + 1)
            offset += 1
            seen += 1
        self._scan = (offset, depth, seen, content, length)
        return None

    def decode(self, frame: bytes, *, now: datetime) -> Decoded:
        header = _HEADER.match(frame)
        if header is None or not frame.endswith(b"]"):
            raise DriverError(PROTOCOL, "frame is not [MF*id*len*content]", data=frame)
        maker = header["maker"].decode()
        device_id = header["id"].decode()
        index = header["index"].decode() if header["index"] else None
        content = unescape(frame[header.end() : -1])
        kind = content.split(b",", 1)[0].decode("latin-1")
        data = content[len(kind) + 1 :]
        self.maker, self.has_index = maker, index is not None
        try:
            reports, reply = self._decode_content(device_id, kind, data, now)
        except DriverError:
            raise
        except (ValueError, IndexError) as error:
            raise DriverError(PROTOCOL, f"bad {kind} content: {error}", data=frame) from None
        replies = (_frame(maker, device_id, index, reply.encode("latin-1")),) if reply else ()
        return Decoded(reports, replies, device_id=device_id)

    def _decode_content(
        self, device_id: str, kind: str, data: bytes, now: datetime
    ) -> tuple[tuple[Report, ...], str | None]:
        """The reports of one content and the content of the answer (``None``: no answer)."""
        text = data.decode("utf-8", errors="replace")
        if kind == "LK":
            return (_link(device_id, text),), "LK"
        if kind.startswith(("UD", "AL", "WT")):
            report = _position(device_id, kind, text)
            return (report,), "AL" if kind.startswith("AL") else None
        if kind == "INIT":
            return (Report(protocol=PROTOCOL, device_id=device_id, event="login"),), "INIT,1"
        if kind in ("TKQ", "TKQ2"):
            return (_message(device_id, kind, text),), kind
        if kind.lower() in HEALTH_TYPES:
            return (_health(device_id, kind.lower(), text),), None
        if kind == "img":
            return (_photo(device_id, data),), None
        if kind == "TK":
            if len(data) <= 1:
                # "TK,1" / "TK,0": the watch's answer to a voice message we sent.
                report = Report(
                    protocol=PROTOCOL,
                    device_id=device_id,
                    event="commandResult",
                    attributes={attr.RESULT: text},
                )
                return (report,), None
            return (_audio(device_id, data),), None
        if kind == "JXTK":
            return self._voice_chunk(device_id, data), "JXTKR,1"
        return (_message(device_id, kind, text),), None

    def _voice_chunk(self, device_id: str, data: bytes) -> tuple[Report, ...]:
        """``JXTK,<a>,<b>,<current>,<total>,<AMR bytes>``: one chunk of a voice message."""
        parts = data.split(b",", 4)
        current, total = int(parts[2]), int(parts[3])
        if len(self._audio) + len(parts[4]) > MAX_AUDIO:
            self._audio.clear()
            raise DriverError(PROTOCOL, f"voice message exceeds {MAX_AUDIO} bytes", data=data[:32])
        self._audio += parts[4]
        if current < total:
            return ()
        audio = bytes(self._audio)
        self._audio.clear()
        return (_audio(device_id, audio),)

    supported_commands = frozenset({
        CommandType.CUSTOM, CommandType.REBOOT_DEVICE, CommandType.POSITION_SINGLE,
        CommandType.POSITION_PERIODIC, CommandType.SET_TIMEZONE, CommandType.SOS_NUMBER,
        CommandType.MESSAGE, CommandType.VOICE_MESSAGE,
    })  # fmt: skip
    #: Only a voice message is answered (``TK,1``/``TK,0``); other commands are echoed as messages.
    answered_commands = frozenset({CommandType.VOICE_MESSAGE})

    def _encode(self, command: Command) -> bytes:
        params = command.params
        prefix = b""
        match command.type:
            case CommandType.REBOOT_DEVICE:
                content = "RESET"
            case CommandType.POSITION_SINGLE:
                content = "CR"
            case CommandType.POSITION_PERIODIC:
                content = f"UPLOAD,{params['frequency']}"
            case CommandType.SET_TIMEZONE:
                content = f"LZ,{params.get('language', '')},{_timezone(params['timezone'])}"
            case CommandType.SOS_NUMBER:
                content = f"SOS{params['index']},{params['phone']}"
            case CommandType.MESSAGE:
                content = "MESSAGE," + str(params["message"]).encode("utf-16-be").hex()
            case CommandType.VOICE_MESSAGE:
                prefix, content = b"TK,", ""
                payload = escape(bytes.fromhex(params["data"]))
                return _frame(self.maker, command.device_id, self._index(), prefix + payload)
            case CommandType.CUSTOM:
                content = str(params["data"])
            case _:
                raise UnsupportedCommand(PROTOCOL, f"command {str(command.type)!r} is not supported")
        return _frame(self.maker, command.device_id, self._index(), prefix + content.encode())

    def _index(self) -> str | None:
        return COMMAND_INDEX if self.has_index else None


def _frame(maker: str, device_id: str, index: str | None, content: bytes) -> bytes:
    """``[MF*id*[index*]len*content]``; the length counts the content's bytes as sent (escaped)."""
    head = f"[{maker}*{device_id}*" + (f"{index}*" if index else "") + f"{len(content):04x}*"
    return head.encode("latin-1") + content + b"]"


def _timezone(hours: Any) -> str:
    """``+1``, ``+5.75``, ``-11.5``: signed, at most two decimals, no trailing zeros."""
    value = round(float(hours), 2)
    text = f"{abs(value):.2f}".rstrip("0").rstrip(".")
    return ("-" if value < 0 else "+") + text


def _int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.lstrip("-").isdigit() else None


def _link(device_id: str, text: str) -> Report:
    """``LK[,steps,tumbles,battery %]``."""
    values = text.split(",") if text else []
    attributes: dict[str, Any] = {}
    if len(values) >= 3:
        for name, value in zip((attr.STEPS, attr.TUMBLES, attr.BATTERY_PCT), values, strict=False):
            if (number := _int(value)) is not None:
                attributes[name] = number
    return Report(protocol=PROTOCOL, device_id=device_id, event="heartbeat", attributes=attributes)


def _message(device_id: str, kind: str, text: str) -> Report:
    return Report(
        protocol=PROTOCOL, device_id=device_id, event="message", attributes={attr.TYPE: kind, attr.DATA: text}
    )


def _coordinate(value: str, hemisphere: str) -> float:
    """Decimal degrees; S/W force a negative value, otherwise the number's own sign is kept."""
    result = float(value)
    return -abs(result) if hemisphere in ("S", "W") else result


#: The alarms of the status words seen (bounded).
_STATUS_ALARMS_CACHE: dict[int, tuple[str, ...]] = {}


def _position(device_id: str, kind: str, text: str) -> Report:
    """``ddmmyy,hhmmss,A|V,lat,N|S,lon,E|W,speed,course,altitude,satellites,rssi,battery,steps,
    tumbles,status,<cells>,<wifi>[,accuracy]``."""
    f = text.split(",")
    if len(f) < 16:
        raise ValueError(f"position has {len(f)} fields, expected at least 16")
    status = int(f[15], 16)
    if (known := _STATUS_ALARMS_CACHE.get(status)) is None:
        known = tuple(dict.fromkeys(name for bit, name in STATUS_ALARMS if status >> bit & 1))
        if len(_STATUS_ALARMS_CACHE) < 256:
            _STATUS_ALARMS_CACHE[status] = known
    found = list(known)
    if kind.startswith("AL") and not found:
        found.append(alarms.GENERAL)
    attributes: dict[str, Any] = {attr.TYPE: kind, attr.STATUS: status}
    counts = ((attr.RSSI, f[11]), (attr.BATTERY_PCT, f[12]), (attr.STEPS, f[13]), (attr.TUMBLES, f[14]))
    for name, value in counts:
        if (number := _int(value)) is not None:
            attributes[name] = number
    if status >> MOTION_BIT & 1:
        attributes[attr.MOTION] = True
    attributes.update(_network(f[16:]))
    altitude = float(f[9]) if f[9].strip() else None
    return Report(
        protocol=PROTOCOL,
        device_id=device_id,
        event="alarm" if found else "position",
        time=utc_datetime(f[0], f[1]),
        valid=f[2] == "A",
        lat=_coordinate(f[3], f[4]),
        lon=_coordinate(f[5], f[6]),
        altitude_m=altitude,
        speed_kmh=float(f[7] or 0),
        course_deg=float(f[8] or 0),
        satellites=_int(f[10]),
        alarms=tuple(found),
        attributes=attributes,
    )


def _network(values: list[str]) -> dict[str, Any]:
    """Cells and Wi-Fi after the status: ``count,ta,[mcc,mnc,(lac,cid,rssi)*count],count,(name,mac,rssi)*``.

    The layout varies by firmware; what does not parse is left out rather than failing the position.
    """
    out: dict[str, Any] = {}
    try:
        index = 0
        cell_count = int(values[index])
        index += 2  # count, timing advance
        if cell_count > 0:
            out[attr.MCC] = int(values[index] or 0)
            out[attr.MNC] = int(values[index + 1] or 0)
            index += 2
            cells = []
            for _ in range(cell_count):
                cell = {attr.LAC: int(values[index]), attr.CID: int(values[index + 1])}
                if values[index + 2].strip():
                    cell[attr.RSSI] = int(values[index + 2])
                cells.append(cell)
                index += 3
            out[attr.CELLS] = cells
            out.update({attr.LAC: cells[0][attr.LAC], attr.CID: cells[0][attr.CID]})
        if index < len(values) and values[index].strip():
            wifi_count = int(values[index])
            index += 1
            wifi = []
            for _ in range(wifi_count):
                wifi.append({"ssid": values[index], "mac": values[index + 1], "rssi": int(values[index + 2])})
                index += 3
            if wifi:
                out[attr.WIFI] = wifi
        if index < len(values) and values[index].strip():
            out[attr.ACCURACY_M] = float(values[index])
    except (ValueError, IndexError):
        pass
    return out


def _health(device_id: str, kind: str, text: str) -> Report:
    """``PULSE,<bpm>``, ``heart,<bpm>``, ``bphrt,<high>,<low>,<bpm>``, ``btemp2,<flag>,<°C>``..."""
    values = text.split(",")
    numbers = [float(value) for value in values if value.strip().replace(".", "", 1).lstrip("-").isdigit()]
    attributes: dict[str, Any] = {attr.TYPE: kind}
    if kind == "btemp2":
        if len(values) > 1 and (_int(values[0]) or 0) > 0:
            attributes[attr.TEMPERATURE_C] = float(values[1])
    elif kind in ("bphrt", "blood"):
        if len(values) > 1:
            attributes[attr.PRESSURE_HIGH] = _int(values[0])
            attributes[attr.PRESSURE_LOW] = _int(values[1])
        if len(values) > 2 and (rate := _int(values[2])) is not None:
            attributes[attr.HEART_RATE] = rate
    elif kind in ("pulse", "heart"):
        if (rate := _int(values[0])) is not None:
            attributes[attr.HEART_RATE] = rate
    elif kind == "temp" and numbers:
        attributes[attr.TEMPERATURE_C] = numbers[-1]
    elif kind == "oxygen" and numbers:
        attributes[attr.SPO2_PCT] = numbers[-1]
    if len(attributes) == 1:
        attributes[attr.DATA] = text
    return Report(protocol=PROTOCOL, device_id=device_id, event="health", attributes=attributes)


def _photo(device_id: str, data: bytes) -> Report:
    """``img,<x>,<yymmddhhmmss>,<JPEG>``."""
    parts = data.split(b",", 2)
    if len(parts) < 3:
        raise ValueError("photo without its header fields")
    return Report(
        protocol=PROTOCOL, device_id=device_id, event="photo", media=parts[2], media_type="image/jpeg"
    )


def _audio(device_id: str, data: bytes) -> Report:
    return Report(protocol=PROTOCOL, device_id=device_id, event="audio", media=data, media_type="audio/amr")


DRIVER = register(PROTOCOL, sniff, WatchSession)
