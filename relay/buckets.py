"""A histogram cheap enough for the reply path: one ``bisect`` and two additions per observation.

The relay's latencies are counted here and exposed by :mod:`relay.service._metrics` at scrape time.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

#: Ack latency bounds, seconds: commits are spaced 0.2 s by default; trackers wait seconds.
ACK_LATENCY_BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Group commit duration bounds, seconds: an fsync on an SD card takes milliseconds to a second.
COMMIT_BOUNDS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Buckets:
    """A histogram for a hot path: a count per bucket and the sum, nothing else.

    Not thread-safe: observe and read it from the trio thread.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        #: ``counts[i]``: observations above ``bounds[i-1]`` and up to ``bounds[i]``; the last, above all.
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """Prometheus ``le`` buckets: ``(bound, observations <= bound)``, the last one ``+Inf``."""
        labels = [repr(float(bound)) for bound in self.bounds] + ["+Inf"]
        buckets: list[tuple[str, float]] = []
        total = 0
        for label, count in zip(labels, self.counts, strict=True):
            total += count
            buckets.append((label, total))
        return buckets
