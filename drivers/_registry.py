"""The driver registry and the sniffer that picks a protocol from a stream's first bytes.

A driver module registers itself with :func:`register`; the listener never names a protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ._commands import normalise
from ._model import (
    Command,
    CommandType,
    InvalidCommand,
    InvalidDeviceId,
    Transport,
    UnsupportedCommand,
    Via,
    check_device_id,
)
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
    return dict(_DRIVERS)


def get(name: str) -> Driver:
    """:raises KeyError: no driver by that name (the message lists the known ones)."""
    try:
        return _DRIVERS[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; known: {', '.join(_DRIVERS)}") from None


def _session_class(protocol: str) -> type[Session]:
    driver = _DRIVERS.get(protocol)
    if driver is None:
        raise UnsupportedCommand(protocol, f"unknown protocol {protocol!r}; known: {', '.join(_DRIVERS)}")
    return driver.session


def supported_commands(protocol: str, via: Via = Via.DATA) -> frozenset[CommandType]:
    """The command types ``protocol`` carries over ``via`` (empty for an unknown protocol)."""
    driver = _DRIVERS.get(protocol)
    if driver is None:
        return frozenset()
    return driver.session.supported_commands if via is Via.DATA else driver.session.sms_commands


def check_command(protocol: str, command: Command, *, via: Via = Via.DATA) -> Command:
    """``command`` with its parameters normalised (defaults filled, types converted), once it is known
    that ``protocol`` can carry it over ``via``: it is encoded once, on a fresh session, and the bytes
    are thrown away. Needs no live session; the relay checks a command when it is submitted.

    :raises UnsupportedCommand: an unknown protocol, or one that cannot carry this type over ``via``.
    :raises InvalidCommand: wrong parameters or device id, with a reason a person can act on.
    """
    session_class = _session_class(protocol)
    try:
        command = replace(command, device_id=check_device_id(command.device_id))
    except InvalidDeviceId as error:
        raise InvalidCommand(protocol, f"{command.type.value}: {error}") from None
    if via is Via.DATA:
        transports = session_class.transports
        transport = Transport.TCP if Transport.TCP in transports else min(transports)
        session_class(transport, device_id=command.device_id).encode(command)
    else:
        session_class.encode_sms(command)
    return normalise(protocol, command)


def encode_sms(protocol: str, command: Command) -> str:
    """The SMS text that carries ``command`` to a device of ``protocol`` (see ``Session.encode_sms``).

    :raises UnsupportedCommand: an unknown protocol, or no SMS form for this type.
    :raises InvalidCommand: wrong parameters, or a text that does not fit one SMS.
    """
    return _session_class(protocol).encode_sms(command)


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



#: Unrecognised bytes at the start of a stream that are skipped, frame by frame, looking for a frame a
#: driver recognises: one unknown first frame must not cost the frames behind it.
MAX_SKIP_BYTES = 4096
#: Bytes that end a frame in the text protocols, and bytes that start one; a frame may begin after
#: the first or at the second (and at a GT06 start mark).
_FRAME_ENDS = frozenset(b"\n;)]#")
_FRAME_STARTS = frozenset(b"$*([")
_BINARY_STARTS = (b"\x78\x78", b"\x79\x79")


class StreamSniffer:
    """Recognises a stream's protocol from its first bytes, skipping bytes no driver recognises up to
    the next frame boundary (at most :data:`MAX_SKIP_BYTES` of them).

    Feed it with :meth:`receive_data` and ask :meth:`recognise`; once a driver is found, :attr:`skipped`
    holds the unrecognised bytes before its first frame and :attr:`head` the stream from that frame on.
    """

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._buffer = bytearray()
        self._offset = 0

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    @property
    def skipped(self) -> bytes:
        return bytes(self._buffer[: self._offset])

    @property
    def head(self) -> bytes:
        return bytes(self._buffer[self._offset :])

    @property
    def received(self) -> bytes:
        return bytes(self._buffer)

    def recognise(self, *, final: bool = False) -> Driver | NeedMore | None:
        """The driver of the first recognisable frame, :data:`NEED_MORE`, or ``None`` when no driver
        recognises anything within the limit (or in all there is, with ``final=True``)."""
        while True:
            found = detect(bytes(self._buffer[self._offset :]), self.transport, final=final)
            if found is not None:
                return found
            boundary = self._next_boundary(self._offset + 1)
            if boundary is None or boundary > MAX_SKIP_BYTES:
                more_may_come = not final and len(self._buffer) <= MAX_SKIP_BYTES
                return NEED_MORE if more_may_come else None
            self._offset = boundary

    def _next_boundary(self, start: int) -> int | None:
        buffer = self._buffer
        for index in range(start, min(len(buffer), MAX_SKIP_BYTES + 1)):
            if (
                buffer[index - 1] in _FRAME_ENDS
                or buffer[index] in _FRAME_STARTS
                or buffer[index : index + 2] in _BINARY_STARTS
            ):
                return index
        return None
