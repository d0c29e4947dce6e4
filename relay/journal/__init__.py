"""Durable state, all of its SQL: reports and their raw frames, the quarantine, sink cursors, dead
letters, device rows and the read-only status. Acknowledged means committed here first.

The modules, one noun each: ``_journal`` (the Journal: open, group commit), ``_reads`` (what sinks
read), ``_records`` (what is written and read back), ``_schema`` (the migrations), ``_sqlite``
(connections and the one transaction helper), ``_quarantine`` (its budget), ``_retry`` (re-decoding
the quarantine), ``_dead_letters``, ``_cleanup`` (retention, size cap, full disk), ``_storage``
(start-up check, set-aside), ``_commands`` (the command queue), ``_salvage``, ``_reader`` (the
read-only open), ``_backup``.

Imports: the base modules (config, errors, logs, clock, buckets) and ``drivers`` only.
"""

from ._backup import backup_command, restore_command
from ._commands import (
    COMMAND_RESULT,
    CommandChange,
    Commands,
    CommandState,
    QueuedCommand,
    cancel_command,
    insert_command,
    list_commands,
    parse_command_json,
    passthrough_command,
    prepare_command,
    refusal_document,
)
from ._dead_letters import requeue_dead_letters
from ._journal import Journal
from ._quarantine import QUARANTINE_ROW_COST, QuarantineLimits
from ._reader import JournalReader
from ._records import (
    FRAME_EVENT,
    RELAY_TRANSPORT,
    CursorUpdate,
    Entry,
    MetaValue,
    Quarantined,
    Released,
    StoredReport,
)
from ._retry import retry as retry_quarantine
from ._salvage import salvage
from ._schema import SCHEMA_VERSION
from ._storage import set_aside_journals

__all__ = [
    "COMMAND_RESULT",
    "FRAME_EVENT",
    "QUARANTINE_ROW_COST",
    "RELAY_TRANSPORT",
    "SCHEMA_VERSION",
    "CommandChange",
    "CommandState",
    "Commands",
    "CursorUpdate",
    "Entry",
    "Journal",
    "JournalReader",
    "MetaValue",
    "QuarantineLimits",
    "Quarantined",
    "QueuedCommand",
    "Released",
    "StoredReport",
    "backup_command",
    "cancel_command",
    "insert_command",
    "list_commands",
    "parse_command_json",
    "passthrough_command",
    "prepare_command",
    "refusal_document",
    "requeue_dead_letters",
    "restore_command",
    "retry_quarantine",
    "salvage",
    "set_aside_journals",
]
