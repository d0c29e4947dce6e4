"""The passthrough sink against an upstream platform on loopback (TCP and UDP, our drivers answering)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

import drivers
from drivers import Transport
from tests import devices
from tests.broker import free_tcp_udp_port
from tests.relay.harness import running_relay, wait_until
from tests.upstream import (
    Upstream,
    gt06_login,
    gt06_position,
    send_tcp,
    teltonika_avl,
    teltonika_handshake,
    teltonika_udp,
)

GT06 = [f"86868302{index:07d}" for index in range(6)]
TELTONIKA = [f"35209308{index:07d}" for index in range(3)]
TELTONIKA_UDP = [f"35209309{index:07d}" for index in range(2)]
PT502 = [f"4000{index:04d}" for index in range(6)]
GPS103_UDP = ["359710049000001"]
LOGINS = {*GT06, *TELTONIKA}
UDP_DEVICES = {*TELTONIKA_UDP, *GPS103_UDP}


def passthrough_sink(port: int, **settings: Any) -> dict[str, Any]:
    return {
        "name": "platform",
        "type": "passthrough",
        "host": "127.0.0.1",
        "port": port,
        "retry_min_s": 0.05,
        "retry_max_s": 0.3,
        "ack_timeout_s": 1.0,
        "connect_timeout_s": 1.0,
        **settings,
    }


def device_frames(per_device: int, first: int = 0) -> dict[str, list[bytes]]:
    """What each device sends (its login first where it has one)."""
    frames: dict[str, list[bytes]] = {}
    for number, imei in enumerate(GT06):
        offset = first + number * 10000
        frames[imei] = [gt06_login(imei)] + [gt06_position(offset + n, n + 2) for n in range(per_device)]
    for number, imei in enumerate(TELTONIKA):
        offset = first + number * 10000
        packets = [teltonika_avl([offset + n, offset + n + 1]) for n in range(0, per_device, 2)]
        frames[imei] = [teltonika_handshake(imei), *packets]
    for number, device_id in enumerate(PT502):
        frames[device_id] = [
            devices.pt502_position(device_id, first + number * 10000 + n) for n in range(per_device)
        ]
    return frames


def udp_frames(per_device: int, first: int = 0) -> dict[str, list[bytes]]:
    frames: dict[str, list[bytes]] = {}
    for number, imei in enumerate(TELTONIKA_UDP):
        offset = first + number * 10000
        frames[imei] = [teltonika_udp(imei, [offset + n], n % 65536) for n in range(per_device // 4)]
    for imei in GPS103_UDP:
        frames[imei] = [devices.gps103_position(imei, first + n) for n in range(per_device // 4)]
    return frames


async def run_devices(port: int, tcp: dict[str, list[bytes]], udp: dict[str, list[bytes]]) -> None:
    async with trio.open_nursery() as nursery:
        for frames in tcp.values():
            nursery.start_soon(send_tcp, port, frames)
        for frames in udp.values():
            nursery.start_soon(devices.udp_exchange, port, frames)


def framed(frames: list[bytes], transport: Transport) -> list[bytes]:
    """The frames as the drivers cut them (text protocols' delimiters are not part of a frame)."""
    out = []
    for frame in frames:
        driver = drivers.detect(frame, transport, final=True)
        assert isinstance(driver, drivers.Driver)
        session = driver.new_session(transport)
        if transport is Transport.UDP:
            out += session.datagram_frames(frame)
        else:
            session.receive_data(frame)
            out += list(session.frames())
    return out


def report_count(sent: dict[str, list[bytes]]) -> int:
    """How many reports the relay stores for these frames."""
    total = 0
    for device, frames in sent.items():
        transport = Transport.UDP if device in UDP_DEVICES else Transport.TCP
        for frame in framed(frames, transport):
            driver = drivers.detect(frame, transport, final=True)
            assert isinstance(driver, drivers.Driver)
            total += len(driver.new_session(transport).decode(frame, now=devices.BASE).reports)
    return total


def check_upstream(upstream: Upstream, sent: dict[str, list[bytes]]) -> int:
    """Every device's frames arrived byte-identical and in order, each TCP session of a device with a
    login started with it; returns the number of duplicate (non-login) frames."""
    received = upstream.frames_by_device()
    duplicates = 0
    for device, frames in sent.items():
        frames = framed(frames, Transport.UDP if device in UDP_DEVICES else Transport.TCP)
        logins = {frames[0]} if device in LOGINS else set()
        for record in upstream.sessions:
            if record.device_id == device and record.transport == "tcp" and logins:
                assert record.frames[0] in logins, f"{device}: a session did not start with its login"
        arrived = [frame for frame in received.get(device, []) if frame not in logins]
        unique = list(dict.fromkeys(arrived))
        assert unique == [frame for frame in frames if frame not in logins], f"{device}: lost or out of order"
        duplicates += len(arrived) - len(unique)
    return duplicates


async def test_each_device_gets_its_own_session_starting_with_its_login(tmp_path: Path) -> None:
    upstream = Upstream()
    tcp, udp = device_frames(20), udp_frames(20)
    async with trio.open_nursery() as nursery:
        await upstream.start(nursery)
        sinks = [passthrough_sink(upstream.port)]
        async with running_relay(tmp_path / "relay", sinks=sinks) as relay:
            sink = relay.sinks[0]
            await run_devices(relay.port, tcp, udp)
            await wait_until(
                lambda: sink.acknowledged >= relay.journal.stats.committed_reports,
                what="every report passed through",
            )
            stats = relay.statistics()
        nursery.cancel_scope.cancel()
    assert check_upstream(upstream, {**tcp, **udp}) == 0
    # Teltonika's two records per packet went as one frame (the second record has no frame of its own).
    assert stats["sink_platform_skipped"] == len(TELTONIKA) * 10
    assert stats["sink_platform_duplicates_possible"] == 0


async def test_upstream_outages_lose_nothing_and_resume_each_device_where_it_stopped(tmp_path: Path) -> None:
    upstream = Upstream()
    per_device = 200
    async with trio.open_nursery() as nursery:
        await upstream.start(nursery)
        sinks = [passthrough_sink(upstream.port)]
        async with running_relay(tmp_path / "relay", sinks=sinks, journal={"synchronous": "normal"}) as relay:
            sink = relay.sinks[0]

            async def flap() -> None:
                for _ in range(4):
                    await trio.sleep(0.4)
                    await upstream.stop()
                    await trio.sleep(0.4)
                    await upstream.start(nursery)

            sent: dict[str, list[bytes]] = {}
            total = 0
            async with trio.open_nursery() as inner:
                inner.start_soon(flap)
                for round_ in range(4):
                    first = round_ * 1000
                    tcp, udp = (
                        device_frames(per_device // 4, first=first),
                        udp_frames(per_device // 4, first=first),
                    )
                    for device, frames in {**tcp, **udp}.items():
                        sent.setdefault(device, []).extend(frames)
                    await run_devices(relay.port, tcp, udp)
                    total += report_count({**tcp, **udp})
                    await trio.sleep(0.2)
            await wait_until(
                lambda: relay.journal.stats.committed_reports >= total, what="every report stored"
            )
            await wait_until(
                lambda: sink.acknowledged >= relay.journal.stats.committed_reports,
                timeout=40,
                what="every report passed through",
            )
            duplicates_possible, failures = sink.stats.duplicates_possible, sink.failures
        nursery.cancel_scope.cancel()
    assert failures > 0
    # Each round, the devices with a login logged in again on a new connection: the same login frame.
    assert check_upstream(upstream, sent) <= duplicates_possible


async def test_a_device_the_upstream_refuses_holds_back_no_other(tmp_path: Path) -> None:
    upstream = Upstream()
    upstream.refuse = {TELTONIKA[0]}
    tcp = device_frames(20)
    async with trio.open_nursery() as nursery:
        await upstream.start(nursery)
        async with running_relay(tmp_path / "relay", sinks=[passthrough_sink(upstream.port)]) as relay:
            sink = relay.sinks[0]
            await run_devices(relay.port, tcp, {})
            stuck = 1 + 10 * 2  # the refused device's login and 10 packets of 2 records
            await wait_until(
                lambda: sink.acknowledged >= relay.journal.stats.committed_reports - stuck,
                what="every other device passed through",
            )
            assert sink.failures > 0 and sink.floor < relay.journal.last_seq
            upstream.refuse = set()
            await wait_until(
                lambda: sink.acknowledged >= relay.journal.stats.committed_reports, what="the late device"
            )
        nursery.cancel_scope.cancel()
    check_upstream(upstream, tcp)  # in the end, all there, in order, every session opened by a login


async def test_a_restarted_relay_resumes_each_device_where_it_stopped(tmp_path: Path) -> None:
    upstream = Upstream()
    first, second = device_frames(10), device_frames(10, first=500)
    resent = 0  # frames a sink wrote but could not confirm (a slow upstream under load): sent again
    async with trio.open_nursery() as nursery:
        await upstream.start(nursery)
        sinks = [passthrough_sink(upstream.port)]
        # One port for the three relays, chosen while the upstream holds its own: a relay given the
        # upstream's port while it is down would pass its devices' frames through to itself.
        listen = {"port": free_tcp_udp_port()}
        async with running_relay(tmp_path / "relay", sinks=sinks, listen=listen) as relay:
            await run_devices(relay.port, first, {})
            await wait_until(lambda: relay.sinks[0].floor >= relay.journal.last_seq, what="the first part")
            resent += relay.sinks[0].stats.duplicates_possible
        before_restart = {device: len(frames) for device, frames in upstream.frames_by_device().items()}
        await upstream.stop()
        async with running_relay(tmp_path / "relay", sinks=sinks, listen=listen) as relay:  # upstream down
            await run_devices(relay.port, second, {})
            await wait_until(lambda: relay.sinks[0].failures > 0, what="the upstream to be missed")
        await upstream.start(nursery)
        async with running_relay(tmp_path / "relay", sinks=sinks, listen=listen) as relay:
            await wait_until(lambda: relay.sinks[0].floor >= relay.journal.last_seq, what="the second part")
            resent += relay.sinks[0].stats.duplicates_possible
        nursery.cancel_scope.cancel()
    sent = {device: first[device] + second[device] for device in first}
    for device in GT06 + TELTONIKA:  # the login frame is the same both times
        sent[device] = list(dict.fromkeys(sent[device]))
    assert check_upstream(upstream, sent) <= resent
    # Nothing delivered before the restarts came again: after them only the second part (and logins).
    for device, frames in upstream.frames_by_device().items():
        later = set(frames[before_restart.get(device, 0) :]) - {first[device][0]}
        assert not later & set(first[device]), f"{device}: the first part was sent again after restarts"
