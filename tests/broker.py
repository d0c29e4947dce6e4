"""A real mosquitto process for tests, on a free loopback port, that can be stopped and restarted."""

from __future__ import annotations

import getpass
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_tcp_udp_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (the relay binds both)."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free for both TCP and UDP")


class Mosquitto:
    """``start()``, ``stop()`` (SIGKILL: the broker just vanishes), ``start()`` again on the same port."""

    def __init__(
        self, directory: Path, *, persistence: bool = False, users: dict[str, str] | None = None
    ) -> None:
        """``users``: user name -> password; when given, only they may connect (no anonymous)."""
        executable = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(executable).exists():
            raise RuntimeError(
                "mosquitto is not installed: run ./dev test (it installs it) or apt-get install mosquitto"
            )
        self.executable = executable
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        # Run as ourselves: as root, mosquitto would otherwise switch to a user that cannot write here.
        lines = [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}"]
        if users:
            passwords = directory / "mosquitto.passwd"
            for number, (user, password) in enumerate(users.items()):
                create = ["-c"] if number == 0 else []
                command = ["mosquitto_passwd", *create, "-b", str(passwords), user, password]
                subprocess.run(command, check=True, capture_output=True, timeout=30)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if persistence:
            # Saved every second, so a persistent test subscriber's session survives a SIGKILL.
            lines += ["persistence true", f"persistence_location {directory}/", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        self.config.write_text("\n".join(lines) + "\n")
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([self.executable, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def wait_saved(self, timeout: float = 10) -> None:
        """Block until the broker has saved its state (sessions, subscriptions) after this call."""
        database = self.config.parent / "mosquitto.db"
        since = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if database.exists() and database.stat().st_mtime > since:
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not save its state (is persistence on?)")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class Subscriber:
    """Collects every message on ``topic`` (test side: paho's own thread is fine here)."""

    def __init__(self, broker: Mosquitto, topic: str = "#", *, persistent: bool = False) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        # A persistent session (fixed id, clean_session False) keeps receiving across broker restarts.
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{time.monotonic_ns()}",
            clean_session=not persistent,
        )
        client.reconnect_delay_set(0.1, 0.5)
        client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda c, u, mid, rc, p: self._subscribed.set()
        client.on_message = self._on_message
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        self.client = client
        if not self._subscribed.wait(10):
            raise RuntimeError("subscriber could not subscribe")

    def _on_message(self, client: Any, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain)))

    def reports(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                json.loads(payload) for topic, payload, _ in self.messages if not topic.endswith("/status")
            ]

    async def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        """Wait (in trio, so the relay under test keeps running) for ``count`` distinct reports."""
        import trio

        with trio.move_on_after(timeout):
            while len({report["id"] for report in self.reports()}) < count:
                await trio.sleep(0.05)
            return self.reports()
        raise AssertionError(f"got {len(self.reports())} reports, expected {count}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
