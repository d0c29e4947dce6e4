"""The ``relay`` command: run the service, and the tools that work on a journal, a config, a modem or
the drivers. The top layer: it may import every package, and none imports it."""

from ._main import main

__all__ = ["main"]
