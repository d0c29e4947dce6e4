"""The driver interface: one :class:`Session` per connection (TCP, serial) or per UDP peer.

Usage, the same for every protocol::

    session = Gps103Session(Transport.TCP)
    session.receive_data(chunk)            # buffer only; never raises
    for frame in session.frames():         # complete frames; FramingError = close the stream
        result = session.decode(frame, now=now)   # DriverError = quarantine this frame, go on
        ...store result.reports, then send result.replies...

A session remembers what the protocol needs between frames (the device id learned at login, a photo
being assembled). It holds no sockets and reads no clock: ``now`` comes in as an argument.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import ClassVar

from ._model import (
    Command,
    Decoded,
    FramingError,
    Report,
    Transport,
    UnsupportedCommand,
    check_device_id,
)


class Match(enum.Enum):
    """A sniffer's verdict on the first bytes of a stream or datagram."""

    #: These bytes are this protocol.
    YES = "yes"
    #: These bytes are not this protocol.
    NO = "no"
    #: Too few bytes to tell; ask again with more.
    MORE = "more"


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
    """Framing, decoding and encoding for one device stream of one protocol."""

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
        #: The exact bytes the last frame from :meth:`frames` took off the stream: its header,
        #: delimiters and any noise skipped before it included. Concatenated, these are the stream.
        self.last_wire = b""
        # Received bytes not yet attributed to a frame: a copy of the buffer, preceded by what the
        # framer consumed since the last frame. Framers only ever take bytes off the front.
        self._wire = bytearray()

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the stream. Never raises; framing happens in :meth:`frames`."""
        self._buffer += data
        self._wire += data

    @property
    def closing(self) -> bool:
        """The protocol ends the connection after the replies already produced (HTTP ``Connection:
        close``, an unframeable request). The relay sends them and closes."""
        return False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet cut into a frame."""
        return len(self._buffer)

    @property
    def held_bytes(self) -> int:
        """Memory this session holds for frames not yet complete (the buffer and its wire copy)."""
        return len(self._buffer) + len(self._wire)

    def take_buffer(self) -> bytes:
        """Remove and return whatever is buffered (for quarantine when a stream is abandoned, or to
        decode a last undelimited frame at the end of a stream); :attr:`last_wire` becomes every byte
        not yet attributed to a frame."""
        data = bytes(self._buffer)
        self._buffer.clear()
        self.last_wire = bytes(self._wire)
        self._wire.clear()
        return data

    def frames(self) -> Iterator[bytes]:
        """Yield every complete frame in the buffer, removing it.

        :raises FramingError: the buffer holds an incomplete frame larger than :attr:`max_frame`,
            or bytes that can never start a frame. The offending bytes stay in the buffer.
        """
        while True:
            frame = self._next_frame()
            if frame is None:
                if len(self._buffer) > self.max_frame:
                    raise FramingError(
                        self.protocol,
                        f"no complete frame in {len(self._buffer)} bytes (limit {self.max_frame})",
                        data=bytes(self._buffer),
                    )
                return
            consumed = len(self._wire) - len(self._buffer)
            self.last_wire = bytes(self._wire[:consumed])
            del self._wire[:consumed]
            yield frame

    def datagram_frames(self, datagram: bytes) -> list[bytes]:
        """The frames of one UDP datagram. By default the datagram is one frame."""
        return [datagram]

    @abc.abstractmethod
    def _next_frame(self) -> bytes | None:
        """Cut one frame off the front of ``self._buffer``, or return ``None`` for "need more"."""

    @abc.abstractmethod
    def decode(self, frame: bytes, *, now: datetime) -> Decoded:
        """Decode one frame.

        :param now: the relay's clock, UTC; used only where the protocol needs it (replies with the
            current time, filling a missing date).
        :raises DriverError: the frame is malformed. The session is unchanged and stays usable.
        """

    def fill_device_id(self, decoded: Decoded) -> tuple[Report, ...]:
        """Learn the device id ``decoded`` carries (a login), then return its reports with the
        session's device id filled in where a report has none: the reports as the relay stores them.

        :raises InvalidDeviceId: the learned id is not a valid device id (the session keeps its own).
        """
        if decoded.device_id:
            self.device_id = check_device_id(decoded.device_id)
        if not self.device_id:
            return decoded.reports
        return tuple(
            replace(report, device_id=self.device_id) if report.device_id is None else report
            for report in decoded.reports
        )

    @classmethod
    def upstream_ack(cls, wire: bytes, *, login: bool) -> UpstreamAck | None:
        """What a platform speaking this protocol over TCP answers to ``wire`` (a frame as the device
        sent it; ``login``: it identifies the device) before it reads the next frame, or ``None`` when
        nothing needs waiting for. The passthrough sink forwards frames upstream by this rule."""
        return None

    def encode(self, command: Command) -> bytes:
        """The bytes that carry ``command`` to the device.

        :raises UnsupportedCommand: the protocol cannot express this command.
        """
        raise UnsupportedCommand(self.protocol, f"command {command.type.value!r} is not supported")

    # -- helpers for framers -------------------------------------------------------------------

    def _cut(self, end: int, skip: int = 0) -> bytes:
        """Remove ``buffer[:end + skip]`` and return ``buffer[:end]``."""
        frame = bytes(self._buffer[:end])
        del self._buffer[: end + skip]
        return frame
