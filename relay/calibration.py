"""Sensor calibration: a table of points mapping a raw input (an ``adcN``, a fuel or temperature
reading) to a physical value, with linear interpolation between the points.

A value below the first point or above the last is clamped to that end and marked: the report's
``calibration_clamped`` lists the attributes whose value is an end of their table, not a measurement.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from drivers import Report
from drivers import attributes as attr

#: The fewest points a table may have (one point is a constant, not a calibration).
MIN_POINTS = 2
#: The most points a table may have (a tank's strapping table has a few dozen).
MAX_POINTS = 1000


@dataclass(frozen=True, slots=True)
class Calibration:
    """``input`` (a raw attribute) through ``points`` (``(raw, value)``, raw strictly increasing) gives
    ``output`` (an attribute of the shared vocabulary, in its unit)."""

    input: str
    output: str
    points: tuple[tuple[float, float], ...]

    def value(self, raw: float) -> tuple[float, bool]:
        """The calibrated value of ``raw``, and whether it was clamped to an end of the table."""
        points = self.points
        if raw <= points[0][0]:
            return points[0][1], raw < points[0][0]
        if raw >= points[-1][0]:
            return points[-1][1], raw > points[-1][0]
        index = bisect.bisect_right(points, (raw, math.inf))  # the first point past raw
        (x0, y0), (x1, y1) = points[index - 1], points[index]
        return y0 + (y1 - y0) * (raw - x0) / (x1 - x0), False


def apply(report: Report, calibrations: Iterable[Calibration]) -> Report:
    """``report`` with each calibrated attribute added beside its raw one (which is kept); the report
    itself when none of the inputs is in it."""
    added: dict[str, Any] = {}
    clamped: list[str] = []
    for calibration in calibrations:
        raw = report.attributes.get(calibration.input)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            continue
        value, at_end = calibration.value(raw)
        added[calibration.output] = round(value, 3)
        if at_end:
            clamped.append(calibration.output)
    if not added:
        return report
    attributes = {**report.attributes, **added}
    if clamped:
        attributes[attr.CALIBRATION_CLAMPED] = clamped
    return replace(report, attributes=attributes)


def parse(value: Any) -> tuple[tuple[Calibration, ...], str | None]:
    """A device's ``calibration`` (a list of ``{input, output, points}`` tables) as calibrations, or
    what is wrong with it (naming the table and the point)."""
    if not isinstance(value, list):
        return (), 'a list of tables {input = "adc1", output = "fuel_l", points = [[raw, value], ...]}'
    found: list[Calibration] = []
    outputs: set[str] = set()
    for index, table in enumerate(value):
        where = f"table {index + 1}"
        if not isinstance(table, Mapping) or set(table) - {"input", "output", "points"}:
            return (), f"{where}: a table of input, output and points only"
        source, target, points = table.get("input"), table.get("output"), table.get("points")
        if not isinstance(source, str) or not attr.known(source):
            return (), f"{where}: input must be an attribute a driver reports (e.g. adc1, fuel_raw)"
        if not isinstance(target, str) or not attr.known(target) or target == source:
            return (), (
                f"{where}: output must be a name of the attribute vocabulary (e.g. fuel_l,"
                " temperature_c), not the input"
            )
        if target in outputs:
            return (), f"{where}: output {target} is calibrated twice"
        outputs.add(target)
        checked, problem = _points(points)
        if problem:
            return (), f"{where}: {problem}"
        found.append(Calibration(source, target, checked))
    return tuple(found), None


def _points(points: Any) -> tuple[tuple[tuple[float, float], ...], str | None]:
    if not isinstance(points, list) or not MIN_POINTS <= len(points) <= MAX_POINTS:
        return (), f"points must be a list of {MIN_POINTS} to {MAX_POINTS} [raw, value] pairs"
    checked: list[tuple[float, float]] = []
    for number, point in enumerate(points, start=1):
        if not _pair(point):
            return (), f"point {number} must be [raw, value], two numbers, not {point!r}"
        raw, value = float(point[0]), float(point[1])
        if checked and raw <= checked[-1][0]:
            return (), f"point {number}: raw values must increase ({checked[-1][0]:g} then {raw:g})"
        checked.append((raw, value))
    return tuple(checked), None


def _pair(point: Any) -> bool:
    return (
        isinstance(point, Sequence)
        and not isinstance(point, str)
        and len(point) == 2
        and all(not isinstance(n, bool) and isinstance(n, int | float) and math.isfinite(n) for n in point)
    )
