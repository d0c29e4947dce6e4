"""Wiring: the journal, the port, the sinks and housekeeping in one nursery tree."""

from __future__ import annotations

import logging
import signal
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from functools import partial

import trio

import drivers

from ..config import Config, PassthroughSinkSettings, redact_url
from ..devices import Registry
from ..errors import JournalFilesChanged, RelayError
from ..journal import Journal, QuarantineLimits
from ..logs import log_event
from ..sinks import make_sink
from ..sources import Ingest, Listener
from . import _sdnotify as sdnotify
from ._running import SINK_LOOK_S, UPLINK_SAVE_S, Running

log = logging.getLogger("relay")

#: How often old and oversized data is pruned from the journal.
HOUSEKEEPING_S = 60.0
#: How often devices are checked for a silence past their offline limit.
SILENCE_LOOK_S = 1.0
#: How often an idle relay checks that its journal files are still there.
FILE_CHECK_S = 5.0
#: How often the command queue is looked at: rows from ``relay command``, expiries, answer deadlines.
COMMAND_LOOK_S = 1.0


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
    running: Running | None = None
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
            running.registry = Registry.from_config(config)
            ingest.registry = running.registry
            journal.devices.offline_after = running.registry.offline_after
            journal.commands.protocol_of = partial(device_protocol, running.registry, journal)
            if config.modem is not None:  # without a modem no device takes SMS
                journal.commands.phone_of = partial(device_phone, running.registry)
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
            running.restore_uplinks()
            nursery.start_soon(_housekeeping, running)
            nursery.start_soon(_watch_silence, running)
            nursery.start_soon(_watch_sinks, running)
            nursery.start_soon(_save_uplinks, running)
            nursery.start_soon(_watch_files, journal)
            nursery.start_soon(_watch_commands, journal)
            if config.status.listen:
                from ._status import serve_status

                try:
                    running.status_port = await nursery.start(serve_status, running, config.status.listen)
                except OSError as error:
                    raise RelayError(
                        f"cannot serve status on {config.status.listen}: {error.strerror or error}"
                    ) from error
            if config.modem is not None:
                from ..sources import ModemStatus, Outbox, ReplyTaps, send_sms_commands, serve_sms
                from ._control import serve_control

                running.modem_status = ModemStatus(config.modem.port)
                outbox, taps = Outbox(), ReplyTaps()
                nursery.start_soon(
                    serve_sms, config.modem, ingest, running.modem_status, running.registry, outbox, taps
                )
                nursery.start_soon(send_sms_commands, journal, outbox, running.registry)
                running.control_socket = await nursery.start(
                    serve_control, config, running.modem_status, outbox, taps, running.control_stats
                )
            for source in config.serial:
                from ..sources import serve_serial

                nursery.start_soon(serve_serial, source, listener)
            if interval := sdnotify.watchdog_interval():
                nursery.start_soon(_watchdog, interval)
            _log_started(running)
            sdnotify.ready()
            task_status.started(running)
    finally:
        if running is not None:
            _save_uplinks_at_stop(running)
        journal.close()


def _save_uplinks_at_stop(running: Running) -> None:
    try:
        running.journal.write_now(running.uplink_rows(stopping=True))
    except (RelayError, sqlite3.Error) as error:  # only what relay status shows of the uplink is lost
        log_event(log, logging.WARNING, "uplinks_not_saved", error=str(error))


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


async def _save_uplinks(running: Running) -> None:
    """Every UPLINK_SAVE_S, store the sinks' uplinks that changed (``relay status`` reads them)."""
    while True:
        await trio.sleep(UPLINK_SAVE_S)
        rows = running.uplink_rows()
        if rows:
            try:
                await running.journal.append(rows)
            except RelayError as error:
                log_event(log, logging.WARNING, "uplinks_not_saved", error=str(error))


async def _watch_silence(running: Running) -> None:
    """Every SILENCE_LOOK_S, each online device silent past its offline limit gets its deviceOffline
    (the journal's writer stores it only if nothing came from the device meanwhile)."""
    while True:
        await trio.sleep(SILENCE_LOOK_S)
        silences = list(running.journal.devices.silent(datetime.now(UTC)))
        if silences:
            try:
                await running.journal.append(silences)
            except RelayError as error:
                log_event(log, logging.WARNING, "offline_events_not_stored", error=str(error))
                continue
            for silence in silences:
                log_event(log, logging.INFO, "device_silent", device=silence.device_id)


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


def device_protocol(registry: Registry, journal: Journal, device_id: str) -> str | None:
    """The protocol a device speaks: as it last reported, else as ``[[devices]]`` says."""
    state = journal.devices.get(device_id)
    if state is not None:
        return state.protocol
    known = registry.get(device_id)
    return known.protocol if known is not None else None


def device_phone(registry: Registry, device_id: str) -> str | None:
    known = registry.get(device_id)
    return known.phone if known is not None else None


async def _watch_commands(journal: Journal) -> None:
    """Every COMMAND_LOOK_S, store what changed in the command queue (:meth:`Journal.command_changes`)."""
    while True:
        await trio.sleep(COMMAND_LOOK_S)
        items = journal.command_changes(datetime.now(UTC))
        if items:
            try:
                await journal.append(items)
            except RelayError as error:
                log_event(log, logging.WARNING, "command_changes_not_stored", error=str(error))


async def _watch_files(journal: Journal) -> None:
    """Notice a deleted or replaced journal file or WAL while idle too (commits check before each)."""
    while True:
        await trio.sleep(FILE_CHECK_S)
        try:
            journal.verify_files()
        except JournalFilesChanged as error:
            journal.reopen(str(error))


def _first_error(error: Exception) -> Exception:
    """The relay's own error a start-up failure carries inside task groups, else the first error."""
    while isinstance(error, ExceptionGroup):
        matched, _ = error.split(RelayError)
        error = (matched or error).exceptions[0]
    return error


async def _watchdog(interval: float) -> None:
    while True:
        sdnotify.watchdog_ping()
        await trio.sleep(interval / 2)


def reload_devices(running: Running) -> None:
    """SIGHUP: read the config file (and its devices file) again and take its registry and
    unknown-device policy; anything else that changed waits for a restart. A file with errors
    changes nothing: the error is logged, the devices in use stay."""
    from pathlib import Path

    from ..config import load
    from ..errors import ConfigError

    source = running.config.source
    if source == "<defaults>":
        log_event(log, logging.WARNING, "reload_skipped", reason="running on the embedded defaults")
        return
    try:
        config = load(Path(source))
    except ConfigError as error:
        log_event(log, logging.ERROR, "reload_failed", config=source, error=str(error),
                  kept=f"{len(running.registry)} devices")  # fmt: skip
        return
    running.registry.update(Registry.from_config(config))
    log_event(log, logging.INFO, "devices_reloaded", config=source, devices=len(running.registry),
              unknown_devices=config.unknown_devices.value)  # fmt: skip


class StartupFailed(RelayError):
    """The relay did not start; why is logged already (``event=startup_failed``)."""


def log_startup_failed(reason: str, error: BaseException | None = None) -> None:
    """The one logfmt line of a fatal start-up error: ``level=error event=startup_failed reason=…``
    (with the traceback when ``error`` is not one the relay raises on purpose: a bug)."""
    bug = error is not None and not isinstance(error, RelayError)
    exc_info = (type(error), error, error.__traceback__) if bug and error is not None else None
    log.error("startup_failed", extra={"fields": {"reason": reason}}, exc_info=exc_info)


async def main(config: Config) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly (sinks say ``offline``, cursors are saved).

    :raises StartupFailed: the relay could not start (the port is taken, the journal cannot be
        opened, …); the reason is logged.
    """
    async with trio.open_nursery() as nursery:
        try:
            running: Running = await nursery.start(serve, config)
        except Exception as error:
            cause = _first_error(error)
            log_startup_failed(str(cause) or type(cause).__name__, cause)
            raise StartupFailed(str(cause)) from error
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    reload_devices(running)
                    continue
                log_event(log, logging.INFO, "stopping", signal=signal.Signals(signum).name)
                sdnotify.notify("STOPPING=1")
                running.cancel_scope.cancel()
                nursery.cancel_scope.cancel()
                break
