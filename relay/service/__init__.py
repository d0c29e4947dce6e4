"""The running relay: the nursery tree that wires journal, sources and sinks (:func:`serve`), the status
endpoint and page, metrics, and systemd's notifications.

Imports: everything below it (sources, sinks, journal, the base modules, ``drivers``); never the CLI.
"""

from ._app import StartupFailed, log_startup_failed, main, serve
from ._running import Running

__all__ = ["Running", "StartupFailed", "log_startup_failed", "main", "serve"]
