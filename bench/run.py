"""``python -m bench [--quick] [--json]``: the relay measured against its physical limits, in one run.

Core sharing (2 cores): the relay runs pinned to CPU 0 (its trio thread and its SQLite writer thread
share that core); load generators and mosquitto run pinned to CPU 1. The raw-SQLite limit, the bare
paho limit and the decode figures run on CPU 0 too, so every figure and its limit had one core.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from . import decode, limits, peer
from .floors import FLOORS
from .proc import ROOT, Broker, Relay, Usage, free_tcp_udp_port, write_config

RELAY_CPU = 0
LOAD_CPU = 1
KB = 1024
MB = 1024 * 1024
#: How long the relay is left alone before its idle size is read.
SETTLE_S = 1.0


@dataclass(frozen=True)
class Profile:
    """How big each measurement is."""

    name: str
    ingest_tcp: int
    ingest_udp: int
    ingest_warmup_s: float
    ingest_s: float
    raw_rows: int
    drain_reports: int
    idle_connections: int
    wear_rate: int
    wear_warmup_s: float
    wear_s: float
    decode_s: float
    startups: int
    #: gps103-only TCP devices for the relay against the trio floor.
    floor_tcp: int
    #: The light open-loop load: devices, each sending every ``light_interval_s``, for ``light_s``.
    light_devices: int
    light_interval_s: float
    light_s: float
    #: The drain against a mosquitto bridge: backlog size and uplink outages (seconds).
    peer_backlog: int
    outages_s: tuple[float, ...]

    @classmethod
    def full(cls) -> Profile:
        return cls(
            "full", 2000, 500, 3.0, 20.0, 200_000, 200_000, 5000, 500, 3.0, 15.0, 1.0, 5,
            2000, 20, 0.1, 15.0, 30_000, (15.0, 60.0),
        )  # fmt: skip

    @classmethod
    def quick(cls) -> Profile:
        return cls(
            "quick", 1000, 250, 2.0, 6.0, 100_000, 50_000, 5000, 500, 2.0, 5.0, 0.3, 3,
            1000, 20, 0.1, 5.0, 10_000, (5.0,),
        )  # fmt: skip

    @classmethod
    def smoke(cls) -> Profile:
        """Every code path, tiny: for the test suite, not for figures."""
        return cls(
            "smoke", 8, 3, 0.3, 0.5, 2000, 500, 20, 20, 0.3, 0.5, 0.02, 1,
            8, 4, 0.1, 0.5, 200, (0.5,),
        )  # fmt: skip


TARGETS = {
    "ingest_reports_per_s": 20_000,
    "ingest_ratio": 0.5,
    "ack_p99_ms": 50,
    "drain_ratio": 0.8,
    "rss_idle_mb": 60,
    "rss_connections_mb": 150,
    "bytes_per_report": 1 * KB,
    "text_decode_frames_per_s": 100_000,
    "decode_floor_ratio": 0.7,
    "startup_s": 1.0,
}


#: Text protocols that must also reach ``text_decode_frames_per_s`` against their floor (issue 17.5).
FAST_TEXT_PROTOCOLS = frozenset({"gps103", "tk103"})


def _pinned(cpu: int) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, {cpu})


def _load(port: int, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.load", "--port", str(port), "--cpu", str(LOAD_CPU), *arguments],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _result(line: str) -> dict[str, Any]:
    return json.loads(line.removeprefix("result "))


# -- measurements -------------------------------------------------------------------------------------


def _drive(
    server: Relay, *arguments: str, trace_s: float | None = None
) -> tuple[dict[str, Any], Usage, Usage, dict[str, int] | None]:
    """Run the load generator against ``server`` (the relay or the floor) until it reports; return its
    result and the server's usage at the start and the end of the measured window (and, with
    ``trace_s``, the fsync counts strace saw over that many seconds from the start)."""
    load = _load(server.port, *arguments)
    assert load.stdout is not None
    before = after = None
    tracer = None
    result: dict[str, Any] = {}
    for line in load.stdout:
        if line.startswith("start"):
            before = server.usage()
            if trace_s is not None:
                tracer = _strace(server.pid, trace_s)
        elif line.startswith("stop"):
            after = server.usage()
        elif line.startswith("result "):
            result = _result(line)
    load.wait()
    counts = None
    if tracer is not None:
        _, errors = tracer.communicate()
        counts = _syscall_counts(errors)
    if before is None or after is None or not result:
        raise RuntimeError(f"load generator failed (exit {load.returncode})")
    return result, before, after, counts


def _served(result: dict[str, Any], before: Usage, after: Usage) -> dict[str, Any]:
    return {
        "reports": result["reports"],
        "reports_per_s": result["reports"] / result["window_s"],
        "ack_p50_ms": result["latency_p50_ms"],
        "ack_p99_ms": result["latency_p99_ms"],
        "closed": result["closed"],
        "cpu_cores": (after.cpu_s - before.cpu_s) / (after.at - before.at),
    }


def floor_ingest(work: Path, profile: Profile, say: Callable[[str], None]) -> dict[str, Any]:
    """The relay and the trio floor (bench/floor.py), one after the other, under the same gps103 load."""
    directory = work / "floor"
    directory.mkdir()
    arguments = (
        "--tcp",
        str(profile.floor_tcp),
        "--only",
        "gps103",
        "--warmup",
        str(profile.ingest_warmup_s),
        "--duration",
        str(profile.ingest_s),
    )
    say(f"ingest against the trio floor: {profile.floor_tcp} gps103 TCP devices, relay then floor")
    port = free_tcp_udp_port()
    with Relay(write_config(directory, port), port, cpu=RELAY_CPU) as relay:
        relay.start()
        ours = _served(*_drive(relay, *arguments)[:3])
    port = free_tcp_udp_port()
    database = directory / "floor.sqlite3"
    command = [sys.executable, "-m", "bench.floor", "--port", str(port), "--database", str(database)]
    with Relay(directory / "relay.toml", port, cpu=RELAY_CPU, command=command) as server:
        server.start()
        floor = _served(*_drive(server, *arguments)[:3])
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    stored = db.execute("SELECT count(*) FROM reports").fetchone()[0]
    db.close()
    if stored < floor["reports"]:
        raise RuntimeError(f"the floor acknowledged {floor['reports']} reports but stored {stored}")
    return {
        "devices": profile.floor_tcp,
        "relay": ours,
        "floor": floor,
        "floor_stored": stored,
        "ratio": ours["reports_per_s"] / floor["reports_per_s"],
    }


def light(work: Path, profile: Profile, say: Callable[[str], None]) -> dict[str, Any]:
    """A light open-loop load: ack latency, fsyncs/s and bytes written per report when nothing queues."""
    port = free_tcp_udp_port()
    directory = work / "light"
    directory.mkdir()
    say(
        f"light load: {profile.light_devices} TCP devices each sending every "
        f"{profile.light_interval_s * 1000:g} ms (open loop), {profile.light_s:g} s"
    )
    with Relay(write_config(directory, port), port, cpu=RELAY_CPU) as relay:
        relay.start()
        result, before, after, counts = _drive(
            relay,
            "--tcp",
            str(profile.light_devices),
            "--interval",
            str(profile.light_interval_s),
            "--open-loop",
            "--warmup",
            str(profile.wear_warmup_s),
            "--duration",
            str(profile.light_s),
            trace_s=profile.light_s,
        )
    figures = _served(result, before, after)
    figures.update(
        devices=profile.light_devices,
        interval_s=profile.light_interval_s,
        bytes_per_report=(after.write_bytes - before.write_bytes) / max(result["reports"], 1),
        fsyncs_per_s=sum(counts.values()) / profile.light_s if counts is not None else None,
    )
    return figures


def ingest(work: Path, profile: Profile, say: Callable[[str], None]) -> dict[str, Any]:
    """Devices sending as fast as their acknowledgements allow; then the raw-SQLite limit on the same rows."""
    port = free_tcp_udp_port()
    directory = work / "ingest"
    directory.mkdir()
    config = write_config(directory, port)
    say(f"ingest: {profile.ingest_tcp} TCP + {profile.ingest_udp} UDP devices, {profile.ingest_s:g} s")
    with Relay(config, port, cpu=RELAY_CPU) as relay:
        relay.start()
        result, before, after, _ = _drive(
            relay,
            "--tcp",
            str(profile.ingest_tcp),
            "--udp",
            str(profile.ingest_udp),
            "--warmup",
            str(profile.ingest_warmup_s),
            "--duration",
            str(profile.ingest_s),
        )
    database = directory / "data" / "journal.sqlite3"
    rows = limits.committed_rows(database, profile.raw_rows)
    say(f"ingest limit: {profile.raw_rows} rows by plain sqlite3 executemany")
    os.sched_setaffinity(0, {RELAY_CPU})
    try:
        raw = limits.raw_sqlite(directory, rows, total=profile.raw_rows, batch=2000, synchronous="full")
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    window = after.at - before.at
    rate = result["reports"] / result["window_s"]
    return {
        "devices_tcp": profile.ingest_tcp,
        "devices_udp": profile.ingest_udp,
        "window_s": result["window_s"],
        "reports": result["reports"],
        "reports_per_s": rate,
        "ack_p50_ms": result["latency_p50_ms"],
        "ack_p99_ms": result["latency_p99_ms"],
        "tcp_ack_p50_ms": result["tcp_latency_p50_ms"],
        "tcp_ack_p99_ms": result["tcp_latency_p99_ms"],
        "udp_ack_p50_ms": result["udp_latency_p50_ms"],
        "udp_ack_p99_ms": result["udp_latency_p99_ms"],
        "udp_reports": result["udp_frames"],
        "udp_retries": result["retries"],
        "closed": result["closed"],
        "relay_cpu_cores": (after.cpu_s - before.cpu_s) / window,
        "load_cpu_cores": result["cpu_s"] / result["window_s"],
        "raw_sqlite_rows_per_s": raw["rows_per_s"],
        "raw_sqlite_batch": 2000,
        "ratio": rate / raw["rows_per_s"],
    }


def _fill_backlog(database: Path, reports: int) -> int:
    """A journal holding ``reports`` undelivered reports from many devices; returns its last seq.

    A few thousand reports go through the relay's own write path; SQL then copies them until the
    backlog is big enough (the copies keep each device's order).
    """
    from datetime import UTC, datetime

    from drivers import Transport, get
    from relay.journal import Entry, Journal

    from .frames import device

    journal = Journal.open(database, site="bench")
    entries = []
    now = datetime.now(UTC)
    for index in range(min(reports, 2000)):
        made = device(index, Transport.TCP)
        session = get(made.protocol).new_session(Transport.TCP)
        session.receive_data(made.frame)
        for frame in session.frames():
            for report in session.decode(frame, now=now).reports:
                entries.append(Entry(report, frame, "tcp", "127.0.0.1:40000", now))
    journal.write_now(entries)
    journal.close()
    db = sqlite3.connect(database, isolation_level=None)
    columns = limits.REPORT_COLUMNS
    while (count := db.execute("SELECT count(*) FROM reports").fetchone()[0]) < reports:
        db.execute(
            f"INSERT INTO reports ({columns}) SELECT {columns} FROM reports ORDER BY seq LIMIT ?",
            (reports - count,),
        )
    last = db.execute("SELECT max(seq) FROM reports").fetchone()[0]
    db.close()
    return last


def _messages(database: Path, prefix: str) -> list[tuple[str, bytes]]:
    """Exactly the topics and payloads the relay's MQTT sink publishes for this journal."""
    from relay.journal import Journal
    from relay.sinks._mqtt import payload_for, topic_for

    journal = Journal.open(database, site="bench")
    messages = []
    seq = 0
    try:
        while batch := journal.read_after(seq, 10_000):
            messages.extend((topic_for(prefix, report), payload_for(report)) for report in batch)
            seq = batch[-1].seq
    finally:
        journal.close()
    return messages


def drain(work: Path, profile: Profile, say: Callable[[str], None]) -> dict[str, Any]:
    """A backlog published at QoS 1 until empty; then a bare paho loop with the same messages."""
    directory = work / "drain"
    (directory / "data").mkdir(parents=True)
    database = directory / "data" / "journal.sqlite3"
    say(f"drain: filling a backlog of {profile.drain_reports} reports")
    last = _fill_backlog(database, profile.drain_reports)
    messages = _messages(database, "bench")
    broker = Broker(directory, cpu=LOAD_CPU)
    try:
        port = free_tcp_udp_port()
        inflight = 50
        config = write_config(directory, port, mqtt_url=f"mqtt://127.0.0.1:{broker.port}", inflight=inflight)
        say("drain: relay publishing to mosquitto")
        with Relay(config, port, cpu=RELAY_CPU) as relay:
            relay.start()
            started = relay.wait_log("mqtt_connected")
            before = relay.usage()
            reader = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
            floor = 0
            deadline = started + 600
            while floor < last and time.monotonic() < deadline:
                time.sleep(0.02)
                row = reader.execute("SELECT floor_seq FROM sinks WHERE name = 'broker'").fetchone()
                floor = row[0] if row else 0
            finished = time.monotonic()
            after = relay.usage()
            reader.close()
            if floor < last:
                raise RuntimeError(f"drain did not finish: {floor} of {last}")
        say("drain limit: bare paho publish loop")
        os.sched_setaffinity(0, {RELAY_CPU})
        try:
            bare = limits.bare_paho(broker.port, messages, inflight=inflight)
        finally:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    finally:
        broker.stop()
    rate = len(messages) / (finished - started)
    return {
        "reports": len(messages),
        "inflight": inflight,
        "seconds": finished - started,
        "reports_per_s": rate,
        "relay_cpu_cores": (after.cpu_s - before.cpu_s) / (after.at - before.at),
        "written_bytes_per_report": (after.write_bytes - before.write_bytes) / len(messages),
        "bare_paho_per_s": bare["messages_per_s"],
        "ratio": rate / bare["messages_per_s"],
    }


def memory(work: Path, profile: Profile, say: Callable[[str], None]) -> dict[str, Any]:
    """Resident size idle, then with idle TCP connections (each logged in once)."""
    port = free_tcp_udp_port()
    directory = work / "memory"
    directory.mkdir()
    config = write_config(directory, port)
    say(f"memory: idle, then {profile.idle_connections} idle TCP connections")
    with Relay(config, port, cpu=RELAY_CPU) as relay:
        relay.start()
        time.sleep(SETTLE_S)
        idle = relay.usage().rss
        load = _load(port, "--tcp", str(profile.idle_connections), "--hold")
        assert load.stdout is not None and load.stdin is not None
        for line in load.stdout:
            if line.startswith("ready"):
                break
        else:
            raise RuntimeError("load generator never held its connections")
        time.sleep(SETTLE_S)
        held = relay.usage().rss
        load.stdin.close()
        load.wait()
    return {
        "rss_idle_mb": idle / MB,
        "connections": profile.idle_connections,
        "rss_connections_mb": held / MB,
        "bytes_per_connection": (held - idle) / profile.idle_connections,
    }


def _strace(pid: int, seconds: float) -> subprocess.Popen[str] | None:
    if not shutil.which("strace"):
        return None
    return subprocess.Popen(
        [
            "timeout",
            "-s",
            "INT",
            str(seconds),
            "strace",
            "-c",
            "-f",
            "-e",
            "trace=fsync,fdatasync",
            "-p",
            str(pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _syscall_counts(output: str) -> dict[str, int]:
    counts = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in ("fsync", "fdatasync") and parts[3].isdigit():
            counts[parts[-1]] = int(parts[3])
    return counts


def wear(work: Path, profile: Profile, say: Callable[[str], None]) -> dict[str, Any]:
    """Bytes written per report (/proc/<pid>/io write_bytes) and fsyncs/s (strace -c) at a steady rate."""
    port = free_tcp_udp_port()
    directory = work / "wear"
    directory.mkdir()
    config = write_config(directory, port)
    say(f"wear: {profile.wear_rate} reports/s for {profile.wear_s:g} s")
    with Relay(config, port, cpu=RELAY_CPU) as relay:
        relay.start()
        result, before, after, traced = _drive(
            relay,
            "--tcp",
            str(profile.wear_rate),
            "--interval",
            "1",
            "--warmup",
            str(profile.wear_warmup_s),
            "--duration",
            str(profile.wear_s),
            trace_s=profile.wear_s,
        )
    seconds = after.at - before.at
    counts = traced or {}
    syncs = sum(counts.values()) if traced is not None else None
    return {
        "reports": result["reports"],
        "reports_per_s": result["reports"] / result["window_s"],
        "written_bytes": after.write_bytes - before.write_bytes,
        "bytes_per_report": (after.write_bytes - before.write_bytes) / max(result["reports"], 1),
        "fsyncs_per_s": syncs / profile.wear_s if syncs is not None else None,
        "syscalls": counts,
        "seconds": seconds,
        "method": "write_bytes from /proc/<pid>/io; fsync+fdatasync counted by strace -c -f",
    }


def decoding(profile: Profile, say: Callable[[str], None]) -> dict[str, Any]:
    say("decode: every protocol's vectors on one core")
    if not decode.VECTORS.is_dir():
        return {"skipped": f"no vectors at {decode.VECTORS} (set RELAY_VECTORS)"}
    os.sched_setaffinity(0, {RELAY_CPU})
    try:
        results: dict[str, Any] = {
            protocol: decode.frames_per_second(protocol, seconds=profile.decode_s)
            for protocol in decode.protocols()
        }
        say("decode floors: each driver against its regex/struct floor, on the vectors the floor covers")
        for protocol in decode.protocols():
            if protocol in FLOORS:
                results[protocol]["floor"] = decode.against_floor(protocol, seconds=profile.decode_s)
        return results
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def startup(work: Path, profile: Profile, say: Callable[[str], None]) -> dict[str, Any]:
    """Process start to the port accepting TCP; the first start creates the journal."""
    say("start-up")
    directory = work / "startup"
    directory.mkdir()
    times = []
    for _ in range(profile.startups):
        port = free_tcp_udp_port()
        with Relay(write_config(directory, port), port, cpu=RELAY_CPU) as relay:
            times.append(relay.start())
    return {
        "runs": len(times),
        "median_s": statistics.median(times),
        "first_s": times[0],
        "max_s": max(times),
    }


# -- the table ----------------------------------------------------------------------------------------


def _n(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ok(passed: bool) -> str:
    return "ok" if passed else "MISS"


def table(results: dict[str, Any]) -> str:
    """The figures, each beside its limit, as a Markdown table."""
    rows: list[tuple[str, str, str, str, str, str]] = []
    if "ingest" in results:
        ing = results["ingest"]
        rows.append(
            (
                f"ingest, reports/s committed ({ing['devices_tcp']} TCP + {ing['devices_udp']} UDP devices)",
                _n(ing["reports_per_s"]),
                f"raw sqlite3 {_n(ing['raw_sqlite_rows_per_s'])}",
                f"{ing['ratio']:.1%}",
                ">= 20,000 and >= 50%",
                _ok(
                    ing["reports_per_s"] >= TARGETS["ingest_reports_per_s"]
                    and ing["ratio"] >= TARGETS["ingest_ratio"]
                ),
            )
        )
        rows.append(
            (
                "ingest, ack latency p50 / p99 ms",
                f"{_n(ing['ack_p50_ms'], 1)} / {_n(ing['ack_p99_ms'], 1)}",
                "",
                "",
                "p99 < 50",
                _ok(ing["ack_p99_ms"] < TARGETS["ack_p99_ms"]),
            )
        )
        rows.append(
            (
                "  of which TCP / UDP: ack p99 ms (UDP reports, resends)",
                f"{_n(ing['tcp_ack_p99_ms'], 1)} / {_n(ing['udp_ack_p99_ms'], 1)}",
                f"({ing['udp_reports']:,} UDP reports, {ing['udp_retries']:,} resent)",
                "",
                "",
                "",
            )
        )
        rows.append(
            (
                "ingest, CPU cores: relay / load generator",
                f"{ing['relay_cpu_cores']:.2f} / {ing['load_cpu_cores']:.2f}",
                "1 core each (pinned)",
                "",
                "",
                "",
            )
        )
    if "floor" in results:
        fl = results["floor"]
        rows.append(
            (
                f"ingest, gps103 reports/s committed ({fl['devices']} TCP devices)",
                _n(fl["relay"]["reports_per_s"]),
                f"trio floor {_n(fl['floor']['reports_per_s'])}",
                f"{fl['ratio']:.1%}",
                "",
                "",
            )
        )
        rows.append(
            (
                "  the same: ack p99 ms, CPU cores",
                f"{_n(fl['relay']['ack_p99_ms'], 1)}, {fl['relay']['cpu_cores']:.2f}",
                f"floor {_n(fl['floor']['ack_p99_ms'], 1)}, {fl['floor']['cpu_cores']:.2f}",
                "",
                "",
                "",
            )
        )
    if "light" in results:
        li = results["light"]
        rows.append(
            (
                f"light load, ack p50 / p99 ms ({li['devices']} TCP devices every "
                f"{li['interval_s'] * 1000:g} ms, open loop: {_n(li['reports_per_s'])} reports/s)",
                f"{_n(li['ack_p50_ms'], 1)} / {_n(li['ack_p99_ms'], 1)}",
                "",
                "",
                "",
                "",
            )
        )
        rows.append(
            (
                "light load, fsync+fdatasync per s; bytes written per report",
                f"{_n(li['fsyncs_per_s'], 1)}; {_n(li['bytes_per_report'])}",
                "",
                "",
                "",
                "",
            )
        )
    if "drain" in results:
        dr = results["drain"]
        rows.append(
            (
                f"drain, reports/s to mosquitto QoS 1 ({dr['reports']:,} backlog)",
                _n(dr["reports_per_s"]),
                f"bare paho {_n(dr['bare_paho_per_s'])}",
                f"{dr['ratio']:.1%}",
                ">= 80%",
                _ok(dr["ratio"] >= TARGETS["drain_ratio"]),
            )
        )
    if "peer" in results:
        pe = results["peer"]
        for outage in pe["outages"].values():
            ours, theirs = outage["relay"], outage["bridge"]
            rows.append(
                (
                    f"drain after a {outage['outage_s']:g} s outage ({pe['backlog']:,} backlog): "
                    "uplink up → all delivered, s",
                    _n(ours["all_delivered_s"], 2),
                    f"mosquitto bridge {_n(theirs['all_delivered_s'], 2)}",
                    "",
                    "",
                    "",
                )
            )
            rows.append(
                (
                    "  the same: first message after the uplink returned, s",
                    _n(ours["first_message_s"], 2),
                    f"mosquitto bridge {_n(theirs['first_message_s'], 2)}",
                    "",
                    "",
                    "",
                )
            )
            rows.append(
                (
                    "  the same: flowing rate, messages/s",
                    _n(ours["flowing_per_s"]),
                    f"mosquitto bridge {_n(theirs['flowing_per_s'])}",
                    f"{ours['flowing_per_s'] / theirs['flowing_per_s']:.1%}"
                    if ours["flowing_per_s"] and theirs["flowing_per_s"]
                    else "",
                    "",
                    "",
                )
            )
    if "memory" in results:
        mem = results["memory"]
        rows.append(
            ("memory, RSS idle MB", _n(mem["rss_idle_mb"], 1), "", "", "<= 60", _ok(mem["rss_idle_mb"] <= 60))
        )
        rows.append(
            (
                f"memory, RSS with {mem['connections']:,} idle TCP connections MB",
                _n(mem["rss_connections_mb"], 1),
                "",
                "",
                "<= 150",
                _ok(mem["rss_connections_mb"] <= TARGETS["rss_connections_mb"]),
            )
        )
        rows.append(("memory, bytes per connection", _n(mem["bytes_per_connection"]), "", "", "", ""))
    if "wear" in results:
        wr = results["wear"]
        rows.append(
            (
                f"SD wear, bytes written per report at {_n(wr['reports_per_s'])} reports/s",
                _n(wr["bytes_per_report"]),
                "",
                "",
                "<= 1,024",
                _ok(wr["bytes_per_report"] <= TARGETS["bytes_per_report"]),
            )
        )
        rows.append(("SD wear, fsync+fdatasync per s", _n(wr["fsyncs_per_s"], 1), "", "", "", ""))
    if "decode" in results:
        dec = results["decode"]
        if "skipped" in dec:
            rows.append(("decode", dec["skipped"], "", "", "", ""))
        for protocol, figures in dec.items():
            if protocol == "skipped":
                continue
            text = protocol in decode.TEXT_PROTOCOLS
            rows.append(
                (
                    f"decode {protocol}, frames/s ({figures['vectors']} vectors)",
                    _n(figures["frames_per_s"]),
                    "",
                    "",
                    ">= 100,000" if text else "",
                    _ok(figures["frames_per_s"] >= TARGETS["text_decode_frames_per_s"]) if text else "",
                )
            )
        for protocol, figures in dec.items():
            if protocol == "skipped" or "floor" not in figures:
                continue
            floor = figures["floor"]
            text = protocol in decode.TEXT_PROTOCOLS
            fast = protocol in FAST_TEXT_PROTOCOLS
            passed = floor["ratio"] >= TARGETS["decode_floor_ratio"] and (
                not fast or floor["driver_per_s"] >= TARGETS["text_decode_frames_per_s"]
            )
            rows.append(
                (
                    f"decode {protocol} vs its {'regex' if text else 'struct'} floor, frames/s"
                    f" ({floor['vectors']} of {floor['usable']} vectors)",
                    _n(floor["driver_per_s"]),
                    f"floor {_n(floor['floor_per_s'])}",
                    f"{floor['ratio']:.1%}",
                    (">= 70%" + (" and >= 100,000" if fast else "")) if text else "",
                    _ok(passed) if text else "",
                )
            )
    if "startup" in results:
        st = results["startup"]
        rows.append(
            (
                f"start-up to listening, s (median of {st['runs']})",
                _n(st["median_s"], 2),
                "",
                "",
                "< 1",
                _ok(st["median_s"] < TARGETS["startup_s"]),
            )
        )
    header = ("figure", "relay", "limit (same run)", "ratio", "target", "")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(header)) + " |",
        "|" + "|".join("-" * (width + 2) for width in widths) + "|",
    ]
    lines += ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in rows]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "cores": (
            "relay, trio floor, raw sqlite3, bare paho, decode and the bridging mosquitto pinned to CPU 0;"
            " load generator, proxy, central mosquitto and subscriber to CPU 1"
        ),
    }


#: The measurements, in the order they run (``--only`` picks some of them).
MEASUREMENTS: tuple[str, ...] = (
    "startup", "decode", "memory", "ingest", "floor", "light", "wear", "drain", "peer"
)  # fmt: skip


def run(
    profile: Profile, say: Callable[[str], None] = lambda _: None, only: frozenset[str] | None = None
) -> dict[str, Any]:
    """Every measurement (or those named in ``only``); the result as ``--json`` prints it."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as name:
        work = Path(name)
        results: dict[str, Any] = {"profile": asdict(profile), "environment": environment()}
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "startup": lambda: startup(work, profile, say),
            "decode": lambda: decoding(profile, say),
            "memory": lambda: memory(work, profile, say),
            "ingest": lambda: ingest(work, profile, say),
            "floor": lambda: floor_ingest(work, profile, say),
            "light": lambda: light(work, profile, say),
            "wear": lambda: wear(work, profile, say),
            "drain": lambda: drain(work, profile, say),
            "peer": lambda: peer.peer_drain(work, profile.peer_backlog, profile.outages_s, say),
        }
        for step in MEASUREMENTS:
            if only is None or step in only:
                results[step] = steps[step]()
    results["bench_seconds"] = time.monotonic() - started
    results["environment"]["load_average_after"] = os.getloadavg()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Measure the relay against its limits."
    )
    parser.add_argument("--quick", action="store_true", help="smaller, shorter measurements (about a minute)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    parser.add_argument(
        "--outages",
        help="uplink outages for the drain against a mosquitto bridge, seconds, comma-separated"
        " (default 15,60; --quick: 5)",
    )
    parser.add_argument(
        "--only",
        help=f"run only these measurements, comma-separated ({', '.join(MEASUREMENTS)}): the table then has"
        " only their rows",
    )
    args = parser.parse_args(argv)
    only = None
    if args.only:
        only = frozenset(name.strip() for name in args.only.split(","))
        if unknown := only - set(MEASUREMENTS):
            parser.error(
                f"unknown measurement(s) {', '.join(sorted(unknown))}; known: {', '.join(MEASUREMENTS)}"
            )
    if os.cpu_count() is None or os.cpu_count() < 2:
        print("the bench needs 2 cores (relay on one, load on the other)", file=sys.stderr)
        return 1
    profile = Profile.quick() if args.quick else Profile.full()
    if args.outages:
        profile = replace(profile, outages_s=tuple(float(x) for x in args.outages.split(",")))
    results = run(profile, say=lambda message: print(message, file=sys.stderr, flush=True), only=only)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table(results))
        print(
            f"\n{results['environment']['cores']}. Python {results['environment']['python']}, "
            f"SQLite {results['environment']['sqlite']}, load average (1/5/15 min) before "
            f"{', '.join(f'{x:.2f}' for x in results['environment']['load_average'])}, after "
            f"{', '.join(f'{x:.2f}' for x in results['environment']['load_average_after'])}; "
            f"bench took {results['bench_seconds']:.0f} s ({profile.name}"
            f"{', only ' + ', '.join(name for name in MEASUREMENTS if name in only) if only else ''})."
        )
    return 0
