"""Decode speed: frames per second per protocol, framing included, on one core, from the reference vectors."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drivers import DriverError, Session, Transport, get

from .proc import ROOT

#: Where the vectors live: ``$RELAY_VECTORS``, else the repository's copy (as tests/vectors.py).
VECTORS = Path(os.environ.get("RELAY_VECTORS", ROOT / "tests" / "data" / "vectors"))
#: Protocols whose frames are text (the 100,000 frames/s target applies to these).
TEXT_PROTOCOLS = frozenset({"gps103", "pt502", "h02", "tk103", "watch", "osmand"})
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
#: Timed rounds per protocol; the best counts.
ROUNDS = 3


@dataclass(frozen=True, slots=True)
class Sample:
    transport: Transport
    data: bytes
    frames: int


def _frames(session: Session, data: bytes, transport: Transport) -> list[bytes]:
    """The frames the relay's ingest would cut from ``data`` (a trailing undelimited one included)."""
    if transport is Transport.UDP:
        return session.datagram_frames(data)
    session.receive_data(data)
    frames = list(session.frames())
    # A last frame without its delimiter, as at the end of a stream; the session stays open for the
    # next round.
    rest = bytes(session._buffer)
    session._take_wire()
    if rest.strip(b"\r\n\x00 "):
        frames.append(rest)
    return frames


def samples(protocol: str, directory: Path = VECTORS) -> list[Sample]:
    """The protocol's device-to-server vectors that frame and decode without error."""
    driver = get(protocol)
    found = []
    for line in (directory / f"{protocol}.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("direction") != "device_to_server" or not row.get("frame"):
            continue
        data = bytes.fromhex(row["frame"]) if row.get("encoding") == "hex" else row["frame"].encode()
        transport = Transport(row.get("transport", "tcp"))
        session = driver.new_session(transport)
        try:
            frames = _frames(session, data, transport)
            for frame in frames:
                session.decode(frame, now=NOW)
        except DriverError:
            continue
        if frames:
            found.append(Sample(transport, data, len(frames)))
    return found


def frames_per_second(
    protocol: str, *, seconds: float, rounds: int = ROUNDS, directory: Path = VECTORS
) -> dict[str, float]:
    """Frame and decode the protocol's vectors over and over for ``seconds`` in all; frames/s.

    The best of ``rounds`` equal rounds counts: on a shared machine the slower rounds measure the
    neighbours, not the driver.
    """
    driver = get(protocol)
    usable = samples(protocol, directory)
    if not usable:
        return {"vectors": 0, "frames_per_s": 0.0}
    sessions = [(driver.new_session(sample.transport), sample) for sample in usable]
    best = 0.0
    for _ in range(rounds):
        done = 0
        started = time.perf_counter()
        deadline = started + seconds / rounds
        while time.perf_counter() < deadline:
            for session, sample in sessions:
                for frame in _frames(session, sample.data, sample.transport):
                    session.decode(frame, now=NOW)
                done += sample.frames
        best = max(best, done / (time.perf_counter() - started))
    return {"vectors": len(usable), "frames_per_s": best}


def protocols(directory: Path = VECTORS) -> list[str]:
    """Protocols with a vector file and a driver."""
    names = []
    for path in sorted(directory.glob("*.jsonl")):
        try:
            get(path.stem)
        except KeyError:
            continue
        names.append(path.stem)
    return names
