"""The shared frame vectors (``../shared/vectors/*.jsonl``) and the checks every driver must pass on them.

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

from drivers import Transport, decode_frames

#: Where the vectors live: ``$RELAY_VECTORS`` or ``shared/vectors`` beside the checkout.
VECTORS = Path(os.environ.get("RELAY_VECTORS", Path(__file__).resolve().parents[2] / "shared" / "vectors"))
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
        ref = dict(self.row.get("derived") or {})
        expect = self.row.get("expect") or {}
        for key in ("time", "valid", "lat", "lon", "alarm", "course", "altitude", "device_id"):
            if key in expect:
                ref[key] = expect[key]
        return ref


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
    return decode_frames(vector.frames(), now=NOW, protocol=protocol, transport=vector.transport)


def mismatches(vector: Vector, out: dict[str, Any]) -> list[str]:
    """Everything in ``out`` (a ``decode_frames`` result) that disagrees with the vector's reference.

    Checked: detection, lat/lon within 1e-5, time exact, speed within 0.1 km/h, validity, course,
    the alarm, and the reply bytes when the source shows them. An empty list means full agreement.
    """
    problems: list[str] = []
    row = vector.row
    if out["protocol"] != row["protocol"]:
        problems.append(f"detected as {out['protocol']!r}")
        return problems
    if out["error"]:
        problems.append(f"error: {out['error']}")
    ref = vector.reference()
    positions = [report for report in out["reports"] if report["lat"] is not None]
    if "lat" in ref and ref.get("lat") is not None:
        if not positions:
            return [*problems, "no position decoded"]
        got = positions[0]
        if abs(got["lat"] - ref["lat"]) > 1e-5 or abs(got["lon"] - ref["lon"]) > 1e-5:
            problems.append(f"position {got['lat']},{got['lon']} != {ref['lat']},{ref['lon']}")
        if "time" in ref and got["time"] != ref["time"]:
            problems.append(f"time {got['time']} != {ref['time']}")
        if "valid" in ref and got["valid"] != ref["valid"]:
            problems.append(f"valid {got['valid']} != {ref['valid']}")
        speed = ref.get("speed_kmh")
        if speed is None and ref.get("speed_knots") is not None:
            speed = ref["speed_knots"] * 1.852
        if speed is not None and abs((got["speed_kmh"] or 0.0) - speed) > 0.1:
            problems.append(f"speed {got['speed_kmh']} != {speed} km/h")
        course = ref.get("course")
        if course is not None and abs((got["course_deg"] or 0.0) - course) > 0.01:
            problems.append(f"course {got['course_deg']} != {ref['course']}")
    if ref.get("alarm"):
        wanted = set(str(ref["alarm"]).split(","))
        found = {alarm for report in out["reports"] for alarm in report["alarms"]}
        if not wanted <= found:
            problems.append(f"alarms {sorted(found)} lack {sorted(wanted - found)}")
    if ref.get("device_id") and out["reports"]:
        ids = {report["device_id"] for report in out["reports"]}
        if ref["device_id"] not in ids and not row.get("expect", {}).get("result", "").startswith("none"):
            problems.append(f"device ids {sorted(map(str, ids))} lack {ref['device_id']}")
    reply = row.get("reply") or row.get("reply_derived")
    if reply and reply.lower() not in out["replies"]:
        problems.append(f"replies {out['replies']} lack {reply}")
    return problems
