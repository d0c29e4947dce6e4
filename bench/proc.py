"""The relay under test as a subprocess, and what /proc says about it."""

from __future__ import annotations

import getpass
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: The repository root: the relay is run from here, as a fresh clone would.
ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: Open files the relay may hold (5,000 connections plus the journal and its sockets).
NOFILE = 65536


def free_tcp_udp_port() -> int:
    """A loopback port free for both TCP and UDP (the relay binds both)."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no loopback port free for both TCP and UDP")


def write_config(
    directory: Path,
    port: int,
    *,
    synchronous: str = "full",
    max_batch: int = 2000,
    mqtt_url: str | None = None,
    inflight: int = 50,
) -> Path:
    """A relay config for the bench: loopback only, no per-IP limit (every simulated device is 127.0.0.1)."""
    lines = [
        "[relay]",
        'site = "bench"',
        f'data_dir = "{directory / "data"}"',
        'log_level = "info"',
        "[listen]",
        'host = "127.0.0.1"',
        f"port = {port}",
        "max_connections = 100000",
        "max_connections_per_ip = 100000",
        "[journal]",
        f'synchronous = "{synchronous}"',
        f"max_batch = {max_batch}",
    ]
    if mqtt_url:
        lines += [
            "[[sinks]]",
            'name = "broker"',
            'type = "mqtt"',
            f'url = "{mqtt_url}"',
            'topic_prefix = "bench"',
            f"inflight = {inflight}",
        ]
    path = directory / "relay.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _limits(cpu: int | None) -> Callable[[], None]:
    def apply() -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
        if soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})

    return apply


@dataclass
class Usage:
    """CPU seconds (all threads), resident bytes and bytes written to storage, at one moment."""

    at: float
    cpu_s: float
    rss: int
    write_bytes: int


def usage(pid: int) -> Usage:
    """Read /proc/<pid>/stat, statm and io (io needs the same user or root)."""
    now = time.monotonic()
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return Usage(now, cpu, rss, int(io["write_bytes"]))


class Relay:
    """``relay run --config FILE`` as a subprocess; its stderr (logfmt) is kept for inspection."""

    def __init__(
        self, config: Path, port: int, *, cpu: int | None = None, command: list[str] | None = None
    ) -> None:
        """``command`` replaces ``relay run --config FILE`` (the bench's floor server is run so too)."""
        self.command = command or [sys.executable, "-m", "relay", "run", "--config", str(config)]
        self.config = config
        self.port = port
        self.cpu = cpu
        self.process: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []
        self.started_at = 0.0
        self.listening_after = 0.0

    def start(self, timeout: float = 15.0) -> float:
        """Start the relay; return seconds from spawning the process to the port accepting TCP."""
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_limits(self.cpu),
        )
        threading.Thread(target=self._collect, daemon=True).start()
        deadline = self.started_at + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                self.listening_after = time.monotonic() - self.started_at
                return self.listening_after
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("relay exited: " + "\n".join(self.log[-20:])) from None
                time.sleep(0.002)
        raise RuntimeError("relay did not listen within {timeout} s: " + "\n".join(self.log[-20:]))

    def _collect(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line.decode(errors="replace").rstrip())

    def wait_log(self, event: str, timeout: float = 15.0) -> float:
        """Wait for a log line with ``event=<event>``; return the monotonic time it was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(f"event={event}" in line for line in self.log):
                return time.monotonic()
            time.sleep(0.005)
        raise RuntimeError(f"relay never logged {event}: " + "\n".join(self.log[-20:]))

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def usage(self) -> Usage:
        return usage(self.pid)

    def stop(self) -> None:
        """SIGTERM (the relay stops cleanly), SIGKILL after 10 s."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class Broker:
    """A mosquitto on a free loopback port, pinned to ``cpu``, queueing without limit; ``extra`` is
    appended to its config (a bridge's ``connection`` section)."""

    def __init__(self, directory: Path, *, cpu: int, name: str = "mosquitto", extra: str = "") -> None:
        executable = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(executable).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.port = free_tcp_udp_port()
        conf = directory / f"{name}.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"user {getpass.getuser()}\nmax_queued_messages 0\n{extra}"
        )
        self.process = subprocess.Popen(
            [executable, "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
