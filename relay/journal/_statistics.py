"""What the journal counted since start: its statistics object (rendered by ``/metrics``, see
:mod:`relay.statistics`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..buckets import COMMIT_BOUNDS_S, Buckets
from ..statistics import counter, gauge, histogram


@dataclass
class JournalStatistics:
    """The journal's counters and gauges (``Journal.stats``)."""

    commits: int = counter("Group commits that succeeded.", metric="relay_journal_commits")
    commit_failures: int = counter(
        "Group commits that failed; none of their reports was acknowledged.",
        metric="relay_journal_commit_failures",
    )
    committed_reports: int = counter("Reports committed to the journal.", metric="relay_journal_reports")
    quarantined: int = counter(
        "Quarantine rows committed to the journal.", metric="relay_journal_quarantined"
    )
    dropped: int = counter(
        "Undelivered reports deleted to keep the journal under its size limit.",
        metric="relay_journal_dropped_reports",
    )
    devices_forgotten: int = counter(
        "Devices whose last-seen row was forgotten to stay within [journal] max_devices.",
        metric="relay_devices_forgotten",
    )
    last_seq: int = gauge("The newest committed report's seq.", metric="relay_journal_last_seq")
    quarantine_bytes: int = gauge(
        "Bytes the quarantine is charged for ([journal] quarantine_max_mb).", metric="relay_quarantine_bytes"
    )
    quarantine_dropped_peer: int = counter(
        "Bad input counted but not kept: over its peer's budget, or over the quarantine's total.",
        metric="relay_quarantine_dropped_frames",
        labels={"budget": "peer"},
    )
    quarantine_dropped_total: int = counter(
        "Bad input counted but not kept: over its peer's budget, or over the quarantine's total.",
        metric="relay_quarantine_dropped_frames",
        labels={"budget": "total"},
    )
    quarantine_truncated: int = counter(
        "Bad frames kept only in part ([journal] quarantine_frame_max_kb).",
        metric="relay_quarantine_truncated_frames",
    )
    read_errors: int = counter(
        "Reads that met a damaged page or an I/O error (the reports there are skipped).",
        metric="relay_journal_read_errors",
    )
    unreadable_reports: int = counter(
        "Reports that could not be read and were skipped.", metric="relay_journal_unreadable_reports"
    )
    reopens: int = counter(
        "Times the journal was reopened because its file or WAL was deleted or replaced.",
        metric="relay_journal_reopens",
    )
    commit_time: Buckets = histogram(
        "Time one group commit took, write and fsync.",
        metric="relay_journal_commit_duration_seconds",
        factory=lambda: Buckets(COMMIT_BOUNDS_S),
    )
