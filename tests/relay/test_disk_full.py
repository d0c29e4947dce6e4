"""A full disk: nothing is acknowledged that is not stored, the relay keeps running and recovers."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from drivers import Report
from relay.journal import Entry, Journal
from tests import devices
from tests.relay.harness import running_relay, wait_until

IMEI = "868683020419374"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 96 MB file system (tmpfs), as a small SD card that fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    command = ["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mount)]
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def send_one(port: int, index: int) -> bool:
    """One position on its own connection: was it acknowledged?"""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(devices.gps103_position(IMEI, index))
        with trio.fail_after(10):
            return await stream.receive_some(16) == b"ON"


async def test_a_really_full_disk_is_cleaned_up_at_once_and_acks_resume(small_disk: Path) -> None:
    data = small_disk / "data"
    acked: list[int] = []
    async with running_relay(data) as relay:  # store only: every report counts as delivered
        filler = Report(protocol="gps103", device_id="filler", event="position")
        stamp = datetime.now(UTC)
        with pytest.raises(sqlite3.OperationalError, match="full"):  # the journal fills the disk
            for _ in range(5000):
                relay.journal.write_now([Entry(filler, os.urandom(3000), "tcp", "x", stamp)] * 50)
        refused = 0
        with trio.fail_after(30):
            index = 0
            while len(acked) < 20:
                index += 1
                if await send_one(relay.port, index):
                    acked.append(index)
                elif acked and relay.journal.full_at_bytes is None:  # the cleanup ran, and still full
                    raise AssertionError(f"refused again after {len(acked)} acknowledgements")
                else:
                    refused += 1
                    await trio.sleep(0.05)
        assert relay.health_problem() is None
    assert refused <= 50  # the cleanup ran at once, not on the 60 s timer
    journal = Journal.open(data / "journal.sqlite3")
    stored = {report.document["time"] for report in journal.read_after(0, 100_000)}
    journal.close()
    assert {devices.iso(index) for index in acked} <= stored


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
        assert relay.journal.stats.committed_reports == 1

        relay.journal._db.execute("PRAGMA max_page_count=1073741823")  # space again
        assert await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 2)], replies=1) == [
            b"ON"
        ]
        await wait_until(lambda: relay.health_problem() is None, what="health back")
        times = [report.document["time"] for report in relay.journal.read_after(0, 100)]
    # Store only: the first report counts as delivered, and the cleanup after the full disk may take it.
    assert times[-1] == devices.iso(2) and set(times) <= {devices.iso(1), devices.iso(2)}
