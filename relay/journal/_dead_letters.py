"""Dead letters: what a sink's server refused for good (an HTTP 4xx other than 408/429), kept with the
exact request body and the server's answer until ``relay requeue`` marks it for sending again and it is
delivered."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from drivers import format_time

from ..errors import JournalError
from ._schema import migrations
from ._sqlite import transaction

#: Longest server answer kept with a dead letter.
DEAD_LETTER_ANSWER_CHARS = 2000


class DeadLetters:
    """The :class:`~relay.journal.Journal`'s dead letters (a part of the Journal class)."""

    _lock: threading.Lock
    _db: sqlite3.Connection
    _reader: sqlite3.Connection

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
        with self._lock, transaction(self._db):
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
        with self._lock, transaction(self._db):
            if delivered:
                self._db.execute("DELETE FROM dead_letters WHERE id = ?", (letter_id,))
            else:
                self._db.execute(
                    "UPDATE dead_letters SET state = 'parked', status = ?, answer = ?,"
                    " attempts = attempts + 1"
                    " WHERE id = ?",
                    (status, answer[:DEAD_LETTER_ANSWER_CHARS], letter_id),
                )


def requeue_dead_letters(
    path: str | Path, *, sink: str | None = None, ids: Sequence[int] | None = None
) -> int:
    """Mark dead letters for sending again (all of ``sink``'s, or all, when ``ids`` is None); return
    how many. A running relay picks them up within seconds; a stopped one when it starts.

    :raises JournalError: no journal at ``path``, or it cannot be written.
    """
    db = _connect_for_writing(path)
    try:
        where = "state = 'parked' AND (? IS NULL OR sink = ?)"
        params: list[Any] = [sink, sink]
        if ids is not None:
            where += f" AND id IN ({','.join('?' * len(ids))})"
            params += list(ids)
        with transaction(db):
            return db.execute(f"UPDATE dead_letters SET state = 'requeued' WHERE {where}", params).rowcount
    except sqlite3.Error as error:
        raise JournalError(f"cannot requeue dead letters in {path}: {error}") from error
    finally:
        db.close()


def _connect_for_writing(path: str | Path) -> sqlite3.Connection:
    path = Path(path)
    if not path.exists():
        raise JournalError(f"no journal at {path} (has the relay run with this data_dir?)")
    try:
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        # A journal made by an older relay has no dead_letters table yet: bring it up to date.
        migrations.apply(Database(db))
        return db
    except sqlite3.Error as error:
        raise JournalError(f"cannot open journal {path}: {error}") from error
