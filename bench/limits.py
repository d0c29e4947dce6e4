"""The physical limits each relay figure is compared with, measured in the same run.

- :func:`raw_sqlite`: the relay's own rows re-inserted with plain ``sqlite3`` ``executemany``, in
  batches, with the journal's schema and durability settings (WAL, ``synchronous``, the same
  ``wal_autocheckpoint``): what the disk and SQLite allow without the relay around them.
- :func:`bare_paho`: the same topics and payloads the relay publishes, from a plain paho publish loop
  (one thread, QoS 1, the same in-flight window) to the same broker.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from relay.journal import Journal

REPORT_COLUMNS = "device_id, protocol, transport, peer, received_at, event, time, payload, raw"
#: The journal's checkpoint setting (relay/journal.py), so the limit pays the same checkpoints.
WAL_AUTOCHECKPOINT = 4000


def committed_rows(database: Path, limit: int) -> list[tuple[Any, ...]]:
    """Up to ``limit`` report rows the relay committed, as it wrote them."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return db.execute(f"SELECT {REPORT_COLUMNS} FROM reports ORDER BY seq LIMIT ?", (limit,)).fetchall()
    finally:
        db.close()


def raw_sqlite(
    directory: Path, rows: Sequence[tuple[Any, ...]], *, total: int, batch: int, synchronous: str
) -> dict[str, float]:
    """Insert ``total`` rows (``rows`` repeated) in ``batch``-row transactions; return rows/s.

    The schema is the journal's, made by :meth:`Journal.open` on a fresh file; the inserts are plain
    ``sqlite3``: no decoding, no JSON, no event loop.
    """
    if not rows:
        raise ValueError("no rows to insert (the relay committed nothing)")
    path = directory / "raw.sqlite3"
    Journal.open(path, synchronous=synchronous).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
    db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
    batches = []
    source = list(rows)
    while sum(len(chunk) for chunk in batches) < total:
        for start in range(0, len(source), batch):
            batches.append(source[start : start + batch])
    sql = f"INSERT INTO reports ({REPORT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    inserted = 0
    started = time.perf_counter()
    for chunk in batches:
        db.execute("BEGIN IMMEDIATE")
        db.executemany(sql, chunk)
        db.execute("COMMIT")
        inserted += len(chunk)
        if inserted >= total:
            break
    elapsed = time.perf_counter() - started
    db.close()
    return {"rows": inserted, "seconds": elapsed, "rows_per_s": inserted / elapsed}


def bare_paho(port: int, messages: Sequence[tuple[str, bytes]], *, inflight: int) -> dict[str, float]:
    """Publish ``messages`` at QoS 1, at most ``inflight`` unacknowledged; messages/s until the last PUBACK.

    One thread drives paho with ``client.loop()``, as the relay drives it from trio. (Publishing from
    another thread while paho's own loop thread runs stalls with tens of thousands of messages queued,
    and more than 65,535 queued messages run out of message ids: neither measures the broker.)
    """
    acknowledged = 0
    connected = False

    def on_publish(*_: Any) -> None:
        nonlocal acknowledged
        acknowledged += 1

    def on_connect(*_: Any) -> None:
        nonlocal connected
        connected = True

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{time.monotonic_ns()}")
    client.max_inflight_messages_set(inflight)
    client.on_connect = on_connect
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    deadline = time.monotonic() + 10
    while not connected:
        if time.monotonic() > deadline:
            raise RuntimeError("bare paho could not connect to the bench broker")
        client.loop(0.1)
    total = len(messages)
    published = 0
    started = time.perf_counter()
    deadline = time.monotonic() + 600
    while acknowledged < total:
        while published < total and published - acknowledged < inflight:
            topic, payload = messages[published]
            client.publish(topic, payload, qos=1)
            published += 1
        if client.loop(1.0) != paho.MQTT_ERR_SUCCESS or time.monotonic() > deadline:
            raise RuntimeError(f"bare paho: {acknowledged} of {total} acknowledged")
    elapsed = time.perf_counter() - started
    client.disconnect()
    return {"messages": total, "seconds": elapsed, "messages_per_s": total / elapsed}
