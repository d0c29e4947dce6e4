"""The MQTT sink: every committed report published at QoS 1, in order per device, until PUBACKed.

MQTT 3.1.1 is spoken by :mod:`relay.sinks._mqtt_wire` (sans-I/O packets) over a trio stream (TCP, or
TLS with ``mqtts://``): no thread, cancellation works, and a publish costs a few byte joins, so a
backlog drains at the pace of the broker's PUBACKs rather than of a client library's bookkeeping.

Delivery (:mod:`relay.sinks._delivery`): reports are published in ``seq`` order with at most ``inflight``
awaiting their PUBACK; a report counts as delivered only once acknowledged. After a disconnect or a
crash the sink resumes from its durable position, so a report may be published twice (at least
once; receivers drop duplicates by ``id``), never lost. Reports never rely on the broker's session: the
journal is the queue.

A broker that stops acknowledging is given ``puback_timeout_s``: when the oldest publish has waited
that long the connection is dropped and its window sent again on the next one. The reconnect
backoff grows with every connection until one of them has a report acknowledged (or, with nothing
to send, the online status): a broker that drops the relay after each publish is not hammered.

Credentials come from the ``username``/``password`` keys or from the URL
(``mqtt://user:password@host``, percent-decoded); the password is never logged.

Topics (``<prefix>`` = the sink's ``topic_prefix``):

- ``<prefix>/<device_id>/position``: reports with a position;
- ``<prefix>/<device_id>/event``: reports without one (login, heartbeat, status, alarms without fix);
- ``<prefix>/<device_id>/photo``: reports carrying a photo (JPEG base64 in ``media.base64``);
- ``<prefix>/<device_id>/command/result``: each change of a command's state (``commandResult``
  reports), and the refusal of a bad command;
- ``<prefix>/status``: ``online`` / ``offline``, retained; ``offline`` is also the last will.

Commands come in on ``<prefix>/<device_id>/command`` (subscribed at QoS 1 on the same connection, with
``commands = true``): a JSON object ``{"id", "type", "params", "expires_s", "via"}`` (only ``type`` is
required). Each is checked and queued in the journal before its PUBACK goes, so a command the
broker was told is taken is durable. With commands on, the session is persistent (no clean session,
the fixed ``client_id``): commands published while the relay is away or disconnected wait in the
broker's queue for it, and a command the relay took but had not acknowledged comes again. A bad one
(not JSON, an unknown device, type or key, wrong parameters, an id used before) gets its reason on
``<prefix>/<device_id>/command/result`` and never stops the sink.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import trio

from ..config import MqttSinkSettings
from ..errors import CommandIdUsed, CommandRefused, JournalError, SinkError
from ..journal import (
    COMMAND_RESULT,
    Journal,
    StoredReport,
    parse_command_json,
    refusal_document,
)
from ..logs import log_event
from . import _mqtt_wire as wire
from ._base import Sink
from ._retry import Uplink, backoff_delay, innermost

log = logging.getLogger("relay.mqtt")

#: How long the broker gets to answer CONNECT.
CONNECT_TIMEOUT_S = 15.0
#: Linux's TCP_QUICKACK (None elsewhere).
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)
#: What a publish that is not a report waits for, in the window of publishes (``_mids``).
_STATUS, _OTHER = None, -1
#: Commands received and not yet queued, at most; more are refused (the sender is flooding).
COMMANDS_WAITING = 256
#: On a stop, how long the PUBACKs of the reports in flight are waited for (then they are sent again
#: at the next start: at least once).
DRAIN_S = 2.0


class _Disconnected(Exception):
    pass


#: Characters a device id keeps in a topic; every other byte of its UTF-8 form becomes ``%XX``.
_TOPIC_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._:@")


@functools.lru_cache(maxsize=4096)
def topic_segment(device_id: str | None) -> str:
    """The device's topic level: its id with every byte outside letters, digits and ``-._:@``
    percent-encoded (``urllib.parse.unquote`` reverses it), so no two ids share a topic and no id
    can carry a topic separator, a wildcard or a character a broker refuses. Reports without a
    device id go under ``~``, which no escaped id can be."""
    if device_id is None:
        return "~"
    return "".join(chr(byte) if byte in _TOPIC_SAFE else f"%{byte:02X}" for byte in device_id.encode())


def topic_kind(report: StoredReport) -> str:
    """The report's last topic levels: ``command/result``, ``photo``, ``position`` or ``event``."""
    if report.event == COMMAND_RESULT:
        return "command/result"
    return "photo" if report.media is not None else "position" if report.has_position else "event"


def topic_for(prefix: str, report: StoredReport) -> str:
    return f"{prefix}/{topic_segment(report.device_id)}/{topic_kind(report)}"


#: Topics a sink keeps built (per device and kind); past this many the cache starts again.
TOPICS_KEPT = 30_000


def payload_for(report: StoredReport) -> bytes:
    return report.json_bytes()


class MqttSink(Sink):
    """One broker connection at a time, reconnecting with backoff and jitter, forever."""

    def __init__(self, settings: MqttSinkSettings, journal: Journal) -> None:
        super().__init__(settings, journal, window=settings.inflight)
        self.settings: MqttSinkSettings = settings
        self.status_topic = f"{settings.topic_prefix}/status"
        #: Cuts the backoff short when the broker, unreachable, can be reached again.
        self.uplink = Uplink(settings.host, settings.port, probe_interval_s=settings.probe_interval_s)
        self._unreachable = False
        self.connects = 0
        #: Connections dropped because the broker left a publish unacknowledged for puback_timeout_s.
        self.puback_timeouts = 0
        #: Failed connections since one proved good: the reconnect backoff grows with it.
        self.failures = 0
        #: Per unacknowledged publish (by packet id): its report's seq (``_STATUS``: the online
        #: status; ``_OTHER``: a command's refusal) and when it was published, oldest first.
        self._mids: dict[int, tuple[int | None, float]] = {}
        self._reports_published = 0
        self._reports_acked = 0
        self._status_acked = False
        #: Commands taken from the broker and refused (bad input), since start.
        self.commands_refused = 0
        self.commands_queued = 0
        self._incoming: trio.MemorySendChannel[wire.Message] | None = None
        #: Seqs PUBACKed in the bytes read last: acknowledged together, once per read.
        self._acks: list[int] = []
        #: Each (device, kind)'s topic (UTF-8), built once.
        self._topics: dict[tuple[str | None, str], bytes] = {}
        #: Bytes to write, sent by the connection's writer task (:meth:`_write`).
        self._out = bytearray()
        self._out_ready = trio.Event()
        self._packet_id = 0
        #: A PINGREQ was sent and its PINGRESP has not come yet.
        self._ping_unanswered = False
        #: When the connection last wrote (trio time): the keepalive counts from it.
        self._written_at = 0.0
        #: The writer is inside a send (a stop there may leave a packet half sent).
        self._writing = False
        # (no wake_on_part: a publish is cheap, and a window refilled at every read keeps data flowing)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                await self._connection_or_stop()
            except Exception as raised:
                error = innermost(raised)
                self.last_error = str(error) or type(error).__name__
                expected = isinstance(
                    error,
                    (OSError, _Disconnected, SinkError, trio.TooSlowError, trio.BrokenResourceError,
                     wire.WireError),
                )  # fmt: skip
                log_event(
                    log,
                    logging.WARNING if expected else logging.ERROR,
                    "mqtt_disconnected",
                    sink=self.name,
                    url=self.settings.target,
                    error=self.last_error,
                    attempt=self.failures + 1,
                )
                if not expected:
                    log.error("mqtt_sink_bug", exc_info=error)
            finally:
                self.connected = False
                self._acknowledge_pending()
                self.delivery.rewind()
                self.delivery.save_now()
            self.failures = 0 if self._connection_was_good() else self.failures + 1
            delay = backoff_delay(self.failures, self.settings.retry_min_s, self.settings.retry_max_s)
            if self._unreachable:  # back within a probe interval of the broker being reachable again
                await self.uplink.wait(delay)
            else:  # the broker answered and misbehaved: the backoff alone
                await trio.sleep(delay)

    async def _connection_or_stop(self) -> None:
        """:meth:`_connection`; when the relay stops just as the connection fails, the stop wins (a
        group of both would otherwise escape the sink as an error)."""
        try:
            await self._connection()
        except BaseExceptionGroup as group:
            if isinstance(group, Exception):
                raise
            cancelled, _failure = group.split(trio.Cancelled)
            if cancelled is None:
                raise
            raise cancelled from None

    def _connection_was_good(self) -> bool:
        """Whether the last connection proved the broker takes reports: one was acknowledged, or,
        with none to send, the online status was. Being accepted (CONNACK) is not enough."""
        if self._reports_published:
            return self._reports_acked > 0
        return self._status_acked

    # -- one connection -----------------------------------------------------------------------

    async def _connection(self) -> None:
        settings = self.settings
        self._unreachable = False
        self._incoming = None
        self._mids = {}
        self._out = bytearray()
        self._out_ready = trio.Event()
        self._ping_unanswered = False
        self._writing = False
        self._written_at = trio.current_time()
        self._reports_published = self._reports_acked = 0
        self._status_acked = False
        stream, sock = await self._open()
        reader = wire.PacketReader()
        receive: trio.MemoryReceiveChannel[wire.Message] | None = None
        if settings.commands:  # before the CONNACK: the broker's kept commands may come with it
            self._incoming, receive = trio.open_memory_channel[wire.Message](COMMANDS_WAITING)
        try:
            await self._handshake(stream, reader)
            self.connected = True
            self.connects += 1
            self.last_error = None
            online = self._waiting_id(_STATUS)
            self._write(wire.publish(self.status_topic.encode(), b"online", online, retain=True))
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, stream)
                nursery.start_soon(self._reader, stream, sock, reader)
                nursery.start_soon(self._pinger)
                if receive is not None:
                    nursery.start_soon(self._take_commands, receive)
                    subscription = self._waiting_id(_OTHER)  # until its SUBACK
                    self._write(wire.subscribe(subscription, f"{settings.topic_prefix}/+/command"))
                log_event(
                    log,
                    logging.INFO,
                    "mqtt_connected",
                    sink=self.name,
                    url=settings.target,
                    backlog=self.delivery.backlog(),
                )
                nursery.start_soon(self.delivery.run_flusher)
                nursery.start_soon(self._puback_watchdog)
                await self._pump()
        finally:
            self._incoming = None  # nothing takes commands any more
            stopping = trio.current_effective_deadline() == -math.inf  # cancelled: the relay stops
            with trio.CancelScope(shield=True):
                if self._writing:  # a packet half sent: more bytes would be read as its rest
                    await trio.aclose_forcefully(stream)  # the last will says offline
                else:
                    if stopping:
                        await self._drain(stream, reader)
                    with trio.move_on_after(2):
                        await self._goodbye(stream)

    async def _open(self) -> tuple[trio.abc.Stream, trio.socket.SocketType]:
        """The connection (TLS handshake done, with ``mqtts://``) and its TCP socket, within
        CONNECT_TIMEOUT_S.

        :raises SinkError: it could not be made (``_unreachable`` set when TCP itself failed).
        """
        settings = self.settings
        where = f"{settings.host}:{settings.port}"
        context = None
        if settings.tls:
            try:
                context = ssl.create_default_context(cafile=settings.ca_file)
            except OSError as error:  # ssl.SSLError is an OSError
                raise SinkError(self.name, f"cannot use ca_file {settings.ca_file}: {error}") from None
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                tcp = await trio.open_tcp_stream(settings.host, settings.port)
        except (OSError, trio.TooSlowError) as error:
            self._unreachable = True
            raise SinkError(self.name, f"cannot connect to {where}: {error or 'timed out'}") from None
        if context is None:
            return tcp, tcp.socket
        tls = trio.SSLStream(tcp, context, server_hostname=settings.host)
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                await tls.do_handshake()
        except (OSError, trio.BrokenResourceError, trio.TooSlowError) as error:
            await trio.aclose_forcefully(tcp)
            # A TLS handshake that failed reached the broker: probing would only retry it at once.
            cause = error.__cause__ if isinstance(error, trio.BrokenResourceError) else error
            raise SinkError(self.name, f"cannot connect to {where}: {cause or 'timed out'}") from None
        return tls, tcp.socket

    async def _handshake(self, stream: trio.abc.Stream, reader: wire.PacketReader) -> None:
        """CONNECT (``offline`` as the retained last will), and its CONNACK.

        :raises SinkError: the broker refused the connection; :raises trio.TooSlowError: no answer.
        """
        settings = self.settings
        packet = wire.connect(
            settings.client_id,
            keepalive_s=settings.keepalive_s,
            username=settings.username,
            password=settings.password if settings.username is not None else None,
            will=(self.status_topic, b"offline"),
            # Taking commands, the session lasts: the broker keeps the ones sent while the relay is
            # away (its QoS 1 queue) and hands them over when it is back.
            clean_session=not settings.commands,
        )
        with trio.fail_after(CONNECT_TIMEOUT_S):
            await stream.send_all(packet)
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    raise _Disconnected("the broker closed the connection before its CONNACK")
                packets = reader.feed(data)
                if packets:
                    break
        first = packets[0]
        if not isinstance(first, wire.ConnAck):
            raise wire.WireError(f"the broker answered CONNECT with {type(first).__name__}")
        if first.code:
            reason = wire.REFUSALS.get(first.code, f"return code {first.code}")
            raise SinkError(self.name, f"broker refused the connection: {reason}")
        self._handle(packets[1:])

    def _next_id(self) -> int:
        """A packet id no publish in flight has (1-65535)."""
        packet_id = self._packet_id
        while True:
            packet_id = packet_id % 65535 + 1
            if packet_id not in self._mids:
                self._packet_id = packet_id
                return packet_id

    def _waiting_id(self, what: int | None, now: float | None = None) -> int:
        """A packet id for a packet whose answer is waited for (``what``: a report's seq, ``_STATUS``
        or ``_OTHER``), held in the window from ``now`` (default: this moment)."""
        packet_id = self._next_id()
        self._mids[packet_id] = (what, time.monotonic() if now is None else now)
        return packet_id

    def _write(self, data: bytes) -> None:
        """Queue ``data`` for the writer task (in order; it sends what has gathered at once)."""
        self._out += data
        self._out_ready.set()

    async def _writer(self, stream: trio.abc.Stream) -> None:
        while True:
            await self._out_ready.wait()
            data, self._out = self._out, bytearray()
            self._out_ready = trio.Event()
            self._writing = True  # cut short here, a packet may be half sent: nothing may follow it
            await stream.send_all(data)
            self._writing = False
            self._written_at = trio.current_time()

    async def _reader(
        self, stream: trio.abc.Stream, sock: trio.socket.SocketType, reader: wire.PacketReader
    ) -> None:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise _Disconnected("connection lost (the broker closed it)")
            # Acknowledge the broker's segment at once, not after Linux's delayed-ACK timer: a broker
            # with Nagle on (mosquitto's default) holds its next PUBACKs until this ACK, 40 ms a window.
            if _QUICKACK is not None:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            self._handle(reader.feed(data))
            self._acknowledge_pending()
            # The PUBACKs freed part of the window: refill it from here, in the same step, rather than
            # by waking the pump (the drain is bound by these round trips, not by the CPU).
            if self.delivery.work_ready():
                self._send_more()

    def _handle(self, packets: list[wire.Packet]) -> None:
        for packet in packets:
            kind = type(packet)
            if kind is wire.PubAck:
                self._acknowledged(packet.packet_id)  # type: ignore[union-attr]
            elif kind is wire.Message:
                self._command_received(packet)  # type: ignore[arg-type]
            elif kind is wire.PingResp:
                self._ping_unanswered = False
            elif kind is wire.SubAck:
                self._mids.pop(packet.packet_id, None)  # type: ignore[union-attr]
                if b"\x80" in packet.codes:  # type: ignore[union-attr]
                    log_event(log, logging.WARNING, "mqtt_commands_refused", sink=self.name,
                              reason="the broker refused the subscription to the command topic")  # fmt: skip
            else:
                raise wire.WireError(f"an unexpected {kind.__name__} from the broker")

    async def _pinger(self) -> None:
        """A PINGREQ when nothing was written for a keepalive (a metered link pays for no more); a
        broker that has not answered it a keepalive later is gone."""
        keepalive = self.settings.keepalive_s
        while True:
            await trio.sleep_until(self._written_at + keepalive)
            if trio.current_time() < self._written_at + keepalive:
                continue  # written meanwhile
            if self._ping_unanswered:
                raise _Disconnected(f"keepalive failed (no PINGRESP within {keepalive} s)")
            self._ping_unanswered = True
            self._write(wire.PINGREQ_PACKET)
            self._written_at = trio.current_time()  # its answer is due a keepalive from now

    async def _drain(self, stream: trio.abc.Stream, reader: wire.PacketReader) -> None:
        """On a stop, wait (DRAIN_S at most) for the PUBACKs of the reports in flight: their cursor is
        then saved, and the next start does not send them again."""
        if not self.connected:
            return
        with trio.move_on_after(DRAIN_S):
            try:
                if self._out:
                    data, self._out = self._out, bytearray()
                    await stream.send_all(data)
                while any(seq is not None and seq >= 0 for seq, _ in self._mids.values()):
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    self._handle(reader.feed(data))
            except (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError,
                    OSError, wire.WireError):  # fmt: skip
                return

    async def _goodbye(self, stream: trio.abc.Stream) -> None:
        """On a clean stop, say ``offline`` ourselves: a clean DISCONNECT suppresses the last will."""
        try:
            if self.connected:
                offline = wire.publish(self.status_topic.encode(), b"offline", self._next_id(), retain=True)
                await stream.send_all(bytes(self._out) + offline + wire.DISCONNECT_PACKET)
            await stream.aclose()
        except (trio.BrokenResourceError, trio.BusyResourceError, trio.ClosedResourceError, OSError):
            await trio.aclose_forcefully(stream)

    async def _puback_watchdog(self) -> None:
        """Drop the connection once the oldest publish has waited ``puback_timeout_s`` for its PUBACK."""
        timeout = self.settings.puback_timeout_s
        while True:
            oldest = next(iter(self._mids.values()), None)
            if oldest is None:
                await trio.sleep(timeout)  # anything published from now on is due no sooner
                continue
            waited = time.monotonic() - oldest[1]
            if waited >= timeout:
                self.puback_timeouts += 1
                raise _Disconnected(
                    f"no PUBACK within puback_timeout_s ({timeout} s) for {len(self._mids)} publishes: "
                    "the broker stalled"
                )
            await trio.sleep(timeout - waited)

    def _topic(self, report: StoredReport) -> bytes:
        key = (report.device_id, topic_kind(report))
        topic = self._topics.get(key)
        if topic is None:
            if len(self._topics) >= TOPICS_KEPT:
                self._topics.clear()
            topic = self._topics[key] = topic_for(self.settings.topic_prefix, report).encode()
        return topic

    async def _pump(self) -> None:
        """Publish what the journal gets while the window has room (the reader refills it on PUBACKs)."""
        while True:
            if self._send_more():
                await trio.lowlevel.checkpoint()
            else:
                await self.delivery.wait_for_work()

    def _send_more(self) -> int:
        """Publish the reports the window has room for, in one write (full TCP segments). Returns how
        many were published."""
        reports = self.delivery.take()
        if not reports:
            return 0
        now = time.monotonic()
        publish, waiting_id, topic = wire.publish, self._waiting_id, self._topic
        packets = [
            publish(topic(report), payload_for(report), waiting_id(report.seq, now)) for report in reports
        ]
        self.stats.published += len(reports)
        self._reports_published += len(reports)
        self._write(b"".join(packets))
        return len(reports)

    # -- commands in ----------------------------------------------------------------------------

    def _command_received(self, message: wire.Message) -> None:
        """A PUBLISH from the broker: handed to :meth:`_take_commands`, which acknowledges each in the
        order they came, once queued or refused. While the sink stops it is left unacknowledged: the
        broker hands it over again at the next connection (the session is persistent)."""
        incoming = self._incoming
        if incoming is None:
            return
        try:
            incoming.send_nowait(message)
        except trio.WouldBlock:  # more than a broker's in-flight window: the sender floods
            device = self._command_device(message.topic)
            self._refuse(device, {}, f"{COMMANDS_WAITING} commands are waiting to be queued already")
            self._ack(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    def _ack(self, message: wire.Message) -> None:
        if message.packet_id is not None:
            self._write(wire.puback(message.packet_id))

    def _command_device(self, topic: str) -> str | None:
        prefix = self.settings.topic_prefix + "/"
        if not topic.startswith(prefix) or not topic.endswith("/command"):
            return None
        return unquote(topic[len(prefix) : -len("/command")])

    async def _take_commands(self, receive: trio.MemoryReceiveChannel[wire.Message]) -> None:
        """Check and queue each command received, then acknowledge it (PUBACK); refuse bad ones."""
        async for message in receive:
            refusal = await self._queue_command(message)
            if refusal is not None:
                self._refuse(self._command_device(message.topic), *refusal)
            self._ack(message)

    async def _queue_command(self, message: wire.Message) -> tuple[dict[str, Any], str] | None:
        """Queue ``message``'s command; what to refuse it with (its fields and the reason), if not."""
        topic, payload = message.topic, message.payload
        device = self._command_device(topic)
        fields: dict[str, Any] = {}
        if message.oversized:
            return fields, f"a command of {message.oversized} bytes (at most {wire.MAX_PACKET} are taken)"
        if message.retain:
            return fields, (
                "a retained command would run again at every connection: clear it (an empty retained"
                " message on its topic) and publish it without retain"
            )
        try:
            fields = parse_command_json(payload)
            if device is None:
                raise CommandRefused(f"topic {topic!r} is not <topic_prefix>/<device_id>/command")
            derived = fields.get("id") is None and message.packet_id is not None
            if derived:
                # The same delivery again (DUP, its PUBACK lost) must not be queued twice: an id
                # of the topic, payload and packet id makes it the same command.
                digest = hashlib.sha256(b"%s\0%s\0%d" % (topic.encode(), payload, message.packet_id))
                fields["id"] = "m" + digest.hexdigest()[:15]
            source, now = f"mqtt:{self.name}", datetime.now(UTC)
            commands = self.journal.commands
            try:
                command = commands.prepare(device, fields, source=source, now=now)
                items = self.journal.queue_command(command)
            except CommandIdUsed:
                if message.dup:  # taken before, its PUBACK lost with the connection: taken once
                    log_event(log, logging.INFO, "command_duplicate", sink=self.name, device=device,
                              id=fields.get("id"))  # fmt: skip
                    return None
                if not derived:
                    raise
                fields.pop("id")  # the same command sent again later: a new one
                command = commands.prepare(device, fields, source=source, now=now)
                items = self.journal.queue_command(command)
            await self.journal.append(items)
            self.commands_queued += 1
            log_event(log, logging.INFO, "command_queued", sink=self.name, device=device, id=command.id,
                      type=command.type.value, source=command.source)  # fmt: skip
        except CommandRefused as error:
            return fields, str(error)
        except JournalError as error:
            return fields, f"the relay could not store it: {error}"
        except Exception as error:  # a bug costs this command, never the sink: the broker would
            log.error("command_bug", exc_info=error)  # hand the same one over again, forever
            return fields, f"relay bug: {error!r}"
        return None

    def _refuse(self, device: str | None, fields: dict[str, Any], reason: str) -> None:
        """Publish why a command was refused on its device's result topic (QoS 1, not retained)."""
        self.commands_refused += 1
        self.journal.commands.refused("mqtt")
        log_event(log, logging.WARNING, "command_refused", sink=self.name, device=device, reason=reason)
        topic = f"{self.settings.topic_prefix}/{topic_segment(device)}/command/result"
        document = json.dumps(refusal_document(device, fields, reason), separators=(",", ":")).encode()
        packet_id = self._waiting_id(_OTHER)
        self._write(wire.publish(topic.encode(), document, packet_id))

    def _acknowledged(self, packet_id: int) -> None:
        published = self._mids.pop(packet_id, None)
        if published is None:
            return  # the offline status on the way out
        seq = published[0]
        if seq is _STATUS:
            self._status_acked = True
        elif seq != _OTHER:
            self._reports_acked += 1
            self._acks.append(seq)

    def _acknowledge_pending(self) -> None:
        """Hand the PUBACKs read to the delivery, all at once (one floor update, one wake-up)."""
        if self._acks:
            acks, self._acks = self._acks, []
            self.delivery.acknowledge(acks)
