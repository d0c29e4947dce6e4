"""A tracker that sends faster than the journal commits: its connection keeps reading while earlier
frames wait for their commit, and each reply still goes in order, only once its frame is stored."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import trio

from tests import devices

from .harness import running_relay

IMEI = "868683020419374"
COMMIT_INTERVAL_S = 0.4


async def test_frames_sent_faster_than_commits_are_answered_in_order_each_after_its_commit(
    tmp_path: Path,
) -> None:
    journal = {"commit_interval_ms": int(COMMIT_INTERVAL_S * 1000)}
    async with running_relay(tmp_path, journal=journal) as relay:
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        await stream.send_all(devices.gps103_login(IMEI))
        assert await stream.receive_some() == b"LOAD"
        await trio.sleep(COMMIT_INTERVAL_S)  # the next commit may go at once
        database = sqlite3.connect(f"file:{relay.config.database}?mode=ro", uri=True)
        frames = 10
        sent_at: list[float] = []
        answered_at: list[float] = []

        async def send() -> None:
            for index in range(frames):
                sent_at.append(trio.current_time())
                await stream.send_all(devices.gps103_position(IMEI, index))
                await trio.sleep(COMMIT_INTERVAL_S / 4)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            replies = b""
            while replies.count(b"ON") < frames:
                replies += await stream.receive_some()
                now = trio.current_time()
                answered_at += [now] * (replies.count(b"ON") - len(answered_at))
                positions = database.execute("SELECT count(*) FROM reports WHERE event = 'position'")
                assert positions.fetchone()[0] >= len(answered_at), "a reply went before its commit"
        database.close()
        await stream.aclose()
    assert replies == b"ON" * frames
    # Each frame waits for the next commit at most, not for its predecessors' commits first (one read
    # at a time, frame 6 of 10 would wait 0.7 s here).
    waits = [round(answered - sent, 2) for sent, answered in zip(sent_at, answered_at, strict=True)]
    assert max(waits) < 1.25 * COMMIT_INTERVAL_S, waits
