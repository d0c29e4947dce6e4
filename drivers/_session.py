"""The driver interface: one :class:`Session` per connection (TCP, serial) or per UDP peer.

Usage, the same for every protocol and every source (the h11 shape)::

    session = Gps103Session(Transport.TCP)
    session.receive_data(chunk)                  # buffer only; b"" marks the end of the stream
    for event in session.events(now=now):
        if isinstance(event, DriverError):       # bad input: quarantine event.wire, send
            ...                                  # event.replies, close if event.close
        else:                                    # store event.reports (raw: event.wire),
            ...                                  # then send event.replies

:func:`drivers.decode_stream` does the same for a whole stream or a list of datagrams at once.

A session remembers what the protocol needs between frames (the device id learned at login, a photo
being assembled). It holds no sockets and reads no clock: ``now`` comes in as an argument.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from operator import itemgetter
from typing import ClassVar

from ._commands import normalise
from ._model import (
    Command,
    CommandType,
    Decoded,
    DriverBug,
    DriverError,
    FramingError,
    InvalidCommand,
    InvalidDeviceId,
    Transport,
    UnsupportedCommand,
    check_device_id,
)
from .sms_pdu import PduError, gsm7_septets

#: The characters of one SMS in the GSM 7-bit alphabet.
SMS_SEPTETS = 160


class Match(enum.Enum):
    """A sniffer's verdict on the first bytes of a stream or datagram."""

    #: These bytes are this protocol.
    YES = "yes"
    #: These bytes are not this protocol.
    NO = "no"
    #: Too few bytes to tell; ask again with more.
    MORE = "more"


_first = itemgetter(0)


def _accepted(_answer: bytes) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class UpstreamAck:
    """The answer a platform owes for a frame the relay forwards to it, before the next frame goes.

    ``length(buffer)`` is how many bytes at the front of ``buffer`` make the whole answer (0: not all
    of it has arrived); ``refusal(answer)`` says why that answer refuses the frame, or ``None``.
    """

    what: str
    length: Callable[[bytes], int]
    refusal: Callable[[bytes], str | None] = _accepted

    @classmethod
    def exactly(cls, what: str, size: int, refusal: Callable[[bytes], str | None] = _accepted) -> UpstreamAck:
        return cls(what, lambda buffer: size if len(buffer) >= size else 0, refusal)

    @classmethod
    def through(cls, what: str, terminator: bytes) -> UpstreamAck:
        def length(buffer: bytes) -> int:
            end = buffer.find(terminator)
            return end + len(terminator) if end >= 0 else 0

        return cls(what, length)


class Session(abc.ABC):
    """Framing, decoding and encoding for one device stream of one protocol.

    It owns its stream, as h11 does: feed it with :meth:`receive_data` (``b""`` marks the end of the
    stream) and take what the bytes decoded to from :meth:`events`; a UDP datagram goes to
    :meth:`receive_datagram`. A protocol implements two hooks: :meth:`_next_frame` cuts a frame
    off the buffer, :meth:`decode` decodes one.
    """

    #: The protocol's name, as used in config, reports and ``relay decode``.
    protocol: ClassVar[str]
    #: Transports this protocol is spoken over.
    transports: ClassVar[frozenset[Transport]] = frozenset({Transport.TCP})
    #: The largest frame the framer accepts; a longer one is a :class:`FramingError`.
    max_frame: ClassVar[int] = 4096

    def __init__(self, transport: Transport = Transport.TCP, *, device_id: str | None = None) -> None:
        self.transport = transport
        #: The device id learned at login (or set by the relay for sources like SMS).
        self.device_id = device_id
        self._buffer = bytearray()
        # Received bytes not yet attributed to a frame: a copy of the buffer, preceded by what the
        # framer consumed since the last frame. Framers only ever take bytes off the front.
        self._wire = bytearray()
        self._ended = False
        #: Why the stream can take no more bytes (it ended, or the protocol closed it); else ``None``.
        self.closed: str | None = None
        #: The relay's clock at the last bytes decoded (or given to :meth:`encode`); ``None`` before.
        self.now: datetime | None = None

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the stream; ``b""`` marks its end. Never raises: see :meth:`events`."""
        if not data:
            self._ended = True
        elif self.closed is not None:
            self._wire += data  # reported by events(), never framed
        else:
            self._buffer += data
            self._wire += data

    def events(self, *, now: datetime) -> list[Decoded | DriverError]:
        """What every complete frame received so far decoded to, in stream order.

        A :class:`Decoded` carries reports (with the session's device id filled in) and the replies
        to send once they are stored; a :class:`DriverError` is bad input, to quarantine (its
        ``wire``), answer (its ``replies``) and, when it says ``close``, end the stream on. Either
        way the frames after it carry on. At the end of the stream, a last frame without its
        delimiter is decoded too.

        :param now: the relay's clock, UTC (replies with the current time, a missing date).
        """
        self.now = now
        if self.closed is not None:
            return self._after_close()
        events: list[Decoded | DriverError] = []
        try:
            for frame, wire in self._frames():
                events.append(self._decode_event(frame, wire, now))
                if self.closed is not None:
                    return events + self._after_close()
        except FramingError as error:
            error.wire = self._take_wire()
            self.closed = error.reason
            events.append(error)
            return events
        if self._ended:
            events.extend(self._flush(now))
            self.closed = "the stream ended"
        return events

    def receive_datagram(self, datagram: bytes, *, now: datetime) -> list[Decoded | DriverError]:
        """What one UDP datagram decoded to (its frames, each its own ``wire``)."""
        self.now = now
        try:
            frames = self.datagram_frames(datagram)
        except DriverError as error:
            error.wire = datagram
            return [error]
        return [self._decode_event(frame, frame, now) for frame in frames]

    def abandon(self, reason: str = "abandoned") -> bytes:
        """Give the stream up (it broke, went idle, or went over a budget): return every byte not yet
        attributed to a frame, to quarantine; the session takes no more."""
        self.closed = self.closed or reason
        return self._take_wire()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet cut into a frame."""
        return len(self._buffer)

    @property
    def held_bytes(self) -> int:
        """Memory this session holds for frames not yet complete (the buffer and its wire copy)."""
        return len(self._buffer) + len(self._wire)

    def frames(self) -> Iterator[bytes]:
        """Yield every complete frame in the buffer, removing it (the framing hook on its own, for
        tests and tools; the relay takes :meth:`events`).

        :raises FramingError: the buffer holds an incomplete frame larger than :attr:`max_frame`,
            or bytes that can never start a frame. The offending bytes stay in the buffer.
        """
        return map(_first, self._frames())  # lazy, as the generator it wraps: one frame cut per step

    def datagram_frames(self, datagram: bytes) -> list[bytes]:
        """The frames of one UDP datagram. By default the datagram is one frame."""
        return [datagram]

    @abc.abstractmethod
    def _next_frame(self) -> bytes | None:
        """Cut one frame off the front of ``self._buffer``, or return ``None`` for "need more"
        (always, and changing nothing, when the buffer is empty: :meth:`_frames` then skips it)."""

    @abc.abstractmethod
    def decode(self, frame: bytes, *, now: datetime) -> Decoded:
        """Decode one frame (the decoding hook; the relay takes :meth:`events`).

        :param now: the relay's clock, UTC; used only where the protocol needs it (replies with the
            current time, filling a missing date).
        :raises DriverError: the frame is malformed. The session is unchanged and stays usable,
            unless the error says ``close``.
        """

    # -- the one loop every caller shares -------------------------------------------------------

    def _frames(self) -> Iterator[tuple[bytes, bytes]]:
        buffer = self._buffer
        wire = self._wire
        next_frame = self._next_frame
        while True:
            if not buffer and not wire:
                return  # what every framer returns for nothing, without asking it
            frame = next_frame()
            if frame is None:
                # Noise a framer skipped stays in the wire copy until a frame is cut: it counts too.
                if len(buffer) > self.max_frame or len(wire) > 2 * self.max_frame:
                    raise FramingError(
                        self.protocol,
                        f"no complete frame in {len(wire)} bytes (limit {self.max_frame})",
                        data=bytes(wire[:64]),
                    )
                return
            if not buffer:  # the usual read: whole frames, nothing after the last
                frame_wire = bytes(wire)
                wire.clear()
            else:
                consumed = len(wire) - len(buffer)
                frame_wire = bytes(wire[:consumed])
                del wire[:consumed]
            yield frame, frame_wire

    def _decode_event(self, frame: bytes, wire: bytes, now: datetime) -> Decoded | DriverError:
        try:
            decoded = self.decode(frame, now=now)
            if decoded.device_id:
                self.device_id = check_device_id(decoded.device_id)
        except DriverError as error:
            error.wire = wire
            if error.close:
                self.closed = error.reason
            return error
        except InvalidDeviceId as error:
            bad = DriverError(self.protocol, str(error), data=frame[:64])
            bad.wire = wire
            return bad
        except Exception as error:  # a driver bug must not cost the frames around it
            bug = DriverBug(self.protocol, f"driver bug: {error!r}", data=frame[:64])
            bug.__cause__ = error
            bug.wire = wire
            return bug
        device_id = self.device_id
        if device_id:
            for report in decoded.reports:
                if report.device_id is None:
                    decoded.reports = tuple(
                        replace(report, device_id=device_id) if report.device_id is None else report
                        for report in decoded.reports
                    )
                    break
        decoded.wire = wire
        if decoded.close:
            self.closed = "the protocol closed the stream"
        return decoded

    def _flush(self, now: datetime) -> list[Decoded | DriverError]:
        """Decode what is buffered as one last frame (the end of a stream, or of a message)."""
        rest = bytes(self._buffer)
        wire = self._take_wire()
        if rest.strip(b"\r\n\x00 "):
            return [self._decode_event(rest, wire, now)]
        if wire.strip(b"\r\n\x00 "):  # noise the framer skipped, with no frame after it
            error = DriverError(self.protocol, f"{len(wire)} bytes that make no frame", data=wire[:64])
            error.wire = wire
            return [error]
        return []

    def _after_close(self) -> list[Decoded | DriverError]:
        """Bytes that arrived after the stream closed: reported once, never framed."""
        wire = self._take_wire()
        if not wire:
            return []
        error = DriverError(
            self.protocol, f"{len(wire)} bytes after the stream closed ({self.closed})", close=True
        )
        error.wire = wire
        return [error]

    def _take_wire(self) -> bytes:
        """Every byte not yet attributed to a frame; the buffer and the framer start afresh."""
        wire = bytes(self._wire)
        self._wire.clear()
        self._buffer.clear()
        self._reset_framer()
        return wire

    def _reset_framer(self) -> None:  # noqa: B027  (an optional hook: most framers keep no state)
        """Forget partial framing state (the buffer was emptied under the framer)."""

    @classmethod
    def upstream_ack(cls, wire: bytes, *, login: bool) -> UpstreamAck | None:
        """What a platform speaking this protocol over TCP answers to ``wire`` (a frame as the device
        sent it; ``login``: it identifies the device) before it reads the next frame, or ``None`` when
        nothing needs waiting for. The passthrough sink forwards frames upstream by this rule."""
        return None

    # -- commands ------------------------------------------------------------------------------

    #: Command types this protocol carries over the device's data session.
    supported_commands: ClassVar[frozenset[CommandType]] = frozenset()
    #: Command types the device answers over the data session (see :meth:`expects_answer`).
    answered_commands: ClassVar[frozenset[CommandType]] = frozenset()
    #: Command types this protocol's devices take by SMS (see :meth:`encode_sms`).
    sms_commands: ClassVar[frozenset[CommandType]] = frozenset()

    def encode(self, command: Command, *, now: datetime | None = None) -> bytes:
        """The bytes that carry ``command`` to the device, its parameters checked and normalised
        first (``drivers.PARAMETERS``).

        :param now: the relay's clock, for protocols that stamp a command with the time (h02); by
            default the clock of the last bytes decoded (:attr:`now`).

        :raises UnsupportedCommand: the protocol cannot carry this command type on its data channel.
        :raises InvalidCommand: the parameters are wrong for the type or for this protocol.
        """
        if command.type not in self.supported_commands:
            raise UnsupportedCommand(self.protocol, _unsupported(command, self.supported_commands, "data"))
        if now is not None:
            self.now = now
        return self._encode(normalise(self.protocol, command))

    def expects_answer(self, command: Command) -> bool:
        """Whether the device answers ``command`` on the data channel, with a ``commandResult`` report
        (or, for ``requestPhoto``, the photo itself)."""
        return command.type in self.answered_commands

    @classmethod
    def encode_sms(cls, command: Command) -> str:
        """The text of the SMS that carries ``command``, checked like :meth:`encode` and to fit one
        SMS (160 GSM characters).

        :raises UnsupportedCommand: this protocol's devices take no such SMS.
        :raises InvalidCommand: the parameters are wrong, or the text does not fit one SMS.
        """
        if command.type not in cls.sms_commands:
            raise UnsupportedCommand(cls.protocol, _unsupported(command, cls.sms_commands, "SMS"))
        text = cls._encode_sms(normalise(cls.protocol, command))
        try:
            septets = len(gsm7_septets(text))
        except PduError as error:
            raise InvalidCommand(cls.protocol, f"{command.type.value}: {error}") from None
        if septets > SMS_SEPTETS:
            raise InvalidCommand(
                cls.protocol, f"{command.type.value}: {septets} characters do not fit one SMS ({SMS_SEPTETS})"
            )
        return text

    def _encode(self, command: Command) -> bytes:
        """The encoding hook: ``command`` is of a supported type, its parameters normalised."""
        raise UnsupportedCommand(self.protocol, _unsupported(command, frozenset(), "data"))

    @classmethod
    def _encode_sms(cls, command: Command) -> str:
        """The SMS hook: ``command`` is of a type in :attr:`sms_commands`, its parameters normalised."""
        raise UnsupportedCommand(cls.protocol, _unsupported(command, frozenset(), "SMS"))

    # -- helpers for framers -------------------------------------------------------------------

    def _cut(self, end: int, skip: int = 0) -> bytes:
        """Remove ``buffer[:end + skip]`` and return ``buffer[:end]``."""
        buffer = self._buffer
        if end == len(buffer):  # the usual read: one whole frame
            frame = bytes(buffer)
            buffer.clear()
            return frame
        frame = bytes(buffer[:end])
        del buffer[: end + skip]
        return frame


def _unsupported(command: Command, supported: frozenset[CommandType], channel: str) -> str:
    known = ", ".join(sorted(supported)) or "none"
    return f"command {command.type.value!r} is not supported over {channel} (supported: {known})"
