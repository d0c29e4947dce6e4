"""The osmand sink against a Traccar-like OsmAnd endpoint on loopback that checks every query."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

import trio

from relay.sinks._osmand import osmand_query
from tests import devices
from tests.http_server import RecordingServer, Request
from tests.relay.harness import running_relay, wait_until
from tests.relay.test_http_sink import dead_letters
from tests.upstream import gt06_login, gt06_position, send_tcp

REGISTERED = [f"3000{index:04d}" for index in range(10)]
UNKNOWN = "39999999"
GT06 = "868683020419374"


class Traccar:
    """Answers like Traccar's OsmAnd decoder: 400 for an unknown device or a malformed position."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.positions: list[dict[str, str]] = []
        self.problems: list[str] = []

    def __call__(self, request: Request) -> tuple[int, bytes]:
        query = request.query
        problem = self._check(request, query)
        if problem:
            self.problems.append(problem)
            return 400, problem.encode()
        self.positions.append(query)
        return 200, b""

    def _check(self, request: Request, query: dict[str, str]) -> str | None:
        if request.method != "POST" or request.target.split("?")[0] != "/":
            return f"unexpected {request.method} {request.target}"
        if query.get("id") not in self.known:
            return f"unknown device {query.get('id')}"
        try:
            if not (-90 <= float(query["lat"]) <= 90 and -180 <= float(query["lon"]) <= 180):
                return "position out of range"
            int(query["timestamp"])
            float(query["speed"])
        except (KeyError, ValueError) as error:
            return f"malformed query: {error}"
        return None


def osmand_sink(url: str, **settings: object) -> dict[str, object]:
    return {
        "name": "traccar",
        "type": "osmand",
        "url": url,
        "retry_min_s": 0.05,
        "retry_max_s": 0.3,
        "timeout_s": 0.5,
        **settings,
    }


def test_the_query_has_traccar_names_and_units() -> None:
    document = {
        "id": "x-1",
        "device_id": "865456055519122",
        "time": "2024-12-14T12:37:46Z",
        "valid": True,
        "lat": 10.210561,
        "lon": -67.959926,
        "altitude_m": 120.5,
        "speed_kmh": 18.52,
        "course_deg": 340.61,
        "satellites": 7,
        "alarms": ["sos", "lowBattery"],
        "driver_id": "D-42",
        "attributes": {"battery_pct": 80, "ignition": True, "accuracy_m": 5.0, "cells": [1, 2]},
    }
    query = dict(pair.split("=", 1) for pair in osmand_query(document).split("&"))
    assert query == {
        "id": "865456055519122",
        "timestamp": "1734179866",
        "lat": "10.210561",
        "lon": "-67.959926",
        "valid": "true",
        "speed": "10.0",
        "bearing": "340.61",
        "altitude": "120.5",
        "sat": "7",
        "driverUniqueId": "D-42",
        "alarm": "sos%2ClowBattery",
        "batt": "80",
        "accuracy": "5.0",
        "ignition": "true",
        "cells": "%5B1%2C2%5D",
    }
    assert osmand_query({**document, "lat": None, "lon": None}) is None


async def test_positions_reach_traccar_in_order_through_outages_and_unknown_devices_are_parked(
    tmp_path: Path,
) -> None:
    traccar = Traccar({*REGISTERED, GT06})
    server = RecordingServer(traccar)
    server.retry_after = "0"
    per_device = 150
    async with trio.open_nursery() as nursery:
        await server.start(nursery)
        sinks = [osmand_sink(server.url + "/", inflight=100, concurrency=4)]
        async with running_relay(tmp_path / "relay", sinks=sinks, journal={"synchronous": "normal"}) as relay:
            sink = relay.sinks[0]

            async def flap() -> None:
                for mode in ["500", "down", "429", "hang", "503"]:
                    await trio.sleep(0.25)
                    if mode == "down":
                        await server.stop()
                        await trio.sleep(0.3)
                        await server.start(nursery)
                    else:
                        server.mode = mode
                        await trio.sleep(0.25)
                        server.mode = "ok"

            async def device(device_id: str) -> None:
                for first in range(0, per_device, 50):
                    frames = [devices.pt502_position(device_id, n) for n in range(first, first + 50)]
                    await send_tcp(relay.port, frames)
                    await trio.sleep(0.1)

            async with trio.open_nursery() as inner:
                inner.start_soon(flap)
                for device_id in [*REGISTERED, UNKNOWN]:
                    inner.start_soon(device, device_id)
                gt06 = [gt06_login(GT06), *(gt06_position(n, n + 2) for n in range(20))]
                inner.start_soon(send_tcp, relay.port, gt06)
            total = (len(REGISTERED) + 1) * per_device + 21
            await wait_until(lambda: sink.acknowledged >= total, timeout=40, what="every report handled")
            parked = dead_letters(relay.config.database, sink="traccar")
            skipped, dead_lettered, duplicates_possible = (
                sink.stats.skipped,
                sink.stats.dead_lettered,
                sink.stats.duplicates_possible,
            )
        nursery.cancel_scope.cancel()

    assert skipped == 1  # the GT06 login: no position, acknowledged without a request
    assert dead_lettered == per_device == len(parked)
    assert all(row["status"] == 400 and "unknown device" in row["answer"] for row in parked)
    stamp_7 = int(datetime.fromisoformat(devices.iso(7).replace("Z", "+00:00")).timestamp())
    seen: set[tuple[str, str]] = set()
    times: dict[str, list[int]] = defaultdict(list)
    for position in traccar.positions:
        key = (position["id"], position["timestamp"])
        if key not in seen:
            seen.add(key)
            times[position["id"]].append(int(position["timestamp"]))
    assert {device: len(stamps) for device, stamps in times.items()} == {
        **dict.fromkeys(REGISTERED, per_device),
        GT06: 20,
    }
    for device_id, stamps in times.items():
        assert stamps == sorted(stamps), f"{device_id} out of order"
    assert len(traccar.positions) - len(seen) <= duplicates_possible
    seventh = next(
        p for p in traccar.positions if p["id"] == REGISTERED[0] and p["timestamp"] == str(stamp_7)
    )
    assert abs(float(seventh["speed"]) - 7) < 0.001  # the PT-502 said 7 knots; Traccar wants knots
