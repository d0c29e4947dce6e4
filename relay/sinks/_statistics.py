"""What a sink counted since start: its statistics object (rendered by ``/metrics`` with the labels
``sink`` and ``type``, see :mod:`relay.statistics`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..statistics import counter


@dataclass
class SinkStatistics:
    """A sink's counters (``sink.stats``), kept by the sink, its :class:`Delivery` and its poster."""

    delivered: int = counter(
        "Reports the sink's server confirmed, since start.", metric="relay_sink_delivered_reports"
    )
    published: int = counter(
        "Reports sent to the sink's server, since start.", metric="relay_sink_published_reports"
    )
    dead_lettered: int = counter(
        "Reports the server refused for good.", metric="relay_sink_dead_lettered_reports"
    )
    skipped: int = counter(
        "Reports acknowledged without sending (no upstream form).", metric="relay_sink_skipped_reports"
    )
    retries: int = counter("Requests sent again after a failure.", metric="relay_sink_retries")
    duplicates_possible: int = counter(
        "Reports that may arrive twice.", metric="relay_sink_duplicates_possible_reports"
    )
