"""Sequential reads over a binary frame, and code names, shared by the binary protocols (gt06, teltonika)."""

from __future__ import annotations

import enum
import struct


def code_name(kind: type[enum.IntEnum], code: int) -> str:
    """``LOGIN (0x01)`` for a code ``kind`` knows, ``0x50`` for another: what an error names."""
    try:
        return f"{kind(code).name} (0x{code:02x})"
    except ValueError:
        return f"0x{code:02x}"


class ShortFrame(IndexError):
    """A read ran past the end of the frame's data."""


class Reader:
    """Big-endian reads from ``data``, advancing ``pos``; a read past the end raises :class:`ShortFrame`.

    ``body_length`` (default: all of ``data``) is what :attr:`left` counts down from, for layouts
    whose optional fields depend on how much of the body remains.
    """

    def __init__(self, data: bytes, pos: int = 0, *, body_length: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.body_length = len(data) if body_length is None else body_length

    @property
    def left(self) -> int:
        return self.body_length - self.pos

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise ShortFrame(f"needs {count} bytes at offset {self.pos}, has {len(self.data) - self.pos}")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def u8(self) -> int:
        return self.uint(1)

    def u16(self) -> int:
        return self.uint(2)

    def skip(self, count: int) -> None:
        self.take(count)

    def float32(self) -> float:
        return float(struct.unpack(">f", self.take(4))[0])
