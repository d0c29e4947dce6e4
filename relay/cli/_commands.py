"""``relay command send|list|cancel``: the command queue from the shell, through the journal.

They work whether the relay runs or not: SQLite's WAL lets this process write beside the running
relay (waiting out its commits), and the running relay picks the new rows up within a second (its
``commandResult`` reports and the sending are its own). A stopped relay picks them up when it starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..devices import Registry
from ._common import config_from

EXIT_OK = 0


def add_parser(commands: Any) -> None:
    """The ``command`` subcommand and its three actions."""
    command = commands.add_parser("command", help="send commands to devices, list and cancel them")
    actions = command.add_subparsers(title="command actions", metavar="ACTION", required=True)
    send = actions.add_parser("send", help="queue a command for a device (sent when it is connected)")
    send.add_argument("device", help="the device id")
    send.add_argument("type", help="Traccar's command type: positionPeriodic, engineStop, requestPhoto, …")
    send.add_argument("params", nargs="*", metavar="KEY=VALUE", help="its parameters (frequency=60)")
    send.add_argument("--id", help="the command's id (default: a new one); never reused")
    send.add_argument("--expires-s", type=float, help="give up after this many seconds (default: a day)")
    send.add_argument("--via", choices=("data", "sms"), default="data", help="its data session or an SMS")
    send.set_defaults(handler=_send)
    listing = actions.add_parser("list", help="the newest commands and their states")
    listing.add_argument("--device", help="only this device's")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=_list)
    cancel = actions.add_parser("cancel", help="cancel a command that was not sent yet")
    cancel.add_argument("id", help="the command's id")
    cancel.set_defaults(handler=_cancel)
    for sub in (send, listing, cancel):
        sub.add_argument("--config", type=Path, help="config file (default: embedded defaults)")
        sub.add_argument("--data-dir", type=Path, help="override [relay] data_dir")


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` words as parameters: ``true``/``false`` are flags, the rest text (the checks
    convert numbers).

    :raises CommandRefused: a word without ``=``.
    """
    from ..errors import CommandRefused

    params: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise CommandRefused(f"parameter {pair!r} is not KEY=VALUE")
        params[key] = {"true": True, "false": False}.get(value, value)
    return params


def _open_journal(config: Any) -> Any:
    from ..errors import JournalError
    from ..journal import Journal

    if not config.database.exists():
        raise JournalError(f"no journal at {config.database} (has the relay run with this data_dir?)")
    return Journal.open(config.database, site=config.site)


def _send(args: argparse.Namespace) -> int:
    from ..journal import prepare_command

    config = config_from(args)
    registry = Registry.from_config(config)
    journal = _open_journal(config)
    try:

        def protocol_of(device_id: str) -> str | None:
            state = journal.devices.get(device_id)
            if state is not None:
                return state.protocol
            known = registry.get(device_id)
            return known.protocol if known is not None else None

        def phone_of(device_id: str) -> str | None:
            known = registry.get(device_id)
            return known.phone if known is not None else None

        command = prepare_command(
            device_id=args.device,
            type=args.type,
            params=parse_params(args.params),
            via=args.via,
            expires_s=args.expires_s,
            id=args.id,
            source="cli",
            now=datetime.now(UTC),
            protocol_of=protocol_of,
            phone_of=phone_of,
        )
        journal.insert_command(command)
    finally:
        journal.close()
    print(
        f"{command.id} queued for {command.device_id} ({command.type.value}"
        f" {json.dumps(dict(command.params))}); a running relay sends it when the device is connected"
    )
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from ..journal import Journal

    config = config_from(args)
    with Journal.open_read_only(config.database) as journal:
        rows = journal.commands(device_id=args.device, limit=args.limit)
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no commands")
    for row in rows:
        detail = row["error"] or (json.dumps(row["answer"]) if row["answer"] else "")
        print(
            f"{row['id']:<16} {row['device_id']:<18} {row['type']:<17} {row['state']:<12}"
            f" {row['source']:<12} {row['created_at']:<24} {json.dumps(row['params'])} {detail}".rstrip()
        )
    return EXIT_OK


def _cancel(args: argparse.Namespace) -> int:
    journal = _open_journal(config_from(args))
    try:
        journal.cancel_command(args.id, datetime.now(UTC))
    finally:
        journal.close()
    print(f"{args.id} cancelled", file=sys.stdout)
    return EXIT_OK
