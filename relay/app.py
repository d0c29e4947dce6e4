"""Wiring: the journal, the port, the sinks and housekeeping in one nursery tree."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

import drivers

from . import sdnotify
from .config import Config, PassthroughSinkSettings, redact_url
from .errors import JournalFilesChanged, RelayError
from .journal import Journal, QuarantineLimits
from .listeners import Ingest, Listener
from .logs import log_event
from .sinks import Sink, make_sink

if TYPE_CHECKING:
    from .modem import ModemStatus
    from .status_http import StatusReader

log = logging.getLogger("relay")

#: How often old and oversized data is pruned from the journal.
HOUSEKEEPING_S = 60.0
#: How often each sink's progress is looked at for /healthz (and on every health check).
SINK_LOOK_S = 1.0


class SinkWatch:
    """How long a sink has been stuck: reports to deliver and none delivered between two looks, or
    disconnected with an error. Any delivery (or an empty backlog while connected) ends a stall."""

    def __init__(self) -> None:
        self.acknowledged = -1
        self.stuck_since: float | None = None

    def look(self, sink: Sink, now: float) -> float:
        """Look at ``sink`` at monotonic time ``now``; seconds it has been stuck (0.0: it is not)."""
        acknowledged = sink.acknowledged
        progressed, self.acknowledged = acknowledged != self.acknowledged, acknowledged
        down = not sink.connected and sink.last_error is not None
        if down or (sink.backlog() > 0 and not progressed):
            if self.stuck_since is None:
                self.stuck_since = now
            return now - self.stuck_since
        self.stuck_since = None
        return 0.0
#: How often an idle relay checks that its journal files are still there.
FILE_CHECK_S = 5.0


@dataclass
class Running:
    """A started relay, as the tests and the status page see it."""

    config: Config
    journal: Journal
    listener: Listener
    port: int
    sinks: list[Sink] = field(default_factory=list)
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    status_port: int | None = None
    #: The status endpoint's journal reader (``None`` without ``[status] listen``).
    status_reader: StatusReader | None = None
    #: True from the moment the port is bound until the listener stops.
    listening: bool = False
    sink_watches: dict[str, SinkWatch] = field(default_factory=dict)
    #: When the relay started (``time.monotonic()``), for its uptime.
    started_at: float = field(default_factory=time.monotonic)
    #: The modem's state, SIM and signal (``None`` until the SMS source starts, or without a modem).
    modem_status: ModemStatus | None = None

    def health(self) -> dict[str, Any]:
        """What /healthz answers: ``{"status": "ok" | "unhealthy", "checks": {...}}``.

        Unhealthy when the last journal commit failed, when the listener is not serving (or refuses new
        connections at its limit), or when a sink has been stuck longer than ``[status] sink_stall_s``.
        Each check says ``ok`` and, when not, its ``reason``.
        """
        journal = self.journal
        journal_check: dict[str, Any] = {
            "ok": journal.last_commit_error is None,
            "commits": journal.commits,
            "last_seq": journal.last_seq,
        }
        problems = journal.problems()
        if journal.last_commit_error is not None:
            problems.insert(0, f"journal cannot commit: {journal.last_commit_error}")
        if problems:
            journal_check["ok"] = False
            journal_check["reason"] = "; ".join(problems)
        stats, limit = self.listener.stats, self.config.listen.max_connections
        listener_check: dict[str, Any] = {
            "ok": self.listening and stats.connections_open < limit,
            "connections_open": stats.connections_open,
            "max_connections": limit,
        }
        if not self.listening:
            listener_check["reason"] = "the listener is not serving"
        elif stats.connections_open >= limit:
            listener_check["reason"] = f"at the connection limit ({limit}): new connections are refused"
        sinks = {sink.name: self._sink_check(sink, time.monotonic()) for sink in self.sinks}
        checks = {"journal": journal_check, "listener": listener_check, "sinks": sinks}
        ok = journal_check["ok"] and listener_check["ok"] and all(check["ok"] for check in sinks.values())
        return {"status": "ok" if ok else "unhealthy", "checks": checks}

    def _sink_check(self, sink: Sink, now: float) -> dict[str, Any]:
        stalled = self.look_at_sink(sink, now)
        pending = sink.backlog()
        check: dict[str, Any] = {
            "ok": stalled <= self.config.status.sink_stall_s,
            "connected": sink.connected,
            "pending": pending,
            "stalled_s": round(stalled, 1),
            "last_error": sink.last_error,
        }
        if not check["ok"]:
            if not sink.connected and sink.last_error is not None:
                check["reason"] = (
                    f"disconnected for {stalled:.0f} s with {pending} pending: {sink.last_error}"
                )
            else:
                check["reason"] = f"no delivery for {stalled:.0f} s with {pending} pending"
        return check

    def look_at_sink(self, sink: Sink, now: float) -> float:
        """Seconds ``sink`` has been stuck, as of monotonic ``now`` (see :class:`SinkWatch`)."""
        return self.sink_watches.setdefault(sink.name, SinkWatch()).look(sink, now)

    def health_problem(self) -> str | None:
        """Why the relay cannot do its job right now (every reason, joined), or ``None``."""
        checks = self.health()["checks"]
        every = (checks["journal"], checks["listener"], *checks["sinks"].values())
        reasons = [check["reason"] for check in every if "reason" in check]
        return "; ".join(reasons) or None

    def statistics(self) -> dict[str, Any]:
        stats = {key: value for key, value in vars(self.listener.stats).items() if isinstance(value, int)}
        stats.update(
            journal_commits=self.journal.commits,
            journal_reports=self.journal.committed_reports,
            journal_quarantined=self.journal.quarantined,
            journal_dropped=self.journal.dropped,
            journal_read_errors=self.journal.read_errors,
            journal_unreadable_reports=self.journal.unreadable_reports,
            journal_reopens=self.journal.reopens,
            journal_set_aside=int(self.journal.set_aside is not None),
        )
        for sink in self.sinks:
            stats[f"sink_{sink.name}_connected"] = sink.connected
            stats[f"sink_{sink.name}_published"] = sink.published
            stats[f"sink_{sink.name}_acknowledged"] = sink.acknowledged
            stats[f"sink_{sink.name}_backlog"] = sink.backlog()
            for counter in (
                "duplicates_possible",
                "dead_lettered",
                "skipped",
                "retries",
                "answers_cut",
                "deadlines",
                "puback_timeouts",
            ):
                value = getattr(sink, counter, None)
                if value is not None:
                    stats[f"sink_{sink.name}_{counter}"] = value
        return stats


def open_journal(config: Config) -> Journal:
    """The relay's journal, checked first (a damaged one is set aside), with its size cap."""
    journal = Journal.open(
        config.database,
        synchronous=config.journal.synchronous,
        max_batch=config.journal.max_batch,
        site=config.site,
        commit_interval_s=config.journal.commit_interval_ms / 1000,
        device_index=any(isinstance(sink, PassthroughSinkSettings) for sink in config.sinks),
        quarantine_limits=QuarantineLimits(
            total_bytes=config.journal.quarantine_max_mb * 1024 * 1024,
            peer_bytes=config.journal.quarantine_peer_max_kb * 1024,
            frame_bytes=config.journal.quarantine_frame_max_kb * 1024,
        ),
        max_devices=config.journal.max_devices,
        check_s=config.journal.startup_check_s or None,
    )
    journal.size_cap_bytes = config.journal.max_db_mb * 1024 * 1024
    return journal


async def serve(config: Config, *, task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
    """Run the relay until cancelled.

    ``task_status.started(Running)`` once the port is bound and the sinks are started.

    :raises RelayError: the journal cannot be opened or the port cannot be bound.
    """
    journal = open_journal(config)
    passthrough = any(isinstance(sink, PassthroughSinkSettings) for sink in config.sinks)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(journal.run)
            ingest = Ingest(
                journal,
                max_buffered_bytes=config.listen.max_buffered_mb * 1024 * 1024,
                keep_every_frame=passthrough,
            )
            listener = Listener(config.listen, ingest)
            running = Running(config, journal, listener, 0, cancel_scope=nursery.cancel_scope)
            try:
                running.port = await nursery.start(_listen, running)
            except OSError as error:
                raise RelayError(
                    f"cannot listen on {config.listen.host}:{config.listen.port}: {error.strerror or error}"
                ) from error
            running.listening = True
            for settings in config.sinks:
                sink = make_sink(settings, journal)
                running.sinks.append(sink)
                await nursery.start(sink.run)
            nursery.start_soon(_housekeeping, running)
            nursery.start_soon(_watch_sinks, running)
            nursery.start_soon(_watch_files, journal)
            if config.status.listen:
                from .status_http import serve_status

                try:
                    running.status_port = await nursery.start(serve_status, running, config.status.listen)
                except OSError as error:
                    raise RelayError(
                        f"cannot serve status on {config.status.listen}: {error.strerror or error}"
                    ) from error
            if config.modem is not None:
                from .modem import ModemStatus
                from .sms_source import serve_sms

                running.modem_status = ModemStatus(config.modem.port)
                nursery.start_soon(serve_sms, config.modem, ingest, running.modem_status)
            for source in config.serial:
                from .serial_source import serve_serial

                nursery.start_soon(serve_serial, source, listener)
            if interval := sdnotify.watchdog_interval():
                nursery.start_soon(_watchdog, interval)
            _log_started(running)
            sdnotify.ready()
            task_status.started(running)
    finally:
        journal.close()


def _log_started(running: Running) -> None:
    config = running.config
    listen = config.listen
    where = f"{listen.host}:{running.port}"
    log_event(
        log,
        logging.INFO,
        "listening",
        tcp=where if listen.tcp else "off",
        udp=where if listen.udp else "off",
        protocols=",".join(drivers.drivers()),
        journal=str(config.database),
    )
    if not config.sinks:
        log_event(
            log,
            logging.WARNING,
            "store_only",
            reason="no [[sinks]] configured: reports are kept in the journal and forwarded nowhere",
        )
    for sink in config.sinks:
        where = {
            key: getattr(sink, key) for key in ("url", "host", "port", "topic_prefix") if hasattr(sink, key)
        }
        if "url" in where:
            where["url"] = redact_url(where["url"])
        log_event(log, logging.INFO, "forwarding", sink=sink.name, type=sink.type, **where)
    if config.modem is not None:
        log_event(log, logging.INFO, "sms_source", port=config.modem.port, senders=len(config.modem.senders))
    for source in config.serial:
        log_event(log, logging.INFO, "serial_source", port=source.port, protocol=source.protocol)


async def _listen(running: Running, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    try:
        await running.listener.serve(task_status=task_status)
    finally:
        running.listening = False


async def _watch_sinks(running: Running) -> None:
    """Look at every sink each SINK_LOOK_S, so a stall is timed from when it began, not from a check."""
    while True:
        now = time.monotonic()
        for sink in running.sinks:
            running.look_at_sink(sink, now)
        await trio.sleep(SINK_LOOK_S)


async def _housekeeping(running: Running) -> None:
    """Prune every HOUSEKEEPING_S, and at once when the disk fills up or the journal outgrows its cap."""
    config = running.config
    while True:
        with trio.move_on_after(HOUSEKEEPING_S):
            await running.journal.wait_cleanup_wanted()
        delivered = min((sink.floor for sink in running.sinks), default=running.journal.last_seq)
        try:
            removed = await trio.to_thread.run_sync(
                partial(
                    running.journal.prune,
                    delivered_up_to=delivered,
                    retention=timedelta(days=config.journal.retention_days),
                    max_bytes=config.journal.max_db_mb * 1024 * 1024,
                    now=datetime.now(UTC),
                )
            )
        except Exception as error:  # a full disk must not stop the relay; try again next round
            log_event(log, logging.ERROR, "housekeeping_failed", error=str(error))
            continue
        if any(removed.values()):
            log_event(log, logging.INFO, "journal_pruned", **removed)


async def _watch_files(journal: Journal) -> None:
    """Notice a deleted or replaced journal file or WAL while idle too (commits check before each)."""
    while True:
        await trio.sleep(FILE_CHECK_S)
        try:
            journal.verify_files()
        except JournalFilesChanged as error:
            journal.reopen(str(error))


async def _watchdog(interval: float) -> None:
    while True:
        sdnotify.watchdog_ping()
        await trio.sleep(interval / 2)


async def main(config: Config) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly (sinks say ``offline``, cursors are saved)."""
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(serve, config)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log_event(log, logging.INFO, "stopping", signal=signal.Signals(signum).name)
                sdnotify.notify("STOPPING=1")
                running.cancel_scope.cancel()
                nursery.cancel_scope.cancel()
                break
