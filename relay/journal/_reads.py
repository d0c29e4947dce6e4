"""The journal's reads for sinks: committed reports after a position, per device, each device's newest;
reports on a damaged page are skipped (bisected down to single reports) and recorded, never stopping a
sink."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

import trio

from ..logs import log_event
from ._records import StoredReport
from ._sqlite import is_damage
from ._statistics import JournalStatistics

log = logging.getLogger("relay.journal")

_SELECT_STORED = (
    "SELECT r.seq, r.device_id, r.protocol, r.transport, r.event, r.received_at, r.payload, r.raw,"
    " m.data FROM reports r LEFT JOIN media m ON m.seq = r.seq"
)


class Reads:
    """The :class:`~relay.journal.Journal`'s reads (a part of the Journal class)."""

    site: str
    journal_id: str
    last_seq: int
    stats: JournalStatistics
    unreadable: list[list[int]]
    _reader: sqlite3.Connection
    _appended: trio.Event
    _examined: tuple[int, int] | None

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
            self.stats.read_errors += 1
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
        self.stats.read_errors += 1
        before = self.stats.unreadable_reports
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
        if self.stats.unreadable_reports > before:
            log_event(
                log,
                logging.ERROR,
                "journal_reports_unreadable",
                skipped=self.stats.unreadable_reports - before,
                total=self.stats.unreadable_reports,
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
        self.stats.unreadable_reports += 1
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
