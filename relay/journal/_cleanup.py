"""The journal's housekeeping: retention (by the wall clock and by the relay's running time), the size
cap, and the cleanup after the disk filled up, with the reserve file set aside for it."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import trio

from drivers import format_time

from ..logs import log_event
from ._quarantine import QUARANTINE_ROW_COST, QuarantineBudget
from ._sqlite import WAL_AUTOCHECKPOINT, private_files, transaction
from ._statistics import JournalStatistics

log = logging.getLogger("relay.journal")

#: Rows deleted per transaction by the cleanup: each transaction needs only a little WAL (and disk).
PRUNE_CHUNK = 500
#: On a full disk the cleanup aims this far below the journal's size when the disk filled up.
FULL_DISK_SHRINK = 0.9
#: Space kept free for the cleanup, as a file next to the journal deleted when the disk fills up: a
#: checkpoint and the deletes need some room before they give room back: a checkpoint may have to grow
#: the journal by a whole WAL (WAL_AUTOCHECKPOINT pages).
RESERVE_BYTES = WAL_AUTOCHECKPOINT * 4096 + 4 * 1024 * 1024
#: Rows deleted per transaction by the cleanup on a full disk.
PRUNE_CHUNK_FULL = 50
#: Retention counts the relay's running time: expiry marks are kept this finely (a fraction of retention).
EXPIRY_MARKS = 200


class Cleanup:
    """The :class:`~relay.journal.Journal`'s housekeeping (a part of the Journal class)."""

    path: Path
    last_seq: int
    stats: JournalStatistics
    max_devices: int
    full_at_bytes: int | None
    cleanup_wanted: trio.Event
    quarantine_budget: QuarantineBudget
    monotonic: Callable[[], float]
    _lock: threading.Lock
    _db: sqlite3.Connection
    _reader: sqlite3.Connection
    _opened_at: float
    _elapsed_before: float
    _expiry_marks: list[tuple[float, int, int]]

    def _meta(self, key: str) -> str:
        row = self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else ""

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
            with private_files(), open(reserve, "wb") as file:
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
        checkpointed first (so its space is reused), then truncates the WAL; freed pages take new reports
        (``PRAGMA incremental_vacuum`` gives them back to the file system in a journal made with
        ``auto_vacuum=INCREMENTAL``; new journals are not, for the SD card's sake).
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
            with transaction(self._db):
                deleted = self._delete("seq >= ? AND seq <= ? AND received_at < ?", (lo, hi, cutoff))
            removed["expired"] += deleted
            if deleted == 0:  # reports are stored in time order: the rest is newer
                break
            if full:
                self._checkpoint("PASSIVE")
            lo = hi + 1
        with transaction(self._db):
            removed["quarantine"] = self._db.execute(
                "DELETE FROM quarantine WHERE received_at < ? AND id <= ?", (cutoff, guard_quarantine)
            ).rowcount
            self._save_expiry_marks()
        if removed["quarantine"]:
            self.quarantine_budget.reset(self._quarantine_usage())
        over = self._db.execute("SELECT count(*) FROM devices").fetchone()[0] - self.max_devices
        if over > 0:  # the least recently seen devices' rows go (random ids from a flood)
            with transaction(self._db):
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
            with transaction(self._db):
                if oldest <= delivered_up_to:
                    removed["delivered_for_space"] += self._delete(
                        "seq <= ?", (min(chunk_end, delivered_up_to),)
                    )
                else:
                    dropped = self._delete("seq <= ?", (chunk_end,))
                    removed["dropped_undelivered"] += dropped
                    self.stats.dropped += dropped
            if full:
                self._checkpoint("PASSIVE")
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        if free and (full or free * 4 > pages):
            self._db.execute("PRAGMA incremental_vacuum").fetchall()
        if full:
            self._checkpoint("TRUNCATE")
            self.restore_reserve()
            self.full_at_bytes = None
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
