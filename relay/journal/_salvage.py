"""Salvage (``relay salvage``): copy the reports that can still be read from a damaged journal, set aside
at start, into the journal in use."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import JournalError
from ._header import repaired_copy
from ._journal import Journal
from ._sqlite import is_damage


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

