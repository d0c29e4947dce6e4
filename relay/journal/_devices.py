"""Each device's live state (:class:`DeviceState`), kept exact in memory by the journal's writer and
written to the ``devices`` table on a timer and at shutdown, and the events derived from it
(``deviceOnline``, ``deviceOffline``, ``ignitionOn``, ``ignitionOff``): one place, from the reports
as they are committed.

A device's row is written at once when it is new, when its login frame changes or when it goes online
or offline (the derived report and the row in one transaction: an offline event is published once,
even across a restart); otherwise at most every :data:`ROW_INTERVAL_S`, the pending row written later
by the writer's timer (:meth:`LiveDevices.next_due`) or at close, never dropped. Rewriting a random
page of that table for every commit was most of what the journal wrote to the SD card.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from drivers import Report, format_time
from drivers import attributes as attr

from ._records import FRAME_EVENT, Entry, Silence

#: How stale a device's row in the ``devices`` table may get (the memory is always exact).
ROW_INTERVAL_S = 10.0
#: Alarms kept per device (newest first) in its state.
ALARMS_KEPT = 5
#: The derived events, Traccar's names.
DEVICE_ONLINE, DEVICE_OFFLINE = "deviceOnline", "deviceOffline"
IGNITION_ON, IGNITION_OFF = "ignitionOn", "ignitionOff"
DERIVED_EVENTS = frozenset({DEVICE_ONLINE, DEVICE_OFFLINE, IGNITION_ON, IGNITION_OFF})


@dataclass(frozen=True, slots=True)
class DeviceState:
    """What the relay knows of one device now: its last report and last fix, how it reached the relay,
    its battery, its last alarms, whether it is online (``None``: it has no offline limit) and its
    ignition (``None``: never reported)."""

    device_id: str
    protocol: str
    transport: str
    peer: str | None
    first_seen: str
    last_seen: str
    last_seq: int
    last_event: str | None = None
    last_fix: str | None = None
    last_lat: float | None = None
    last_lon: float | None = None
    battery: dict[str, Any] = field(default_factory=dict)
    alarms: tuple[dict[str, str], ...] = ()
    online: bool | None = None
    ignition: bool | None = None
    login_raw: bytes | None = None
    login_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The state as ``relay status`` and ``/status`` show a device (without its login frame)."""
        return {
            "device_id": self.device_id,
            "protocol": self.protocol,
            "transport": self.transport,
            "peer": self.peer,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "last_event": self.last_event,
            "last_fix": self.last_fix,
            "last_lat": self.last_lat,
            "last_lon": self.last_lon,
            "battery": dict(self.battery),
            "recent_alarms": [dict(alarm) for alarm in self.alarms],
            "alarms": [],
            "online": self.online,
            "ignition": self.ignition,
        }


#: The ``devices`` columns :class:`DeviceState` is stored in, in order.
COLUMNS = (
    "device_id, protocol, transport, peer, first_seen, last_seen, last_seq, last_event, last_time,"
    " last_lat, last_lon, battery, alarms, online, ignition, login_raw, login_seq"
)
# An update in place (not INSERT OR REPLACE: a delete and an insert, a new rowid, more pages written).
UPSERT = (
    f"INSERT INTO devices ({COLUMNS}) VALUES ({', '.join('?' * 17)}) ON CONFLICT(device_id) DO UPDATE SET "
    + ", ".join(f"{name.strip()} = excluded.{name.strip()}" for name in COLUMNS.split(",")[1:])
)


def _row(state: DeviceState) -> tuple[Any, ...]:
    return (
        state.device_id,
        state.protocol,
        state.transport,
        state.peer,
        state.first_seen,
        state.last_seen,
        state.last_seq,
        state.last_event,
        state.last_fix,
        state.last_lat,
        state.last_lon,
        json.dumps(state.battery, separators=(",", ":")) if state.battery else None,
        json.dumps(list(state.alarms), separators=(",", ":")) if state.alarms else None,
        None if state.online is None else int(state.online),
        None if state.ignition is None else int(state.ignition),
        state.login_raw,
        state.login_seq,
    )


def _from_row(row: sqlite3.Row | tuple[Any, ...]) -> DeviceState:
    (device_id, protocol, transport, peer, first_seen, last_seen, last_seq, last_event, last_fix, lat, lon,
     battery, alarms, online, ignition, login_raw, login_seq) = row  # fmt: skip
    return DeviceState(
        device_id=device_id,
        protocol=protocol,
        transport=transport,
        peer=peer,
        first_seen=first_seen,
        last_seen=last_seen,
        last_seq=last_seq,
        last_event=last_event,
        last_fix=last_fix,
        last_lat=lat,
        last_lon=lon,
        battery=json.loads(battery) if battery else {},
        alarms=tuple(json.loads(alarms)) if alarms else (),
        online=None if online is None else bool(online),
        ignition=None if ignition is None else bool(ignition),
        login_raw=login_raw,
        login_seq=login_seq,
    )


def _battery(report: Report) -> dict[str, Any]:
    return {key: value for key, value in report.attributes.items() if key.startswith("battery")}


@dataclass(slots=True)
class Changes:
    """What one commit changes: the new states (applied once the transaction committed) and the
    devices whose row must be written in it."""

    states: dict[str, DeviceState] = field(default_factory=dict)
    urgent: set[str] = field(default_factory=set)


class LiveDevices:
    """Every known device's :class:`DeviceState`, least recently seen first, at most ``max_devices``
    (random ids from a flood are forgotten, and counted by the caller)."""

    def __init__(self, max_devices: int = 20_000) -> None:
        self.max_devices = max_devices
        self._states: OrderedDict[str, DeviceState] = OrderedDict()
        #: Devices whose row is behind their state, and when every such row was last written (monotonic).
        self._dirty: set[str] = set()
        self._flushed_at = -math.inf
        #: A device's offline limit in seconds (0: it never goes offline); set by the service.
        self.offline_after: Callable[[str], float] = lambda _device: 0.0
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._states)

    def get(self, device_id: str) -> DeviceState | None:
        return self._states.get(device_id)

    def states(self) -> list[DeviceState]:
        """Every device's state, most recently seen first (a copy: safe from the trio thread)."""
        return list(reversed(list(self._states.values())))

    def load(self, db: sqlite3.Connection, *, recent_reports: int = 10_000) -> None:
        """Read the ``devices`` table, then bring the rows that lag behind the newest reports (a
        ``kill -9`` before their row was written) up to date, from at most ``recent_reports``."""
        for row in db.execute(f"SELECT {COLUMNS} FROM devices ORDER BY last_seen"):
            state = _from_row(row)
            self._states[state.device_id] = state
        last = db.execute("SELECT coalesce(max(seq), 0) FROM reports").fetchone()[0]
        for seq, device_id, protocol, transport, peer, received_at, event, payload in db.execute(
            "SELECT seq, device_id, protocol, transport, peer, received_at, event, payload FROM reports"
            " WHERE seq > ? AND device_id IS NOT NULL ORDER BY seq",
            (last - recent_reports,),
        ):
            state = self._states.get(device_id)
            if state is not None and seq <= state.last_seq:
                continue
            document = json.loads(payload)
            fix = document.get("lat") is not None and document.get("time")
            self._states[device_id] = replace(
                state or DeviceState(device_id, protocol, transport, peer, received_at, received_at, seq),
                protocol=protocol,
                transport=transport,
                peer=peer,
                last_seen=received_at,
                last_seq=seq,
                last_event=event,
                last_fix=document["time"] if fix else (state.last_fix if state else None),
                last_lat=document["lat"] if fix else (state.last_lat if state else None),
                last_lon=document["lon"] if fix else (state.last_lon if state else None),
            )
            self._states.move_to_end(device_id)
            self._dirty.add(device_id)

    # -- the writer's side: derive, change, apply ---------------------------------------------

    def derive(self, entries: list[Entry], silences: Iterable[Silence]) -> list[Entry]:
        """``entries`` with the derived events put in place: a device's ``deviceOnline`` before its
        first report after silence (or ever, when it has an offline limit), ``ignitionOn``/``Off``
        after a report whose ignition differs from the one before; and a ``deviceOffline`` for each
        silence whose device has sent nothing since it was noticed."""
        online: dict[str, bool | None] = {}
        ignition: dict[str, bool | None] = {}
        out: list[Entry] = []
        for silence in silences:
            state = self._states.get(silence.device_id)
            if state is None or state.last_seq != silence.last_seq or state.online is not True:
                continue
            online[state.device_id] = False
            out.append(
                Entry(
                    Report(protocol=state.protocol, device_id=state.device_id, event=DEVICE_OFFLINE),
                    None,
                    state.transport,
                    state.peer or "",
                    silence.noticed_at,
                )
            )
        for entry in entries:
            report, device = entry.report, entry.report.device_id
            if device is None or report.event in DERIVED_EVENTS:
                out.append(entry)
                continue
            state = self._states.get(device)
            was_online = online.get(device, state.online if state else None)
            if was_online is not True and self.offline_after(device) > 0:
                online[device] = True
                derived = Report(protocol=report.protocol, device_id=device, event=DEVICE_ONLINE)
                out.append(replace(entry, report=derived, raw=None))
            out.append(entry)
            value = report.attributes.get(attr.IGNITION)
            if isinstance(value, bool) and report.event != FRAME_EVENT:
                before = ignition.get(device, state.ignition if state else None)
                ignition[device] = value
                if before is not None and before != value:
                    derived = Report(
                        protocol=report.protocol,
                        device_id=device,
                        event=IGNITION_ON if value else IGNITION_OFF,
                        time=report.time,
                        valid=report.valid,
                        lat=report.lat,
                        lon=report.lon,
                        attributes={attr.IGNITION: value},
                    )
                    out.append(replace(entry, report=derived, raw=None))
        return out

    def changes(self, entries: list[Entry], first_seq: int) -> Changes:
        """The states after ``entries`` (stored from ``first_seq`` on), not applied yet."""
        changes = Changes()
        for index, entry in enumerate(entries):
            report, device = entry.report, entry.report.device_id
            if not device:
                continue
            state = changes.states.get(device) or self._states.get(device)
            seq, seen = first_seq + index, format_time(entry.received_at)
            if state is None:
                state = DeviceState(device, report.protocol, entry.transport, entry.peer, seen, seen, seq)
                changes.urgent.add(device)
            event = report.event
            if event == DEVICE_OFFLINE:  # not a sign of life: only the state changes
                changes.states[device] = replace(state, online=False, last_event=event)
                changes.urgent.add(device)
                continue
            updates: dict[str, Any] = {
                "protocol": report.protocol,
                "transport": entry.transport,
                "peer": entry.peer,
                "last_seen": seen,
                "last_seq": seq,
            }
            if event != FRAME_EVENT:
                updates["last_event"] = event
            if event == DEVICE_ONLINE:
                updates["online"] = True
                changes.urgent.add(device)
            if report.has_position and report.time is not None:
                updates.update(last_fix=format_time(report.time), last_lat=report.lat, last_lon=report.lon)
            if battery := _battery(report):
                updates["battery"] = battery
            if report.alarms:
                fresh = tuple({"alarm": alarm, "received_at": seen} for alarm in report.alarms)
                updates["alarms"] = (fresh + state.alarms)[:ALARMS_KEPT]
            value = report.attributes.get(attr.IGNITION)
            if isinstance(value, bool):
                updates["ignition"] = value
            if event == "login" and entry.raw is not None and entry.raw != state.login_raw:
                # Only a new login frame is urgent: most devices send the same one at every connect.
                updates.update(login_raw=entry.raw, login_seq=seq)
                changes.urgent.add(device)
            changes.states[device] = replace(state, **updates)
        return changes

    def rows_due(self, changes: Changes, now: float) -> tuple[list[tuple[Any, ...]], bool]:
        """The rows to write in this transaction, and whether they are a flush: the urgent ones, and
        every device's whose row is behind when the last flush is ROW_INTERVAL_S old (one transaction
        for all of them, their pages shared)."""
        flush = now - self._flushed_at >= ROW_INTERVAL_S and bool(self._dirty or changes.states)
        devices = (self._dirty | changes.states.keys()) if flush else changes.urgent
        rows = []
        for device in devices:
            state = changes.states.get(device) or self._states.get(device)
            if state is not None:
                rows.append(_row(state))
        return rows, flush

    def apply(self, changes: Changes, flushed: bool, now: float) -> None:
        """Make ``changes`` the live state once their transaction committed (``flushed``: it wrote
        every pending row)."""
        for device, state in changes.states.items():
            self._states[device] = state
            self._states.move_to_end(device)
        if flushed:
            self._dirty.clear()
            self._flushed_at = now
        else:
            self._dirty -= changes.urgent
            self._dirty |= changes.states.keys() - changes.urgent
        while len(self._states) > self.max_devices:
            device, _ = self._states.popitem(last=False)
            self._dirty.discard(device)
            self.forgotten += 1

    def next_due(self) -> float | None:
        """When (monotonic) the pending rows are to be written, or None when every row is written."""
        return self._flushed_at + ROW_INTERVAL_S if self._dirty else None

    def pending_rows(self) -> list[tuple[Any, ...]]:
        """Every row behind its state (written at close)."""
        return [_row(self._states[device]) for device in self._dirty if device in self._states]

    def written_all(self) -> None:
        self._dirty.clear()

    def silent(self, now: datetime) -> Iterator[Silence]:
        """A :class:`Silence` for each online device that has sent nothing for its offline limit."""
        for state in list(self._states.values()):
            if state.online is not True:
                continue
            limit = self.offline_after(state.device_id)
            if limit <= 0:
                continue
            seen = datetime.fromisoformat(state.last_seen.replace("Z", "+00:00"))
            if (now - seen).total_seconds() >= limit:
                yield Silence(state.device_id, state.last_seq, now)
