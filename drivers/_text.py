"""Small parsers shared by the text protocols: NMEA coordinates, numbers, dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from ._model import KNOTS_TO_KMH

_PLAIN = re.compile(r"\d*\d\d\.\d+", re.ASCII)


def nmea_coordinate(value: str, hemisphere: str) -> float:
    """``ddmm.mmmm`` / ``dddmm.mmmm`` (variable degree digits) and N/S/E/W to signed degrees.

    :raises ValueError: not a coordinate.
    """
    if _PLAIN.fullmatch(value):  # the usual form: no sign, no space, ASCII digits
        dot = value.find(".")
        minutes = float(value[dot - 2 :])
        if minutes < 60:
            result = (int(value[: dot - 2]) if dot > 2 else 0) + minutes / 60
            return -result if hemisphere.upper() in ("S", "W") else result
    value = value.strip()
    negative = value.startswith("-")
    if negative:
        value = value[1:]
    dot = value.find(".")
    if dot < 0:
        dot = len(value)
    if dot < 2 or not value[:dot].isdigit():
        raise ValueError(f"not a ddmm.mmmm coordinate: {value!r}")
    degrees = int(value[: dot - 2]) if dot > 2 else 0
    minutes = float(value[dot - 2 :])
    if minutes >= 60:
        raise ValueError(f"minutes {minutes} out of range in {value!r}")
    result = degrees + minutes / 60
    if negative or hemisphere.upper() in ("S", "W"):
        result = -result
    return result


def nmea_matched(value: str, hemisphere: str) -> float:
    """:func:`nmea_coordinate` of a ``value`` a regex already matched as ``\\d*\\d\\d\\.\\d+`` (ASCII
    digits) and a hemisphere of one letter: the same number, or the same error, for less work.

    :raises ValueError: minutes of 60 or more.
    """
    dot = value.find(".")
    degrees = int(value[: dot - 2]) if dot > 2 else 0
    minutes = float(value[dot - 2 :])
    if minutes >= 60:
        raise ValueError(f"minutes {minutes} out of range in {value!r}")
    result = degrees + minutes / 60
    return -result if hemisphere in _NEGATIVE else result


_NEGATIVE = frozenset({"S", "W", "s", "w"})


def optional_float(value: str) -> float | None:
    """A float field that may be empty. :raises ValueError: neither empty nor a number."""
    value = value.strip()
    return float(value) if value else None


def knots_to_kmh(value: str) -> float | None:
    knots = optional_float(value)
    return None if knots is None else knots * KNOTS_TO_KMH


def utc_datetime(ddmmyy: str, hhmmss: str) -> datetime:
    """``ddmmyy`` and ``hhmmss[.sss]`` in UTC, to the second (trackers send ``.000`` or noise).

    :raises ValueError: not a valid date or time.
    """
    if len(ddmmyy) != 6 or not ddmmyy.isdigit() or len(hhmmss) < 6 or not hhmmss[:6].isdigit():
        raise ValueError(f"bad date/time {ddmmyy!r} {hhmmss!r}")
    return utc_datetime_matched(ddmmyy, hhmmss)


def utc_datetime_matched(ddmmyy: str, hhmmss: str) -> datetime:
    """:func:`utc_datetime` of values a regex already matched as six ASCII digits each (``hhmmss``
    at least six): the same time, or the same error, without checking them again.

    :raises ValueError: not a valid date or time.
    """
    return datetime(
        2000 + int(ddmmyy[4:6]),
        int(ddmmyy[2:4]),
        int(ddmmyy[0:2]),
        int(hhmmss[0:2]),
        int(hhmmss[2:4]),
        int(hhmmss[4:6]),
        tzinfo=UTC,
    )


def printable(data: bytes) -> bool:
    return all(32 <= b < 127 or b in (9, 10, 13) for b in data)
