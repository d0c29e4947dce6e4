"""The journal's files: the start-up check, and setting a damaged journal aside (its reports can be
recovered with :mod:`._salvage`)."""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ._sqlite import BUSY_TIMEOUT_MS, is_damage


def file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of ``path``, or ``None`` when there is no such file."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def companions(path: Path) -> list[Path]:
    """The journal file and its WAL and shared-memory files."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def stamp(now: datetime) -> str:
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
    aside = path.with_name(f"{path.name}.damaged-{stamp(now)}")
    for source, target in zip(companions(path), companions(aside), strict=True):
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
