"""The status endpoint: /healthz, /metrics and /status over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from tests import devices
from tests.relay.harness import running_relay


async def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"{method} {path} HTTP/1.1\r\nHost: relay\r\n\r\n".encode())
        response = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_health_metrics_and_status(tmp_path: Path) -> None:
    async with running_relay(tmp_path, status={"listen": "127.0.0.1:0"}) as relay:
        assert relay.status_port
        await devices.tcp_exchange(relay.port, [devices.gps103_login("868683020419374")], replies=2)
        assert await get(relay.status_port, "/healthz") == (200, b"ok\n")
        code, metrics = await get(relay.status_port, "/metrics")
        assert code == 200
        assert "# TYPE relay_reports_total counter" in metrics.decode()
        assert "relay_journal_reports_total 1.0" in metrics.decode()
        code, body = await get(relay.status_port, "/status")
        status = json.loads(body)
        assert code == 200 and status["devices"][0]["device_id"] == "868683020419374"
        assert status["statistics"]["connections_total"] == 1
        assert (await get(relay.status_port, "/nope"))[0] == 404
        assert (await get(relay.status_port, "/healthz", "POST"))[0] == 405

        relay.journal.last_commit_error = "database or disk is full"
        assert await get(relay.status_port, "/healthz") == (
            503,
            b"journal cannot commit: database or disk is full\n",
        )
