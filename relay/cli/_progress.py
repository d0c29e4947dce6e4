"""A counter on stderr for long work (export, quarantine retry), shown only to a person at a terminal:
``export: 12000 reports`` rewritten in place a few times a second, then left as the last line.

When stderr is not a terminal (a pipe, a log, cron), nothing is written, so scripts see only the
command's own output and messages.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

T = TypeVar("T")

#: Least seconds between two updates of the line.
EVERY_S = 0.2


class Progress:
    """``label: done[/total] unit`` on ``stream`` (default stderr), when it is a terminal."""

    def __init__(
        self, label: str, unit: str, *, total: int | None = None, stream: IO[str] | None = None
    ) -> None:
        self.label = label
        self.unit = unit
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.shown = _is_terminal(self.stream)
        self._last = 0.0

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if self.shown and now - self._last >= EVERY_S:
            self._last = now
            self._write("\r")

    def finish(self) -> None:
        """Show the final count and end the line (nothing when not shown)."""
        if self.shown:
            self._write("\r")
            self.stream.write("\n")
            self.stream.flush()

    def counting(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, counted as they pass; the line is finished when they end."""
        try:
            for item in items:
                yield item
                self.advance()
        finally:
            self.finish()

    def _write(self, start: str) -> None:
        of = f"/{self.total}" if self.total is not None else ""
        self.stream.write(f"{start}{self.label}: {self.done}{of} {self.unit}")
        self.stream.flush()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
