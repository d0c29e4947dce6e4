"""The http sink against a real HTTP server on loopback: batches, retries, outages, dead letters."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from relay.cli import _main as cli
from relay.journal import Journal
from relay.sinks._http import RETRY_AFTER_MAX_S, parse_retry_after
from tests import devices
from tests.http_server import RecordingServer, Request
from tests.relay.harness import running_relay, wait_until
from tests.upstream import send_tcp


def dead_letters(database: Path, *, sink: str | None = None) -> list[dict[str, Any]]:
    """The dead letters in the journal at ``database``, read as ``relay dead-letters`` reads them."""
    with Journal.open_read_only(database) as journal:
        return journal.dead_letters(sink=sink)

DEVICES = [f"2000{index:04d}" for index in range(12)]


def http_sink(url: str, **settings: Any) -> dict[str, Any]:
    return {
        "name": "central",
        "type": "http",
        "url": url,
        "retry_min_s": 0.05,
        "retry_max_s": 0.3,
        "timeout_s": 0.5,
        "batch_max_age_s": 0.05,
        **settings,
    }


def reports_of(requests: list[Request]) -> list[dict[str, Any]]:
    return [report for request in requests for report in json.loads(request.body)["reports"]]


def check_complete_and_ordered(reports: list[dict[str, Any]], expected: dict[str, int]) -> int:
    """Every expected report arrived once at least, in order per device; returns the duplicates."""
    seen: set[str] = set()
    times: dict[str, list[str]] = defaultdict(list)
    for report in reports:
        if report["id"] in seen:
            continue
        seen.add(report["id"])
        times[report["device_id"]].append(report["time"])
    assert {device: len(stamps) for device, stamps in times.items()} == expected
    for device, stamps in times.items():
        assert stamps == sorted(stamps), f"{device} out of order"
    return len(reports) - len(seen)


async def send_pt502(port: int, device_ids: list[str], per_device: int, *, first: int = 0) -> None:
    async with trio.open_nursery() as nursery:
        for device_id in device_ids:
            frames = [devices.pt502_position(device_id, first + n) for n in range(per_device)]
            nursery.start_soon(send_tcp, port, frames)


async def test_batches_carry_every_report_with_gzip_token_file_and_headers(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    server = RecordingServer()
    async with trio.open_nursery() as nursery:
        await server.start(nursery)
        sink = http_sink(
            server.url + "/api/reports",
            gzip=True,
            token_file=str(token),
            headers={"X-Depot": "north"},
            batch_max_reports=40,
            batch_max_bytes=8000,
        )
        async with running_relay(tmp_path / "relay", sinks=[sink]) as relay:
            await send_pt502(relay.port, DEVICES[:4], 50)
            total = 4 * 50
            await wait_until(lambda: relay.sinks[0].acknowledged >= total, what="all reports delivered")
            statistics = relay.statistics()
        nursery.cancel_scope.cancel()
    request = server.requests[0]
    assert request.method == "POST" and request.target == "/api/reports"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["x-depot"] == "north"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body)["site"] == "test-site"
    for request in server.requests:
        count = len(json.loads(request.body)["reports"])
        assert count <= 40
        assert len(request.body) <= 8000 or count == 1
    assert check_complete_and_ordered(reports_of(server.accepted), dict.fromkeys(DEVICES[:4], 50)) == 0
    assert statistics["sink_central_acknowledged"] == total
    assert statistics["sink_central_backlog"] == 0


async def test_500_429_hang_and_outage_lose_nothing_and_keep_order(tmp_path: Path) -> None:
    server = RecordingServer()
    server.retry_after = "0"
    per_device = 250
    async with trio.open_nursery() as nursery:
        await server.start(nursery)
        sink = http_sink(server.url, batch_max_reports=100)
        async with running_relay(
            tmp_path / "relay", sinks=[sink], journal={"synchronous": "normal"}
        ) as relay:
            http = relay.sinks[0]

            async def flap() -> None:
                for mode in ["500", "429", "hang", "down", "500", "down", "hang", "429"]:
                    await trio.sleep(0.3)
                    if mode == "down":
                        await server.stop()
                        await trio.sleep(0.3)
                        await server.start(nursery)
                    else:
                        server.mode = mode
                        await trio.sleep(0.3)
                        server.mode = "ok"

            async with trio.open_nursery() as inner:
                inner.start_soon(flap)
                for round_ in range(5):
                    await send_pt502(relay.port, DEVICES, per_device // 5, first=round_ * 1000)
                    await trio.sleep(0.2)
            total = len(DEVICES) * per_device
            await wait_until(lambda: http.acknowledged >= total, timeout=40, what="every report delivered")
            retries, duplicates_possible = http.stats.retries, http.stats.duplicates_possible
        nursery.cancel_scope.cancel()
    duplicates = check_complete_and_ordered(reports_of(server.accepted), dict.fromkeys(DEVICES, per_device))
    assert retries > 0
    # Only a batch the server may have taken (a hang, a 5xx) comes twice, and each such is counted.
    assert duplicates <= duplicates_possible
    assert not any(request.status in (400,) for request in server.requests)


async def test_a_refused_batch_is_parked_listed_and_requeued(tmp_path: Path, capsys: Any) -> None:
    refuse = {"on": True}

    def handler(request: Request) -> tuple[int, bytes]:
        if refuse["on"]:
            refuse["on"] = False
            return 400, b'{"error": "unknown field"}'
        return 200, b"{}"

    server = RecordingServer(handler)
    async with trio.open_nursery() as nursery:
        await server.start(nursery)
        sink = http_sink(server.url, batch_max_reports=10, batch_max_age_s=0.2)
        async with running_relay(tmp_path / "relay", sinks=[sink]) as relay:
            http = relay.sinks[0]
            await send_pt502(relay.port, DEVICES[:1], 30)
            await wait_until(lambda: http.acknowledged >= 30, what="the sink to move past the refusal")
            assert http.stats.dead_lettered == 10
            refused = reports_of([server.requests[0]])
            assert len(refused) == 10 and len(reports_of(server.accepted)) == 20

            data_dir = str(tmp_path / "relay")
            assert cli.main(["dead-letters", "--data-dir", data_dir]) == 0
            listing = capsys.readouterr().out
            assert "central" in listing and "400" in listing and "unknown field" in listing
            rows = dead_letters(relay.config.database)
            assert [(row["sink"], row["state"], row["reports"]) for row in rows] == [
                ("central", "parked", 10)
            ]

            assert cli.main(["requeue", "--data-dir", data_dir, "--sink", "central", str(rows[0]["id"])]) == 0
            assert "1 dead letter" in capsys.readouterr().out
            await wait_until(lambda: len(reports_of(server.accepted)) >= 30, what="the requeued batch")
            await wait_until(lambda: not dead_letters(relay.config.database), what="the letter to go")
        nursery.cancel_scope.cancel()
    assert server.requests[-1].body == server.requests[0].body  # the very same batch, sent again
    # The sink moved on in order; the requeued batch came last, once.
    assert check_complete_and_ordered(reports_of(server.accepted[:-1]), {DEVICES[0]: 20}) == 0
    accepted = reports_of(server.accepted)
    assert len(accepted) == len({report["id"] for report in accepted}) == 30


def test_retry_after_takes_seconds_or_a_date_and_is_capped() -> None:
    now = datetime(2026, 11, 20, 8, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Fri, 20 Nov 2026 08:00:30 GMT", now) == 30.0
    assert parse_retry_after("Fri, 20 Nov 2026 07:00:00 GMT", now) == 0.0
    assert parse_retry_after("9999999", now) == RETRY_AFTER_MAX_S
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


async def test_live_first_sends_each_devices_newest_report_before_the_backlog(tmp_path: Path) -> None:
    server = RecordingServer()
    async with trio.open_nursery() as nursery:
        sink = http_sink(server.url, drain="live_first", batch_max_reports=100)
        async with running_relay(tmp_path / "relay", sinks=[sink]) as relay:
            await send_pt502(relay.port, DEVICES[:3], 20)  # the server is not up yet: a backlog
            await wait_until(lambda: relay.journal.stats.committed_reports >= 60, what="the backlog stored")
            failed = relay.sinks[0].stats.retries
            await wait_until(lambda: relay.sinks[0].stats.retries > failed + 1, what="a retry with all of it")
            await server.start(nursery)
            await wait_until(lambda: relay.sinks[0].acknowledged >= 60, what="the backlog delivered")
        nursery.cancel_scope.cancel()
    reports = reports_of(server.accepted)
    newest = {device: devices.iso(19) for device in DEVICES[:3]}
    assert {report["device_id"]: report["time"] for report in reports[:3]} == newest
    # Then the backlog, oldest first, without the newest ones again.
    assert check_complete_and_ordered(reports[3:], dict.fromkeys(DEVICES[:3], 19)) == 0
