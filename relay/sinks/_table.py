"""Sinks: where committed reports go. Each sink type is a :class:`Sink` (``._base``).

``mqtt`` (:mod:`._mqtt`), ``http`` (:mod:`._http`), ``osmand`` (:mod:`._osmand`) and ``passthrough``
(:mod:`._passthrough`). Each keeps its own durable position in the journal, so a slow or dead sink never
holds the others back.
"""

from __future__ import annotations

from ..config import (
    HttpSinkSettings,
    MqttSinkSettings,
    OsmandSinkSettings,
    PassthroughSinkSettings,
    SinkSettings,
)
from ..journal import Journal
from ._base import Sink


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
