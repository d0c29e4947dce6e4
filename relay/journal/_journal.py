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
import os
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

from ..buckets import COMMIT_BOUNDS_S, Buckets
from ..errors import JournalError, JournalFilesChanged
from ..logs import log_event
from ._header import repaired_copy

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
#: SQLite's primary result codes for a damaged or unreadable file: I/O error, corrupt, not a database.
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 10, 11, 13, 26
#: Rows deleted per transaction by the cleanup: each transaction needs only a little WAL (and disk).
PRUNE_CHUNK = 500
#: The size cap is checked after this many reports were committed, not only by the housekeeping timer.
SIZE_CHECK_REPORTS = 2000
#: On a full disk the cleanup aims this far below the journal's size when the disk filled up.
FULL_DISK_SHRINK = 0.9
#: Space kept free for the cleanup, as a file next to the journal deleted when the disk fills up: a
#: checkpoint and the deletes need some room before they give room back: a checkpoint may have to grow
#: the journal by a whole WAL (WAL_AUTOCHECKPOINT pages).
WAL_AUTOCHECKPOINT = 4000
RESERVE_BYTES = WAL_AUTOCHECKPOINT * 4096 + 4 * 1024 * 1024
#: Rows deleted per transaction by the cleanup on a full disk.
PRUNE_CHUNK_FULL = 50
#: Retention counts the relay's running time: expiry marks are kept this finely (a fraction of retention).
EXPIRY_MARKS = 200


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


def is_damage(error: BaseException) -> bool:
    """Is ``error`` SQLite saying that the file cannot be read: corrupt, not a database, an I/O error?"""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_NOTADB)


def is_disk_full(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == SQLITE_FULL


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``, or ``None`` when there is no such file."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _companions(path: Path) -> list[Path]:
    """The journal file and its WAL and shared-memory files."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def check_journal(path: Path, time_limit_s: float) -> tuple[str | None, bool]:
    """Is the journal at ``path`` sound? ``(damage, complete)``: what is wrong (``None``: nothing found),
    and whether ``PRAGMA quick_check`` finished within ``time_limit_s`` (it reads the whole file: on an
    SD card about 40 MB/s). A missing file is sound.
    """
    if not path.exists():
        return None, True
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as error:
        return (str(error), True) if is_damage(error) else (None, True)
    deadline = time.monotonic() + time_limit_s
    db.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        rows = [row[0] for row in db.execute("PRAGMA quick_check(20)")]
    except sqlite3.OperationalError as error:
        if "interrupted" in str(error):
            return None, False
        return (str(error), True) if is_damage(error) else (None, True)
    except sqlite3.DatabaseError as error:
        return (str(error), True) if is_damage(error) else (None, True)
    finally:
        db.close()
    if rows == ["ok"]:
        return None, True
    return "; ".join(" ".join(row.split()) for row in rows)[:500], True


def set_aside(path: Path, now: datetime) -> Path:
    """Rename the journal at ``path`` (with its -wal and -shm, which hold part of its content) to
    ``<name>.damaged-<UTC time>``; return the new path of the main file."""
    aside = path.with_name(f"{path.name}.damaged-{_stamp(now)}")
    for source, target in zip(_companions(path), _companions(aside), strict=True):
        if source.exists():
            os.replace(source, target)
    return aside


def set_aside_journals(path: Path) -> list[Path]:
    """Journals set aside next to ``path`` (by :func:`set_aside`), oldest first."""
    return sorted(
        candidate
        for candidate in path.parent.glob(f"{path.name}.damaged-*")
        if not candidate.name.endswith(("-wal", "-shm"))
    )


@dataclass(frozen=True, slots=True)
class SetAside:
    """A damaged journal found at start and renamed; the relay went on with a fresh one."""

    path: Path
    damage: str
    at: str

    def __str__(self) -> str:
        return (
            f"the journal was damaged ({self.damage}) and was set aside as {self.path} at {self.at};"
            f" a fresh journal was started: recover its reports with `relay salvage {self.path}`"
        )


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
        synchronous: str = "full",
    ) -> None:
        self.path = path
        self.site = site
        self.max_batch = max_batch
        self.synchronous = synchronous
        self._db = connection
        # Reads use their own connection: in WAL mode it sees only committed rows, never the
        # writer's open transaction.
        self._reader = _connect_reader(path)
        #: (device, inode) of the journal, its WAL and its shared memory when they were opened: a file
        #: deleted or replaced under the running relay is noticed before the next commit.
        self._file_ids = [_file_id(file) for file in _companions(path)]
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
        #: The damaged journal this one replaced at start, if any (see :meth:`problems`).
        self.set_aside: SetAside | None = None
        #: The start-up check ran out of time before it read the whole file.
        self.check_incomplete = False
        #: Reports that could not be read (a damaged page, an I/O error), as merged ``[first, last]``
        #: seq ranges: readers skip them. ``read_errors`` counts the reads that met damage.
        self.unreadable: list[list[int]] = []
        self.unreadable_reports = 0
        self._examined: tuple[int, int] | None = None
        self.read_errors = 0
        #: Times the journal was reopened because its file or WAL was deleted or replaced.
        self.reopens = 0
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

    def problems(self) -> list[str]:
        """What is wrong with the journal now, one sentence each (empty when nothing is): for /healthz
        and ``relay status``. A failing commit is :attr:`last_commit_error`."""
        found = []
        if self.set_aside is not None:
            found.append(str(self.set_aside))
        if self.unreadable:
            ranges = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.unreadable[:10])
            found.append(
                f"{self.unreadable_reports} report(s) could not be read (seq {ranges}) and were skipped;"
                " the journal is damaged: restart the relay to check it and set it aside"
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
        quarantine_limits: QuarantineLimits = QuarantineLimits(),
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
            with _private_files():
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                if check_s is not None:
                    damage, complete = check_journal(path, check_s)
                    incomplete = not complete
                    if damage is not None:
                        now = datetime.now(UTC)
                        aside = SetAside(set_aside(path, now), damage, format_time(now))
                connection = _connect_writer(path, synchronous)
                db = Database(connection)
                migrations.apply(db)
                connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
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
        except (sqlite3.Error, JournalFilesChanged) as error:
            self.commit_failures += 1
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
        self.commit_time.observe(time.monotonic() - started)
        self.commits += 1
        self.last_commit_error = None
        self.full_at_bytes = None
        if (
            self.size_cap_bytes is not None
            and self.committed_reports + reports - self._size_checked_at >= SIZE_CHECK_REPORTS
        ):
            self._size_checked_at = self.committed_reports + reports
            if self.file_bytes() > self.size_cap_bytes:
                self.cleanup_wanted.set()
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
        self.verify_files()
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

    def insert_salvaged(
        self, rows: Sequence[tuple[Any, ...]], photos: Mapping[int, tuple[str, bytes]]
    ) -> None:
        """Store reports read from a damaged journal (:func:`salvage`) as new reports, in one commit."""
        with self._lock, _transaction(self._db):
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
        for file, opened in zip(_companions(self.path), self._file_ids, strict=True):
            if opened is not None and _file_id(file) != opened:
                what = "deleted" if not file.exists() else "replaced"
                raise JournalFilesChanged(f"{file} was {what} while the relay had it open")

    def reopen(self, reason: str) -> None:
        """Open the journal again after its file or WAL was deleted or replaced, keeping everything
        committed so far: a deleted WAL is first checkpointed into the journal (through the still-open
        file); a deleted or replaced journal is first copied (SQLite's backup, from the open file) to
        its path, a replacement being set aside as ``<name>.replaced-<time>``.

        Runs on the trio thread: no reader may use the connections while they are swapped.
        """
        with self._lock, _private_files():
            old_db, old_reader = self._db, self._reader
            main_kept = _file_id(self.path) == self._file_ids[0]
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
            old_db.close()  # the last connection: removes the WAL and shared memory at the path
            if not main_kept:
                if self.path.exists():
                    stamp = _stamp(datetime.now(UTC))
                    set_aside_as = self.path.with_name(f"{self.path.name}.replaced-{stamp}")
                    pairs = zip(_companions(self.path), _companions(set_aside_as), strict=True)
                    for source, target_path in pairs:
                        if source.exists():
                            os.replace(source, target_path)
                else:
                    for stray in _companions(self.path)[1:]:
                        stray.unlink(missing_ok=True)
                os.replace(copy, self.path)
                _fsync_directory(self.path.parent)
            self._db = _connect_writer(self.path, self.synchronous)
            self._reader = _connect_reader(self.path)
            self._file_ids = [_file_id(file) for file in _companions(self.path)]
        self.reopens += 1
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
        """Committed reports with ``seq`` greater than ``seq``, oldest first, at most ``limit``.

        Reports that cannot be read (a damaged page, an I/O error) are skipped and recorded
        (:attr:`unreadable`, :meth:`problems`): a damaged page never stops a sink. A damaged page can
        also end a scan early without an error: a short answer that stops before :attr:`last_seq` is
        read again, range by range."""
        reports = self._read_reports("", (), seq, limit)
        if reports and reports[-1].seq - reports[0].seq + 1 != len(reports):  # a hole in the middle
            return [self._stored(row) for row in self._read_around_damage("", (), seq, limit)]
        end = reports[-1].seq if reports else seq
        if len(reports) < limit and end < self.last_seq and not self._examined_through(end):
            rows = self._read_around_damage("", (), end, limit - len(reports))
            reports += [self._stored(row) for row in rows]
        return reports

    def login_frame(self, device_id: str) -> tuple[str, bytes] | None:
        """(protocol, raw frame) of the device's newest identification frame, if one was seen."""
        row = self._reader.execute(
            "SELECT protocol, login_raw FROM devices WHERE device_id = ? AND login_raw IS NOT NULL",
            (device_id,),
        ).fetchone()
        return (row[0], row[1]) if row else None

    def read_device_after(self, device_id: str | None, seq: int, limit: int) -> list[StoredReport]:
        """One device's committed reports with ``seq`` greater than ``seq``, oldest first (unreadable
        ones skipped, as by :meth:`read_after`)."""
        return self._read_reports(" AND r.device_id IS ?", (device_id,), seq, limit)

    def devices_between(self, after: int, upto: int) -> dict[str | None, int]:
        """Each device with reports in ``after < seq <= upto``, and its newest such ``seq`` (reports
        that cannot be read are left out)."""
        sql = "SELECT device_id, max(seq) FROM reports WHERE seq >= ? AND seq <= ? GROUP BY device_id"
        try:
            return dict(self._reader.execute(sql, (after + 1, upto)).fetchall())
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
        newest: dict[str | None, int] = {}
        for lo, hi in self._seq_windows(after, upto, 1000):
            rows = self._readable(lambda a, b: self._reader.execute(sql, (a, b)).fetchall(), lo, hi)
            for device, seq in rows:
                newest[device] = max(seq, newest.get(device, seq))
        return newest

    def newest_per_device(self, after: int) -> list[StoredReport]:
        """Each device's newest report with ``seq > after``, oldest of them first. On a damaged journal,
        nothing: the backlog is then delivered oldest first by :meth:`read_after`, which skips damage."""
        try:
            rows = self._reader.execute(
                f"{_SELECT_STORED} WHERE r.seq IN (SELECT max(seq) FROM reports WHERE seq > ?"
                " GROUP BY device_id) ORDER BY r.seq",
                (after,),
            ).fetchall()
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
            self.read_errors += 1
            log_event(log, logging.ERROR, "journal_read_failed", read="newest_per_device", error=str(error))
            return []
        return [self._stored(row) for row in rows]

    def skip_unreadable(self, seq: int) -> int:
        """``seq``, or the end of the unreadable (or vanished) reports right after it: a reader that
        got nothing back although :attr:`last_seq` is ahead carries on from there."""
        if self._examined is not None and self._examined[0] == seq:
            seq = max(seq, self._examined[1])
        for first, last in self.unreadable:
            if first <= seq + 1 <= last:
                seq = last
        return seq

    def _examined_through(self, seq: int) -> bool:
        """Did the careful reader just find nothing readable after ``seq``, up to :attr:`last_seq`?"""
        return self._examined is not None and self._examined[0] == seq and self._examined[1] >= self.last_seq

    def _read_reports(
        self, where: str, params: tuple[Any, ...], after: int, limit: int
    ) -> list[StoredReport]:
        sql = f"{_SELECT_STORED} WHERE r.seq > ?{where} ORDER BY r.seq LIMIT ?"
        try:
            rows = self._reader.execute(sql, (after, *params, limit)).fetchall()
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
            rows = self._read_around_damage(where, params, after, limit)
        return [self._stored(row) for row in rows]

    def _read_around_damage(
        self, where: str, params: tuple[Any, ...], after: int, limit: int
    ) -> list[tuple[Any, ...]]:
        """Rows as :meth:`_read_reports` reads them, range by range, bisecting any range that cannot
        be read down to the single reports that cannot (recorded in :attr:`unreadable`)."""
        self.read_errors += 1
        before = self.unreadable_reports
        sql = f"{_SELECT_STORED} WHERE r.seq >= ? AND r.seq <= ?{where} ORDER BY r.seq"
        # One report is looked up by equality: a range scan steps on to the next row to check its
        # bound, and that row may be on the damaged page, failing a report that is readable.
        one = f"{_SELECT_STORED} WHERE r.seq = ?{where}"

        def query(lo: int, hi: int) -> list[tuple[Any, ...]]:
            if lo == hi:
                return self._reader.execute(one, (lo, *params)).fetchall()
            return self._reader.execute(sql, (lo, hi, *params)).fetchall()

        def probe(seqs: Iterable[int]) -> list[tuple[Any, ...]]:
            # A scan can stop early at a damaged page without an error: look each row up by itself.
            # A report missing between two that exist was lost with the page too: seqs are never reused
            # and only the oldest reports are deleted.
            found: list[tuple[Any, ...]] = []
            for seq in seqs:
                if self._known_unreadable(seq, seq):
                    continue
                row = self._readable(query, seq, seq)
                if not row and not self._known_unreadable(seq, seq):
                    self._mark_unreadable(seq)
                found += row
            return found

        rows: list[tuple[Any, ...]] = []
        upto = self.last_seq
        for lo, hi in self._seq_windows(after, upto, min(max(limit, 16), 100)):
            window = self._readable(query, lo, hi)
            if not where and len(window) < hi - lo + 1:
                got = {row[0] for row in window}
                window = sorted(window + probe(s for s in range(lo, hi + 1) if s not in got))
            rows += window
            if len(rows) >= limit:
                break
        self._examined = (after, upto) if not rows else None
        if self.unreadable_reports > before:
            log_event(
                log,
                logging.ERROR,
                "journal_reports_unreadable",
                skipped=self.unreadable_reports - before,
                total=self.unreadable_reports,
                seqs=",".join(f"{a}-{b}" for a, b in self.unreadable[:20]),
                hint="the journal is damaged: restart the relay to check it and set it aside",
            )
        return rows[:limit]

    def _seq_windows(self, after: int, upto: int, size: int) -> Iterable[tuple[int, int]]:
        """Consecutive seq ranges covering ``after < seq <= upto``, ``size`` seqs each, jumping gaps
        where the journal can tell where its rows start."""
        lo = after + 1
        while lo <= upto:
            try:
                query = "SELECT min(seq) FROM reports WHERE seq >= ?"
                first = self._reader.execute(query, (lo,)).fetchone()[0]
            except sqlite3.DatabaseError:
                first = lo
            if first is None:
                return
            lo = max(lo, first)
            hi = min(lo + size - 1, upto)
            yield lo, hi
            lo = hi + 1

    def _readable(self, query: Callable[[int, int], list[Any]], lo: int, hi: int) -> list[Any]:
        """``query(lo, hi)``; where it fails for damage, the halves, down to single seqs, which are
        recorded as unreadable and left out."""
        if lo > hi or self._known_unreadable(lo, hi):
            return []
        try:
            return query(lo, hi)
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
        if lo == hi:
            self._mark_unreadable(lo)
            return []
        middle = (lo + hi) // 2
        return self._readable(query, lo, middle) + self._readable(query, middle + 1, hi)

    def _known_unreadable(self, lo: int, hi: int) -> bool:
        return any(first <= lo and hi <= last for first, last in self.unreadable)

    def _mark_unreadable(self, seq: int) -> None:
        self.unreadable_reports += 1
        ranges = self.unreadable
        for span in ranges:
            if span[0] - 1 <= seq <= span[1] + 1:
                span[0], span[1] = min(span[0], seq), max(span[1], seq)
                break
        else:
            ranges.append([seq, seq])
        ranges.sort()
        merged: list[list[int]] = []
        for span in ranges:
            if merged and span[0] <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], span[1])
            else:
                merged.append(span)
        self.unreadable = merged

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

    def has_position(self, sink: str) -> bool:
        """Whether ``sink`` ever saved a position (a sink new to this journal has not)."""
        return self._reader.execute("SELECT 1 FROM sinks WHERE name = ?", (sink,)).fetchone() is not None

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

    def file_bytes(self) -> int:
        """The journal's size in use as its readers see it (cheap: three numbers from its header)."""
        try:
            pages, free, page_size = (
                self._reader.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("page_count", "freelist_count", "page_size")
            )
        except sqlite3.Error:
            return 0
        return int((pages - free) * page_size)

    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(self.path.stem + "-reserve")  # journal-reserve, not journal.sqlite3-*

    def restore_reserve(self) -> None:
        """Set RESERVE_BYTES aside for the next full-disk cleanup, if the disk has room for it twice."""
        reserve = self.reserve_path
        try:
            if reserve.exists():
                return
            disk = os.statvfs(self.path.parent)
            if disk.f_bavail * disk.f_frsize < 2 * RESERVE_BYTES:
                return
            with _private_files(), open(reserve, "wb") as file:
                file.write(bytes(RESERVE_BYTES))
                file.flush()
                os.fsync(file.fileno())
        except OSError as error:
            reserve.unlink(missing_ok=True)
            log_event(log, logging.WARNING, "journal_reserve_failed", path=str(reserve), error=str(error))

    async def wait_cleanup_wanted(self) -> None:
        """Return once the disk filled up or the journal went over its size cap (then prune)."""
        await self.cleanup_wanted.wait()
        self.cleanup_wanted = trio.Event()

    def prune(
        self, *, delivered_up_to: int, retention: timedelta, max_bytes: int, now: datetime
    ) -> dict[str, int]:
        """Delete what may go: delivered reports past retention; when over ``max_bytes`` (or, after
        the disk filled up, over 90% of the journal's size then), the oldest delivered reports, then
        (counted as dropped) the oldest undelivered. Runs on the caller's thread.

        Retention holds by two clocks: a report expires when ``now`` says it is older than
        ``retention`` and the relay has also been running for ``retention`` (:attr:`monotonic`, added
        up across restarts) since it was stored. A wall clock that jumps, either way, expires nothing
        early; time the relay was stopped does not count.

        The cleanup needs (almost) no free disk: it deletes in small transactions into a WAL that is
        checkpointed first (so its space is reused), then gives freed pages back to the file system
        (``PRAGMA incremental_vacuum``, journals created with ``auto_vacuum=INCREMENTAL``) and
        truncates the WAL.
        """
        with self._lock:
            return self._prune_locked(delivered_up_to, retention, max_bytes, now)

    def _prune_locked(
        self, delivered_up_to: int, retention: timedelta, max_bytes: int, now: datetime
    ) -> dict[str, int]:
        cutoff = format_time(now - retention)
        full = self.full_at_bytes is not None
        chunk = PRUNE_CHUNK_FULL if full else PRUNE_CHUNK
        if full:
            # Enough room for the reserve to be set aside again, and some for new reports.
            target = min(self.full_at_bytes * FULL_DISK_SHRINK, self.full_at_bytes - 3 * RESERVE_BYTES)
            max_bytes = min(max_bytes, max(int(target), 0))
            self.reserve_path.unlink(missing_ok=True)  # room for the checkpoint and the deletes
            self._checkpoint("PASSIVE")
        removed = {"expired": 0, "quarantine": 0, "delivered_for_space": 0, "dropped_undelivered": 0}
        guard_seq, guard_quarantine = self._expiry_guard(retention)
        expire_upto = min(delivered_up_to, guard_seq)
        lo = self._db.execute("SELECT min(seq) FROM reports").fetchone()[0]
        while lo is not None and lo <= expire_upto:
            hi = min(lo + chunk - 1, expire_upto)
            with _transaction(self._db):
                deleted = self._delete("seq >= ? AND seq <= ? AND received_at < ?", (lo, hi, cutoff))
            removed["expired"] += deleted
            if deleted == 0:  # reports are stored in time order: the rest is newer
                break
            if full:
                self._checkpoint("PASSIVE")
            lo = hi + 1
        with _transaction(self._db):
            removed["quarantine"] = self._db.execute(
                "DELETE FROM quarantine WHERE received_at < ? AND id <= ?", (cutoff, guard_quarantine)
            ).rowcount
            self._save_expiry_marks()
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
            chunk_end = oldest + chunk - 1
            with _transaction(self._db):
                if oldest <= delivered_up_to:
                    removed["delivered_for_space"] += self._delete(
                        "seq <= ?", (min(chunk_end, delivered_up_to),)
                    )
                else:
                    dropped = self._delete("seq <= ?", (chunk_end,))
                    removed["dropped_undelivered"] += dropped
                    self.dropped += dropped
            if full:
                self._checkpoint("PASSIVE")
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        if free and (full or free * 4 > pages):
            self._db.execute("PRAGMA incremental_vacuum").fetchall()
        if full:
            self._checkpoint("TRUNCATE")
            self.restore_reserve()
        if removed["dropped_undelivered"]:
            log_event(
                log,
                logging.WARNING,
                "journal_full_dropped_undelivered",
                count=removed["dropped_undelivered"],
                max_bytes=max_bytes,
            )
        return removed

    def _checkpoint(self, mode: str) -> None:
        """Copy the WAL into the journal so its space is reused (or, TRUNCATE, given back); a
        checkpoint that cannot finish (a reader, a full disk) is left for the next one."""
        try:
            self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.OperationalError as error:
            log_event(log, logging.WARNING, "journal_checkpoint_failed", mode=mode, error=str(error))

    # -- retention by running time --------------------------------------------------------------

    def running_time(self) -> float:
        """Seconds the relay has run with this journal, across restarts (the clock retention counts)."""
        return self._elapsed_before + (self.monotonic() - self._opened_at)

    def _load_expiry_marks(self) -> tuple[float, list[tuple[float, int, int]]]:
        try:
            saved = json.loads(self._meta("expiry_marks") or "{}")
            elapsed = float(saved.get("running_s", 0.0))
            marks = [(float(at), int(seq), int(quarantine)) for at, seq, quarantine in saved.get("marks", [])]
        except (ValueError, TypeError):
            elapsed, marks = 0.0, []
        quarantine = self._reader.execute("SELECT coalesce(max(id), 0) FROM quarantine").fetchone()[0]
        marks.append((elapsed, self.last_seq, quarantine))  # what is here now was stored by now
        return elapsed, marks

    def _expiry_guard(self, retention: timedelta) -> tuple[int, int]:
        """(seq, quarantine id): the newest rows stored at least ``retention`` of running time ago."""
        running = self.running_time()
        marks = self._expiry_marks
        step = retention.total_seconds() / EXPIRY_MARKS
        if running - marks[-1][0] >= step:
            quarantine = self._db.execute("SELECT coalesce(max(id), 0) FROM quarantine").fetchone()[0]
            marks.append((running, self.last_seq, quarantine))
        due = [index for index, mark in enumerate(marks) if mark[0] <= running - retention.total_seconds()]
        if not due:
            return 0, 0
        del marks[: due[-1]]  # older marks are covered by the newest due one
        return marks[0][1], marks[0][2]

    def _save_expiry_marks(self) -> None:
        marks = [[round(at, 1), seq, quarantine] for at, seq, quarantine in self._expiry_marks]
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('expiry_marks', ?)",
            (json.dumps({"running_s": round(self.running_time(), 1), "marks": marks}),),
        )

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


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _private_files:
    """Files created inside are readable by their owner only (umask 077): the journal holds positions."""

    def __enter__(self) -> None:
        self._umask = os.umask(0o077)

    def __exit__(self, *exc: object) -> None:
        os.umask(self._umask)


def _connect_writer(path: Path, synchronous: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # Another process (relay quarantine retry, relay requeue) may write at the same moment.
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # Before the first table: a new journal can give freed pages back to the file system
    # (PRAGMA incremental_vacuum), which a full disk needs. An existing journal keeps its setting.
    connection.execute("PRAGMA auto_vacuum=INCREMENTAL")
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    connection.execute("PRAGMA foreign_keys=OFF")
    # Fewer, larger checkpoints: less SD-card write amplification.
    connection.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
    return connection


def _connect_reader(path: Path) -> sqlite3.Connection:
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return reader


_SELECT_STORED = (
    "SELECT r.seq, r.device_id, r.protocol, r.transport, r.event, r.received_at, r.payload, r.raw,"
    " m.data FROM reports r LEFT JOIN media m ON m.seq = r.seq"
)


class _transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:  # SQLite rolls back by itself after some errors (a full disk)
            self.db.execute("ROLLBACK")


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


@dataclass
class Salvaged:
    """What :func:`salvage` recovered from a damaged journal."""

    reports: int = 0
    photos: int = 0
    unreadable: int = 0
    #: Seqs between the first and the last recovered report that were not found: rows lost with a
    #: damaged page (SQLite can skip them without an error), or deleted before.
    missing: int = 0
    #: Seq ranges of the damaged journal that could not be read, ``[first, last]``.
    unreadable_ranges: list[list[int]] = field(default_factory=list)


_SALVAGE_COLUMNS = "seq, device_id, protocol, transport, peer, received_at, event, time, payload, raw"


def salvage(source: str | Path, journal: Journal, *, window: int = 100) -> Salvaged:
    """Copy every report that can still be read from the damaged journal at ``source`` (one set
    aside at start) into ``journal``, oldest first, with its original ``received_at``, raw frame,
    payload and photo. Rows that cannot be read are skipped, range by range (bisected down to single
    reports). The copies get new seqs, so new ids, and no sink has delivered them: every sink sends
    them again. ``source`` is only read.

    :raises JournalError: ``source`` is not a journal whose reports can be found at all.
    """
    source = Path(source)
    if not source.exists():
        raise JournalError(f"no file {source}")
    try:
        damaged = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        damaged.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.Error as error:
        repaired = repaired_copy(source, journal.path.parent)  # the header alone may be damaged
        if repaired is None:
            raise JournalError(f"cannot read {source}: {error} (its header is damaged)") from error
        damaged = sqlite3.connect(f"file:{repaired}?mode=ro", uri=True)
    try:
        upto = _newest_seq(damaged)
        if upto is None:
            raise JournalError(f"cannot find the reports in {source}: its schema cannot be read")
        helper = _Bisector()

        def reports(lo: int, hi: int) -> list[tuple[Any, ...]]:
            if lo == hi:  # by equality: a range scan would step on to the next, maybe damaged, row
                one = f"SELECT {_SALVAGE_COLUMNS} FROM reports WHERE seq = ?"
                return damaged.execute(one, (lo,)).fetchall()
            query = f"SELECT {_SALVAGE_COLUMNS} FROM reports WHERE seq >= ? AND seq <= ? ORDER BY seq"
            return damaged.execute(query, (lo, hi)).fetchall()

        counts = Salvaged()
        first = last = None
        for lo in range(_oldest_seq(damaged), upto + 1, window):
            hi = min(lo + window - 1, upto)
            rows = helper.readable(reports, lo, hi)
            if len(rows) < hi - lo + 1:  # a damaged page can end a scan without an error
                got = {row[0] for row in rows}
                for seq in range(lo, hi + 1):
                    if seq not in got:
                        rows += helper.readable(reports, seq, seq)
                rows.sort()
            if not rows:
                continue
            first = rows[0][0] if first is None else first
            last = rows[-1][0]
            photos: dict[int, tuple[str, bytes]] = {}
            for seq in (row[0] for row in rows):
                try:
                    photo = damaged.execute("SELECT type, data FROM media WHERE seq = ?", (seq,)).fetchone()
                except sqlite3.DatabaseError:
                    continue
                if photo is not None:
                    photos[seq] = photo
            counts.reports += len(rows)
            counts.photos += len(photos)
            journal.insert_salvaged(rows, photos)
        counts.unreadable = helper.count
        counts.unreadable_ranges = helper.ranges
        if first is not None and last is not None:
            inside = sum(1 for a, b in helper.ranges for seq in range(a, b + 1) if first <= seq <= last)
            counts.missing = (last - first + 1) - counts.reports - inside
        return counts
    finally:
        damaged.close()


def _oldest_seq(db: sqlite3.Connection) -> int:
    try:
        return int(db.execute("SELECT min(seq) FROM reports").fetchone()[0] or 1)
    except sqlite3.DatabaseError:
        return 1


def _newest_seq(db: sqlite3.Connection) -> int | None:
    for query in ("SELECT max(seq) FROM reports", "SELECT seq FROM sqlite_sequence WHERE name = 'reports'"):
        try:
            row = db.execute(query).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None:
            return int(row[0] or 0)
    return None


class _Bisector:
    """Reads seq ranges, bisecting those that fail for damage; remembers the seqs that could not be read."""

    def __init__(self) -> None:
        self.count = 0
        self.ranges: list[list[int]] = []

    def readable(self, query: Callable[[int, int], list[Any]], lo: int, hi: int) -> list[Any]:
        try:
            return query(lo, hi)
        except sqlite3.DatabaseError as error:
            if not is_damage(error):
                raise
        if lo == hi:
            if any(a <= lo <= b for a, b in self.ranges):
                return []
            self.count += 1
            if self.ranges and self.ranges[-1][1] == lo - 1:
                self.ranges[-1][1] = lo
            else:
                self.ranges.append([lo, lo])
            return []
        middle = (lo + hi) // 2
        return self.readable(query, lo, middle) + self.readable(query, middle + 1, hi)


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
