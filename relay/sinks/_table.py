"""Sinks: where committed reports go. Each sink type is a class with the same small surface.

``mqtt`` (:mod:`._mqtt`), ``http`` (:mod:`._http`), ``osmand`` (:mod:`._osmand`) and ``passthrough``
(:mod:`._passthrough`). Each keeps its own durable position in the journal, so a slow or dead sink never
holds the others back.
"""

from __future__ import annotations

from typing import Protocol

import trio

from ..config import (
    HttpSinkSettings,
    MqttSinkSettings,
    OsmandSinkSettings,
    PassthroughSinkSettings,
    SinkSettings,
)
from ..journal import Journal
from ._delivery import Delivery


class Sink(Protocol):
    """What the app and the status page need of a sink."""

    name: str
    delivery: Delivery
    connected: bool
    published: int
    #: Why the last attempt failed (None after a success).
    last_error: str | None

    @property
    def acknowledged(self) -> int: ...

    @property
    def last_delivery(self) -> float | None:
        """``time.monotonic()`` when a report was last acknowledged; None before the first."""

    @property
    def floor(self) -> int: ...

    def backlog(self) -> int: ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver forever, reconnecting as needed; ``task_status.started()`` once running."""


def make_sink(settings: SinkSettings, journal: Journal) -> Sink:
    """The sink for ``settings`` (by its type)."""
    if isinstance(settings, MqttSinkSettings):
        from ._mqtt import MqttSink

        return MqttSink(settings, journal)
    if isinstance(settings, HttpSinkSettings):
        from ._http import HttpSink

        return HttpSink(settings, journal)
    if isinstance(settings, OsmandSinkSettings):
        from ._osmand import OsmandSink

        return OsmandSink(settings, journal)
    if isinstance(settings, PassthroughSinkSettings):
        from ._passthrough import PassthroughSink

        return PassthroughSink(settings, journal)
    raise TypeError(f"no sink for settings of type {type(settings).__name__}")
