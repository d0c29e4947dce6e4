"""``relay tail``: reports as they are committed, from a running relay's journal, until Ctrl-C.

The journal is only read (its own read-only connection). Every :data:`POLL_S` it asks SQLite whether
another connection committed since (``PRAGMA data_version``, which costs no read of the tables); only
then does it read the reports after the last one shown.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..errors import JournalError
from ..journal import StoredReport
from ._export import ReportFilter, connect_read_only, last_seq, read_reports

#: Seconds between two looks at the journal.
POLL_S = 0.5
#: Reports read per query.
PAGE = 1000


def tail(
    path: Path,
    *,
    site: str,
    device: str | None = None,
    human: bool = False,
    out: IO[str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print each report committed from now on (of ``device``), as a JSON line or (``human``) a short
    line, until interrupted; 0 then.

    :raises JournalError: no journal at ``path``, or it cannot be read.
    """
    out = out if out is not None else sys.stdout
    db = connect_read_only(path)
    try:
        after = last_seq(db)
        print(f"tail: following {path} after report {after} (Ctrl-C stops)", file=sys.stderr, flush=True)
        version = None
        while True:
            now = _data_version(db)
            if now != version:
                version = now
                after = _show_new(db, after, site=site, device=device, human=human, out=out)
            sleep(POLL_S)
    except KeyboardInterrupt:
        return 0
    finally:
        db.close()


def _data_version(db: sqlite3.Connection) -> int:
    try:
        return db.execute("PRAGMA data_version").fetchone()[0]
    except sqlite3.Error as error:
        raise JournalError(f"cannot read the journal: {error}") from error


def _show_new(
    db: sqlite3.Connection, after: int, *, site: str, device: str | None, human: bool, out: IO[str]
) -> int:
    """Print the reports after ``after``; the newest seq looked at."""
    upto = last_seq(db)
    while after < upto:
        where = ReportFilter(device=device, after_seq=after, through_seq=upto)
        page = list(read_reports(db, where, site=site, limit=PAGE))
        for report in page:
            out.write(human_line(report) if human else report.json_bytes().decode())
            out.write("\n")
        out.flush()
        after = page[-1].seq if len(page) == PAGE else upto
    return max(after, upto)


def human_line(report: StoredReport) -> str:
    """``received_at device protocol/transport event [lat,lon speed course] [alarms]``."""
    document = report.document
    parts = [
        document["received_at"],
        report.device_id or "-",
        f"{report.protocol}/{report.transport}",
        report.event,
    ]
    if document.get("lat") is not None:
        parts.append(f"{document['lat']:.6f},{document['lon']:.6f}")
        if document.get("speed_kmh") is not None:
            parts.append(f"{document['speed_kmh']:g}km/h")
        if document.get("course_deg") is not None:
            parts.append(f"{document['course_deg']:g}deg")
    if document.get("alarms"):
        parts.append("alarms=" + ",".join(document["alarms"]))
    if document.get("media"):
        parts.append(f"photo={document['media'].get('bytes')}B")
    return " ".join(parts)
