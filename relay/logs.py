"""Logging: one line per event, ``logfmt`` (``key=value``), easy for people and for ``grep``/Loki.

    ts=2026-11-23T10:00:01.123Z level=info event=listening tcp=0.0.0.0:8888 udp=0.0.0.0:8888

Bad input from the field can arrive thousands of times a second; :class:`RateLimiter` keeps such
lines to a few per minute per key and reports how many were suppressed.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any


def log_event(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with ``fields`` as one logfmt line."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


#: Control characters (C0, DEL, C1), line and paragraph separators, and the bidirectional and
#: zero-width marks that make a terminal or a log viewer show something other than what was logged.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def _quote(value: Any) -> str:
    """A logfmt value: quoted when it holds a space, a quote, ``=`` or a backslash, and with every
    unsafe character escaped (a device id from the field may hold anything)."""
    text = str(value) if value is not None else ""
    if text == "" or any(ch in text for ch in ' "=\\') or _UNSAFE.search(text):
        return '"' + _UNSAFE.sub(_escape, text.replace("\\", "\\\\").replace('"', '\\"')) + '"'
    return text


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        parts = [
            f"ts={stamp}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"event={_quote(record.getMessage())}",
        ]
        fields = getattr(record, "fields", None) or {}
        parts.extend(f"{key}={_quote(value)}" for key, value in fields.items())
        if record.exc_info:
            parts.append(f"exception={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class RateLimiter:
    """Allow ``burst`` events per key per ``period`` seconds; count the rest."""

    def __init__(self, burst: int = 5, period: float = 60.0, max_keys: int = 10_000) -> None:
        self.burst = burst
        self.period = period
        self.max_keys = max_keys
        self._windows: dict[str, tuple[float, int, int]] = {}

    def allow(self, key: str, now: float | None = None) -> tuple[bool, int]:
        """(whether to log now, how many were suppressed since the last logged one)."""
        now = time.monotonic() if now is None else now
        start, count, suppressed = self._windows.get(key, (now, 0, 0))
        if now - start >= self.period:
            start, count = now, 0
        if count < self.burst:
            if len(self._windows) >= self.max_keys and key not in self._windows:
                self._windows.clear()
            self._windows[key] = (start, count + 1, 0)
            return True, suppressed
        self._windows[key] = (start, count, suppressed + 1)
        return False, 0
