"""Retrying: the backoff every sink uses, and the real error inside trio's exception groups."""

from __future__ import annotations

import random

#: Past this many doublings the delay is at its ceiling anyway; keeps 2**n small.
MAX_DOUBLINGS = 16


def backoff_delay(failures: int, low: float, high: float) -> float:
    """Exponential backoff with full jitter between ``low`` and the doubled ceiling (at most ``high``),
    so a fleet of relays does not retry in lockstep."""
    ceiling = min(high, low * 2 ** min(failures, MAX_DOUBLINGS))
    return random.uniform(low, max(ceiling, low))


def innermost(error: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
