"""The trio floor: the least a trio server must do per report for what the relay promises.

    python -m bench.floor --port P --database FILE [--cpu N]

Per connection: read from TCP, cut the gps103 frames and parse them with one compiled regex
(:data:`bench.floors.GPS103`), queue the rows to one writer, wait for their commit, then answer
``ON`` per frame (what the relay answers the bench's gps103 frames). The writer group-commits
with ``executemany`` in a worker thread into the journal's ``reports`` table (WAL,
``synchronous=FULL``, the journal's ``wal_autocheckpoint``), its commits spaced as the journal's
are: at least ``COMMIT_INTERVAL_S`` apart, early once ``COMMIT_EARLY_ITEMS`` rows wait. No
sniffing, no other protocol, no ``devices`` rows, no metrics, no logging, no limits: the relay's
ingest figure divided by this one says what all of those cost together. Prints ``listening`` once
the port accepts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sqlite3
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import trio

from relay.journal import Journal

from .floors import GPS103, gps103_fix
from .limits import REPORT_COLUMNS, WAL_AUTOCHECKPOINT

#: The journal's defaults (``[journal] commit_interval_ms``, ``COMMIT_EARLY_ITEMS``, ``max_batch``).
COMMIT_INTERVAL_S = 0.2
COMMIT_EARLY_ITEMS = 128
MAX_BATCH = 2000
RECEIVE_SIZE = 65536
_INSERT = f"INSERT INTO reports ({REPORT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


class _Ticket:
    __slots__ = ("done", "rows")

    def __init__(self, rows: list[tuple[object, ...]]) -> None:
        self.rows = rows
        self.done = trio.Event()


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")[:-6] + "Z"


def rows_for(chunk: bytes, peer: str) -> list[tuple[object, ...]]:
    """The ``reports`` rows for the gps103 frames in ``chunk``: the parse and the stored JSON."""
    received = _iso(datetime.now(UTC))
    rows = []
    for match in GPS103.finditer(chunk):
        fix = gps103_fix(match)
        when = _iso(fix.time)
        document = {
            "device_id": fix.device_id,
            "protocol": "gps103",
            "transport": "tcp",
            "time": when,
            "valid": fix.valid,
            "lat": round(fix.lat, 7),
            "lon": round(fix.lon, 7),
            "speed_kmh": round(fix.speed_kmh, 3),
            "course_deg": fix.course_deg,
            "event": "position",
        }
        rows.append(
            (
                fix.device_id,
                "gps103",
                "tcp",
                peer,
                received,
                "position",
                when,
                json.dumps(document, separators=(",", ":")),
                match.group(),
            )
        )
    return rows


class Writer:
    """One SQLite connection, group commits in a worker thread, spaced as the journal's."""

    def __init__(self, database: Path) -> None:
        Journal.open(database, device_index=False).close()  # the journal's schema, nothing more
        self.db = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
        self.send, self.receive = trio.open_memory_channel[_Ticket](10_000)
        self.commits = 0

    def _write(self, rows: list[tuple[object, ...]]) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(_INSERT, rows)
        self.db.execute("COMMIT")

    async def run(self) -> None:
        last_commit = -math.inf
        while True:
            batch = [await self.receive.receive()]
            size = len(batch[0].rows)
            deadline = last_commit + COMMIT_INTERVAL_S
            while size < MAX_BATCH:
                try:
                    ticket = self.receive.receive_nowait()
                except trio.WouldBlock:
                    if size >= COMMIT_EARLY_ITEMS or trio.current_time() >= deadline:
                        break
                    waited: _Ticket | None = None
                    with trio.move_on_at(deadline):
                        waited = await self.receive.receive()
                    if waited is None:
                        break
                    ticket = waited
                batch.append(ticket)
                size += len(ticket.rows)
            rows = [row for ticket in batch for row in ticket.rows]
            await trio.to_thread.run_sync(self._write, rows)
            self.commits += 1
            last_commit = trio.current_time()
            for ticket in batch:
                ticket.done.set()


async def serve(port: int, database: Path) -> None:
    writer = Writer(database)

    async def connection(stream: trio.SocketStream) -> None:
        host, peer_port = stream.socket.getpeername()[:2]
        peer = f"{host}:{peer_port}"
        buffer = b""
        async with stream:
            while data := await stream.receive_some(RECEIVE_SIZE):
                buffer += data
                end = buffer.rfind(b";")
                if end < 0:
                    continue
                chunk, buffer = buffer[: end + 1], buffer[end + 1 :]
                rows = rows_for(chunk, peer)
                if not rows:
                    continue
                ticket = _Ticket(rows)
                await writer.send.send(ticket)
                await ticket.done.wait()
                await stream.send_all(b"ON" * len(rows))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        await nursery.start(partial(trio.serve_tcp, connection, port, host="127.0.0.1", backlog=4096))
        print("listening", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--cpu", type=int, help="pin to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve, args.port, args.database)


if __name__ == "__main__":
    main()
