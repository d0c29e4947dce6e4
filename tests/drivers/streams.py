"""Feeding a driver session the way the relay does, for the per-driver tests."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

from drivers import DriverError, FramingError, Session
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
    """Stream ``chunks`` through ``session``, the leftover decoded at the end as at EOF: the reports
    (as JSON), the replies and the decode errors, in order."""
    reports: list[dict[str, Any]] = []
    replies: list[bytes] = []
    errors: list[str] = []

    def decode(frame: bytes) -> None:
        try:
            result = session.decode(frame, now=now)
        except DriverError as error:
            errors.append(str(error))
            return
        reports.extend(report.to_json() for report in result.reports)
        replies.extend(result.replies)

    for chunk in chunks:
        session.receive_data(chunk)
        for frame in session.frames():
            decode(frame)
    rest = session.take_buffer()
    if rest:
        decode(rest)
    return reports, replies, errors


def check_stream(session: Session, data: bytes, cuts: list[int], now: datetime = NOW) -> None:
    """Feed ``data`` in pieces of the sizes in ``cuts``: only DriverError may escape, and the buffer
    stays within ``max_frame`` after every successful framing."""
    position = 0
    for size in [*cuts, len(data)]:
        session.receive_data(data[position : position + size])
        position += size
        try:
            frames = list(session.frames())
        except FramingError:
            session.take_buffer()
            continue
        assert session.buffered <= session.max_frame
        for frame in frames:
            with contextlib.suppress(DriverError):
                session.decode(frame, now=now)


def mutated_stream(frames: list[bytes], mutations: list[tuple[int, int]], cut: int) -> bytes:
    """``frames`` joined, each ``(position, value)`` written over (positions wrap around), and ``cut``
    bytes (modulo the length) taken off the end: what a fuzz test feeds a framer."""
    data = bytearray(b"".join(frames))
    for position, value in mutations:
        data[position % len(data)] = value
    return bytes(data[: len(data) - cut % len(data)])
