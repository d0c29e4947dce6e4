"""The command queue: commands down to the devices, durable in the ``commands`` table, their state
machine, and each change of state stored as a ``commandResult`` report.

A command is queued (``queued``), then written to its device (``sent``), then answered
(``acknowledged``) or not (``failed``); one that is never sent ends ``expired`` or ``cancelled``::

    queued ──> sent ──> acknowledged | failed
       └─────> expired | cancelled | failed

:class:`Commands` is the in-memory side, sans-I/O in the h11 way: its methods take the time as an
argument, change its state and return the journal items that make the change durable (a
:class:`CommandChange` for the row, an :class:`Entry` for the ``commandResult`` report), which the
caller appends in one group commit with whatever else is going. It keeps every unfinished command,
per device in order; finished ones live only in the table.

Rules it keeps:

- at most one command per device is ``sent`` and waiting for its answer; the next waits for it;
- a command past its expiry is never handed out to be sent (:meth:`Commands.next_for` expires it);
- a command is ``sent`` only when the caller says its bytes were written (:meth:`Commands.sent`);
- it is ``acknowledged`` when the device's protocol answers it (the driver's ``commandResult``,
  :meth:`Commands.answered`), or, for a command the protocol never answers, once it is written.

Other processes (``relay command send``/``cancel``) write the table directly (:func:`insert_command`,
:func:`cancel_command`); the running relay picks their rows up with :meth:`Commands.poll`, which finds
every row whose ``reported`` state is not its ``state`` through a partial index (cheap every second).
"""

from __future__ import annotations

import enum
import json
import secrets
import sqlite3
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import drivers
from drivers import Command, CommandType, DriverError, Report, Via, format_time
from drivers import attributes as attr

from ..errors import CommandRefused, UnknownDevice
from ..statistics import labelled
from ._records import RELAY_TRANSPORT, Entry

#: The event of every report about a command (the driver's answer and each change of state).
COMMAND_RESULT = "commandResult"
#: How long a command waits for its device unless it says otherwise (``expires_s``).
DEFAULT_EXPIRES_S = 24 * 3600
#: The longest a command may wait.
MAX_EXPIRES_S = 30 * 24 * 3600
#: How long a sent command waits for the answer of a protocol that gives one.
ANSWER_TIMEOUT_S = 120.0
#: The longest client-chosen command id.
MAX_ID = 64
#: Commands waiting per device at most (a flood of commands is refused, not kept).
MAX_PENDING_PER_DEVICE = 100


class CommandState(enum.StrEnum):
    """Where a command is; the last four are final."""

    QUEUED = "queued"
    SENT = "sent"
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset(
    {CommandState.ACKNOWLEDGED, CommandState.FAILED, CommandState.EXPIRED, CommandState.CANCELLED}
)


@dataclass(slots=True)
class QueuedCommand:
    """One command as the queue holds it. ``raw``: bytes to send as they are (passthrough), instead of
    the driver's encoding of ``type`` and ``params``."""

    id: str
    device_id: str
    protocol: str | None
    type: CommandType
    params: Mapping[str, Any]
    via: Via
    source: str
    created_at: datetime
    expires_at: datetime
    state: CommandState = CommandState.QUEUED
    raw: bytes | None = None
    sent_at: datetime | None = None
    #: When a sent command stops waiting for its answer.
    answer_due: datetime | None = None

    @property
    def command(self) -> Command:
        """The driver's view of it."""
        return Command(type=self.type, device_id=self.device_id, params=dict(self.params))

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "device_id": self.device_id,
            "type": self.type.value,
            "params": dict(self.params),
            "via": self.via.value,
            "source": self.source,
            "state": self.state.value,
            "created_at": format_time(self.created_at),
            "expires_at": format_time(self.expires_at),
        }


@dataclass(frozen=True, slots=True)
class CommandChange:
    """A command's row to write: inserted (``new``) or moved to ``state``; ``reported`` says the
    change's ``commandResult`` report goes in the same commit."""

    command: QueuedCommand
    state: CommandState
    at: datetime
    new: bool = False
    answer: Mapping[str, Any] | None = None
    error: str | None = None


def new_id() -> str:
    return "c" + secrets.token_hex(6)


def check_id(value: Any) -> str:
    """A client's command id: 1..64 printable ASCII characters without spaces.

    :raises CommandRefused: it is not."""
    if not isinstance(value, str) or not value or len(value) > MAX_ID or not value.isprintable():
        raise CommandRefused(f"command id {value!r} is not 1..{MAX_ID} printable characters")
    if not all("\x21" <= char <= "\x7e" for char in value):
        raise CommandRefused(f"command id {value!r} has a space or a non-ASCII character")
    return value


def check_expires(value: Any) -> float:
    """``expires_s``: seconds from now, 1..30 days.

    :raises CommandRefused: it is not a number in range."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= MAX_EXPIRES_S:
        raise CommandRefused(f"expires_s {value!r} is not a number of seconds in 1..{MAX_EXPIRES_S}")
    return float(value)


def parse_type(value: Any) -> CommandType:
    """:raises CommandRefused: ``value`` is not one of Traccar's command type names that we know."""
    try:
        return CommandType(value)
    except ValueError:
        known = ", ".join(sorted(CommandType))
        raise CommandRefused(f"unknown command type {value!r} (known: {known})") from None


def parse_via(value: Any) -> Via:
    try:
        return Via(value)
    except ValueError:
        raise CommandRefused(f"via {value!r} is not data or sms") from None


def prepare_command(
    *,
    device_id: Any,
    type: Any,
    params: Any = None,
    via: Any = "data",
    expires_s: Any = None,
    source: str,
    id: Any = None,
    now: datetime,
    protocol_of: Callable[[str], str | None],
    phone_of: Callable[[str], str | None] = lambda _device: None,
) -> QueuedCommand:
    """A command checked as it is submitted, on any channel: the device known (``protocol_of`` gives
    its protocol), the type one its protocol carries over ``via``, the parameters right for both
    (``drivers.check_command``, which normalises them), a phone number for ``via="sms"``.

    :raises CommandRefused: the reason, for the person who sent it.
    """
    if not isinstance(device_id, str):
        raise CommandRefused(f"device id {device_id!r} is not a string")
    try:
        device_id = drivers.check_device_id(device_id)
    except drivers.InvalidDeviceId as error:
        raise CommandRefused(str(error)) from None
    command_type = parse_type(type)
    channel = parse_via(via)
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise CommandRefused(f"params must be an object of key=value, found {params!r}")
    protocol = protocol_of(device_id)
    if protocol is None:
        raise UnknownDevice(
            f"unknown device {device_id!r}: it is not in [[devices]] and has never reported to this relay"
        )
    if channel is Via.SMS and not phone_of(device_id):
        raise CommandRefused(
            f"device {device_id!r} cannot take SMS: it has no phone number ([[devices]] phone)"
            " or the relay has no [modem]"
        )
    try:
        checked = drivers.check_command(
            protocol, Command(type=command_type, device_id=device_id, params=dict(params)), via=channel
        )
    except DriverError as error:
        raise CommandRefused(f"{protocol}: {error.reason}") from None
    expires = check_expires(DEFAULT_EXPIRES_S if expires_s is None else expires_s)
    return QueuedCommand(
        id=new_id() if id is None else check_id(id),
        device_id=device_id,
        protocol=protocol,
        type=command_type,
        params=dict(checked.params),
        via=channel,
        source=source,
        created_at=now,
        expires_at=now + timedelta(seconds=expires),
    )


#: The largest command document taken (MQTT payload, HTTP body).
MAX_COMMAND_BYTES = 16 * 1024
#: The keys of a command's JSON document.
COMMAND_KEYS = frozenset({"id", "type", "params", "expires_s", "via"})


def parse_command_json(payload: bytes) -> dict[str, Any]:
    """A command's JSON document (MQTT, HTTP): ``{"id", "type", "params", "expires_s", "via"}``, only
    ``type`` required; give its fields to :func:`prepare_command`.

    :raises CommandRefused: too large, not JSON, not an object, an unknown key, no type.
    """
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandRefused(f"a command of {len(payload)} bytes exceeds {MAX_COMMAND_BYTES}")
    try:
        fields = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as error:
        raise CommandRefused(f"the command is not JSON: {error}") from None
    if not isinstance(fields, dict):
        raise CommandRefused('the command must be a JSON object {"type": ..., "params": {...}}')
    unknown = sorted(set(fields) - COMMAND_KEYS)
    if unknown:
        known = ", ".join(sorted(COMMAND_KEYS))
        raise CommandRefused(f"unknown key {unknown[0]!r} in the command (known: {known})")
    if "type" not in fields:
        raise CommandRefused("the command has no type")
    return fields


#: How long bytes a platform sent down for a device wait for it.
PASSTHROUGH_EXPIRES_S = 3600


def passthrough_command(
    device_id: str, protocol: str, raw: bytes, *, source: str, now: datetime
) -> QueuedCommand:
    """Bytes an upstream platform sent down a device's session, to go to the device as they are (a
    ``custom`` command whose ``raw`` bytes bypass the driver's encoding)."""
    return QueuedCommand(
        id=new_id(),
        device_id=device_id,
        protocol=protocol,
        type=CommandType.CUSTOM,
        params={"data": raw.hex(), "hex": True},
        via=Via.DATA,
        source=source,
        created_at=now,
        expires_at=now + timedelta(seconds=PASSTHROUGH_EXPIRES_S),
        raw=raw,
    )


def command_report(
    command: QueuedCommand,
    state: CommandState,
    *,
    answer: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> Report:
    """The ``commandResult`` report of a change of state (the device's answer's attributes included)."""
    attributes: dict[str, Any] = dict(answer or {})
    attributes.update(
        {
            attr.COMMAND_ID: command.id,
            attr.COMMAND_TYPE: command.type.value,
            attr.COMMAND_STATE: state.value,
            attr.COMMAND_SOURCE: command.source,
            attr.COMMAND_VIA: command.via.value,
        }
    )
    if error is not None:
        attributes[attr.COMMAND_ERROR] = error
    return Report(
        protocol=command.protocol or "relay",
        device_id=command.device_id,
        event=COMMAND_RESULT,
        attributes=attributes,
    )


def refusal_document(device_id: str | None, fields: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """What a refused command gets back on the channel it came in on: a ``commandResult`` shaped like
    the reports of stored commands, ``command_state`` ``refused`` and the reason."""
    attributes = {
        attr.COMMAND_ID: fields.get("id") if isinstance(fields.get("id"), str) else None,
        attr.COMMAND_TYPE: fields.get("type") if isinstance(fields.get("type"), str) else None,
        attr.COMMAND_STATE: "refused",
        attr.COMMAND_ERROR: reason,
    }
    return {"device_id": device_id, "event": COMMAND_RESULT, "attributes": attributes}


def way_in(source: str) -> str:
    """The channel a command came in by, from its ``source``: ``mqtt``, ``http``, ``cli``,
    ``passthrough`` (the sink's name after a colon is dropped), else ``other``."""
    kind = source.partition(":")[0]
    return kind if kind in WAYS_IN else "other"


#: The channels commands come in by (``source``).
WAYS_IN = ("mqtt", "http", "cli", "passthrough")


@dataclass(slots=True)
class CommandStats:
    """What ``/metrics`` shows of the command queue (``relay_commands_*``); counted since start."""

    changes: defaultdict[tuple[str, str, str], int] = labelled(
        "counter",
        "Commands that reached a state (queued, sent, acknowledged, failed, expired, cancelled), by the"
        " way they came in (source: mqtt, http, cli, passthrough) and the way out (via: data or sms).",
        ("state", "source", "via"),
        metric="relay_commands",
        factory=lambda: defaultdict(int),
    )
    refused: defaultdict[str, int] = labelled(
        "counter",
        "Commands refused as they were submitted in the running relay (bad JSON, keys, device, type,"
        " parameters, a reused id), by the way they came in.",
        ("source",),
        metric="relay_commands_refused",
        factory=lambda: defaultdict(int),
    )


class Commands:
    """Every unfinished command, per device in order (see the module's rules). Loaded from the table
    at start (:meth:`load`); fed from the table by :meth:`poll`.

    ``protocol_of(device)`` and ``phone_of(device)`` say what the relay knows of a device; the service
    sets them from the registry and the live device state.
    """

    def __init__(self) -> None:
        self._pending: dict[str, list[QueuedCommand]] = {}
        self._by_id: OrderedDict[str, QueuedCommand] = OrderedDict()
        self.protocol_of: Callable[[str], str | None] = lambda _device: None
        self.phone_of: Callable[[str], str | None] = lambda _device: None
        #: Called with a device id when a command becomes ready for it (queued, or the one before it
        #: finished): the listener wakes that device's connection.
        self.listeners: list[Callable[[str], None]] = []
        self.answer_timeout_s = ANSWER_TIMEOUT_S
        self.stats = CommandStats()

    def __len__(self) -> int:
        return len(self._by_id)

    def oldest_queued(self) -> datetime | None:
        """When the oldest command still waiting to be sent was created."""
        return min(
            (c.created_at for c in self._by_id.values() if c.state is CommandState.QUEUED), default=None
        )

    def prepare(self, device_id: Any, fields: dict[str, Any], *, source: str, now: datetime) -> QueuedCommand:
        """:func:`prepare_command` from a submitted JSON object (``{"id", "type", "params",
        "expires_s", "via"}``, as :func:`parse_command_json` gives it), with what the relay knows of
        the device.

        :raises CommandRefused: the reason, for the person who sent it.
        """
        return prepare_command(
            device_id=device_id,
            type=fields.get("type"),
            params=fields.get("params"),
            via=fields.get("via", "data"),
            expires_s=fields.get("expires_s"),
            id=fields.get("id"),
            source=source,
            now=now,
            protocol_of=self.protocol_of,
            phone_of=self.phone_of,
        )

    def refused(self, source: str) -> None:
        """Count a command refused on its way in (the channel answers the reason)."""
        self.stats.refused[way_in(source)] += 1

    def get(self, command_id: str) -> QueuedCommand | None:
        return self._by_id.get(command_id)

    def pending(self, device_id: str | None = None) -> list[QueuedCommand]:
        """Unfinished commands (of ``device_id``), in order."""
        if device_id is None:
            return list(self._by_id.values())
        return list(self._pending.get(device_id, ()))

    def devices(self) -> list[str]:
        """Devices with an unfinished command."""
        return list(self._pending)

    def in_flight(self, device_id: str) -> QueuedCommand | None:
        """The device's command that was sent and waits for its answer, if any."""
        queue = self._pending.get(device_id)
        return queue[0] if queue and queue[0].state is CommandState.SENT else None

    # -- loading and polling the table ----------------------------------------------------------

    def load(self, db: sqlite3.Connection, now: datetime) -> list[CommandChange | Entry]:
        """Read the unfinished commands at start. A command ``sent`` before a restart can no longer
        be answered (its session is gone): it fails. Returns those changes, and those of rows another
        process wrote while the relay was stopped (see :meth:`poll`)."""
        items: list[CommandChange | Entry] = []
        for command, state, reported in _rows(db, "state IN ('queued', 'sent')"):
            if state is CommandState.SENT:
                command.state = CommandState.SENT
                self._add(command)
                items += self._finish(
                    command, CommandState.FAILED, now, error="the relay restarted before the device answered"
                )
            else:
                self._add(command)
                if reported != state.value:
                    items += self._change(command, state, now)
        return items + self.poll(db, now)

    def poll(self, db: sqlite3.Connection, now: datetime) -> list[CommandChange | Entry]:
        """Rows another process (``relay command``) inserted or cancelled since the last look: new ones
        join their device's queue (and are announced), cancelled ones leave it; each change gets its
        report."""
        items: list[CommandChange | Entry] = []
        for command, state, _reported in _rows(db, "reported IS NOT state"):
            known = self._by_id.get(command.id)
            if state is CommandState.QUEUED and known is None:
                self._add(command)
                items += self._change(command, state, now)
                self._announce(command.device_id)
            elif known is not None and state in FINAL_STATES:
                # Cancelled from outside; one already sent keeps its course, its row is corrected.
                if known.state is CommandState.QUEUED:
                    self._remove(known)
                    items += self._change(known, state, now)
                    self._announce(known.device_id)
                else:
                    items += self._change(known, known.state, now, counted=False)
            elif known is None:  # finished elsewhere, nothing to hold: report it once
                items += self._change(command, state, now)
        return items

    # -- submitting, cancelling ----------------------------------------------------------------

    def submit(self, command: QueuedCommand) -> list[CommandChange | Entry]:
        """Queue a command :func:`prepare_command` made; announced at once.

        :raises CommandRefused: its id is taken, or its device has too many commands waiting.
        """
        if command.id in self._by_id:
            raise CommandRefused(f"command id {command.id!r} is already queued")
        if len(self._pending.get(command.device_id, ())) >= MAX_PENDING_PER_DEVICE:
            raise CommandRefused(
                f"device {command.device_id!r} has {MAX_PENDING_PER_DEVICE} commands waiting already"
            )
        self._add(command)
        items = self._change(command, CommandState.QUEUED, command.created_at, new=True)
        self._announce(command.device_id)
        return items

    def cancel(self, command_id: str, now: datetime) -> list[CommandChange | Entry]:
        """:raises CommandRefused: no such unfinished command, or it was sent already."""
        command = self._by_id.get(command_id)
        if command is None:
            raise CommandRefused(f"no queued command {command_id!r}")
        if command.state is not CommandState.QUEUED:
            raise CommandRefused(f"command {command_id!r} was sent already; it cannot be cancelled")
        return self._finish(command, CommandState.CANCELLED, now)

    # -- delivering ----------------------------------------------------------------------------

    def next_for(
        self, device_id: str, now: datetime, via: Via | None = Via.DATA
    ) -> tuple[QueuedCommand | None, list[Any]]:
        """The device's next command to send over ``via`` (``None``: whichever) now (``None``: nothing,
        or one in flight), with the changes of the commands that expired on the way (never handed out)."""
        items: list[CommandChange | Entry] = []
        queue = self._pending.get(device_id)
        while queue:
            head = queue[0]
            if head.state is CommandState.SENT:
                return None, items
            if head.expired(now):
                items += self._finish(head, CommandState.EXPIRED, now, error="expired before it was sent")
                queue = self._pending.get(device_id)
                continue
            return (head if via is None or head.via is via else None), items
        return None, items

    def sent(self, command: QueuedCommand, now: datetime, *, answered: bool) -> list[CommandChange | Entry]:
        """``command``'s bytes were written to its device. ``answered``: the protocol answers it (it
        waits for :meth:`answered`, up to :attr:`answer_timeout_s`); else it is acknowledged now."""
        command.state = CommandState.SENT
        command.sent_at = now
        items = self._change(command, CommandState.SENT, now)
        if answered:
            command.answer_due = now + timedelta(seconds=self.answer_timeout_s)
            return items
        return items + self._finish(
            command,
            CommandState.ACKNOWLEDGED,
            now,
            answer={"note": "the protocol has no answer: acknowledged once written"},
        )

    def answered(self, report: Report, now: datetime) -> tuple[Report, list[CommandChange]]:
        """The driver's ``commandResult`` ``report``: when its device has a command in flight, that
        command is acknowledged and the report says so (one report for the answer and the change);
        else the report is returned as it is (an answer to nothing the relay sent)."""
        device = report.device_id
        command = self.in_flight(device) if device else None
        if command is None:
            return report, []
        answer = dict(report.attributes)
        self._remove(command)
        command.state = CommandState.ACKNOWLEDGED
        self._announce(command.device_id)
        enriched = replace(
            report, attributes=command_report(command, CommandState.ACKNOWLEDGED, answer=answer).attributes
        )
        self._count(command, CommandState.ACKNOWLEDGED)
        return enriched, [CommandChange(command, CommandState.ACKNOWLEDGED, now, answer=answer)]

    def failed(self, command: QueuedCommand, now: datetime, error: str) -> list[CommandChange | Entry]:
        """``command`` cannot go on (its connection closed before the answer, the SMS was refused)."""
        if self._by_id.get(command.id) is not command:
            return []
        return self._finish(command, CommandState.FAILED, now, error=error)

    def due(self, now: datetime) -> list[CommandChange | Entry]:
        """Every change the clock makes: queued commands past their expiry expire, sent ones past
        their answer's deadline fail. Cheap enough for once a second (unfinished commands are few)."""
        items: list[CommandChange | Entry] = []
        for command in list(self._by_id.values()):
            if command.state is CommandState.QUEUED and command.expired(now):
                items += self._finish(command, CommandState.EXPIRED, now, error="expired before it was sent")
            elif command.state is CommandState.SENT and command.answer_due and now >= command.answer_due:
                items += self._finish(
                    command, CommandState.FAILED, now, error=f"no answer within {self.answer_timeout_s:g} s"
                )
        return items

    # -- inside --------------------------------------------------------------------------------

    def _add(self, command: QueuedCommand) -> None:
        self._by_id[command.id] = command
        self._pending.setdefault(command.device_id, []).append(command)

    def _remove(self, command: QueuedCommand) -> None:
        self._by_id.pop(command.id, None)
        queue = self._pending.get(command.device_id, [])
        if command in queue:
            queue.remove(command)
        if not queue:
            self._pending.pop(command.device_id, None)

    def _announce(self, device_id: str) -> None:
        if device_id in self._pending:
            for listener in self.listeners:
                listener(device_id)

    def _finish(
        self,
        command: QueuedCommand,
        state: CommandState,
        now: datetime,
        *,
        answer: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> list[CommandChange | Entry]:
        self._remove(command)
        command.state = state
        items = self._change(command, state, now, answer=answer, error=error)
        self._announce(command.device_id)
        return items

    def _count(self, command: QueuedCommand, state: CommandState) -> None:
        self.stats.changes[(state.value, way_in(command.source), command.via.value)] += 1

    def _change(
        self,
        command: QueuedCommand,
        state: CommandState,
        now: datetime,
        *,
        new: bool = False,
        answer: Mapping[str, Any] | None = None,
        error: str | None = None,
        counted: bool = True,
    ) -> list[CommandChange | Entry]:
        if counted:
            self._count(command, state)
        report = command_report(command, state, answer=answer, error=error)
        return [
            CommandChange(command, state, now, new=new, answer=answer, error=error),
            Entry(report, None, RELAY_TRANSPORT, command.source, now),
        ]


_COLUMNS = (
    "id, device_id, protocol, type, params, via, source, created_at, expires_at, state, raw, sent_at,"
    " reported"
)


def _rows(db: sqlite3.Connection, where: str) -> list[tuple[QueuedCommand, CommandState, str | None]]:
    rows = db.execute(f"SELECT {_COLUMNS} FROM commands WHERE {where} ORDER BY number").fetchall()
    found = []
    for (
        id_,
        device,
        protocol,
        kind,
        params,
        via,
        source,
        created,
        expires,
        state,
        raw,
        sent,
        reported,
    ) in rows:
        command = QueuedCommand(
            id=id_,
            device_id=device,
            protocol=protocol,
            type=CommandType(kind),
            params=json.loads(params),
            via=Via(via),
            source=source,
            created_at=_time(created),
            expires_at=_time(expires),
            raw=raw,
            sent_at=_time(sent) if sent else None,
        )
        found.append((command, CommandState(state), reported))
    return found


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def write_changes(db: sqlite3.Connection, changes: Sequence[CommandChange]) -> None:
    """Write command rows inside the caller's transaction (the journal's group commit)."""
    for change in changes:
        command, at = change.command, format_time(change.at)
        answer = json.dumps(change.answer, separators=(",", ":"), default=str) if change.answer else None
        if change.new:
            # Never a failed group commit for a reused id: Journal.queue_command refuses those first.
            _insert(db, command, reported=change.state.value, or_ignore="OR IGNORE ")
            continue
        final = change.state in FINAL_STATES
        db.execute(
            "UPDATE commands SET state = ?, reported = ?, via = ?, answer = coalesce(?, answer),"
            " error = coalesce(?, error), sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END,"
            " finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE id = ?",
            (
                change.state.value,
                change.state.value,
                command.via.value,
                answer,
                change.error,
                change.state.value,
                at,
                final,
                at,
                command.id,
            ),
        )


def _insert(
    db: sqlite3.Connection, command: QueuedCommand, *, reported: str | None, or_ignore: str = ""
) -> None:
    db.execute(
        f"INSERT {or_ignore}INTO commands (id, device_id, protocol, type, params, via, source, created_at,"
        " expires_at, state, raw, reported) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            command.id,
            command.device_id,
            command.protocol,
            command.type.value,
            json.dumps(dict(command.params), separators=(",", ":")),
            command.via.value,
            command.source,
            format_time(command.created_at),
            format_time(command.expires_at),
            command.state.value,
            command.raw,
            reported,
        ),
    )


def insert_command(db: sqlite3.Connection, command: QueuedCommand) -> None:
    """Queue ``command`` from another process (``relay command send``): a row the running relay picks
    up within a second (:meth:`Commands.poll`), or at its next start.

    :raises CommandRefused: the id is taken.
    """
    from ._sqlite import transaction

    try:
        with transaction(db):
            _insert(db, command, reported=None)
    except sqlite3.IntegrityError:
        raise CommandRefused(f"command id {command.id!r} exists already") from None


def cancel_command(db: sqlite3.Connection, command_id: str, now: datetime) -> None:
    """Cancel a queued command from another process (``relay command cancel``).

    :raises CommandRefused: no such command, or it is no longer queued (sent or finished).
    """
    from ._sqlite import transaction

    with transaction(db):
        row = db.execute("SELECT state FROM commands WHERE id = ?", (command_id,)).fetchone()
        if row is None:
            raise CommandRefused(f"no command {command_id!r}")
        if row[0] != CommandState.QUEUED:
            raise CommandRefused(
                f"command {command_id!r} is {row[0]}: only a queued command can be cancelled"
            )
        db.execute(
            "UPDATE commands SET state = 'cancelled', finished_at = ? WHERE id = ?",
            (format_time(now), command_id),
        )


def list_commands(
    db: sqlite3.Connection, *, device_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest commands (of ``device_id``), newest first, with their state and times."""
    cursor = db.execute(
        "SELECT id, device_id, type, params, via, source, state, created_at, expires_at, sent_at,"
        " finished_at, answer, error FROM commands WHERE ? IS NULL OR device_id = ?"
        " ORDER BY number DESC LIMIT ?",
        (device_id, device_id, limit),
    )
    names = [column[0] for column in cursor.description]
    found = []
    for row in cursor:
        item = dict(zip(names, row, strict=True))
        item["params"] = json.loads(item["params"])
        item["answer"] = json.loads(item["answer"]) if item["answer"] else None
        found.append(item)
    return found
