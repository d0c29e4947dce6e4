"""The passthrough sink: each device's raw frames to an upstream platform, one upstream session per device.

The upstream (a platform that speaks the trackers' own protocols on one port, such as Plaspy on
``d.plaspy.com:8888``) sees each device as if it were connected directly, but through the relay's
journal: nothing is lost while the upstream is down, and the device itself is always answered by the
relay at once.

For each device with undelivered reports there is one task and, while it has something to send, one
upstream session over the device's own transport (TCP for TCP and HTTP devices, UDP for UDP ones):

- a new TCP session first replays the device's identification frame (the newest login / IMEI
  handshake the relay kept for it), unless the next frame to send is a login itself; a login in the
  middle of the stream opens a new session, as the device did;
- then the stored raw frames, byte for byte, in the order they were received. Reports that share a
  frame (several records in one Teltonika packet) go as that one frame;
- upstream replies are read. Where the protocol acknowledges (Teltonika IMEI ``01`` and record counts,
  the GT06 login reply, an HTTP response, a UDP datagram the protocol answers) the next frame waits for
  it, up to ``ack_timeout_s``; a wrong or missing answer ends the session and the same frames are sent
  again after a backoff. Other TCP frames count as delivered once the upstream host has acknowledged
  their bytes at the TCP level (the socket's unacknowledged send queue is empty);
- reports from SMS or a serial line have no upstream form and are acknowledged without sending, as are
  protocols left out by ``protocols``;
- what the upstream sends down a session that is not an answer to the frames sent (the answers are
  known: the relay's own driver decodes the same frames, and what it would reply is taken out) is a
  command from the platform: those bytes go to the device byte for byte, queued in the journal like any
  command (``custom`` with the raw bytes), at once on its live connection, else at its next one.

A stuck device never holds the others back: each device reads its own reports and keeps its own
cursor. The sink's floor (everything at or below it delivered) is the lowest position of the devices
with something pending. ``drain = "live_first"`` sends, at the start of each session, the device's
newest report first and then the backlog in order (so the newest one arrives twice).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import struct
import termios
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

import trio

import drivers
from drivers import DriverError, Transport, UpstreamAck

from ..config import PassthroughSinkSettings
from ..errors import CommandRefused, JournalError, SinkError
from ..journal import Journal, StoredReport, passthrough_command
from ..logs import log_event
from ._base import Sink
from ._delivery import CURSOR_FLUSH_S
from ._retry import Uplink, backoff_delay, innermost

log = logging.getLogger("relay.passthrough")

#: Reports read from the journal at once for one device.
READ_BATCH = 200
#: How often the TCP send queue is checked while waiting for the upstream host to take the bytes.
SEND_QUEUE_POLL_S = 0.005
#: A UDP frame the protocol answers is sent this many times before the upstream counts as down.
UDP_TRIES = 3
#: Largest reply kept while waiting for an acknowledgement.
MAX_REPLY_BUFFER = 65536
#: Replies the upstream may still owe, per session, kept to tell them from commands.
MAX_EXPECTED_REPLIES = 64
#: Transports whose frames can be replayed upstream, and the socket type used.
UPSTREAM_TRANSPORT = {"tcp": "tcp", "http": "tcp", "udp": "udp"}
_TIOCOUTQ = getattr(termios, "TIOCOUTQ", 0x5411)


class UpstreamError(Exception):
    """The upstream refused, closed, or did not answer in time."""


def expected_reply(protocol: str, transport: str, raw: bytes, *, login: bool) -> UpstreamAck | None:
    """What the upstream must answer to ``raw`` before the next frame goes, if anything: the driver's
    rule for TCP and HTTP; over UDP, an answer wherever the protocol answers the datagram."""
    try:
        driver = drivers.get(protocol)
    except KeyError:
        return None
    if transport == "udp":
        return UpstreamAck("a reply datagram", len) if _udp_answered(driver, raw) else None
    return driver.session.upstream_ack(raw, login=login)


def _udp_answered(driver: drivers.Driver, raw: bytes) -> bool:
    """Whether the protocol answers this datagram (then the upstream must too): asked of our driver."""
    try:
        return bool(driver.new_session(Transport.UDP).decode(raw, now=datetime.now(UTC)).replies)
    except DriverError:
        return False


@dataclass(eq=False)
class _Device:
    key: str | None
    #: Newest seq delivered with nothing undelivered before it.
    position: int
    #: Newest seq of this device the scanner has seen.
    known_last: int = 0
    wanted: trio.Event = field(default_factory=trio.Event)
    #: The last session could not even connect (the platform's port did not answer).
    unreachable: bool = False

    @property
    def pending(self) -> bool:
        return self.position < self.known_last


class _Session:
    """One upstream connection (TCP stream or connected UDP socket) and what it has answered."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.stream: trio.SocketStream | None = None
        self.udp: trio.socket.SocketType | None = None
        self.buffer = b""
        self.received = trio.Event()
        self.closed = False
        self.close_reason = ""
        self.frames_sent = 0
        #: The protocol of the frames sent, and a session of its driver that decodes them too: what it
        #: replies is what the upstream's answers look like (:meth:`sweep`).
        self.protocol: str | None = None
        self._shadow: drivers.Session | None = None
        self.expected: deque[bytes] = deque(maxlen=MAX_EXPECTED_REPLIES)
        #: While set, an answer is awaited (:meth:`answer`): the buffer is not swept.
        self.awaiting = False
        #: Bytes the upstream sent that answer nothing: commands for the device.
        self.downlink = bytearray()

    @classmethod
    async def open(cls, kind: str, host: str, port: int, timeout: float) -> _Session:
        session = cls(kind)
        with trio.fail_after(timeout):
            if kind == "tcp":
                session.stream = await trio.open_tcp_stream(host, port)
                session.stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            else:
                family, kind_, proto, _, address = (
                    await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                )[0]
                session.udp = trio.socket.socket(family, kind_, proto)
                await session.udp.connect(address)
        return session

    async def finish(self, timeout: float) -> None:
        """End a TCP session gracefully: our FIN, then the upstream's once it has read everything.

        Closing at once could reset the connection, and a reset discards what the upstream host has
        received but its application has not read yet.
        """
        if self.stream is None or self.closed:
            return
        with contextlib.suppress(OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.send_eof()
        with trio.move_on_after(timeout):
            while not self.closed:
                await self.received.wait()

    async def close(self) -> None:
        self.closed = True
        if self.stream is not None:
            await trio.aclose_forcefully(self.stream)
        if self.udp is not None:
            self.udp.close()

    async def read(self) -> None:
        """Collect replies until the upstream closes; never raises."""
        try:
            while True:
                if self.stream is not None:
                    data = await self.stream.receive_some(4096)
                    if not data:
                        self._lost("the upstream closed the connection")
                        return
                else:
                    assert self.udp is not None
                    data = await self.udp.recv(65536)
                self.buffer = (self.buffer + data)[-MAX_REPLY_BUFFER:]
                self.sweep()
                self.received.set()
                self.received = trio.Event()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
            self._lost(f"upstream connection lost: {error}")

    def _lost(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.close_reason = reason
        self.received.set()

    def check_open(self) -> None:
        if self.closed:
            raise UpstreamError(self.close_reason or "upstream session closed")

    def sent_frame(self, protocol: str, frame: bytes) -> None:
        """Note the replies ``frame`` asks for (what the relay's driver answers to it)."""
        if self._shadow is None or self.protocol != protocol:
            try:
                driver = drivers.get(protocol)
            except KeyError:
                return
            self.protocol = protocol
            self._shadow = driver.new_session(Transport.TCP if self.kind == "tcp" else Transport.UDP)
        shadow = self._shadow
        if self.kind == "tcp":
            shadow.receive_data(frame)
            events = shadow.events(now=datetime.now(UTC))
        else:
            events = shadow.receive_datagram(frame, now=datetime.now(UTC))
        for event in events:
            self.expected.extend(reply for reply in event.replies if reply)

    def sweep(self) -> None:
        """Take the upstream's answers to our frames off the buffer; what answers nothing is a command
        for the device (:attr:`downlink`). Not while an answer is awaited: that reads the buffer."""
        if self.awaiting:
            return
        buffer, expected = self.buffer, self.expected
        while buffer:
            match = next((reply for reply in expected if buffer.startswith(reply)), None)
            if match is not None:
                buffer = buffer[len(match) :]
                expected.remove(match)
                continue
            if any(reply.startswith(buffer) for reply in expected):
                break  # an answer, not all of it arrived yet
            found = [at for reply in expected if (at := buffer.find(reply)) > 0]
            cut = min(found) if found else len(buffer)
            self.downlink += buffer[:cut]
            buffer = buffer[cut:]
        self.buffer = buffer

    async def send(self, frame: bytes) -> None:
        self.check_open()
        try:
            if self.stream is not None:
                await self.stream.send_all(frame)
            else:
                assert self.udp is not None
                await self.udp.send(frame)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise UpstreamError(f"cannot write upstream: {error}") from error
        self.frames_sent += 1

    async def answer(self, expect: UpstreamAck, timeout: float) -> bytes:
        """Wait for the reply ``expect`` describes (buffer cleared by the caller before sending, and
        :attr:`awaiting` set)."""
        self.awaiting = True
        try:
            with trio.move_on_after(timeout):
                while True:
                    size = expect.length(self.buffer)
                    if size:
                        answer, self.buffer = self.buffer[:size], self.buffer[size:]
                        if answer in self.expected:
                            self.expected.remove(answer)
                        problem = expect.refusal(answer)
                        if problem:
                            raise UpstreamError(problem)
                        return answer
                    self.check_open()
                    await self.received.wait()
            raise UpstreamError(f"no answer from upstream within {timeout:g} s (waiting for {expect.what})")
        finally:
            self.awaiting = False
            self.sweep()

    async def drained(self, timeout: float) -> None:
        """Return once the upstream host has acknowledged every byte written (TCP)."""
        if self.stream is None:
            return
        fd = self.stream.socket.fileno()
        with trio.move_on_after(timeout):
            while True:
                self.check_open()
                try:
                    unacknowledged = struct.unpack("i", fcntl.ioctl(fd, _TIOCOUTQ, b"\0\0\0\0"))[0]
                except OSError:
                    return  # no send-queue query here: a completed write is the best we know
                if unacknowledged == 0:
                    return
                await trio.sleep(SEND_QUEUE_POLL_S)
        raise UpstreamError(f"upstream did not take the bytes within {timeout:g} s")


class _Reopen(Exception):
    """The next frame needs a new session (another transport, or a login)."""


class PassthroughSink(Sink):
    """Per-device upstream sessions to ``host:port``, each resuming exactly where it stopped."""

    def __init__(self, settings: PassthroughSinkSettings, journal: Journal) -> None:
        super().__init__(settings, journal, window=1)
        self.settings: PassthroughSinkSettings = settings
        #: Cuts the devices' backoff short when the platform, unreachable, can be reached again.
        self.uplink = Uplink(settings.host, settings.port, probe_interval_s=settings.probe_interval_s)
        self._start_floor = self.delivery.floor
        self._scan_pos = self.delivery.floor
        self._devices: dict[str | None, _Device] = {}
        self.sessions = 0
        self.open_sessions = 0
        self.logins_replayed = 0
        self.failures = 0
        #: Commands the upstream sent down the devices' sessions, queued for them.
        self.commands_down = 0

    def backlog(self) -> int:
        self._update_floor()
        return self.delivery.backlog()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._flusher)
                await self._scan(nursery)
        finally:
            self._update_floor()
            self.delivery.save_now()

    # -- which devices have work ----------------------------------------------------------------

    async def _scan(self, nursery: trio.Nursery) -> None:
        while True:
            upto = self.journal.last_seq
            if upto > self._scan_pos:
                for key, newest in self.journal.devices_between(self._scan_pos, upto).items():
                    device = self._devices.get(key)
                    if device is None:
                        position = max(self.delivery.cursors.get(key or "", 0), self._start_floor)
                        device = self._devices[key] = _Device(key, position)
                        nursery.start_soon(self._run_device, device)
                    device.known_last = max(device.known_last, newest)
                    device.wanted.set()
                self._scan_pos = upto
            await self.journal.wait_appended(self._scan_pos)

    def _update_floor(self) -> None:
        pending = [device.position for device in self._devices.values() if device.pending]
        self.delivery.raise_floor(min([self._scan_pos, *pending]))

    async def _flusher(self) -> None:
        while True:
            await trio.sleep(CURSOR_FLUSH_S)
            self._update_floor()
            await self.delivery.flush()

    # -- one device -----------------------------------------------------------------------------

    async def _run_device(self, device: _Device) -> None:
        failures = 0
        while True:
            while not device.pending:
                device.wanted = trio.Event()
                await device.wanted.wait()
            try:
                await self._session(device)
                failures = 0
            except _Reopen:
                failures = 0
            except Exception as raised:
                error = innermost(raised)
                expected = isinstance(error, OSError | UpstreamError | SinkError | trio.TooSlowError)
                failures += 1
                self.failures += 1
                self.connected = False
                self.last_error = str(error) or type(error).__name__
                log_event(
                    log,
                    logging.WARNING if expected else logging.ERROR,
                    "upstream_session_failed",
                    sink=self.name,
                    device_id=device.key,
                    upstream=self.settings.target,
                    error=self.last_error,
                    attempt=failures,
                )
                if not expected:
                    log.error("passthrough_sink_bug", exc_info=error)
                delay = backoff_delay(failures, self.settings.retry_min_s, self.settings.retry_max_s)
                if device.unreachable:  # back as soon as the platform's port answers again
                    await self.uplink.wait(delay)
                else:
                    await trio.sleep(delay)

    def _upstream_kind(self, report: StoredReport) -> str | None:
        """ "tcp"/"udp" for a frame to send upstream, None for one acknowledged without sending."""
        if report.raw is None or report.device_id is None:
            return None
        if self.settings.protocols and report.protocol not in self.settings.protocols:
            return None
        return UPSTREAM_TRANSPORT.get(report.transport)

    def _read(self, device: _Device, after: int) -> list[StoredReport]:
        return self.journal.read_device_after(device.key, after, READ_BATCH)

    async def _session(self, device: _Device) -> None:
        """Send the device's pending frames over one upstream session; return when idle or closed."""
        settings = self.settings
        reports = self._read(device, device.position)
        # What needs no sending before the first frame is acknowledged at once.
        while reports and self._upstream_kind(reports[0]) is None:
            self.stats.skipped += 1
            self._acknowledge(device, reports.pop(0).seq)
            if not reports:
                reports = self._read(device, device.position)
        if not reports:
            return
        first = reports[0]
        kind = self._upstream_kind(first)
        assert kind is not None
        device.unreachable = kind == "tcp"
        session = await _Session.open(kind, settings.host, settings.port, settings.connect_timeout_s)
        device.unreachable = False
        self.sessions += 1
        self.open_sessions += 1
        unconfirmed: list[int] = []
        reopen = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.read)
                self.connected = True
                reopen = await self._pump(device, session, reports, kind, unconfirmed)
                await session.finish(settings.ack_timeout_s)
                nursery.cancel_scope.cancel()
        except BaseException:
            # Written to a session that then failed before confirming them: sent again.
            self.stats.duplicates_possible += len(unconfirmed)
            raise
        finally:
            self.open_sessions -= 1
            with trio.CancelScope(shield=True):
                await session.close()
        if reopen:
            raise _Reopen

    async def _pump(
        self,
        device: _Device,
        session: _Session,
        reports: list[StoredReport],
        kind: str,
        unconfirmed: list[int],
    ) -> bool:
        """Send until idle or closed (returns False), or until a frame needs a new session (True)."""
        await self._replay_login(device, session, reports[0], kind)
        if self.settings.drain == "live_first":
            await self._send_newest_first(device, session, reports[0], kind)
        while True:
            for report in reports:
                report_kind = self._upstream_kind(report)
                if report_kind is None:
                    self.stats.skipped += 1
                    unconfirmed.append(report.seq)
                    continue
                login_again = report.event == "login" and kind == "tcp" and session.frames_sent > 0
                if report_kind != kind or login_again:
                    await self._confirm(device, session, unconfirmed)
                    return True
                assert report.raw is not None
                await self._send(session, report.protocol, report.transport, report.raw)
                unconfirmed.append(report.seq)
            await self._confirm(device, session, unconfirmed)
            await self._forward(device, session)
            reports = self._read(device, device.position)
            if not reports:
                if not await self._idle(device, session):
                    await self._forward(device, session)
                    return False
                reports = self._read(device, device.position)

    async def _replay_login(self, device: _Device, session: _Session, first: StoredReport, kind: str) -> None:
        if kind != "tcp" or first.transport != "tcp" or first.event == "login" or device.key is None:
            return
        login = self.journal.login_frame(device.key)
        if login is None:
            return
        protocol, raw = login
        await self._send(session, protocol, "tcp", raw, login=True)
        self.logins_replayed += 1

    async def _send_newest_first(
        self, device: _Device, session: _Session, first: StoredReport, kind: str
    ) -> None:
        """live_first: the device's newest frame goes before its backlog (and again in its place)."""
        if device.known_last <= first.seq:
            return
        newest = self.journal.read_device_after(device.key, device.known_last - 1, 1)
        if not newest or self._upstream_kind(newest[0]) != kind or newest[0].event == "login":
            return
        report = newest[0]
        assert report.raw is not None
        await self._send(session, report.protocol, report.transport, report.raw)

    async def _send(
        self, session: _Session, protocol: str, transport: str, raw: bytes, *, login: bool = False
    ) -> None:
        expect = expected_reply(protocol, transport, raw, login=login)
        tries = UDP_TRIES if session.kind == "udp" and expect is not None else 1
        session.sent_frame(protocol, raw)  # the replies it asks for, to tell them from commands
        for attempt in range(1, tries + 1):
            if expect is not None:
                session.sweep()  # what came before is an answer to earlier frames, or a command
                session.awaiting = True  # the answer must not be swept before answer() reads it
                session.buffer = b""
            await session.send(raw)  # byte for byte, as the device sent it
            self.stats.published += 1
            if expect is None:
                return
            try:
                await session.answer(expect, self.settings.ack_timeout_s / tries)
                return
            except UpstreamError:
                if attempt == tries or session.closed:
                    raise

    async def _confirm(self, device: _Device, session: _Session, unconfirmed: list[int]) -> None:
        if not unconfirmed:
            return
        await session.drained(self.settings.ack_timeout_s)
        for seq in unconfirmed:
            self._acknowledge(device, seq)
        unconfirmed.clear()

    async def _forward(self, device: _Device, session: _Session) -> None:
        """Queue what the upstream sent down that answers nothing: a command, for the device as it is."""
        if not session.downlink or device.key is None or session.protocol is None:
            return
        raw = bytes(session.downlink)
        session.downlink.clear()
        command = passthrough_command(
            device.key, session.protocol, raw, source=f"passthrough:{self.name}", now=datetime.now(UTC)
        )
        try:
            await self.journal.append(self.journal.queue_command(command))
        except (CommandRefused, JournalError) as error:
            log_event(log, logging.WARNING, "upstream_command_dropped", sink=self.name, device=device.key,
                      bytes=len(raw), reason=str(error))  # fmt: skip
            return
        self.commands_down += 1
        log_event(log, logging.INFO, "upstream_command", sink=self.name, device=device.key, id=command.id,
                  bytes=len(raw))  # fmt: skip

    def _acknowledge(self, device: _Device, seq: int) -> None:
        device.position = max(device.position, seq)
        self.delivery.acknowledge_device(device.key or "", seq)

    async def _idle(self, device: _Device, session: _Session) -> bool:
        """Wait for more of this device's reports; False when the session should end (idle, closed)."""
        with trio.move_on_after(self.settings.idle_timeout_s):
            while not device.pending:
                await self._forward(device, session)
                if session.closed:
                    return False
                device.wanted = trio.Event()
                closed = session.received
                async with trio.open_nursery() as nursery:

                    async def wake(event: trio.Event = closed) -> None:
                        await event.wait()
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(wake)
                    await device.wanted.wait()
                    nursery.cancel_scope.cancel()
            return True
        return False
