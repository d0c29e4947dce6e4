"""Feeding a driver session the way the relay does, for the per-driver tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drivers import DriverError, Session
from tests.vectors import NOW


def feed_frames(session: Session, chunks: list[bytes]) -> tuple[list[bytes], Session]:
    """Buffer ``chunks`` one by one and collect every frame cut; returns the frames and the session."""
    frames: list[bytes] = []
    for chunk in chunks:
        session.receive_data(chunk)
        frames.extend(session.frames())
    return frames, session


def feed_reports(
    session: Session, chunks: list[bytes], now: datetime = NOW
) -> tuple[list[dict[str, Any]], list[bytes], list[str]]:
    """Stream ``chunks`` through ``session`` as the relay does (``events``, then the end of the stream):
    the reports (as JSON), the replies and the decode errors, in order."""
    reports: list[dict[str, Any]] = []
    replies: list[bytes] = []
    errors: list[str] = []
    for chunk in [*chunks, b""]:
        session.receive_data(chunk)
        for event in session.events(now=now):
            replies.extend(event.replies)
            if isinstance(event, DriverError):
                errors.append(str(event))
            else:
                reports.extend(report.to_json() for report in event.reports)
    return reports, replies, errors
