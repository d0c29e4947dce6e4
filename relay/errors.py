"""The relay's errors: one base, one class per layer, each message saying what and where."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class RelayError(Exception):
    """Base of every error the relay raises on purpose. Anything else is a bug."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One mistake in a config file."""

    file: str
    key: str
    expected: str
    found: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: expected {self.expected}, found {self.found}"


class ConfigError(RelayError):
    """The configuration is invalid; ``problems`` lists every mistake found."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


class JournalError(RelayError):
    """The SQLite journal cannot be opened or written (disk full, permissions, corruption)."""


class JournalFilesChanged(JournalError):
    """The journal's file or WAL was deleted or replaced under the running relay: nothing may be
    committed (and acknowledged) into it until the journal is reopened."""


class SinkError(RelayError):
    """A sink failed; the message names the sink."""

    def __init__(self, sink: str, message: str) -> None:
        self.sink = sink
        super().__init__(f"sink {sink!r}: {message}")


class CommandRefused(RelayError):
    """A command cannot be queued (unknown device, type or parameters the device's protocol cannot
    carry, a bad id or expiry) or changed (unknown id, already final); the message says why, for the
    channel it came in on."""


class CommandIdUsed(CommandRefused):
    """A command's id was used before: the same command delivered again (MQTT QoS 1 may), or a clash."""


class UnknownDevice(CommandRefused):
    """A command for a device the relay does not know (not in ``[[devices]]``, never seen)."""
