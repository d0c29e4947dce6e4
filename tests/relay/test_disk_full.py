"""A full disk: nothing is acknowledged that is not stored, the relay keeps running and recovers."""

from __future__ import annotations

from pathlib import Path

import trio

from tests import devices
from tests.relay.harness import running_relay, wait_until

IMEI = "868683020419374"


async def test_a_full_disk_refuses_acks_keeps_serving_and_recovers(tmp_path: Path) -> None:
    async with running_relay(tmp_path) as relay:
        assert await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 1)], replies=1) == [
            b"ON"
        ]
        # SQLite's own "database or disk is full" (SQLITE_FULL), as when the card fills up.
        pages = relay.journal._db.execute("PRAGMA page_count").fetchone()[0]
        relay.journal._db.execute(f"PRAGMA max_page_count={pages}")
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        async with stream:
            await stream.send_all(b"".join(devices.gps103_position(IMEI, n) for n in range(2, 400)))
            with trio.fail_after(10):
                answer = await stream.receive_some(100)
        assert answer == b""  # closed without a single "ON": nothing unstored was acknowledged
        assert relay.journal.last_commit_error and "full" in relay.journal.last_commit_error
        assert relay.health_problem() is not None
        assert relay.journal.committed_reports == 1

        relay.journal._db.execute("PRAGMA max_page_count=1073741823")  # space again
        assert await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 2)], replies=1) == [
            b"ON"
        ]
        await wait_until(lambda: relay.health_problem() is None, what="health back")
        times = [report.document["time"] for report in relay.journal.read_after(0, 100)]
    assert times == [devices.iso(1), devices.iso(2)]
