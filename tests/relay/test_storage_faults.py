"""What the storage can do to the journal: damage, vanished files, private files, clock jumps."""

from __future__ import annotations

import os
import random
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from drivers import Report
from relay.cli._main import main as cli
from relay.journal import Entry, Journal, Quarantined, set_aside_journals
from tests import devices
from tests.broker import Mosquitto, Subscriber
from tests.relay.harness import running_relay, wait_until
from tests.relay.test_crash import RelayProcess

IMEI = "868683020419374"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def entry(index: int, *, photo: bool = False) -> Entry:
    report = Report(
        protocol="gps103",
        device_id=f"dev{index % 3}",
        event="photo" if photo else "position",
        time=NOW,
        valid=True,
        lat=1.0 + index / 10_000,
        lon=2.0,
        media=b"\xff\xd8jpeg%d" % index if photo else None,
        media_type="image/jpeg" if photo else None,
    )
    return Entry(report, b"frame-%d" % index, "tcp", "10.0.0.1:4000", NOW + timedelta(seconds=index))


def reports_leaf_pages(path: Path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [
            row[0]
            for row in db.execute(
                "SELECT pageno FROM dbstat WHERE name = 'reports' AND pagetype = 'leaf' ORDER BY pageno"
            )
        ]
    finally:
        db.close()


def damage_page(path: Path, page: int, *, page_size: int = 4096, header: bool = False) -> None:
    """Random bytes over the middle of a page, as a failing SD card leaves them; with ``header``, over
    the page's header too, so that SQLite cannot read the page at all (random bytes in the cells alone
    may still parse, as other rows or as none)."""
    with path.open("r+b") as file:
        file.seek((page - 1) * page_size + (0 if header else page_size // 4))
        file.write(random.Random(16).randbytes(page_size // 2))
        file.flush()
        os.fsync(file.fileno())


def journal_with_reports(path: Path, count: int) -> None:
    journal = Journal.open(path)
    journal.write_now([entry(n, photo=n % 100 == 7) for n in range(1, count + 1)])
    journal.close()  # the last connection: everything is checkpointed into the file


# -- 1. a damaged journal at start ---------------------------------------------------------------------


async def test_a_damaged_header_is_set_aside_and_a_fresh_journal_takes_reports(tmp_path: Path) -> None:
    data = tmp_path / "data"
    journal_with_reports(data / "journal.sqlite3", 50)
    with (data / "journal.sqlite3").open("r+b") as file:
        file.write(os.urandom(100))
    async with running_relay(data) as relay:
        (aside,) = set_aside_journals(data / "journal.sqlite3")
        assert relay.journal.set_aside is not None and relay.journal.set_aside.path == aside
        assert aside.name.startswith("journal.sqlite3.damaged-20") and aside.name.endswith("Z")
        assert "relay salvage" in (relay.health_problem() or "")
        answers = await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 1)], replies=1)
        assert answers == [b"ON"]
        assert [report.document["time"] for report in relay.journal.read_after(0, 10)] == [devices.iso(1)]
    # The header alone is damaged: salvage rebuilds it (on a copy) and recovers every report.
    assert cli(["salvage", str(aside), "--data-dir", str(data)]) == 0
    journal = Journal.open(data / "journal.sqlite3")
    recovered = [report.document["attributes"] for report in journal.read_after(1, 100)]
    journal.close()
    assert len(recovered) == 50


def test_salvage_says_so_when_the_schema_page_itself_is_gone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    journal_with_reports(tmp_path / "old.sqlite3", 20)
    with (tmp_path / "old.sqlite3").open("r+b") as file:
        file.write(os.urandom(4096))  # the header and the whole schema page
    Journal.open(data / "journal.sqlite3").close()
    assert cli(["salvage", str(tmp_path / "old.sqlite3"), "--data-dir", str(data)]) == 1


def test_a_damaged_page_is_set_aside_and_salvage_recovers_every_readable_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    path = data / "journal.sqlite3"
    journal_with_reports(path, 1000)
    original = {row[0]: row[1:] for row in _rows(path)}
    pages = reports_leaf_pages(path)
    damage_page(path, pages[len(pages) // 2])

    journal = Journal.open(path, check_s=10)
    assert journal.set_aside is not None and "malformed" in journal.set_aside.damage
    aside = journal.set_aside.path
    assert journal.read_after(0, 10) == []  # a fresh journal
    journal.write_now([entry(5000)])
    journal.close()

    assert cli(["status", "--data-dir", str(data)]) == 0
    assert f"DAMAGED JOURNAL SET ASIDE: {aside}" in capsys.readouterr().out

    assert cli(["salvage", str(aside), "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    recovered = _rows(path)[1:]  # after the fresh journal's own report
    lost = 1000 - len(recovered)
    assert 0 < lost < 100  # one page's worth
    assert f"{len(recovered)} report(s) recovered (10 with a photo)" in out
    assert "could not be read" in out and "send them (again)" in out
    assert f"{lost} report(s) lost" in out
    # Each recovered report as it was: received_at, raw frame, payload, photo.
    for _seq, *columns in recovered:
        old_seq = int(columns[-1].decode().split("-")[1])  # raw frame "frame-<n>", stored as seq n
        assert tuple(columns) == original[old_seq]
    reopened = Journal.open(path)
    photos = [report for report in reopened.read_after(0, 2000) if report.media is not None]
    reopened.close()
    assert len(photos) == 10 and photos[0].media == b"\xff\xd8jpeg7"


def _rows(path: Path) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(
            "SELECT r.seq, r.device_id, r.received_at, r.payload, m.data, r.raw FROM reports r"
            " LEFT JOIN media m ON m.seq = r.seq ORDER BY r.seq"
        ).fetchall()
    finally:
        db.close()


# -- 2. a page that cannot be read while forwarding ------------------------------------------------------


async def test_a_page_damaged_while_forwarding_is_skipped_and_later_reports_arrive(
    tmp_path: Path, broker: Mosquitto
) -> None:
    broker.stop()
    subscriber: Subscriber | None = None
    try:
        async with running_relay(tmp_path / "data", broker.url) as relay:
            stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
            async with stream:
                for index in range(1, 601):
                    await stream.send_all(devices.gps103_position(IMEI, index))
                    assert await stream.receive_some(16) == b"ON"
            journal = relay.journal
            with journal._lock:
                journal._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            pages = reports_leaf_pages(journal.path)
            damage_page(journal.path, pages[len(pages) // 2], header=True)
            # A card's page goes bad long after it was last read; here it was read a moment ago, so the
            # reader's page cache is dropped, or it would serve the page as it was.
            journal._reader.execute("PRAGMA shrink_memory")
            later = [devices.gps103_position(IMEI, index) for index in range(601, 611)]
            assert await devices.tcp_exchange(relay.port, later, replies=1) == [b"ON"] * 10

            broker.start()
            subscriber = Subscriber(broker, "relay/#")
            wanted = {devices.iso(index) for index in range(601, 611)}
            await wait_until(
                lambda: wanted <= {report.get("time") for report in subscriber.reports()},
                timeout=30,
                what="the reports after the damaged page",
            )
            assert journal.unreadable and 0 < journal.stats.unreadable_reports < 100
            assert journal.stats.read_errors >= 1
            assert "could not be read" in (relay.health_problem() or "")
            (sink,) = relay.sinks
            await wait_until(lambda: sink.backlog() == 0, what="the sink's floor past the damage")
            delivered = {report.get("time") for report in subscriber.reports()}
            # Everything but the damaged page (rows SQLite could not read, or read as garbage).
            assert 610 - 60 <= len(delivered & {devices.iso(index) for index in range(1, 611)}) < 610
    finally:
        if subscriber is not None:
            subscriber.close()


# -- 3. a journal file or WAL deleted under the running relay --------------------------------------------


async def send_each(port: int, indexes: range) -> list[int]:
    """Each position on its own connection; the indexes acknowledged."""
    acked = []
    for index in indexes:
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(devices.gps103_position(IMEI, index))
                if await stream.receive_some(16) == b"ON":
                    acked.append(index)
    return acked


@pytest.mark.parametrize("victim", ["journal.sqlite3-wal", "journal.sqlite3"])
async def test_a_deleted_journal_file_is_noticed_and_acknowledged_reports_survive_sigkill(
    tmp_path: Path, victim: str
) -> None:
    relay = RelayProcess(tmp_path)
    relay.start()
    try:
        acked = await send_each(relay.port, range(1, 21))
        assert len(acked) == 20
        (relay.data / victim).unlink()
        acked += await send_each(relay.port, range(21, 61))
        relay.kill()
    finally:
        relay.kill()
    assert len(acked) >= 38  # at most the commit that noticed it was refused
    journal = Journal.open(relay.data / "journal.sqlite3")
    stored = {report.document["time"] for report in journal.read_after(0, 1000)}
    journal.close()
    assert sorted({devices.iso(index) for index in acked} - stored) == []
    log = relay.log.read_text()
    assert "event=journal_reopened" in log and "level=error" in log


# -- 5. files only the relay's user can read -----------------------------------------------------------


def test_the_data_dir_and_journal_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        journal = Journal.open(tmp_path / "var" / "data" / "journal.sqlite3")
        journal.write_now([entry(1)])
        files = [tmp_path / "var" / "data" / name for name in ("journal.sqlite3", "journal.sqlite3-wal")]
        files.append(tmp_path / "var" / "data" / "journal.sqlite3-shm")
        modes = {path.name: stat.S_IMODE(os.stat(path).st_mode) for path in files}
        directory = stat.S_IMODE(os.stat(tmp_path / "var" / "data").st_mode)
        journal.close()
    finally:
        os.umask(old)
    assert directory == 0o700
    assert modes == {name: 0o600 for name in modes}


# -- 6. clock jumps ------------------------------------------------------------------------------------


def test_a_clock_jump_either_way_expires_nothing_that_was_not_due(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    running = [1000.0]
    journal.monotonic = lambda: running[0]
    journal._opened_at = running[0]
    journal.write_now([entry(n) for n in range(1, 11)])  # received NOW + n seconds
    journal.write_now([Quarantined(b"?", "bad", "udp", "1.2.3.4:5", NOW)])
    thirty_days = timedelta(days=30)

    def prune(now: datetime) -> dict[str, int]:
        return journal.prune(delivered_up_to=10, retention=thirty_days, max_bytes=1 << 30, now=now)

    running[0] += 300  # five minutes later the wall clock jumps 31 days ahead
    assert prune(NOW + timedelta(days=31))["expired"] == 0
    running[0] += 300  # ... and back 40 days
    assert prune(NOW - timedelta(days=40))["expired"] == 0
    assert len(journal.read_after(0, 100)) == 10 and len(journal.quarantine_rows()) == 1
    running[0] += timedelta(hours=4).total_seconds()  # housekeeping goes on with a right clock
    assert prune(NOW + timedelta(hours=4))["expired"] == 0
    running[0] += timedelta(days=31).total_seconds()  # a month of running later: due by both clocks
    removed = prune(NOW + timedelta(days=31, hours=4))
    assert removed["expired"] == 10 and removed["quarantine"] == 1
    journal.close()


def test_retention_counts_running_time_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal.open(path)
    start = journal.monotonic()
    journal.monotonic = lambda: start + timedelta(days=20).total_seconds()
    journal.write_now([entry(1)])
    journal.prune(delivered_up_to=1, retention=timedelta(days=30), max_bytes=1 << 30, now=NOW)
    journal.close()
    # Restarted (monotonic time starts again), the clock says 31 days; only 20 + 5 days of running.
    journal = Journal.open(path)
    restart = journal.monotonic()
    journal.monotonic = lambda: restart + timedelta(days=5).total_seconds()
    later = NOW + timedelta(days=31)
    assert journal.prune(delivered_up_to=1, retention=timedelta(days=30), max_bytes=1 << 30, now=later)[
        "expired"
    ] == 0
    journal.monotonic = lambda: restart + timedelta(days=50).total_seconds()
    assert journal.prune(delivered_up_to=1, retention=timedelta(days=30), max_bytes=1 << 30, now=later)[
        "expired"
    ] == 1
    journal.close()
