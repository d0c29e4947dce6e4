"""A damaged SQLite header, rebuilt so that the pages behind it can be read (``relay salvage``).

The first 100 bytes of a database file describe it (the format string, the page size, the schema
format); a card that corrupts them makes an otherwise intact journal unreadable. The journal's own
values are known, so a copy of the file with a fresh header lets SQLite read every page that is still
good. The original file is never written.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
from pathlib import Path

MAGIC = b"SQLite format 3\x00"
#: Page sizes tried, the journal's own (SQLite's default) first.
PAGE_SIZES = (4096, 8192, 16384, 1024, 2048, 32768, 65536, 512)


def header(page_size: int, pages: int) -> bytes:
    """A 100-byte header for a file of ``pages`` pages in WAL mode, UTF-8, schema format 4."""
    return (
        MAGIC
        + struct.pack(">H", 1 if page_size == 65536 else page_size)
        + bytes([2, 2, 0, 64, 32, 32])  # WAL read/write versions, no reserved bytes, payload fractions
        + struct.pack(">II", 1, pages)  # change counter, database size in pages
        + struct.pack(">II", 0, 0)  # no freelist is known: its pages are simply not read
        + struct.pack(">II", 1, 4)  # schema cookie, schema format
        + struct.pack(">II", 0, 0)  # default cache size, no auto-vacuum root (reading does not need it)
        + struct.pack(">III", 1, 0, 0)  # UTF-8, user version, not incremental
        + bytes(24)  # application id and the reserved expansion bytes
        + struct.pack(">II", 1, 3_040_000)  # version-valid-for (= change counter), a SQLite version
    )


def repaired_copy(source: Path, directory: Path) -> Path | None:
    """A copy of ``source`` in ``directory`` with a rebuilt header whose schema SQLite can read, or
    ``None`` when no page size makes it readable."""
    size = source.stat().st_size
    copy = directory / f"{source.name}.header-repaired"
    for page_size in PAGE_SIZES:
        if size < page_size or size % page_size:
            continue
        shutil.copyfile(source, copy)
        with copy.open("r+b") as file:
            file.write(header(page_size, size // page_size))
        try:
            db = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
            try:
                if db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'reports'").fetchone()[0]:
                    return copy
            finally:
                db.close()
        except sqlite3.DatabaseError:
            continue
    copy.unlink(missing_ok=True)
    return None
