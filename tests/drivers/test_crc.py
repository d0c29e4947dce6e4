"""CRC-16/X-25 (GT06) and CRC-16/IBM (Teltonika) against their catalogue check values and real frames."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers._crc import crc16_ibm, crc16_x25

CHECK = b"123456789"


def test_x25_matches_the_catalogue_check_value() -> None:
    assert crc16_x25(CHECK) == 0x906E


def test_ibm_matches_the_catalogue_check_value() -> None:
    assert crc16_ibm(CHECK) == 0xBB3D


def test_empty_input_gives_the_initial_value_after_xorout() -> None:
    assert crc16_x25(b"") == 0x0000
    assert crc16_ibm(b"") == 0x0000


@pytest.mark.parametrize(
    "frame",
    [
        "78780d01012345678901234500018cdd0d0a",  # protocols.md §4.2 known answer
        "787805010001d9dc0d0a",
        "787812800c0000000052656c61792c312300009dee0d0a",  # Traccar encoder test
    ],
)
def test_x25_reproduces_gt06_frame_checksums(frame: str) -> None:
    data = bytes.fromhex(frame)
    assert crc16_x25(data[2:-4]) == int.from_bytes(data[-4:-2], "big")


def test_ibm_reproduces_a_teltonika_codec12_checksum() -> None:
    data = bytes.fromhex("00000000000000140c01050000000c7365746469676f7574203131010000bed5")
    assert crc16_ibm(data[8:-4]) == int.from_bytes(data[-4:], "big")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.binary(max_size=64), st.integers(min_value=0, max_value=63), st.integers(min_value=1, max_value=255)
)
def test_any_single_byte_change_changes_both_crcs(data: bytes, index: int, flip: int) -> None:
    if not data:
        return
    index %= len(data)
    mutated = data[:index] + bytes([data[index] ^ flip]) + data[index + 1 :]
    assert crc16_x25(mutated) != crc16_x25(data)
    assert crc16_ibm(mutated) != crc16_ibm(data)
    assert 0 <= crc16_x25(data) <= 0xFFFF and 0 <= crc16_ibm(data) <= 0xFFFF
