"""A tiny HTTP status endpoint for the running relay (``[status] listen = "127.0.0.1:8080"``).

- ``GET /healthz``: ``200 ok`` while the journal accepts commits, ``503`` with the reason otherwise;
- ``GET /metrics``: Prometheus text format (counters and gauges of the listener, journal and sinks);
- ``GET /`` or ``/status``: the same JSON as ``relay status --json``, plus live statistics.

Only GET and HEAD; requests are small and bounded; one request per connection.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import trio

from .journal import read_status
from .logs import log_event

if TYPE_CHECKING:
    from .app import Running

log = logging.getLogger("relay.status")

#: The largest request head accepted (a status client sends a few hundred bytes).
MAX_REQUEST = 8192
#: Time a client gets to send its request.
REQUEST_TIMEOUT_S = 5.0


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too). :raises ValueError: not of that form."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, found {value!r}")
    return host.strip("[]"), int(port)


def metrics_text(running: Running) -> str:
    """Prometheus exposition of :meth:`Running.statistics`."""
    stats = running.statistics()
    lines: list[str] = []

    def metric(name: str, kind: str, value: float, labels: str = "") -> None:
        if not any(line.startswith(f"# TYPE {name} ") for line in lines):
            lines.append(f"# TYPE {name} {kind}")
        lines.append(f"{name}{labels} {float(value)}")

    for key in ("connections_open",):
        metric(f"relay_{key}", "gauge", stats[key])
    for key in (
        "connections_total",
        "connections_refused",
        "datagrams",
        "frames",
        "reports",
        "bad_frames",
        "unknown_streams",
        "replies",
        "journal_commits",
        "journal_reports",
        "journal_quarantined",
        "journal_dropped",
    ):
        metric(f"relay_{key}_total", "counter", stats[key])
    metric("relay_journal_last_seq", "gauge", running.journal.last_seq)
    for sink in running.sinks:
        labels = f'{{sink="{sink.name}"}}'
        metric("relay_sink_connected", "gauge", 1 if sink.connected else 0, labels)
        metric("relay_sink_backlog", "gauge", sink.backlog(), labels)
        metric("relay_sink_delivered_total", "counter", sink.acknowledged, labels)
        metric("relay_sink_published_total", "counter", sink.published, labels)
    return "\n".join(lines) + "\n"


def _response(status: str, body: bytes, content_type: str, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\nCache-Control: no-store\r\n\r\n"
    ).encode()
    return head if head_only else head + body


def answer(running: Running, method: str, path: str) -> bytes:
    """The response bytes for one request."""
    head_only = method == "HEAD"
    if method not in ("GET", "HEAD"):
        return _response("405 Method Not Allowed", b"only GET and HEAD\n", "text/plain", head_only)
    path = path.split("?", 1)[0]
    if path == "/healthz":
        problem = running.health_problem()
        if problem:
            return _response("503 Service Unavailable", f"{problem}\n".encode(), "text/plain", head_only)
        return _response("200 OK", b"ok\n", "text/plain", head_only)
    if path == "/metrics":
        return _response("200 OK", metrics_text(running).encode(), "text/plain; version=0.0.4", head_only)
    if path in ("/", "/status"):
        status: dict[str, Any] = read_status(
            running.config.database, [sink.name for sink in running.sinks], now=datetime.now(UTC)
        )
        status["statistics"] = running.statistics()
        body = json.dumps(status, indent=2).encode()
        return _response("200 OK", body, "application/json", head_only)
    return _response("404 Not Found", b"try /healthz, /metrics or /status\n", "text/plain", head_only)


async def serve_status(
    running: Running, listen: str, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    host, port = parse_listen(listen)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    log_event(log, logging.INFO, "status_listening", address=f"{host}:{bound}")
    task_status.started(bound)

    async def handle(stream: trio.SocketStream) -> None:
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
            await stream.send_all(await trio.to_thread.run_sync(answer, running, parts[0], parts[1]))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception as error:  # the status page must never take the relay down
            log_event(log, logging.WARNING, "status_request_failed", error=repr(error))
        finally:
            await stream.aclose()

    await trio.serve_listeners(handle, listeners)
