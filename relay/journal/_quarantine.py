"""The quarantine's budget: bytes no driver could use are kept (so a later driver fix can re-decode them,
:mod:`._retry`) within :class:`QuarantineLimits`, per peer and in all."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from ._records import Quarantined
from ._statistics import JournalStatistics


@dataclass(frozen=True, slots=True)
class QuarantineLimits:
    """How much bad input the journal keeps: a flood of garbage costs at most these bytes, and the
    journal keeps its room for reports."""

    #: All quarantine rows together.
    total_bytes: int = 64 * 1024 * 1024
    #: The rows of one peer address (its IP, whatever the port).
    peer_bytes: int = 1024 * 1024
    #: One row's bytes; a longer frame keeps its head (the reason says how long it was).
    frame_bytes: int = 64 * 1024


#: What a quarantine row costs beyond its bytes (the row, its reason and peer), and the least it is
#: charged, so a flood of empty frames is bounded too.
QUARANTINE_ROW_COST = 256


def peer_address(peer: str) -> str:
    """The address part of ``host:port`` (``[v6]:port`` too); the whole string otherwise."""
    host, colon, port = peer.rpartition(":")
    if colon and port.isdigit() and host:
        return host.strip("[]")
    return peer


def _row_cost(item: Quarantined) -> int:
    return len(item.raw) + len(item.reason) + QUARANTINE_ROW_COST



class QuarantineBudget:
    """Admits quarantine rows while their peer and the quarantine as a whole are within their
    :class:`QuarantineLimits`. Checked when rows are submitted, before they are queued for a commit,
    so a flood never reaches the writer's queue. Rows of SMS messages are always admitted: the modem
    deletes a message once its row is committed, and SMS floods cost the sender money."""

    def __init__(
        self, limits: QuarantineLimits, usage: Mapping[str, int], stats: JournalStatistics | None = None
    ) -> None:
        self.limits = limits
        #: Where the rows refused (per budget), cut to ``frame_bytes`` and the bytes charged are counted.
        self.stats = stats or JournalStatistics()
        self._lock = threading.Lock()
        self._peers: dict[str, int] = {}
        self.total = 0
        self.reset(usage)

    def reset(self, usage: Mapping[str, int]) -> None:
        """Start again from what the quarantine holds now (``peer -> bytes``), after rows were deleted."""
        peers: dict[str, int] = {}
        for peer, used in usage.items():
            address = peer_address(peer or "")
            peers[address] = peers.get(address, 0) + used
        with self._lock:
            self._peers = peers
            self.total = self.stats.quarantine_bytes = sum(peers.values())

    def admit(self, item: Quarantined) -> Quarantined | None:
        """``item`` (its raw bytes cut to the frame limit), or ``None`` when it is over a budget."""
        limits = self.limits
        if len(item.raw) > limits.frame_bytes:
            self.stats.quarantine_truncated += 1
            item = Quarantined(
                item.raw[: limits.frame_bytes],
                f"{item.reason} (first {limits.frame_bytes} of {len(item.raw)} bytes kept)",
                item.transport,
                item.peer,
                item.received_at,
                item.protocol,
            )
        cost = _row_cost(item)
        address = peer_address(item.peer)
        with self._lock:
            used = self._peers.get(address, 0)
            if item.transport != "sms":
                if used + cost > limits.peer_bytes:
                    self.stats.quarantine_dropped_peer += 1
                    return None
                if self.total + cost > limits.total_bytes:
                    self.stats.quarantine_dropped_total += 1
                    return None
            self._peers[address] = used + cost
            self.total += cost
            self.stats.quarantine_bytes = self.total
        return item

    @property
    def dropped(self) -> int:
        """Rows refused, for either budget."""
        return self.stats.quarantine_dropped_peer + self.stats.quarantine_dropped_total
