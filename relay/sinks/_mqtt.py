"""The MQTT sink: every committed report published at QoS 1, in order per device, until PUBACKed.

paho-mqtt 2.x is driven from trio through its non-blocking socket API (``on_socket_open``,
``on_socket_register_write``, ``loop_read``/``loop_write``/``loop_misc`` with
``trio.lowlevel.wait_readable``): no hidden thread, cancellation works. Only the blocking DNS lookup
and TCP connect of ``connect()`` run in a worker thread.

Delivery (:mod:`relay.sinks._delivery`): reports are published in ``seq`` order with at most ``inflight``
awaiting their PUBACK; a report counts as delivered only once acknowledged. After a disconnect or a
crash the sink resumes from its durable position, so a report may be published twice (at least
once; receivers drop duplicates by ``id``), never lost. A new paho client is made for every
connection so nothing of an old session lingers.

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
required). Each is checked and queued in the journal before its PUBACK goes (manual acks), so a
command the broker was told is taken is durable; a bad one (not JSON, an unknown device, type or key,
wrong parameters, an id used before) gets its reason on ``<prefix>/<device_id>/command/result`` and
never stops the sink.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import paho.mqtt.client as paho
import trio
from paho.mqtt.enums import CallbackAPIVersion

from ..config import MqttSinkSettings
from ..errors import CommandRefused, JournalError, SinkError
from ..journal import (
    COMMAND_RESULT,
    Journal,
    StoredReport,
    parse_command_json,
    prepare_command,
    refusal_document,
)
from ..logs import log_event
from ._base import Sink
from ._retry import Uplink, backoff_delay, innermost

log = logging.getLogger("relay.mqtt")

#: How long the broker gets to answer CONNECT.
CONNECT_TIMEOUT_S = 15.0
#: paho's housekeeping (keepalive PINGREQ, retries) cadence.
MISC_INTERVAL_S = 1.0
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
        #: Per unacknowledged publish (by paho's mid): its report's seq (None: the status) and when
        #: it was published, oldest first.
        self._mids: dict[int, tuple[int | None, float]] = {}
        self._reports_published = 0
        self._reports_acked = 0
        self._status_acked = False
        #: Commands taken from the broker and refused (bad input), since start.
        self.commands_refused = 0
        self.commands_queued = 0
        self._incoming: trio.MemorySendChannel[tuple[int, int, str, bytes]] | None = None
        #: Seqs PUBACKed since paho last returned: acknowledged together, once per read.
        self._acks: list[int] = []
        #: Each (device, kind)'s topic, built once.
        self._topics: dict[tuple[str | None, str], str] = {}
        self.delivery.wake_on_part()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                await self._connection()
            except Exception as raised:
                error = innermost(raised)
                self.last_error = str(error) or type(error).__name__
                expected = isinstance(
                    error, (OSError, ssl.SSLError, _Disconnected, SinkError, trio.TooSlowError)
                )
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
        self._reports_published = self._reports_acked = 0
        self._status_acked = False
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            clean_session=True,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        client.max_inflight_messages_set(settings.inflight)
        client.will_set(self.status_topic, "offline", qos=1, retain=True)
        if settings.username is not None:
            client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            try:
                client.tls_set(ca_certs=settings.ca_file)
            except OSError as error:  # ssl.SSLError is an OSError
                raise SinkError(self.name, f"cannot use ca_file {settings.ca_file}: {error}") from None

        state = _ConnectionState()
        client.on_socket_open = state.socket_open
        client.on_socket_close = state.socket_close
        client.on_socket_register_write = state.register_write
        client.on_socket_unregister_write = state.unregister_write
        client.on_connect = state.connected
        client.on_disconnect = state.disconnected
        client.on_publish = lambda _c, _u, mid, _rc, _p: self._acknowledged(mid)
        client.on_message = lambda _c, _u, message: self._command_received(client, message)

        try:
            await trio.to_thread.run_sync(client.connect, settings.host, settings.port, settings.keepalive_s)
        except (OSError, ValueError) as error:
            # A TLS handshake that failed reached the broker: probing would only retry it at once.
            self._unreachable = not isinstance(error, ssl.SSLError)
            raise SinkError(
                self.name, f"cannot connect to {settings.host}:{settings.port}: {error}"
            ) from None
        sock = state.sock
        if sock is None:
            raise SinkError(self.name, "paho opened no socket")
        # Batches are corked into full segments (_send_more); Nagle would hold back each batch's
        # last, partial one until the broker acknowledged the one before: a round trip per batch.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state.in_trio = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, client, sock, state)
                nursery.start_soon(self._writer, client, sock, state)
                nursery.start_soon(self._misc, client)
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    await state.connack.wait()
                if state.refused is not None:
                    raise SinkError(self.name, f"broker refused the connection: {state.refused}")
                self.connected = True
                self.connects += 1
                self.last_error = None
                online = client.publish(self.status_topic, "online", qos=1, retain=True)
                self._mids[online.mid] = (None, time.monotonic())
                if settings.commands:
                    send, receive = trio.open_memory_channel[tuple[int, int, str, bytes]](COMMANDS_WAITING)
                    self._incoming = send
                    nursery.start_soon(self._take_commands, client, state, receive)
                    client.subscribe(f"{settings.topic_prefix}/+/command", qos=1)
                state.wake_writer()
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
                await self._pump(client, sock, state)
        finally:
            self._incoming = None  # nothing takes commands any more
            with trio.CancelScope(shield=True):
                with trio.move_on_after(DRAIN_S):
                    await self._drain(client, sock, state)
                with trio.move_on_after(2):
                    await self._goodbye(client, sock, state)

    async def _drain(self, client: paho.Client, sock: socket.socket, state: _ConnectionState) -> None:
        """On a stop, wait (DRAIN_S at most) for the PUBACKs of the reports in flight: their cursor is
        then saved, and the next start does not send them again."""
        if not self.connected:
            return
        pending = getattr(sock, "pending", lambda: 0)
        while not state.closed and any(seq is not None for seq, _ in self._mids.values()):
            if client.want_write():
                await trio.lowlevel.wait_writable(sock)
                code = client.loop_write()
            else:
                if not pending():
                    await trio.lowlevel.wait_readable(sock)
                code = client.loop_read()
            if code != paho.MQTT_ERR_SUCCESS:
                return

    async def _goodbye(self, client: paho.Client, sock: socket.socket, state: _ConnectionState) -> None:
        """On a clean stop, say ``offline`` ourselves: a clean DISCONNECT suppresses the last will."""
        if not self.connected or state.closed:
            if not state.closed:
                client.loop_write()
                sock.close()
            return
        client.publish(self.status_topic, "offline", qos=1, retain=True)
        client.disconnect()
        while client.want_write() and not state.closed:
            await trio.lowlevel.wait_writable(sock)
            client.loop_write()

    async def _reader(self, client: paho.Client, sock: socket.socket, state: _ConnectionState) -> None:
        # A TLS socket may hold decrypted bytes that no longer make the fd readable: drain them too.
        pending = getattr(sock, "pending", lambda: 0)
        while True:
            await trio.lowlevel.wait_readable(sock)
            code = client.loop_read()
            while code == paho.MQTT_ERR_SUCCESS and pending() > 0:
                code = client.loop_read()
            self._acknowledge_pending()
            if code != paho.MQTT_ERR_SUCCESS:
                raise _Disconnected(f"connection lost ({paho.error_string(code)})")
            # The PUBACKs freed part of the window: refill it from here, in the same step, rather than
            # by waking the pump (the drain is bound by these round trips, not by the CPU).
            if self.connected and self.delivery.work_ready():
                self._send_more(client, sock, state)

    async def _writer(self, client: paho.Client, sock: socket.socket, state: _ConnectionState) -> None:
        while True:
            if client.want_write():
                await trio.lowlevel.wait_writable(sock)
                code = client.loop_write()
                self._acknowledge_pending()  # QoS 0: "acknowledged" once written
                if code != paho.MQTT_ERR_SUCCESS:
                    raise _Disconnected(f"write failed ({paho.error_string(code)})")
            else:
                state.write_wanted = trio.Event()
                if not client.want_write():
                    await state.write_wanted.wait()

    async def _misc(self, client: paho.Client) -> None:
        while True:
            await trio.sleep(MISC_INTERVAL_S)
            code = client.loop_misc()
            if code != paho.MQTT_ERR_SUCCESS:
                raise _Disconnected(f"keepalive failed ({paho.error_string(code)})")

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

    def _topic(self, report: StoredReport) -> str:
        key = (report.device_id, topic_kind(report))
        topic = self._topics.get(key)
        if topic is None:
            if len(self._topics) >= TOPICS_KEPT:
                self._topics.clear()
            topic = self._topics[key] = topic_for(self.settings.topic_prefix, report)
        return topic

    async def _pump(self, client: paho.Client, sock: socket.socket, state: _ConnectionState) -> None:
        """Publish what the journal gets while the window has room (the reader refills it on PUBACKs)."""
        while True:
            if self._send_more(client, sock, state):
                await trio.lowlevel.checkpoint()
            else:
                await self.delivery.wait_for_work()

    def _send_more(self, client: paho.Client, sock: socket.socket, state: _ConnectionState) -> int:
        """Publish the reports the window has room for and write them at once, corked into as few
        TCP segments as they fit (what the socket cannot take now the writer task sends later).
        Returns how many were published.

        :raises _Disconnected: paho refused a publish or the write failed.
        """
        reports = self.delivery.take()
        if not reports:
            return 0
        qos = self.settings.qos
        publish = client.publish
        mids = self._mids
        now = time.monotonic()
        state.batching = True  # no writer wake-up per publish: written below
        try:
            with _corked(sock):
                for report in reports:
                    info = publish(self._topic(report), payload_for(report), qos=qos)
                    if info.rc != paho.MQTT_ERR_SUCCESS:
                        raise _Disconnected(f"publish failed ({paho.error_string(info.rc)})")
                    mids[info.mid] = (report.seq, now)
                    self.stats.published += 1
                    self._reports_published += 1
                code = client.loop_write()
        finally:
            state.batching = False
        self._acknowledge_pending()  # QoS 0: "acknowledged" once written
        if code != paho.MQTT_ERR_SUCCESS:
            raise _Disconnected(f"write failed ({paho.error_string(code)})")
        if client.want_write():
            state.wake_writer()
        return len(reports)

    # -- commands in ----------------------------------------------------------------------------

    def _command_received(self, client: paho.Client, message: paho.MQTTMessage) -> None:
        """paho's on_message (in the trio thread, inside loop_read): hand the command to
        :meth:`_take_commands`, which acknowledges it once queued."""
        item = (message.mid, message.qos, message.topic, bytes(message.payload))
        incoming = self._incoming
        try:
            if incoming is None:
                raise trio.ClosedResourceError
            incoming.send_nowait(item)
        except trio.WouldBlock:
            device = self._command_device(message.topic)
            self._refuse(client, device, {}, f"{COMMANDS_WAITING} commands are waiting to be queued already")
            client.ack(message.mid, message.qos)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            device = self._command_device(message.topic)
            self._refuse(client, device, {}, "the relay is stopping: send the command again once it is back")
            client.ack(message.mid, message.qos)

    def _command_device(self, topic: str) -> str | None:
        prefix = self.settings.topic_prefix + "/"
        if not topic.startswith(prefix) or not topic.endswith("/command"):
            return None
        return unquote(topic[len(prefix) : -len("/command")])

    async def _take_commands(
        self, client: paho.Client, state: _ConnectionState, receive: trio.MemoryReceiveChannel
    ) -> None:
        """Check and queue each command received, then acknowledge it (PUBACK); refuse bad ones."""
        async for mid, qos, topic, payload in receive:
            device = self._command_device(topic)
            fields: dict[str, Any] = {}
            try:
                fields = parse_command_json(payload)
                if device is None:
                    raise CommandRefused(f"topic {topic!r} is not <topic_prefix>/<device_id>/command")
                command = prepare_command(
                    device_id=device,
                    type=fields.get("type"),
                    params=fields.get("params"),
                    via=fields.get("via", "data"),
                    expires_s=fields.get("expires_s"),
                    id=fields.get("id"),
                    source=f"mqtt:{self.name}",
                    now=datetime.now(UTC),
                    protocol_of=self.journal.commands.protocol_of,
                    phone_of=self.journal.commands.phone_of,
                )
                await self.journal.append(self.journal.queue_command(command))
                self.commands_queued += 1
                log_event(log, logging.INFO, "command_queued", sink=self.name, device=device, id=command.id,
                          type=command.type.value, source=command.source)  # fmt: skip
            except CommandRefused as error:
                self._refuse(client, device, fields, str(error))
            except JournalError as error:
                self._refuse(client, device, fields, f"the relay could not store it: {error}")
            client.ack(mid, qos)
            state.wake_writer()

    def _refuse(self, client: paho.Client, device: str | None, fields: dict[str, Any], reason: str) -> None:
        """Publish why a command was refused on its device's result topic (QoS 1, not retained)."""
        self.commands_refused += 1
        self.journal.commands.refused("mqtt")
        log_event(log, logging.WARNING, "command_refused", sink=self.name, device=device, reason=reason)
        topic = f"{self.settings.topic_prefix}/{topic_segment(device)}/command/result"
        document = refusal_document(device, fields, reason)
        client.publish(topic, json.dumps(document, separators=(",", ":")), qos=1)

    def _acknowledged(self, mid: int) -> None:
        published = self._mids.pop(mid, None)
        if published is None:
            return  # the offline status on the way out
        seq = published[0]
        if seq is None:
            self._status_acked = True
        else:
            self._reports_acked += 1
            self._acks.append(seq)

    def _acknowledge_pending(self) -> None:
        """Hand the PUBACKs paho reported to the delivery, all at once (one floor update, one wake-up)."""
        if self._acks:
            acks, self._acks = self._acks, []
            self.delivery.acknowledge(acks)


@contextlib.contextmanager
def _corked(sock: socket.socket) -> Iterator[None]:
    """Hold back partial TCP segments inside the block (Linux ``TCP_CORK``; elsewhere nothing): a
    batch of publishes leaves as full segments when the block ends, not one segment each."""
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None:
        yield
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, cork, 0)


class _ConnectionState:
    """What paho's callbacks report about one connection. Some callbacks run in the connect thread."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.in_trio = False
        self.closed = False
        self.connack = trio.Event()
        self.refused: str | None = None
        self.write_wanted = trio.Event()
        #: While the sink publishes a batch it writes itself: paho's write requests need no writer.
        self.batching = False

    def socket_open(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self.sock = sock

    def socket_close(self, _client: paho.Client, _userdata: Any, sock: Any) -> None:
        self.closed = True
        # paho's __del__ may call this outside trio: only trio may be told.
        with contextlib.suppress(RuntimeError):
            trio.lowlevel.notify_closing(sock)

    def register_write(self, _client: paho.Client, _userdata: Any, _sock: Any) -> None:
        if self.in_trio and not self.batching:
            self.wake_writer()

    def unregister_write(self, _client: paho.Client, _userdata: Any, _sock: Any) -> None:
        pass

    def wake_writer(self) -> None:
        self.write_wanted.set()

    def connected(self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
        self.connack.set()

    def disconnected(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self.closed = True
