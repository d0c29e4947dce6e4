"""A journal opened read-only (:class:`JournalReader`, :meth:`Journal.open_read_only`): what ``relay status``,
``relay dead-letters`` and the status page read from a running or a stopped relay's journal. It never writes,
never migrates and never creates the file."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import JournalError


class JournalReader:
    """Read-only queries on the journal at :attr:`path`. Open with :meth:`open`; use as a context manager
    (or :meth:`close` it)."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    @classmethod
    def open(cls, path: str | Path) -> JournalReader:
        """:raises JournalError: no journal at ``path``, or it cannot be opened."""
        path = Path(path)
        if not path.exists():
            raise JournalError(f"no journal at {path} (has the relay run with this data_dir?)")
        try:
            return cls(path, sqlite3.connect(f"file:{path}?mode=ro", uri=True))
        except sqlite3.Error as error:
            raise JournalError(f"cannot open journal {path}: {error}") from error

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self, sinks: Sequence[str] | None, *, now: datetime) -> dict[str, Any]:
        """Devices, sink backlogs (of ``sinks``; None: of every sink that saved a position in the
        journal), quarantine and dead-letter counts, and the size in use.

        :raises JournalError: the journal cannot be read.
        """
        try:
            return _status(self._db, sinks, now)
        except sqlite3.Error as error:
            raise JournalError(f"cannot read journal {self.path}: {error}") from error

    def commands(self, *, device_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest commands (of ``device_id``), newest first: state, times, answer, error.

        :raises JournalError: the journal cannot be read (or has no command table yet).
        """
        from ._commands import list_commands

        try:
            return list_commands(self._db, device_id=device_id, limit=limit)
        except sqlite3.Error as error:
            raise JournalError(f"cannot read commands from {self.path}: {error}") from error

    def dead_letters(self, *, sink: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Dead letters (of ``sink``, or all), newest first, without their bodies' bytes (``bytes``: their
        length).

        :raises JournalError: the journal cannot be read.
        """
        try:
            cursor = self._db.execute(
                "SELECT id, sink, created_at, state, status, answer, first_seq, last_seq, reports,"
                " content_type, length(body) AS bytes, attempts FROM dead_letters WHERE ? IS NULL OR sink = ?"
                " ORDER BY id DESC LIMIT ?",
                (sink, sink, limit),
            )
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]
        except sqlite3.Error as error:
            raise JournalError(f"cannot read dead letters from {self.path}: {error}") from error


def _saved_uplink(db: sqlite3.Connection, sink: str, now: datetime) -> dict[str, Any]:
    """The sink's uplink as the relay last saved it (at most 30 s old while it runs, and at its stop):
    ``connected``, ``connected_since``/``disconnected_since``, ``last_error``, ``uplink_windows`` of the
    last 24 hours, and ``uplink_saved_at``; nothing if it never saved one."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (f"uplink:{sink}",)).fetchone()
    try:
        saved = json.loads(row[0]) if row else None
        if not isinstance(saved, dict):
            return {}
        kept_from = (now - timedelta(days=1)).isoformat(timespec="seconds").replace("+00:00", "Z")
        windows = [
            w for w in saved.get("uplink_windows") or () if w.get("open") or w.get("came_up", "") >= kept_from
        ]
    except (ValueError, TypeError, AttributeError):
        return {}
    saved["uplink_windows"] = windows
    saved["uplink_saved_at"] = saved.pop("saved_at", None)
    return saved


def _status(db: sqlite3.Connection, sinks: Sequence[str] | None, now: datetime) -> dict[str, Any]:
    """Bounded, whatever the journal holds: besides the ``devices`` table and one count per sink, it
    reads the newest 1000 reports (the ``devices`` rows of a running relay lag behind them by up to
    DEVICE_ROW_INTERVAL_S, and after a ``kill -9`` stay so: last report, last fix, battery, recent
    alarms) and, for the 500 most recently seen devices (the only
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
    columns = {row[1] for row in db.execute("PRAGMA table_info(devices)")}
    state = (
        "last_event, battery, alarms, online, ignition"
        if "online" in columns
        else "NULL, NULL, NULL, NULL, NULL"
    )
    devices = []
    for index, row in enumerate(
        db.execute(
            "SELECT device_id, protocol, transport, peer, last_seen, last_time, last_lat, last_lon, last_seq,"
            f" {state} FROM devices ORDER BY last_seen DESC"
        )
    ):
        device_id, protocol, transport, peer, last_seen, last_time, lat, lon, seq = row[:9]
        last_event, row_battery, row_alarms, online, ignition = row[9:]
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
            "online": None if online is None else bool(online),
            "ignition": None if ignition is None else bool(ignition),
        }
        if index < detailed:
            document = newest.get(device_id)
            if document is None and last_event is None and seq is not None:
                found = db.execute("SELECT payload FROM reports WHERE seq = ?", (seq,)).fetchone()
                document = json.loads(found[0]) if found else None
            device["last_event"] = document.get("event") if document else last_event
            device["alarms"] = list(document.get("alarms") or ()) if document else []
            device["battery"] = (
                battery.get(device_id)
                or (json.loads(row_battery) if row_battery else None)
                or {
                    k: v
                    for k, v in ((document or {}).get("attributes") or {}).items()
                    if k.startswith("battery")
                }
            )
            device["recent_alarms"] = recent_alarms.get(device_id) or (
                json.loads(row_alarms) if row_alarms else []
            )
        devices.append(device)
    if sinks is None:  # no config said which: the sinks that saved a position in this journal
        sinks = [name for (name,) in db.execute("SELECT name FROM sinks ORDER BY name")]
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
                **_saved_uplink(db, name, now),
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
        "commands": _commands_status(db, now),
        "devices": devices,
        "reports": count,
        "last_seq": last_seq,
        "sinks": backlog,
        "quarantine": quarantine,
        "dead_letters": dead_letters,
        "size_bytes": (pages - free) * page_size,
    }


def _commands_status(db: sqlite3.Connection, now: datetime) -> dict[str, Any] | None:
    """Commands waiting to be sent (``queued``, with the oldest's creation and age) and sent ones
    waiting for their answer (``sent``); ``None`` for a journal from before commands. The table holds
    finished commands only for the journal's retention, so the count stays small."""
    try:
        queued, oldest, sent = db.execute(
            "SELECT coalesce(sum(state = 'queued'), 0), min(CASE WHEN state = 'queued' THEN created_at END),"
            " coalesce(sum(state = 'sent'), 0) FROM commands WHERE state IN ('queued', 'sent')"
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    return {"queued": queued, "sent": sent, "oldest_queued_at": oldest, "oldest_age_s": _age(oldest, now)}


def _age(stamp: str | None, now: datetime) -> float | None:
    if not stamp:
        return None
    then = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    seconds = (now - then).total_seconds()
    return None if math.isnan(seconds) else round(seconds, 1)
