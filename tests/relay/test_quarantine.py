"""Quarantined bytes re-decoded later: what decodes becomes reports and leaves, the rest stays."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from drivers.sms_pdu import encode_deliver
from relay.journal import Journal, Quarantined

RECEIVED = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
COBAN_TEXT = "lat:14.632742\nlong:121.001790\nspeed:0.00\nT:26/11/23 16:21\nhttp://maps.google.com/maps?q=14.632742,121.001790"


def relay(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relay", *args], capture_output=True, text=True, timeout=60)


def test_retry_moves_decodable_rows_into_the_journal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    journal = Journal.open(data / "journal.sqlite3")
    pdu = encode_deliver("+639171234567", COBAN_TEXT, timestamp=RECEIVED)
    journal.write_now(
        [
            Quarantined(
                b"imei:868683020419374,tracker,261120100000,,F,080000.000,A,5101.1234,N,00007.0001,W,1,2;",
                "gps103: driver bug (fixed since)",
                "tcp",
                "10.0.0.7:5000",
                RECEIVED,
                "gps103",
            ),
            Quarantined(
                b"\x16\x03\x01 still garbage",
                "no driver recognises this stream",
                "tcp",
                "10.0.0.8:1",
                RECEIVED,
            ),
            Quarantined(
                pdu.hex().encode(),
                "sender +639171234567 is not in [modem.senders]",
                "sms",
                "sms:+639171234567",
                RECEIVED,
            ),
        ]
    )
    journal.close()
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[relay]\ndata_dir = "{data}"\n[modem]\nport = "/dev/null"\n'
        '[modem.senders]\n"+639171234567" = "865456055519122"\n'
    )

    listing = relay("quarantine", "list", "--config", str(config))
    assert (
        listing.returncode == 0
        and "3 row(s)" in listing.stdout
        and "no driver recognises this stream" in listing.stdout
    )

    result = relay("quarantine", "retry", "--config", str(config), "--json")
    assert result.returncode == 0, result.stderr
    outcomes = {outcome["quarantine_id"]: outcome for outcome in json.loads(result.stdout)}
    assert outcomes[1]["reports"] == 1 and outcomes[1]["error"] is None
    assert outcomes[2]["error"] and outcomes[2]["reports"] == 0
    assert outcomes[3]["reports"] == 1

    journal = Journal.open(data / "journal.sqlite3")
    reports = journal.read_after(0, 10)
    assert [report.device_id for report in reports] == ["868683020419374", "865456055519122"]
    assert [report.transport for report in reports] == ["tcp", "sms"]
    assert all(report.document["received_at"] == "2026-11-20T08:00:00Z" for report in reports)
    assert [row["id"] for row in journal.quarantine_rows()] == [2]
    journal.close()
