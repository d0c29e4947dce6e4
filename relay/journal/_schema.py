"""The journal's tables, created and migrated with sqlite-utils migrations.

Tables: ``reports`` (the normalized report, its raw frame, a monotonic ``seq``), ``media`` (photos),
``quarantine`` (bytes no driver could use, with peer and reason), ``devices`` (last seen),
``sinks``/``cursors`` (each sink's delivered position, per device), ``dead_letters``, ``commands``
(the command queue) and ``meta``.
``PRAGMA user_version`` holds the schema version: the number of migrations (:data:`SCHEMA_VERSION`).
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("relay")
_names: list[str] = []


def _migration(name: str) -> Callable[[Callable[[Database], None]], Callable[[Database], None]]:
    """Register a migration; each one raises :data:`SCHEMA_VERSION` by one."""
    _names.append(name)
    return migrations(name=name)


@_migration("0001_initial")
def _initial(db: Database) -> None:
    # AUTOINCREMENT: a seq is never reused, even after the newest rows are deleted, so report ids
    # and sink cursors stay valid forever.
    db.execute(
        """CREATE TABLE reports (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            device_id TEXT,
            protocol TEXT NOT NULL,
            transport TEXT NOT NULL,
            peer TEXT,
            received_at TEXT NOT NULL,
            event TEXT NOT NULL,
            time TEXT,
            payload TEXT NOT NULL,
            raw BLOB
        )"""
    )
    db["reports"].create_index(["device_id", "seq"])  # since 0004 kept only when needed (Journal.open)
    db["media"].create({"seq": int, "type": str, "data": bytes}, pk="seq")
    db["quarantine"].create(
        {
            "id": int,
            "received_at": str,
            "peer": str,
            "transport": str,
            "protocol": str,
            "reason": str,
            "raw": bytes,
        },
        pk="id",
    )
    db["devices"].create(
        {
            "device_id": str,
            "protocol": str,
            "transport": str,
            "peer": str,
            "first_seen": str,
            "last_seen": str,
            "last_seq": int,
            "last_time": str,
            "last_lat": float,
            "last_lon": float,
        },
        pk="device_id",
    )
    db["sinks"].create({"name": str, "floor_seq": int, "updated_at": str}, pk="name")
    db["cursors"].create({"sink": str, "device_id": str, "seq": int}, pk=("sink", "device_id"))
    db["meta"].create({"key": str, "value": str}, pk="key")
    db["meta"].insert({"key": "journal_id", "value": secrets.token_hex(4)})


@_migration("0002_device_login_frame")
def _login_frame(db: Database) -> None:
    # The newest identification frame (login, IMEI handshake) of each device, kept even after its
    # report is pruned: an upstream session (passthrough) must open with it.
    db["devices"].add_column("login_raw", bytes)
    db["devices"].add_column("login_seq", int)


@_migration("0003_dead_letters")
def _dead_letters(db: Database) -> None:
    # What a sink's server refused for good (an HTTP 4xx other than 408/429): the exact request body
    # and the server's answer, kept until someone requeues it (``relay requeue``) and it is delivered.
    db.execute(
        """CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            sink TEXT NOT NULL,
            created_at TEXT NOT NULL,
            state TEXT NOT NULL,
            status INTEGER,
            answer TEXT,
            first_seq INTEGER,
            last_seq INTEGER,
            reports INTEGER NOT NULL,
            content_type TEXT,
            body BLOB NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 1
        )"""
    )
    db["dead_letters"].create_index(["sink", "state"])


@_migration("0004_device_state")
def _device_state(db: Database) -> None:
    # Each device's live state beside its last report and fix (relay/journal/_devices.py): its last
    # event, battery levels and alarms (JSON), and whether it is online and its ignition on, which
    # derived events (deviceOffline, ignitionOn...) are computed from across restarts.
    columns = {"last_event": str, "battery": str, "alarms": str, "online": int, "ignition": int}
    for column, kind in columns.items():
        db["devices"].add_column(column, kind)


@_migration("0005_commands")
def _commands(db: Database) -> None:
    # The command queue (relay/journal/_commands.py): one row per command, its state and the time of
    # each change (created, sent, finished); every change is also a commandResult report. ``reported``
    # is the state the relay last stored a report of: rows another process wrote (relay command send,
    # cancel) differ until the running relay picks them up, found through the partial index.
    db.execute(
        """CREATE TABLE commands (
            number INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            device_id TEXT NOT NULL,
            protocol TEXT,
            type TEXT NOT NULL,
            params TEXT NOT NULL,
            via TEXT NOT NULL,
            source TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT NOT NULL,
            state TEXT NOT NULL,
            raw BLOB,
            answer TEXT,
            error TEXT,
            sent_at TEXT,
            finished_at TEXT,
            reported TEXT
        )"""
    )
    db.execute("CREATE INDEX idx_commands_device ON commands (device_id, number)")
    db.execute("CREATE INDEX idx_commands_unreported ON commands (number) WHERE reported IS NOT state")


#: The schema version of a journal this relay made or migrated: one per migration above.
SCHEMA_VERSION = len(_names)


def migrate(connection: sqlite3.Connection) -> None:
    """Bring the journal on ``connection`` up to :data:`SCHEMA_VERSION` (a new one is created)."""
    migrations.apply(Database(connection))
    connection.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
