"""pt502 beyond the shared vectors: which first lines the one port hands to the PT-600 driver."""

from __future__ import annotations

import pytest

import drivers
from drivers import Driver, DriverError, FramingError, Match, Transport
from drivers.pt502 import Pt502Session, sniff
from tests import vectors

TAIL = (
    b",1360000277,182241.000,A,0846.0896,N,07552.1738,W,13.58,26.88,291017,,,"
    b"A/00000,00000/0,0,0,0/62792900//f65//\r\n"
)


@pytest.mark.parametrize("kind", [b"IN1", b"IN2", b"IU4", b"MLA", b"SKA", b"POS", b"PHO3821-1", b"PHO0"])
@pytest.mark.parametrize("transport", [Transport.TCP, Transport.UDP])
def test_every_line_type_opens_a_pt502_stream_and_decodes(kind: bytes, transport: Transport) -> None:
    line = b"$" + kind + TAIL
    found = drivers.detect(line, transport, final=transport is Transport.UDP)
    assert isinstance(found, Driver) and found.name == "pt502"
    out = drivers.decode_stream(
        [line],
        now=vectors.NOW,
        protocol="auto",
        transport=transport,
        messages=True,
    ).summary()
    [report] = out["reports"]
    assert report["device_id"] == "1360000277"
    assert report["attributes"]["event_code"] == kind.decode()


@pytest.mark.parametrize(
    "head",
    [b"$,1,", b"$1N1,1", b"$in1,1", b"$IN 1,", b"$" + b"A" * 40 + b",", b"$GPRMC\r\n"],
)
def test_lines_without_a_type_field_are_not_pt502(head: bytes) -> None:
    assert sniff(head, Transport.TCP) is Match.NO


def test_a_type_field_in_the_making_asks_for_more() -> None:
    for end in range(len(b"$PHO3821-1")):
        assert sniff(b"$PHO3821-1"[:end], Transport.TCP) is Match.MORE


@pytest.mark.parametrize(
    "chunk", [b"$PHD0,96N0,\xff\xd8\xff", b"$PHDx,12,\xff\xd8", b"$PHD12345678,1,\xff\xd8\xff\xd8\xff"]
)
def test_a_malformed_photo_chunk_header_closes_the_stream_as_an_event_not_an_exception(chunk: bytes) -> None:
    session = Pt502Session()
    session.receive_data(b"$POS" + TAIL + chunk)
    position, error = session.events(now=vectors.NOW)
    assert position.reports[0].device_id == "1360000277"
    assert isinstance(error, FramingError) and isinstance(error, DriverError)
    assert error.wire == chunk and session.closed
