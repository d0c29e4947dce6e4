"""Back up and restore the journal: ``relay backup FILE`` and ``relay restore FILE``.

The journal is SQLite in WAL mode: committed reports may sit in ``journal.sqlite3-wal`` for minutes, so
copying ``journal.sqlite3`` alone is not a backup, and copying it with its ``-wal`` while the relay writes
can give a torn copy. :func:`backup` uses SQLite's online backup API inside one read transaction: the copy
is the journal exactly as it was at one instant (every report committed before the backup started is in
it), taken while the relay keeps committing (WAL readers never block the writer). The result is a single
self-contained file in rollback-journal mode.

:func:`restore` puts such a file back as the journal of a stopped relay: it refuses anything that is not
an intact relay journal of a schema this relay knows, refuses while any process has the journal open, and
moves the current journal aside (never deletes it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..errors import JournalError
from ._schema import SCHEMA_VERSION

#: Pages copied per backup step (4 KiB pages: 1 MiB), between two progress reports.
PAGES_PER_STEP = 256
SQLITE_MAGIC = b"SQLite format 3\x00"
#: The byte of a WAL database's ``-shm`` file on which every open connection holds a shared POSIX lock
#: (SQLite's unix VFS, ``UNIX_SHM_DMS``); an exclusive lock on it succeeds only when nobody has it open.
_SHM_DMS_BYTE = 128
#: How many lines of ``PRAGMA integrity_check`` output an error message quotes.
_INTEGRITY_LINES = 5

Progress = Callable[[int, int], None]  # (pages copied, pages in all)


class BackupError(JournalError):
    """A backup or restore was refused or failed; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What :func:`restore` did."""

    journal: Path
    #: Where the journal that was replaced now is (``None``: there was none).
    moved_aside: Path | None
    reports: int
    schema_version: int


def backup(
    database: Path,
    target: Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
    pages_per_step: int = PAGES_PER_STEP,
) -> int:
    """Copy the journal at ``database`` to ``target`` as one consistent snapshot; return the page count.

    Safe while a relay is running on ``database``. ``target`` is written under a temporary name, fsynced
    and renamed, so it is either the whole backup or absent; it is readable by its owner only.

    :raises BackupError: ``target`` exists and ``force`` is false, there is no journal at ``database``,
        or SQLite fails (the message names the file).
    """
    database, target = Path(database), Path(target)
    if not database.exists():
        raise BackupError(f"no journal at {database} (has the relay run with this data_dir?)")
    if target.exists() and not force:
        raise BackupError(f"{target} exists; pass --force to overwrite it")
    try:
        fd, part_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as error:
        raise BackupError(f"cannot write {target}: {error}") from error
    os.close(fd)
    part = Path(part_name)
    try:
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, isolation_level=None)
        destination = sqlite3.connect(part, isolation_level=None)
        try:
            # One read transaction across every step: the copy is the snapshot taken here, and commits
            # made meanwhile neither show in it nor make SQLite restart the copy.
            source.execute("BEGIN")
            source.execute("SELECT count(*) FROM sqlite_master").fetchone()

            def step(_status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress(total - remaining, total)

            source.backup(destination, pages=pages_per_step, progress=step)
            source.execute("COMMIT")
            pages = destination.execute("PRAGMA page_count").fetchone()[0]
            # One file on its own: no -wal needed beside it (the relay turns WAL back on when it opens it).
            destination.execute("PRAGMA journal_mode=DELETE")
        finally:
            source.close()
            destination.close()
        _fsync(part)
        os.replace(part, target)
        _fsync(target.parent)
        return pages
    except (OSError, sqlite3.Error) as error:
        raise BackupError(f"cannot back up {database} to {target}: {error}") from error
    finally:
        part.unlink(missing_ok=True)


def restore(backup_file: Path, database: Path, *, now: datetime | None = None) -> RestoreResult:
    """Make the journal backup ``backup_file`` the journal at ``database`` (the relay must be stopped).

    Refuses, changing nothing, when ``backup_file`` is not an SQLite file, not a relay journal, of a newer
    schema than this relay's, or fails ``PRAGMA integrity_check``; and when any process has ``database``
    open. Otherwise the current journal (with its ``-wal`` and ``-shm``) is renamed to
    ``<name>.before-restore-<UTC time>`` and the backup copied in, owned like the data directory when run
    as root. The restored journal gets a new journal id, so reports stored from now on never reuse a
    report ``id`` a receiver may already have seen from the replaced journal.

    :raises BackupError: why it refused or failed.
    """
    backup_file, database = Path(backup_file), Path(database)
    if not backup_file.is_file():
        raise BackupError(f"{backup_file}: no such file")
    if not database.parent.is_dir():
        raise BackupError(f"data directory {database.parent} does not exist")
    ensure_not_in_use(database)
    fd, part_name = tempfile.mkstemp(dir=database.parent, prefix=f".{database.name}.", suffix=".restore")
    os.close(fd)
    part = Path(part_name)
    try:
        try:
            shutil.copyfile(backup_file, part)
        except OSError as error:
            raise BackupError(f"cannot copy {backup_file} into {database.parent}: {error}") from error
        version, reports = _checked_journal(part, shown_as=backup_file)
        _fsync(part)
        ensure_not_in_use(database)  # the copy took a while: check again just before the switch
        aside = _move_aside(database, now or datetime.now(UTC))
        _own_like(part, aside, database.parent)
        os.replace(part, database)
        _fsync(database.parent)
    finally:
        part.unlink(missing_ok=True)
    return RestoreResult(database, aside, reports, version)


def backup_command(target: Path, database: Path, *, force: bool) -> int:
    """``relay backup``: a page counter on stderr while it copies, then what was written."""

    def progress(done: int, total: int) -> None:
        print(f"\rbackup: {done}/{total} pages", end="", file=sys.stderr, flush=True)

    pages = backup(database, target, force=force, progress=progress)
    print(f"\nbackup: {database} -> {target} ({pages} pages)", file=sys.stderr)
    return 0


def restore_command(backup_file: Path, database: Path) -> int:
    """``relay restore``: what was restored, and where the replaced journal went."""
    result = restore(backup_file, database)
    if result.moved_aside:
        print(f"restore: the replaced journal is now {result.moved_aside}", file=sys.stderr)
    print(
        f"restore: {backup_file} -> {result.journal}"
        f" ({result.reports} reports, schema {result.schema_version})"
    )
    return 0


def ensure_not_in_use(database: Path) -> None:
    """Refuse (:class:`BackupError`) while any process has the journal at ``database`` open.

    Looks for the journal among every readable process's open files (this process's too), then tries an
    exclusive lock on the byte of its ``-shm`` file that each open WAL connection holds shared (this sees
    other users' processes as well).
    """
    names = {str(database.resolve()) + suffix for suffix in ("", "-wal", "-shm")}
    for pid, command in _processes_holding(names):
        raise BackupError(
            f"{database} is open in process {pid} ({command}): stop the relay first (systemctl stop relay)"
        )
    shm = Path(f"{database}-shm")
    try:
        fd = os.open(shm, os.O_RDWR)
    except OSError:
        return  # no -shm (no WAL connection since the last clean close) or not ours to lock
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS_BYTE)
    except OSError:
        raise BackupError(
            f"{database} is open in another process: stop the relay first (systemctl stop relay)"
        ) from None
    finally:
        os.close(fd)  # releases the lock


def _processes_holding(names: set[str]) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or another user's process
            continue
        if names & {_link(fd) for fd in fds}:
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                command = "?"
            found.append((int(entry.name), command.strip() or "?"))
    return found


def _link(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:  # closed meanwhile (the listing's own descriptor, for one)
        return ""


def _checked_journal(path: Path, *, shown_as: Path) -> tuple[int, int]:
    """The checks of :func:`restore` on ``path``, a private copy of ``shown_as``; once they pass, give it
    a fresh journal id and make it a single rollback-mode file. Returns (schema version, reports)."""
    with open(path, "rb") as file:
        if file.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise BackupError(f"{shown_as} is not a relay journal (not an SQLite database)")
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as error:
        raise BackupError(f"{shown_as} cannot be opened: {error}") from error
    try:
        try:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"meta", "reports"} <= tables or not db.execute(
                "SELECT 1 FROM meta WHERE key = 'journal_id'"
            ).fetchone():
                raise BackupError(f"{shown_as} is not a relay journal (no meta table with a journal id)")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
        except sqlite3.DatabaseError as error:
            raise BackupError(f"{shown_as} is damaged: {error}") from error
        if problems != ["ok"]:
            shown = "; ".join(problems[:_INTEGRITY_LINES])
            raise BackupError(
                f"{shown_as} is damaged: integrity_check found {len(problems)} problem(s): {shown}"
            )
        if version > SCHEMA_VERSION:
            raise BackupError(
                f"{shown_as} has journal schema {version}, newer than this relay's {SCHEMA_VERSION}:"
                " restore it with the relay version that made it"
            )
        reports = db.execute("SELECT count(*) FROM reports").fetchone()[0]
        db.execute("UPDATE meta SET value = ? WHERE key = 'journal_id'", (secrets.token_hex(4),))
        db.execute("PRAGMA journal_mode=DELETE")
        return version, reports
    finally:
        db.close()


def _move_aside(database: Path, now: datetime) -> Path | None:
    """Rename the journal and its ``-wal``/``-shm`` together: SQLite applies a ``-wal`` to whatever
    database has the name it belongs to, so none may stay behind for the restored file."""
    if not any(Path(f"{database}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
        return None
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = database.with_name(f"{database.name}.before-restore-{stamp}")
    counter = 1
    while aside.exists():
        counter += 1
        aside = database.with_name(f"{database.name}.before-restore-{stamp}-{counter}")
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.rename(f"{database}{suffix}", f"{aside}{suffix}")
    with contextlib.suppress(FileNotFoundError):
        os.rename(database, aside)
    return aside


def _own_like(path: Path, previous: Path | None, data_dir: Path) -> None:
    """Give the restored file the replaced journal's mode and owner (else the data dir's owner, 0640)."""
    reference = previous.stat() if previous is not None and previous.exists() else None
    os.chmod(path, reference.st_mode & 0o777 if reference else 0o640)
    reference = reference or data_dir.stat()
    if os.geteuid() == 0:
        os.chown(path, reference.st_uid, reference.st_gid)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
