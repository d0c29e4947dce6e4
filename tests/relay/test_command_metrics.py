"""The command queue in /metrics, /status and ``relay status``, over the real endpoint: changes of state
counted by state, way in and way out; the commands waiting and the oldest one's age."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import trio

from tests.relay.harness import running_relay, wait_until
from tests.relay.test_http_commands import http
from tests.relay.test_status_http import metrics, sample

BN407 = "868683020419374"
LOGIN = f"##,imei:{BN407},A;".encode()


def relay_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


async def test_commands_are_counted_and_the_queue_shown(tmp_path: Path) -> None:
    devices = [{"id": BN407, "protocol": "gps103"}]
    async with running_relay(tmp_path, status={"listen": "127.0.0.1:0"}, devices=devices) as relay:
        port, path = relay.status_port, f"/api/devices/{BN407}/commands"
        assert port
        async with await trio.open_tcp_stream("127.0.0.1", relay.port) as device:  # seen once, then away
            await device.send_all(LOGIN)
            assert await device.receive_some(100) == b"LOAD"
        await trio.sleep(0.3)  # its row (the CLI's registry) is written at once when new
        periodic = {"id": "h1", "type": "positionPeriodic", "params": {"frequency": 60}}
        assert (await http(port, "POST", path, periodic))[0] == 202
        bad = {"type": "positionPeriodic", "params": {"frequency": 0}}
        assert (await http(port, "POST", path, bad))[0] == 400
        for args in (("send", BN407, "alarmArm", "--id", "c1"),
                     ("send", BN407, "positionSingle", "--id", "c2"), ("cancel", "c2")):  # fmt: skip
            done = await trio.to_thread.run_sync(lambda args=args: relay_cli(tmp_path, "command", *args))
            assert done.returncode == 0, done.stderr
        changes = relay.journal.commands.stats.changes
        await wait_until(lambda: changes[("cancelled", "cli", "data")] == 1, 10, "the CLI's rows taken")
        assert relay.journal.commands.get("c1") is not None
        await trio.sleep(1.1)  # the oldest waits more than a second

        found = await metrics(port)
        assert sample(found, "relay_commands_total", state="queued", source="http", via="data") == 1
        # c2 was cancelled before or after the relay's look: counted queued then, or only cancelled.
        assert sample(found, "relay_commands_total", state="queued", source="cli", via="data") in (1, 2)
        assert sample(found, "relay_commands_total", state="cancelled", source="cli", via="data") == 1
        assert sample(found, "relay_commands_refused_total", source="http") == 1
        assert sample(found, "relay_commands_queued") == 2
        assert sample(found, "relay_commands_in_flight") == 0
        assert 1.0 <= sample(found, "relay_commands_oldest_queued_seconds") < 60

        await trio.sleep(2.1)  # past the /status read's cache
        code, body = await http(port, "GET", "/status")
        assert code == 200
        commands = body["commands"]
        assert (commands["queued"], commands["sent"]) == (2, 0)
        assert commands["oldest_age_s"] >= 1.0 and commands["oldest_queued_at"].endswith("Z")
        text = await trio.to_thread.run_sync(lambda: relay_cli(tmp_path, "status"))
        assert "commands: 2 queued, the oldest " in text.stdout, text.stdout + text.stderr
        as_json = await trio.to_thread.run_sync(lambda: relay_cli(tmp_path, "status", "--json"))
        assert json.loads(as_json.stdout)["commands"]["queued"] == 2

        # The device connects: both go, in order; a Coban acknowledges nothing, so written is acknowledged.
        async with await trio.open_tcp_stream("127.0.0.1", relay.port) as device:
            await device.send_all(LOGIN)
            await wait_until(lambda: not relay.journal.commands.pending(), 10, "both commands sent")
        found = await metrics(port)
        for source in ("http", "cli"):
            assert sample(found, "relay_commands_total", state="sent", source=source, via="data") == 1
            assert sample(found, "relay_commands_total", state="acknowledged", source=source, via="data") == 1
        assert sample(found, "relay_commands_queued") == 0
        assert sample(found, "relay_commands_oldest_queued_seconds") == 0
