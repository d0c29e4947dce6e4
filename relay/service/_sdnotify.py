"""The systemd notification protocol (``sd_notify``) in pure Python.

A service started with ``Type=notify`` tells systemd it is ready, and with ``WatchdogSec=`` proves it is
alive, by sending short ``KEY=VALUE`` datagrams to the unix socket named in ``$NOTIFY_SOCKET``
(see sd_notify(3)). This module speaks that protocol with the standard library only: no libsystemd, no
threads, no state kept between calls.

Every sender returns ``True`` when systemd got the datagram and ``False`` when there is nobody to tell (the
process was not started by systemd, as in tests and on a laptop) or the send failed. Notification is
advisory, so nothing here raises for a missing or broken socket; callers that care (``ready()`` at start-up)
can log a ``False``.

Typical use in the service::

    sdnotify.ready()                          # once the listeners are bound
    interval = sdnotify.watchdog_interval()   # None when no watchdog is configured
    ...
    sdnotify.watchdog_ping()                  # every interval / 2, from the event loop
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["notify", "ready", "reloading", "status", "stopping", "watchdog_interval", "watchdog_ping"]

#: The environment variable systemd sets to the notification socket's address.
NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
#: The watchdog timeout in microseconds, set when the unit has ``WatchdogSec=``.
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
#: The PID the watchdog applies to; when set and not ours, a parent process is the one being watched.
WATCHDOG_PID_ENV = "WATCHDOG_PID"

_MICROSECONDS_PER_SECOND = 1_000_000


def _address(environ: Mapping[str, str]) -> str | bytes | None:
    """The socket address in ``$NOTIFY_SOCKET``, or None when it is unset or of a kind we cannot use.

    ``/path`` is a filesystem socket; ``@name`` is Linux's abstract namespace, which the kernel spells with
    a leading NUL byte. Other forms (``vsock:`` from systemd 253 on, meant for VMs) are not supported.
    """
    value = environ.get(NOTIFY_SOCKET_ENV, "")
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None


def notify(message: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``message`` (one or more ``KEY=VALUE`` lines) to systemd.

    :param message: the state to report, e.g. ``"READY=1"`` or ``"STATUS=listening\\nREADY=1"``.
    :param environ: where to read ``$NOTIFY_SOCKET`` from; ``os.environ`` by default.
    :returns: True if the datagram was sent, False if there is no notification socket (not run by systemd),
        its address is unusable, or sending failed (socket gone, queue full: a notification never blocks).
    """
    address = _address(os.environ if environ is None else environ)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True


def ready(*, environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd that start-up is finished (``READY=1``); a ``Type=notify`` unit is "started" from now."""
    return notify("READY=1", environ=environ)


def reloading(*, environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd that the service is reloading its configuration (``RELOADING=1``); send ready() after."""
    return notify("RELOADING=1", environ=environ)


def stopping(*, environ: Mapping[str, str] | None = None) -> bool:
    """Tell systemd that the service is shutting down (``STOPPING=1``)."""
    return notify("STOPPING=1", environ=environ)


def watchdog_ping(*, environ: Mapping[str, str] | None = None) -> bool:
    """Reset the watchdog timer (``WATCHDOG=1``). Send at least every ``watchdog_interval() / 2`` seconds."""
    return notify("WATCHDOG=1", environ=environ)


def status(text: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Set the one-line status shown by ``systemctl status`` (``STATUS=...``).

    Line breaks in ``text`` are turned into spaces: a newline would end the STATUS field and start a new
    ``KEY=VALUE`` assignment.
    """
    one_line = " ".join(text.splitlines())
    return notify(f"STATUS={one_line}", environ=environ)


def watchdog_interval(*, environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds, or None when this process has no watchdog.

    None when ``$WATCHDOG_USEC`` is unset, not a positive integer, or ``$WATCHDOG_PID`` names another
    process (the variables were inherited from a watched parent). Ping at about half this interval.
    """
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get(WATCHDOG_USEC_ENV, ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get(WATCHDOG_PID_ENV)
    if pid is not None:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec / _MICROSECONDS_PER_SECOND
