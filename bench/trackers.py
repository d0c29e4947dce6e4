"""Well-behaved trackers for the fault suite: a separate process, so that what the suite does to the
relay never slows the measurement of how the relay answers them.

    python -m bench.trackers --port P --devices 3 --interval 0.5 --prefix 8611

Each device is a gps103 tracker on its own TCP connection sending a position every ``--interval``
seconds (a report with a distinct time each: ``report_time(index)``), waiting for the relay's ``ON``.
One line on stdout per frame: ``ack IMEI INDEX SENT_AT LATENCY`` when answered, ``miss IMEI INDEX
SENT_AT`` when not (no answer within ``--timeout``, or the connection failed: it is opened again for the
next frame). ``SENT_AT`` is ``time.monotonic()``, which every process on the machine shares. It runs
until its stdin closes, then prints ``done``.
"""

from __future__ import annotations

import argparse
import random
import socket
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

BASE = datetime(2026, 11, 20, 8, 0, 0, tzinfo=UTC)


def report_time(index: int) -> datetime:
    return BASE + timedelta(seconds=index)


def iso(index: int) -> str:
    """The report's ``time`` as the relay forwards it."""
    return report_time(index).strftime("%Y-%m-%dT%H:%M:%SZ")


def index_of(time_text: str) -> int:
    """The frame index a forwarded report's ``time`` stands for."""
    when = datetime.strptime(time_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return int((when - BASE).total_seconds())


def imei(prefix: str, number: int) -> str:
    return f"{prefix}{number:0{15 - len(prefix)}d}"


def position(device: str, index: int) -> bytes:
    """A Coban BN-407 position, IMEI-prefixed so that the relay answers ``ON`` once it is committed."""
    when = report_time(index)
    local = when + timedelta(hours=2)  # the tracker's clock is set to UTC+2
    body = (
        f"imei:{device},tracker,{local:%y%m%d%H%M%S},,F,{when:%H%M%S}.000,A,"
        f"51{index % 60:02d}.1234,N,00007.{index % 10000:04d},W,{index % 40}.00,{index % 360};"
    )
    return (device + body).encode()


class Trackers:
    def __init__(self, port: int, devices: list[str], interval: float, timeout: float) -> None:
        self.port = port
        self.devices = devices
        self.interval = interval
        self.timeout = timeout
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def say(self, line: str) -> None:
        with self.lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def device(self, device: str) -> None:
        sock: socket.socket | None = None
        index = 0
        due = time.monotonic() + random.uniform(0, self.interval)
        while not self.stop.is_set():
            pause = due - time.monotonic()
            if pause > 0 and self.stop.wait(pause):
                break
            index += 1
            sent_at = time.monotonic()
            due = max(due + self.interval, sent_at)
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    sock.settimeout(max(0.01, self.timeout - (time.monotonic() - sent_at)))
                sock.sendall(position(device, index))
                answer = b""
                while len(answer) < 2:
                    chunk = sock.recv(16)
                    if not chunk:
                        raise ConnectionError("closed by the relay")
                    answer += chunk
                self.say(f"ack {device} {index} {sent_at:.6f} {time.monotonic() - sent_at:.6f}")
                if sock.gettimeout() != self.timeout:
                    sock.settimeout(self.timeout)
            except OSError:
                self.say(f"miss {device} {index} {sent_at:.6f}")
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()

    def run(self) -> None:
        threads = [threading.Thread(target=self.device, args=(one,), daemon=True) for one in self.devices]
        for thread in threads:
            thread.start()
        sys.stdin.read()
        self.stop.set()
        for thread in threads:
            thread.join(self.timeout + 1)
        self.say("done")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.trackers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between a device's frames")
    parser.add_argument("--prefix", default="8611", help="IMEI prefix (devices are numbered after it)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer")
    args = parser.parse_args(argv)
    devices = [imei(args.prefix, number) for number in range(args.devices)]
    Trackers(args.port, devices, args.interval, args.timeout).run()


if __name__ == "__main__":
    main()
