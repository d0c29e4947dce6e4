"""A tiny HTTP status endpoint for the running relay (``[status] listen = "127.0.0.1:8080"``).

- ``GET /healthz``: ``200`` or ``503`` with a JSON body that says why (:meth:`Running.health`);
- ``GET /metrics``: Prometheus exposition (:mod:`relay.service._metrics`; OpenMetrics when the scraper asks);
- ``GET /status``: the same JSON as ``relay status --json``, plus live statistics and, under
  ``"relay"``, what only the running relay knows (:func:`relay.status_page.live`);
- ``GET /``: the status page (:mod:`relay.service._page`), HTML for a phone; a client that asks for
  ``application/json`` and not ``text/html`` gets the ``/status`` JSON there instead.

With ``[status] token`` (or ``token_file``), every request but ``/healthz`` must carry it, as
``Authorization: Bearer <token>`` or ``?token=<token>`` (the page keeps it in its own links);
``/healthz`` stays open for load balancers and says nothing private. A non-loopback ``listen``
without a token is refused by the config check.

With ``[status] commands`` (the default), ``GET``/``POST /api/devices/<id>/commands`` is the command API
(:mod:`._api`); a ``POST`` with a token set must carry it as ``Authorization: Bearer``.

Only GET and HEAD (and that POST); requests are small and bounded; one request per connection. The
endpoint never competes with the journal's commits: at most :data:`MAX_CLIENTS` requests are served at
once (more get ``503``), and the journal is read for ``/status`` at most once per
:data:`._reader.STATUS_MAX_AGE_S`, on a connection and a worker thread of its own, every request in
between sharing that read.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import trio

from ..config import parse_listen
from ..errors import RelayError
from ..journal import Journal
from ..logs import log_event
from ._api import API_PATH, MAX_BODY, commands_api
from ._page import live, render
from ._reader import StatusReader

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ._running import Running

log = logging.getLogger("relay.status")

#: The largest request head accepted (a status client sends a few hundred bytes).
MAX_REQUEST = 8192
#: Time a client gets to send its request.
REQUEST_TIMEOUT_S = 5.0
#: Requests served at once; more are answered 503 at once.
MAX_CLIENTS = 16


#: Sent with the page: nothing from elsewhere, no framing, and no token leaking in a Referer.
PAGE_HEADERS = (
    "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"
    "Referrer-Policy: no-referrer\r\nX-Content-Type-Options: nosniff\r\n"
)


def _response(status: str, body: bytes, content_type: str, head_only: bool, headers: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\nCache-Control: no-store\r\n{headers}\r\n"
    ).encode()
    return head if head_only else head + body


def read_token(running: Running) -> str | None:
    """The ``[status]`` token (from ``token_file`` when set), or None when the endpoint has none.

    :raises RelayError: ``token_file`` cannot be read or is empty.
    """
    settings = running.config.status
    if not settings.token_file:
        return settings.token
    try:
        token = Path(settings.token_file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise RelayError(f"cannot read [status] token_file {settings.token_file}: {error}") from error
    if not token:
        raise RelayError(f"[status] token_file {settings.token_file} is empty")
    return token


def _presented_token(query: str, authorization: str) -> str | None:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    values = parse_qs(query).get("token")
    return values[0] if values else None


def _wants_json(accept: str) -> bool:
    return "application/json" in accept and "text/html" not in accept


async def answer(
    running: Running,
    registry: CollectorRegistry,
    reader: StatusReader,
    method: str,
    target: str,
    accept: str = "",
    *,
    token: str | None = None,
    authorization: str = "",
    body: bytes = b"",
) -> bytes:
    """The response bytes for one request (``accept``, ``authorization``: its headers; ``token``: the
    one every request but /healthz must present, when set; ``body``: a POST's)."""
    head_only = method == "HEAD"
    path, _, query = target.partition("?")
    api = API_PATH.fullmatch(path) if running.config.status.commands else None
    if method not in ("GET", "HEAD") and not (method == "POST" and api):
        allowed = "GET, HEAD and POST" if api else "GET and HEAD"
        return _response("405 Method Not Allowed", f"only {allowed}\n".encode(), "text/plain", head_only)
    if token is not None and path != "/healthz":
        # A command must come with the header: a ?token= link must not be able to stop an engine.
        presented = _presented_token("" if method == "POST" else query, authorization)
        if presented is None or not hmac.compare_digest(presented.encode(), token.encode()):
            body = b"a token is needed: open /?token=<the [status] token>, or send Authorization: Bearer\n"
            challenge = 'WWW-Authenticate: Bearer realm="relay"\r\n'
            return _response("401 Unauthorized", body, "text/plain", head_only, challenge)
    if api:
        status, document = await commands_api(running, method, api.group(1), body)
        content = json.dumps(document, indent=2).encode() + b"\n"
        return _response(status, content, "application/json", head_only)
    if path == "/healthz":
        health = running.health()
        code = "200 OK" if health["status"] == "ok" else "503 Service Unavailable"
        body = json.dumps(health, indent=2).encode() + b"\n"
        return _response(code, body, "application/json", head_only)
    if path == "/metrics":
        from prometheus_client.exposition import choose_encoder

        encode, content_type = choose_encoder(accept)
        return _response("200 OK", encode(registry), content_type, head_only)
    if path in ("/", "/status"):
        status = await reader.read()
        status["relay"] = live(running)
        _live_sinks(running, status["sinks"])  # live, not as old as the journal read
        if path == "/" and not _wants_json(accept):
            page = render(status, token=token).encode()
            return _response("200 OK", page, "text/html; charset=utf-8", head_only, PAGE_HEADERS)
        status["statistics"] = running.statistics()
        body = json.dumps(status, indent=2).encode()
        return _response("200 OK", body, "application/json", head_only)
    return _response("404 Not Found", b"try /, /healthz, /metrics or /status\n", "text/plain", head_only)


def _header(request: bytes, name: bytes) -> str:
    """The value of header ``name`` (lower case) in a request head, or ``""``."""
    for line in request.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return ""


def _live_devices(running: Running, devices: list[dict[str, Any]]) -> None:
    """Each device's fields from the running relay's exact state (its row in the journal may lag by up
    to DEVICE_ROW_INTERVAL_S), and its registry name."""
    for device in devices:
        state = running.journal.devices.get(device["device_id"])
        if state is not None and state.last_seen >= device["last_seen"]:
            live = state.to_json()
            for key in ("last_seen", "last_event", "last_fix", "last_lat", "last_lon", "online", "ignition"):
                device[key] = live[key]
            if live["battery"]:
                device["battery"] = live["battery"]
            if live["recent_alarms"]:
                device["recent_alarms"] = live["recent_alarms"]
        known = running.registry.get(device["device_id"])
        device["name"] = known.name if known is not None else None


def _live_sinks(running: Running, sinks: list[dict[str, Any]]) -> None:
    """Each sink's backlog (from the journal) with its uplink: connected or not since when, its last
    error, and its windows of the last 24 hours."""
    by_name = {sink.name: sink for sink in running.sinks}
    for entry in sinks:
        sink = by_name.get(entry["sink"])
        if sink is not None:
            entry.update(connected=sink.connected, last_error=sink.last_error, **running.uplink(sink))


async def serve_status(
    running: Running, listen: str, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    from ._metrics import make_registry  # here, not at the top: prometheus_client takes ~50 ms to import

    token = read_token(running)
    registry = make_registry(running)
    def read_status() -> dict[str, Any]:
        now = datetime.now(UTC)
        with Journal.open_read_only(running.config.database) as journal:
            status = journal.status([sink.name for sink in running.sinks], now=now)
        _live_devices(running, status["devices"])
        return status

    reader = running.status_reader = StatusReader(read_status)
    clients = trio.Semaphore(MAX_CLIENTS)
    host, port = parse_listen(listen)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log_event(log, logging.INFO, "status_listening", address=f"{host}:{bound}")
    task_status.started(bound)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            clients.acquire_nowait()
        except trio.WouldBlock:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                with trio.move_on_after(1):  # take the request, so closing does not reset the answer
                    await stream.receive_some(MAX_REQUEST)
                await stream.send_all(_response("503 Service Unavailable", b"busy\n", "text/plain", False))
            await stream.aclose()
            return
        try:
            request = b""
            with trio.move_on_after(REQUEST_TIMEOUT_S):
                while b"\r\n\r\n" not in request and len(request) < MAX_REQUEST:
                    data = await stream.receive_some(4096)
                    if not data:
                        break
                    request += data
            parts = request.split(b"\r\n", 1)[0].decode("latin-1").split()
            if len(parts) != 3 or not parts[2].startswith("HTTP/"):
                await stream.send_all(_response("400 Bad Request", b"bad request\n", "text/plain", False))
                return
            head, _, body = request.partition(b"\r\n\r\n")
            length = _header(head, b"content-length")
            if length:
                if not length.isdigit() or int(length) > MAX_BODY:
                    too_large = f"a body of at most {MAX_BODY} bytes\n".encode()
                    await stream.send_all(_response("413 Content Too Large", too_large, "text/plain", False))
                    return
                with trio.move_on_after(REQUEST_TIMEOUT_S):
                    while len(body) < int(length):
                        data = await stream.receive_some(4096)
                        if not data:
                            break
                        body += data
                body = body[: int(length)]
            accept, authorization = _header(head, b"accept"), _header(head, b"authorization")
            method, target = parts[0], parts[1]
            response = await answer(
                running, registry, reader, method, target, accept, token=token, authorization=authorization,
                body=body,
            )  # fmt: skip
            await stream.send_all(response)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception as error:  # the status page must never take the relay down
            log_event(log, logging.WARNING, "status_request_failed", error=repr(error))
        finally:
            clients.release()
            await stream.aclose()

    await trio.serve_listeners(handle, listeners)
