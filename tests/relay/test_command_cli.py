"""``relay command send|list|cancel`` against a running relay: the CLI writes the journal beside it,
the relay picks the rows up within a second, sends, and the CLI lists the outcome."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trio

from tests.relay.harness import running_relay, wait_until

BN407 = "868683020419374"
LOGIN = f"##,imei:{BN407},A;".encode()


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", "command", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await trio.to_thread.run_sync(lambda: cli(data_dir, *args))


def listed(data_dir: Path) -> dict[str, dict]:
    result = cli(data_dir, "list", "--json")
    assert result.returncode == 0, result.stderr
    return {row["id"]: row for row in json.loads(result.stdout)}


async def test_commands_from_the_cli_reach_a_running_relays_device(tmp_path: Path) -> None:
    async with running_relay(tmp_path) as relay:
        async with await trio.open_tcp_stream("127.0.0.1", relay.port) as device:
            await device.send_all(LOGIN)
            assert await device.receive_some(100) == b"LOAD"
            await wait_until(lambda: relay.journal.devices.get(BN407) is not None, 5, "the device known")
            await trio.sleep(0.2)  # its row is written at once when new

            sent = await run_cli(tmp_path, "send", BN407, "positionPeriodic", "frequency=60", "--id", "cli-1")
            assert sent.returncode == 0, sent.stderr
            assert sent.stdout.startswith("cli-1 queued for 868683020419374")
            with trio.fail_after(5):  # picked up within a second
                assert await device.receive_some(100) == f"**,imei:{BN407},C,60s".encode()
            await wait_until(lambda: listed(tmp_path)["cli-1"]["state"] == "acknowledged", 5, "acknowledged")

        # Bad input gets its error and exit status 1.
        bad = await run_cli(tmp_path, "send", BN407, "positionPeriodic", "frequency=0")
        assert bad.returncode == 1 and "frequency 0 is outside 1..86400" in bad.stderr
        unknown = await run_cli(tmp_path, "send", "42", "rebootDevice")
        assert unknown.returncode == 1 and "unknown device '42'" in unknown.stderr
        # Queued for the device, now away, then cancelled: never sent, the relay reports it.
        queued = await run_cli(tmp_path, "send", BN407, "engineStop", "--id", "cli-2")
        assert queued.returncode == 0, queued.stderr
        cancelled = await run_cli(tmp_path, "cancel", "cli-2")
        assert cancelled.returncode == 0 and "cli-2 cancelled" in cancelled.stdout
        again = await run_cli(tmp_path, "cancel", "cli-2")
        assert again.returncode == 1 and "only a queued command" in again.stderr

        def reported() -> list[str]:
            return [
                r.document["attributes"]["command_state"]
                for r in relay.journal.read_after(0, 1000)
                if r.event == "commandResult" and r.document["attributes"]["command_id"] == "cli-2"
            ]

        # Queued and cancelled within one of the relay's looks, it reports the cancellation alone.
        await wait_until(lambda: reported()[-1:] == ["cancelled"], 5, "the cancellation reported")
        assert reported() in (["queued", "cancelled"], ["cancelled"])
        assert relay.journal.commands.pending(BN407) == []
    table = cli(tmp_path, "list", "--device", BN407)
    assert "cli-2" in table.stdout and "cancelled" in table.stdout
