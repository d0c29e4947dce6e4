"""``relay export``, and the read-only queries the other commands share (``relay tail``, the checks
that an id or a sink named on the command line exists).

They read the journal through their own read-only SQLite connection (``mode=ro``), so they work on a
running relay's journal as on a stopped one and never write to it. Every filter (device, time range,
frames kept only for passthrough, positions) is a ``WHERE`` clause; reports are read in pages by
``seq``, so an export of millions of reports holds one page in memory.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from ..errors import JournalError, RelayError
from ..journal import FRAME_EVENT, StoredReport
from ._progress import Progress

#: Reports read per query.
PAGE = 1000
#: The CSV header: the report's fields, in the order of its JSON document (attributes and alarms as JSON).
CSV_COLUMNS = (
    "id",
    "site",
    "received_at",
    "device_id",
    "protocol",
    "transport",
    "time",
    "valid",
    "lat",
    "lon",
    "altitude_m",
    "speed_kmh",
    "course_deg",
    "satellites",
    "alarms",
    "event",
    "driver_id",
    "attributes",
    "media_type",
    "media_bytes",
)
#: SQLite's fixed-width form of a stored time (``received_at`` keeps milliseconds only when there
#: are any, so the stored text does not sort as time does; this form does).
_SQL_TIME = "strftime('%Y-%m-%dT%H:%M:%f', r.received_at)"


@dataclass(frozen=True)
class ReportFilter:
    """Which reports a query returns: ``after_seq < seq <= through_seq``, of ``device``, received in
    ``since <= received_at < until``, only those with a position when ``positions``."""

    device: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    positions: bool = False
    after_seq: int = 0
    through_seq: int | None = None


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the journal at ``path``.

    :raises JournalError: there is no journal at ``path``, or it cannot be opened.
    """
    if not path.exists():
        raise JournalError(f"no journal at {path} (has the relay run with this data_dir?)")
    try:
        return sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise JournalError(f"cannot read journal {path}: {error}") from error


def journal_id(db: sqlite3.Connection) -> str:
    """The journal's id, the first part of every report id."""
    row = db.execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
    return row[0] if row else ""


def last_seq(db: sqlite3.Connection) -> int:
    return db.execute("SELECT coalesce(max(seq), 0) FROM reports").fetchone()[0]


def device_seen(db: sqlite3.Connection, device_id: str) -> bool:
    """Whether the journal knows the device (a ``devices`` row, or any report of it)."""
    query = (
        "SELECT EXISTS(SELECT 1 FROM devices WHERE device_id = ?)"
        " OR EXISTS(SELECT 1 FROM reports WHERE device_id = ?)"
    )
    return bool(db.execute(query, (device_id, device_id)).fetchone()[0])


def journal_sinks(path: Path) -> set[str]:
    """Every sink the journal at ``path`` has a position or a dead letter for.

    :raises JournalError: no journal at ``path``, or it cannot be read.
    """
    return {row[0] for row in _query(path, "SELECT name FROM sinks UNION SELECT sink FROM dead_letters")}


def dead_letter_sinks(path: Path, ids: list[int]) -> dict[int, tuple[str, str]]:
    """``{id: (sink, state)}`` of those of ``ids`` that are dead letters in the journal at ``path``."""
    marks = ",".join("?" * len(ids))
    query = f"SELECT id, sink, state FROM dead_letters WHERE id IN ({marks})"
    return {row[0]: (row[1], row[2]) for row in _query(path, query, ids)}


def quarantine_ids(path: Path, ids: list[int]) -> set[int]:
    """Those of ``ids`` that are quarantine rows in the journal at ``path``."""
    marks = ",".join("?" * len(ids))
    return {row[0] for row in _query(path, f"SELECT id FROM quarantine WHERE id IN ({marks})", ids)}


def _query(path: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    db = connect_read_only(path)
    try:
        return db.execute(sql, params or []).fetchall()
    except sqlite3.Error as error:
        raise JournalError(f"cannot read journal {path}: {error}") from error
    finally:
        db.close()


def sql_time(value: datetime) -> str:
    """``value`` as :data:`_SQL_TIME` writes a stored time, so the two compare as times."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}"


def read_reports(
    db: sqlite3.Connection,
    where: ReportFilter,
    *,
    site: str,
    limit: int,
    media: bool = True,
    by_device: bool = False,
) -> Iterator[StoredReport]:
    """At most ``limit`` reports matching ``where``, oldest first (``by_device``: the same reports,
    grouped by device, oldest first within each), read as they are iterated. Frames kept only for
    passthrough are never reports. ``media``: whether photos' bytes are read too.

    :raises JournalError: the journal cannot be read.
    """
    clauses = ["r.seq > ?", "r.event != ?"]
    params: list[Any] = [where.after_seq, FRAME_EVENT]
    if where.through_seq is not None:
        clauses.append("r.seq <= ?")
        params.append(where.through_seq)
    if where.device is not None:
        clauses.append("r.device_id = ?")
        params.append(where.device)
    if where.since is not None:
        clauses.append(f"{_SQL_TIME} >= ?")
        params.append(sql_time(where.since))
    if where.until is not None:
        clauses.append(f"{_SQL_TIME} < ?")
        params.append(sql_time(where.until))
    if where.positions:
        clauses.append("json_extract(r.payload, '$.lat') IS NOT NULL")
    photo = "(SELECT m.data FROM media m WHERE m.seq = r.seq)" if media else "NULL"
    sql = (
        f"SELECT r.seq, r.device_id, r.protocol, r.transport, r.event, r.received_at, r.payload, {photo}"
        f" FROM reports r WHERE {' AND '.join(clauses)} ORDER BY r.seq LIMIT ?"
    )
    params.append(limit)
    if by_device:
        sql = f"SELECT * FROM ({sql}) ORDER BY 2, 1"
    ident = journal_id(db)
    try:
        for row in db.execute(sql, params):
            yield _stored(row, ident, site)
    except sqlite3.Error as error:
        raise JournalError(f"cannot read reports from the journal: {error}") from error


def _stored(row: tuple[Any, ...], ident: str, site: str) -> StoredReport:
    seq, device_id, protocol, transport, event, received_at, payload, media = row
    # As the journal writes it: ids, site names and times need no JSON escaping.
    head = f'{{"id":"{ident}-{seq}","site":"{site}","received_at":"{received_at}",'
    return StoredReport(seq, device_id, protocol, transport, event, head, payload, None, media)


def parse_time(option: str, text: str) -> datetime:
    """ISO 8601, ``Z`` allowed, naive meaning UTC.

    :raises RelayError: not a time (the message names ``option``).
    """
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RelayError(
            f"{option}: expected an ISO 8601 time such as 2026-11-23T08:00:00Z, found {text!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def export(
    path: Path,
    out: IO[str],
    *,
    fmt: str,
    site: str,
    where: ReportFilter,
    limit: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the reports ``where`` selects (at most ``limit``), oldest first, to ``out`` as ``fmt``;
    return how many. GeoJSON and GPX hold only reports with a position; GPX groups them by device.

    :raises JournalError: no journal at ``path``, it cannot be read, or ``where.device`` was never seen.
    """
    db = connect_read_only(path)
    try:
        if where.device is not None and not device_seen(db, where.device):
            raise JournalError(f"device {where.device!r} was never seen by the journal at {path}")
        spatial = fmt in ("geojson", "gpx")
        if spatial:
            where = replace(where, positions=True)
        if fmt == "gpx":
            # One track per device: the oldest ``limit`` reports, grouped by device (in SQL).
            every = limit if limit is not None else -1  # SQLite: LIMIT -1 is no limit
            reports = read_reports(db, where, site=site, limit=every, media=False, by_device=True)
        else:
            reports = _pages(db, where, site=site, limit=limit, media=fmt == "jsonl")
        if progress is not None:
            reports = progress.counting(reports)
        writer = {"jsonl": _jsonl, "csv": _csv, "geojson": _geojson, "gpx": _gpx}[fmt]
        return writer(reports, out)
    finally:
        db.close()


def _pages(
    db: sqlite3.Connection, where: ReportFilter, *, site: str, limit: int | None, media: bool
) -> Iterator[StoredReport]:
    left = limit
    while left is None or left > 0:
        size = PAGE if left is None else min(PAGE, left)
        page = list(read_reports(db, where, site=site, limit=size, media=media))
        yield from page
        if len(page) < size:
            return
        where = replace(where, after_seq=page[-1].seq)
        if left is not None:
            left -= len(page)


def _jsonl(reports: Iterator[StoredReport], out: IO[str]) -> int:
    count = 0
    for report in reports:
        out.write(report.json_bytes().decode() + "\n")
        count += 1
    return count


def csv_row(document: dict[str, Any]) -> list[Any]:
    """A report's document as a CSV row of :data:`CSV_COLUMNS`."""
    media = document.get("media") or {}
    flat = {
        **document,
        "alarms": json.dumps(document.get("alarms") or []),
        "attributes": json.dumps(document.get("attributes") or {}, ensure_ascii=False),
        "media_type": media.get("type"),
        "media_bytes": media.get("bytes"),
    }
    return ["" if flat.get(column) is None else flat[column] for column in CSV_COLUMNS]


def _csv(reports: Iterator[StoredReport], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    count = 0
    for report in reports:
        writer.writerow(csv_row(report.document))
        count += 1
    return count


def _geojson(reports: Iterator[StoredReport], out: IO[str]) -> int:
    out.write('{"type":"FeatureCollection","features":[')
    count = 0
    for report in reports:
        document = dict(report.document)
        lat, lon = document.pop("lat"), document.pop("lon")
        feature = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]}}
        feature["properties"] = document
        out.write(("\n" if count == 0 else ",\n") + json.dumps(feature, ensure_ascii=False))
        count += 1
    out.write("\n]}\n")
    return count


def _gpx(reports: Iterator[StoredReport], out: IO[str]) -> int:
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    out.write('<gpx version="1.1" creator="relay" xmlns="http://www.topografix.com/GPX/1/1">\n')
    count = 0
    device: object = object()  # no device yet
    for report in reports:
        if report.device_id != device:
            if count:
                out.write("</trkseg></trk>\n")
            device = report.device_id
            name = f"<name>{escape(device)}</name>" if device is not None else ""
            out.write(f"<trk>{name}<trkseg>\n")
        document = report.document
        elevation = document.get("altitude_m")
        ele = f"<ele>{elevation}</ele>" if elevation is not None else ""
        when = document.get("time") or document["received_at"]
        out.write(
            f'<trkpt lat={quoteattr(str(document["lat"]))} lon={quoteattr(str(document["lon"]))}>'
            f"{ele}<time>{escape(when)}</time></trkpt>\n"
        )
        count += 1
    if count:
        out.write("</trkseg></trk>\n")
    out.write("</gpx>\n")
    return count
