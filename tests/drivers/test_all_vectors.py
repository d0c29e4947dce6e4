"""Every device row of every vector file: recognised as its own protocol through all the registered drivers
at once, as the relay's single port does, and decoded in agreement with the reference (the rule of
``relay vectors``), except the rows in :data:`KNOWN_DISAGREEMENTS`, each with its reason.

Rows of a protocol whose driver is not registered are skipped with the reason.
"""

from __future__ import annotations

import pytest

import drivers
from drivers import Driver, Transport
from tests import vectors

_TRUNCATED_AVL = (
    "truncated test frame: the length field says {declared} bytes, the frame has {actual}, so its CRC "
    "cannot match; AVL CRCs are enforced (no ack, the device resends), Traccar never checks them"
)
_UNKNOWN_COURSE = (
    "reference course -1 is Transistorsoft's 'unknown'; a Report course is 0..360, so the driver reports None"
)
_TK103_SHORT_ID = (
    "reference device_id is the first 12 characters of a 15-digit IMEI; the same devices' position rows "
    "carry the full IMEI, which this driver keeps so one device stays one device"
)
_TK103_SYNTHETIC = (
    "synthetic framing sample with 62 minutes of latitude (5562.02870N): rejected as malformed; the "
    "framing itself is checked by test_framer_cuts_the_first_frame_the_reference_cuts"
)

#: The rows that do not agree with the reference, by vector id (``protocol:line``), with the reason.
#: Each is a strict xfail: a row that starts agreeing must leave this table.
KNOWN_DISAGREEMENTS: dict[str, str] = {
    "gt06:122": "NT20 model variant: 0x22 carries the IMEI and two time stamps before the GPS block "
    "(model config)",
    "gt06:123": "XT40 model variant: same NT20-style 0x22 layout with the IMEI first (model config)",
    "gt06:125": "G18 model variant: alarm byte 0x30 means hardBraking on G18, jamming on standard models",
    "gt06:126": "QH302R model variant: 0x12 carries the IMEI before the GPS block (model config)",
    "osmand:1": _UNKNOWN_COURSE,
    "osmand:2": _UNKNOWN_COURSE,
    "osmand:3": _UNKNOWN_COURSE,
    "osmand:5": "no id: Traccar emits no position, neither do we (400); the derived lat/lon is only the "
    "query parsed",
    "teltonika:25": _TRUNCATED_AVL.format(declared=179, actual=177),
    "teltonika:27": _TRUNCATED_AVL.format(declared=211, actual=210) + " (codec 7)",
    "teltonika:31": _TRUNCATED_AVL.format(declared=178, actual=45),
    "teltonika:35": "FMB130 with teltonika.extended=true: 16-byte IO values need model/decoder config",
    "teltonika:36": "FMB130 with teltonika.extended=true: 16-byte IO values need model/decoder config",
    "tk103:8": _TK103_SHORT_ID,
    "tk103:11": "reference reads '357593060760397BP02' as the id and the date as ddmmyy; this driver reads "
    "IMEI 357593060760397, type BP02 and the packed layout's yymmdd date (2017-03-04, not 2004-03-17)",
    "tk103:25": _TK103_SHORT_ID,
    "tk103:31": "reference device_id '(01029131573' includes the frame's '(' (a backtracking artefact)",
    "tk103:50": _TK103_SHORT_ID,
    "tk103:52": _TK103_SHORT_ID,
    "tk103:53": _TK103_SHORT_ID,
    "tk103:54": _TK103_SYNTHETIC,
    "tk103:55": _TK103_SYNTHETIC,
}

ALL = [vector for path in sorted(vectors.VECTORS.glob("*.jsonl")) for vector in vectors.load(path.stem)]


def _case(vector: vectors.Vector) -> object:
    protocol = vector.row["protocol"]
    marks = []
    if protocol not in drivers.drivers():
        marks.append(pytest.mark.skip(reason=f"no {protocol} driver registered yet"))
    return pytest.param(vector, id=vector.id, marks=marks)


CASES = [_case(vector) for vector in ALL]


def _agreement_case(vector: vectors.Vector) -> object:
    if vector.row["protocol"] in drivers.drivers() and vector.id in KNOWN_DISAGREEMENTS:
        xfail = pytest.mark.xfail(reason=KNOWN_DISAGREEMENTS[vector.id], strict=True)
        return pytest.param(vector, id=vector.id, marks=[xfail])
    return _case(vector)


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


@pytest.mark.parametrize("vector", [_agreement_case(vector) for vector in ALL])
def test_vector_is_detected_and_agrees_with_reference(vector: vectors.Vector) -> None:
    assert vectors.mismatches(vector, vectors.decode(vector)) == []


def test_every_known_disagreement_names_a_vector_row() -> None:
    assert set(KNOWN_DISAGREEMENTS) <= {vector.id for vector in ALL}
