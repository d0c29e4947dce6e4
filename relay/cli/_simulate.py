"""``relay simulate``: trackers of every protocol on real sockets, driving a relay and checking its replies.

Each simulated device opens its own connection (or UDP socket), logs in where its protocol has a login,
and then, ``rate`` times a second, reports where it is on a loop around a depot (positions, now and
then an alarm, heartbeats; the PT-600 a photo). After every frame it waits for the replies the real
device waits for and checks them byte for byte; a missing or wrong reply is an error, after which the
device reconnects as a real one would. What the frames are and which replies they expect is in
:mod:`relay.cli._simulate_frames`; this module only moves bytes, keeps time and counts.
"""

from __future__ import annotations

import argparse
import math
import shutil
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TextIO

import trio

from ._simulate_frames import (
    PHOTO_REQUEST,
    TRACKERS,
    Message,
    Reply,
    Track,
    Tracker,
    device_id,
    photo_chunk,
    script,
)

#: Seconds a device waits for a reply before it calls it missing.
REPLY_TIMEOUT = 10.0
#: Times a UDP device sends a datagram that gets no reply (trackers resend), each after the timeout.
UDP_TRIES = 3
#: Seconds a device waits before it connects again after an error.
RECONNECT_DELAY = 1.0
#: Seconds a device waits, after its last frame, for the relay to close the connection it closed.
CLOSE_TIMEOUT = 5.0
#: Errors written to stderr as they happen; the rest are only counted.
SHOWN_ERRORS = 20


@dataclass(frozen=True)
class Plan:
    """What to simulate: ``devices`` of each protocol, each reporting ``rate`` times a second, for
    ``duration`` seconds (``None``: until stopped)."""

    protocols: tuple[str, ...]
    host: str
    port: int
    devices: int = 1
    rate: float = 1.0
    duration: float | None = 60.0
    transport: str = "tcp"
    reply_timeout: float = REPLY_TIMEOUT


@dataclass
class Tally:
    """One protocol's counts. ``acked``: messages the protocol answers that got the right answers."""

    devices: int = 0
    sent: int = 0
    acked: int = 0
    errors: int = 0
    reports: int = 0
    alarms: int = 0
    photos: int = 0


@dataclass
class Stats:
    """Every protocol's :class:`Tally` and the errors seen; ``on_error`` hears each error's text."""

    tallies: dict[str, Tally] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    on_error: Callable[[str], None] | None = None

    def error(self, protocol: str, text: str) -> None:
        self.tallies[protocol].errors += 1
        self.problems.append(text)
        if self.on_error is not None:
            self.on_error(text)

    @property
    def ok(self) -> bool:
        """Something was sent, and every reply came and was right."""
        return all(tally.errors == 0 for tally in self.tallies.values()) and any(
            tally.sent for tally in self.tallies.values()
        )

    def line(self) -> str:
        """The live counter line: sent, acknowledged and errors per protocol."""
        counts = "  ".join(
            f"{name} {tally.sent}/{tally.acked}/{tally.errors}" for name, tally in self.tallies.items()
        )
        return f"sent/acked/errors: {counts}"

    def table(self, transport: str) -> str:
        """The final summary table, one row per protocol and a total."""
        columns = ("devices", "sent", "acked", "errors", "reports", "alarms", "photos")
        rows = [(name, tally) for name, tally in self.tallies.items()]
        total = Tally()
        for _, tally in rows:
            for column in columns:
                setattr(total, column, getattr(total, column) + getattr(tally, column))
        lines = [f"{'protocol':<10} {'via':<4}" + "".join(f" {column:>8}" for column in columns)]
        for name, tally in [*rows, ("total", total)]:
            via = transport if name != "total" else ""
            lines.append(f"{name:<10} {via:<4}" + "".join(f" {getattr(tally, c):>8}" for c in columns))
        return "\n".join(lines)


class Failed(Exception):
    """A reply was missing or wrong, or the connection failed: the device starts over."""


class _Link:
    """A device's connection: sends frames, reads the replies it expects."""

    async def send(self, frame: bytes) -> None:
        raise NotImplementedError

    async def receive(self, reply: Reply, frame: bytes) -> bytes:
        """The next reply, cut as ``reply`` says (``frame``: what to resend over UDP)."""
        raise NotImplementedError

    async def close(self, *, graceful: bool = True) -> bytes:
        """Close; ``graceful``: after the relay has read everything. Returns what the relay sent that
        nobody expected."""
        raise NotImplementedError


class _TcpLink(_Link):
    def __init__(self, stream: trio.SocketStream, timeout: float) -> None:
        self.stream = stream
        self.timeout = timeout
        self.buffer = b""

    async def send(self, frame: bytes) -> None:
        try:
            await self.stream.send_all(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise Failed(f"connection lost while sending ({error})") from None

    async def receive(self, reply: Reply, frame: bytes) -> bytes:
        with trio.move_on_after(self.timeout):
            while (size := reply.cut(self.buffer)) is None:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                    raise Failed(f"connection lost waiting for the {reply.what} ({error})") from None
                if not data:
                    raise Failed(f"the relay closed the connection instead of sending the {reply.what}")
                self.buffer += data
            answer, self.buffer = self.buffer[:size], self.buffer[size:]
            return answer
        got = f" (got only {self.buffer!r})" if self.buffer else ""
        raise Failed(f"no {reply.what} within {self.timeout:g} s{got}")

    async def close(self, *, graceful: bool = True) -> bytes:
        # Half-close and read to the end: the relay has then read every frame before the socket goes.
        extra = self.buffer
        with trio.move_on_after(CLOSE_TIMEOUT if graceful else 0):
            try:
                await self.stream.send_eof()
                while data := await self.stream.receive_some(65536):
                    extra += data
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await trio.aclose_forcefully(self.stream)
        return extra


class _UdpLink(_Link):
    def __init__(self, sock: trio.socket.SocketType, timeout: float) -> None:
        self.sock = sock
        self.timeout = timeout

    async def send(self, frame: bytes) -> None:
        try:
            await self.sock.send(frame)
        except OSError as error:
            raise Failed(f"cannot send: {error.strerror or error}") from None

    async def receive(self, reply: Reply, frame: bytes) -> bytes:
        for attempt in range(UDP_TRIES):
            if attempt:
                await self.send(frame)  # no answer: send it again, as trackers do
            with trio.move_on_after(self.timeout):
                try:
                    return await self.sock.recv(65536)
                except OSError as error:  # ICMP port unreachable: nothing listens
                    raise Failed(f"no {reply.what}: {error.strerror or error}") from None
        raise Failed(f"no {reply.what} within {UDP_TRIES} tries of {self.timeout:g} s")

    async def close(self, *, graceful: bool = True) -> bytes:
        self.sock.close()
        return b""


async def _connect(plan: Plan) -> _Link:
    try:
        if plan.transport == "udp":
            family = trio.socket.AF_INET6 if ":" in plan.host else trio.socket.AF_INET
            sock = trio.socket.socket(family, trio.socket.SOCK_DGRAM)
            await sock.connect((plan.host, plan.port))
            return _UdpLink(sock, plan.reply_timeout)
        stream = await trio.open_tcp_stream(plan.host, plan.port)
    except OSError as error:
        raise Failed(f"cannot connect to {plan.host}:{plan.port}: {error.strerror or error}") from None
    return _TcpLink(stream, plan.reply_timeout)


async def _exchange(link: _Link, message: Message, tally: Tally) -> None:
    """Send ``message``, then read and check each reply the device waits for (the PT-600: serve the
    relay's chunk requests until the photo is all sent)."""
    await link.send(message.frame)
    tally.sent += 1
    tally.reports += 1
    tally.alarms += message.alarm is not None
    for reply in message.replies:
        answer = await link.receive(reply, message.frame)
        if problem := reply.problem(answer):
            raise Failed(f"{message.kind}: {problem}")
    if message.photo is not None:
        sent = 0
        while sent < len(message.photo):
            request = await link.receive(PHOTO_REQUEST, message.frame)
            try:
                chunk, sent = photo_chunk(request, message.photo, sent)
            except ValueError as error:
                raise Failed(f"photo: {error}") from None
            await link.send(chunk)
        tally.photos += 1
        tally.reports += 1
    if message.replies or message.photo is not None:
        tally.acked += 1


async def _device(plan: Plan, tracker: Tracker, index: int, stats: Stats, stop: trio.Event) -> None:
    """One device, from its first report to the end of the run (or ``stop``)."""
    tally = stats.tallies[tracker.protocol]
    track = Track()
    # Devices spread around the loop and over the report interval.
    phase = track.lap_s * index / plan.devices
    interval = 1 / plan.rate
    start = trio.current_time() + interval * index / plan.devices
    wall = datetime.now(UTC) + timedelta(seconds=interval * index / plan.devices)
    end = start + plan.duration if plan.duration else math.inf
    where = f"{tracker.protocol}/{plan.transport} {tracker.device_id}"
    link: _Link | None = None
    previous = None
    tick = 0
    try:
        while not stop.is_set():
            due = start + tick * interval
            if due >= end:
                break
            with trio.move_on_at(due):
                await stop.wait()
            if stop.is_set():
                break
            point = track.at(wall + timedelta(seconds=tick * interval), phase + tick * interval)
            try:
                if link is None:
                    link = await _connect(plan)
                    for message in tracker.login(point):
                        await _exchange(link, message, tally)
                for message in script(tracker, tick, point, previous):
                    await _exchange(link, message, tally)
            except Failed as error:
                stats.error(tracker.protocol, f"{where}: {error}")
                if link is not None:
                    await link.close(graceful=False)
                    link = None
                with trio.move_on_at(min(trio.current_time() + RECONNECT_DELAY, end)):
                    await stop.wait()
                # Reports missed while down are not sent late: go on with the next one due.
                tick = max(tick + 1, math.ceil((trio.current_time() - start) / interval))
                previous = None
                continue
            previous = point
            tick += 1
    finally:
        if link is not None:
            with trio.CancelScope(shield=True):
                extra = await link.close()
            if extra:
                stats.error(tracker.protocol, f"{where}: unexpected bytes from the relay: {extra[:64]!r}")


async def simulate(plan: Plan, stats: Stats, stop: trio.Event | None = None) -> None:
    """Run every device of ``plan`` until its duration is over or ``stop`` is set; count into ``stats``."""
    stop = stop if stop is not None else trio.Event()
    async with trio.open_nursery() as nursery:
        for protocol_index, name in enumerate(TRACKERS):
            if name not in plan.protocols:
                continue
            kind = TRACKERS[name]
            stats.tallies[name] = Tally(devices=plan.devices)
            for index in range(plan.devices):
                identity = device_id(protocol_index, plan.transport, index, kind.id_digits)
                tracker = kind(identity, plan.transport)
                nursery.start_soon(_device, plan, tracker, index, stats, stop)


# -- the command -----------------------------------------------------------------------------------------


def protocols_for(names: str, transport: str) -> tuple[str, ...]:
    """The protocols ``--protocol`` names (a name, a comma-separated list, or ``all``: every protocol
    with ``transport``).

    :raises ValueError: an unknown name, or a protocol without that transport.
    """
    if names == "all":
        return tuple(name for name, kind in TRACKERS.items() if transport in kind.transports)
    chosen = tuple(dict.fromkeys(name.strip() for name in names.split(",") if name.strip()))
    for name in chosen:
        if name not in TRACKERS:
            raise ValueError(f"unknown protocol {name!r}: expected 'all' or one of {', '.join(TRACKERS)}")
        if transport not in TRACKERS[name].transports:
            over = [other for other, kind in TRACKERS.items() if transport in kind.transports]
            raise ValueError(f"{name} devices do not use {transport} (those that do: {', '.join(over)})")
    if not chosen:
        raise ValueError("no protocol given")
    return tuple(name for name in TRACKERS if name in chosen)


def address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8888`` for IPv6). :raises ValueError: not that."""
    host, _, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, found {text!r}")
    return host, int(port)


def main(args: argparse.Namespace) -> int:
    """Run ``relay simulate`` from parsed arguments: 0 when every reply was right, 1 when any was
    missing or wrong (or nothing could be sent), 2 for a bad option."""
    try:
        host, port = address(args.to)
        protocols = protocols_for(args.protocol, args.transport)
        if args.devices < 1 or not args.rate > 0 or args.duration < 0:
            raise ValueError("--devices must be at least 1, --rate above 0 and --duration 0 or more")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    plan = Plan(
        protocols=protocols,
        host=host,
        port=port,
        devices=args.devices,
        rate=args.rate,
        duration=args.duration or None,
        transport=args.transport,
    )
    stats = trio.run(_run, plan, sys.stderr)
    print(stats.table(plan.transport))
    if stats.ok:
        print("ok: every reply came, as the protocols demand")
        return 0
    errors = sum(tally.errors for tally in stats.tallies.values())
    print(f"FAILED: {errors} error(s): replies missing or wrong, or no connection (see stderr)")
    return 1


async def _run(plan: Plan, out: TextIO) -> Stats:
    live = out.isatty()
    shown = 0

    def on_error(text: str) -> None:
        nonlocal shown
        shown += 1
        if shown <= SHOWN_ERRORS:
            out.write(("\r\x1b[K" if live else "") + f"error: {text}\n")
        elif shown == SHOWN_ERRORS + 1:
            out.write("error: more errors are only counted\n")

    stats = Stats(on_error=on_error)
    stop = trio.Event()
    target = f"{plan.host}:{plan.port}"
    length = f"{plan.duration:g} s" if plan.duration else "until Ctrl-C"
    out.write(
        f"simulating {plan.devices} device(s) each of {', '.join(plan.protocols)} over {plan.transport} "
        f"to {target}, {plan.rate:g} report(s)/s per device, {length}\n"
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_interrupts, stop, nursery.cancel_scope, out)
        if live:
            nursery.start_soon(_progress, stats, out)
        await simulate(plan, stats, stop)
        nursery.cancel_scope.cancel()
    if live:
        out.write("\r\x1b[K" + stats.line()[: shutil.get_terminal_size().columns - 1] + "\n")
    return stats


async def _interrupts(stop: trio.Event, scope: trio.CancelScope, out: TextIO) -> None:
    """The first Ctrl-C stops the devices cleanly (connections closed after their last reply); the
    second one at once."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if stop.is_set():
                scope.cancel()
                return
            out.write("\nstopping (Ctrl-C again to stop at once)\n")
            stop.set()


async def _progress(stats: Stats, out: TextIO) -> None:
    while True:
        width = shutil.get_terminal_size().columns - 1
        out.write("\r\x1b[K" + stats.line()[:width])
        out.flush()
        await trio.sleep(0.5)
