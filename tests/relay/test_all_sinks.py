"""Issue 4, done when: mqtt, http, osmand and passthrough sinks together get every report of a
mixed-protocol run, through repeated outages of each, in order per device."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import trio

from tests.broker import Mosquitto, Subscriber
from tests.http_server import RecordingServer
from tests.relay.harness import running_relay, wait_until
from tests.relay.test_passthrough import (
    check_upstream,
    device_frames,
    passthrough_sink,
    report_count,
    run_devices,
    udp_frames,
)
from tests.upstream import Upstream

ROUNDS = 4
PER_ROUND = 40


def seq_of(report: dict[str, Any]) -> int:
    return int(report["id"].rsplit("-", 1)[1])


def check_in_order(reports: list[dict[str, Any]], sink: str) -> dict[str, int]:
    """First arrivals per device are in journal order; returns how many distinct reports per device."""
    seen: set[str] = set()
    per_device: dict[str, list[int]] = defaultdict(list)
    for report in reports:
        if report["id"] not in seen:
            seen.add(report["id"])
            per_device[report["device_id"]].append(seq_of(report))
    for device, seqs in per_device.items():
        assert seqs == sorted(seqs), f"{sink}: {device} out of order"
    return {device: len(seqs) for device, seqs in per_device.items()}


async def test_four_sinks_get_everything_through_outages_of_each(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, persistence=True)
    # The test subscriber may still be reconnecting when the relay sends its backlog: queue it all.
    broker.config.write_text(broker.config.read_text() + "max_queued_messages 0\n")
    broker.start()
    subscriber = Subscriber(broker, "relay/#", persistent=True)
    broker.wait_saved()
    central, traccar, platform = RecordingServer(), RecordingServer(), Upstream()
    quick = {"retry_min_s": 0.05, "retry_max_s": 0.3, "timeout_s": 0.5}
    sinks = [
        {"name": "central", "type": "http", "url": central.url, "batch_max_age_s": 0.05, **quick},
        {"name": "traccar", "type": "osmand", "url": traccar.url, "inflight": 100, **quick},
        passthrough_sink(platform.port),
    ]
    try:
        async with trio.open_nursery() as nursery:
            for server in (central, traccar, platform):
                await server.start(nursery)
            async with running_relay(
                tmp_path / "relay", broker.url, sinks=sinks, journal={"synchronous": "normal"}
            ) as relay:

                async def flap() -> None:
                    for _ in range(2):
                        await trio.sleep(0.3)
                        # SIGTERM: a SIGKILLed broker would lose what it acknowledged but had not
                        # saved yet, which is the broker's loss, not the relay's.
                        assert broker.process is not None
                        broker.process.terminate()
                        broker.process.wait()
                        await trio.sleep(0.5)
                        broker.start()
                        await central.stop()
                        traccar.mode = "500"
                        await trio.sleep(0.4)
                        await central.start(nursery)
                        traccar.mode = "ok"
                        await platform.stop()
                        await trio.sleep(0.4)
                        await platform.start(nursery)

                sent: dict[str, list[bytes]] = {}
                total = 0
                async with trio.open_nursery() as inner:
                    inner.start_soon(flap)
                    for round_ in range(ROUNDS):
                        tcp = device_frames(PER_ROUND, first=round_ * 1000)
                        udp = udp_frames(PER_ROUND, first=round_ * 1000)
                        for device, frames in {**tcp, **udp}.items():
                            sent.setdefault(device, []).extend(frames)
                        await run_devices(relay.port, tcp, udp)
                        total += report_count({**tcp, **udp})
                        await trio.sleep(0.3)
                await wait_until(
                    lambda: relay.journal.stats.committed_reports >= total, what="every report stored"
                )
                for sink in relay.sinks:
                    await wait_until(
                        lambda sink=sink: sink.acknowledged >= total and sink.floor >= relay.journal.last_seq,
                        timeout=60,
                        what=f"{sink.name} to deliver everything",
                    )
                positions = relay.journal._reader.execute(
                    "SELECT device_id, count(*) FROM reports WHERE json_extract(payload, '$.lat') IS NOT NULL"
                    " GROUP BY device_id"
                ).fetchall()
                everything = dict(
                    relay.journal._reader.execute(
                        "SELECT device_id, count(*) FROM reports GROUP BY device_id"
                    )
                )
                mqtt_reports = await subscriber.wait_for(total, timeout=30)
            nursery.cancel_scope.cancel()
    finally:
        subscriber.close()
        broker.stop()

    assert total > 1000
    assert check_in_order(mqtt_reports, "mqtt") == everything
    http_reports = [report for request in central.accepted for report in json.loads(request.body)["reports"]]
    assert check_in_order(http_reports, "http") == everything
    osmand: dict[str, list[int]] = defaultdict(list)
    for request in traccar.accepted:
        stamp = int(request.query["timestamp"])
        if stamp not in osmand[request.query["id"]]:
            osmand[request.query["id"]].append(stamp)
    assert {device: len(stamps) for device, stamps in osmand.items()} == dict(positions)
    for device, stamps in osmand.items():
        assert stamps == sorted(stamps), f"osmand: {device} out of order"
    check_upstream(platform, sent)
