"""One port takes every protocol: each device frame of each vector file is recognised as its own protocol.

Detection here goes through every registered driver at once, as the relay's single port does. Rows of a
protocol whose driver is not registered are skipped with the reason.
"""

from __future__ import annotations

import pytest

import drivers
from drivers import Driver, Transport
from tests import vectors

ALL = [vector for path in sorted(vectors.VECTORS.glob("*.jsonl")) for vector in vectors.load(path.stem)]


def _case(vector: vectors.Vector) -> object:
    protocol = vector.row["protocol"]
    marks = []
    if protocol not in drivers.drivers():
        marks.append(pytest.mark.skip(reason=f"no {protocol} driver registered yet"))
    return pytest.param(vector, id=vector.id, marks=marks)


CASES = [_case(vector) for vector in ALL]


def test_vector_files_were_found() -> None:
    assert len(ALL) > 100
    assert {vector.row["protocol"] for vector in ALL} >= {"pt502", "gps103", "osmand"}


@pytest.mark.parametrize("vector", CASES)
def test_first_frame_is_detected_as_its_protocol_once_complete(vector: vectors.Vector) -> None:
    """With the whole first frame (or datagram) in hand, the sniffer picks the right driver."""
    first = vector.frames()[0]
    found = drivers.detect(first, vector.transport, final=True)
    assert isinstance(found, Driver), f"nothing recognises {first[:16].hex()}"
    assert found.name == vector.row["protocol"]


@pytest.mark.parametrize("vector", CASES)
def test_no_prefix_of_the_first_frame_is_taken_for_another_protocol(vector: vectors.Vector) -> None:
    """A stream's bytes arriving one by one are never handed to the wrong driver on the way."""
    first = vector.frames()[0]
    if vector.transport is Transport.UDP:
        pytest.skip("a datagram is sniffed whole")
    for end in range(1, min(len(first), drivers.MAX_SNIFF_BYTES) + 1):
        found = drivers.detect(first[:end], vector.transport)
        if isinstance(found, Driver):
            assert found.name == vector.row["protocol"], f"taken for {found.name} after {end} bytes"
            return
        assert found is drivers.NEED_MORE or found is None
    final = drivers.detect(first[: drivers.MAX_SNIFF_BYTES], vector.transport, final=True)
    assert isinstance(final, Driver)
    assert final.name == vector.row["protocol"]


@pytest.mark.parametrize("vector", CASES)
def test_whole_row_decodes_through_auto_detection(vector: vectors.Vector) -> None:
    """``relay decode --protocol auto`` names the row's protocol (agreement is each driver's own test)."""
    out = vectors.decode(vector)
    assert out["protocol"] == vector.row["protocol"]
