"""The 16-bit CRCs the binary protocols use, as small pure functions over bytes.

* :func:`crc16_x25` — CRC-16/X-25, a.k.a. CRC-ITU (GT06/Concox): poly 0x1021 reflected, init 0xFFFF,
  xorout 0xFFFF. Check value ``crc16_x25(b"123456789") == 0x906E``.
* :func:`crc16_ibm` — CRC-16/IBM, a.k.a. CRC-16/ARC (Teltonika): poly 0x8005 reflected, init 0,
  no xorout. Check value ``crc16_ibm(b"123456789") == 0xBB3D``.
"""

from __future__ import annotations

#: 0x1021 bit-reversed, for the right-shifting (reflected) form of CRC-16/X-25.
_X25_POLY = 0x8408
#: 0x8005 bit-reversed, for the right-shifting (reflected) form of CRC-16/IBM.
_IBM_POLY = 0xA001


def _table(poly: int) -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_X25_TABLE = _table(_X25_POLY)
_IBM_TABLE = _table(_IBM_POLY)


def crc16_x25(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/X-25 of ``data`` (0..0xFFFF)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _X25_TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def crc16_ibm(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/IBM (ARC) of ``data`` (0..0xFFFF)."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _IBM_TABLE[(crc ^ byte) & 0xFF]
    return crc
