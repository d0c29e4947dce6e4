"""Simulated trackers: frames with a distinct time per report, sent over real sockets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio

BASE = datetime(2026, 11, 20, 8, 0, 0, tzinfo=UTC)


def report_time(index: int) -> datetime:
    return BASE + timedelta(seconds=index)


def iso(index: int) -> str:
    return report_time(index).strftime("%Y-%m-%dT%H:%M:%SZ")


def gps103_login(imei: str) -> bytes:
    return f"##,imei:{imei},A;".encode()


def gps103_position(imei: str, index: int, *, acknowledged: bool = True) -> bytes:
    """A BN-407 position; ``acknowledged`` prefixes the IMEI, which makes the relay answer ``ON``."""
    when = report_time(index)
    local = when + timedelta(hours=2)  # the tracker's clock is set to UTC+2
    body = (
        f"imei:{imei},tracker,{local:%y%m%d%H%M%S},,F,{when:%H%M%S}.000,A,"
        f"51{index % 60:02d}.1234,N,00007.{index % 10000:04d},W,{index % 40}.00,{index % 360};"
    )
    return (imei + body).encode() if acknowledged else body.encode()


def pt502_position(device_id: str, index: int, event: str = "POS") -> bytes:
    when = report_time(index)
    return (
        f"${event},{device_id},{when:%H%M%S}.000,A,3258.{index % 10000:04d},S,02755.4350,E,"
        f"{index % 30}.00,215.88,{when:%d%m%y},,,A/00010,00000/1a,0,0,0/232300/RFID{index % 7}/fb3/\r\n"
    ).encode()


async def tcp_exchange(port: int, frames: list[bytes], *, replies: int, timeout: float = 20) -> list[bytes]:
    """Send frames one by one on one connection; after each, wait for ``replies`` reply tokens."""
    answers: list[bytes] = []
    with trio.fail_after(timeout):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            for frame in frames:
                await stream.send_all(frame)
                received = b""
                while len(received) < replies * 2 and replies:
                    chunk = await stream.receive_some(4096)
                    if not chunk:
                        raise AssertionError("relay closed the connection")
                    received += chunk
                answers.append(received)
    return answers


async def udp_exchange(port: int, frames: list[bytes], *, timeout: float = 2, tries: int = 5) -> list[bytes]:
    """Send datagrams one by one, each resent (as trackers do) until a reply comes."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    answers = []
    with sock:
        await sock.bind(("127.0.0.1", 0))
        for frame in frames:
            for _ in range(tries):
                await sock.sendto(frame, ("127.0.0.1", port))
                with trio.move_on_after(timeout):
                    data, _ = await sock.recvfrom(4096)
                    answers.append(data)
                    break
            else:
                raise AssertionError(f"no UDP reply to {frame[:40]!r}")
    return answers
