"""The fault suite: each attack of hardening issue 16 against a real relay process.

    python -m bench.faults            # every attack, about 10 minutes on the 2-core development machine
    python -m bench.faults --quick    # shorter and smaller, for CI (about 3 minutes)
    python -m bench.faults --json     # the rows as JSON
    python -m bench.faults --only 2,7 # some attacks only (their numbers)

Each attack runs against ``relay run --config FILE`` (a subprocess, driven only through its config,
sockets, HTTP endpoints and CLI), a real mosquitto (or a real HTTP server where the sink is ``http``),
with three well-behaved gps103 trackers (:mod:`bench.trackers`, their own process) sending every 0.5 s
throughout. A row says what was sent; how many tracked reports were acknowledged, found stored in the
journal (``relay export``) and delivered (the broker's subscriber, or the HTTP server); how many were lost
(acknowledged, but neither stored nor delivered); the relay's peak RSS (``VmRSS`` every 0.2 s) and the
journal's peak size against its cap; the trackers' p99 ack latency; whether forwarding resumed on its own
(every acknowledged tracker report sent after the fault was delivered); and, where the attack stalls a
sink, whether ``/healthz`` said 503 with a reason within ``sink_stall_s`` (plus the poll's slack).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import select
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .proc import ROOT
from .scene import (
    HEALTHZ_SLACK_S,
    MAX_BUFFERED_MB,
    QUARANTINE_MB,
    SINK_STALL_S,
    Key,
    Row,
    Scene,
    Size,
    http_get,
    metric,
    raise_nofile,
    scene,
    vm_rss,
)
from .trackers import index_of, iso, position, report_time

#: Device ids the relay must refuse (README: 1 to 64 printable ASCII characters without spaces).
HOSTILE_IDS = ["x%01y", "x%7Fy", "x%C2%85y", "x%0D%0Ay", "%20", "a%20b", "x" * 65]


# -- the attacks -------------------------------------------------------------------------------------
# Each fills the row it is given; the runner times it and catches what it raises.


def raw_get(port: int, target: str) -> int:
    """The status code of ``GET target`` sent exactly as written (hostile bytes stay hostile)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    return int(answer.split()[1]) if answer.startswith(b"HTTP/") else 0


def hostile_id(work: Path, size: Size, row: Row) -> None:
    with scene(work, size, "01-hostile-id") as s:
        s.begin_fault()
        codes = [raw_get(s.port, f"/?id={query}&lat=52.1&lon=4.3") for query in HOSTILE_IDS]
        stamp = int(report_time(1).timestamp())
        good = raw_get(s.port, f"/?id=good-1&lat=52.1&lon=4.3&timestamp={stamp}")
        if good == 200:
            s.acked_extra.add(("good-1", iso(1)))
        s.end_fault()
        s.finish(row)
        forwarded = {device for device, _ in s.delivered()}
    row.sent = f"{len(HOSTILE_IDS)} hostile ids (control bytes, spaces, 65 chars), then a good one"
    row.checks["hostile ids answered 400"] = all(code == 400 for code in codes)
    row.checks["the good id answered 200 and delivered"] = good == 200 and "good-1" in forwarded
    row.checks["no hostile id forwarded"] = all(dev == "good-1" or dev.isdigit() for dev in forwarded)


def udp_flood(work: Path, size: Size, row: Row) -> None:
    with scene(work, size, "02-udp-flood") as s:
        before = s.journal_bytes()
        s.begin_fault()
        sent = 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
            end = time.monotonic() + size.fault_s
            while time.monotonic() < end:
                for _ in range(50):
                    try:
                        flood.sendto(b"\xee" * 4090 + b"%06d" % (sent % 1_000_000), ("127.0.0.1", s.port))
                        sent += 1
                    except OSError:  # the socket buffer is full: the kernel says so, the flood goes on
                        time.sleep(0.001)
        s.end_fault()
        time.sleep(1)  # what the relay still had to read
        dropped = metric(s.status_port, "relay_quarantine_dropped_frames_total")
        s.finish(row)
        growth = s.peak_journal - before
    row.sent = f"{sent:,} garbage datagrams of 4 KB ({sent * 4096 / 1e6:,.0f} MB) in {size.fault_s:g} s"
    budget = QUARANTINE_MB * 2**20
    row.checks["journal grew less than the quarantine budget + 2 MB"] = growth <= budget + 2 * 2**20
    row.checks["bad input beyond the budget counted, not kept"] = dropped > 0
    row.notes.append(f"journal +{growth / 1e6:.1f} MB; {dropped:,.0f} frames counted, not kept")


def tcp_garbage(work: Path, size: Size, row: Row) -> None:
    garbage = random.Random(3).randbytes(250_000)
    closed = []

    def one() -> None:
        try:
            with socket.create_connection(("127.0.0.1", s.port), timeout=15) as sock:
                sock.sendall(garbage)
                sock.shutdown(socket.SHUT_WR)
                while sock.recv(65536):
                    pass
        except OSError:
            closed.append(1)  # the relay closed first: our bytes were left unread

    with scene(work, size, "03-tcp-garbage") as s:
        before = s.journal_bytes()
        s.begin_fault()
        for start in range(0, size.garbage_connections, 4):
            batch = [threading.Thread(target=one) for _ in range(min(4, size.garbage_connections - start))]
            for thread in batch:
                thread.start()
            for thread in batch:
                thread.join()
        s.end_fault()
        dropped = metric(s.status_port, "relay_quarantine_dropped_frames_total")
        truncated = metric(s.status_port, "relay_quarantine_truncated_frames_total")
        s.finish(row)
        growth = s.peak_journal - before
    total = size.garbage_connections * len(garbage)
    row.sent = f"{size.garbage_connections} connections, each 250 KB of random bytes ({total / 1e6:,.0f} MB)"
    row.checks["journal grew less than the quarantine budget + 2 MB"] = growth <= (QUARANTINE_MB + 2) * 2**20
    row.notes.append(
        f"journal +{growth / 1e6:.1f} MB; quarantined heads cut {truncated:,.0f}, frames counted not kept"
        f" {dropped:,.0f}; {len(closed)} connections closed by the relay before all was sent"
    )


def partial_frames(work: Path, size: Size, row: Row) -> None:
    count = size.partial_connections
    each = int(MAX_BUFFERED_MB * 2**20 * 1.5 / count) + 1000  # together 1.5 times the budget
    raise_nofile(count + 1024)
    with scene(work, size, "04-partial-frames") as s:
        s.begin_fault()
        held = []
        for n in range(count):
            sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            with contextlib.suppress(OSError):
                sock.sendall(b"[SG*88%08d*FFFF*TK," % n + b"\x01" * each)
            held.append(sock)
        time.sleep(size.fault_s)
        overflows = metric(s.status_port, "relay_buffer_overflows_total")
        rss_held = vm_rss(s.relay.pid)
        for sock in held:
            sock.close()
        s.end_fault()
        time.sleep(1)
        rss_after = vm_rss(s.relay.pid)
        s.finish(row)
    row.sent = f"{count} connections, each {each / 1000:.0f} KB into a watch frame never ended, then closed"
    row.checks[f"connections over max_buffered_mb ({MAX_BUFFERED_MB}) closed"] = overflows > 0
    row.notes.append(
        f"{overflows:,.0f} connections closed for the buffer budget; RSS {rss_held / 1e6:.0f} MB while held,"
        f" {rss_after / 1e6:.0f} MB 1 s after they closed"
    )


def udp_random_ids(port: int, total: int, sockets: int) -> tuple[set[Key], int]:
    """``total`` gps103 datagrams, each from a random IMEI, ``sockets`` at a time (each waits for its
    answer, 3 s at most, before sending the next): the keys answered, and the datagrams sent."""
    rng = random.Random(5)
    poller = select.epoll()
    by_fd: dict[int, socket.socket] = {}
    pending: dict[int, tuple[Key, float]] = {}
    acked: set[Key] = set()
    sent = 0

    def send(fd: int) -> None:
        nonlocal sent
        device = f"35{rng.randrange(10**13):013d}"
        with contextlib.suppress(OSError):
            by_fd[fd].send(position(device, 1))
        pending[fd] = ((device, iso(1)), time.monotonic())
        sent += 1

    for _ in range(sockets):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        by_fd[sock.fileno()] = sock
        poller.register(sock.fileno(), select.EPOLLIN)
    for fd in by_fd:
        if sent < total:
            send(fd)
    while pending:
        for fd, _ in poller.poll(0.2):
            try:
                answer = by_fd[fd].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                answer = b""
            if fd in pending:
                if answer:
                    acked.add(pending[fd][0])
                del pending[fd]
                if sent < total:
                    send(fd)
        now = time.monotonic()
        for fd, (_key, at) in list(pending.items()):
            if now - at > 3:
                del pending[fd]
                if sent < total:
                    send(fd)
    for sock in by_fd.values():
        sock.close()
    poller.close()
    return acked, sent


def random_ids(work: Path, size: Size, row: Row) -> None:
    sockets = min(1000, max(10, size.random_ids // 4))
    raise_nofile(sockets + 1024)
    max_devices = max(100, size.random_ids // 4)
    with scene(work, size, "05-random-ids", journal={"max_devices": max_devices}) as s:
        s.begin_fault()
        acked, sent = udp_random_ids(s.port, size.random_ids, sockets)
        s.acked_extra |= acked
        s.end_fault()
        forgotten = metric(s.status_port, "relay_devices_forgotten_total")
        s.finish(row)
    row.sent = f"{sent:,} gps103 datagrams, a random IMEI each, from {sockets} UDP sockets"
    row.checks[f"devices' rows kept within max_devices ({max_devices:,})"] = forgotten > 0
    row.notes.append(f"{len(acked):,} of {sent:,} answered; {forgotten:,.0f} devices' rows forgotten")


def all_delivered(s: Scene, row: Row) -> None:
    row.checks["every acknowledged report delivered"] = s.final_acked <= s.final_delivered


def http_huge(work: Path, size: Size, row: Row) -> None:
    with scene(work, size, "06-http-huge", sink="http") as s:
        assert s.http is not None
        s.begin_fault()
        s.http.mode = "huge"
        time.sleep(size.fault_s)
        s.http.mode = "ok"
        s.end_fault()
        s.finish(row, expect_stall=True)
        all_delivered(s, row)
        huge = s.http.answers.get("huge", 0)
        per_answer = s.http.huge_sent / max(1, huge)
    row.sent = f"{huge} answers of 500 with a {s.http.huge_bytes / 2**20:.0f} MB body, streamed"
    row.checks["answers tried"] = huge >= 1
    row.checks["the relay read at most 16 MB of each answer"] = per_answer < 16 * 2**20
    row.notes.append(f"the server could push {per_answer / 1e6:.1f} MB per answer before the relay hung up")


def http_trickle(work: Path, size: Size, row: Row) -> None:
    deadline = 2.0
    settings = {"request_deadline_s": deadline, "timeout_s": 5}
    with scene(work, size, "07-http-trickle", sink="http", sink_settings=settings) as s:
        assert s.http is not None
        s.http.trickle_s = 1.0
        s.begin_fault()
        s.http.mode = "trickle"
        time.sleep(max(size.fault_s, 2 * deadline + 0.5))
        s.http.mode = "ok"
        s.end_fault()
        fired = s.logged("request_deadline_s")
        s.finish(row, expect_stall=True)
        all_delivered(s, row)
        tries = s.http.answers.get("trickle", 0)
    row.sent = (
        f"{tries} answers trickled, a byte every {s.http.trickle_s:g} s"
        f" (timeout_s 5, request_deadline_s {deadline:g})"
    )
    row.checks["request_deadline_s fired"] = fired


def mqtt_silent(work: Path, size: Size, row: Row) -> None:
    timeout = 1.5
    settings = {"puback_timeout_s": timeout}
    with scene(work, size, "08-mqtt-no-puback", sink="front", sink_settings=settings) as s:
        assert s.front is not None
        s.begin_fault()
        s.front.set_mode("silent")
        time.sleep(max(size.fault_s, 3 * timeout + 0.5))
        s.front.set_mode("proxy")
        s.end_fault()
        s.finish(row, expect_stall=True)
        all_delivered(s, row)
        connects = len(s.front.connects)
        publishes = s.front.publishes
    row.sent = f"a broker that CONNACKs, never PUBACKs: {connects} connections, {publishes} publishes unacked"
    row.checks["PUBACK deadline fired"] = s.logged("puback_timeout_s")
    row.checks["reconnected and sent the window again"] = connects >= 2


def mqtt_hangup(work: Path, size: Size, row: Row) -> None:
    retry_min = 0.1
    settings = {"retry_min_s": retry_min, "retry_max_s": 2.0}
    with scene(work, size, "09-mqtt-hangup", sink="front", sink_settings=settings) as s:
        assert s.front is not None
        s.begin_fault()
        s.front.set_mode("hangup")
        window = max(size.fault_s, 4.0)
        time.sleep(window)
        s.front.set_mode("proxy")
        s.end_fault()
        connects = list(s.front.connects)
        s.finish(row, expect_stall=True)
        all_delivered(s, row)
    intervals = [later - earlier for earlier, later in itertools.pairwise(connects)]
    shown = ", ".join(f"{interval:.2f}" for interval in intervals[:8])
    row.sent = (
        f"a broker that drops the relay at each PUBLISH: {len(connects)} connects in {window:g} s"
        f" ({shown} s apart)"
    )
    # Reset at every CONNACK the backoff would stay near retry_min_s: a later wait far longer says it grew.
    row.checks["reconnects slowed down"] = len(intervals) >= 3 and max(intervals[2:]) > 4 * retry_min
    row.checks["no hammering"] = len(connects) < window / retry_min / 2


def broker_kill(work: Path, size: Size, row: Row) -> None:
    down = max(size.fault_s, SINK_STALL_S + HEALTHZ_SLACK_S + 0.5)
    with scene(work, size, "10-broker-kill", persistent=True, load=20) as s:
        assert s.broker is not None and s.subscriber is not None
        s.start_load()
        time.sleep(1)
        s.begin_fault()
        s.broker.kill()
        time.sleep(down)
        s.broker.start()
        s.end_fault()
        s.finish(row, expect_stall=True)
        all_delivered(s, row)
        arrival: dict[str, list[int]] = {}
        for device, when in s.subscriber.order:
            if device and device.startswith("86") and when:
                arrival.setdefault(device, []).append(index_of(when))
    row.sent = f"mosquitto SIGKILLed for {down:g} s under 20 trackers x 10/s + 3 x 2/s, restarted"
    row.checks["order kept per device"] = all(indexes == sorted(indexes) for indexes in arrival.values())


def corrupt_header(work: Path, size: Size, row: Row) -> None:
    with scene(work, size, "11-corrupt-header", sink="front") as s:
        assert s.front is not None
        s.front.set_mode("down")  # the uplink goes: the last reports wait in the journal
        time.sleep(2)
        s.begin_fault()
        s.relay.stop()
        journal = s.data / "journal.sqlite3"
        with journal.open("r+b") as file:
            file.write(random.Random(11).randbytes(100))
            file.flush()
            os.fsync(file.fileno())
        s.relay.start()
        set_aside = s.logged("journal_damaged_set_aside") or _wait_logged(s, "journal_damaged_set_aside")
        s.front.set_mode("proxy")
        s.end_fault()
        aside = sorted(s.data.glob("journal.sqlite3.damaged-*"))
        command = ["salvage", str(aside[0] if aside else "-"), "--config", str(s.config)]
        salvage = subprocess.run(
            [sys.executable, "-m", "relay", *command],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        s.finish(row, judge_p99=False)
        said = [reasons for at, code, reasons in s.health if code == 503 and at > s.fault_start]
    row.sent = "100 random bytes over the journal's header while stopped (2 s of reports undelivered in it)"
    row.checks["set aside, fresh journal"] = set_aside and len(aside) == 1
    row.checks["/healthz names the damaged journal"] = any("salvage" in " ".join(r) for r in said)
    outcome = (salvage.stdout.strip() or salvage.stderr.strip()).splitlines()
    row.notes.append(f"relay salvage exit {salvage.returncode}: {' / '.join(outcome)[:200]}")


def _wait_logged(s: Scene, event: str, timeout: float = 10) -> bool:
    try:
        s.relay.wait_log(event, timeout)
        return True
    except RuntimeError:
        return False


def damage_middle_page(path: Path) -> tuple[int, int]:
    """Checkpoint the journal, then random bytes over the header of the middle leaf page of its
    reports (as a failing card leaves them: SQLite cannot read that page). (page, rows on it)."""
    db = sqlite3.connect(path, timeout=10)
    try:
        for _ in range(100):
            busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                break
            time.sleep(0.05)
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        pages = db.execute(
            "SELECT pageno, ncell FROM dbstat WHERE name = 'reports' AND pagetype = 'leaf' ORDER BY pageno"
        ).fetchall()
    finally:
        db.close()
    page, cells = pages[len(pages) // 2]
    with path.open("r+b") as file:
        file.seek((page - 1) * page_size)
        file.write(random.Random(16).randbytes(page_size // 2))
        file.flush()
        os.fsync(file.fileno())
    return page, cells


def damaged_page(work: Path, size: Size, row: Row) -> None:
    with scene(work, size, "12-damaged-page", sink="front", load=20, load_interval=0.05) as s:
        assert s.front is not None
        s.front.set_mode("down")  # a backlog to read past the damage
        load = s.start_load()
        time.sleep(max(2.0, size.fault_s / 2))
        load.stop()
        s.begin_fault()
        page, cells = damage_middle_page(s.data / "journal.sqlite3")
        s.front.set_mode("proxy")
        s.end_fault()
        s.finish(row)
        row.allowed_lost = cells
        unreadable = s.logged("journal_reports_unreadable")
    row.sent = f"random bytes over page {page} ({cells} reports) of a 20-tracker backlog, uplink then back"
    row.checks["the unreadable reports counted (journal_reports_unreadable)"] = unreadable
    row.notes.append(f"lost {row.lost}: at most the {cells} reports of the damaged page may be")


def wal_deleted(work: Path, size: Size, row: Row) -> None:
    with scene(work, size, "13-wal-deleted", load=10) as s:
        s.start_load(10, 0.2)
        time.sleep(1)
        s.begin_fault()
        (s.data / "journal.sqlite3-wal").unlink()
        time.sleep(max(2.0, size.fault_s / 2))
        s.kill_relay()
        s.relay.start()
        s.end_fault()
        reopened = s.logged("journal_reopened")
        s.finish(row, judge_p99=False)
        all_delivered(s, row)
    row.sent = "journal.sqlite3-wal deleted under 10 trackers x 5/s + 3 x 2/s, then SIGKILL and restart"
    row.checks["the deletion noticed (journal_reopened)"] = reopened


def status_pollers(work: Path, size: Size, row: Row) -> None:
    answers: dict[int, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            code, _ = http_get(s.status_port, "/status", timeout=10)
            with lock:
                answers[code] = answers.get(code, 0) + 1

    with scene(work, size, "14-status-pollers") as s:
        s.begin_fault()
        threads = [threading.Thread(target=poll, daemon=True) for _ in range(60)]
        for thread in threads:
            thread.start()
        time.sleep(size.fault_s)
        stop.set()
        for thread in threads:
            thread.join(15)
        s.end_fault()
        s.finish(row)
    total = sum(answers.values())
    row.sent = (
        f"60 clients polling /status for {size.fault_s:g} s: {total:,} requests"
        f" ({answers.get(200, 0):,} answered 200, {answers.get(503, 0):,} 503 busy)"
    )
    row.checks["status served"] = answers.get(200, 0) > 0


def clock_jump(work: Path, size: Size, row: Row) -> None:
    row.skipped = (
        "no safe way here: setting the clock needs CAP_SYS_TIME and would move every process's clock on"
        " this shared machine; libfaketime (faketime) is not installed"
        + (" (found on PATH, but not wired in)" if shutil.which("faketime") else "")
        + ". The in-process tests cover it: tests/relay/test_storage_faults.py::test_a_clock_jump_*"
    )


def crash_loop(work: Path, size: Size, row: Row) -> None:
    with scene(work, size, "16-crash-loop", load=20) as s:
        assert s.subscriber is not None
        s.start_load()
        time.sleep(1)
        s.begin_fault()
        for _ in range(size.crashes):
            time.sleep(size.crash_every_s)
            s.kill_relay()
            s.relay.start()
        s.end_fault()
        s.finish(row, judge_p99=False)
        all_delivered(s, row)
        duplicates = s.subscriber.messages - len(s.subscriber.first)
    row.sent = f"SIGKILL every {size.crash_every_s:g} s, {size.crashes} times, 20 trackers x 10/s + 3 x 2/s"
    row.notes.append(f"{duplicates} reports delivered twice (at least once: receivers drop them by id)")


ATTACKS: list[tuple[int, str, Callable[[Path, Size, Row], None]]] = [
    (1, "hostile device id over HTTP", hostile_id),
    (2, "UDP garbage flood", udp_flood),
    (3, "TCP undecodable large frames", tcp_garbage),
    (4, "partial frames held, then closed", partial_frames),
    (5, "random device ids over UDP", random_ids),
    (6, "HTTP sink: 500 with a huge body", http_huge),
    (7, "HTTP sink: answer trickled", http_trickle),
    (8, "broker never PUBACKs", mqtt_silent),
    (9, "broker drops the relay at each publish", mqtt_hangup),
    (10, "broker SIGKILLed and restarted", broker_kill),
    (11, "corrupt journal header at start", corrupt_header),
    (12, "damaged data page while running", damaged_page),
    (13, "WAL deleted, then SIGKILL", wal_deleted),
    (14, "60 clients polling /status", status_pollers),
    (15, "clock jump", clock_jump),
    (16, "crash loop: 5 x SIGKILL under load", crash_loop),
]


def run_attack(number: int, work: Path, size: Size) -> Row:
    """One attack by its number, its row filled (an attack that raises gives a failed row)."""
    for known, title, attack in ATTACKS:
        if known == number:
            row = Row(number, title)
            started = time.monotonic()
            try:
                attack(work, size, row)
            except Exception as error:  # the row says what went wrong; the suite goes on
                row.error = f"{type(error).__name__}: {error}"[:300]
            row.seconds = round(time.monotonic() - started, 1)
            return row
    raise ValueError(f"no attack {number}")


# -- output --------------------------------------------------------------------------------------


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "NO")


def table(rows: list[Row]) -> str:
    header = ["#", "attack", "sent", "acked", "stored", "delivered", "lost", "peak RSS MB",
              "journal MB / cap", "p99 ms", "resumed", "/healthz", "checks", ""]
    lines = []
    for row in rows:
        if row.skipped:
            lines.append([str(row.number), row.attack, *[""] * 10, row.skipped, "SKIP"])
            continue
        p99 = f"{row.p99_ms:,.0f}" + ("" if row.p99_ok is not None else " (answered; relay down by design)")
        lost = f"{row.lost}" + (f" (<= {row.allowed_lost} allowed)" if row.allowed_lost else "")
        checks = "; ".join(f"{name}: {_yes(passed)}" for name, passed in row.checks.items())
        if row.error:
            checks = f"ERROR {row.error}; " + checks
        lines.append([
            str(row.number), row.attack, row.sent, f"{row.acknowledged:,}", f"{row.stored:,}",
            f"{row.delivered:,}", lost, f"{row.peak_rss_mb:.0f}",
            f"{row.journal_mb:.1f} / {row.journal_cap_mb:.0f}",
            p99, _yes(row.resumed), row.healthz, checks, "ok" if row.ok else "FAIL",
        ])
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]
    out = [
        "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(header)) + " |",
        "|" + "|".join("-" * (width + 2) for width in widths) + "|",
    ]
    out += ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |" for line in lines]
    return "\n".join(out)


def verdict(rows: list[Row]) -> str:
    failed = [row for row in rows if not row.ok]
    skipped = [str(row.number) for row in rows if row.skipped]
    skip = f" ({len(skipped)} skipped: {', '.join(skipped)})" if skipped else ""
    if not failed:
        return f"all {len(rows) - len(skipped)} rows ok{skip}"
    return "FAILED: " + "; ".join(f"{row.number} ({', '.join(row.failures())})" for row in failed) + skip


def run(
    size: Size, numbers: list[int] | None = None, say: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """The attacks (all, or those ``numbers``); the result as ``--json`` prints it (``_rows``: the rows)."""
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="relay-faults-") as name:
        for number, title, _ in ATTACKS:
            if numbers and number not in numbers:
                continue
            say(f"{number}. {title} ...")
            row = run_attack(number, Path(name), size)
            outcome = "skipped" if row.skipped else "ok" if row.ok else "FAILED: " + ", ".join(row.failures())
            say(f"   {outcome} ({row.seconds:.0f} s)")
            rows.append(row)
    return {
        "size": asdict(size),
        "rows": [asdict(row) | {"ok": row.ok, "failures": row.failures()} for row in rows],
        "ok": all(row.ok for row in rows),
        "verdict": verdict(rows),
        "seconds": round(time.monotonic() - started, 1),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "load_average_after": os.getloadavg(),
        "_rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter, smaller attacks (for CI)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    parser.add_argument("--only", help="attack numbers, comma-separated")
    args = parser.parse_args(argv)
    size = Size.quick() if args.quick else Size.full()
    numbers = [int(n) for n in args.only.split(",")] if args.only else None
    results = run(size, numbers, say=lambda message: print(message, file=sys.stderr, flush=True))
    rows = results.pop("_rows")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table(rows))
        for row in rows:
            for note in row.notes:
                print(f"\n{row.number}. {note}", end="")
        print(f"\n\n{results['verdict']}. {size.name} run, {results['seconds']:.0f} s, {results['date']}.")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
