"""What the journal stores and gives back: the items a writer submits (:class:`Entry`,
:class:`Quarantined`, :class:`CursorUpdate`, :class:`Released`,
:class:`Silence`) and the :class:`StoredReport` a sink reads."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from drivers import Report


@dataclass(frozen=True, slots=True)
class Entry:
    """One report to store, with where it came from. ``raw`` is the frame it was decoded from;
    when one frame yields several reports, only the first carries the frame (``raw=None`` on the rest)."""

    report: Report
    raw: bytes | None
    transport: str
    peer: str
    received_at: datetime


#: The transport of a report the relay made itself about a command (a change of state): not a sign of
#: the device's life, so it changes nothing of the device's live state.
RELAY_TRANSPORT = "relay"

#: The event of a stored frame that decoded to no report (a photo chunk, a keep-alive): kept, with a
#: passthrough sink, so the upstream receives the device's stream byte for byte; other sinks skip it.
FRAME_EVENT = "frame"


@dataclass(frozen=True, slots=True)
class Quarantined:
    """Bytes no driver could use, kept so a later driver fix can re-decode them."""

    raw: bytes
    reason: str
    transport: str
    peer: str
    received_at: datetime
    protocol: str | None = None


@dataclass(frozen=True, slots=True)
class CursorUpdate:
    """A sink's new durable position: everything up to ``floor`` delivered, and per device."""

    sink: str
    floor: int
    devices: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Silence:
    """A device noticed silent past its offline limit, its newest report ``last_seq``: the writer
    stores its ``deviceOffline`` (and marks it offline) only if nothing came from it since."""

    device_id: str
    last_seq: int
    noticed_at: datetime


@dataclass(frozen=True, slots=True)
class Released:
    """A quarantine row to delete, in the same transaction as the reports re-decoded from it."""

    quarantine_id: int


@dataclass(frozen=True, slots=True)
class MetaValue:
    """A ``meta`` row to set: what the relay keeps of itself across restarts (each sink's uplink)."""

    key: str
    value: str


#: Anything the journal writes (besides a command's row, ``_commands.CommandChange``).
Item = Entry | Quarantined | CursorUpdate | Released | Silence | MetaValue



class StoredReport:
    """A committed report as sinks read it.

    ``document`` (the normalized report as a dict) is parsed only when asked for; :meth:`json_bytes`
    gives the same document as compact JSON without parsing it, which is what most sinks send.
    """

    __slots__ = (
        "_document",
        "device_id",
        "event",
        "head",
        "media",
        "payload",
        "protocol",
        "raw",
        "seq",
        "transport",
    )

    def __init__(
        self,
        seq: int,
        device_id: str | None,
        protocol: str,
        transport: str,
        event: str,
        head: str,
        payload: str,
        raw: bytes | None,
        media: bytes | None = None,
    ) -> None:
        self.seq = seq
        self.device_id = device_id
        self.protocol = protocol
        self.transport = transport
        self.event = event
        #: ``{"id":…,"site":…,"received_at":…,`` — the relay's fields, ready to prefix the payload.
        self.head = head
        #: The stored report (compact JSON object) without the relay's fields.
        self.payload = payload
        self.raw = raw
        self.media = media
        self._document: dict[str, Any] | None = None

    @property
    def has_position(self) -> bool:
        return '"lat":null' not in self.payload

    @property
    def document(self) -> dict[str, Any]:
        """The normalized report as a dict (a photo's bytes not included)."""
        if self._document is None:
            self._document = json.loads(self.head + self.payload[1:])
        return self._document

    def json_bytes(self) -> bytes:
        """The normalized report as compact JSON (``id``, ``site`` and ``received_at`` first), a photo's
        bytes included as ``media.base64``: what every sink sends."""
        if self.media is None:
            return (self.head + self.payload[1:]).encode()
        document = dict(self.document)
        document["media"] = {**(document.get("media") or {}), "base64": base64.b64encode(self.media).decode()}
        return json.dumps(document, separators=(",", ":")).encode()

    def __repr__(self) -> str:
        return f"StoredReport(seq={self.seq}, device_id={self.device_id!r}, event={self.event!r})"

