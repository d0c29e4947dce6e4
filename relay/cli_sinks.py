"""CLI commands about sinks (dead letters, requeue). Added to ``relay`` by :func:`add_commands`."""

from __future__ import annotations

from typing import Any


def add_commands(commands: Any) -> None:
    """Add this module's subcommands to the ``relay`` parser's subparsers."""
    del commands
