"""The reference frame vectors (``tests/data/vectors/*.jsonl``) and the checks every driver must pass on them.

A row's ``expect`` values are asserted by the source's own tests; ``derived`` values come from an
independent parse that agrees with every asserted value. Both are reference values here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers import Transport, decode_stream
from relay.cli import _vectors as table

#: Where the vectors live: ``$RELAY_VECTORS``, else the copy in this repository (``tests/data/vectors``).
VECTORS = Path(os.environ.get("RELAY_VECTORS", Path(__file__).resolve().parent / "data" / "vectors"))
#: The clock handed to drivers when decoding vectors (replies that carry "now" are not compared).
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Vector:
    line: int
    row: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.row['protocol']}:{self.line}"

    @property
    def transport(self) -> Transport:
        return Transport(self.row.get("transport", "tcp"))

    def frames(self) -> list[bytes]:
        frames = self.row.get("frames") or [self.row["frame"]]
        if self.row["encoding"] == "hex":
            return [bytes.fromhex(frame) for frame in frames]
        return [frame.encode("latin-1") for frame in frames]

    def reference(self) -> dict[str, Any]:
        """Expected values: ``derived`` overlaid with the test-asserted ``expect`` values."""
        return table.reference(self.row)


def load(protocol: str, *, direction: str = "device_to_server") -> list[Vector]:
    path = VECTORS / f"{protocol}.jsonl"
    rows = []
    with path.open() as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                row = json.loads(line)
                if row.get("direction") == direction:
                    rows.append(Vector(number, row))
    return rows


def decode(vector: Vector, protocol: str = "auto") -> dict[str, Any]:
    return decode_stream(
        vector.frames(),
        now=NOW,
        protocol=protocol,
        transport=vector.transport,
        messages=True,
    ).summary()


def mismatches(vector: Vector, out: dict[str, Any]) -> list[str]:
    """Everything in ``out`` (a ``decode_stream`` result) that disagrees with the vector's reference:
    the relay's own definition (``relay.vectors.mismatches``), so ``relay vectors`` and the tests agree."""
    return table.mismatches(vector.row, out)
