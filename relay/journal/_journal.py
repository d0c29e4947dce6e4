"""The SQLite journal: every report durable before its device is answered.

One writer task owns the write connection and commits in groups: whatever reports arrived while the
previous commit was running go into the next transaction, so thousands of reports share one fsync
(``synchronous=FULL``, WAL). :meth:`Journal.append` returns only once its entries are committed;
that is the moment the relay may acknowledge the device.

The Journal class is put together from its parts: :mod:`._reads` (what sinks read), :mod:`._dead_letters`,
:mod:`._cleanup` (retention, size cap, full disk); the tables are in :mod:`._schema`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from drivers import format_time

from ..errors import CommandIdUsed, JournalError, JournalFilesChanged
from ..logs import log_event
from ._cleanup import Cleanup
from ._commands import (
    CommandChange,
    Commands,
    QueuedCommand,
    cancel_command,
    insert_command,
    write_changes,
)
from ._dead_letters import DeadLetters
from ._devices import ROW_INTERVAL_S, UPSERT, Changes, LiveDevices
from ._quarantine import QuarantineBudget, QuarantineLimits
from ._reader import JournalReader
from ._reads import Reads
from ._records import CursorUpdate, Entry, Item, MetaValue, Quarantined, Released, Silence
from ._schema import migrate
from ._sqlite import (
    connect_reader,
    connect_writer,
    fsync_directory,
    is_disk_full,
    private_files,
    transaction,
)
from ._statistics import JournalStatistics
from ._storage import SetAside, check_journal, companions, file_id, set_aside, stamp

log = logging.getLogger("relay.journal")

#: The index of reports by device, kept only while a per-device reader needs it.
DEVICE_INDEX = "idx_reports_device_id_seq"
#: How stale a known device's row in the ``devices`` table may get (``relay status``; memory is exact).
DEVICE_ROW_INTERVAL_S = ROW_INTERVAL_S
#: With a commit interval, a group commit goes early once it holds this many items.
COMMIT_EARLY_ITEMS = 128
#: The size cap is checked after this many reports were committed, not only by the housekeeping timer.
SIZE_CHECK_REPORTS = 2000
_DEFAULT_LIMITS = QuarantineLimits()


#: What a group commit takes: reports and the rest (:data:`Item`), and command rows.
Writable = Item | CommandChange


@dataclass(eq=False)
class _Ticket:
    items: Sequence[Writable]
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None


class Journal(Reads, DeadLetters, Cleanup):
    """The durable store. Create with :meth:`open`, run :meth:`run` in a nursery, then append."""

    def __init__(
        self,
        path: Path,
        connection: sqlite3.Connection,
        *,
        max_batch: int = 2000,
        site: str = "relay",
        quarantine_limits: QuarantineLimits = _DEFAULT_LIMITS,
        max_devices: int = 20_000,
        synchronous: str = "full",
    ) -> None:
        self.path = path
        self.site = site
        self.max_batch = max_batch
        self.synchronous = synchronous
        self._db = connection
        # Reads use their own connection: in WAL mode it sees only committed rows, never the
        # writer's open transaction.
        self._reader = connect_reader(path)
        #: (device, inode) of the journal, its WAL and its shared memory when they were opened: a file
        #: deleted or replaced under the running relay is noticed before the next commit.
        self._file_ids = [file_id(file) for file in companions(path)]
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self.max_devices = max_devices
        #: Each device's live state, exact; its row written on a timer and at close (bounded by
        #: ``max_devices``: random ids from a flood are forgotten, not kept forever).
        self.devices = LiveDevices(max_devices)
        self.devices.load(self._reader)
        #: Every unfinished command (the queue; its rows in ``commands``). Its start-up changes (a
        #: command sent before a restart failed, rows queued from outside) are written by :meth:`run`.
        self.commands = Commands()
        self._command_items = self.commands.load(self._reader, datetime.now(UTC))
        self._command_reader: sqlite3.Connection | None = None
        #: What the journal counted since start (``/metrics``).
        self.stats = JournalStatistics()
        self.quarantine_budget = QuarantineBudget(quarantine_limits, self._quarantine_usage(), self.stats)
        self.journal_id = self._meta("journal_id")
        self.last_seq = self._reader.execute("SELECT coalesce(max(seq), 0) FROM reports").fetchone()[0]
        self._send, self._receive = trio.open_memory_channel[_Ticket](10_000)
        self._appended = trio.Event()
        #: The least time between two group commits (0: commit as soon as something is queued).
        self.commit_interval_s = 0.0
        #: Why the last commit failed; ``None`` once a commit succeeds again.
        self.last_commit_error: str | None = None
        #: The damaged journal this one replaced at start, if any (see :meth:`problems`).
        self.set_aside: SetAside | None = None
        #: The start-up check ran out of time before it read the whole file.
        self.check_incomplete = False
        #: Reports that could not be read (a damaged page, an I/O error), as merged ``[first, last]``
        #: seq ranges: readers skip them (counted in :attr:`stats`).
        self.unreadable: list[list[int]] = []
        self._examined: tuple[int, int] | None = None
        #: When the journal was last reopened (its file or WAL was deleted or replaced).
        self.last_reopen: str | None = None
        #: The size cap the writer checks every SIZE_CHECK_REPORTS reports (``None``: not checked).
        self.size_cap_bytes: int | None = None
        self._size_checked_at = 0
        #: Set when the disk filled up or the journal went over its cap: the cleanup should run now.
        self.cleanup_wanted = trio.Event()
        #: The journal's size when a commit last failed for a full disk (``None``: not full).
        self.full_at_bytes: int | None = None
        #: Running time, the clock retention counts in (``monotonic`` is replaceable for tests).
        self.monotonic: Callable[[], float] = time.monotonic
        self._opened_at = self.monotonic()
        self._elapsed_before, self._expiry_marks = self._load_expiry_marks()

    @property
    def last_seq(self) -> int:
        """The newest committed report's seq."""
        return self.stats.last_seq

    @last_seq.setter
    def last_seq(self, seq: int) -> None:
        self.stats.last_seq = seq

    def problems(self) -> list[str]:
        """What is wrong with the journal now, one sentence each (empty when nothing is): for /healthz
        and ``relay status``. A failing commit is :attr:`last_commit_error`."""
        found = []
        if self.set_aside is not None:
            found.append(str(self.set_aside))
        if self.unreadable:
            ranges = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.unreadable[:10])
            found.append(
                f"{self.stats.unreadable_reports} report(s) could not be read (seq {ranges}) and were"
                " skipped; the journal is damaged: restart the relay to check it and set it aside"
            )
        if self.full_at_bytes is not None:
            found.append(f"the disk is full (journal {self.full_at_bytes // 1024} KiB): cleaning up")
        return found

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        synchronous: str = "full",
        max_batch: int = 2000,
        site: str = "relay",
        commit_interval_s: float = 0.0,
        device_index: bool | None = None,
        quarantine_limits: QuarantineLimits = _DEFAULT_LIMITS,
        max_devices: int = 20_000,
        check_s: float | None = None,
    ) -> Journal:
        """Open (creating and migrating as needed) the journal at ``path``.

        :param commit_interval_s: the least time between two group commits (see :meth:`run`).
        :param device_index: keep an index of reports by device (only per-device readers, the
            passthrough sink, need it; every report written updates it, which costs SD-card writes).
            ``None`` leaves it as it is.
        :param check_s: check the journal first (``PRAGMA quick_check``, for at most this many
            seconds); a damaged one is set aside (:func:`set_aside`, :attr:`set_aside`) and a fresh
            one started. ``None``: no check (maintenance commands, which must not move the file).

        Directories and files the journal creates are private to the relay's user (0700, 0600).

        :raises JournalError: the directory cannot be created or written, or the file is not a
            usable SQLite database. The message names the path and the cause.
        """
        path = Path(path)
        aside: SetAside | None = None
        incomplete = False
        try:
            with private_files():
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                if check_s is not None:
                    damage, complete = check_journal(path, check_s)
                    incomplete = not complete
                    if damage is not None:
                        now = datetime.now(UTC)
                        aside = SetAside(set_aside(path, now), damage, format_time(now))
                connection = connect_writer(path, synchronous)
                migrate(connection)
                if device_index is True:
                    connection.execute(
                        f"CREATE INDEX IF NOT EXISTS {DEVICE_INDEX} ON reports (device_id, seq)"
                    )
                elif device_index is False:
                    connection.execute(f"DROP INDEX IF EXISTS {DEVICE_INDEX}")
                journal = cls(
                    path,
                    connection,
                    max_batch=max_batch,
                    site=site,
                    quarantine_limits=quarantine_limits,
                    max_devices=max_devices,
                    synchronous=synchronous,
                )
        except (OSError, sqlite3.Error) as error:
            raise JournalError(f"cannot open journal {path}: {error}") from error
        journal.commit_interval_s = commit_interval_s
        journal.restore_reserve()
        journal.set_aside = aside
        journal.check_incomplete = incomplete
        if aside is not None:
            log_event(
                log,
                logging.ERROR,
                "journal_damaged_set_aside",
                path=str(path),
                set_aside=str(aside.path),
                damage=aside.damage,
                hint=f"a fresh journal was started; recover with: relay salvage {aside.path}",
            )
        if incomplete:
            log_event(log, logging.WARNING, "journal_check_incomplete", path=str(path), limit_s=check_s)
        return journal

    @staticmethod
    def open_read_only(path: str | Path) -> JournalReader:
        """The journal at ``path`` opened read-only, for a running or a stopped relay's status and dead
        letters (``relay status``, the status page); nothing is created, written or migrated.

        :raises JournalError: no journal at ``path``, or it cannot be opened.
        """
        return JournalReader.open(path)

    def close(self) -> None:
        """Write every device row still behind its state, then close."""
        with self._lock:
            try:
                rows = self.devices.pending_rows()
                if rows:
                    with transaction(self._db):
                        self._db.executemany(UPSERT, rows)
                    self.devices.written_all()
            except sqlite3.Error as error:  # the reports are stored; only "last seen" lags
                log_event(log, logging.WARNING, "device_rows_not_written", error=str(error))
            self._reader.close()
            if self._command_reader is not None:
                self._command_reader.close()
                self._command_reader = None
            self._db.close()

    def queue_command(self, command: QueuedCommand) -> list[Writable]:
        """Queue a command :func:`prepare_command` made; append what this returns to store it.

        :raises CommandRefused: its id was used before (a command id is never reused, so a command
            delivered twice, as MQTT QoS 1 may, is queued once), or its device has too many waiting.
        """
        if self._command_reader is None:
            self._command_reader = connect_reader(self.path)
        used = self._command_reader.execute("SELECT 1 FROM commands WHERE id = ?", (command.id,)).fetchone()
        if used is not None or self.commands.get(command.id) is not None:
            raise CommandIdUsed(f"command id {command.id!r} was used already")
        return list(self.commands.submit(command))

    def insert_command(self, command: QueuedCommand) -> None:
        """Queue ``command`` from outside the running relay (``relay command send``): its row only; the
        running relay (or the next one to start) picks it up, stores its ``queued`` report and sends it.

        :raises CommandRefused: its id is taken.
        """
        with self._lock:
            insert_command(self._db, command)

    def cancel_command(self, command_id: str, now: datetime) -> None:
        """Cancel a queued command from outside the running relay (``relay command cancel``).

        :raises CommandRefused: no such command, or it is no longer queued.
        """
        with self._lock:
            cancel_command(self._db, command_id, now)

    def command_changes(self, now: datetime) -> list[Writable]:
        """What changed in the command queue since the last look (to append): rows another process
        wrote (``relay command``), commands past their expiry or their answer's deadline. One indexed
        query on a connection of its own: cheap every second."""
        if self._command_reader is None:
            self._command_reader = connect_reader(self.path)
        try:
            polled: list[Writable] = list(self.commands.poll(self._command_reader, now))
        except sqlite3.Error as error:
            log_event(log, logging.WARNING, "commands_not_read", error=str(error))
            polled = []
        return polled + self.commands.due(now)

    def meta(self, key: str) -> str:
        """The ``meta`` row ``key`` as last committed (``""``: none)."""
        return self._meta(key)

    def on_append(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (in the trio thread) after every commit that added reports."""
        self._listeners.append(callback)

    # -- writing ------------------------------------------------------------------------------

    async def append(self, items: Sequence[Writable]) -> None:
        """Store ``items`` and return once they are committed (fsynced with ``synchronous=FULL``).

        Calls are committed in the order they were made.

        :raises JournalError: the commit failed (disk full, I/O error); nothing of ``items`` is stored.
        """
        await self.wait_committed(await self.submit(items))

    async def submit(self, items: Sequence[Writable]) -> _Ticket:
        """Queue ``items`` for the next group commit (in call order) and return a ticket to wait on.

        Quarantine rows over their budget (:class:`QuarantineBudget`) are left out, and counted, once.
        With room in the queue this returns without a task switch."""
        ticket = _Ticket(self._within_budget(items))
        try:
            self._send.send_nowait(ticket)
        except trio.WouldBlock:
            await self._send.send(ticket)
        return ticket

    def _within_budget(self, items: Sequence[Writable]) -> Sequence[Writable]:
        if not any(type(item) is Quarantined for item in items):
            return items
        kept: list[Writable] = []
        for item in items:
            if type(item) is Quarantined:
                admitted = self.quarantine_budget.admit(item)
                if admitted is None:
                    continue
                item = admitted
            kept.append(item)
        return kept

    @staticmethod
    async def wait_committed(ticket: _Ticket) -> None:
        await ticket.done.wait()
        if ticket.error is not None:
            raise JournalError(f"commit failed: {ticket.error}") from ticket.error

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer: commit queued tickets in groups, forever."""
        task_status.started()
        last_commit = -math.inf
        if self._command_items:
            startup, self._command_items = _Ticket(self._command_items), []
            await self._commit([startup])
        async with self._receive:
            while True:
                # Pending device rows are written when due even if nothing else comes.
                first: _Ticket | None = None
                with trio.move_on_at(self._device_rows_due()):
                    first = await self._receive.receive()
                if first is None:
                    await self._commit([])
                    continue
                batch = [first]
                size = len(batch[0].items)
                # Commits are spaced by commit_interval_s (fewer fsyncs and page rewrites on an SD
                # card); under load a batch that is already large enough goes at once.
                deadline = last_commit + self.commit_interval_s
                while size < self.max_batch:
                    try:
                        ticket = self._receive.receive_nowait()
                    except trio.WouldBlock:
                        if size >= COMMIT_EARLY_ITEMS or trio.current_time() >= deadline:
                            break
                        waited: _Ticket | None = None
                        with trio.move_on_at(deadline):
                            waited = await self._receive.receive()
                        if waited is None:
                            break
                        ticket = waited
                    batch.append(ticket)
                    size += len(ticket.items)
                await self._commit(batch)
                last_commit = trio.current_time()

    def _device_rows_due(self) -> float:
        """The trio time the pending device rows are due at (inf: none pending)."""
        due = self.devices.next_due()
        return math.inf if due is None else trio.current_time() + max(0.0, due - time.monotonic())

    async def _commit(self, batch: list[_Ticket]) -> None:
        items = [item for ticket in batch for item in ticket.items]
        started = time.monotonic()
        try:
            last_seq, reports, quarantined = await trio.to_thread.run_sync(self._write, items)
        except (sqlite3.Error, JournalFilesChanged) as error:
            self.stats.commit_failures += 1
            self.last_commit_error = str(error)
            log_event(log, logging.ERROR, "journal_commit_failed", error=str(error), items=len(items))
            for ticket in batch:
                ticket.error = error
                ticket.done.set()
            if isinstance(error, JournalFilesChanged):
                self.reopen(str(error))
            elif is_disk_full(error):
                self.full_at_bytes = self.file_bytes()
                self.cleanup_wanted.set()
            return
        self.stats.commit_time.observe(time.monotonic() - started)
        self.stats.commits += 1
        self.last_commit_error = None
        # full_at_bytes stays until the cleanup has run: a small commit that still fits must not
        # turn the full-disk cleanup into an ordinary one that frees nothing.
        if (
            self.size_cap_bytes is not None
            and self.stats.committed_reports + reports - self._size_checked_at >= SIZE_CHECK_REPORTS
        ):
            self._size_checked_at = self.stats.committed_reports + reports
            if self.file_bytes() > self.size_cap_bytes:
                self.cleanup_wanted.set()
        self.stats.committed_reports += reports
        self.stats.quarantined += quarantined
        for ticket in batch:
            ticket.done.set()
        if last_seq > self.last_seq:
            self.last_seq = last_seq
            self._appended.set()
            self._appended = trio.Event()
            for callback in self._listeners:
                callback()

    def _write(self, items: Sequence[Writable]) -> tuple[int, int, int]:
        entries = [item for item in items if isinstance(item, Entry)]
        quarantined = [item for item in items if isinstance(item, Quarantined)]
        cursors = [item for item in items if isinstance(item, CursorUpdate)]
        released = [item.quarantine_id for item in items if isinstance(item, Released)]
        silences = [item for item in items if isinstance(item, Silence)]
        commands = [item for item in items if isinstance(item, CommandChange)]
        metas = [item for item in items if isinstance(item, MetaValue)]
        with self._lock:
            return self._write_locked(entries, quarantined, cursors, released, silences, commands, metas)

    def _write_locked(
        self,
        entries: list[Entry],
        quarantined: list[Quarantined],
        cursors: list[CursorUpdate],
        released: list[int],
        silences: Sequence[Silence] = (),
        commands: Sequence[CommandChange] = (),
        metas: Sequence[MetaValue] = (),
    ) -> tuple[int, int, int]:
        db = self._db
        self.verify_files()
        entries = self.devices.derive(entries, silences)
        changes = Changes()
        ticks = time.monotonic()
        with transaction(db):
            last_seq = self.last_seq
            if entries:
                db.executemany(
                    "INSERT INTO reports (device_id, protocol, transport, peer, received_at, event, time,"
                    " payload, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [_report_row(entry) for entry in entries],
                )
                last_seq = db.execute("SELECT last_insert_rowid()").fetchone()[0]
                first_seq = last_seq - len(entries) + 1
                media = [
                    (
                        first_seq + index,
                        entry.report.media_type or "application/octet-stream",
                        entry.report.media,
                    )
                    for index, entry in enumerate(entries)
                    if entry.report.media is not None
                ]
                if media:
                    db.executemany("INSERT INTO media (seq, type, data) VALUES (?, ?, ?)", media)
                changes = self.devices.changes(entries, first_seq)
            device_rows, flushed = self.devices.rows_due(changes, ticks)
            db.executemany(UPSERT, device_rows)
            if quarantined:
                db.executemany(
                    "INSERT INTO quarantine (received_at, peer, transport, protocol, reason, raw)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (format_time(q.received_at), q.peer, q.transport, q.protocol, q.reason, q.raw)
                        for q in quarantined
                    ],
                )
            if released:
                db.executemany("DELETE FROM quarantine WHERE id = ?", [(id_,) for id_ in released])
            if commands:
                write_changes(db, commands)
            if metas:
                rows = [(meta.key, meta.value) for meta in metas]
                db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)
            now = format_time(datetime.now(UTC))
            for update in cursors:
                db.execute(
                    "INSERT INTO sinks (name, floor_seq, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT(name) DO UPDATE SET floor_seq = excluded.floor_seq,"
                    " updated_at = excluded.updated_at",
                    (update.sink, update.floor, now),
                )
                db.executemany(
                    "INSERT OR REPLACE INTO cursors (sink, device_id, seq) VALUES (?, ?, ?)",
                    [(update.sink, device, seq) for device, seq in update.devices.items()],
                )
        forgotten = self.devices.forgotten
        self.devices.apply(changes, flushed, ticks)
        self.stats.devices_forgotten += self.devices.forgotten - forgotten
        return last_seq, len(entries), len(quarantined)

    def insert_salvaged(
        self, rows: Sequence[tuple[Any, ...]], photos: Mapping[int, tuple[str, bytes]]
    ) -> None:
        """Store reports read from a damaged journal (:func:`salvage`) as new reports, in one commit."""
        with self._lock, transaction(self._db):
            for seq, *columns in rows:
                cursor = self._db.execute(
                    "INSERT INTO reports (device_id, protocol, transport, peer, received_at, event, time,"
                    " payload, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    columns,
                )
                if seq in photos:
                    self._db.execute(
                        "INSERT INTO media (seq, type, data) VALUES (?, ?, ?)",
                        (cursor.lastrowid, *photos[seq]),
                    )
            self.last_seq = self._db.execute("SELECT coalesce(max(seq), 0) FROM reports").fetchone()[0]

    def verify_files(self) -> None:
        """Check that the journal, its WAL and its shared memory are still the files the relay opened
        (two ``stat`` calls, before every commit). A commit into a deleted file would be acknowledged
        and then lost.

        :raises JournalFilesChanged: one was deleted or replaced; :meth:`reopen` the journal.
        """
        for file, opened in zip(companions(self.path), self._file_ids, strict=True):
            if opened is not None and file_id(file) != opened:
                what = "deleted" if not file.exists() else "replaced"
                raise JournalFilesChanged(f"{file} was {what} while the relay had it open")

    def reopen(self, reason: str) -> None:
        """Open the journal again after its file or WAL was deleted or replaced, keeping everything
        committed so far: a deleted WAL is first checkpointed into the journal (through the still-open
        file); a deleted or replaced journal is first copied (SQLite's backup, from the open file) to
        its path, a replacement being set aside as ``<name>.replaced-<time>``.

        Runs on the trio thread: no reader may use the connections while they are swapped.
        """
        with self._lock, private_files():
            old_db, old_reader = self._db, self._reader
            main_kept = file_id(self.path) == self._file_ids[0]
            copy = self.path.with_name(self.path.name + ".reopen")
            try:
                if main_kept:
                    busy = old_db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                    main_kept = not busy
                if not main_kept:
                    copy.unlink(missing_ok=True)
                    target = sqlite3.connect(copy)
                    try:
                        old_db.backup(target)
                    finally:
                        target.close()
            except sqlite3.Error as error:
                log_event(log, logging.ERROR, "journal_reopen_failed", reason=reason, error=str(error))
                self.last_commit_error = f"{reason}; cannot reopen: {error}"
                return
            old_reader.close()
            if self._command_reader is not None:
                self._command_reader.close()
                self._command_reader = None
            old_db.close()  # the last connection: removes the WAL and shared memory at the path
            if not main_kept:
                if self.path.exists():
                    when = stamp(datetime.now(UTC))
                    set_aside_as = self.path.with_name(f"{self.path.name}.replaced-{when}")
                    pairs = zip(companions(self.path), companions(set_aside_as), strict=True)
                    for source, target_path in pairs:
                        if source.exists():
                            os.replace(source, target_path)
                else:
                    for stray in companions(self.path)[1:]:
                        stray.unlink(missing_ok=True)
                os.replace(copy, self.path)
                fsync_directory(self.path.parent)
            self._db = connect_writer(self.path, self.synchronous)
            self._reader = connect_reader(self.path)
            self._file_ids = [file_id(file) for file in companions(self.path)]
        self.stats.reopens += 1
        self.last_reopen = format_time(datetime.now(UTC))
        log_event(
            log,
            logging.ERROR,
            "journal_reopened",
            path=str(self.path),
            reason=reason,
            copied=not main_kept,
            hint="commits were refused until the journal was reopened; nothing committed was lost",
        )

    def write_now(self, items: Sequence[Writable]) -> None:
        """Commit ``items`` on the calling thread, bypassing the writer task (shutdown paths, when the
        writer may already be cancelled; maintenance commands). Blocks for one commit. A full disk
        is noted as the writer notes it, so the cleanup runs next."""
        try:
            last_seq, _, _ = self._write(self._within_budget(items))
        except sqlite3.Error as error:
            if is_disk_full(error):
                self.full_at_bytes = self.file_bytes()
                with contextlib.suppress(RuntimeError):  # outside trio (shutdown): nobody to wake
                    trio.lowlevel.current_task()
                    self.cleanup_wanted.set()
            raise
        self.last_seq = max(self.last_seq, last_seq)



def _report_row(entry: Entry) -> tuple[Any, ...]:
    report = entry.report
    document = report.to_json()
    document["transport"] = entry.transport
    return (
        report.device_id,
        report.protocol,
        entry.transport,
        entry.peer,
        format_time(entry.received_at),
        report.event,
        document["time"],
        json.dumps(document, separators=(",", ":"), default=str),
        entry.raw,
    )
