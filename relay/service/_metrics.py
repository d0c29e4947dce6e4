"""Prometheus metrics of a running relay, read from its statistics objects at scrape time.

Nothing is counted twice: the listener, the journal and the sinks keep their own statistics objects
(plain counters: an attribute or dict increment on the hot path), and :class:`RelayCollector` turns
them into metric families when ``/metrics`` is scraped, each from its fields' name, help and type
(:mod:`relay.statistics`): there is no list of metric names here to keep in step. Each relay has its
own registry (:func:`make_registry`), so several relays in one process (the tests) never share a metric.

Latencies are kept in :class:`relay.buckets.Buckets` (cheap enough for the reply path) and exposed
here as histograms. Import this module only when metrics are served: prometheus_client takes ~50 ms
to import.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import statistics

if TYPE_CHECKING:
    from ._running import Running

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
        yield from _rendered([(running.listener.stats, (), ())], prefix="relay_")
        yield from _rendered([(running.journal.stats, (), ())], prefix="relay_journal_")
        yield from self._commands()
        if running.config.modem is not None:
            yield from _rendered([(running.control_stats, (), ())], prefix="relay_cli_")
        yield from self._sinks(health["checks"]["sinks"])

    def _commands(self) -> Iterator[Metric]:
        commands = self.running.journal.commands
        yield from _rendered([(commands.stats, (), ())], prefix="relay_commands_")
        pending = commands.pending()
        queued = sum(command.state.value == "queued" for command in pending)
        yield GaugeMetricFamily(
            "relay_commands_queued", "Commands waiting to be sent (their device away or busy).", value=queued
        )
        yield GaugeMetricFamily(
            "relay_commands_in_flight",
            "Commands sent and waiting for their device's answer.",
            value=len(pending) - queued,
        )
        oldest = commands.oldest_queued()
        age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "relay_commands_oldest_queued_seconds",
            "How long the oldest command waiting to be sent has waited (0: none waits).",
            value=max(age, 0.0),
        )

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
        watches = {sink.name: self.running.sink_watches.get(sink.name) for sink, _ in sinks}
        yield _family(
            GaugeMetricFamily,
            "relay_sink_state_since_timestamp_seconds",
            "Unix time the sink last connected or disconnected (0: not seen yet).",
            labels,
            [(key, (watch.since or 0.0) if (watch := watches[sink.name]) else 0.0) for sink, key in sinks],
        )
        yield _family(
            GaugeMetricFamily,
            "relay_sink_uplink_windows",
            "The sink's connected windows in the last 24 hours (since start).",
            labels,
            [(key, len(watch.windows) if (watch := watches[sink.name]) else 0) for sink, key in sinks],
        )
        yield from _rendered([(sink.stats, labels, key) for sink, key in sinks], prefix="relay_sink_")


def _rendered(
    objects: Sequence[tuple[Any, tuple[str, ...], tuple[str, ...]]], *, prefix: str
) -> Iterator[Metric]:
    """The metric families of statistics objects (:mod:`relay.statistics`): each ``(stats, label names,
    label values)`` adds its samples, under those labels, to the families its fields declare."""
    families: dict[str, Metric] = {}
    for stats, labels, key in objects:
        for metric in statistics.metrics(stats, prefix):
            family = families.get(metric.name)
            if family is None:
                family = families[metric.name] = _KINDS[metric.kind](
                    metric.name, metric.doc, labels=(*labels, *metric.labels)
                )
            for values, value in metric.values:
                if metric.kind == "histogram":
                    family.add_metric((*key, *values), value.cumulative(), value.sum)  # type: ignore[attr-defined]
                else:
                    family.add_metric((*key, *values), value)  # type: ignore[attr-defined]
    yield from families.values()


_KINDS: dict[str, type[Metric]] = {
    "counter": CounterMetricFamily,
    "gauge": GaugeMetricFamily,
    "histogram": HistogramMetricFamily,
}
