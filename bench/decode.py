"""Decode speed: frames per second per protocol, framing included, on one core, from the reference vectors."""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from drivers import DriverError, Session, Transport, get

from .floors import FLOORS, Fix
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
    """Frame and decode the protocol's vectors over and over for ``seconds`` in all; frames per
    second of this thread's CPU time.

    CPU time, not the clock: on a shared machine the clock also counts the time the neighbours held
    the core, the thread's CPU time only what the decoding took (on an idle core the two agree).
    The best of ``rounds`` equal rounds counts: cache and frequency effects of the neighbours remain.
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
        cpu_started = time.thread_time()
        deadline = started + seconds / rounds
        while time.perf_counter() < deadline:
            for session, sample in sessions:
                for frame in _frames(session, sample.data, sample.transport):
                    session.decode(frame, now=NOW)
                done += sample.frames
        best = max(best, done / (time.thread_time() - cpu_started))
    return {"vectors": len(usable), "frames_per_s": best}


def driver_fixes(protocol: str, sample: Sample) -> list[Fix]:
    """The fields a floor must produce, from what the driver decodes of ``sample`` (every report of
    the sample must have a position, or the sample is not a floor's to cover: an empty list)."""
    session = get(protocol).new_session(sample.transport)
    fixes = []
    for frame in _frames(session, sample.data, sample.transport):
        for report in session.decode(frame, now=NOW).reports:
            if report.lat is None or report.lon is None:
                return []
            fixes.append(
                Fix(
                    report.device_id or "",
                    report.time,
                    bool(report.valid),
                    report.lat,
                    report.lon,
                    report.speed_kmh or 0.0,
                    report.course_deg or 0.0,
                )
            )
    return fixes


def same_fields(driver: list[Fix], floor: list[Fix]) -> bool:
    """Equal device ids, times and validity; numbers equal to within rounding."""
    if len(driver) != len(floor) or not driver:
        return False
    for ours, theirs in zip(driver, floor, strict=True):
        if (ours.device_id, ours.time, ours.valid) != (theirs.device_id or "", theirs.time, theirs.valid):
            return False
        for a, b in zip(ours[3:], theirs[3:], strict=True):
            if abs(a - b) > 1e-6:
                return False
    return True


def floor_samples(protocol: str, directory: Path = VECTORS) -> tuple[list[Sample], int]:
    """The vectors the protocol's floor covers (it yields exactly the driver's fields for them), and
    how many usable vectors there are in all."""
    usable = samples(protocol, directory)
    floor = FLOORS[protocol]
    covered = []
    for sample in usable:
        try:
            theirs = floor(sample.data)
        except (ValueError, IndexError, UnicodeDecodeError, struct.error):
            continue
        if same_fields(driver_fixes(protocol, sample), theirs):
            covered.append(sample)
    return covered, len(usable)


def _best_rate(work: list[tuple[Callable[[], object], int]], seconds: float, rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        done = 0
        started = time.perf_counter()
        cpu_started = time.thread_time()
        deadline = started + seconds / rounds
        while time.perf_counter() < deadline:
            for call, frames in work:
                call()
                done += frames
        best = max(best, done / (time.thread_time() - cpu_started))
    return best


def against_floor(
    protocol: str, *, seconds: float, rounds: int = ROUNDS, directory: Path = VECTORS
) -> dict[str, float]:
    """Driver and floor frames per CPU second (see :func:`frames_per_second`) on the same vectors
    (those the floor covers), each for ``seconds``."""
    covered, usable = floor_samples(protocol, directory)
    if not covered:
        return {"vectors": 0, "usable": usable, "driver_per_s": 0.0, "floor_per_s": 0.0, "ratio": 0.0}
    driver = get(protocol)
    floor = FLOORS[protocol]

    def driver_call(session: Session, sample: Sample) -> Callable[[], object]:
        def call() -> None:
            for frame in _frames(session, sample.data, sample.transport):
                session.decode(frame, now=NOW)

        return call

    def floor_call(sample: Sample) -> Callable[[], object]:
        return lambda: floor(sample.data)

    driver_rate = _best_rate(
        [(driver_call(driver.new_session(s.transport), s), s.frames) for s in covered], seconds, rounds
    )
    floor_rate = _best_rate([(floor_call(s), s.frames) for s in covered], seconds, rounds)
    return {
        "vectors": len(covered),
        "usable": usable,
        "driver_per_s": driver_rate,
        "floor_per_s": floor_rate,
        "ratio": driver_rate / floor_rate,
    }


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
