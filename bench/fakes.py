"""Misbehaving servers for the fault suite, each in threads of the suite's process: an MQTT front
that passes the relay through to the real broker or misbehaves on cue, and an HTTP sink server that
answers 200, or 500 with a huge body, or trickles its answer."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RECEIVE_SIZE = 65536


def _read_exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_packet(sock: socket.socket) -> tuple[int, int, bytes] | None:
    """(packet type, flags, body) of the next MQTT control packet; None at the end of the stream."""
    first = _read_exactly(sock, 1)
    if first is None:
        return None
    length, multiplier = 0, 1
    while True:  # the remaining length: 7 bits a byte, least significant first
        byte = _read_exactly(sock, 1)
        if byte is None:
            return None
        length += (byte[0] & 0x7F) * multiplier
        multiplier *= 128
        if not byte[0] & 0x80:
            break
    body = _read_exactly(sock, length) if length else b""
    if body is None:
        return None
    return first[0] >> 4, first[0] & 0x0F, body


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(RECEIVE_SIZE):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class MqttFront:
    """Listens on a loopback port for the relay's MQTT sink. Per ``mode``, decided when a connection
    is accepted: ``proxy`` passes it through to the real broker at ``target``; ``silent`` CONNACKs,
    answers PINGREQ and never sends a PUBACK (mosquitto cannot be told to withhold them); ``hangup``
    CONNACKs and closes the connection on the first PUBLISH; ``down`` closes it at once (an uplink
    that is gone). :meth:`set_mode` also cuts every open connection, so the next one gets the new mode.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.mode = "proxy"
        #: monotonic time of every accepted connection, and of every CONNECT the front answered itself.
        self.accepted: list[float] = []
        self.connects: list[float] = []
        self.publishes = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def set_mode(self, mode: str) -> None:
        with self._lock:
            self.mode = mode
            victims = list(self._open)
            self._open.clear()
        for sock in victims:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self.mode
                self.accepted.append(time.monotonic())
                if mode != "down":
                    self._open.add(client)
            if mode == "down":
                client.close()
            elif mode == "proxy":
                threading.Thread(target=self._proxy, args=(client,), daemon=True).start()
            else:
                threading.Thread(target=self._misbehave, args=(client, mode), daemon=True).start()

    def _proxy(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            self._open.add(upstream)
        thread = threading.Thread(target=_pipe, args=(client, upstream), daemon=True)
        thread.start()
        _pipe(upstream, client)
        thread.join()
        for sock in (client, upstream):
            with self._lock:
                self._open.discard(sock)
            sock.close()

    def _misbehave(self, client: socket.socket, mode: str) -> None:
        try:
            while (packet := read_packet(client)) is not None:
                kind = packet[0]
                if kind == 1:  # CONNECT
                    self.connects.append(time.monotonic())
                    client.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
                elif kind == 3:  # PUBLISH
                    self.publishes += 1
                    if mode == "hangup":
                        break
                elif kind == 12:  # PINGREQ
                    client.sendall(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    break
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(client)
            client.close()

    def close(self) -> None:
        self.listener.close()
        self.set_mode("down")


class HttpSinkServer:
    """The server an ``http`` sink posts its JSON batches to. ``mode``: ``ok`` (200, the batch's reports
    recorded as delivered), ``huge`` (500 with a ``huge_bytes`` body, streamed until the relay hangs up;
    ``huge_sent`` counts what it took), ``trickle`` (200, then one byte of the body every ``trickle_s``,
    never finishing)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.huge_bytes = 300 * 1024 * 1024
        self.huge_sent = 0
        self.trickle_s = 2.0
        self.answers: dict[str, int] = {}
        #: Every report of every batch answered 200, in arrival order.
        self.delivered: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server._answer(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/reports"

    def _answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        mode = self.mode
        with self.lock:
            self.answers[mode] = self.answers.get(mode, 0) + 1
        try:
            if mode == "ok":
                reports = json.loads(body)["reports"]
                with self.lock:
                    self.delivered += reports
                handler.send_response(200)
                handler.send_header("Content-Length", "2")
                handler.end_headers()
                handler.wfile.write(b"{}")
                handler.wfile.flush()
            elif mode == "huge":
                handler.send_response(500)
                handler.send_header("Content-Length", str(self.huge_bytes))
                handler.end_headers()
                chunk = b"x" * RECEIVE_SIZE
                for _ in range(self.huge_bytes // len(chunk)):
                    handler.wfile.write(chunk)
                    with self.lock:
                        self.huge_sent += len(chunk)
                handler.close_connection = True
            else:  # trickle
                handler.send_response(200)
                handler.send_header("Content-Length", "1000")
                handler.end_headers()
                handler.wfile.flush()
                for _ in range(1000):
                    time.sleep(self.trickle_s)
                    handler.wfile.write(b" ")
                    handler.wfile.flush()
        except OSError:  # the relay hung up
            handler.close_connection = True

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
