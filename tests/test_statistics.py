"""Statistics objects say what each field is; /metrics is rendered from that alone."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from relay.buckets import Buckets
from relay.statistics import counter, gauge, histogram, labelled, metrics


@dataclass
class Example:
    plain: int = 0
    open_now: int = gauge("Open now.")
    done: int = counter("Done since start.", metric="other_done")
    refused_peer: int = counter("Refused.", metric="refused", labels={"budget": "peer"})
    refused_total: int = counter("Refused.", metric="refused", labels={"budget": "total"})
    by_protocol: defaultdict[str, int] = labelled(
        "counter", "Per protocol.", ("protocol",), factory=lambda: defaultdict(int)
    )
    took: Buckets = histogram("How long.", factory=lambda: Buckets((0.1, 1.0)))


def test_fields_become_metrics_named_typed_and_labelled_as_declared() -> None:
    stats = Example(plain=7, open_now=2, done=5, refused_peer=1, refused_total=3)
    stats.by_protocol["h02"] += 4
    stats.by_protocol["gt06"] += 1
    stats.took.observe(0.5)
    found = {metric.name: metric for metric in metrics(stats, "x_")}
    assert list(found) == ["x_open_now", "other_done", "refused", "x_by_protocol", "x_took"]  # not "plain"
    assert (found["x_open_now"].kind, found["x_open_now"].doc, found["x_open_now"].values) == (
        "gauge",
        "Open now.",
        [((), 2)],
    )
    assert found["other_done"].kind == "counter" and found["other_done"].values == [((), 5)]
    assert found["refused"].labels == ("budget",)
    assert found["refused"].values == [(("peer",), 1), (("total",), 3)]
    assert found["x_by_protocol"].labels == ("protocol",)
    assert found["x_by_protocol"].values == [(("gt06",), 1), (("h02",), 4)]
    assert found["x_took"].kind == "histogram" and found["x_took"].values[0][1] is stats.took


def test_new_statistics_start_at_zero_and_are_their_own() -> None:
    one, two = Example(), Example()
    one.by_protocol["h02"] += 1
    assert one.done == 0 and dict(two.by_protocol) == {} and one.took is not two.took
