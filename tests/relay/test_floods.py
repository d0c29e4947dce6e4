"""Floods of bad input cost at most their budget: the card keeps its room for reports, memory stays
bounded, and well-behaved trackers keep being answered throughout."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from tests import devices

from .harness import running_relay, wait_until

BN407 = "868683020419374"


def journal_bytes(data_dir: Path) -> int:
    return sum(path.stat().st_size for path in data_dir.glob("journal.sqlite3*"))


@pytest.mark.slow
async def test_a_udp_garbage_flood_costs_its_budget_and_trackers_are_still_answered(tmp_path: Path) -> None:
    async with running_relay(
        tmp_path, journal={"quarantine_peer_max_kb": 256, "quarantine_max_mb": 1}
    ) as relay:
        flood = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sent = 0
        answers: list[bytes] = []
        try:
            for burst in range(40):
                for n in range(50):  # 2,000 datagrams of 4 KB: 8 MB of garbage
                    flood.sendto(b"\xee" * 4090 + f"{burst:03}{n:03}".encode(), ("127.0.0.1", relay.port))
                    sent += 1
                answers += await devices.tcp_exchange(
                    relay.port, [devices.gps103_position(BN407, burst)], replies=1
                )
                await trio.sleep(0)
        finally:
            flood.close()
        assert answers == [b"ON"] * 40
        budget = relay.journal.quarantine_budget
        stats = relay.listener.stats
        while True:  # the kernel drops what overflows the socket buffer: wait for the rest
            seen = stats.datagrams
            await trio.sleep(0.5)
            if stats.datagrams == seen:
                break
        assert stats.datagrams > 500, "too little of the flood arrived to test anything"
        await wait_until(
            lambda: len(relay.journal.quarantine_rows(limit=10_000)) + budget.dropped
            >= relay.listener.stats.unknown_streams,
            what="every datagram stored or counted",
        )
        rows = relay.journal.quarantine_rows(limit=10_000)
        assert sum(len(row["raw"]) for row in rows) <= 256 * 1024
        assert relay.journal.stats.quarantine_dropped_peer >= relay.listener.stats.unknown_streams - 70
        assert journal_bytes(tmp_path) < 3 * 1024 * 1024, "the flood reached the card"
        assert len(relay.journal.read_after(0, 100)) == 40  # every tracker report stored


@pytest.mark.slow
async def test_partial_frames_across_connections_stay_within_their_budget(tmp_path: Path) -> None:
    async with running_relay(tmp_path, listen={"max_buffered_mb": 1}) as relay:
        stats = relay.listener.stats
        streams = []
        closed = 0
        try:
            for n in range(12):  # 12 watches, each 200 KB into a voice message that never ends
                stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
                streams.append(stream)
                await stream.send_all(b"[SG*88000000%02d*FFFF*TK," % n + b"\x01" * 200_000)
            await wait_until(lambda: stats.buffer_overflows >= 1, what="a connection over the budget")
            assert stats.buffered_bytes <= 1024 * 1024
            for stream in streams:
                with trio.move_on_after(2):
                    try:
                        closed += await stream.receive_some(10) == b""
                    except trio.BrokenResourceError:  # reset: the relay closed with our bytes unread
                        closed += 1
            assert closed == stats.buffer_overflows >= 12 - (1024 * 1024) // (2 * 200_000) - 1
            # a tracker is still served while the others hold their budget
            answer = await devices.tcp_exchange(relay.port, [devices.gps103_position(BN407, 1)], replies=1)
            assert answer
        finally:
            for stream in streams:
                await stream.aclose()
        await wait_until(lambda: stats.buffered_bytes == 0, what="every buffer released")
        rows = relay.journal.quarantine_rows(limit=100)
        assert any("max_buffered_mb" in row["reason"] for row in rows)
