"""An upstream platform for tests (a stand-in for Plaspy on :8888), and the binary frames trackers send it.

:class:`Upstream` listens on one loopback port for TCP and UDP, recognises each connection's protocol
with our own drivers, answers as a platform does (the drivers' replies: Teltonika ``01`` and record
counts, the GT06 login reply, ``ON``...) and records every session: its transport, its frames byte for
byte, and the reports they decode to. ``stop()`` makes it go away (connections closed, port closed)
and ``start()`` brings it back on the same port.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import trio

import drivers
from drivers import Report, Transport
from drivers._crc import crc16_ibm, crc16_x25
from tests import devices


class _Refused(Exception):
    pass


@dataclass
class UpstreamSession:
    transport: str
    peer: str
    protocol: str | None = None
    device_id: str | None = None
    frames: list[bytes] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    #: Every byte received, as received (a TCP stream, or the datagram).
    raw: bytearray = field(default_factory=bytearray)
    #: The TCP connection, for a test to send commands down it as a platform does.
    stream: trio.SocketStream | None = None


class Upstream:
    def __init__(self, *, answer: bool = True) -> None:
        self.port = devices_free_port()
        #: Devices whose sessions are dropped as soon as they identify themselves (answered nothing).
        self.refuse: set[str] = set()
        self.sessions: list[UpstreamSession] = []
        self.answer = answer
        self.running = False
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self._serve)

    async def _serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
                udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                await udp.bind(("127.0.0.1", self.port))
                with udp:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(trio.serve_listeners, self._tcp, listeners)
                        nursery.start_soon(self._udp, udp)
                        self.running = True
                        task_status.started()
        finally:
            self.running = False
            self._stopped.set()

    async def stop(self) -> None:
        if self._scope is not None and self.running:
            self._scope.cancel()
            await self._stopped.wait()

    async def _tcp(self, stream: trio.SocketStream) -> None:
        host, port = stream.socket.getpeername()[:2]
        peer = f"{host}:{port}"
        record = UpstreamSession("tcp", peer, stream=stream)
        self.sessions.append(record)
        session: drivers.Session | None = None
        head = b""
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                session, head = await self._feed(stream, record, session, head, data)
        except (_Refused, trio.BrokenResourceError):
            await trio.aclose_forcefully(stream)
        finally:
            # Going away: what the kernel already took from the relay is read first (a graceful stop).
            with trio.CancelScope(shield=True):
                if session is not None:  # frames already received but not yet handled
                    with contextlib.suppress(_Refused):
                        session, head = await self._feed(None, record, session, head, b"")
                while True:
                    try:
                        data = os.read(stream.socket.fileno(), 65536)
                    except (OSError, ValueError):  # nothing more, or already closed
                        break
                    if not data:
                        break
                    try:
                        session, head = await self._feed(None, record, session, head, data)
                    except _Refused:
                        break
                await trio.aclose_forcefully(stream)

    async def _feed(
        self,
        stream: trio.SocketStream | None,
        record: UpstreamSession,
        session: drivers.Session | None,
        head: bytes,
        data: bytes,
    ) -> tuple[drivers.Session | None, bytes]:
        record.raw += data
        if session is None:
            head += data
            driver = drivers.detect(head, Transport.TCP)
            if driver is drivers.NEED_MORE:
                return None, head
            assert isinstance(driver, drivers.Driver), f"upstream: unknown protocol {head[:40]!r}"
            session = driver.new_session(Transport.TCP)
            record.protocol = driver.name
            data, head = head, b""
        session.receive_data(data)
        for frame in session.frames():
            decoded = session.decode(frame, now=datetime.now(UTC))
            record.frames.append(frame)
            record.reports.extend(decoded.reports)
            if decoded.device_id or session.device_id:
                record.device_id = decoded.device_id or session.device_id
            if record.device_id in self.refuse:
                raise _Refused
            if stream is not None and self.answer:
                for reply in decoded.replies:
                    await stream.send_all(reply)
        return session, head

    async def _udp(self, sock: trio.socket.SocketType) -> None:
        while True:
            datagram, address = await sock.recvfrom(65536)
            driver = drivers.detect(datagram, Transport.UDP, final=True)
            record = UpstreamSession("udp", f"{address[0]}:{address[1]}", raw=bytearray(datagram))
            self.sessions.append(record)
            if not isinstance(driver, drivers.Driver):
                continue
            session = driver.new_session(Transport.UDP)
            record.protocol = driver.name
            for frame in session.datagram_frames(datagram):
                decoded = session.decode(frame, now=datetime.now(UTC))
                record.frames.append(frame)
                record.reports.extend(decoded.reports)
                record.device_id = decoded.device_id or session.device_id
                if self.answer:
                    for reply in decoded.replies:
                        await sock.sendto(reply, address)

    def frames_by_device(self) -> dict[str, list[bytes]]:
        """Every device's frames in arrival order (over all its sessions), duplicates included."""
        frames: dict[str, list[bytes]] = defaultdict(list)
        for record in self.sessions:
            for frame, device in zip(record.frames, self._devices_of(record), strict=True):
                if device:
                    frames[device].append(frame)
        return frames

    @staticmethod
    def _devices_of(record: UpstreamSession) -> list[str | None]:
        # A frame's device: the session's (login) or the one in the datagram/frame itself.
        return [record.device_id] * len(record.frames)


def devices_free_port() -> int:
    from tests.broker import free_tcp_udp_port

    return free_tcp_udp_port()


# -- binary frames ------------------------------------------------------------------------------------


def gt06_frame(kind: int, content: bytes, serial: int) -> bytes:
    body = bytes([len(content) + 5, kind]) + content + serial.to_bytes(2, "big")
    return b"\x78\x78" + body + crc16_x25(body).to_bytes(2, "big") + b"\r\n"


def gt06_login(imei: str, serial: int = 1) -> bytes:
    return gt06_frame(0x01, bytes.fromhex(imei.rjust(16, "0")), serial)


def gt06_position(index: int, serial: int) -> bytes:
    """A GT06 GPS+LBS packet (0x12) for report ``index``: time BASE+index, a position that moves."""
    when = devices.report_time(index)
    stamp = bytes([when.year - 2000, when.month, when.day, when.hour, when.minute, when.second])
    lat = round((48.1 + (index % 1000) / 100000) * 1_800_000)
    lon = round((11.5 + (index % 1000) / 100000) * 1_800_000)
    course_status = 0x1000 | 0x0400 | (index % 360)  # positioned, north, east
    content = (
        stamp
        + bytes([0xC9])
        + lat.to_bytes(4, "big")
        + lon.to_bytes(4, "big")
        + bytes([index % 100])
        + course_status.to_bytes(2, "big")
        + bytes.fromhex("01cc00287d001fb8")
    )
    return gt06_frame(0x12, content, serial)


def teltonika_handshake(imei: str) -> bytes:
    return len(imei).to_bytes(2, "big") + imei.encode()


def _teltonika_records(indexes: list[int]) -> bytes:
    data = bytes([0x08, len(indexes)])
    for index in indexes:
        when = devices.report_time(index)
        data += int(when.timestamp() * 1000).to_bytes(8, "big") + b"\x00"
        data += round((25.0 + index / 100000) * 1e7).to_bytes(4, "big", signed=True)
        data += round((54.0 + index / 100000) * 1e7).to_bytes(4, "big", signed=True)
        data += (100).to_bytes(2, "big") + (index % 360).to_bytes(2, "big") + b"\x09"
        data += (index % 120).to_bytes(2, "big")
        data += bytes([0, 1, 1, 0xEF, 1, 0, 0, 0])  # event 0, 1 IO: ignition on
    return data + bytes([len(indexes)])


def teltonika_avl(indexes: list[int]) -> bytes:
    """A Codec 8 TCP packet with one record per index."""
    data = _teltonika_records(indexes)
    return b"\x00\x00\x00\x00" + len(data).to_bytes(4, "big") + data + crc16_ibm(data).to_bytes(4, "big")


def teltonika_udp(imei: str, indexes: list[int], packet_id: int) -> bytes:
    body = (
        packet_id.to_bytes(2, "big")
        + b"\x01"
        + bytes([packet_id & 0xFF])
        + teltonika_handshake(imei)
        + _teltonika_records(indexes)
    )
    return len(body).to_bytes(2, "big") + body


# -- trackers --------------------------------------------------------------------------------------------


async def send_tcp(port: int, frames: list[bytes], *, reply_every: bool = False) -> None:
    """Send ``frames`` on one connection; with ``reply_every``, wait for some answer after each."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        for frame in frames:
            await stream.send_all(frame)
            if reply_every:
                with trio.fail_after(20):
                    if not await stream.receive_some(4096):
                        raise AssertionError("relay closed the connection")
        # Close only after the relay has read everything: unread replies on our side would make the
        # close a reset, and a reset discards what the relay has not read yet.
        await stream.send_eof()
        with trio.move_on_after(10):
            while await stream.receive_some(65536):
                pass
