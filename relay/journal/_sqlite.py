"""The journal's SQLite connections: how they are opened, the one way anything is written
(:func:`transaction`), and what SQLite's errors mean (a damaged file, a full disk)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: How long a write waits for another process's transaction before failing.
BUSY_TIMEOUT_MS = 10_000
#: SQLite's primary result codes for a damaged or unreadable file: I/O error, corrupt, not a database.
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 10, 11, 13, 26
#: Fewer, larger checkpoints: less SD-card write amplification (pages of WAL between two).
WAL_AUTOCHECKPOINT = 4000


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction (``BEGIN IMMEDIATE``): committed when the block ends, rolled back when it
    raises. Every write to a journal goes through here."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:  # SQLite rolls back by itself after some errors (a full disk)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def is_damage(error: BaseException) -> bool:
    """Is ``error`` SQLite saying that the file cannot be read: corrupt, not a database, an I/O error?"""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_NOTADB)


def is_disk_full(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == SQLITE_FULL


def connect_writer(path: Path, synchronous: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # Another process (relay quarantine retry, relay requeue) may write at the same moment.
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # No auto-vacuum: its pointer-map pages cost ~40 bytes more written per report (4%, measured with
    # the bench's wear figure), past the SD card's 1 KB budget. After a cleanup the freed pages are
    # reused by new reports; the file keeps its size (a journal made with INCREMENTAL keeps that).
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    connection.execute("PRAGMA foreign_keys=OFF")
    connection.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
    return connection


def connect_reader(path: Path) -> sqlite3.Connection:
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    reader.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return reader


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class private_files:
    """Files created inside are readable by their owner only (umask 077): the journal holds positions."""

    def __enter__(self) -> None:
        self._umask = os.umask(0o077)

    def __exit__(self, *exc: object) -> None:
        os.umask(self._umask)
