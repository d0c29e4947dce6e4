"""relay.service._sdnotify against a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from relay.service import _sdnotify as sdnotify


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    """A bound datagram socket on a filesystem path, and an environment pointing NOTIFY_SOCKET at it."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    try:
        yield sock, {"NOTIFY_SOCKET": str(path)}
    finally:
        sock.close()


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, dict[str, str]]]:
    """A bound datagram socket in Linux's abstract namespace (how systemd usually names it: ``@...``)."""
    name = f"relay-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        yield sock, {"NOTIFY_SOCKET": "@" + name}
    finally:
        sock.close()


def test_ready_sends_ready_1_to_a_filesystem_socket(systemd_socket):
    sock, env = systemd_socket
    assert sdnotify.ready(environ=env) is True
    assert sock.recv(4096) == b"READY=1"


def test_ready_sends_ready_1_to_an_abstract_socket(abstract_socket):
    sock, env = abstract_socket
    assert sdnotify.ready(environ=env) is True
    assert sock.recv(4096) == b"READY=1"


def test_each_helper_sends_its_own_assignment(systemd_socket):
    sock, env = systemd_socket
    assert sdnotify.watchdog_ping(environ=env)
    assert sdnotify.stopping(environ=env)
    assert sdnotify.reloading(environ=env)
    assert [sock.recv(4096) for _ in range(3)] == [b"WATCHDOG=1", b"STOPPING=1", b"RELOADING=1"]


def test_notify_sends_multiple_lines_in_one_datagram(systemd_socket):
    sock, env = systemd_socket
    assert sdnotify.notify("STATUS=up\nREADY=1", environ=env)
    assert sock.recv(4096) == b"STATUS=up\nREADY=1"


def test_status_keeps_to_one_line_so_it_cannot_inject_assignments(systemd_socket):
    sock, env = systemd_socket
    assert sdnotify.status("2 devices\nREADY=1", environ=env)
    assert sock.recv(4096) == b"STATUS=2 devices READY=1"


def test_status_sends_utf8(systemd_socket):
    sock, env = systemd_socket
    assert sdnotify.status("São Paulo: 3 devices", environ=env)
    assert sock.recv(4096) == "STATUS=São Paulo: 3 devices".encode()


def test_the_process_environment_is_used_by_default(systemd_socket, monkeypatch):
    sock, env = systemd_socket
    monkeypatch.setenv("NOTIFY_SOCKET", env["NOTIFY_SOCKET"])
    assert sdnotify.ready() is True
    assert sock.recv(4096) == b"READY=1"


def test_without_systemd_every_sender_returns_false(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False
    assert sdnotify.watchdog_ping() is False
    assert sdnotify.status("x") is False


@pytest.mark.parametrize("value", ["", "@", "relative/path", "vsock:2:1234"])
def test_unusable_addresses_return_false(value):
    assert sdnotify.ready(environ={"NOTIFY_SOCKET": value}) is False


def test_a_socket_that_is_gone_returns_false_instead_of_raising(tmp_path):
    assert sdnotify.ready(environ={"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")}) is False


def test_a_full_receiver_queue_returns_false_instead_of_blocking(systemd_socket):
    _sock, env = systemd_socket
    # Nobody reads: the kernel queue fills up, and a notification must then fail fast, never block.
    results = [sdnotify.notify("X=" + "a" * 1024, environ=env) for _ in range(2000)]
    assert results[0] is True
    assert results[-1] is False


def test_watchdog_interval_is_in_seconds():
    assert sdnotify.watchdog_interval(environ={"WATCHDOG_USEC": "30000000"}) == 30.0
    assert sdnotify.watchdog_interval(environ={"WATCHDOG_USEC": "500000"}) == 0.5


def test_watchdog_interval_for_our_own_pid():
    env = {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}
    assert sdnotify.watchdog_interval(environ=env) == 20.0


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"WATCHDOG_USEC": ""},
        {"WATCHDOG_USEC": "0"},
        {"WATCHDOG_USEC": "-5"},
        {"WATCHDOG_USEC": "soon"},
        {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"},
        {"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "me"},
    ],
)
def test_no_watchdog_interval_when_none_applies_to_us(env):
    assert sdnotify.watchdog_interval(environ=env) is None


def test_watchdog_interval_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert sdnotify.watchdog_interval() == 4.0
