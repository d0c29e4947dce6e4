"""The broker vanishes (SIGKILL); trackers keep reporting over TCP and UDP; it returns; nothing is lost."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import trio

from relay.journal import Journal
from tests import devices
from tests.broker import Mosquitto, Subscriber
from tests.relay.harness import running_relay, wait_until

TCP_DEVICES = [f"86868302{index:07d}" for index in range(4)]
UDP_DEVICES = [f"35971004{index:07d}" for index in range(3)]
PT600_DEVICES = ["1156802639", "20007"]
PER_DEVICE = 40


async def test_reports_sent_during_a_broker_outage_all_arrive_in_order_per_device(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, persistence=True)
    broker.start()
    subscriber = Subscriber(broker, "relay/#", persistent=True)
    broker.wait_saved()  # the subscriber's session must survive the SIGKILL below
    try:
        async with running_relay(tmp_path / "relay", broker.url) as relay:
            sink = relay.sinks[0]
            await wait_until(lambda: sink.connected, what="first connection")
            broker.stop()
            await wait_until(lambda: not sink.connected, what="the sink noticing the outage")

            async def tcp_device(imei: str, offset: int) -> None:
                frames = [devices.gps103_position(imei, offset + n) for n in range(PER_DEVICE)]
                assert await devices.tcp_exchange(relay.port, frames, replies=1) == [b"ON"] * PER_DEVICE

            async def udp_device(imei: str, offset: int) -> None:
                frames = [devices.gps103_position(imei, offset + n) for n in range(PER_DEVICE)]
                assert await devices.udp_exchange(relay.port, frames) == [b"ON"] * PER_DEVICE

            async def pt600(device_id: str, offset: int) -> None:
                stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
                async with stream:
                    for n in range(PER_DEVICE):
                        await stream.send_all(devices.pt502_position(device_id, offset + n))

            async with trio.open_nursery() as nursery:
                for number, imei in enumerate(TCP_DEVICES):
                    nursery.start_soon(tcp_device, imei, number * 1000)
                for number, imei in enumerate(UDP_DEVICES):
                    nursery.start_soon(udp_device, imei, number * 1000)
                for number, device_id in enumerate(PT600_DEVICES):
                    nursery.start_soon(pt600, device_id, number * 1000)
            total = PER_DEVICE * (len(TCP_DEVICES) + len(UDP_DEVICES) + len(PT600_DEVICES))
            await wait_until(
                lambda: relay.journal.stats.committed_reports >= total, what="all reports committed"
            )
            assert sink.acknowledged == 0

            broker.start()
            await wait_until(lambda: sink.acknowledged >= total, timeout=60, what="every report PUBACKed")
            reports = await subscriber.wait_for(total, timeout=30)
            await wait_until(lambda: sink.floor >= relay.journal.last_seq, what="the sink's queue to drain")
            await trio.sleep(0.6)  # one cursor flush
            with Journal.open_read_only(relay.config.database) as journal:
                status = journal.status(["broker"], now=devices.report_time(0))
            assert status["sinks"][0]["pending"] == 0
    finally:
        subscriber.close()
        broker.stop()

    unique = {report["id"]: report for report in reports}
    assert len(unique) == total
    arrival: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for report in reports:  # arrival order, duplicates after the first ignored
        if report["id"] not in seen:
            seen.add(report["id"])
            arrival[report["device_id"]].append(report["time"])
    assert set(arrival) == {*TCP_DEVICES, *UDP_DEVICES, *PT600_DEVICES}
    for device, times in arrival.items():
        assert len(times) == PER_DEVICE, device
        assert times == sorted(times), f"{device} arrived out of order"
