"""MQTT 3.1.1 on the wire, sans-I/O: the packets the MQTT sink writes, and a reader for the ones a
broker sends back (OASIS MQTT 3.1.1, sections 2 and 3).

Only what a client publishing at QoS 1 and taking commands at QoS 1 needs: CONNECT, PUBLISH, PUBACK,
SUBSCRIBE, PINGREQ and DISCONNECT out; CONNACK, PUBLISH, PUBACK, SUBACK and PINGRESP in. A packet
costs a few byte joins to build, against some 25 µs for a paho ``publish()``: the drain of a backlog
is bound by this. Bytes in go through :class:`PacketReader`, which refuses a malformed or oversized
packet with :class:`WireError` rather than guessing.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The packet types a broker sends a client (the fixed header's high nibble).
CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP = 2, 3, 4, 9, 13

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"

#: CONNACK return codes (3.2.2.3).
REFUSALS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}

#: The largest packet the reader takes: commands are small, and a broker sends nothing else big.
MAX_PACKET = 1024 * 1024


class WireError(Exception):
    """The broker sent bytes that are not MQTT 3.1.1 as a client can receive it."""


def _length(size: int) -> bytes:
    """The Remaining Length: 7 bits a byte, lowest first, the high bit saying more follow."""
    out = bytearray()
    while True:
        size, digit = divmod(size, 128)
        out.append(digit | 0x80 if size else digit)
        if not size:
            return bytes(out)


def _string(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise ValueError(f"an MQTT string is at most 65,535 bytes, not {len(data)}")
    return len(data).to_bytes(2, "big") + data


def connect(
    client_id: str,
    *,
    keepalive_s: int,
    username: str | None = None,
    password: str | None = None,
    will: tuple[str, bytes] | None = None,
    clean_session: bool = True,
) -> bytes:
    """CONNECT; ``will``: (topic, payload) at QoS 1, retained. Without ``clean_session`` the broker
    keeps the client's subscriptions, and its QoS 1 messages for them, while it is away."""
    flags = 0x02 if clean_session else 0
    payload = _string(client_id.encode())
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20  # will, QoS 1, retained
        payload += _string(will[0].encode()) + _string(will[1])
    if username is not None:
        flags |= 0x80
        payload += _string(username.encode())
        if password is not None:
            flags |= 0x40
            payload += _string(password.encode())
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + keepalive_s.to_bytes(2, "big") + payload
    return b"\x10" + _length(len(body)) + body


def publish(topic: bytes, payload: bytes, packet_id: int, *, retain: bool = False) -> bytes:
    """PUBLISH at QoS 1 (``topic`` already UTF-8)."""
    size = 4 + len(topic) + len(payload)
    return b"".join(
        (
            b"\x33" if retain else b"\x32",
            _length(size),
            len(topic).to_bytes(2, "big"),
            topic,
            packet_id.to_bytes(2, "big"),
            payload,
        )
    )


def puback(packet_id: int) -> bytes:
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


def subscribe(packet_id: int, topic_filter: str, qos: int = 1) -> bytes:
    body = packet_id.to_bytes(2, "big") + _string(topic_filter.encode()) + bytes([qos])
    return b"\x82" + _length(len(body)) + body


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    code: int


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int


@dataclass(frozen=True, slots=True)
class Message:
    """A PUBLISH from the broker (a command): QoS 1 ones are to be acknowledged with :func:`puback`."""

    topic: str
    payload: bytes
    qos: int
    packet_id: int | None
    retain: bool
    #: The broker sends it again (it went before without its PUBACK coming back).
    dup: bool = False


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    codes: bytes


@dataclass(frozen=True, slots=True)
class PingResp:
    pass


Packet = ConnAck | PubAck | Message | SubAck | PingResp


class PacketReader:
    """Cuts the broker's byte stream into packets: :meth:`feed` bytes as they come, get the packets."""

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self._buffer = bytearray()
        self._max = max_packet

    def feed(self, data: bytes) -> list[Packet]:
        """The packets ``data`` completes, in order.

        :raises WireError: a packet is malformed, of a kind a broker does not send, or too large.
        """
        buffer = self._buffer
        buffer += data
        packets: list[Packet] = []
        start = 0
        end = len(buffer)
        while end - start >= 2:
            first = buffer[start]
            # PUBACK is nearly all a drain reads: its fixed 4 bytes are cut without the general path.
            if first == 0x40 and buffer[start + 1] == 2:
                if end - start < 4:
                    break
                packets.append(PubAck((buffer[start + 2] << 8) | buffer[start + 3]))
                start += 4
                continue
            size = shift = 0
            at = start + 1
            while True:
                if at >= end:
                    size = -1
                    break
                byte = buffer[at]
                at += 1
                size |= (byte & 0x7F) << shift
                if not byte & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise WireError("a Remaining Length longer than 4 bytes")
            if size < 0:
                break
            if size > self._max:
                raise WireError(f"a packet of {size} bytes (at most {self._max} are taken)")
            if end - at < size:
                break
            packets.append(_packet(first, bytes(buffer[at : at + size])))
            start = at + size
        del buffer[:start]
        return packets


def _packet(first: int, body: bytes) -> Packet:
    kind, flags = first >> 4, first & 0x0F
    if kind == PUBACK and len(body) == 2:
        return PubAck(int.from_bytes(body, "big"))
    if kind == CONNACK and len(body) == 2:
        return ConnAck(bool(body[0] & 1), body[1])
    if kind == PINGRESP and not body:
        return PingResp()
    if kind == SUBACK and len(body) >= 3:
        return SubAck(int.from_bytes(body[:2], "big"), body[2:])
    if kind == PUBLISH:
        qos = (flags >> 1) & 3
        if qos > 1 or len(body) < 2:
            raise WireError("a malformed PUBLISH")
        size = int.from_bytes(body[:2], "big")
        at = 2 + size
        if qos:
            at += 2
        if len(body) < at:
            raise WireError("a PUBLISH shorter than its topic")
        try:
            topic = body[2 : 2 + size].decode()
        except UnicodeDecodeError:
            raise WireError("a PUBLISH whose topic is not UTF-8") from None
        packet_id = int.from_bytes(body[at - 2 : at], "big") if qos else None
        return Message(topic, body[at:], qos, packet_id, bool(flags & 1), bool(flags & 8))
    raise WireError(f"an unexpected packet (type {kind}, {len(body)} bytes)")
