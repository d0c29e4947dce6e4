"""One shared read of the journal for the status endpoint."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import trio

#: How old a ``/status`` read of the journal may be when it is served again.
STATUS_MAX_AGE_S = 2.0


class StatusReader:
    """The journal's state for ``/status`` and the page: ``read`` (blocking, in a worker thread of its
    own, not trio's shared pool where the journal's commits run) at most once per ``max_age_s`` and one
    at a time; every request in between shares that read."""

    def __init__(self, read: Callable[[], dict[str, Any]], max_age_s: float = STATUS_MAX_AGE_S) -> None:
        self._read = read
        self.max_age_s = max_age_s
        self.reads = 0
        self._lock = trio.Lock()
        self._limiter = trio.CapacityLimiter(1)
        self._value: dict[str, Any] | None = None
        self._read_at = -math.inf

    async def read(self) -> dict[str, Any]:
        async with self._lock:
            if self._value is None or trio.current_time() - self._read_at > self.max_age_s:
                self._value = await trio.to_thread.run_sync(self._read, limiter=self._limiter)
                self._read_at = trio.current_time()
                self.reads += 1
            return dict(self._value)
