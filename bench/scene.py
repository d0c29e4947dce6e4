"""The world of one fault-suite attack: the relay process, its broker or HTTP server, the
well-behaved trackers, and what watches them (RSS, journal size, /healthz). See :mod:`bench.faults`."""

from __future__ import annotations

import contextlib
import getpass
import json
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .fakes import HttpSinkServer, MqttFront
from .proc import ROOT, Relay, free_tcp_udp_port
from .trackers import iso

Key = tuple[str, str]  # (device_id, time) of a report: what every tracked report is known by

#: Budgets of the relay under test (small, so that each attack reaches them in seconds).
JOURNAL_CAP_MB = 64
QUARANTINE_MB = 4
QUARANTINE_PEER_KB = 1024
MAX_BUFFERED_MB = 4
SINK_STALL_S = 2.0
#: /healthz is polled every HEALTHZ_POLL_S; a stall must show within sink_stall_s plus this slack.
HEALTHZ_POLL_S = 0.25
HEALTHZ_SLACK_S = 2.5
#: What "bounded" means for the relay's memory (the README's target with 5,000 connections).
RSS_LIMIT_MB = 150
P99_LIMIT_S = 1.0
WELL_BEHAVED = 3
WELL_BEHAVED_INTERVAL_S = 0.5
#: How long a tracker waits for its answer (bench.trackers' default).
TRACKER_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Size:
    """How long and how big each attack is."""

    name: str
    settle_s: float  # normal operation before the fault
    fault_s: float  # how long a timed fault lasts
    after_s: float  # the trackers keep sending after the fault
    garbage_connections: int
    partial_connections: int
    random_ids: int
    crashes: int
    crash_every_s: float
    drain_timeout_s: float

    @classmethod
    def full(cls) -> Size:
        return cls("full", 2, 10, 4, 60, 1000, 50_000, 5, 3, 90)

    @classmethod
    def quick(cls) -> Size:
        return cls("quick", 1, 4.5, 2, 20, 300, 15_000, 5, 1.5, 45)

    @classmethod
    def smoke(cls) -> Size:
        return cls("smoke", 0.5, 3, 1.5, 4, 50, 500, 2, 1, 30)


@dataclass
class Row:
    """One attack's outcome; ``ok`` when every judged column passed."""

    number: int
    attack: str
    sent: str = ""
    acknowledged: int = 0
    stored: int = 0
    delivered: int = 0
    lost: int = 0
    #: Losses the attack is allowed by design (the reports on a page the attack destroyed).
    allowed_lost: int = 0
    peak_rss_mb: float = 0.0
    journal_mb: float = 0.0
    journal_cap_mb: float = JOURNAL_CAP_MB
    p99_ms: float = 0.0
    #: None: not judged (the attack stops the relay, so the trackers wait by design).
    p99_ok: bool | None = None
    resumed: bool | None = None
    healthz: str = ""
    #: None: not judged (the attack stalls no sink).
    healthz_ok: bool | None = None
    #: The attack's own checks: what each fix promises, by name.
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: str = ""
    error: str = ""
    seconds: float = 0.0

    def failures(self) -> list[str]:
        if self.skipped:
            return []
        failed = [f"error: {self.error}"] if self.error else []
        if self.lost > self.allowed_lost:
            failed.append(f"lost {self.lost}")
        if self.peak_rss_mb > RSS_LIMIT_MB:
            failed.append(f"peak RSS {self.peak_rss_mb:.0f} MB")
        if self.journal_mb > self.journal_cap_mb:
            failed.append("journal over its cap")
        if self.p99_ok is False:
            failed.append(f"p99 {self.p99_ms:.0f} ms")
        if self.resumed is False:
            failed.append("forwarding did not resume")
        if self.healthz_ok is False:
            failed.append("stall not shown by /healthz")
        failed += [name for name, passed in self.checks.items() if not passed]
        return failed

    @property
    def ok(self) -> bool:
        return not self.failures()


# -- the parts of a scene ----------------------------------------------------------------------------


class Mosquitto:
    """A mosquitto on a free loopback port, queueing without limit; ``kill()`` (SIGKILL) and ``start()``
    again on the same port. With ``persistence`` it saves its state every second, so a persistent
    subscriber's session survives the kill."""

    def __init__(self, directory: Path, *, persistence: bool = False) -> None:
        self.executable = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.executable).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.directory = directory
        self.port = free_tcp_udp_port()
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"user {getpass.getuser()}",
            "max_queued_messages 0",
        ]
        if persistence:
            lines += ["persistence true", f"persistence_location {directory}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        self.config = directory / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.executable, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_listening(self.port, 10, "mosquitto")

    def wait_saved(self, timeout: float = 10) -> None:
        """Block until the broker has saved its state (the subscriber's session) after this call."""
        database = self.directory / "mosquitto.db"
        since = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if database.exists() and database.stat().st_mtime > since:
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not save its state")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


def _wait_listening(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


class Subscriber:
    """Every report the relay published under ``faults/#``, by (device_id, time), first arrival kept."""

    def __init__(self, broker: Mosquitto, *, persistent: bool = False) -> None:
        self.lock = threading.Lock()
        self.first: dict[Key, float] = {}
        self.order: list[Key] = []
        self.messages = 0
        subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"faults-sub-{time.monotonic_ns()}",
            clean_session=not persistent,
        )
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda client, *_: client.subscribe("faults/#", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the subscriber could not subscribe")

    def _message(self, _client: object, _userdata: object, message: paho.MQTTMessage) -> None:
        if message.topic.endswith("/status"):
            return
        document = json.loads(message.payload)
        key = (document.get("device_id"), document.get("time"))
        with self.lock:
            self.messages += 1
            if key not in self.first:
                self.first[key] = time.monotonic()
                self.order.append(key)

    def keys(self) -> set[Key]:
        with self.lock:
            return set(self.first)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Frame:
    device: str
    index: int
    sent_at: float
    latency: float | None  # None: not answered

    @property
    def key(self) -> Key:
        return (self.device, iso(self.index))


class TrackerProcess:
    """:mod:`bench.trackers` as a subprocess; ``frames`` fills as it reports."""

    def __init__(self, port: int, devices: int, interval: float, prefix: str) -> None:
        self.frames: list[Frame] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.trackers", "--port", str(port), "--devices", str(devices),
             "--interval", str(interval), "--prefix", prefix],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            parts = line.split()
            if parts and parts[0] == "ack":
                self.frames.append(Frame(parts[1], int(parts[2]), float(parts[3]), float(parts[4])))
            elif parts and parts[0] == "miss":
                self.frames.append(Frame(parts[1], int(parts[2]), float(parts[3]), None))

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(5)


def vm_rss(pid: int) -> int:
    """Resident bytes of ``pid`` (``VmRSS`` of /proc/<pid>/status); 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def http_get(port: int, path: str, timeout: float = 5) -> tuple[int, bytes]:
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def metric(port: int, name: str) -> float:
    """The sum of a Prometheus counter or gauge over its labels, from the relay's ``/metrics``."""
    _, body = http_get(port, "/metrics")
    total = 0.0
    for line in body.decode(errors="replace").splitlines():
        if re.match(rf"{re.escape(name)}(\{{| )", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _reasons(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [str(node["reason"])] if node.get("ok") is False and "reason" in node else []
        return found + [reason for value in node.values() for reason in _reasons(value)]
    return []


# -- a scene: one relay, its broker or server, its trackers, its watchers ----------------------------


class Scene:
    """One attack's world. ``sink``: ``mqtt`` (straight to mosquitto), ``front`` (through
    :class:`MqttFront`, which can misbehave), ``http`` (an ``http`` sink to :class:`HttpSinkServer`)."""

    def __init__(
        self,
        work: Path,
        size: Size,
        name: str,
        *,
        sink: str = "mqtt",
        persistent: bool = False,
        listen: dict[str, Any] | None = None,
        journal: dict[str, Any] | None = None,
        sink_settings: dict[str, Any] | None = None,
        load: int = 0,
        load_interval: float = 0.1,
    ) -> None:
        self.size = size
        self.name = name
        self.dir = work / name
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        self.port = free_tcp_udp_port()
        self.status_port = free_tcp_udp_port()
        self.load = load
        self.load_interval = load_interval
        self.broker = Mosquitto(self.dir, persistence=persistent) if sink in ("mqtt", "front") else None
        self.persistent = persistent
        self.front = MqttFront(self.broker.port) if sink == "front" and self.broker else None
        self.http = HttpSinkServer() if sink == "http" else None
        self.subscriber: Subscriber | None = None
        self.config = self._write_config(sink, listen or {}, journal or {}, sink_settings or {})
        self.relay = Relay(self.config, self.port)
        self.trackers: list[TrackerProcess] = []
        self.well_behaved: TrackerProcess | None = None
        #: Reports the attack itself sent and saw acknowledged, by key.
        self.acked_extra: set[Key] = set()
        self.fault_start = 0.0
        self.fault_end = 0.0
        self.final_acked: set[Key] = set()
        self.final_delivered: set[Key] = set()
        self.peak_rss = 0
        self.peak_journal = 0
        self.health: list[tuple[float, int, list[str]]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _write_config(
        self, sink: str, listen: dict[str, Any], journal: dict[str, Any], settings: dict[str, Any]
    ) -> Path:
        def table(name: str, values: dict[str, Any]) -> list[str]:
            return [name] + [f"{key} = {json.dumps(value)}" for key, value in values.items()]

        lines = table("[relay]", {"site": "faults", "data_dir": str(self.data), "log_level": "info"})
        lines += table(
            "[listen]",
            {
                "host": "127.0.0.1",
                "port": self.port,
                "max_connections": 100_000,
                "max_connections_per_ip": 100_000,
                "max_buffered_mb": MAX_BUFFERED_MB,
                **listen,
            },
        )
        lines += table(
            "[journal]",
            {
                "max_db_mb": JOURNAL_CAP_MB,
                "quarantine_max_mb": QUARANTINE_MB,
                "quarantine_peer_max_kb": QUARANTINE_PEER_KB,
                **journal,
            },
        )
        lines += table("[status]", {"listen": f"127.0.0.1:{self.status_port}", "sink_stall_s": SINK_STALL_S})
        common = {"retry_min_s": 0.2, "retry_max_s": 1.0}
        if sink in ("mqtt", "front"):
            assert self.broker is not None
            port = self.front.port if self.front else self.broker.port
            values = {"name": "broker", "type": "mqtt", "url": f"mqtt://127.0.0.1:{port}",
                      "topic_prefix": "faults", "inflight": 50, **common, **settings}
            lines += table("[[sinks]]", values)
        elif sink == "http":
            assert self.http is not None
            values = {"name": "central", "type": "http", "url": self.http.url, "batch_max_age_s": 0.2,
                      "timeout_s": 5, "request_deadline_s": 10, **common, **settings}
            lines += table("[[sinks]]", values)
        path = self.dir / "relay.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- running -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.broker is not None:
            self.broker.start()
            self.subscriber = Subscriber(self.broker, persistent=self.persistent)
            if self.persistent:
                self.broker.wait_saved()
        self.relay.start()
        for target in (self._sample, self._poll_health):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        self.well_behaved = TrackerProcess(self.port, WELL_BEHAVED, WELL_BEHAVED_INTERVAL_S, "8611")
        self.trackers.append(self.well_behaved)
        time.sleep(self.size.settle_s)

    def start_load(self, devices: int | None = None, interval: float | None = None) -> TrackerProcess:
        """More trackers (IMEIs 8622…), sending every ``interval`` s: load beside the well-behaved ones."""
        load = TrackerProcess(self.port, devices or self.load, interval or self.load_interval, "8622")
        self.trackers.append(load)
        return load

    def begin_fault(self) -> None:
        self.fault_start = time.monotonic()

    def end_fault(self) -> None:
        self.fault_end = time.monotonic()

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            process = self.relay.process
            if process is not None:
                self.peak_rss = max(self.peak_rss, vm_rss(process.pid))
            self.peak_journal = max(self.peak_journal, self.journal_bytes())

    def journal_bytes(self) -> int:
        total = 0
        for path in self.data.glob("journal.sqlite3*"):
            if ".damaged-" in path.name:
                continue
            with contextlib.suppress(OSError):
                total += path.stat().st_size
        return total

    def _poll_health(self) -> None:
        while not self._stop.wait(HEALTHZ_POLL_S):
            code, body = http_get(self.status_port, "/healthz", timeout=2)
            reasons: list[str] = []
            if code == 503:
                try:
                    reasons = _reasons(json.loads(body))
                except ValueError:
                    reasons = [body[:200].decode(errors="replace")]
            self.health.append((time.monotonic(), code, reasons))

    def kill_relay(self) -> None:
        """SIGKILL: the relay vanishes as in a power cut."""
        assert self.relay.process is not None
        self.relay.process.kill()
        self.relay.process.wait()
        self.relay.process = None

    def logged(self, text: str) -> bool:
        return any(text in line for line in list(self.relay.log))

    def delivered(self) -> set[Key]:
        if self.subscriber is not None:
            return self.subscriber.keys()
        if self.http is not None:
            with self.http.lock:
                return {(report.get("device_id"), report.get("time")) for report in self.http.delivered}
        return set()

    def acked(self) -> set[Key]:
        keys = set(self.acked_extra)
        for tracker in self.trackers:
            keys |= {frame.key for frame in tracker.frames if frame.latency is not None}
        return keys

    def wait_delivered(self, wanted: set[Key], quiet_s: float = 5.0) -> None:
        """Until every wanted report was delivered, or deliveries stopped for ``quiet_s``, or the
        drain timeout."""
        deadline = time.monotonic() + self.size.drain_timeout_s
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            delivered = self.delivered()
            if wanted <= delivered:
                return
            if len(delivered) != seen:
                seen, since = len(delivered), time.monotonic()
            elif time.monotonic() - since > quiet_s:
                return
            time.sleep(0.1)

    def stored(self) -> set[Key]:
        """Every report in the journal (``relay export``; run once the relay has stopped)."""
        done = subprocess.run(
            [sys.executable, "-m", "relay", "export", "--config", str(self.config)],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )
        keys = set()
        for line in done.stdout.splitlines():
            try:
                document = json.loads(line)
            except ValueError:
                continue
            keys.add((document.get("device_id"), document.get("time")))
        return keys

    def finish(self, row: Row, *, expect_stall: bool = False, judge_p99: bool = True) -> Row:
        """Let the trackers go on for ``after_s``, stop them, wait for the delivery, stop the relay,
        and fill the row's common columns."""
        if not self.fault_end:
            self.end_fault()
        time.sleep(self.size.after_s)
        for tracker in self.trackers:
            tracker.stop()
        acked = self.acked()
        self.wait_delivered(acked)
        delivered = self.delivered()
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self.relay.stop()
        stored = self.stored()
        self.final_acked, self.final_delivered = acked, delivered
        row.acknowledged = len(acked)
        row.stored = len(acked & stored)
        row.delivered = len(acked & delivered)
        row.lost = len(acked - stored - delivered)
        row.peak_rss_mb = round(self.peak_rss / 1e6, 1)
        row.journal_mb = round(self.peak_journal / 1e6, 1)
        assert self.well_behaved is not None
        if judge_p99:  # an unanswered frame counts as answered at the trackers' timeout
            latencies = [frame.latency or TRACKER_TIMEOUT_S for frame in self.well_behaved.frames]
        else:  # the relay was down by design: the frames it could answer
            latencies = [frame.latency for frame in self.well_behaved.frames if frame.latency is not None]
        row.p99_ms = round(percentile(latencies, 0.99) * 1000, 1)
        row.p99_ok = row.p99_ms < P99_LIMIT_S * 1000 if judge_p99 else None
        after = {
            frame.key
            for frame in self.well_behaved.frames
            if frame.latency is not None and frame.sent_at > self.fault_end
        }
        row.resumed = bool(after) and after <= delivered
        if not row.resumed:
            undelivered = len(after - delivered)
            row.notes.append(f"{undelivered} of {len(after)} tracker reports after the fault undelivered")
        row.healthz, row.healthz_ok = self._health_verdict(expect_stall)
        return row

    def _health_verdict(self, expect_stall: bool) -> tuple[str, bool | None]:
        during = [(at, code, reasons) for at, code, reasons in self.health if at >= self.fault_start]
        unhealthy = [(at, reasons) for at, code, reasons in during if code == 503]
        if not expect_stall:
            if not unhealthy:
                return "200 throughout", None
            return f"503 at times: {'; '.join(unhealthy[0][1])[:70]}", None
        limit = SINK_STALL_S + HEALTHZ_SLACK_S
        words = ("sink", "deliver", "disconnected")
        stalls = [(at, why) for at, why in unhealthy if any(word in " ".join(why) for word in words)]
        if not stalls:
            return "no 503 for the stall", False
        at, reasons = stalls[0]
        after = at - self.fault_start
        return f"503 after {after:.1f} s: {'; '.join(reasons)[:70]}", after <= limit

    def close(self) -> None:
        self._stop.set()
        for tracker in self.trackers:
            tracker.stop()
        self.relay.stop()
        if self.subscriber is not None:
            self.subscriber.close()
        if self.broker is not None:
            self.broker.kill()
        if self.front is not None:
            self.front.close()
        if self.http is not None:
            self.http.close()


@contextmanager
def scene(work: Path, size: Size, name: str, **options: Any) -> Iterator[Scene]:
    made = Scene(work, size, name, **options)
    try:
        made.start()
        yield made
    finally:
        made.close()


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
