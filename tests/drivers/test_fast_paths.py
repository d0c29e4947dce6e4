"""The text drivers' fast paths decode exactly as their general paths do.

A text driver may decode its most common layout through one compiled regex (its module's
``_FAST``) before the general parser; it must then give the very same reports, replies and device id,
or hand the frame to the general path. Here every device frame of the protocol's vectors, and
thousands of mutations of them (a digit changed, a field emptied, a character deleted or
doubled...), is decoded twice, the fast path on and off, and the outcomes compared: reports and
replies equal, or the same error with the same message.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from importlib import import_module
from typing import Any

import pytest

from drivers import DriverError, Transport, get
from tests import vectors

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
#: Protocols whose driver module has a ``_FAST`` regex.
FAST = [
    name
    for name in ("gps103", "tk103", "h02", "watch", "pt502")
    if hasattr(import_module(f"drivers.{name}"), "_FAST")
]
#: Regexes that never match: the fast path off.
_NEVER = {bytes: re.compile(rb"(?!)"), str: re.compile(r"(?!)")}
#: Mutations per vector frame.
MUTATIONS = 200


def _frames(protocol: str) -> list[bytes]:
    """The protocol's device frames, cut by its own framer (a trailing undelimited one included)."""
    found = []
    for vector in vectors.load(protocol):
        for data in vector.frames():
            session = get(protocol).new_session(Transport.TCP)
            session.receive_data(data)
            found.extend(session.frames())
            if bytes(session._buffer).strip(b"\r\n\x00 "):
                found.append(bytes(session._buffer))
    return found


def _mutants(frame: bytes, rng: random.Random) -> list[bytes]:
    out = []
    alphabet = b"0123456789,.;-+ ANSEWVFL#*$|()[]:\xff"
    for _ in range(MUTATIONS):
        data = bytearray(frame)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            if not data:
                break
            at = rng.randrange(len(data))
            match rng.randrange(6):
                case 0 | 1 if chr(data[at]).isdigit():  # another digit: values near the edges
                    data[at] = rng.choice(b"0123456789")
                case 2:
                    del data[at]
                case 3:
                    data.insert(at, data[at])
                case 4:
                    data[at] = rng.choice(alphabet)
                case _:
                    data.insert(at, rng.choice(alphabet))
        out.append(bytes(data))
    return out


def _outcome(protocol: str, frame: bytes) -> Any:
    session = get(protocol).new_session(Transport.TCP)
    try:
        decoded = session.decode(frame, now=NOW)
    except DriverError as error:
        return ("error", type(error).__name__, str(error), error.replies, error.close)
    except Exception as error:  # a bug either way: the two paths must agree on it
        return ("bug", type(error).__name__, str(error))
    return ("decoded", decoded.reports, decoded.replies, decoded.device_id, decoded.close)


@pytest.mark.parametrize("protocol", FAST)
def test_the_fast_path_decodes_as_the_general_path(protocol: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = import_module(f"drivers.{protocol}")
    rng = random.Random(f"fast-{protocol}")
    frames = _frames(protocol)
    cases = [case for frame in frames for case in (frame, *_mutants(frame, rng))]
    fast = [_outcome(protocol, case) for case in cases]
    text = isinstance(module._FAST.pattern, str)  # a regex over the frame decoded as latin-1
    hits = sum(1 for case in cases if module._FAST.fullmatch(case.decode("latin-1") if text else case))
    monkeypatch.setattr(module, "_FAST", _NEVER[type(module._FAST.pattern)])
    general = [_outcome(protocol, case) for case in cases]
    differ = [(case, a, b) for case, a, b in zip(cases, fast, general, strict=True) if a != b]
    assert not differ, f"{len(differ)} of {len(cases)} frames decode differently, first: {differ[0]}"
    # The fast path is taken at all (else this test proves nothing).
    assert hits >= len(frames) // 4
