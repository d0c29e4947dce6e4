"""Prometheus metrics of a running relay, read from its statistics objects at scrape time.

Nothing is counted twice: the listener, the journal and the sinks keep their own plain counters (an
attribute or dict increment on the hot path), and :class:`RelayCollector` turns them into metric
families when ``/metrics`` is scraped. Each relay has its own registry (:func:`make_registry`), so
several relays in one process (the tests) never share a metric.

Latencies are kept in :class:`relay.buckets.Buckets` (cheap enough for the reply path) and exposed
here as histograms. Import this module only when metrics are served: prometheus_client takes ~50 ms
to import.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ._running import Running

#: Sink counters, exposed for the sink types that keep them: attribute, metric name, help.
SINK_COUNTERS = (
    ("acknowledged", "relay_sink_delivered_reports", "Reports the sink's server confirmed, since start."),
    ("published", "relay_sink_published_reports", "Reports sent to the sink's server, since start."),
    ("dead_lettered", "relay_sink_dead_lettered_reports", "Reports the server refused for good."),
    ("skipped", "relay_sink_skipped_reports", "Reports acknowledged without sending (no upstream form)."),
    ("retries", "relay_sink_retries", "Requests sent again after a failure."),
    ("duplicates_possible", "relay_sink_duplicates_possible_reports", "Reports that may arrive twice."),
)


def make_registry(running: Running) -> CollectorRegistry:
    """A registry of its own for ``running``: the relay's metrics and the process's (memory, CPU, fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RelayCollector(running))
    ProcessCollector(registry=registry)
    return registry


def _relay_version() -> str:
    try:
        return version("edge-relay")
    except PackageNotFoundError:
        return "unknown"


def _family(
    kind: type[Metric],
    name: str,
    documentation: str,
    labels: Sequence[str],
    values: Iterable[tuple[Any, float]],
) -> Metric:
    """A labelled counter or gauge family from ``(label values, value)`` pairs."""
    family = kind(name, documentation, labels=labels)
    for key, value in values:
        family.add_metric(key if isinstance(key, tuple) else (key,), value)  # type: ignore[attr-defined]
    return family


class RelayCollector(Collector):
    """The relay's metrics, read from ``running`` each time the registry is collected."""

    def __init__(self, running: Running) -> None:
        self.running = running

    def collect(self) -> Iterator[Metric]:
        running = self.running
        yield _family(
            GaugeMetricFamily,
            "relay_info",
            "The relay's version and site (always 1).",
            ("version", "site"),
            [((_relay_version(), running.config.site), 1)],
        )
        health = running.health()
        yield GaugeMetricFamily(
            "relay_healthy", "1 while /healthz answers 200, else 0.", value=health["status"] == "ok"
        )
        yield from self._listener()
        yield from self._journal()
        yield from self._sinks(health["checks"]["sinks"])

    def _listener(self) -> Iterator[Metric]:
        stats = self.running.listener.stats
        yield GaugeMetricFamily("relay_connections_open", "TCP connections open now.", stats.connections_open)
        yield CounterMetricFamily(
            "relay_connections", "TCP connections accepted, refused ones included.", stats.connections_total
        )
        yield CounterMetricFamily(
            "relay_connections_refused",
            "TCP connections closed at once because a connection limit was reached.",
            stats.connections_refused,
        )
        yield CounterMetricFamily("relay_datagrams_received", "UDP datagrams received.", stats.datagrams)
        yield _family(
            CounterMetricFamily,
            "relay_frames_received",
            "Frames cut from streams and datagrams.",
            ("protocol", "transport"),
            sorted(stats.frames_by_protocol.items()),
        )
        yield _family(
            CounterMetricFamily,
            "relay_reports_decoded",
            "Reports decoded from frames (each is stored before its frame is answered).",
            ("protocol",),
            sorted(stats.reports_by_protocol.items()),
        )
        yield _family(
            CounterMetricFamily,
            "relay_frames_quarantined",
            "Bytes no driver could use, kept in the quarantine. reason: unrecognised (no driver knows "
            "the stream), malformed (the protocol's driver rejected the frame), driver_bug.",
            ("protocol", "reason"),
            sorted(stats.bad_frames_by_reason.items()),
        )
        yield GaugeMetricFamily(
            "relay_buffered_bytes",
            "Bytes of partial frames held for all connections ([listen] max_buffered_mb).",
            stats.buffered_bytes,
        )
        yield CounterMetricFamily(
            "relay_buffer_overflows",
            "Connections closed because partial frames of all connections exceeded their budget.",
            stats.buffer_overflows,
        )
        yield CounterMetricFamily(
            "relay_udp_peers_forgotten",
            "UDP peers whose session state was forgotten to stay within [listen] max_udp_peers.",
            stats.udp_peers_forgotten,
        )
        yield CounterMetricFamily(
            "relay_replies_sent",
            "Replies sent to devices, each after its reports were committed.",
            stats.replies,
        )
        latency = HistogramMetricFamily(
            "relay_ack_latency_seconds",
            "From receiving a device's bytes to sending the reply they asked for.",
            labels=("transport",),
        )
        for transport, buckets in sorted(stats.ack_latency.items()):
            latency.add_metric((transport,), buckets.cumulative(), buckets.sum)
        yield latency

    def _journal(self) -> Iterator[Metric]:
        journal = self.running.journal
        yield CounterMetricFamily("relay_journal_commits", "Group commits that succeeded.", journal.commits)
        yield CounterMetricFamily(
            "relay_journal_commit_failures",
            "Group commits that failed; none of their reports was acknowledged.",
            journal.commit_failures,
        )
        yield CounterMetricFamily(
            "relay_journal_reports", "Reports committed to the journal.", journal.committed_reports
        )
        yield CounterMetricFamily(
            "relay_journal_quarantined", "Quarantine rows committed to the journal.", journal.quarantined
        )
        yield CounterMetricFamily(
            "relay_journal_dropped_reports",
            "Undelivered reports deleted to keep the journal under its size limit.",
            journal.dropped,
        )
        budget = journal.quarantine_budget
        yield GaugeMetricFamily(
            "relay_quarantine_bytes",
            "Bytes the quarantine is charged for ([journal] quarantine_max_mb).",
            budget.total,
        )
        yield _family(
            CounterMetricFamily,
            "relay_quarantine_dropped_frames",
            "Bad input counted but not kept: over its peer's budget, or over the quarantine's total.",
            ("budget",),
            [("peer", budget.dropped_peer), ("total", budget.dropped_total)],
        )
        yield CounterMetricFamily(
            "relay_quarantine_truncated_frames",
            "Bad frames kept only in part ([journal] quarantine_frame_max_kb).",
            budget.truncated,
        )
        yield CounterMetricFamily(
            "relay_devices_forgotten",
            "Devices whose last-seen row was forgotten to stay within [journal] max_devices.",
            journal.devices_forgotten,
        )
        yield GaugeMetricFamily(
            "relay_journal_last_seq", "The newest committed report's seq.", journal.last_seq
        )
        commit = HistogramMetricFamily(
            "relay_journal_commit_duration_seconds", "Time one group commit took, write and fsync."
        )
        commit.add_metric((), journal.commit_time.cumulative(), journal.commit_time.sum)
        yield commit

    def _sinks(self, checks: dict[str, dict[str, Any]]) -> Iterator[Metric]:
        sinks = [
            (sink, (sink.name, getattr(getattr(sink, "settings", None), "type", "")))
            for sink in self.running.sinks
        ]
        labels = ("sink", "type")
        yield _family(
            GaugeMetricFamily,
            "relay_sink_connected",
            "1 while the sink is connected to its server.",
            labels,
            [(key, int(bool(sink.connected))) for sink, key in sinks],
        )
        yield _family(
            GaugeMetricFamily,
            "relay_sink_backlog_reports",
            "Reports committed and not yet delivered by the sink.",
            labels,
            [(key, sink.backlog()) for sink, key in sinks],
        )
        yield _family(
            GaugeMetricFamily,
            "relay_sink_stalled_seconds",
            "How long the sink has had reports to deliver and delivered none (or been disconnected "
            "with an error); 0 while it is fine.",
            labels,
            [(key, checks.get(sink.name, {}).get("stalled_s", 0.0)) for sink, key in sinks],
        )
        for attribute, name, documentation in SINK_COUNTERS:
            yield _family(
                CounterMetricFamily,
                name,
                documentation,
                labels,
                [(key, getattr(sink, attribute)) for sink, key in sinks if hasattr(sink, attribute)],
            )
