"""Statistics objects: plain dataclasses of counters and gauges that a component increments on its hot
path, each field saying what it counts. ``/metrics`` (:mod:`relay.service._metrics`) renders them from
the fields alone: the metric's name, help, type and labels come from :func:`counter`, :func:`gauge` and
:func:`histogram`, so there is no second list of names to keep in step.

A field declared with them is exposed; a plain field is not. Its value is a number, or for a labelled
metric a mapping from label values (a tuple, or one string) to numbers; a histogram's value is a
:class:`relay.buckets.Buckets` (or a mapping from label values to them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["counter", "gauge", "histogram"]


def _metric(kind: Kind, doc: str, metric: str | None, labels: Mapping[str, str] | tuple[str, ...]) -> Any:
    return {"kind": kind, "doc": doc, "metric": metric, "labels": labels}


def counter(doc: str, *, metric: str | None = None, labels: Mapping[str, str] | tuple[str, ...] = ()) -> Any:
    """A count that only grows (since start), 0 at first. ``metric``: its name without the statistics
    object's prefix rule (see :func:`metrics`); ``labels``: the label names of a mapping's keys, or fixed
    ``{label: value}`` pairs (fields sharing one ``metric`` become one labelled family)."""
    return field(default=0, metadata=_metric("counter", doc, metric, labels))


def gauge(doc: str, *, metric: str | None = None, labels: Mapping[str, str] | tuple[str, ...] = ()) -> Any:
    """A value that goes up and down (what is held or open now), 0 at first."""
    return field(default=0, metadata=_metric("gauge", doc, metric, labels))


def labelled(
    kind: Kind, doc: str, labels: tuple[str, ...], *, metric: str | None = None, factory: Any
) -> Any:
    """A counter, gauge or histogram per label values: a mapping made by ``factory``."""
    return field(default_factory=factory, metadata=_metric(kind, doc, metric, labels))


def histogram(doc: str, *, metric: str | None = None, factory: Any) -> Any:
    """A :class:`relay.buckets.Buckets` of observed values, made by ``factory``."""
    return field(default_factory=factory, metadata=_metric("histogram", doc, metric, ()))


@dataclass(frozen=True, slots=True)
class Metric:
    """One exposed field: its metric name, type, help, label names and ``(label values, value)`` pairs."""

    name: str
    kind: Kind
    doc: str
    labels: tuple[str, ...]
    values: list[tuple[tuple[str, ...], Any]]


def metrics(stats: Any, prefix: str) -> Iterator[Metric]:
    """The exposed fields of the statistics object ``stats``, in declaration order; a field's metric is
    named ``metric`` when it gives one, else ``prefix`` + its field name. Fields that name the same
    metric with fixed labels are merged into one family."""
    merged: dict[str, Metric] = {}
    for spec in dataclasses.fields(stats):
        meta = spec.metadata
        if "kind" not in meta:
            continue
        name = meta["metric"] or prefix + spec.name
        value = getattr(stats, spec.name)
        labels = meta["labels"]
        if isinstance(labels, Mapping):
            names, pairs = tuple(labels), [(tuple(labels.values()), value)]
        elif labels:
            names = labels
            pairs = [(key if isinstance(key, tuple) else (key,), item) for key, item in sorted(value.items())]
        else:
            names, pairs = (), [((), value)]
        if name in merged:
            merged[name].values.extend(pairs)
        else:
            merged[name] = Metric(name, meta["kind"], meta["doc"], names, pairs)
    yield from merged.values()
