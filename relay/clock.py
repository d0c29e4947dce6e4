"""Is the system clock believable? A Pi has no real-time clock: until NTP syncs, it may think it is 1970
(or the last shutdown). Reports received then are still stored and answered — losing them would be
worse — but each is marked ``attributes.clock_unsynced = true`` so receivers know ``received_at`` is
not to be trusted, and the relay says so in its log.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from drivers import Report

#: No report reaches this relay before this version was made: an earlier clock is not set yet.
EARLIEST_PLAUSIBLE = datetime(2026, 1, 1, tzinfo=UTC)


def clock_unsynced(now: datetime) -> bool:
    return now < EARLIEST_PLAUSIBLE


def mark_unsynced(report: Report) -> Report:
    """``report`` marked ``attributes.clock_unsynced``: it was received before the clock was set."""
    return replace(report, attributes={**report.attributes, "clock_unsynced": True})
