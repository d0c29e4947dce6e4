"""A started relay, as the status endpoint, the metrics and the tests see it, and its health."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..config import Config
from ..devices import Registry
from ..journal import Journal, MetaValue
from ..sinks import Sink
from ..sources import Listener
from ._control import ControlStats

if TYPE_CHECKING:
    from ..sources import ModemStatus
    from ._reader import StatusReader

#: How often each sink's progress is looked at for /healthz (and on every health check).
SINK_LOOK_S = 1.0


#: How long the uplink windows are kept (``/status``: the last 24 hours).
UPLINK_WINDOWS_S = 86_400.0
#: Windows kept per sink at most: a link that flaps every few seconds keeps its newest.
UPLINK_WINDOWS_KEPT = 288
#: A sink's uplink is saved in the journal (``meta`` row ``uplink:<sink>``, for ``relay status`` and the
#: next start) when it changed, this often at most, and at a clean stop.
UPLINK_SAVE_S = 30.0


class SinkWatch:
    """How long a sink has been stuck: reports to deliver and none delivered between two looks, or
    disconnected with an error. Any delivery (or an empty backlog while connected) ends a stall.

    Also the sink's uplink, as seen at each look: connected or not since when (wall clock), its last
    error, and its windows of the last 24 hours (when it came up, how long it stayed, how many reports
    it drained). Known to a look's precision (SINK_LOOK_S); the windows of earlier runs come from the
    journal (:meth:`restore`)."""

    def __init__(self) -> None:
        self.acknowledged = -1
        self.stuck_since: float | None = None
        self.connected: bool | None = None
        #: ``time.time()`` when the sink was last seen connecting or disconnecting.
        self.since: float | None = None
        self.last_error: str | None = None
        #: ``[came_up, lasted_s (None while open), acknowledged when it came up, drained]``, oldest first.
        self.windows: list[list[Any]] = []
        #: Whether the uplink changed since it was last saved (:meth:`document`).
        self.changed = False

    def _watch_uplink(self, sink: Sink, acknowledged: int) -> None:
        connected, wall = bool(sink.connected), time.time()
        window = self.windows[-1] if self.windows and self.windows[-1][1] is None else None
        if window is not None and window[3] != acknowledged - window[2]:
            window[3] = acknowledged - window[2]
            self.changed = True
        if sink.last_error != self.last_error:
            self.last_error, self.changed = sink.last_error, True
        if connected == self.connected:
            return
        self.connected, self.since, self.changed = connected, wall, True
        if connected:
            # Counted from the last look, when it was not connected yet: nothing was delivered since.
            start = max(self.acknowledged, 0)
            self.windows.append([wall, None, start, acknowledged - start])
        elif window is not None:
            window[1] = wall - window[0]
        self._forget_old(wall)

    def _forget_old(self, wall: float) -> None:
        kept_from = wall - UPLINK_WINDOWS_S
        while self.windows and self.windows[0][1] is not None and self.windows[0][0] < kept_from:
            del self.windows[0]
        del self.windows[:-UPLINK_WINDOWS_KEPT]

    def stopped(self, wall: float) -> None:
        """The relay stops: the open window ends now, and the sink is disconnected from now on."""
        if self.windows and self.windows[-1][1] is None:
            self.windows[-1][1] = wall - self.windows[-1][0]
        self.connected, self.since, self.changed = False, wall, True

    def document(self) -> str:
        """The uplink as saved in the journal: :meth:`uplink` with ``connected``, ``last_error`` and
        ``saved_at`` (what ``relay status`` shows of a relay that is not answering)."""
        self.changed = False
        saved = {"connected": self.connected, "last_error": self.last_error, **self.uplink()}
        saved["saved_at"] = _iso(time.time())
        return json.dumps(saved, separators=(",", ":"))

    @classmethod
    def restore(cls, text: str) -> SinkWatch:
        """The watch of a sink whose uplink an earlier run saved (:meth:`document`): its windows and last
        error; whether it is connected is seen afresh. A document that cannot be read is ignored."""
        watch = cls()
        try:
            saved = json.loads(text)
            saved_at = _parse_iso(saved["saved_at"])
            for window in saved["uplink_windows"]:
                came_up = _parse_iso(window["came_up"])
                lasted = float(window["lasted_s"]) if not window["open"] else saved_at - came_up
                watch.windows.append([came_up, lasted, 0, int(window["drained"])])
            watch.last_error = saved.get("last_error")
        except (ValueError, TypeError, KeyError, AttributeError):
            return cls()
        watch._forget_old(time.time())
        return watch

    def uplink(self) -> dict[str, Any]:
        """``connected_since`` / ``disconnected_since`` (ISO 8601 UTC) and ``uplink_windows``."""
        now = time.time()
        windows = [
            {
                "came_up": _iso(came_up),
                "lasted_s": round(now - came_up if lasted is None else lasted, 1),
                "open": lasted is None,
                "drained": drained,
            }
            for came_up, lasted, _start, drained in self.windows
        ]
        key = "connected_since" if self.connected else "disconnected_since"
        return {key: _iso(self.since) if self.since is not None else None, "uplink_windows": windows}

    def look(self, sink: Sink, now: float) -> float:
        """Look at ``sink`` at monotonic time ``now``; seconds it has been stuck (0.0: it is not)."""
        acknowledged = sink.acknowledged
        self._watch_uplink(sink, acknowledged)
        progressed, self.acknowledged = acknowledged != self.acknowledged, acknowledged
        down = not sink.connected and sink.last_error is not None
        if down or (sink.backlog() > 0 and not progressed):
            if self.stuck_since is None:
                self.stuck_since = now
            return now - self.stuck_since
        self.stuck_since = None
        return 0.0


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Running:
    """A started relay, as the tests and the status page see it."""

    config: Config
    journal: Journal
    listener: Listener
    port: int
    sinks: list[Sink] = field(default_factory=list)
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    status_port: int | None = None
    #: The status endpoint's journal reader (``None`` without ``[status] listen``).
    status_reader: StatusReader | None = None
    #: True from the moment the port is bound until the listener stops.
    listening: bool = False
    sink_watches: dict[str, SinkWatch] = field(default_factory=dict)
    #: When the relay started (``time.monotonic()``), for its uptime.
    started_at: float = field(default_factory=time.monotonic)
    #: The modem's state, SIM and signal (``None`` until the SMS source starts, or without a modem).
    modem_status: ModemStatus | None = None
    #: The known devices (``[[devices]]``): lookups by id and by phone number.
    registry: Registry = field(default_factory=Registry)
    #: Where ``relay sms send``/``provision`` reach the modem task (``None``: no modem, or not served).
    control_socket: Path | None = None
    control_stats: ControlStats = field(default_factory=ControlStats)

    def health(self) -> dict[str, Any]:
        """What /healthz answers: ``{"status": "ok" | "unhealthy", "checks": {...}}``.

        Unhealthy when the last journal commit failed, when the listener is not serving (or refuses new
        connections at its limit), or when a sink has been stuck longer than ``[status] sink_stall_s``.
        Each check says ``ok`` and, when not, its ``reason``.
        """
        journal = self.journal
        journal_check: dict[str, Any] = {
            "ok": journal.last_commit_error is None,
            "commits": journal.stats.commits,
            "last_seq": journal.last_seq,
        }
        problems = journal.problems()
        if journal.last_commit_error is not None:
            problems.insert(0, f"journal cannot commit: {journal.last_commit_error}")
        if problems:
            journal_check["ok"] = False
            journal_check["reason"] = "; ".join(problems)
        stats, limit = self.listener.stats, self.config.listen.max_connections
        listener_check: dict[str, Any] = {
            "ok": self.listening and stats.connections_open < limit,
            "connections_open": stats.connections_open,
            "max_connections": limit,
        }
        if not self.listening:
            listener_check["reason"] = "the listener is not serving"
        elif stats.connections_open >= limit:
            listener_check["reason"] = f"at the connection limit ({limit}): new connections are refused"
        sinks = {sink.name: self._sink_check(sink, time.monotonic()) for sink in self.sinks}
        checks = {"journal": journal_check, "listener": listener_check, "sinks": sinks}
        ok = journal_check["ok"] and listener_check["ok"] and all(check["ok"] for check in sinks.values())
        return {"status": "ok" if ok else "unhealthy", "checks": checks}

    def _sink_check(self, sink: Sink, now: float) -> dict[str, Any]:
        stalled = self.look_at_sink(sink, now)
        pending = sink.backlog()
        check: dict[str, Any] = {
            "ok": stalled <= self.config.status.sink_stall_s,
            "connected": sink.connected,
            "pending": pending,
            "stalled_s": round(stalled, 1),
            "last_error": sink.last_error,
        }
        if not check["ok"]:
            if not sink.connected and sink.last_error is not None:
                check["reason"] = (
                    f"disconnected for {stalled:.0f} s with {pending} pending: {sink.last_error}"
                )
            else:
                check["reason"] = f"no delivery for {stalled:.0f} s with {pending} pending"
        return check

    def uplink(self, sink: Sink) -> dict[str, Any]:
        """``sink``'s uplink: connected or disconnected since when, its windows (:class:`SinkWatch`)."""
        return self.sink_watches.setdefault(sink.name, SinkWatch()).uplink()

    def restore_uplinks(self) -> None:
        """Each sink's uplink windows and last error as the previous run saved them."""
        for sink in self.sinks:
            saved = self.journal.meta(f"uplink:{sink.name}")
            if saved:
                self.sink_watches[sink.name] = SinkWatch.restore(saved)

    def uplink_rows(self, *, stopping: bool = False) -> list[MetaValue]:
        """The ``meta`` rows of the sinks' uplinks that changed since they were last saved (all of them
        when ``stopping``: their open windows end)."""
        wall = time.time()
        rows = []
        for name, watch in self.sink_watches.items():
            if stopping:
                watch.stopped(wall)
            if watch.changed:
                rows.append(MetaValue(f"uplink:{name}", watch.document()))
        return rows

    def look_at_sink(self, sink: Sink, now: float) -> float:
        """Seconds ``sink`` has been stuck, as of monotonic ``now`` (see :class:`SinkWatch`)."""
        return self.sink_watches.setdefault(sink.name, SinkWatch()).look(sink, now)

    def health_problem(self) -> str | None:
        """Why the relay cannot do its job right now (every reason, joined), or ``None``."""
        checks = self.health()["checks"]
        every = (checks["journal"], checks["listener"], *checks["sinks"].values())
        reasons = [check["reason"] for check in every if "reason" in check]
        return "; ".join(reasons) or None

    def statistics(self) -> dict[str, Any]:
        stats = {key: value for key, value in vars(self.listener.stats).items() if isinstance(value, int)}
        stats.update(
            journal_commits=self.journal.stats.commits,
            journal_reports=self.journal.stats.committed_reports,
            journal_quarantined=self.journal.stats.quarantined,
            journal_dropped=self.journal.stats.dropped,
            journal_read_errors=self.journal.stats.read_errors,
            journal_unreadable_reports=self.journal.stats.unreadable_reports,
            journal_reopens=self.journal.stats.reopens,
            journal_set_aside=int(self.journal.set_aside is not None),
        )
        for sink in self.sinks:
            stats[f"sink_{sink.name}_connected"] = sink.connected
            stats[f"sink_{sink.name}_published"] = sink.stats.published
            stats[f"sink_{sink.name}_acknowledged"] = sink.acknowledged
            stats[f"sink_{sink.name}_backlog"] = sink.backlog()
            for counter in (
                "duplicates_possible",
                "dead_lettered",
                "skipped",
                "retries",
                "answers_cut",
                "deadlines",
                "puback_timeouts",
            ):
                value = getattr(sink.stats, counter, getattr(sink, counter, None))
                if value is not None:
                    stats[f"sink_{sink.name}_{counter}"] = value
        return stats
