"""The SQLite journal: every report durable before its device is answered.

One writer task owns the write connection and commits in groups: whatever reports arrived while the
previous commit was running go into the next transaction, so thousands of reports share one fsync
(``synchronous=FULL``, WAL). :meth:`Journal.append` returns only once its entries are committed;
that is the moment the relay may acknowledge the device.

Tables: ``reports`` (the normalized report, its raw frame, a monotonic ``seq``), ``media`` (photos),
``quarantine`` (bytes no driver could use, with peer and reason), ``devices`` (last seen),
``sinks``/``cursors`` (each sink's delivered position, per device). The schema is created and
migrated with sqlite-utils migrations; ``PRAGMA user_version`` holds the schema version.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from drivers import Report, format_time

from .buckets import COMMIT_BOUNDS_S, Buckets
from .errors import JournalError
from .logs import log_event

log = logging.getLogger("relay.journal")

migrations = Migrations("relay")
#: The index of reports by device, kept only while a per-device reader needs it.
DEVICE_INDEX = "idx_reports_device_id_seq"
#: How stale a known device's "last seen" in the ``devices`` table may get (``relay status``).
DEVICE_ROW_INTERVAL_S = 10.0
#: With a commit interval, a group commit goes early once it holds this many items.
COMMIT_EARLY_ITEMS = 128
#: How long a write waits for another process's transaction before failing.
BUSY_TIMEOUT_MS = 10_000


@migrations(name="0001_initial")
def _initial(db: Database) -> None:
    # AUTOINCREMENT: a seq is never reused, even after the newest rows are deleted, so report ids
    # and sink cursors stay valid forever.
    db.execute(
        """CREATE TABLE reports (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            device_id TEXT,
            protocol TEXT NOT NULL,
            transport TEXT NOT NULL,
            peer TEXT,
            received_at TEXT NOT NULL,
            event TEXT NOT NULL,
            time TEXT,
            payload TEXT NOT NULL,
            raw BLOB
        )"""
    )
    db["reports"].create_index(["device_id", "seq"])  # since 0004 kept only when needed (Journal.open)
    db["media"].create({"seq": int, "type": str, "data": bytes}, pk="seq")
    db["quarantine"].create(
        {
            "id": int,
            "received_at": str,
            "peer": str,
            "transport": str,
            "protocol": str,
            "reason": str,
            "raw": bytes,
        },
        pk="id",
    )
    db["devices"].create(
        {
            "device_id": str,
            "protocol": str,
            "transport": str,
            "peer": str,
            "first_seen": str,
            "last_seen": str,
            "last_seq": int,
            "last_time": str,
            "last_lat": float,
            "last_lon": float,
        },
        pk="device_id",
    )
    db["sinks"].create({"name": str, "floor_seq": int, "updated_at": str}, pk="name")
    db["cursors"].create({"sink": str, "device_id": str, "seq": int}, pk=("sink", "device_id"))
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["meta"].insert({"key": "journal_id", "value": secrets.token_hex(4)})


@migrations(name="0002_device_login_frame")
def _login_frame(db: Database) -> None:
    # The newest identification frame (login, IMEI handshake) of each device, kept even after its
    # report is pruned: an upstream session (passthrough) must open with it.
    db["devices"].add_column("login_raw", bytes)
    db["devices"].add_column("login_seq", int)


@migrations(name="0003_dead_letters")
def _dead_letters(db: Database) -> None:
    # What a sink's server refused for good (an HTTP 4xx other than 408/429): the exact request body
    # and the server's answer, kept until someone requeues it (``relay requeue``) and it is delivered.
    db.execute(
        """CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sink TEXT NOT NULL,
            created_at TEXT NOT NULL,
            state TEXT NOT NULL,
            status INTEGER,
            answer TEXT,
            first_seq INTEGER,
            last_seq INTEGER,
            reports INTEGER NOT NULL,
            content_type TEXT,
            body BLOB NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 1
        )"""
    )
    db["dead_letters"].create_index(["sink", "state"])


SCHEMA_VERSION = 3
#: Longest server answer kept with a dead letter.
DEAD_LETTER_ANSWER_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Entry:
    """One report to store, with where it came from. ``raw`` is the frame it was decoded from;
    when one frame yields several reports, only the first carries the frame (``raw=None`` on the rest)."""

    report: Report
    raw: bytes | None
    transport: str
    peer: str
    received_at: datetime


#: The event of a stored frame that decoded to no report (a photo chunk, a keep-alive): kept, with a
#: passthrough sink, so the upstream receives the device's stream byte for byte; other sinks skip it.
FRAME_EVENT = "frame"


@dataclass(frozen=True, slots=True)
class Quarantined:
    """Bytes no driver could use, kept so a later driver fix can re-decode them."""

    raw: bytes
    reason: str
    transport: str
    peer: str
    received_at: datetime
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class CursorUpdate:
    """A sink's new durable position: everything up to ``floor`` delivered, and per device."""

    sink: str
    floor: int
    devices: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Released:
    """A quarantine row to delete, in the same transaction as the reports re-decoded from it."""

    quarantine_id: int


#: Anything the journal writes.
Item = Entry | Quarantined | CursorUpdate | Released


@dataclass(frozen=True, slots=True)
class QuarantineLimits:
    """How much bad input the journal keeps: a flood of garbage costs at most these bytes, and the
    journal keeps its room for reports."""

    #: All quarantine rows together.
    total_bytes: int = 64 * 1024 * 1024
    #: The rows of one peer address (its IP, whatever the port).
    peer_bytes: int = 1024 * 1024
    #: One row's bytes; a longer frame keeps its head (the reason says how long it was).
    frame_bytes: int = 64 * 1024


#: What a quarantine row costs beyond its bytes (the row, its reason and peer), and the least it is
#: charged, so a flood of empty frames is bounded too.
QUARANTINE_ROW_COST = 256


def peer_address(peer: str) -> str:
    """The address part of ``host:port`` (``[v6]:port`` too); the whole string otherwise."""
    host, colon, port = peer.rpartition(":")
    if colon and port.isdigit() and host:
        return host.strip("[]")
    return peer


def _row_cost(item: Quarantined) -> int:
    return len(item.raw) + len(item.reason) + QUARANTINE_ROW_COST


class QuarantineBudget:
    """Admits quarantine rows while their peer and the quarantine as a whole are within their
    :class:`QuarantineLimits`. Checked when rows are submitted, before they are queued for a commit,
    so a flood never reaches the writer's queue. Rows of SMS messages are always admitted: the modem
    deletes a message once its row is committed, and SMS floods cost the sender money."""

    def __init__(self, limits: QuarantineLimits, usage: Mapping[str, int]) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._peers: dict[str, int] = {}
        self.total = 0
        #: Rows refused for their peer's budget, for the total budget; rows cut to ``frame_bytes``.
        self.dropped_peer = 0
        self.dropped_total = 0
        self.truncated = 0
        self.reset(usage)

    def reset(self, usage: Mapping[str, int]) -> None:
        """Start again from what the quarantine holds now (``peer -> bytes``), after rows were deleted."""
        peers: dict[str, int] = {}
        for peer, used in usage.items():
            address = peer_address(peer or "")
            peers[address] = peers.get(address, 0) + used
        with self._lock:
            self._peers = peers
            self.total = sum(peers.values())

    def admit(self, item: Quarantined) -> Quarantined | None:
        """``item`` (its raw bytes cut to the frame limit), or ``None`` when it is over a budget."""
        limits = self.limits
        if len(item.raw) > limits.frame_bytes:
            self.truncated += 1
            item = Quarantined(
                item.raw[: limits.frame_bytes],
                f"{item.reason} (first {limits.frame_bytes} of {len(item.raw)} bytes kept)",
                item.transport,
                item.peer,
                item.received_at,
                item.protocol,
            )
        cost = _row_cost(item)
        address = peer_address(item.peer)
        with self._lock:
            used = self._peers.get(address, 0)
            if item.transport != "sms":
                if used + cost > limits.peer_bytes:
                    self.dropped_peer += 1
                    return None
                if self.total + cost > limits.total_bytes:
                    self.dropped_total += 1
                    return None
            self._peers[address] = used + cost
            self.total += cost
        return item

    @property
    def dropped(self) -> int:
        return self.dropped_peer + self.dropped_total


class StoredReport:
    """A committed report as sinks read it.

    ``document`` (the normalized report as a dict) is parsed only when asked for; :meth:`json_bytes`
    gives the same document as compact JSON without parsing it, which is what most sinks send.
    """

    __slots__ = (
        "_document",
        "device_id",
        "event",
        "head",
        "media",
        "payload",
        "protocol",
        "raw",
        "seq",
        "transport",
    )

    def __init__(
        self,
        seq: int,
        device_id: str | None,
        protocol: str,
        transport: str,
        event: str,
        head: str,
        payload: str,
        raw: bytes | None,
        media: bytes | None = None,
    ) -> None:
        self.seq = seq
        self.device_id = device_id
        self.protocol = protocol
        self.transport = transport
        self.event = event
        #: ``{"id":…,"site":…,"received_at":…,`` — the relay's fields, ready to prefix the payload.
        self.head = head
        #: The stored report (compact JSON object) without the relay's fields.
        self.payload = payload
        self.raw = raw
        self.media = media
        self._document: dict[str, Any] | None = None

    @property
    def has_position(self) -> bool:
        return '"lat":null' not in self.payload

    @property
    def document(self) -> dict[str, Any]:
        """The normalized report as a dict (a photo's bytes not included)."""
        if self._document is None:
            self._document = json.loads(self.head + self.payload[1:])
        return self._document

    def json_bytes(self) -> bytes:
        """The normalized report as compact JSON (``id``, ``site`` and ``received_at`` first), a photo's
        bytes included as ``media.base64``: what every sink sends."""
        if self.media is None:
            return (self.head + self.payload[1:]).encode()
        document = dict(self.document)
        document["media"] = {**(document.get("media") or {}), "base64": base64.b64encode(self.media).decode()}
        return json.dumps(document, separators=(",", ":")).encode()

    def __repr__(self) -> str:
        return f"StoredReport(seq={self.seq}, device_id={self.device_id!r}, event={self.event!r})"


@dataclass(eq=False)
class _Ticket:
    items: Sequence[Item]
    done: trio.Event = field(default_factory=trio.Event)
    error: BaseException | None = None


class Journal:
    """The durable store. Create with :meth:`open`, run :meth:`run` in a nursery, then append."""

    def __init__(
        self,
        path: Path,
        connection: sqlite3.Connection,
        *,
        max_batch: int = 2000,
        site: str = "relay",
        quarantine_limits: QuarantineLimits = QuarantineLimits(),
        max_devices: int = 20_000,
    ) -> None:
        self.path = path
        self.site = site
        self.max_batch = max_batch
        self._db = connection
        # Reads use their own connection: in WAL mode it sees only committed rows, never the
        # writer's open transaction.
        self._reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._reader.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        #: When each device's ``devices`` row was last written, least recently seen first (bounded by
        #: ``max_devices``: random ids from a flood are forgotten, not kept forever).
        self._device_written: OrderedDict[str, float] = OrderedDict()
        self.max_devices = max_devices
        self.devices_forgotten = 0
        self.quarantine_budget = QuarantineBudget(quarantine_limits, self._quarantine_usage())
        self.journal_id = self._meta("journal_id")
        self.last_seq = self._reader.execute("SELECT coalesce(max(seq), 0) FROM reports").fetchone()[0]
        self._send, self._receive = trio.open_memory_channel[_Ticket](10_000)
        self._appended = trio.Event()
        self.commits = 0
        #: The least time between two group commits (0: commit as soon as something is queued).
        self.commit_interval_s = 0.0
        #: Why the last commit failed; ``None`` once a commit succeeds again.
        self.last_commit_error: str | None = None
        self.committed_reports = 0
        self.quarantined = 0
        self.dropped = 0
        self.commit_failures = 0
        #: How long each successful group commit took (write and fsync), seconds.
        self.commit_time = Buckets(COMMIT_BOUNDS_S)

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
        quarantine_limits: QuarantineLimits = QuarantineLimits(),
        max_devices: int = 20_000,
    ) -> Journal:
        """Open (creating and migrating as needed) the journal at ``path``.

        :param commit_interval_s: the least time between two group commits (see :meth:`run`).
        :param device_index: keep an index of reports by device (only per-device readers, the
            passthrough sink, need it; every report written updates it, which costs SD-card writes).
            ``None`` leaves it as it is.

        :raises JournalError: the directory cannot be created or written, or the file is not a
            usable SQLite database. The message names the path and the cause.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # Another process (relay quarantine retry, relay requeue) may write at the same moment.
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            connection.execute("PRAGMA foreign_keys=OFF")
            # Fewer, larger checkpoints: less SD-card write amplification.
            connection.execute("PRAGMA wal_autocheckpoint=4000")
            db = Database(connection)
            migrations.apply(db)
            connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            if device_index is True:
                connection.execute(f"CREATE INDEX IF NOT EXISTS {DEVICE_INDEX} ON reports (device_id, seq)")
            elif device_index is False:
                connection.execute(f"DROP INDEX IF EXISTS {DEVICE_INDEX}")
        except (OSError, sqlite3.Error) as error:
            raise JournalError(f"cannot open journal {path}: {error}") from error
        journal = cls(
            path,
            connection,
            max_batch=max_batch,
            site=site,
            quarantine_limits=quarantine_limits,
            max_devices=max_devices,
        )
        journal.commit_interval_s = commit_interval_s
        return journal

    def close(self) -> None:
        with self._lock:
            self._reader.close()
            self._db.close()

    def on_append(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (in the trio thread) after every commit that added reports."""
        self._listeners.append(callback)

    def _meta(self, key: str) -> str:
        row = self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else ""

    # -- writing ------------------------------------------------------------------------------

    async def append(self, items: Sequence[Item]) -> None:
        """Store ``items`` and return once they are committed (fsynced with ``synchronous=FULL``).

        Calls are committed in the order they were made.

        :raises JournalError: the commit failed (disk full, I/O error); nothing of ``items`` is stored.
        """
        ticket = self.submit_nowait(items) or await self.submit(items)
        await self.wait_committed(ticket)

    async def submit(self, items: Sequence[Item]) -> _Ticket:
        """Queue ``items`` for the next group commit (in call order) and return a ticket to wait on.

        Quarantine rows over their budget (:class:`QuarantineBudget`) are left out, and counted."""
        ticket = _Ticket(self._within_budget(items))
        await self._send.send(ticket)
        return ticket

    def submit_nowait(self, items: Sequence[Item]) -> _Ticket | None:
        """:meth:`submit` without waiting: ``None`` when the queue is full (then use :meth:`submit`)."""
        ticket = _Ticket(self._within_budget(items))
        try:
            self._send.send_nowait(ticket)
        except trio.WouldBlock:
            return None
        return ticket

    def _within_budget(self, items: Sequence[Item]) -> Sequence[Item]:
        if not any(type(item) is Quarantined for item in items):
            return items
        kept: list[Item] = []
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
        async with self._receive:
            while True:
                batch = [await self._receive.receive()]
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

    async def _commit(self, batch: list[_Ticket]) -> None:
        items = [item for ticket in batch for item in ticket.items]
        started = time.monotonic()
        try:
            last_seq, reports, quarantined = await trio.to_thread.run_sync(self._write, items)
        except sqlite3.Error as error:
            self.commit_failures += 1
            self.last_commit_error = str(error)
            log_event(log, logging.ERROR, "journal_commit_failed", error=str(error), items=len(items))
            for ticket in batch:
                ticket.error = error
                ticket.done.set()
            return
        self.commit_time.observe(time.monotonic() - started)
        self.commits += 1
        self.last_commit_error = None
        self.committed_reports += reports
        self.quarantined += quarantined
        for ticket in batch:
            ticket.done.set()
        if last_seq > self.last_seq:
            self.last_seq = last_seq
            self._appended.set()
            self._appended = trio.Event()
            for callback in self._listeners:
                callback()

    def _write(self, items: Sequence[Item]) -> tuple[int, int, int]:
        entries = [item for item in items if isinstance(item, Entry)]
        quarantined = [item for item in items if isinstance(item, Quarantined)]
        cursors = [item for item in items if isinstance(item, CursorUpdate)]
        released = [item.quarantine_id for item in items if isinstance(item, Released)]
        with self._lock:
            return self._write_locked(entries, quarantined, cursors, released)

    def _write_locked(
        self,
        entries: list[Entry],
        quarantined: list[Quarantined],
        cursors: list[CursorUpdate],
        released: list[int],
    ) -> tuple[int, int, int]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
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
                db.executemany(_UPSERT_DEVICE, self._due_device_rows(entries, first_seq))
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
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return last_seq, len(entries), len(quarantined)

    def _due_device_rows(self, entries: list[Entry], first_seq: int) -> list[tuple[Any, ...]]:
        """The ``devices`` rows to write now: new devices and new login frames at once, a known
        device's "last seen" at most every DEVICE_ROW_INTERVAL_S. Rewriting a random page of that
        table for every commit was most of what the journal wrote to the SD card."""
        now = time.monotonic()
        due = []
        for row in _device_rows(entries, first_seq):
            device, login_raw = row[0], row[10]
            written = self._device_written.get(device)
            if written is not None:
                self._device_written.move_to_end(device)
            if login_raw is not None or written is None or now - written >= DEVICE_ROW_INTERVAL_S:
                self._device_written[device] = now
                due.append(row)
        while len(self._device_written) > self.max_devices:
            self._device_written.popitem(last=False)
            self.devices_forgotten += 1
        return due

    def write_now(self, items: Sequence[Item]) -> None:
        """Commit ``items`` on the calling thread, bypassing the writer task (shutdown paths, when the
        writer may already be cancelled; maintenance commands). Blocks for one commit."""
        last_seq, _, _ = self._write(self._within_budget(items))
        self.last_seq = max(self.last_seq, last_seq)

    # -- reading ------------------------------------------------------------------------------

    async def wait_appended(self, after_seq: int) -> None:
        """Return once a report with ``seq > after_seq`` is committed."""
        while self.last_seq <= after_seq:
            await self._appended.wait()

    def read_after(self, seq: int, limit: int) -> list[StoredReport]:
        """Committed reports with ``seq`` greater than ``seq``, oldest first, at most ``limit``."""
        rows = self._reader.execute(
            "SELECT r.seq, r.device_id, r.protocol, r.transport, r.event, r.received_at, r.payload, r.raw,"
            " m.data FROM reports r LEFT JOIN media m ON m.seq = r.seq"
            " WHERE r.seq > ? ORDER BY r.seq LIMIT ?",
            (seq, limit),
        ).fetchall()
        return [self._stored(row) for row in rows]

    def login_frame(self, device_id: str) -> tuple[str, bytes] | None:
        """(protocol, raw frame) of the device's newest identification frame, if one was seen."""
        row = self._reader.execute(
            "SELECT protocol, login_raw FROM devices WHERE device_id = ? AND login_raw IS NOT NULL",
            (device_id,),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def read_device_after(self, device_id: str | None, seq: int, limit: int) -> list[StoredReport]:
        """One device's committed reports with ``seq`` greater than ``seq``, oldest first."""
        rows = self._reader.execute(
            "SELECT r.seq, r.device_id, r.protocol, r.transport, r.event, r.received_at, r.payload, r.raw,"
            " m.data FROM reports r LEFT JOIN media m ON m.seq = r.seq"
            " WHERE r.device_id IS ? AND r.seq > ? ORDER BY r.seq LIMIT ?",
            (device_id, seq, limit),
        ).fetchall()
        return [self._stored(row) for row in rows]

    def devices_between(self, after: int, upto: int) -> dict[str | None, int]:
        """Each device with reports in ``after < seq <= upto``, and its newest such ``seq``."""
        return dict(
            self._reader.execute(
                "SELECT device_id, max(seq) FROM reports WHERE seq > ? AND seq <= ? GROUP BY device_id",
                (after, upto),
            ).fetchall()
        )

    def newest_per_device(self, after: int) -> list[StoredReport]:
        """Each device's newest report with ``seq > after``, oldest of them first."""
        rows = self._reader.execute(
            "SELECT r.seq, r.device_id, r.protocol, r.transport, r.event, r.received_at, r.payload, r.raw,"
            " m.data FROM reports r LEFT JOIN media m ON m.seq = r.seq"
            " WHERE r.seq IN (SELECT max(seq) FROM reports WHERE seq > ? GROUP BY device_id) ORDER BY r.seq",
            (after,),
        ).fetchall()
        return [self._stored(row) for row in rows]

    def _stored(self, row: tuple[Any, ...]) -> StoredReport:
        seq, device_id, protocol, transport, event, received_at, payload, raw, media = row
        # Report ids, site names and timestamps need no JSON escaping (the site's characters are
        # checked by the config), so the relay's fields are prefixed as text.
        head = f'{{"id":"{self.journal_id}-{seq}","site":"{self.site}","received_at":"{received_at}",'
        return StoredReport(seq, device_id, protocol, transport, event, head, payload, raw, media)

    def load_cursors(self, sink: str) -> tuple[int, dict[str, int]]:
        """A sink's durable position: (floor, per-device seq). Unknown sinks start at 0."""
        row = self._reader.execute("SELECT floor_seq FROM sinks WHERE name = ?", (sink,)).fetchone()
        devices = dict(self._reader.execute("SELECT device_id, seq FROM cursors WHERE sink = ?", (sink,)))
        return (row[0] if row else 0), devices

    def quarantine_rows(self, limit: int = 100) -> list[dict[str, Any]]:
        cursor = self._reader.execute(
            "SELECT id, received_at, peer, transport, protocol, reason, raw FROM quarantine"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    # -- dead letters -------------------------------------------------------------------------

    def park(
        self,
        sink: str,
        seqs: Sequence[int],
        *,
        status: int | None,
        answer: str,
        body: bytes,
        content_type: str,
    ) -> int:
        """Keep a request the server refused for good; return its id. Blocks for one commit (call it
        from a worker thread). The sink may acknowledge ``seqs`` once this returns."""
        with self._lock, _transaction(self._db):
            cursor = self._db.execute(
                "INSERT INTO dead_letters (sink, created_at, state, status, answer, first_seq, last_seq,"
                " reports, content_type, body) VALUES (?, ?, 'parked', ?, ?, ?, ?, ?, ?, ?)",
                (
                    sink,
                    format_time(datetime.now(UTC)),
                    status,
                    answer[:DEAD_LETTER_ANSWER_CHARS],
                    min(seqs, default=None),
                    max(seqs, default=None),
                    len(seqs),
                    content_type,
                    body,
                ),
            )
            return int(cursor.lastrowid or 0)

    def requeued_letters(self, sink: str, limit: int = 10) -> list[dict[str, Any]]:
        """Dead letters of ``sink`` that ``relay requeue`` marked for sending again, oldest first."""
        cursor = self._reader.execute(
            "SELECT id, status, answer, reports, content_type, body, attempts FROM dead_letters"
            " WHERE sink = ? AND state = 'requeued' ORDER BY id LIMIT ?",
            (sink, limit),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]

    def settle_letter(
        self, letter_id: int, *, delivered: bool, status: int | None = None, answer: str = ""
    ) -> None:
        """A requeued letter was delivered (deleted) or refused again (parked with the new answer).
        Blocks for one commit (call it from a worker thread)."""
        with self._lock, _transaction(self._db):
            if delivered:
                self._db.execute("DELETE FROM dead_letters WHERE id = ?", (letter_id,))
            else:
                self._db.execute(
                    "UPDATE dead_letters SET state = 'parked', status = ?, answer = ?,"
                    " attempts = attempts + 1"
                    " WHERE id = ?",
                    (status, answer[:DEAD_LETTER_ANSWER_CHARS], letter_id),
                )

    # -- housekeeping -------------------------------------------------------------------------

    def size_bytes(self) -> int:
        pages, free, page_size = (
            self._db.execute("PRAGMA page_count").fetchone()[0],
            self._db.execute("PRAGMA freelist_count").fetchone()[0],
            self._db.execute("PRAGMA page_size").fetchone()[0],
        )
        return (pages - free) * page_size

    def prune(
        self, *, delivered_up_to: int, retention: timedelta, max_bytes: int, now: datetime
    ) -> dict[str, int]:
        """Delete what may go: delivered reports past retention; when over ``max_bytes``, the oldest
        delivered reports, then (counted as dropped) the oldest undelivered. Runs on the caller's thread.
        """
        with self._lock:
            return self._prune_locked(delivered_up_to, retention, max_bytes, now)

    def _prune_locked(
        self, delivered_up_to: int, retention: timedelta, max_bytes: int, now: datetime
    ) -> dict[str, int]:
        cutoff = format_time(now - retention)
        removed = {"expired": 0, "quarantine": 0, "delivered_for_space": 0, "dropped_undelivered": 0}
        with _transaction(self._db):
            removed["expired"] = self._delete("seq <= ? AND received_at < ?", (delivered_up_to, cutoff))
            removed["quarantine"] = self._db.execute(
                "DELETE FROM quarantine WHERE received_at < ?", (cutoff,)
            ).rowcount
        if removed["quarantine"]:
            self.quarantine_budget.reset(self._quarantine_usage())
        over = self._db.execute("SELECT count(*) FROM devices").fetchone()[0] - self.max_devices
        if over > 0:  # the least recently seen devices' rows go (random ids from a flood)
            with _transaction(self._db):
                removed["devices_forgotten"] = self._db.execute(
                    "DELETE FROM devices WHERE device_id IN"
                    " (SELECT device_id FROM devices ORDER BY last_seen LIMIT ?)",
                    (over,),
                ).rowcount
        while self.size_bytes() > max_bytes:
            oldest = self._db.execute("SELECT min(seq) FROM reports").fetchone()[0]
            if oldest is None:
                break
            chunk_end = oldest + 999
            with _transaction(self._db):
                if oldest <= delivered_up_to:
                    removed["delivered_for_space"] += self._delete(
                        "seq <= ?", (min(chunk_end, delivered_up_to),)
                    )
                else:
                    dropped = self._delete("seq <= ?", (chunk_end,))
                    removed["dropped_undelivered"] += dropped
                    self.dropped += dropped
        if removed["dropped_undelivered"]:
            log_event(
                log,
                logging.WARNING,
                "journal_full_dropped_undelivered",
                count=removed["dropped_undelivered"],
                max_bytes=max_bytes,
            )
        return removed

    def _quarantine_usage(self) -> dict[str, int]:
        """Bytes each peer's quarantine rows are charged (as :class:`QuarantineBudget` charges them)."""
        return dict(
            self._reader.execute(
                "SELECT coalesce(peer, ''), sum(length(raw) + length(reason) + ?) FROM quarantine"
                " GROUP BY peer",
                (QUARANTINE_ROW_COST,),
            ).fetchall()
        )

    def _delete(self, where: str, params: tuple[Any, ...]) -> int:
        self._db.execute(f"DELETE FROM media WHERE seq IN (SELECT seq FROM reports WHERE {where})", params)
        return self._db.execute(f"DELETE FROM reports WHERE {where}", params).rowcount


class _transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


_UPSERT_DEVICE = """
INSERT INTO devices (device_id, protocol, transport, peer, first_seen, last_seen, last_seq, last_time,
                     last_lat, last_lon, login_raw, login_seq)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(device_id) DO UPDATE SET
    protocol = excluded.protocol, transport = excluded.transport, peer = excluded.peer,
    last_seen = excluded.last_seen, last_seq = excluded.last_seq,
    last_time = coalesce(excluded.last_time, devices.last_time),
    last_lat = coalesce(excluded.last_lat, devices.last_lat),
    last_lon = coalesce(excluded.last_lon, devices.last_lon),
    login_raw = coalesce(excluded.login_raw, devices.login_raw),
    login_seq = coalesce(excluded.login_seq, devices.login_seq)
"""


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


def _device_rows(entries: Iterable[Entry], first_seq: int) -> list[tuple[Any, ...]]:
    latest: dict[str, tuple[Any, ...]] = {}
    logins: dict[str, tuple[bytes, int]] = {}
    for index, entry in enumerate(entries):
        report = entry.report
        if not report.device_id:
            continue
        if report.event == "login" and entry.raw is not None:
            logins[report.device_id] = (entry.raw, first_seq + index)
        seen = format_time(entry.received_at)
        login_raw, login_seq = logins.get(report.device_id, (None, None))
        latest[report.device_id] = (
            report.device_id,
            report.protocol,
            entry.transport,
            entry.peer,
            seen,
            seen,
            first_seq + index,
            format_time(report.time) if report.has_position else None,
            report.lat,
            report.lon,
            login_raw,
            login_seq,
        )
    return list(latest.values())


# -- status (read-only, works on a stopped relay's journal) -----------------------------------------


def read_status(path: str | Path, sinks: Sequence[str], *, now: datetime) -> dict[str, Any]:
    """Devices, sink backlogs and quarantine count from the journal at ``path``, opened read-only.

    :raises JournalError: no journal at ``path``, or it cannot be read.
    """
    path = Path(path)
    if not path.exists():
        raise JournalError(f"no journal at {path} (has the relay run with this data_dir?)")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return _status(db, sinks, now)
        finally:
            db.close()
    except sqlite3.Error as error:
        raise JournalError(f"cannot read journal {path}: {error}") from error


def dead_letter_rows(path: str | Path, *, sink: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """Dead letters in the journal at ``path`` (newest first), without their bodies' bytes.

    :raises JournalError: no journal at ``path``, or it cannot be read.
    """
    db = _connect_existing(path, read_only=True)
    try:
        cursor = db.execute(
            "SELECT id, sink, created_at, state, status, answer, first_seq, last_seq, reports, content_type,"
            " length(body) AS bytes, attempts FROM dead_letters WHERE ? IS NULL OR sink = ?"
            " ORDER BY id DESC LIMIT ?",
            (sink, sink, limit),
        )
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor]
    except sqlite3.Error as error:
        raise JournalError(f"cannot read dead letters from {path}: {error}") from error
    finally:
        db.close()


def requeue_dead_letters(
    path: str | Path, *, sink: str | None = None, ids: Sequence[int] | None = None
) -> int:
    """Mark dead letters for sending again (all of ``sink``'s, or all, when ``ids`` is None); return
    how many. A running relay picks them up within seconds; a stopped one when it starts.

    :raises JournalError: no journal at ``path``, or it cannot be written.
    """
    db = _connect_existing(path, read_only=False)
    try:
        where = "state = 'parked' AND (? IS NULL OR sink = ?)"
        params: list[Any] = [sink, sink]
        if ids is not None:
            where += f" AND id IN ({','.join('?' * len(ids))})"
            params += list(ids)
        with _transaction(db):
            return db.execute(f"UPDATE dead_letters SET state = 'requeued' WHERE {where}", params).rowcount
    except sqlite3.Error as error:
        raise JournalError(f"cannot requeue dead letters in {path}: {error}") from error
    finally:
        db.close()


def _connect_existing(path: str | Path, *, read_only: bool) -> sqlite3.Connection:
    path = Path(path)
    if not path.exists():
        raise JournalError(f"no journal at {path} (has the relay run with this data_dir?)")
    try:
        if read_only:
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        # A journal made by an older relay has no dead_letters table yet: bring it up to date.
        migrations.apply(Database(db))
        return db
    except sqlite3.Error as error:
        raise JournalError(f"cannot open journal {path}: {error}") from error


def _status(db: sqlite3.Connection, sinks: Sequence[str], now: datetime) -> dict[str, Any]:
    """Bounded, whatever the journal holds: besides the ``devices`` table and one count per sink, it
    reads the newest 1000 reports (the ``devices`` rows lag behind them by up to DEVICE_ROW_INTERVAL_S:
    last report, last fix, battery, recent alarms) and, for the 500 most recently seen devices (the only
    ones given ``last_event``, ``alarms``, ``battery`` and ``recent_alarms``), each one's newest report
    by its ``seq``."""
    detailed, window, alarms_kept = 500, 1000, 5
    last_seq, count = db.execute("SELECT coalesce(max(seq), 0), count(*) FROM reports").fetchone()
    newest: dict[str, dict[str, Any]] = {}
    seen: dict[str, str] = {}
    fixes: dict[str, tuple[str, float, float]] = {}
    battery: dict[str, dict[str, Any]] = {}
    recent_alarms: dict[str, list[dict[str, Any]]] = {}
    for device_id, received_at, payload in db.execute(
        "SELECT device_id, received_at, payload FROM reports WHERE seq > ? ORDER BY seq DESC",
        (last_seq - window,),
    ):
        document = json.loads(payload)
        newest.setdefault(device_id, document)
        seen.setdefault(device_id, received_at)
        if document.get("lat") is not None and document.get("lon") is not None and document.get("time"):
            fixes.setdefault(device_id, (document["time"], document["lat"], document["lon"]))
        levels = {k: v for k, v in (document.get("attributes") or {}).items() if k.startswith("battery")}
        if levels:
            battery.setdefault(device_id, levels)
        kept = recent_alarms.setdefault(device_id, [])
        for alarm in document.get("alarms") or ():
            if len(kept) < alarms_kept:
                kept.append({"alarm": alarm, "received_at": received_at})
    devices = []
    for index, (device_id, protocol, transport, peer, last_seen, last_time, lat, lon, seq) in enumerate(
        db.execute(
            "SELECT device_id, protocol, transport, peer, last_seen, last_time, last_lat, last_lon, last_seq"
            " FROM devices ORDER BY last_seen DESC"
        )
    ):
        last_seen = max(last_seen, seen.get(device_id, ""))
        if device_id in fixes and (last_time is None or fixes[device_id][0] >= last_time):
            last_time, lat, lon = fixes[device_id]
        device: dict[str, Any] = {
            "device_id": device_id,
            "protocol": protocol,
            "transport": transport,
            "peer": peer,
            "last_seen": last_seen,
            "age_s": _age(last_seen, now),
            "last_fix": last_time,
            "last_lat": lat,
            "last_lon": lon,
        }
        if index < detailed:
            document = newest.get(device_id)
            if document is None and seq is not None:
                row = db.execute("SELECT payload FROM reports WHERE seq = ?", (seq,)).fetchone()
                document = json.loads(row[0]) if row else None
            device["last_event"] = document.get("event") if document else None
            device["alarms"] = list(document.get("alarms") or ()) if document else []
            device["battery"] = battery.get(device_id) or {
                k: v for k, v in ((document or {}).get("attributes") or {}).items() if k.startswith("battery")
            }
            device["recent_alarms"] = recent_alarms.get(device_id, [])
        devices.append(device)
    backlog = []
    for name in sinks:
        row = db.execute("SELECT floor_seq FROM sinks WHERE name = ?", (name,)).fetchone()
        floor = row[0] if row else 0
        pending, oldest = db.execute(
            "SELECT count(*), min(r.received_at) FROM reports r LEFT JOIN cursors c"
            " ON c.sink = ? AND c.device_id = r.device_id"
            " WHERE r.seq > ? AND r.seq > coalesce(c.seq, 0)",
            (name, floor),
        ).fetchone()
        backlog.append(
            {
                "sink": name,
                "pending": pending,
                "oldest_received_at": oldest,
                "oldest_age_s": _age(oldest, now),
            }
        )
    quarantine = db.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    try:
        dead_letters = db.execute("SELECT count(*) FROM dead_letters WHERE state = 'parked'").fetchone()[0]
    except sqlite3.OperationalError:  # a journal from before dead letters, opened read-only
        dead_letters = 0
    pages, free, page_size = (
        db.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "freelist_count", "page_size")
    )
    return {
        "devices": devices,
        "reports": count,
        "last_seq": last_seq,
        "sinks": backlog,
        "quarantine": quarantine,
        "dead_letters": dead_letters,
        "size_bytes": (pages - free) * page_size,
    }


def _age(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = (now - then).total_seconds()
    return None if math.isnan(seconds) else round(seconds, 1)
