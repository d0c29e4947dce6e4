"""Durable state, all of its SQL: reports and their raw frames, the quarantine, sink cursors, dead
letters, device rows and the read-only status. Acknowledged means committed here first.

Imports: the base modules (config, errors, logs, clock, buckets) and ``drivers`` only.
"""

from ._backup import backup_command, restore_command
from ._journal import (
    FRAME_EVENT,
    QUARANTINE_ROW_COST,
    SCHEMA_VERSION,
    CursorUpdate,
    Entry,
    Journal,
    Quarantined,
    QuarantineLimits,
    Released,
    StoredReport,
    dead_letter_rows,
    read_status,
    requeue_dead_letters,
    salvage,
    set_aside_journals,
)
from ._quarantine import retry as retry_quarantine

__all__ = [
    "FRAME_EVENT",
    "QUARANTINE_ROW_COST",
    "SCHEMA_VERSION",
    "CursorUpdate",
    "Entry",
    "Journal",
    "QuarantineLimits",
    "Quarantined",
    "Released",
    "StoredReport",
    "backup_command",
    "dead_letter_rows",
    "read_status",
    "requeue_dead_letters",
    "restore_command",
    "retry_quarantine",
    "salvage",
    "set_aside_journals",
]
