"""Sinks: where committed reports go. Each sink type is a class with the same small surface.

``mqtt`` (:mod:`._mqtt`), ``http`` (:mod:`._http`), ``osmand`` (:mod:`._osmand`) and ``passthrough``
(:mod:`._passthrough`). Each keeps its own durable position in the journal, so a slow or dead sink never
holds the others back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

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


def _mqtt(settings: MqttSinkSettings, journal: Journal) -> Sink:
    from ._mqtt import MqttSink  # paho is imported only when a sink needs it

    return MqttSink(settings, journal)


def _http(settings: HttpSinkSettings, journal: Journal) -> Sink:
    from ._http import HttpSink

    return HttpSink(settings, journal)


def _osmand(settings: OsmandSinkSettings, journal: Journal) -> Sink:
    from ._osmand import OsmandSink

    return OsmandSink(settings, journal)


def _passthrough(settings: PassthroughSinkSettings, journal: Journal) -> Sink:
    from ._passthrough import PassthroughSink

    return PassthroughSink(settings, journal)


#: Each sink type's settings class (:data:`relay.config.SINK_TYPES`) and what makes its sink.
SINK_CLASSES: dict[type[SinkSettings], Callable[[Any, Journal], Sink]] = {
    MqttSinkSettings: _mqtt,
    HttpSinkSettings: _http,
    OsmandSinkSettings: _osmand,
    PassthroughSinkSettings: _passthrough,
}


def make_sink(settings: SinkSettings, journal: Journal) -> Sink:
    """The sink for ``settings`` (by its type)."""
    make = SINK_CLASSES.get(type(settings))
    if make is None:
        raise TypeError(f"no sink for settings of type {type(settings).__name__}")
    return make(settings, journal)
