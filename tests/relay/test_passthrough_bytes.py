"""Passthrough is byte for byte: an upstream platform receives exactly the bytes each device sent, for
every protocol and transport, including frames that decode to no report (PT-600 photo chunks) and
line ends a device adds after its frames."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest
import trio

from tests import devices
from tests.drivers.test_first_frame_alarms import (
    GT06_SOS,
    H02_SOS,
    OSMAND_SOS,
    PT502_IN1,
    TELTONIKA_UDP,
    TK103_POWER_CUT,
    WATCH_SOS,
)
from tests.relay.harness import running_relay, wait_until
from tests.relay.test_passthrough import passthrough_sink
from tests.relay.test_pt600_photo import chunk_frame
from tests.upstream import Upstream, gt06_login, gt06_position, teltonika_avl, teltonika_handshake

GPS103 = "868683020419374"
GT06 = "868683020000001"
TELTONIKA = "352093080000001"

#: Per protocol, what one device sends on one TCP connection, frame by frame.
TCP_STREAMS = {
    "gps103": [
        f"##,imei:{GPS103},A;".encode(),
        devices.gps103_position(GPS103, 1) + b"\r\n",  # a line end after the ';'
        devices.gps103_position(GPS103, 2),
        f"{GPS103};".encode(),  # heartbeat
    ],
    "gt06": [gt06_login(GT06), gt06_position(1, 2), GT06_SOS],
    "teltonika": [teltonika_handshake(TELTONIKA), teltonika_avl([1, 2]), teltonika_avl([3])],
    "pt502": [devices.pt502_position("1360000277", 1), PT502_IN1],
    "h02": [H02_SOS, H02_SOS.replace(b"075228", b"075229")],
    "watch": [WATCH_SOS, b"[3G*8809008845*0009*LK,0,0,100]"],
    "tk103": [TK103_POWER_CUT, TK103_POWER_CUT.replace(b"040137", b"040138")],
    "osmand": [OSMAND_SOS, OSMAND_SOS.replace(b"lat=60.0", b"lat=60.5")],
}
UDP_DATAGRAMS = {
    "gps103": [devices.gps103_position("359710049000001", n) for n in range(3)],
    "teltonika": [TELTONIKA_UDP],
    "h02": [H02_SOS],
    "tk103": [TK103_POWER_CUT],
    "pt502": [PT502_IN1],
}


async def send_stream(port: int, frames: list[bytes]) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        for frame in frames:
            await stream.send_all(frame)
            with trio.move_on_after(0.3):  # the reply, where the protocol has one
                await stream.receive_some(4096)


def upstream_bytes(upstream: Upstream, transport: str) -> list[bytes]:
    return [bytes(record.raw) for record in upstream.sessions if record.transport == transport and record.raw]


@pytest.mark.slow
@pytest.mark.parametrize("protocol", sorted(TCP_STREAMS))
async def test_a_tcp_stream_arrives_upstream_byte_for_byte(tmp_path: Path, protocol: str) -> None:
    frames = TCP_STREAMS[protocol]
    upstream = Upstream()
    async with trio.open_nursery() as nursery:
        await upstream.start(nursery)
        async with running_relay(tmp_path / "relay", sinks=[passthrough_sink(upstream.port)]) as relay:
            await send_stream(relay.port, frames)
            sink = relay.sinks[0]
            await wait_until(lambda: sink.backlog() == 0 and relay.journal.last_seq > 0, what="all passed")
            await wait_until(
                lambda: sum(map(len, upstream_bytes(upstream, "tcp"))) >= len(b"".join(frames)),
                what="the upstream has every byte",
            )
        nursery.cancel_scope.cancel()
    assert upstream_bytes(upstream, "tcp") == [b"".join(frames)]


@pytest.mark.slow
@pytest.mark.parametrize("protocol", sorted(UDP_DATAGRAMS))
async def test_datagrams_arrive_upstream_byte_for_byte(tmp_path: Path, protocol: str) -> None:
    datagrams = UDP_DATAGRAMS[protocol]
    upstream = Upstream()
    async with trio.open_nursery() as nursery:
        await upstream.start(nursery)
        async with running_relay(tmp_path / "relay", sinks=[passthrough_sink(upstream.port)]) as relay:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for datagram in datagrams:
                    sock.sendto(datagram, ("127.0.0.1", relay.port))
                    await trio.sleep(0.05)
            await wait_until(
                lambda: relay.journal.stats.committed_reports >= len(datagrams), what="all stored"
            )
            await wait_until(
                lambda: len(upstream_bytes(upstream, "udp")) >= len(datagrams), what="all passed through"
            )
        nursery.cancel_scope.cancel()
    assert upstream_bytes(upstream, "udp") == datagrams


@pytest.mark.slow
async def test_a_whole_pt600_photo_transfer_arrives_upstream_byte_for_byte(tmp_path: Path) -> None:
    device = "1156802639"
    jpeg = b"\xff\xd8" + bytes(random.Random(3).randrange(256) for _ in range(2500)) + b"\r\n$POS\xff\xd9"
    announce = (
        f"$PHO{len(jpeg)}-1,{device},022125.000,A,0707.0014,N,07307.3725,W,0.0,0.1,110418,,,"
        "A/00000,00000/0,0,0,0/500//fd4//\r\n"
    ).encode()
    sent = [announce]
    upstream = Upstream(answer=False)  # the relay, not the platform, asks the camera for its chunks
    async with trio.open_nursery() as nursery:
        await upstream.start(nursery)
        async with running_relay(tmp_path / "relay", sinks=[passthrough_sink(upstream.port)]) as relay:
            stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
            async with stream:
                await stream.send_all(announce)
                received = 0
                with trio.fail_after(10):
                    while received < len(jpeg):
                        request = await stream.receive_some(100)
                        offset, length = map(int, request.decode().strip().removeprefix("#PHD").split(","))
                        chunk = chunk_frame(offset, jpeg[offset : offset + length])
                        sent.append(chunk)
                        await stream.send_all(chunk)
                        received += length
            sink = relay.sinks[0]
            await wait_until(
                lambda: relay.journal.stats.committed_reports >= len(sent), what="the photo stored"
            )
            await wait_until(lambda: sink.backlog() == 0, what="everything passed through")
            await wait_until(
                lambda: sum(map(len, upstream_bytes(upstream, "tcp"))) >= len(b"".join(sent)),
                what="the upstream has every byte",
            )
            events = [report.event for report in relay.journal.read_after(0, 100)]
        nursery.cancel_scope.cancel()
    assert upstream_bytes(upstream, "tcp") == [b"".join(sent)]
    assert events.count("photo") == 1 and events.count("frame") == len(sent) - 2
