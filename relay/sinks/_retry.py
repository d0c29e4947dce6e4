"""Retrying: the backoff every sink uses, the probe that cuts it short when the uplink returns, and
the real error inside trio's exception groups."""

from __future__ import annotations

import contextlib
import math
import random
import socket
from urllib.parse import urlsplit

import trio

#: Past this many doublings the delay is at its ceiling anyway; keeps 2**n small.
MAX_DOUBLINGS = 16


def backoff_delay(failures: int, low: float, high: float) -> float:
    """Exponential backoff with full jitter between ``low`` and the doubled ceiling (at most ``high``),
    so a fleet of relays does not retry in lockstep."""
    ceiling = min(high, low * 2 ** min(failures, MAX_DOUBLINGS))
    return random.uniform(low, max(ceiling, low))


def innermost(error: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


#: How often a sink waiting out its backoff checks whether its server can be reached again.
PROBE_INTERVAL_S = 1.0
#: How long one probe (a TCP connect, nothing sent) may take.
PROBE_TIMEOUT_S = 1.0
# Linux route netlink groups: links, addresses and routes, IPv4 and IPv6.
_RTMGRP = 0x1 | 0x10 | 0x40 | 0x100 | 0x400


def address_of(url: str, default_port: int) -> tuple[str, int]:
    """The host and port a URL's server listens on."""
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


class Uplink:
    """Cuts a sink's backoff short the moment its server can be reached again.

    While one of the sink's tasks waits out a backoff (:meth:`wait`), it probes ``host:port`` with a
    bare TCP connect every ``probe_interval_s``, and at once whenever the host's own network changes
    (an interface, address or route coming up: a Linux netlink event). Nothing is sent: the expensive
    work (TLS, MQTT CONNECT, an HTTP batch) waits for the probe to succeed. However long the outage,
    the sink is back within a probe interval of its server. Many tasks of one sink (passthrough devices)
    share one prober. A probe to a down link costs one SYN (about 60 bytes); ``probe_interval_s = 0``
    turns probing off (the backoff alone, for metered links).
    """

    def __init__(self, host: str, port: int, *, probe_interval_s: float = PROBE_INTERVAL_S) -> None:
        self.host = host
        self.port = port
        self.probe_interval_s = probe_interval_s
        self.probes = 0
        self._probing = False
        self._news = trio.Event()
        self._up_at = -math.inf

    async def wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or less: until a probe (by this task or another) reaches the server."""
        if self.probe_interval_s <= 0:
            await trio.sleep(delay)
            return
        started = trio.current_time()
        # However a probe answers, a retry waits at least one interval: a server that accepts the
        # connection and then fails (TLS, a refusal) is never retried in a tight loop.
        floor = min(delay, self.probe_interval_s)
        with trio.move_on_after(delay):
            await trio.sleep(floor)
            while True:
                if not self._probing:
                    self._probing = True
                    try:
                        await self._probe_until_reachable()
                    finally:
                        self._probing = False
                        self._news.set()
                        self._news = trio.Event()
                    return
                news = self._news
                await news.wait()
                if self._up_at >= started:
                    return

    async def _probe_until_reachable(self) -> None:
        routes = _route_socket()
        try:
            while not await self._reachable():
                with trio.move_on_after(self.probe_interval_s):
                    if routes is not None:
                        await trio.lowlevel.wait_readable(routes)
                        with contextlib.suppress(OSError):
                            while routes.recv(65536):  # drain: one wake-up per burst of changes
                                pass
                    else:
                        await trio.sleep_forever()
            self._up_at = trio.current_time()
        finally:
            if routes is not None:
                trio.lowlevel.notify_closing(routes)
                routes.close()

    async def _reachable(self) -> bool:
        self.probes += 1
        with trio.move_on_after(PROBE_TIMEOUT_S):
            try:
                stream = await trio.open_tcp_stream(self.host, self.port)
            except OSError:
                return False
            await trio.aclose_forcefully(stream)
            return True
        return False


def _route_socket() -> socket.socket | None:
    """A socket that becomes readable when the host's links, addresses or routes change (Linux)."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except (AttributeError, OSError):
        return None
    try:
        sock.bind((0, _RTMGRP))
        sock.setblocking(False)
    except OSError:
        sock.close()
        return None
    return sock
