"""A recording HTTP/1.1 server for tests (h11 over trio, on a loopback port) that can misbehave on cue.

``mode`` decides every answer: ``"ok"`` (200, or what ``handler`` returns), ``"500"``, ``"429"`` (with
``Retry-After: <retry_after>``), ``"400"``, ``"hang"`` (read the request, never answer), ``"huge"`` (500
with a ``huge_bytes`` body, streamed; ``huge_sent`` counts what the client took before it hung up),
``"trickle"`` (200, then one byte of the body every ``trickle_s``, never finishing). ``stop()``
makes the server go away (port closed, connections dropped); ``start()`` brings it back on the same port.
Every request is recorded with the answer it got; ``accepted`` holds those answered 2xx.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import h11
import trio

from tests.broker import free_port


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query, keep_blank_values=True))


#: A handler returns (status, body) for a request, in mode "ok".
Handler = Callable[[Request], tuple[int, bytes]]


class RecordingServer:
    def __init__(self, handler: Handler | None = None) -> None:
        self.port = free_port()
        self.handler = handler
        self.mode = "ok"
        self.retry_after = "1"
        self.huge_bytes = 64 * 1024 * 1024
        self.huge_sent = 0
        self.trickle_s = 0.2
        self.requests: list[Request] = []
        self.running = False
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> list[Request]:
        return [request for request in self.requests if 200 <= request.status < 300]

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self._serve)

    async def stop(self) -> None:
        if self._scope is not None and self.running:
            self._scope.cancel()
            await self._stopped.wait()

    async def _serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._stopped = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
                async with trio.open_nursery() as nursery:
                    await nursery.start(trio.serve_listeners, self._connection, listeners)
                    self.running = True
                    task_status.started()
        finally:
            self.running = False
            self._stopped.set()

    async def _connection(self, stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        request: Request | None = None
        async with stream:
            while True:
                try:
                    event = connection.next_event()
                except h11.RemoteProtocolError:
                    return
                if event is h11.NEED_DATA:
                    try:
                        data = await stream.receive_some(65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                    connection.receive_data(data)
                    continue
                if isinstance(event, h11.Request):
                    headers = {name.decode().lower(): value.decode() for name, value in event.headers}
                    request = Request(event.method.decode(), event.target.decode(), headers, b"")
                elif isinstance(event, h11.Data) and request is not None:
                    request.body += bytes(event.data)
                elif isinstance(event, h11.EndOfMessage) and request is not None:
                    if request.headers.get("content-encoding") == "gzip":
                        request.body = gzip.decompress(request.body)
                    await self._answer(stream, connection, request)
                    request = None
                    if connection.our_state is not h11.DONE:  # must close, or an unfinished answer
                        return
                    connection.start_next_cycle()
                elif isinstance(event, h11.ConnectionClosed):
                    return

    async def _answer(self, stream: trio.SocketStream, connection: h11.Connection, request: Request) -> None:
        self.requests.append(request)
        if self.mode == "hang":
            request.status = -1
            await trio.sleep_forever()
        if self.mode in ("huge", "trickle"):
            await self._stream_answer(stream, connection, request)
            return
        headers = []
        if self.mode == "ok":
            status, body = self.handler(request) if self.handler else (200, b"{}")
        elif self.mode == "429":
            status, body = 429, b"slow down"
            headers.append(("Retry-After", self.retry_after))
        else:
            status, body = int(self.mode), b'{"error": "' + self.mode.encode() + b'"}'
        request.status = status
        headers.append(("Content-Length", str(len(body))))
        data = connection.send(h11.Response(status_code=status, headers=headers))
        data += connection.send(h11.Data(data=body)) + connection.send(h11.EndOfMessage())
        try:
            await stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            request.status = -2  # the client went away before the answer: not delivered

    async def _stream_answer(
        self, stream: trio.SocketStream, connection: h11.Connection, request: Request
    ) -> None:
        huge = self.mode == "huge"
        request.status = 500 if huge else -3  # a trickled answer never completes: not delivered
        size = self.huge_bytes if huge else 1_000_000
        head = h11.Response(status_code=500 if huge else 200, headers=[("Content-Length", str(size))])
        chunk = b"x" * 65536 if huge else b" "
        sent = 0
        try:
            await stream.send_all(connection.send(head))
            while True:
                await stream.send_all(connection.send(h11.Data(data=chunk)))
                if huge:
                    sent += len(chunk)
                    self.huge_sent += len(chunk)
                    if sent >= size:
                        await stream.send_all(connection.send(h11.EndOfMessage()))
                        return
                else:
                    await trio.sleep(self.trickle_s)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client hung up: the connection ends (its answer is unfinished)
