"""Decode a whole stream, or a peer's datagrams, in one call: what ``relay decode``, quarantine retry,
the bench and the tests use. It is the relay's own path (a :class:`StreamSniffer` to recognise the
protocol, then one :class:`Session`'s :meth:`~Session.events`), so it decodes exactly as the relay
does, device ids filled in included."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ._model import Decoded, DriverError, Report, Transport
from ._registry import NEED_MORE, Driver, NeedMore, StreamSniffer, detect, get


@dataclass(slots=True)
class StreamDecode:
    """What a stream or a list of datagrams decoded to, event by event, in order."""

    #: The protocol that decoded it; ``None`` when no driver recognised it.
    protocol: str | None
    events: list[Decoded | DriverError] = field(default_factory=list)
    #: Bytes before the first frame a driver recognised (the relay quarantines them).
    skipped: bytes = b""
    #: Why nothing could be decoded at all (no driver recognised the input, an unknown protocol).
    error: str | None = None

    @property
    def reports(self) -> list[Report]:
        return [report for event in self.events if isinstance(event, Decoded) for report in event.reports]

    @property
    def replies(self) -> list[bytes]:
        return [reply for event in self.events for reply in event.replies]

    @property
    def errors(self) -> list[DriverError]:
        return [event for event in self.events if isinstance(event, DriverError)]

    def summary(self) -> dict[str, Any]:
        """``{"protocol", "reports", "replies", "error"}`` as ``relay decode`` prints it: the reports as
        JSON, the replies (bad input's answers too) as hex, the first error as text."""
        errors = self.errors
        first = self.error or (str(errors[0]) if errors else None)
        if self.skipped and first is None:
            first = f"no driver recognises the first {len(self.skipped)} bytes ({self.skipped[:16].hex()})"
        return {
            "protocol": self.protocol,
            "reports": [report.to_json() for report in self.reports],
            "replies": [reply.hex() for reply in self.replies],
            "error": first,
        }


def decode_stream(
    chunks: Sequence[bytes],
    *,
    now: datetime,
    protocol: str = "auto",
    transport: Transport = Transport.TCP,
    device_id: str | None = None,
    messages: bool = False,
) -> StreamDecode:
    """Decode ``chunks`` in order, in one session, as the relay decodes a connection's bytes.

    Over UDP each chunk is a datagram (of one peer). Otherwise the chunks are one stream, whose end is
    the end of the last chunk; with ``messages=True`` each chunk is a whole message (a reference
    frame without its delimiter, a quarantined frame), so what is left unframed after each is decoded
    as a last frame, as at the end of a stream. ``protocol="auto"`` recognises the protocol from the
    first bytes, skipping what no driver recognises (:attr:`StreamDecode.skipped`).
    """
    if not chunks:
        return StreamDecode(None, error="no input")
    datagrams = transport is Transport.UDP
    skipped = b""
    if protocol != "auto":
        try:
            driver = get(protocol)
        except KeyError as error:
            return StreamDecode(None, error=str(error.args[0]))
    elif datagrams:
        found = detect(chunks[0], transport, final=True)
        if not isinstance(found, Driver):
            return StreamDecode(None, error=f"no driver recognises these bytes ({chunks[0][:16].hex()})")
        driver = found
    else:
        sniffer = StreamSniffer(transport)
        found: Driver | NeedMore | None = NEED_MORE
        taken = 0
        while found is NEED_MORE and taken < len(chunks):
            sniffer.receive_data(chunks[taken])
            taken += 1
            found = sniffer.recognise(final=taken == len(chunks))
        if not isinstance(found, Driver):
            head = sniffer.received[:16].hex()
            return StreamDecode(None, error=f"no driver recognises these bytes ({head})")
        driver, skipped = found, sniffer.skipped
        chunks = [sniffer.head, *chunks[taken:]]
    session = driver.new_session(transport, device_id=device_id)
    result = StreamDecode(driver.name, skipped=skipped)
    for chunk in chunks:
        if datagrams:
            result.events.extend(session.receive_datagram(chunk, now=now))
            continue
        session.receive_data(chunk)
        result.events.extend(session.events(now=now))
        if messages and session.closed is None:
            result.events.extend(session._flush(now))
    if not datagrams:
        session.receive_data(b"")
        result.events.extend(session.events(now=now))
    return result
