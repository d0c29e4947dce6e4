"""The single port: TCP streams and UDP datagrams, the protocol recognised from the bytes.

Every source (TCP connection, UDP peer, serial line) goes through :class:`Ingest`: frames are decoded
by the driver, reports are committed to the journal, and only then are the driver's replies sent.
Bad frames are quarantined with their peer and reason; they never disturb another device.

Commands go down the same sessions (the queue is ``journal.commands``): a stream whose device is
known gets its device's commands as soon as its first identified frame is answered (the login), at
once while it lives, one at a time and in order; a UDP device gets them at the address its last
datagram came from while that is fresh (:data:`UDP_FRESH_S`), right after that datagram's reply. A
command is marked sent once its bytes were written; the driver's ``commandResult`` acknowledges it
(:meth:`Ingest.store`), and one its protocol never answers is acknowledged when written.
"""

from __future__ import annotations

import errno
import logging
import math
import socket
import time
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import trio

from drivers import (
    NEED_MORE,
    Decoded,
    Driver,
    DriverBug,
    DriverError,
    NeedMore,
    Report,
    Session,
    StreamSniffer,
    Transport,
    detect,
)
from drivers import get as get_driver

from ..buckets import ACK_LATENCY_BOUNDS_S, Buckets
from ..clock import clock_unsynced, mark_unsynced
from ..config import ListenSettings, UnknownDevices
from ..devices import Registry
from ..errors import JournalError
from ..journal import COMMAND_RESULT, FRAME_EVENT, CommandChange, Entry, Journal, Quarantined, QueuedCommand
from ..logs import RateLimiter, log_event
from ..statistics import counter, gauge, labelled

log = logging.getLogger("relay.listen")

#: Bytes read from a socket at a time.
READ_SIZE = 65536
#: Bytes of an unrecognised stream kept in quarantine (enough to write a driver from).
QUARANTINE_HEAD = 4096
#: Datagrams taken from the socket per wakeup before other tasks get a turn.
UDP_BURST = 256
#: Datagrams whose replies may wait for their commit at once (beyond that, receiving waits).
UDP_ANSWER_QUEUE = 10_000
#: A UDP device's last address takes its commands for this long after its last datagram (NAT
#: mappings of mobile networks last a minute or more).
UDP_FRESH_S = 60.0
#: Reads of one stream whose replies may wait for their commit at once (beyond that, reading waits).
PIPELINE = 8
#: How long a closing connection waits for its in-flight command's failure to be stored.
CLOSE_STORE_S = 2.0


class _Link:
    """A live stream of a known device: where its commands go. ``send`` serialises writes (replies
    and commands share the stream)."""

    def __init__(
        self, session: Session, stream_send: Callable[[bytes], Awaitable[object]], peer: str
    ) -> None:
        self.session = session
        self.peer = peer
        self._stream_send = stream_send
        self._lock = trio.Lock()
        #: Set when the device's login was answered: commands may go.
        self.ready = trio.Event()
        #: Set when the queue has news for the device.
        self.wake = trio.Event()
        #: The command this link wrote and waits on the answer of.
        self.sent: QueuedCommand | None = None

    async def send(self, data: bytes) -> None:
        async with self._lock:
            await self._stream_send(data)


@dataclass
class Statistics:
    """What the sources and their ingest counted since start (``/metrics``: :mod:`relay.statistics`)."""

    connections_open: int = gauge("TCP connections open now.", metric="relay_connections_open")
    connections_total: int = counter(
        "TCP connections accepted, refused ones included.", metric="relay_connections"
    )
    connections_refused: int = counter(
        "TCP connections closed at once because a connection limit was reached.",
        metric="relay_connections_refused",
    )
    datagrams: int = counter("UDP datagrams received.", metric="relay_datagrams_received")
    frames: int = 0
    reports: int = 0
    bad_frames: int = 0
    unknown_streams: int = 0
    replies: int = counter(
        "Replies sent to devices, each after its reports were committed.", metric="relay_replies_sent"
    )
    buffered_bytes: int = gauge(
        "Bytes of partial frames held for all connections ([listen] max_buffered_mb).",
        metric="relay_buffered_bytes",
    )
    buffer_overflows: int = counter(
        "Connections closed because partial frames of all connections exceeded their budget.",
        metric="relay_buffer_overflows",
    )
    unknown_devices: defaultdict[str, int] = labelled(
        "counter",
        "Frames of devices the registry does not list, refused by [relay] unknown_devices"
        " (quarantine: kept there, unanswered; reject: not stored, the connection closed).",
        ("policy",),
        metric="relay_unknown_device_frames",
        factory=lambda: defaultdict(int),
    )
    udp_peers_forgotten: int = counter(
        "UDP peers whose session state was forgotten to stay within [listen] max_udp_peers.",
        metric="relay_udp_peers_forgotten",
    )
    # For /metrics: one dict increment per frame or reply.
    frames_by_protocol: defaultdict[tuple[str, str], int] = labelled(
        "counter",
        "Frames cut from streams and datagrams.",
        ("protocol", "transport"),
        metric="relay_frames_received",
        factory=lambda: defaultdict(int),
    )
    reports_by_protocol: defaultdict[str, int] = labelled(
        "counter",
        "Reports decoded from frames (each is stored before its frame is answered).",
        ("protocol",),
        metric="relay_reports_decoded",
        factory=lambda: defaultdict(int),
    )
    bad_frames_by_reason: defaultdict[tuple[str, str], int] = labelled(
        "counter",
        "Bytes no driver could use, kept in the quarantine. reason: unrecognised (no driver knows "
        "the stream), malformed (the protocol's driver rejected the frame), driver_bug.",
        ("protocol", "reason"),
        metric="relay_frames_quarantined",
        factory=lambda: defaultdict(int),
    )
    ack_latency: defaultdict[str, Buckets] = labelled(
        "histogram",
        "From receiving a device's bytes to sending the reply they asked for.",
        ("transport",),
        metric="relay_ack_latency_seconds",
        factory=lambda: defaultdict(lambda: Buckets(ACK_LATENCY_BOUNDS_S)),
    )


class Ingest:
    """Decode frames with a session, store the results, send the replies: the one path for every source."""

    def __init__(
        self,
        journal: Journal,
        *,
        max_buffered_bytes: int = 32 * 1024 * 1024,
        keep_every_frame: bool = False,
    ) -> None:
        self.journal = journal
        #: The known devices and the unknown-device policy; calibrates sensors (set by the service).
        self.registry = Registry()
        #: Store frames that decode to no report too (a passthrough sink replays every frame).
        self.keep_every_frame = keep_every_frame
        self.stats = Statistics()
        self.limiter = RateLimiter()
        #: Partial-frame bytes all stream sessions together may hold.
        self.max_buffered_bytes = max_buffered_bytes

    def now(self) -> datetime:
        return datetime.now(UTC)

    def store(
        self, session: Session, events: Iterable[Decoded | DriverError], *, peer: str, transport: Transport
    ) -> tuple[list[Entry | Quarantined | CommandChange], list[bytes]]:
        """What to store for a session's ``events`` (reports, and bad input to quarantine) and the
        replies to send, in stream order, once it is stored: the one place every source's decoded
        bytes become journal entries. A report's ``raw`` is its frame's exact wire bytes. A
        ``commandResult`` answers its device's command in flight: the report names the command and
        its ``acknowledged`` state, stored with it."""
        items: list[Entry | Quarantined | CommandChange] = []
        replies: list[bytes] = []
        now = self.now()
        unsynced = clock_unsynced(now)
        if unsynced and self.limiter.allow("clock")[0]:
            log_event(
                log,
                logging.WARNING,
                "clock_unsynced",
                now=now.isoformat(),
                hint="reports are stored and marked clock_unsynced until the clock is set (NTP)",
            )
        stats = self.stats
        protocol = session.protocol
        counted = (protocol, transport.value)
        registry = self.registry
        for event in events:
            stats.frames += 1
            stats.frames_by_protocol[counted] += 1
            if not isinstance(event, DriverError):
                device = event.reports[0].device_id if event.reports else session.device_id
                if (policy := registry.refusal(device)) is not None:
                    stats.unknown_devices[policy.value] += 1
                    self.unknown_device(device or "", policy, peer=peer, transport=transport)
                    reason = f"unknown device {device} ([relay] unknown_devices = {policy.value})"
                    if policy is UnknownDevices.REJECT:
                        session.abandon(reason)
                        break
                    items.append(Quarantined(event.wire, reason, transport.value, peer, now, protocol))
                    continue
            replies.extend(event.replies)
            if isinstance(event, DriverError):
                if isinstance(event, DriverBug):
                    log.error(
                        "driver_bug",
                        exc_info=event.__cause__,
                        extra={"fields": {"protocol": protocol, "peer": peer}},
                    )
                bad = self.bad_frame(
                    event.wire, str(event), peer=peer, transport=transport, protocol=protocol, now=now
                )
                items.append(bad)
                continue
            reports = event.reports
            if not reports and self.keep_every_frame:
                reports = (Report(protocol=protocol, device_id=session.device_id, event=FRAME_EVENT),)
            for index, report in enumerate(reports):
                report = registry.calibrate(report)
                if unsynced:
                    report = mark_unsynced(report)
                if report.event == COMMAND_RESULT:
                    report, changes = self.journal.commands.answered(report, now)
                    items.extend(changes)
                items.append(Entry(report, event.wire if index == 0 else None, transport.value, peer, now))
                stats.reports += 1
                stats.reports_by_protocol[protocol] += 1
        return items, replies

    def bad_frame(
        self, raw: bytes, reason: str, *, peer: str, transport: Transport, protocol: str | None, now: datetime
    ) -> Quarantined:
        self.stats.bad_frames += 1
        kind = "driver_bug" if reason.startswith("driver bug") else "malformed"
        self.stats.bad_frames_by_reason[(protocol, kind) if protocol else ("unknown", "unrecognised")] += 1
        allowed, suppressed = self.limiter.allow(f"bad:{peer.rsplit(':', 1)[0]}")
        if allowed:
            log_event(
                log,
                logging.WARNING,
                "bad_frame",
                peer=peer,
                transport=transport.value,
                protocol=protocol,
                reason=reason,
                bytes=len(raw),
                suppressed=suppressed,
            )
        return Quarantined(raw, reason, transport.value, peer, now, protocol)

    def unknown_device(self, device: str, policy: UnknownDevices, *, peer: str, transport: Transport) -> None:
        allowed, suppressed = self.limiter.allow(f"unknown:{device}")
        if allowed:
            log_event(log, logging.WARNING, "unknown_device", device=device, policy=policy.value, peer=peer,
                      transport=transport.value, suppressed=suppressed)  # fmt: skip

    def activity(self, event: str, device: str, **fields: object) -> None:
        """A tracker's arrival or departure at info level, at most a few per device a minute."""
        allowed, suppressed = self.limiter.allow(f"activity:{device}")
        if allowed:
            log_event(log, logging.INFO, event, device=device, **fields, suppressed=suppressed)

    def release(self, session: Session) -> None:
        """Forget what ``session`` holds (its stream ended, broke or went idle)."""
        self.stats.buffered_bytes -= session.held_bytes
        session.abandon()

    async def feed(
        self,
        session: Session,
        data: bytes,
        *,
        peer: str,
        transport: Transport,
        send: Callable[[bytes], Awaitable[object]],
    ) -> bool:
        """Give ``data`` (``b""``: the end of the stream) to ``session``, store what it decodes to, then
        send the replies. Returns whether the stream goes on (``False``: close it, the replies sent).

        :raises JournalError: the commit failed; nothing was acknowledged.
        """
        await self.answer(await self.submit(session, data, peer=peer, transport=transport), send)
        return session.closed is None

    async def submit(self, session: Session, data: bytes, *, peer: str, transport: Transport) -> Pending:
        """Give ``data`` (``b""``: the end of the stream) to ``session`` and queue what it decodes to
        for the next commit, without waiting for it: :meth:`answer` sends the replies once it is done.
        The session's state moves on at once, so the next bytes can be decoded meanwhile."""
        stats = self.stats
        held = session.held_bytes
        received = time.monotonic()
        known = session.device_id
        session.receive_data(data)
        events = session.events(now=self.now())
        if session.held_bytes and stats.buffered_bytes + session.held_bytes - held > self.max_buffered_bytes:
            stats.buffer_overflows += 1
            overflow = DriverError(
                session.protocol,
                f"partial frames of all connections exceed {self.max_buffered_bytes} bytes"
                f" ([listen] max_buffered_mb); this one held {session.held_bytes}",
                close=True,
            )
            overflow.wire = session.abandon(overflow.reason)
            events.append(overflow)
        stats.buffered_bytes += session.held_bytes - held
        items, replies = self.store(session, events, peer=peer, transport=transport)
        ticket = await self.journal.submit(items) if items else None
        if session.device_id is not None and session.device_id != known:
            self.activity("device_recognised", session.device_id, protocol=session.protocol,
                          transport=transport.value, peer=peer)  # fmt: skip
        return Pending(ticket, replies, received, transport)

    async def answer(self, pending: Pending, send: Callable[[bytes], Awaitable[object]]) -> None:
        """Wait for ``pending``'s commit, then send its replies (nothing is answered before it is stored).

        :raises JournalError: the commit failed; nothing of it is answered.
        """
        if pending.ticket is not None:
            await self.journal.wait_committed(pending.ticket)
        if pending.replies:
            stats = self.stats
            latency = stats.ack_latency[pending.transport.value]
            for reply in pending.replies:
                await send(reply)
                stats.replies += 1
                latency.observe(time.monotonic() - pending.received)


@dataclass(slots=True)
class Pending:
    """What one read decoded to, queued for a commit (``ticket``; None: nothing to store), and the
    replies that go once it is done."""

    ticket: Any
    replies: list[bytes]
    received: float
    transport: Transport


class Listener:
    """TCP and UDP on one port."""

    def __init__(self, settings: ListenSettings, ingest: Ingest) -> None:
        self.settings = settings
        self.ingest = ingest
        self.stats = ingest.stats
        self._per_ip: defaultdict[str, int] = defaultdict(int)
        self._udp_sessions: OrderedDict[tuple[str, int], Session] = OrderedDict()
        #: Each known device's live stream (the newest, when it has several).
        self.links: dict[str, _Link] = {}
        #: Each UDP device's last address, its session and when it last sent (monotonic), oldest first.
        self._udp_devices: OrderedDict[str, tuple[tuple[str, int], Session, float]] = OrderedDict()
        self._udp_sock: socket.socket | None = None
        self._udp_wanted: set[str] = set()
        self._udp_wake = trio.Event()
        ingest.journal.commands.listeners.append(self._command_ready)

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on TCP and UDP; ``task_status.started(port)`` once both are bound.

        :raises OSError: the port is in use or not permitted (the caller reports it).
        """
        settings = self.settings
        # Port 0 (any free port, as tests ask) is chosen by the TCP bind; the same number may be taken
        # for UDP already: then another is chosen.
        for attempt in range(1, 21):
            try:
                listeners, udp, port = await self._bind(settings.port)
                break
            except OSError as error:
                if settings.port != 0 or error.errno != errno.EADDRINUSE or attempt == 20:
                    raise
        async with trio.open_nursery() as nursery:
            if listeners:
                nursery.start_soon(trio.serve_listeners, self._handle_tcp, listeners)
            if udp is not None:
                nursery.start_soon(self._serve_udp, udp)
            task_status.started(port)

    async def _bind(self, port: int) -> tuple[list[trio.SocketListener], socket.socket | None, int]:
        """TCP and UDP bound on one port, or an OSError with nothing left bound."""
        settings = self.settings
        listeners: list[trio.SocketListener] = []
        udp: socket.socket | None = None
        try:
            if settings.tcp:
                listeners = await trio.open_tcp_listeners(port, host=settings.host or None)
                port = listeners[0].socket.getsockname()[1]
            if settings.udp:
                family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
                udp = socket.socket(family, socket.SOCK_DGRAM)
                udp.setblocking(False)
                udp.bind((settings.host, port))
                port = udp.getsockname()[1]
        except OSError:
            for listener in listeners:
                await listener.aclose()
            if udp is not None:
                udp.close()
            raise
        return listeners, udp, port

    # -- TCP ----------------------------------------------------------------------------------

    async def _handle_tcp(self, stream: trio.SocketStream) -> None:
        try:
            address = stream.socket.getpeername()
        except OSError:
            await stream.aclose()
            return
        ip = str(address[0])
        peer = f"{ip}:{address[1]}"
        self.stats.connections_total += 1
        if (
            self.stats.connections_open >= self.settings.max_connections
            or self._per_ip[ip] >= self.settings.max_connections_per_ip
        ):
            self.stats.connections_refused += 1
            allowed, suppressed = self.ingest.limiter.allow(f"refused:{ip}")
            if allowed:
                log_event(
                    log,
                    logging.WARNING,
                    "connection_refused",
                    peer=peer,
                    reason="connection limit",
                    open=self._per_ip[ip],
                    suppressed=suppressed,
                )
            await stream.aclose()
            return
        self.stats.connections_open += 1
        self._per_ip[ip] += 1
        try:
            await self.serve_stream(stream, peer, Transport.TCP)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except JournalError as error:
            log_event(log, logging.ERROR, "connection_closed", peer=peer, reason=str(error))
        finally:
            self.stats.connections_open -= 1
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]
            await stream.aclose()

    async def serve_stream(
        self,
        stream: trio.abc.Stream,
        peer: str,
        transport: Transport,
        *,
        protocol: str = "auto",
        idle_timeout: float | None = -1.0,
    ) -> None:
        """Serve one byte stream (a TCP connection, a serial line) until it ends, goes idle or breaks.

        ``protocol="auto"`` recognises the protocol from the first bytes; ``idle_timeout=None`` never
        gives up on silence (a serial line), the default uses ``[listen] idle_timeout_s``.

        :raises trio.BrokenResourceError: the peer went away.
        """
        if idle_timeout == -1.0:
            idle_timeout = self.settings.idle_timeout_s
        if protocol == "auto":
            driver, head, eof = await self._sniff(stream, peer, transport)
            if driver is None:
                return
        else:
            driver, head, eof = get_driver(protocol), b"", False
        session = driver.new_session(transport)
        log_event(log, logging.DEBUG, "stream_recognised", peer=peer, protocol=driver.name)
        link = _Link(session, stream.send_all, peer)
        submit = partial(self.ingest.submit, session, peer=peer, transport=transport)
        # Reads go on while earlier frames wait for their commit (PIPELINE at most); a task beside
        # them sends each read's replies, in order, once its commit is done.
        to_answer, answers = trio.open_memory_channel[Pending](PIPELINE - 1)
        # One scope for the connection, its deadline moved around each read: cheaper than a new
        # timeout scope per read, and the wait for a commit is never cut short by it.
        idle = trio.CancelScope()
        failures: list[BaseException] = []
        answered = trio.Event()

        async def feed(data: bytes) -> bool:
            await to_answer.send(await submit(data))
            return session.closed is None

        try:
            # The device's commands go down the stream from a task beside the reads; what breaks the
            # stream leaves the nursery as it is (no group), for the caller.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._deliver, link)
                nursery.start_soon(self._answer, answers, link, failures, nursery.cancel_scope, answered)
                try:
                    with idle:
                        # A stream whose protocol is given starts with nothing read: no b"" to feed.
                        going_on = (not head or await feed(head)) and (not eof or await feed(b""))
                        while going_on:
                            if idle_timeout is not None:
                                idle.deadline = trio.current_time() + idle_timeout
                            data = await stream.receive_some(READ_SIZE)
                            idle.deadline = math.inf
                            going_on = await feed(data)
                    to_answer.close()
                    await answered.wait()  # the last replies, before the stream closes
                    if session.closed != "the stream ended" and not failures:
                        reason = session.closed
                        log_event(log, logging.INFO, "connection_closed", peer=peer, reason=reason)
                except (trio.BrokenResourceError, trio.ClosedResourceError, JournalError) as error:
                    failures.append(error)
                nursery.cancel_scope.cancel()
            if failures:
                raise failures[0]
        finally:
            await self._unlink(link)
            if session.device_id is not None:
                reason = session.closed or ("idle" if idle.cancelled_caught else "stopped")
                self.ingest.activity("device_disconnected", session.device_id, peer=peer, reason=reason)
            self.ingest.release(session)
            if idle.cancelled_caught:
                log_event(
                    log,
                    logging.INFO,
                    "connection_idle",
                    peer=peer,
                    device=session.device_id,
                    idle_s=idle_timeout,
                )

    async def _answer(
        self,
        answers: trio.MemoryReceiveChannel[Pending],
        link: _Link,
        failures: list[BaseException],
        connection: trio.CancelScope,
        answered: trio.Event,
    ) -> None:
        """Send each read's replies once its commit is done, in order; a failed commit or a broken
        stream ends the connection (recorded in ``failures``)."""
        try:
            async for pending in answers:
                await self.ingest.answer(pending, link.send)
                self._linked(link)
        except (trio.BrokenResourceError, trio.ClosedResourceError, JournalError) as error:
            failures.append(error)
            connection.cancel()
        finally:
            answered.set()

    # -- commands -----------------------------------------------------------------------------

    def _command_ready(self, device_id: str) -> None:
        """The queue has news for ``device_id``: wake its stream, or the UDP sender."""
        link = self.links.get(device_id)
        if link is not None:
            link.wake.set()
        elif device_id in self._udp_devices:
            self._udp_wanted.add(device_id)
            self._udp_wake.set()

    def _linked(self, link: _Link) -> None:
        """After a read's replies went: once the stream's device is known (its login answered), it
        takes commands."""
        device = link.session.device_id
        if device is None or link.ready.is_set():
            return
        self.links[device] = link
        link.ready.set()

    async def _unlink(self, link: _Link) -> None:
        device = link.session.device_id
        if device is not None and self.links.get(device) is link:
            del self.links[device]
        command = link.sent
        if command is not None:
            commands = self.ingest.journal.commands
            reason = "the connection closed before the device answered"
            items = commands.failed(command, self.ingest.now(), reason)
            if items:
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_STORE_S):
                    await self._store_commands(items)
        if device is not None and device in self.ingest.journal.commands.devices():
            self._command_ready(device)  # a UDP address may take over

    async def _store_commands(self, items: list[Any]) -> bool:
        if not items:
            return True
        try:
            await self.ingest.journal.append(items)
        except JournalError as error:
            log_event(log, logging.ERROR, "command_state_not_stored", error=str(error))
            return False
        return True

    async def _deliver(self, link: _Link) -> None:
        """Send the device's commands down its stream, one at a time, in order, while it lives."""
        await link.ready.wait()
        session = link.session
        device = session.device_id
        assert device is not None
        commands = self.ingest.journal.commands
        while True:
            link.wake = trio.Event()
            now = self.ingest.now()
            command, expired = commands.next_for(device, now)
            await self._store_commands(expired)
            if command is None:
                await link.wake.wait()
                continue
            try:
                items = await self._send_command(command, session, link.send, link.peer)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return  # never written: it stays queued for the next connection; the reads notice
            if command.state.value == "sent":
                link.sent = command
            await self._store_commands(items)

    async def _send_command(
        self, command: QueuedCommand, session: Session, send: Callable[[bytes], Awaitable[object]], peer: str
    ) -> list[Any]:
        """Encode ``command`` with the device's session, write it, and return the changes to store."""
        commands = self.ingest.journal.commands
        now = self.ingest.now()
        try:
            data = command.raw if command.raw is not None else session.encode(command.command, now=now)
        except DriverError as error:
            return commands.failed(command, now, error.reason)
        except Exception as error:  # a driver bug costs this command, never the connection
            log.error("driver_bug", exc_info=error, extra={"fields": {"protocol": session.protocol}})
            return commands.failed(command, now, f"driver bug: {error!r}")
        await send(data)
        answered = command.raw is None and session.expects_answer(command.command)
        log_event(log, logging.INFO, "command_sent", device=command.device_id, id=command.id,
                  type=command.type.value, source=command.source, peer=peer, bytes=len(data))  # fmt: skip
        return commands.sent(command, self.ingest.now(), answered=answered)

    async def _deliver_udp(self) -> None:
        """Send queued commands to UDP devices at their last address, while it is fresh."""
        commands = self.ingest.journal.commands
        while True:
            await self._udp_wake.wait()
            self._udp_wake = trio.Event()
            wanted, self._udp_wanted = self._udp_wanted, set()
            sock = self._udp_sock
            for device in wanted:
                known = self._udp_devices.get(device)
                if known is None or sock is None or device in self.links:
                    continue
                address, session, seen = known
                if time.monotonic() - seen > UDP_FRESH_S:
                    continue  # the next datagram brings it back
                command, expired = commands.next_for(device, self.ingest.now())
                await self._store_commands(expired)
                if command is None:
                    continue

                async def send(
                    data: bytes, sock: socket.socket = sock, address: tuple[str, int] = address
                ) -> None:
                    while True:
                        try:
                            sock.sendto(data, address)
                            return
                        except BlockingIOError:
                            await trio.lowlevel.wait_writable(sock)

                try:
                    items = await self._send_command(command, session, send, f"{address[0]}:{address[1]}")
                except OSError as error:
                    items = commands.failed(command, self.ingest.now(), f"UDP send failed: {error}")
                await self._store_commands(items)

    async def _sniff(
        self, stream: trio.abc.Stream, peer: str, transport: Transport
    ) -> tuple[Driver | None, bytes, bool]:
        """Read until a driver recognises the stream: (driver, the stream from its first frame, eof).

        Bytes no driver recognises before that frame are quarantined; a stream that never shows a
        recognisable frame is quarantined (its head) and ``(None, …)`` returned."""
        # A serial line carries what a TCP stream would: recognise it the same way.
        sniffer = StreamSniffer(Transport.TCP if transport is Transport.SERIAL else transport)
        eof = False
        found: Driver | NeedMore | None = NEED_MORE
        with trio.move_on_after(self.settings.sniff_timeout_s):
            while found is NEED_MORE:
                data = await stream.receive_some(READ_SIZE)
                if not data:
                    eof = True
                    break
                sniffer.receive_data(data)
                found = sniffer.recognise()
        if not isinstance(found, Driver):
            found = sniffer.recognise(final=True)
        unknown = sniffer.skipped if isinstance(found, Driver) else sniffer.received
        if unknown.strip(b"\r\n\x00 "):
            self.stats.unknown_streams += 1
            item = self.ingest.bad_frame(
                unknown[:QUARANTINE_HEAD],
                "no driver recognises these bytes"
                if isinstance(found, Driver)
                else "no driver recognises this stream",
                peer=peer,
                transport=transport,
                protocol=None,
                now=self.ingest.now(),
            )
            await self.ingest.journal.append([item])
        if isinstance(found, Driver):
            return found, sniffer.head, eof
        return None, sniffer.received, eof

    # -- UDP ----------------------------------------------------------------------------------

    async def _serve_udp(self, sock: socket.socket) -> None:
        """Receive datagrams until cancelled.

        The socket is drained after each wakeup (thousands of trackers can be waiting), datagrams are
        decoded and submitted to the journal in arrival order (so each device's reports stay in
        order), and one answering task sends the replies as their commits land, also in order.
        """
        send_answer, receive_answers = trio.open_memory_channel[
            tuple[Any, list[bytes], tuple[str, int], float, str | None]
        ](UDP_ANSWER_QUEUE)
        try:
            self._udp_sock = sock
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._answer_datagrams, sock, receive_answers)
                nursery.start_soon(self._deliver_udp)
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    for _ in range(UDP_BURST):
                        try:
                            data, address = sock.recvfrom(READ_SIZE)
                        except BlockingIOError:
                            break
                        except OSError as error:  # ICMP port unreachable from an earlier reply, and the like
                            log_event(log, logging.DEBUG, "udp_receive_error", error=str(error))
                            continue
                        self.stats.datagrams += 1
                        await self._datagram(data, address, send_answer)
                    await trio.lowlevel.checkpoint()
        finally:
            trio.lowlevel.notify_closing(sock)
            sock.close()

    async def _datagram(self, data: bytes, address: tuple[str, int], answer: trio.MemorySendChannel) -> None:
        received = time.monotonic()
        peer = f"{address[0]}:{address[1]}"
        key = (str(address[0]), int(address[1]))
        session = self._udp_sessions.get(key)
        found = detect(data, Transport.UDP, final=True)
        if not isinstance(found, Driver):
            self.stats.unknown_streams += 1
            item = self.ingest.bad_frame(
                data[:QUARANTINE_HEAD],
                "no driver recognises this datagram",
                peer=peer,
                transport=Transport.UDP,
                protocol=None,
                now=self.ingest.now(),
            )
            await self.ingest.journal.submit([item])
            return
        if session is None or session.protocol != found.name:
            session = found.new_session(Transport.UDP, device_id=session.device_id if session else None)
            self._udp_sessions[key] = session
            while len(self._udp_sessions) > self.settings.max_udp_peers:
                self._udp_sessions.popitem(last=False)
                self.stats.udp_peers_forgotten += 1
        self._udp_sessions.move_to_end(key)
        events = session.receive_datagram(data, now=self.ingest.now())
        items, answers = self.ingest.store(session, events, peer=peer, transport=Transport.UDP)
        ticket = await self.ingest.journal.submit(items) if items else None
        device = session.device_id
        if device is not None:
            self._udp_devices[device] = (key, session, time.monotonic())
            self._udp_devices.move_to_end(device)
            while len(self._udp_devices) > self.settings.max_udp_peers:
                self._udp_devices.popitem(last=False)
        if answers or ticket is not None:
            await answer.send((ticket, answers, address, received, device))

    async def _answer_datagrams(self, sock: socket.socket, answers: trio.MemoryReceiveChannel) -> None:
        latency = self.stats.ack_latency[Transport.UDP.value]
        async for ticket, replies, address, received, device in answers:
            if ticket is not None:
                try:
                    await self.ingest.journal.wait_committed(ticket)
                except JournalError as error:
                    log_event(
                        log,
                        logging.ERROR,
                        "datagram_not_acknowledged",
                        peer=f"{address[0]}:{address[1]}",
                        reason=str(error),
                    )
                    continue
            for reply in replies:
                try:
                    while True:
                        try:
                            sock.sendto(reply, address)
                            break
                        except BlockingIOError:
                            await trio.lowlevel.wait_writable(sock)
                    self.stats.replies += 1
                    latency.observe(time.monotonic() - received)
                except OSError as error:
                    log_event(log, logging.DEBUG, "udp_send_error", error=str(error))
            if device is not None and device in self.ingest.journal.commands.devices():
                self._command_ready(device)  # its commands go right after the reply
