"""Sinks: where committed reports go. Each sink type is a class with the same small surface."""

from __future__ import annotations

from typing import Protocol

import trio

from .config import MqttSinkSettings, SinkSettings
from .delivery import Delivery
from .journal import Journal


class Sink(Protocol):
    """What the app and the status page need of a sink."""

    name: str
    delivery: Delivery
    connected: bool
    published: int
    last_error: str | None

    @property
    def acknowledged(self) -> int: ...

    @property
    def floor(self) -> int: ...

    def backlog(self) -> int: ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver forever, reconnecting as needed; ``task_status.started()`` once running."""


def make_sink(settings: SinkSettings, journal: Journal) -> Sink:
    """The sink for ``settings`` (by its type)."""
    if isinstance(settings, MqttSinkSettings):
        from .mqtt import MqttSink

        return MqttSink(settings, journal)
    raise TypeError(f"no sink for settings of type {type(settings).__name__}")
