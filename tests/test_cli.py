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
    outputs = [json.loads(line) for line in result.stdout.splitlines()]
    rows = [json.loads(line) for line in (vectors.VECTORS / f"{protocol}.jsonl").read_text().splitlines()]
    assert len(outputs) == len(rows)
    # The command rows (server_to_device) are no device's frames: they fail, and the exit status says so.
    failed = [out for out in outputs if out["error"] is not None]
    assert failed and result.returncode == 1 and "Traceback" not in result.stderr
    summary = f'relay decode: {len(failed)} of {len(rows)} input(s) failed (see their "error")\n'
    assert result.stderr == summary
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
    assert first["protocol"] is None and first["error"].startswith("<stdin>:1: no driver recognises")
    assert second["error"].startswith("<stdin>:2: not JSON")
    forced = relay("decode", "--protocol", "gps103", "--text", "imei:1,tracker,xx,,F,1,A,9999,N,1,E,1,1;")
    assert json.loads(forced.stdout)["error"].startswith("gps103: ")


def test_decode_says_what_is_wrong_with_each_bad_line_and_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "inputs.jsonl"
    login = '{"encoding": "ascii", "frame": "##,imei:868683020419374,A;"}'
    bad = [
        ("[1, 2]", "expected a JSON object, found a list"),
        ('{"frame": "78zz"}', "frame: not hex"),
        ('{"frames": ["7878", 5]}', "frames[1]: expected a string, found 5"),
        ("{not json", "not JSON"),
        ('{"frame": "00", "transport": "tcpx"}', "transport: expected one of tcp, udp, http, sms, serial"),
        ('{"frame": "00", "protocol": "gt07"}', "protocol: expected 'auto' or one of "),
        ('{"encoding": "ascii"}', 'expected a "frame" string or a "frames" list, found neither'),
    ]
    path.write_text("\n".join([login, *(line for line, _ in bad), login]) + "\n")
    result = relay("decode", "--jsonl", str(path))
    assert result.returncode == 1
    summary = f'relay decode: {len(bad)} of {len(bad) + 2} input(s) failed (see their "error")\n'
    assert result.stderr == summary
    first, *middle, last = (json.loads(line) for line in result.stdout.splitlines())
    assert first["replies"] == last["replies"] == ["4c4f4144"] and first["error"] is last["error"] is None
    for number, ((_, message), out) in enumerate(zip(bad, middle, strict=True), start=2):
        assert out["error"].startswith(f"{path}:{number}: {message}"), out["error"]
        assert out["reports"] == [] and out["replies"] == []


def test_decode_exit_status_missing_file_and_usage_errors(tmp_path: Path) -> None:
    good = relay("decode", "--text", "##,imei:868683020419374,A;")
    assert good.returncode == 0 and good.stderr == ""
    missing = relay("decode", "--jsonl", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr == f"error: {tmp_path / 'nope.jsonl'}: cannot read: No such file or directory\n"
    bad_hex = relay("decode", "--hex", "7878zz")
    assert bad_hex.returncode == 1 and json.loads(bad_hex.stdout)["error"].startswith("--hex: not hex")
    unknown = relay("decode", "--protocol", "gt07", "--hex", "7878")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.startswith("error: --protocol: expected 'auto' or one of ")
    assert relay("decode", "--transport", "carrier-pigeon", "--hex", "7878").returncode == 2
    assert relay("decode").returncode == 2


def test_decode_takes_each_lines_protocol_and_transport_unless_the_options_say_otherwise() -> None:
    line = '{"encoding": "ascii", "frame": "hello", "protocol": "gps103", "transport": "udp"}\n'
    forced = json.loads(relay("decode", "--jsonl", "-", stdin=line).stdout)
    assert forced["protocol"] == "gps103" and forced["error"].startswith("<stdin>:1: gps103: ")
    sniffed = json.loads(relay("decode", "--protocol", "auto", "--jsonl", "-", stdin=line).stdout)
    assert sniffed["protocol"] is None and "no driver recognises" in sniffed["error"]
    login = '{"encoding": "ascii", "frame": "##,imei:868683020419374,A;", "transport": "sms"}\n'
    assert "sms" in json.loads(relay("decode", "--jsonl", "-", stdin=login).stdout)
    over_tcp = json.loads(relay("decode", "--transport", "tcp", "--jsonl", "-", stdin=login).stdout)
    assert "sms" not in over_tcp and over_tcp["replies"] == ["4c4f4144"]


def test_decode_fills_device_id_from_the_session_as_the_relay_does(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataclasses import replace

    import drivers
    from relay.cli._main import main

    # A driver that leaves the device id of its positions to the session (as a relay-filled protocol would).
    session_type = type(drivers.get("gps103").new_session(drivers.Transport.TCP))
    decode = session_type.decode

    def anonymous_positions(self: drivers.Session, frame: bytes, *, now: object) -> drivers.Decoded:
        result = decode(self, frame, now=now)
        reports = tuple(
            report if report.event == "login" else replace(report, device_id=None)
            for report in result.reports
        )
        return replace(result, reports=reports)

    monkeypatch.setattr(session_type, "decode", anonymous_positions)
    login, position = devices.gps103_login("868683020419374"), devices.gps103_position("868683020419374", 1)
    line = json.dumps({"encoding": "ascii", "frames": [login.decode(), position.decode()]})
    monkeypatch.setattr(sys, "stdin", _BinaryStdin(line.encode() + b"\n"))
    assert main(["decode", "--jsonl", "-"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(report["event"], report["device_id"]) for report in out["reports"]] == [
        ("login", "868683020419374"),
        ("position", "868683020419374"),
    ]


class _BinaryStdin:
    def __init__(self, data: bytes) -> None:
        import io

        self.buffer = io.BytesIO(data)


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


def _startup_failure(result: subprocess.CompletedProcess[str]) -> str:
    """The reason of a fatal start-up error: every stderr line is logfmt, one is the error."""
    lines = result.stderr.splitlines()
    assert result.returncode == 1 and lines and all(line.startswith("ts=") for line in lines), result.stderr
    (error,) = [line for line in lines if " level=error " in line]
    assert " event=startup_failed reason=" in error and "exception=" not in error
    return error.split(" reason=", 1)[1].strip('"')


def test_a_port_in_use_an_unusable_data_dir_and_a_bad_config_are_one_logfmt_line(tmp_path: Path) -> None:
    port = free_tcp_udp_port()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", port))
        taken.listen()
        result = relay("run", "--port", str(port), "--data-dir", str(tmp_path / "data"))
    reason = _startup_failure(result)
    assert reason.startswith(f"cannot listen on 0.0.0.0:{port}: ") and "in use" in reason
    (tmp_path / "a-file").write_text("")
    result = relay("run", "--data-dir", str(tmp_path / "a-file" / "data"))
    assert _startup_failure(result).startswith("cannot open journal")
    config = tmp_path / "relay.toml"
    config.write_text("[listen]\nport = 99999\n")
    reason = _startup_failure(relay("run", "--config", str(config)))
    assert reason.startswith(f"{config}: listen.port: expected ")
    reason = _startup_failure(relay("run", "--config", str(tmp_path / "missing.toml")))
    assert str(tmp_path / "missing.toml") in reason


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


def _journal_with_a_letter_and_a_quarantine_row(data_dir: Path) -> tuple[int, int]:
    """(dead letter id, quarantine row id) of a journal with one of each, the letter sink "central"'s."""
    from datetime import UTC, datetime

    from relay.journal import Journal, Quarantined

    journal = Journal.open(data_dir / "journal.sqlite3")
    try:
        letter = journal.park("central", [1], status=400, answer="no", body=b"[]", content_type="json")
        received = datetime(2026, 11, 20, 8, tzinfo=UTC)
        journal.write_now([Quarantined(b"\x16\x03garbage", "no driver", "tcp", "10.0.0.8:1", received)])
        (row,) = journal.quarantine_rows()
    finally:
        journal.close()
    return letter, row["id"]


def test_unknown_ids_and_sinks_are_errors_that_change_nothing(tmp_path: Path) -> None:
    letter, quarantined = _journal_with_a_letter_and_a_quarantine_row(tmp_path)
    where = ("--data-dir", str(tmp_path))
    nope = "error: no sink 'NOPE' in the config or the journal (known sinks: central)"
    cases = [
        (("requeue", "--all", "--sink", "NOPE"), nope),
        (("requeue", "999"), "error: no dead letter with id 999 (see relay dead-letters)"),
        (("requeue", "--sink", "NOPE", str(letter)), "error: no sink 'NOPE'"),
        (("dead-letters", "--sink", "NOPE"), "error: no sink 'NOPE'"),
        (("quarantine", "retry", "999", str(quarantined)), "error: no quarantine row with id 999"),
    ]
    for command, message in cases:
        result = relay(*command, *where)
        assert result.returncode == 1 and result.stderr.startswith(message), (command, result.stderr)
    listing = json.loads(relay("dead-letters", "--sink", "central", "--json", *where).stdout)
    assert [(row["id"], row["state"]) for row in listing] == [(letter, "parked")]
    rows = relay("quarantine", "list", "--json", *where)
    assert [row["id"] for row in json.loads(rows.stdout)] == [quarantined]  # not retried either
    requeued = relay("requeue", "--sink", "central", str(letter), *where)
    assert requeued.returncode == 0 and requeued.stdout == "1 dead letter requeued\n"
    again = relay("requeue", str(letter), *where)
    assert again.returncode == 1 and again.stderr == f"dead letter {letter} is already requeued\n"


def test_progress_is_a_counter_line_on_a_terminal_and_nothing_elsewhere() -> None:
    import io

    from relay.cli._progress import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress("export", "reports", stream=stream)
        assert list(progress.counting(range(3))) == [0, 1, 2]
    assert terminal.getvalue().startswith("\rexport: 1 reports")
    assert terminal.getvalue().endswith("\rexport: 3 reports\n") and pipe.getvalue() == ""
    retry = Progress("retry", "rows", total=400, stream=terminal)
    retry.advance(200)
    retry.finish()
    assert terminal.getvalue().endswith("\rretry: 200/400 rows\n")


def test_old_flag_names_still_work_for_a_release_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from relay.cli._main import _parser

    provision = ["provision", "coban", "--to", "+1", "--server", "relay.example.com", "--apn", "internet"]
    assert _parser().parse_args([*provision, "--server-port", "9000"]).server_port == 9000
    assert capsys.readouterr().err == ""
    assert _parser().parse_args([*provision, "--port", "9001"]).server_port == 9001
    assert "warning: --port is deprecated here" in capsys.readouterr().err
    modem = str(tmp_path / "no-modem")
    result = relay("sms", "send", "--to", "+1", "--port", modem, "hello")
    assert result.returncode == 1 and "cannot open modem port" in result.stderr
    assert result.stderr.startswith(
        "warning: --port is deprecated here and will be removed in the next release; use --modem\n"
    )
    result = relay("sms", "send", "--to", "+1", "--modem", modem, "hello")
    assert result.returncode == 1 and "warning" not in result.stderr


def test_check_config_takes_the_file_as_every_command_does(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(f'[relay]\ndata_dir = "{tmp_path}"\n')
    for args in ([str(config)], ["--config", str(config)]):
        result = relay("check-config", *args)
        assert result.returncode == 0 and result.stdout.startswith(f"{config}: ok"), result.stderr
    assert relay("check-config").returncode == 2
