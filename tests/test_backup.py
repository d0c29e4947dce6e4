"""`relay backup` and `relay restore`: an online consistent copy of the journal, and putting one back."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pytest
import trio

from relay.cli._main import main
from relay.journal import _backup as backup_module
from relay.journal._backup import BackupError, backup, restore
from tests.devices import gps103_login, gps103_position, iso, tcp_exchange
from tests.relay.harness import running_relay

IMEIS = ["868683020410001", "868683020410002", "868683020410003"]


def stored(database: Path) -> set[tuple[str, str]]:
    """(device id, report time) of every position report in the journal or backup at ``database``."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT device_id, payload FROM reports WHERE event = 'position'").fetchall()
    finally:
        db.close()
    return {(device, json.loads(payload)["time"]) for device, payload in rows}


async def send_positions(port: int, imei: str, indexes: range, acked: list[tuple[str, str]]) -> None:
    """Log in and send one position per index, recording each once the relay acknowledged it."""
    await tcp_exchange(port, [gps103_login(imei)], replies=2)
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        for index in indexes:
            await stream.send_all(gps103_position(imei, index))
            assert await stream.receive_some(16) == b"ON"
            acked.append((imei, iso(index)))


async def journal_with_reports(data_dir: Path, count: int) -> list[tuple[str, str]]:
    acked: list[tuple[str, str]] = []
    async with running_relay(data_dir) as running:
        await send_positions(running.port, IMEIS[0], range(count), acked)
    return acked


async def test_a_backup_taken_while_the_relay_commits_has_every_report_acknowledged_before_it(tmp_path):
    target = tmp_path / "backup.sqlite3"
    acked: list[tuple[str, str]] = []
    async with running_relay(tmp_path / "data") as running:
        async with trio.open_nursery() as nursery:
            for imei in IMEIS:
                nursery.start_soon(send_positions, running.port, imei, range(100), acked)
        # Devices keep reporting (and being acknowledged, i.e. committed) all through the backup.
        async with trio.open_nursery() as nursery:
            for imei in IMEIS:
                nursery.start_soon(send_positions, running.port, imei, range(1000, 100_000), acked)
            while len(acked) < 330:
                await trio.sleep(0.01)
            before = set(acked)
            acked_at_step: list[int] = []

            def progress(done: int, total: int) -> None:
                acked_at_step.append(len(acked))
                time.sleep(0.003)  # a slow SD card: many commits land between two steps

            pages = await trio.to_thread.run_sync(
                partial(backup, running.config.database, target, progress=progress, pages_per_step=1)
            )
            nursery.cancel_scope.cancel()

    assert acked_at_step[-1] - acked_at_step[0] > 20, "the relay committed reports during the backup"
    assert pages == len(acked_at_step) > 10
    in_backup = stored(target)
    assert before <= in_backup
    db = sqlite3.connect(target)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    seqs = [seq for (seq,) in db.execute("SELECT seq FROM reports ORDER BY seq")]
    assert seqs == list(range(1, len(seqs) + 1)), "no report is missing in the middle"
    assert db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'reports'").fetchone() == (seqs[-1],)
    db.close()
    assert target.read_bytes()[18:20] == b"\x01\x01", "a single file, not in WAL mode"
    assert target.stat().st_mode & 0o777 == 0o600


async def test_backup_refuses_to_overwrite_without_force_and_shows_its_progress(tmp_path, capsys):
    await journal_with_reports(tmp_path / "data", 3)
    target = tmp_path / "backup.sqlite3"
    target.write_text("yesterday's backup")

    assert main(["backup", "--data-dir", str(tmp_path / "data"), str(target)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert target.read_text() == "yesterday's backup"

    assert main(["backup", "--data-dir", str(tmp_path / "data"), "--force", str(target)]) == 0
    err = capsys.readouterr().err
    assert "backup: " in err and " pages" in err
    assert len(stored(target)) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no temporary file left"


async def test_restore_puts_the_backup_back_and_keeps_the_replaced_journal(tmp_path, capsys):
    data = tmp_path / "data"
    journal = data / "journal.sqlite3"
    early = await journal_with_reports(data, 5)
    backup(journal, tmp_path / "backup.sqlite3")
    old_id = sqlite3.connect(journal).execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
    acked: list[tuple[str, str]] = []
    async with running_relay(data) as running:
        await send_positions(running.port, IMEIS[1], range(4), acked)

    assert main(["restore", "--data-dir", str(data), str(tmp_path / "backup.sqlite3")]) == 0
    out = capsys.readouterr()
    assert "6 reports" in out.out  # 5 positions and the login

    assert stored(journal) == set(early)
    aside = [p for p in data.iterdir() if p.name.startswith("journal.sqlite3.before-restore-")]
    assert len(aside) == 1 and str(aside[0]) in out.err
    assert stored(aside[0]) == set(early) | set(acked)
    assert not Path(f"{journal}-wal").exists(), "no WAL of the replaced journal applies to the restored one"
    new_id = sqlite3.connect(journal).execute("SELECT value FROM meta WHERE key = 'journal_id'").fetchone()
    assert new_id != old_id, "reports stored after the restore get ids never used before"

    # The relay runs on the restored journal and stores new reports after the restored ones.
    more: list[tuple[str, str]] = []
    async with running_relay(data) as running:
        await send_positions(running.port, IMEIS[2], range(2), more)
    assert stored(journal) == set(early) | set(more)


async def test_restore_refuses_a_file_that_is_not_a_journal(tmp_path):
    data = tmp_path / "data"
    await journal_with_reports(data, 2)
    before = (data / "journal.sqlite3").read_bytes()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    other = tmp_path / "other.sqlite3"
    sqlite3.connect(other).execute("CREATE TABLE reports (seq INTEGER)").connection.commit()

    with pytest.raises(BackupError, match="not a relay journal \\(not an SQLite database\\)"):
        restore(text, data / "journal.sqlite3")
    with pytest.raises(BackupError, match="not a relay journal \\(no meta table"):
        restore(other, data / "journal.sqlite3")

    assert (data / "journal.sqlite3").read_bytes() == before
    assert sorted(p.name for p in data.iterdir()) == ["journal-reserve", "journal.sqlite3"]


async def test_restore_refuses_a_corrupt_backup(tmp_path):
    data = tmp_path / "data"
    await journal_with_reports(data, 200)
    good = tmp_path / "good.sqlite3"
    backup(data / "journal.sqlite3", good)
    db = sqlite3.connect(good)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'reports'").fetchone()
    db.close()
    corrupt = tmp_path / "corrupt.sqlite3"
    raw = bytearray(good.read_bytes())
    start = (root - 1) * page_size
    raw[start : start + 12] = b"\x00" * 12  # the reports table's root page: no longer a b-tree page
    corrupt.write_bytes(bytes(raw))
    files = sorted(p.name for p in data.iterdir())

    with pytest.raises(BackupError, match=r"corrupt\.sqlite3 is damaged: "):
        restore(corrupt, data / "journal.sqlite3")
    assert sorted(p.name for p in data.iterdir()) == files


async def test_restore_refuses_a_journal_of_a_newer_schema(tmp_path):
    data = tmp_path / "data"
    await journal_with_reports(data, 1)
    newer = tmp_path / "newer.sqlite3"
    backup(data / "journal.sqlite3", newer)
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version={backup_module.SCHEMA_VERSION + 1}")
    db.close()

    with pytest.raises(BackupError, match="newer than this relay's"):
        restore(newer, data / "journal.sqlite3")


async def test_restore_refuses_while_the_relay_runs_on_the_journal(tmp_path):
    data = tmp_path / "data"
    await journal_with_reports(data, 1)
    backup(data / "journal.sqlite3", tmp_path / "backup.sqlite3")
    async with running_relay(data):
        with pytest.raises(BackupError, match=f"open in process {os.getpid()}"):
            restore(tmp_path / "backup.sqlite3", data / "journal.sqlite3")
    assert sorted(p.name for p in data.iterdir()) == ["journal-reserve", "journal.sqlite3"]


async def test_restore_sees_a_journal_open_in_a_process_it_cannot_inspect(tmp_path, monkeypatch):
    """Another user's relay hides its open files; its lock on the journal's -shm still shows."""
    data = tmp_path / "data"
    await journal_with_reports(data, 1)
    backup(data / "journal.sqlite3", tmp_path / "backup.sqlite3")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1]);"
            " db.execute('PRAGMA journal_mode=WAL'); db.execute('SELECT count(*) FROM reports').fetchone();"
            " print('open', flush=True); time.sleep(60)",
            str(data / "journal.sqlite3"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"open\n"
        monkeypatch.setattr(backup_module, "_processes_holding", lambda names: [])
        with pytest.raises(BackupError, match="open in another process"):
            restore(tmp_path / "backup.sqlite3", data / "journal.sqlite3")
    finally:
        holder.kill()
        holder.wait()
    restore(tmp_path / "backup.sqlite3", data / "journal.sqlite3")  # once it is gone
