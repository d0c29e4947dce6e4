"""The load generator: a separate process simulating many devices against a running relay.

    python -m bench.load --port P --tcp 2000 --udp 500 --warmup 2 --duration 20

Each device sends its frame, waits for the relay's answer, and sends again (``--interval`` spaces a
device's frames out instead, for a steady rate; with ``--open-loop`` a device sends every
``--interval`` whether or not its earlier frames were answered, as a real tracker's clock does).
``--only PROTOCOL`` makes every TCP device speak that protocol; ``--frames N`` stops once N frames
were sent and answered. It is a plain ``epoll`` loop, not
trio: the generator must cost less CPU per report than the relay it measures. The generator talks
to the bench over stdout, one line each: ``connected N``, ``start``, ``stop``, then ``result {json}``.
With ``--hold`` each device sends one gps103 login, and once every login is answered the generator
prints ``ready`` and keeps the connections open until its stdin closes.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import resource
import select
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field

from drivers import Transport

from .frames import device, login

#: UDP ids start here, so they never collide with a TCP device's id.
UDP_INDEX_BASE = 500_000
#: A UDP frame unanswered this long is sent again (a tracker's retry).
UDP_RETRY_S = 2.0
RECEIVE_SIZE = 65536


@dataclass(slots=True, eq=False)
class Device:
    sock: socket.socket
    frame: bytes
    reply_length: int
    reports: int
    udp: bool
    received: int = 0
    sent_at: float = 0.0
    waiting: bool = False
    #: Open loop: when each unanswered frame was sent, oldest first (TCP answers come in order).
    pending: deque[float] = field(default_factory=deque)


@dataclass
class Tally:
    """What the measured window saw."""

    frames: int = 0
    reports: int = 0
    latencies: list[float] = field(default_factory=list)
    udp_latencies: list[float] = field(default_factory=list)
    retries: int = 0
    closed: int = 0


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit towards ``wanted`` (up to the hard limit); return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _connect(port: int, count_tcp: int, count_udp: int, hold: bool, only: str | None) -> list[Device]:
    devices = []
    for index in range(count_tcp):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hold:
            frame, reply_length = login(index)
            devices.append(Device(sock, frame, reply_length, 0, udp=False))
        else:
            made = device(index, Transport.TCP, only)
            devices.append(Device(sock, made.frame, made.reply_length, made.reports, udp=False))
    for index in range(count_udp):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", port))
        made = device(UDP_INDEX_BASE + index, Transport.UDP)
        devices.append(Device(sock, made.frame, made.reply_length, made.reports, udp=True))
    for item in devices:
        item.sock.setblocking(False)
    return devices


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def run(
    port: int,
    *,
    tcp: int,
    udp: int,
    warmup: float,
    duration: float,
    interval: float = 0.0,
    hold: bool = False,
    open_loop: bool = False,
    only: str | None = None,
    frames: int = 0,
) -> dict[str, object]:
    """Drive the relay at ``port``; return the measured window's figures."""
    if open_loop and (udp or not interval):
        raise ValueError("the open loop is for TCP devices with an interval")
    raise_nofile(tcp + udp + 1024)
    devices = _connect(port, tcp, udp, hold, only)
    _say(f"connected {len(devices)}")
    by_fd = {item.sock.fileno(): item for item in devices}
    poller = select.epoll(sizehint=len(devices))
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    tally = Tally()
    due: list[tuple[float, int]] = []  # (when, fd) for paced devices
    now = time.monotonic()
    for fd in by_fd:
        heapq.heappush(due, (now + (random.uniform(0, interval) if interval else 0.0), fd))
    measuring = False
    start = now + warmup
    stop = start + duration
    answered = 0
    sent = 0
    next_retry_scan = now + UDP_RETRY_S
    cpu_start = time.process_time()
    while True:
        now = time.monotonic()
        if hold:
            if answered == len(devices):
                break
        elif frames and answered >= frames:
            break
        elif not measuring and now >= start:
            measuring = True
            tally = Tally()
            cpu_start = time.process_time()
            _say("start")
        elif measuring and now >= stop:
            break
        while due and due[0][0] <= now and not (frames and sent >= frames):
            when, fd = heapq.heappop(due)
            item = by_fd[fd]
            sent += 1
            if open_loop:
                item.pending.append(now)
                heapq.heappush(due, (when + interval, fd))
            item.sent_at = now
            item.waiting = True
            try:
                item.sock.send(item.frame)
            except (BlockingIOError, ConnectionError):
                tally.closed += 1
        if now >= next_retry_scan and udp:
            next_retry_scan = now + UDP_RETRY_S
            for item in devices:
                if item.udp and item.waiting and now - item.sent_at > UDP_RETRY_S:
                    tally.retries += 1
                    item.sent_at = now
                    try:
                        item.sock.send(item.frame)
                    except OSError:
                        tally.closed += 1
        timeout = max(0.0, min(due[0][0] - now, 0.2)) if due else 0.2
        for fd, _event in poller.poll(timeout):
            item = by_fd[fd]
            try:
                data = item.sock.recv(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data and not item.udp:
                tally.closed += 1
                poller.unregister(fd)
                continue
            item.received += len(data)
            if open_loop:
                while item.received >= item.reply_length and item.pending:
                    item.received -= item.reply_length
                    sent_at = item.pending.popleft()
                    if measuring:
                        tally.frames += 1
                        tally.reports += item.reports
                        tally.latencies.append(time.monotonic() - sent_at)
                continue
            if item.received < item.reply_length:
                continue
            item.received = 0
            item.waiting = False
            answered_at = time.monotonic()
            answered += 1
            if measuring:
                tally.frames += 1
                tally.reports += item.reports
                (tally.udp_latencies if item.udp else tally.latencies).append(answered_at - item.sent_at)
            if hold:
                continue
            if interval:
                heapq.heappush(due, (max(answered_at, item.sent_at + interval), fd))
            elif not frames or sent < frames:
                sent += 1
                item.sent_at = answered_at
                item.waiting = True
                try:
                    item.sock.send(item.frame)
                except (BlockingIOError, ConnectionError):
                    tally.closed += 1
    elapsed = time.monotonic() - start if not hold else 0.0
    if not hold:
        _say("stop")
    result = {
        "devices": len(devices),
        "tcp": tcp,
        "udp": udp,
        "window_s": round(elapsed, 3),
        "frames": tally.frames,
        "reports": tally.reports,
        "latency_p50_ms": round(percentile(tally.latencies + tally.udp_latencies, 0.50) * 1000, 2),
        "latency_p99_ms": round(percentile(tally.latencies + tally.udp_latencies, 0.99) * 1000, 2),
        "tcp_latency_p50_ms": round(percentile(tally.latencies, 0.50) * 1000, 2),
        "tcp_latency_p99_ms": round(percentile(tally.latencies, 0.99) * 1000, 2),
        "udp_latency_p50_ms": round(percentile(tally.udp_latencies, 0.50) * 1000, 2),
        "udp_latency_p99_ms": round(percentile(tally.udp_latencies, 0.99) * 1000, 2),
        "udp_frames": len(tally.udp_latencies),
        "retries": tally.retries,
        "closed": tally.closed,
        "cpu_s": round(time.process_time() - cpu_start, 3),
    }
    if hold:
        _say("ready")
        sys.stdin.read()
        for item in devices:
            item.sock.close()
    _say("result " + json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tcp", type=int, default=1000, help="TCP devices")
    parser.add_argument("--udp", type=int, default=0, help="UDP devices")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--interval", type=float, default=0.0, help="seconds between a device's frames")
    parser.add_argument("--open-loop", action="store_true", help="send every --interval, answered or not")
    parser.add_argument("--frames", type=int, default=0, help="send this many frames in all, then stop")
    parser.add_argument("--only", help="every TCP device speaks this protocol")
    parser.add_argument("--hold", action="store_true", help="log in once, then idle until stdin closes")
    parser.add_argument("--cpu", type=int, help="pin to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    run(
        args.port,
        tcp=args.tcp,
        udp=args.udp,
        warmup=args.warmup,
        duration=args.duration,
        interval=args.interval,
        hold=args.hold,
        open_loop=args.open_loop,
        only=args.only,
        frames=args.frames,
    )


if __name__ == "__main__":
    main()
