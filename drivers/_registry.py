"""The driver registry and the sniffer that picks a protocol from a stream's first bytes.

A driver module registers itself with :func:`register`; the listener never names a protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ._model import Transport
from ._session import Match, Session

Sniffer = Callable[[bytes, Transport], Match]

#: Bytes a stream may send without any driver claiming it before it is given up as unknown.
MAX_SNIFF_BYTES = 512


@dataclass(frozen=True, slots=True)
class Driver:
    """A protocol: its name, how to recognise it, and the session class that speaks it."""

    name: str
    sniff: Sniffer
    session: type[Session]

    def new_session(self, transport: Transport, *, device_id: str | None = None) -> Session:
        return self.session(transport, device_id=device_id)


_DRIVERS: dict[str, Driver] = {}


def register(name: str, sniff: Sniffer, session: type[Session]) -> Driver:
    """Add a driver. Registration order is the tie-break when two sniffers both say YES."""
    if name in _DRIVERS:
        raise ValueError(f"driver {name!r} registered twice")
    driver = Driver(name, sniff, session)
    _DRIVERS[name] = driver
    return driver


def drivers() -> dict[str, Driver]:
    """Every registered driver by name, in registration order."""
    _load_builtin()
    return dict(_DRIVERS)


def get(name: str) -> Driver:
    """:raises KeyError: no driver by that name (the message lists the known ones)."""
    _load_builtin()
    try:
        return _DRIVERS[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(_DRIVERS)}") from None


class NeedMore:
    """Sentinel type: the sniffer needs more bytes to decide."""

    def __repr__(self) -> str:
        return "NEED_MORE"


NEED_MORE = NeedMore()


def detect(head: bytes, transport: Transport, *, final: bool = False) -> Driver | NeedMore | None:
    """The driver whose protocol these bytes are.

    Returns a :class:`Driver`, ``None`` when no driver claims the bytes, or :data:`NEED_MORE` while
    some driver still needs more bytes to decide. ``final=True`` (no more bytes will come: the
    datagram is whole, or the stream timed out) takes the first YES even if others are unsure.
    """
    _load_builtin()
    undecided = False
    chosen: Driver | None = None
    for driver in _DRIVERS.values():
        if transport not in driver.session.transports:
            continue
        verdict = driver.sniff(head, transport)
        if verdict is Match.YES and chosen is None:
            chosen = driver
        elif verdict is Match.MORE:
            undecided = True
    if chosen is not None and (not undecided or final):
        return chosen
    if undecided and not final and len(head) < MAX_SNIFF_BYTES:
        return NEED_MORE
    return chosen


_loaded = False


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import _builtin  # noqa: F401  (imports register every bundled driver)
