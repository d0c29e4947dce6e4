"""The SQLite journal: durable rows, group commit, quarantine, schema version, pruning."""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from drivers import Report
from relay.errors import JournalError
from relay.journal import (
    QUARANTINE_ROW_COST,
    SCHEMA_VERSION,
    CursorUpdate,
    Entry,
    Journal,
    Quarantined,
    QuarantineLimits,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def entry(device: str, index: int, *, event: str = "position", raw: bytes | None = b"frame") -> Entry:
    report = Report(
        protocol="gps103",
        device_id=device,
        event=event,
        time=NOW,
        valid=True,
        lat=1.0 + index / 1000,
        lon=2.0,
        speed_kmh=0.0,
    )
    return Entry(report, raw, "tcp", "127.0.0.1:4000", NOW + timedelta(seconds=index))


async def test_concurrent_appends_share_commits_and_keep_call_order(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        tickets = [await journal.submit([entry(f"dev{n % 7}", n)]) for n in range(500)]
        for ticket in tickets:
            await journal.wait_committed(ticket)
        nursery.cancel_scope.cancel()
    assert journal.stats.committed_reports == 500
    assert journal.stats.commits < 100  # grouped, not one fsync per report
    reports = journal.read_after(0, 1000)
    assert [report.seq for report in reports] == list(range(1, 501))
    assert [report.document["lat"] for report in reports] == [round(1.0 + n / 1000, 7) for n in range(500)]
    journal.close()


async def test_rows_survive_reopening_and_seqs_are_never_reused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal.open(path)
    journal.write_now(
        [entry("a", 1), entry("a", 2), Quarantined(b"\x00junk", "no driver", "tcp", "1.2.3.4:5", NOW)]
    )
    journal_id = journal.journal_id
    assert journal.quarantine_rows()[0]["raw"] == b"\x00junk"
    journal.prune(delivered_up_to=2, retention=timedelta(0), max_bytes=10**9, now=NOW + timedelta(days=1))
    journal.close()

    reopened = Journal.open(path)
    assert reopened.journal_id == journal_id
    assert reopened.read_after(0, 10) == []
    reopened.write_now([entry("a", 3)])
    (report,) = reopened.read_after(0, 10)
    assert report.seq == 3 and report.document["id"] == f"{journal_id}-3"
    assert reopened.quarantine_rows() == []  # past retention, like delivered reports
    assert reopened._reader.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert reopened._reader.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_raw_frames_and_login_frames_are_kept(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    journal.write_now([entry("a", 1, event="login", raw=b"##,imei:a,A;"), entry("a", 2, raw=None)])
    first, second = journal.read_after(0, 10)
    assert first.raw == b"##,imei:a,A;" and second.raw is None
    assert journal.login_frame("a") == ("gps103", b"##,imei:a,A;")
    journal.close()


def test_status_reports_devices_backlog_and_quarantine(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    journal.write_now([entry("a", 1), entry("b", 2), entry("a", 3)])
    journal.write_now([CursorUpdate("broker", 1, {"a": 1})])
    journal.write_now([Quarantined(b"?", "bad", "udp", "x", NOW)])
    journal.close()
    with Journal.open_read_only(tmp_path / "j.sqlite3") as reader:
        status = reader.status(["broker", "never-connected"], now=NOW + timedelta(seconds=10))
    assert {device["device_id"] for device in status["devices"]} == {"a", "b"}
    assert status["sinks"] == [
        {"sink": "broker", "pending": 2, "oldest_received_at": "2026-11-23T12:00:02Z", "oldest_age_s": 8.0},
        {
            "sink": "never-connected",
            "pending": 3,
            "oldest_received_at": "2026-11-23T12:00:01Z",
            "oldest_age_s": 9.0,
        },
    ]
    assert status["quarantine"] == 1 and status["reports"] == 3


def test_size_cap_drops_delivered_first_then_undelivered_counted(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    journal.write_now([entry(f"d{n % 5}", n, raw=b"x" * 2000) for n in range(3000)])
    size = journal.size_bytes()
    removed = journal.prune(delivered_up_to=1000, retention=timedelta(days=30), max_bytes=size // 2, now=NOW)
    assert removed["delivered_for_space"] == 1000
    assert removed["dropped_undelivered"] > 0 and journal.stats.dropped == removed["dropped_undelivered"]
    assert journal.size_bytes() <= size // 2
    remaining = journal.read_after(0, 5000)
    assert remaining[0].seq == 1001 + removed["dropped_undelivered"]
    journal.close()


def test_an_unusable_journal_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(JournalError, match="cannot open journal"):
        Journal.open(tmp_path / "file" / "j.sqlite3")
    (tmp_path / "garbage.sqlite3").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalError, match=r"garbage\.sqlite3"):
        Journal.open(tmp_path / "garbage.sqlite3")


def test_read_only_status_of_a_missing_journal(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal at"):
        Journal.open_read_only(tmp_path / "none.sqlite3")
    assert not (tmp_path / "none.sqlite3").exists()
    with pytest.raises(sqlite3.Error):
        sqlite3.connect(f"file:{tmp_path / 'none.sqlite3'}?mode=ro", uri=True).execute("select 1")


def test_one_peer_gets_its_quarantine_budget_and_no_more(tmp_path: Path) -> None:
    limits = QuarantineLimits(total_bytes=10_000_000, peer_bytes=100_000, frame_bytes=4096)
    journal = Journal.open(tmp_path / "j.sqlite3", quarantine_limits=limits)
    junk = [Quarantined(bytes(1000), "no driver", "udp", f"6.6.6.6:{port}", NOW) for port in range(3000)]
    journal.write_now(junk)
    kept = len(journal.quarantine_rows(limit=10_000))
    assert kept == 100_000 // (1000 + len("no driver") + QUARANTINE_ROW_COST)
    assert journal.stats.quarantine_dropped_peer == 3000 - kept
    journal.write_now([Quarantined(b"x", "no driver", "tcp", "7.7.7.7:1", NOW)])  # another peer: kept
    assert len(journal.quarantine_rows(limit=10_000)) == kept + 1
    journal.close()


def test_the_quarantine_as_a_whole_stays_within_its_budget(tmp_path: Path) -> None:
    limits = QuarantineLimits(total_bytes=200_000, peer_bytes=100_000, frame_bytes=4096)
    journal = Journal.open(tmp_path / "j.sqlite3", quarantine_limits=limits)
    peers = [f"10.0.{n // 250}.{n % 250}:9" for n in range(500)]
    junk = [Quarantined(bytes(4000), "no driver", "udp", peer, NOW) for peer in peers]
    journal.write_now(junk)
    stored = journal._reader.execute("SELECT sum(length(raw)) FROM quarantine").fetchone()[0]
    assert stored <= 200_000 and journal.stats.quarantine_dropped_total > 400
    journal.write_now([entry("a", 1)])  # reports are never refused for the quarantine's sake
    assert len(journal.read_after(0, 10)) == 1
    journal.close()


def test_a_long_bad_frame_keeps_its_head_and_says_how_long_it_was(tmp_path: Path) -> None:
    limits = QuarantineLimits(frame_bytes=1024)
    journal = Journal.open(tmp_path / "j.sqlite3", quarantine_limits=limits)
    journal.write_now([Quarantined(b"ab" * 100_000, "malformed", "tcp", "1.2.3.4:5", NOW)])
    (row,) = journal.quarantine_rows()
    assert row["raw"] == (b"ab" * 512) and "first 1024 of 200000 bytes kept" in row["reason"]
    journal.close()


def test_the_budget_survives_a_restart_and_is_freed_by_pruning(tmp_path: Path) -> None:
    limits = QuarantineLimits(peer_bytes=20_000)
    path = tmp_path / "j.sqlite3"
    journal = Journal.open(path, quarantine_limits=limits)
    journal.write_now([Quarantined(bytes(1000), "x", "udp", "6.6.6.6:1", NOW) for _ in range(100)])
    kept = len(journal.quarantine_rows(limit=1000))
    journal.close()
    journal = Journal.open(path, quarantine_limits=limits)
    journal.write_now([Quarantined(bytes(1000), "x", "udp", "6.6.6.6:2", NOW)])
    assert len(journal.quarantine_rows(limit=1000)) == kept  # still full after the restart
    later = NOW + timedelta(days=2)
    started = journal.monotonic()
    journal.monotonic = lambda: started + timedelta(days=2).total_seconds()  # and two days of running
    journal.prune(delivered_up_to=0, retention=timedelta(days=1), max_bytes=1 << 30, now=later)
    journal.write_now([Quarantined(bytes(1000), "x", "udp", "6.6.6.6:3", later)])
    assert len(journal.quarantine_rows(limit=1000)) == 1
    journal.close()


def test_forgotten_devices_bound_memory_and_the_devices_table(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3", max_devices=50)
    journal.write_now([entry(f"dev-{n}", n) for n in range(500)])
    assert len(journal.devices) == 50 and journal.stats.devices_forgotten == 450
    removed = journal.prune(delivered_up_to=0, retention=timedelta(days=30), max_bytes=1 << 30, now=NOW)
    assert removed["devices_forgotten"] == 450
    kept = {row[0] for row in journal._reader.execute("SELECT device_id FROM devices")}
    assert len(kept) == 50
    journal.close()


def test_stored_reports_serialise_without_reparsing_and_agree_with_their_document(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3", site="depot-1")
    photo = Report(
        protocol="pt502", device_id="d", event="photo", media=b"\xff\xd8jpeg", media_type="image/jpeg"
    )
    journal.write_now([entry("a", 1), Entry(photo, None, "tcp", "p", NOW)])
    position, picture = journal.read_after(0, 10)
    assert json.loads(position.json_bytes()) == position.document
    assert position.document["id"] == f"{journal.journal_id}-1" and position.document["site"] == "depot-1"
    assert position.has_position and not picture.has_position
    sent = json.loads(picture.json_bytes())
    assert base64.b64decode(sent["media"]["base64"]) == b"\xff\xd8jpeg" and sent["media"]["bytes"] == 6
    journal.close()


async def test_commits_are_spaced_by_the_commit_interval(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3", commit_interval_s=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        await journal.append([entry("a", 0)])  # the first commit goes at once
        started = trio.current_time()
        tickets = []
        for n in range(1, 21):  # 20 reports over ~0.2 s: light load
            tickets.append(await journal.submit([entry("a", n)]))
            await trio.sleep(0.01)
        for ticket in tickets:
            await journal.wait_committed(ticket)
        waited = trio.current_time() - started
        nursery.cancel_scope.cancel()
    assert journal.stats.commits == 2  # one fsync for the twenty
    assert 0.4 <= waited < 2.0
    journal.close()


def test_the_schema_version_is_the_number_of_migrations_applied(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    journal.close()
    db = sqlite3.connect(tmp_path / "j.sqlite3")
    applied = db.execute("SELECT count(*) FROM _sqlite_migrations WHERE migration_set = ?", ("relay",))
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == applied.fetchone()[0] >= 3
    db.close()


def test_a_read_only_open_reads_a_journal_in_use_and_writes_nothing(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    journal.write_now([entry("a", 1), entry("b", 2)])
    files = [tmp_path / "j.sqlite3", tmp_path / "j.sqlite3-wal"]  # readers mark the -shm, never these
    before = [path.read_bytes() for path in files]
    with Journal.open_read_only(tmp_path / "j.sqlite3") as reader:
        status = reader.status(["broker"], now=NOW)
        assert status["reports"] == 2 and status["sinks"][0]["pending"] == 2
        assert reader.dead_letters() == []
    assert [path.read_bytes() for path in files] == before
    journal.close()



async def test_a_quarantine_row_is_charged_once_also_when_the_writers_queue_is_full(tmp_path: Path) -> None:
    from relay.journal._journal import _Ticket

    journal = Journal.open(tmp_path / "j.sqlite3")
    while True:  # a burst has filled the writer's queue
        try:
            journal._send.send_nowait(_Ticket([]))
        except trio.WouldBlock:
            break
    row = Quarantined(b"x" * 1000, "bad", "tcp", "10.0.0.1:5000", NOW, "gps103")
    before = journal.quarantine_budget.total
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        await journal.append([row])
        nursery.cancel_scope.cancel()
    assert journal.quarantine_budget.total - before == 1000 + len("bad") + QUARANTINE_ROW_COST
    journal.close()
