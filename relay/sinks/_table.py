"""Sinks: where committed reports go. Each sink type is a :class:`Sink` (``._base``).

``mqtt`` (:mod:`._mqtt`), ``http`` (:mod:`._http`), ``osmand`` (:mod:`._osmand`) and ``passthrough``
(:mod:`._passthrough`). Each keeps its own durable position in the journal, so a slow or dead sink never
holds the others back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import (
    HttpSinkSettings,
    MqttSinkSettings,
    OsmandSinkSettings,
    PassthroughSinkSettings,
    SinkSettings,
)
from ..journal import Journal
from ._base import Sink


def _mqtt(settings: MqttSinkSettings, journal: Journal) -> Sink:
    from ._mqtt import MqttSink  # imported only when a sink needs it

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
