"""CLI commands about sinks: ``relay dead-letters`` and ``relay requeue``. Added by :func:`add_commands`.

A dead letter is a request a sink's server refused for good (an HTTP 4xx other than 408/429): the
batch (http) or position (osmand) with the server's answer. Both commands work on the journal of
``--config``'s data_dir (or ``--data-dir``), whether or not the relay is running: a running relay
sends requeued letters within seconds, a stopped one when it starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import RelayError

EXIT_OK = 0
EXIT_FAILURE = 1
_LINE = "{:>6} {:<12} {:<9} {:>6} {:>7} {:<15} {:<24} {}"


def add_commands(commands: Any) -> None:
    """Add this module's subcommands to the ``relay`` parser's subparsers."""
    letters = commands.add_parser("dead-letters", help="list what sinks' servers refused for good")
    _journal_arguments(letters)
    letters.add_argument("--sink", help="only this sink's")
    letters.add_argument("--json", action="store_true", help="print JSON instead of a table")
    letters.set_defaults(handler=_dead_letters)

    requeue = commands.add_parser("requeue", help="send dead letters again (after fixing the cause)")
    _journal_arguments(requeue)
    requeue.add_argument("--sink", help="only this sink's dead letters")
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every parked dead letter (of --sink)")
    which.add_argument("ids", nargs="*", type=int, default=[], metavar="ID", help="dead letter ids")
    requeue.set_defaults(handler=_requeue)


def _journal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="config file (default: embedded defaults)")
    parser.add_argument("--data-dir", type=Path, help="override [relay] data_dir")


def check_sink(config: Config, name: str) -> None:
    """:raises RelayError: neither the config nor the journal knows a sink ``name``."""
    from ._export import journal_sinks

    configured = {sink.name for sink in config.sinks}
    known = configured | journal_sinks(config.database)
    if name not in known:
        names = ", ".join(sorted(known)) or "none"
        raise RelayError(f"no sink {name!r} in the config or the journal (known sinks: {names})")


def _dead_letters(args: argparse.Namespace) -> int:
    from ..journal import Journal
    from ._common import config_from

    config = config_from(args)
    if args.sink is not None:
        check_sink(config, args.sink)
    with Journal.open_read_only(config.database) as journal:
        rows = journal.dead_letters(sink=args.sink)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no dead letters")
        return EXIT_OK
    header = ("id", "sink", "state", "status", "reports", "seqs", "parked at", "answer")
    print(_LINE.format(*header))
    for row in rows:
        seqs = f"{row['first_seq']}-{row['last_seq']}"
        answer = " ".join((row["answer"] or "").split())[:60]
        status = row["status"] or "-"
        print(
            _LINE.format(
                row["id"], row["sink"], row["state"], status, row["reports"], seqs, row["created_at"], answer
            )
        )
    return EXIT_OK


def _requeue(args: argparse.Namespace) -> int:
    from ..journal import requeue_dead_letters
    from ._common import config_from

    if not args.all and not args.ids:
        raise RelayError("name the dead letters to requeue (ID ...) or use --all")
    config = config_from(args)
    if args.sink is not None:
        check_sink(config, args.sink)
    if args.ids:
        _check_letters(config.database, args.ids, args.sink)
    count = requeue_dead_letters(config.database, sink=args.sink, ids=None if args.all else args.ids)
    print(f"{count} dead letter{'s' if count != 1 else ''} requeued")
    return EXIT_OK if count or args.all else EXIT_FAILURE


def _check_letters(database: Path, ids: list[int], sink: str | None) -> None:
    """Say which named letters are already requeued (on stderr).

    :raises RelayError: an id is no dead letter (of ``sink``); nothing is requeued then.
    """
    from ._export import dead_letter_sinks

    found = dead_letter_sinks(database, ids)
    if missing := [str(number) for number in ids if number not in found]:
        raise RelayError(f"no dead letter with id {', '.join(missing)} (see relay dead-letters)")
    if sink is not None and (others := [str(n) for n in ids if found[n][0] != sink]):
        raise RelayError(f"dead letter {', '.join(others)} is not sink {sink!r}'s (see relay dead-letters)")
    for number in ids:
        if found[number][1] != "parked":
            print(f"dead letter {number} is already {found[number][1]}", file=sys.stderr)
