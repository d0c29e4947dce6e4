"""The ``relay`` command as a user runs it: decode, status, run on the embedded defaults."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import devices, vectors
from tests.broker import free_tcp_udp_port


def relay(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.mark.parametrize("protocol", ["pt502", "gps103"])
def test_decode_reads_the_vector_files_as_they_are(protocol: str) -> None:
    result = relay("decode", "--jsonl", str(vectors.VECTORS / f"{protocol}.jsonl"))
    assert result.returncode == 0, result.stderr
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    rows = [json.loads(line) for line in (vectors.VECTORS / f"{protocol}.jsonl").read_text().splitlines()]
    assert len(outputs) == len(rows)
    checked = 0
    for number, (row, out) in enumerate(zip(rows, outputs, strict=True), start=1):
        if row["direction"] != "device_to_server":
            continue
        assert vectors.mismatches(vectors.Vector(number, row), out) == [], f"line {number}"
        checked += 1
    assert checked == len(vectors.load(protocol))


def test_decode_hex_text_and_stdin() -> None:
    login = relay("decode", "--text", "##,imei:868683020419374,A;")
    assert json.loads(login.stdout)["replies"] == ["4c4f4144"]
    gt06 = relay("decode", "--hex", "78780d01086471700328358100093f040d0a")
    assert json.loads(gt06.stdout)["protocol"] == "gt06"
    piped = relay("decode", "--jsonl", "-", stdin='{"encoding": "ascii", "frame": "hello"}\nnot json\n')
    first, second = (json.loads(line) for line in piped.stdout.splitlines())
    assert first["protocol"] is None and first["error"].startswith("no driver recognises")
    assert second["error"].startswith("line 2:")
    forced = relay("decode", "--protocol", "gps103", "--text", "imei:1,tracker,xx,,F,1,A,9999,N,1,E,1,1;")
    assert json.loads(forced.stdout)["error"].startswith("gps103: ")


def test_run_on_embedded_defaults_stores_only_and_status_shows_the_device(tmp_path: Path) -> None:
    port = free_tcp_udp_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "relay", "run", "--port", str(port)],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("event=store_only" in line for line in lines):
            lines.append(process.stderr.readline())
        log = "".join(lines)
        assert f"event=listening tcp=0.0.0.0:{port} udp=0.0.0.0:{port}" in log
        assert "event=store_only" in log
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(devices.gps103_login("868683020419374"))
            assert sock.recv(10) == b"LOAD"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    status = relay("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert [device["device_id"] for device in document["devices"]] == ["868683020419374"]
    assert document["sinks"] == [] and document["quarantine"] == 0
    table = relay("status", cwd=tmp_path).stdout
    assert "868683020419374" in table and "sinks: none (store only)" in table


def test_status_without_a_journal_says_so(tmp_path: Path) -> None:
    result = relay("status", "--data-dir", str(tmp_path / "nothing-here"))
    assert result.returncode == 1 and "no journal at" in result.stderr


def test_a_port_in_use_and_an_unusable_data_dir_are_clear_errors(tmp_path: Path) -> None:
    port = free_tcp_udp_port()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", port))
        taken.listen()
        result = relay("run", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 1
    assert f"error: cannot listen on 0.0.0.0:{port}: " in result.stderr and "in use" in result.stderr
    (tmp_path / "a-file").write_text("")
    result = relay("run", "--data-dir", str(tmp_path / "a-file" / "data"))
    assert result.returncode == 1 and "error: cannot open journal" in result.stderr


def test_export_prints_reports_as_json_lines(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from drivers import Report
    from relay.journal import Entry, Journal

    journal = Journal.open(tmp_path / "journal.sqlite3")
    early, late = datetime(2026, 11, 20, 8, tzinfo=UTC), datetime(2026, 11, 21, 8, tzinfo=UTC)
    journal.write_now(
        [
            Entry(Report(protocol="gps103", device_id=device, event="heartbeat"), b"x", "tcp", "p", when)
            for device, when in (("a", early), ("b", early), ("a", late))
        ]
    )
    journal.close()
    everything = relay("export", "--data-dir", str(tmp_path))
    assert [json.loads(line)["device_id"] for line in everything.stdout.splitlines()] == ["a", "b", "a"]
    recent = relay("export", "--data-dir", str(tmp_path), "--device", "a", "--since", "2026-11-21T00:00:00Z")
    (only,) = [json.loads(line) for line in recent.stdout.splitlines()]
    assert only["received_at"] == "2026-11-21T08:00:00Z" and only["id"].endswith("-3")
    bad = relay("export", "--data-dir", str(tmp_path), "--since", "yesterday")
    assert bad.returncode == 1 and "--since: expected an ISO 8601 time" in bad.stderr
