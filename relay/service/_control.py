"""The running relay's control socket: ``relay sms send`` and ``relay provision`` use its modem.

A serial port has one user, and while the relay runs that is its modem task. So when ``[modem]`` is
set, the relay listens on a Unix socket in its data directory (:data:`SOCKET_NAME`, mode 0600, removed
when it stops), and those commands hand it their SMS instead of opening the port: the text goes out
through the modem task's :class:`~relay.sources.Outbox` between two received messages, while the
listener goes on answering the trackers. A socket nobody answers on (no relay, or one that died)
sends the commands back to the port itself.

The exchange is JSON, one object per line. The client sends one request:

- ``{"op": "sms_send", "to": NUMBER, "text": TEXT, "timeout_s": S, "modem": PATH|null}``: answered
  ``{"sent": true, "parts": N}`` once the modem sent it, or ``{"error": REASON}``;
- ``{"op": "provision", "family": "coban"|"bofan", "to", "server", "port", "apn", ...,
  "wait_s": S, "timeout_s": S, "modem": PATH|null}``: answered by ``{"line": TEXT}`` for each line
  of progress, then ``{"exit": 0|1}`` (0: every step acknowledged), or ``{"error": REASON}``.

``modem``, when given, is the port the client means: a relay holding another one answers
``{"other_modem": ITS_PORT}`` and the client uses its own. A modem that is down is an immediate
error; one that does not send within ``timeout_s`` an error at that deadline. A client that goes away
ends its provisioning session.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import socket
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..logs import log_event
from ..statistics import labelled

if TYPE_CHECKING:
    from ..config import Config
    from ..sources import ModemStatus, Outbox, ReplyTaps

log = logging.getLogger("relay.control")

#: The socket's name in the data directory.
SOCKET_NAME = "control.sock"
#: The longest request taken, and the time a client gets to send it.
MAX_REQUEST = 16 * 1024
REQUEST_TIMEOUT_S = 5.0
#: Clients served at once; more are refused ("busy").
MAX_CLIENTS = 8
#: Bounds on what a client may ask for.
MAX_TIMEOUT_S = 600.0
MAX_WAIT_S = 24 * 3600.0
MAX_TEXT = 2000
#: A Unix socket's path holds at most this many bytes (``sun_path``).
MAX_PATH = 107
#: The provisioning fields a request may carry (those of :func:`relay.sources.steps_for`).
PROVISION_FIELDS = frozenset(
    {"server", "port", "apn", "interval_s", "password", "apn_user", "apn_password", "device_id"}
)


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_NAME


@dataclass(slots=True)
class ControlStats:
    """What ``/metrics`` shows of the control socket."""

    sms: defaultdict[tuple[str, str], int] = labelled(
        "counter",
        "SMS that relay sms send and relay provision handed the running relay's modem, by op"
        " (sms_send, provision) and result (sent, failed).",
        ("op", "result"),
        metric="relay_cli_sms",
        factory=lambda: defaultdict(int),
    )


class Refused(Exception):
    """A request the relay does not carry out; the reason goes back to the client."""


async def serve_control(
    config: Config,
    modem_status: ModemStatus,
    outbox: Outbox,
    taps: ReplyTaps,
    stats: ControlStats,
    *,
    task_status: trio.TaskStatus[Path | None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control socket of the relay running ``config`` until cancelled: SMS go through
    ``outbox`` while ``modem_status`` is not down, provisioning replies come through ``taps``.
    ``task_status.started(path)`` once it listens (``None``: it cannot, which is logged: the commands
    then try the port themselves and fail clearly)."""
    path = socket_path(config.data_dir)
    try:
        sock = await _bind(path)
    except OSError as error:
        log_event(log, logging.WARNING, "control_socket_off", path=str(path), error=str(error),
                  effect="relay sms send and provision cannot use the running relay's modem")  # fmt: skip
        task_status.started(None)
        return
    try:
        listener = trio.SocketListener(sock)
        handler = _Handler(config, modem_status, outbox, taps, stats)
        async with trio.open_nursery() as nursery:
            task_status.started(path)
            nursery.start_soon(trio.serve_listeners, handler.serve, [listener])
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


async def _bind(path: Path) -> trio.socket.SocketType:
    if len(os.fsencode(path)) > MAX_PATH:
        raise OSError(f"the path is longer than {MAX_PATH} bytes")
    if path.is_socket():
        if _answers(path):
            raise OSError("another relay serves it (two relays on one data directory?)")
        path.unlink()  # left by a relay that did not stop cleanly
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)
        try:
            await sock.bind(str(path))
        finally:
            os.umask(old)
        sock.listen(8)
    except OSError:
        sock.close()
        raise
    return sock


def _answers(path: Path) -> bool:
    """Whether something listens on the Unix socket ``path`` (a local connect answers at once)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with probe:
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(path))
        except OSError:
            return False
    return True


class _Handler:
    def __init__(
        self, config: Config, status: ModemStatus, outbox: Outbox, taps: ReplyTaps, stats: ControlStats
    ) -> None:
        self.port = config.modem.port if config.modem is not None else "?"
        self.status = status
        self.outbox = outbox
        self.taps = taps
        self.stats = stats
        self.clients = 0

    def _down(self) -> str | None:
        """Why the relay's modem cannot send now (``None``: it can, or it is still opening)."""
        status = self.status
        if status.state == "down":
            return f"the relay's modem {self.port} is down: {status.error or 'no answer'}"
        return None

    async def serve(self, stream: trio.SocketStream) -> None:
        async with stream:
            self.clients += 1
            try:
                if self.clients > MAX_CLIENTS:
                    raise Refused(f"busy: {MAX_CLIENTS} commands are using the relay's modem already")
                request = await _read_request(stream)
                await self._answer(stream, request)
            except Refused as error:
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await _write(stream, {"error": str(error)})
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log_event(log, logging.INFO, "control_client_gone")
            except Exception:  # a bug here must not take the relay down with it
                log.exception("control socket: unexpected error")
            finally:
                self.clients -= 1

    async def _answer(self, stream: trio.SocketStream, request: dict[str, Any]) -> None:
        op = request.get("op")
        if op not in ("sms_send", "provision"):
            raise Refused(f"unknown op {op!r} (sms_send or provision)")
        wanted = request.get("modem")
        if wanted is not None and os.path.realpath(str(wanted)) != os.path.realpath(self.port):
            await _write(stream, {"other_modem": self.port})
            return
        if (reason := self._down()) is not None:
            raise Refused(reason)
        timeout_s = _number(request, "timeout_s", 60.0, MAX_TIMEOUT_S)
        to = _text(request, "to", 32)
        if op == "sms_send":
            await self._send(stream, to, _text(request, "text", MAX_TEXT), timeout_s)
        else:
            await self._provision(stream, request, to, timeout_s)

    async def _send(self, stream: trio.SocketStream, to: str, text: str, timeout_s: float) -> None:
        from ..sources._modem import ModemError

        try:
            references = await self.outbox.send(to, text, timeout_s=timeout_s)
        except ModemError as error:
            reason = str(error)
            if (down := self._down()) is not None:
                reason += f" ({down})"
            log_event(log, logging.WARNING, "sms_not_sent", to=to, source="cli", error=reason)
            self.stats.sms[("sms_send", "failed")] += 1
            raise Refused(reason) from None
        self.stats.sms[("sms_send", "sent")] += 1
        log_event(log, logging.INFO, "sms_sent", to=to, source="cli", parts=len(references))
        await _write(stream, {"sent": True, "parts": len(references)})

    async def _provision(
        self, stream: trio.SocketStream, request: dict[str, Any], to: str, timeout_s: float
    ) -> None:
        from ..sources import OutboxLink, Outcome, provision, steps_for
        from ..sources._modem import ModemError

        fields = {key: request[key] for key in PROVISION_FIELDS if request.get(key) is not None}
        try:
            steps = steps_for(str(request.get("family")), **fields)
        except (TypeError, ValueError) as error:
            raise Refused(f"cannot provision: {error}") from None
        wait_s = _number(request, "wait_s", 180.0, MAX_WAIT_S)
        try:
            replies = self.taps.open(to)
        except ModemError as error:
            raise Refused(str(error)) from None
        log_event(log, logging.INFO, "provisioning", to=to, family=request.get("family"), source="cli")
        link = OutboxLink(self.outbox, replies, send_timeout_s=timeout_s, down=self._down)
        send_lines, lines = trio.open_memory_channel[str](math.inf)
        results: list[Any] = []

        async def run() -> None:
            async with send_lines:
                out: Callable[[str], None] = send_lines.send_nowait
                out(f"through the running relay's modem {self.port}")
                results.extend(await provision(link, to, steps, wait_s=wait_s, out=out))

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_client, stream, nursery.cancel_scope)
                nursery.start_soon(run)
                async for line in lines:
                    await _write(stream, {"line": line})
                acknowledged = results and all(r.outcome is Outcome.ACKNOWLEDGED for r in results)
                await _write(stream, {"exit": 0 if acknowledged else 1})
                nursery.cancel_scope.cancel()
        finally:
            self.taps.close(to)
            self.stats.sms[("provision", "sent")] += link.sent
            self.stats.sms[("provision", "failed")] += link.failed


async def _watch_client(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
    """End the session when the client goes away (Ctrl-C): nobody would see the rest."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while await stream.receive_some(1024):
            pass
    log_event(log, logging.INFO, "control_client_gone")
    scope.cancel()


async def _read_request(stream: trio.SocketStream) -> dict[str, Any]:
    data = bytearray()
    with trio.move_on_after(REQUEST_TIMEOUT_S):
        while b"\n" not in data and len(data) <= MAX_REQUEST:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
    line, newline, _ = bytes(data).partition(b"\n")
    if not newline:
        raise Refused(f"no request line within {REQUEST_TIMEOUT_S:g} s and {MAX_REQUEST} bytes")
    try:
        request = json.loads(line)
    except (ValueError, UnicodeDecodeError) as error:
        raise Refused(f"the request is not JSON: {error}") from None
    if not isinstance(request, dict):
        raise Refused("the request must be a JSON object")
    return request


async def _write(stream: trio.SocketStream, message: dict[str, Any]) -> None:
    await stream.send_all(json.dumps(message).encode() + b"\n")


def _number(request: dict[str, Any], key: str, default: float, largest: float) -> float:
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= largest:
        raise Refused(f"{key} {value!r} is not a number of seconds in (0, {largest:g}]")
    return float(value)


def _text(request: dict[str, Any], key: str, longest: int) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value or len(value) > longest:
        raise Refused(f"{key} {value!r} is not a text of 1..{longest} characters")
    return value
