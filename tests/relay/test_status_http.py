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


async def test_metrics_cover_every_sink_type(tmp_path: Path) -> None:
    nowhere = "127.0.0.1:9"  # discard port: nothing listens, every sink keeps retrying
    sinks = [
        {"name": "m", "type": "mqtt", "url": f"mqtt://{nowhere}"},
        {"name": "h", "type": "http", "url": f"http://{nowhere}/reports"},
        {"name": "o", "type": "osmand", "url": f"http://{nowhere}"},
        {"name": "p", "type": "passthrough", "host": "127.0.0.1", "port": 9},
    ]
    async with running_relay(tmp_path, status={"listen": "127.0.0.1:0"}, sinks=sinks) as relay:
        await devices.tcp_exchange(relay.port, [devices.gps103_position("868683020419374", 1)], replies=1)
        code, metrics = await get(relay.status_port, "/metrics")
        code_status, body = await get(relay.status_port, "/status")
    text = metrics.decode()
    assert code == 200 and code_status == 200
    for name in "mhop":
        assert f'relay_sink_connected{{sink="{name}"}} 0.0' in text
        assert f'relay_sink_backlog{{sink="{name}"}} 1.0' in text
    assert [sink["pending"] for sink in json.loads(body)["sinks"]] == [1, 1, 1, 1]
