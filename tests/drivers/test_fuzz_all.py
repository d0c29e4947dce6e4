"""Every registered driver, fuzzed through the path the relay uses.

A TCP stream is sniffed with ``drivers.detect`` on the bytes received so far; the chosen driver's session
then gets every byte (``receive_data``), cuts frames (``frames``) and decodes them (``decode``). A UDP
datagram is sniffed whole and cut with ``datagram_frames``. Whatever the bytes, only ``DriverError``
(``FramingError`` included) may escape, decode results are well-formed and JSON-ready, and the buffer
stays bounded: at most ``max_frame`` after ``frames()`` returns, and at most ``max_frame`` plus the
last chunk when it raises (the relay then quarantines the buffer and closes the stream). A stream of
real frames split at any byte boundaries decodes exactly as when fed whole.

The budget is fixed (``derandomize=True``): the run is the same every time and takes seconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import drivers
from drivers import Decoded, Driver, DriverError, Report, Session, Transport
from tests import vectors

FUZZ = settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
DRIVERS = list(drivers.drivers().values())
STREAM_TRANSPORTS = (Transport.TCP, Transport.HTTP, Transport.SERIAL)


def _seeds(driver: Driver, *, udp: bool) -> list[bytes]:
    """The driver's real frames from its vector file: stream frames, or datagrams when ``udp``."""
    path = vectors.VECTORS / f"{driver.name}.jsonl"
    if not path.exists():
        return []
    found: list[bytes] = []
    for vector in vectors.load(driver.name):
        if (vector.transport is Transport.UDP) == udp:
            found.extend(frame for frame in vector.frames() if frame)
    return found


def _self_delimiting(driver: Driver, frame: bytes) -> bytes | None:
    """``frame`` (or ``frame`` + CRLF) if a fresh session cuts exactly it, with nothing left over."""
    for candidate in (frame, frame + b"\r\n"):
        session = driver.new_session(Transport.TCP)
        session.receive_data(candidate)
        try:
            cut = list(session.frames())
        except DriverError:
            continue
        if len(cut) == 1 and session.buffered == 0:
            return candidate
    return None


STREAM_SEEDS = {driver.name: _seeds(driver, udp=False) for driver in DRIVERS}
DATAGRAM_SEEDS = {
    driver.name: _seeds(driver, udp=True) or _seeds(driver, udp=False)
    for driver in DRIVERS
    if Transport.UDP in driver.session.transports
}


def _split_ambiguous(driver: Driver, frame: bytes) -> bool:
    """gt06 frames with CR LF inside their data: a stream piece that ends right after that CR LF looks
    exactly like a frame with a wrong length field, which the framer must cut at once (as Traccar
    does) so the device gets its answer. tests/drivers/test_gt06.py splits them everywhere else."""
    return driver.name == "gt06" and b"\r\n" in frame[4:-2]


WHOLE_FRAMES = {
    driver.name: [
        whole
        for frame in STREAM_SEEDS[driver.name]
        if (whole := _self_delimiting(driver, frame)) is not None and not _split_ambiguous(driver, whole)
    ]
    for driver in DRIVERS
}

SPLIT_BUGS: dict[str, str] = {}


def _param(
    driver: Driver,
    seeds: dict[str, list[bytes]],
    missing: str = "no seed frames",
    bugs: dict[str, str] | None = None,
) -> object:
    marks = [] if seeds.get(driver.name) else [pytest.mark.skip(reason=f"{driver.name}: {missing}")]
    if bugs and driver.name in bugs:
        marks.append(pytest.mark.xfail(reason=f"{driver.name}: {bugs[driver.name]}", strict=False))
    return pytest.param(driver, id=driver.name, marks=marks)


# -- the relay's path, with every invariant checked on the way -----------------------------------


def _check_result(result: object) -> list[Any]:
    assert isinstance(result, Decoded), f"decode returned {type(result).__name__}"
    assert isinstance(result.reports, tuple) and isinstance(result.replies, tuple)
    assert all(isinstance(reply, bytes) for reply in result.replies)
    assert all(isinstance(report, Report) for report in result.reports)
    reports = [report.to_json() for report in result.reports]
    json.dumps(reports)  # what the journal and the sinks store
    return reports


def _decode_all(session: Session, frames: Sequence[bytes], outcome: list[tuple[Any, ...]]) -> None:
    for frame in frames:
        assert isinstance(frame, bytes)
        try:
            result = session.decode(frame, now=vectors.NOW)
        except DriverError as error:
            outcome.append(("error", str(error)))
            continue
        outcome.append(("decoded", _check_result(result), result.replies))
        if result.device_id:
            session.device_id = result.device_id


def run_stream(chunks: Sequence[bytes], transport: Transport = Transport.TCP) -> list[tuple[Any, ...]]:
    """Feed ``chunks`` as one TCP connection the way the relay does; the outcome, in order."""
    outcome: list[tuple[Any, ...]] = []
    head = b""
    session: Session | None = None
    for index, chunk in enumerate([*chunks, None]):
        if session is None:
            final = chunk is None
            head += chunk or b""
            if not head:
                break
            found = drivers.detect(head, transport, final=final)
            if found is drivers.NEED_MORE:
                continue
            if not isinstance(found, Driver):
                outcome.append(("unknown",))
                break
            outcome.append(("driver", found.name))
            session = found.new_session(transport)
            chunk = head
        elif chunk is None:
            break
        session.receive_data(chunk)
        try:
            frames = list(session.frames())
        except DriverError:
            assert session.buffered <= session.max_frame + len(chunk)
            outcome.append(("framing",))
            break
        _decode_all(session, frames, outcome)
        assert session.buffered <= session.max_frame, f"{session.buffered} bytes buffered after chunk {index}"
    if session is not None:
        outcome.append(("left", session.buffered))
    return outcome


def run_datagram(datagram: bytes) -> list[tuple[Any, ...]]:
    outcome: list[tuple[Any, ...]] = []
    found = drivers.detect(datagram, Transport.UDP, final=True)
    if not isinstance(found, Driver):
        return [("unknown",)]
    session = found.new_session(Transport.UDP)
    try:
        frames = session.datagram_frames(datagram)
    except DriverError:
        return [("framing",)]
    _decode_all(session, frames, outcome)
    return outcome


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    bounds = sorted({cut for cut in cuts if 0 < cut < len(data)})
    return [data[start:end] for start, end in zip([0, *bounds], [*bounds, len(data)], strict=True)]


@st.composite
def mutated(draw: st.DrawFn, seeds: Sequence[bytes]) -> bytes:
    """One to three real frames joined, then flipped, cut into, duplicated or truncated."""
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(seeds), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(data)))
        match draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat"])):
            case "flip" if position < len(data):
                data[position] = draw(st.integers(0, 255))
            case "insert":
                data[position:position] = draw(st.binary(min_size=1, max_size=16))
            case "delete":
                del data[position : position + draw(st.integers(1, 16))]
            case "truncate":
                del data[position:]
            case "repeat":
                data[position:position] = data[max(0, position - 32) : position]
    return bytes(data)


def chunked(data: bytes, draw: st.DrawFn) -> list[bytes]:
    return split(data, draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=8)))


# -- the tests -----------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", [_param(driver, STREAM_SEEDS) for driver in DRIVERS])
@FUZZ
@given(data=st.data())
def test_random_bytes_behind_a_real_frame_head_raise_only_driver_errors(
    driver: Driver, data: st.DataObject
) -> None:
    seed = data.draw(st.sampled_from(STREAM_SEEDS[driver.name]))
    stream = seed[: data.draw(st.integers(1, len(seed)))] + data.draw(st.binary(max_size=2048))
    run_stream(chunked(stream, data.draw))


@pytest.mark.parametrize("driver", [_param(driver, STREAM_SEEDS) for driver in DRIVERS])
@FUZZ
@given(data=st.data())
def test_mutated_truncated_and_joined_frames_raise_only_driver_errors(
    driver: Driver, data: st.DataObject
) -> None:
    stream = data.draw(mutated(STREAM_SEEDS[driver.name]))
    run_stream(chunked(stream, data.draw))


@pytest.mark.parametrize(
    "driver", [_param(driver, DATAGRAM_SEEDS, "not spoken over UDP") for driver in DRIVERS]
)
@FUZZ
@given(data=st.data())
def test_mutated_datagrams_raise_only_driver_errors(driver: Driver, data: st.DataObject) -> None:
    run_datagram(data.draw(mutated(DATAGRAM_SEEDS[driver.name])))


@pytest.mark.parametrize("driver", [_param(driver, WHOLE_FRAMES, bugs=SPLIT_BUGS) for driver in DRIVERS])
@FUZZ
@given(data=st.data())
def test_real_frames_split_anywhere_decode_as_when_fed_whole(driver: Driver, data: st.DataObject) -> None:
    frames = data.draw(st.lists(st.sampled_from(WHOLE_FRAMES[driver.name]), min_size=1, max_size=4))
    stream = b"".join(frames)
    whole = run_stream([stream])
    assert whole[0] == ("driver", driver.name)
    assert run_stream(chunked(stream, data.draw)) == whole


@pytest.mark.parametrize("driver", [_param(driver, WHOLE_FRAMES, bugs=SPLIT_BUGS) for driver in DRIVERS])
def test_real_frames_fed_byte_by_byte_decode_as_when_fed_whole(driver: Driver) -> None:
    stream = b"".join(WHOLE_FRAMES[driver.name][:8])
    assert run_stream([stream[i : i + 1] for i in range(len(stream))]) == run_stream([stream])


@pytest.mark.parametrize("filler", [b"\x00", b"A", b"9", b",", b"\n", b"\xff"], ids=repr)
@pytest.mark.parametrize("driver", [_param(driver, STREAM_SEEDS) for driver in DRIVERS])
def test_a_flood_after_a_real_frame_keeps_the_buffer_bounded(driver: Driver, filler: bytes) -> None:
    flood = STREAM_SEEDS[driver.name][0] + filler * (2 * driver.session.max_frame)
    outcome = run_stream(split(flood, range(4096, len(flood), 4096)))
    assert outcome[0] == ("driver", driver.name)


def test_every_registered_driver_is_fuzzed() -> None:
    assert {"pt502", "gps103", "osmand"} <= {driver.name for driver in DRIVERS}
    missing = [driver.name for driver in DRIVERS if not STREAM_SEEDS[driver.name]]
    assert missing == [], f"drivers without vector frames to fuzz from: {missing}"
