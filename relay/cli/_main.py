"""The ``relay`` command: run, check-config, status, decode, vectors (and sms/provision when available)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Config
from ..errors import ConfigError, RelayError
from ._commands import add_parser as add_command_parser
from ._common import EXPORT_FORMATS, config_from
from ._progress import Progress

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_TRANSPORTS = ("tcp", "udp", "http", "sms", "serial")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        try:
            return int(args.handler(args) or EXIT_OK)
        except BaseExceptionGroup as group:
            raise _single_relay_error(group) from group
    except ConfigError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_FAILURE
    except RelayError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `relay decode ... | head`: the reader left, which is fine
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _single_relay_error(group: BaseExceptionGroup) -> BaseException:
    """A start-up failure surfaces from inside task groups: report the RelayError it carries, if any."""
    matched, _ = group.split(RelayError)
    while isinstance(matched, BaseExceptionGroup):
        matched = matched.exceptions[0]
    return matched if matched is not None else group


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relay", description="GPS tracker edge relay.")
    parser.add_argument("--version", action="version", version=f"relay {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", help="run the relay (embedded defaults without --config)")
    run.add_argument("--config", type=Path, help="TOML config file (default: embedded defaults, store only)")
    run.add_argument("--port", type=int, help="override [listen] port")
    run.add_argument("--data-dir", type=Path, help="override [relay] data_dir")
    run.set_defaults(handler=_run)

    check = commands.add_parser("check-config", help="validate a config file, print every error")
    check.add_argument("path", type=Path, nargs="?", help="the config file (or --config FILE)")
    check.add_argument("--config", type=Path, help="the config file, as other commands take it")
    check.set_defaults(handler=_check_config)

    status = commands.add_parser("status", help="devices, sink backlogs and quarantine, from the journal")
    status.add_argument("--config", type=Path, help="config file (default: embedded defaults)")
    status.add_argument("--data-dir", type=Path, help="override [relay] data_dir")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=_status)

    devices = commands.add_parser(
        "devices", help="the registry ([[devices]]) joined with each device's live state"
    )
    devices_commands = devices.add_subparsers(title="devices commands", metavar="ACTION", required=True)
    devices_list = devices_commands.add_parser("list", help="every known or seen device, one line each")
    devices_show = devices_commands.add_parser("show", help="one device: its registry entry and live state")
    devices_show.add_argument("id", help="the device id")
    for sub in (devices_list, devices_show):
        sub.add_argument("--config", type=Path, help="config file (default: embedded defaults)")
        sub.add_argument("--data-dir", type=Path, help="override [relay] data_dir")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(handler=_devices)

    add_command_parser(commands)

    decode = commands.add_parser("decode", help="decode frames with the drivers, print JSON per input")
    decode.add_argument("--protocol", help="auto (the default) or a protocol name; overrides a line's")
    decode.add_argument("--transport", choices=_TRANSPORTS, help="tcp (the default); overrides a line's")
    source = decode.add_mutually_exclusive_group(required=True)
    source.add_argument("--hex", help="one input as hex")
    source.add_argument("--text", help="one input as text (ASCII)")
    source.add_argument("--jsonl", help="a file (or - for stdin) of JSON lines, one input each (README)")
    decode.set_defaults(handler=_decode)

    vectors = commands.add_parser("vectors", help="decode every vector file and print the agreement table")
    vectors.add_argument(
        "directory", type=Path, nargs="?", help="vector files (default: tests/data/vectors of a checkout)"
    )
    vectors.add_argument("--json", action="store_true")
    vectors.set_defaults(handler=_vectors)

    export = commands.add_parser(
        "export", help="print stored reports as JSON lines, CSV, GeoJSON or GPX, oldest first"
    )
    export.add_argument("--config", type=Path, help="config file (default: embedded defaults)")
    export.add_argument("--data-dir", type=Path, help="override [relay] data_dir")
    export.add_argument(
        "--format", choices=EXPORT_FORMATS, default="jsonl", help="jsonl (the default), csv, geojson, gpx"
    )
    export.add_argument("--device", help="only this device id (exit 1 if the journal never saw it)")
    export.add_argument("--since", help="only reports received at or after this ISO 8601 time")
    export.add_argument("--until", help="only reports received before this ISO 8601 time")
    export.add_argument("--limit", type=int, help="at most this many reports")
    export.set_defaults(handler=_export)

    tail = commands.add_parser("tail", help="print reports as they are stored, until Ctrl-C")
    tail.add_argument("--config", type=Path, help="config file (default: embedded defaults)")
    tail.add_argument("--data-dir", type=Path, help="override [relay] data_dir")
    tail.add_argument("--device", help="only this device id")
    tail.add_argument("--human", action="store_true", help="one short line per report instead of JSON")
    tail.set_defaults(handler=_tail)

    quarantine = commands.add_parser("quarantine", help="list quarantined bytes, or re-decode them")
    quarantine_commands = quarantine.add_subparsers(
        title="quarantine commands", metavar="ACTION", required=True
    )
    listing = quarantine_commands.add_parser("list", help="the newest quarantine rows")
    listing.add_argument("--limit", type=int, default=50)
    retry = quarantine_commands.add_parser(
        "retry",
        help="re-decode rows with today's drivers; what decodes becomes reports and leaves the quarantine",
    )
    retry.add_argument("ids", type=int, nargs="*", help="row ids (default: every row)")
    for sub in (listing, retry):
        sub.add_argument("--config", type=Path, help="config file (default: embedded defaults)")
        sub.add_argument("--data-dir", type=Path, help="override [relay] data_dir")
        sub.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_quarantine_list)
    retry.set_defaults(handler=_quarantine_retry)

    salvage = commands.add_parser(
        "salvage", help="copy what can be read from a damaged journal (set aside at start) into the journal"
    )
    salvage.add_argument("file", type=Path, help="the damaged journal, e.g. journal.sqlite3.damaged-…")
    salvage.add_argument("--config", type=Path, help="config file (default: embedded defaults)")
    salvage.add_argument("--data-dir", type=Path, help="override [relay] data_dir")
    salvage.set_defaults(handler=_salvage)

    simulate = commands.add_parser(
        "simulate", help="simulated trackers drive a relay and check its replies (exit 1 on a wrong one)"
    )
    simulate.add_argument("--protocol", required=True, help="a protocol, a comma-separated list, or all")
    simulate.add_argument("--to", required=True, metavar="HOST:PORT", help="the relay, e.g. 127.0.0.1:8888")
    simulate.add_argument("--devices", type=int, default=1, help="devices per protocol (default 1)")
    simulate.add_argument("--rate", type=float, default=1.0, help="reports per second per device (1)")
    simulate.add_argument("--duration", type=float, default=60.0, help="seconds (60; 0: until Ctrl-C)")
    simulate.add_argument("--transport", choices=("tcp", "udp"), default="tcp")
    simulate.set_defaults(handler=_simulate)

    backup = commands.add_parser("backup", help="copy the journal to FILE, consistently, also while running")
    backup.add_argument("file", type=Path)
    backup.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    restore = commands.add_parser("restore", help="make a backup the journal (the relay must be stopped)")
    restore.add_argument("file", type=Path)
    for sub in (backup, restore):
        sub.add_argument("--config", type=Path, help="config file (default: embedded defaults)")
        sub.add_argument("--data-dir", type=Path, help="override [relay] data_dir")
    backup.set_defaults(handler=_backup)
    restore.set_defaults(handler=_restore)

    from . import _sinks as cli_sinks
    from . import _sms as cli_sms

    cli_sms.add_commands(commands)
    cli_sinks.add_commands(commands)
    return parser


def _simulate(args: argparse.Namespace) -> int:
    from ._simulate import main as simulate

    return simulate(args)


def _run(args: argparse.Namespace) -> int:
    """Run the relay; a fatal start-up error is one logfmt line (``event=startup_failed``) and exit 1."""
    import trio

    from .. import logs
    from ..service import StartupFailed, log_startup_failed
    from ..service import main as run_main

    logs.setup("info")  # before the config is read: its errors are logged like any other
    try:
        config = config_from(args)
    except ConfigError as error:
        log_startup_failed("; ".join(str(problem) for problem in error.problems) or str(error))
        return EXIT_FAILURE
    except RelayError as error:
        log_startup_failed(str(error))
        return EXIT_FAILURE
    logs.setup(config.log_level)
    if not args.config:
        import logging

        from ..logs import log_event

        log_event(
            logging.getLogger("relay"),
            logging.INFO,
            "embedded_defaults",
            hint="no --config given; see config/relay.toml for every setting",
        )
    try:
        trio.run(run_main, config)
    except BaseExceptionGroup as group:
        if group.subgroup(StartupFailed) is None:
            raise
        return EXIT_FAILURE
    except StartupFailed:
        return EXIT_FAILURE
    return EXIT_OK


def _backup(args: argparse.Namespace) -> int:
    from ..journal import backup_command

    return backup_command(args.file, config_from(args).database, force=args.force)


def _restore(args: argparse.Namespace) -> int:
    from ..journal import restore_command

    return restore_command(args.file, config_from(args).database)


def _check_config(args: argparse.Namespace) -> int:
    """Every error and warning about the file and what it names; 1 when there is any error."""
    from ..config import check

    path = args.path or args.config
    if path is None or (args.path and args.config and args.path != args.config):
        print("error: name one config file: relay check-config FILE", file=sys.stderr)
        return EXIT_USAGE
    checked = check(path)
    for problem in checked.warnings:
        print(f"warning: {problem}", file=sys.stderr)
    if checked.config is None:
        raise ConfigError(checked.errors)
    config = checked.config
    sinks = ", ".join(f"{sink.name} ({sink.type})" for sink in config.sinks) or "none (store only)"
    print(
        f"{path}: ok — site {config.site!r}, port {config.listen.port}, data in {config.data_dir}, "
        f"sinks: {sinks}"
    )
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    from ..journal import Journal

    config = config_from(args)
    # Without a config, the sinks are the journal's own (each saves its position there).
    sinks = [sink.name for sink in config.sinks] if args.config else None
    with Journal.open_read_only(config.database) as journal:
        status = journal.status(sinks, now=datetime.now(UTC))
    from ..journal import set_aside_journals

    status["set_aside"] = [str(path) for path in set_aside_journals(config.database)]
    config_error = config.data_dir / "config-error.txt"
    if config_error.exists():
        status["config_error"] = config_error.read_text(errors="replace").strip()
    if args.json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    print(format_status(status))
    return EXIT_OK


def _devices(args: argparse.Namespace) -> int:
    """``relay devices list|show ID``: each registry entry with its live state (from the journal), and the
    devices seen that the registry does not name; 1 when ``show`` names a device neither knows."""
    from dataclasses import asdict

    from ..journal import Journal

    config = config_from(args)
    seen: dict[str, dict[str, Any]] = {}
    if config.database.exists():
        with Journal.open_read_only(config.database) as journal:
            seen = {d["device_id"]: d for d in journal.status([], now=datetime.now(UTC))["devices"]}
    known = {device.id: device for device in config.devices}
    joined = [
        {"id": device_id, "known": device_id in known,
         "registry": asdict(known[device_id]) if device_id in known else None,
         "state": seen.get(device_id)}
        for device_id in [*known, *(d for d in seen if d not in known)]
    ]  # fmt: skip
    if getattr(args, "id", None) is not None:
        joined = [entry for entry in joined if entry["id"] == args.id]
        if not joined:
            print(f"error: no device {args.id!r} in the registry or the journal", file=sys.stderr)
            return EXIT_FAILURE
    if args.json:
        print(json.dumps(joined if getattr(args, "id", None) is None else joined[0], indent=2, default=list))
        return EXIT_OK
    for entry in joined:
        registry, state = entry["registry"] or {}, entry["state"] or {}
        name = registry.get("name") or ("-" if entry["known"] else "(not in the registry)")
        print(
            f"{entry['id']:<20} {name:<24}"
            f" {state.get('protocol') or registry.get('protocol') or '-':<10}"
            f" {state.get('last_seen') or 'never seen':<26} {state.get('last_event') or '-':<14}"
            f" {state.get('last_fix') or '-'}"
        )
    return EXIT_OK


def format_status(status: dict[str, Any]) -> str:
    lines = []
    if status.get("config_error"):
        lines += ["CONFIG REJECTED (the last good config is running):", status["config_error"], ""]
    for path in status.get("set_aside", []):
        lines += [f"DAMAGED JOURNAL SET ASIDE: {path}", f"  recover its reports: relay salvage {path}", ""]
    devices = status["devices"]
    lines.append(f"devices: {len(devices)}")
    if devices:
        lines.append(
            f"  {'device':<20} {'protocol':<10} {'via':<6} {'last report':<26} {'age':>10} {'event':<14}"
            " last fix"
        )
        for device in devices:
            lines.append(
                f"  {device['device_id']:<20} {device['protocol']:<10} {device['transport']:<6} "
                f"{device['last_seen']:<26} {_age(device['age_s']):>10} {device.get('last_event') or '-':<14}"
                f" {device.get('last_fix') or '-'}"
            )
    lines.append(f"reports in journal: {status['reports']} (newest seq {status['last_seq']})")
    if not status["sinks"]:
        lines.append("sinks: none (store only)")
    for sink in status["sinks"]:
        oldest = f", oldest undelivered {_age(sink['oldest_age_s'])} old" if sink["pending"] else ""
        lines.append(f"sink {sink['sink']}: backlog {sink['pending']}{oldest}")
        lines += _uplink_lines(sink)
    lines.append(f"quarantine: {status['quarantine']}")
    commands = status.get("commands")
    if commands is not None:
        oldest = f", the oldest {_age(commands['oldest_age_s'])} old" if commands["queued"] else ""
        lines.append(
            f"commands: {commands['queued']} queued{oldest}, {commands['sent']} sent awaiting an answer"
        )
    return "\n".join(lines)


#: Uplink windows ``relay status`` lists per sink (the newest); ``--json`` has all of the last 24 h.
WINDOWS_SHOWN = 10


def _uplink_lines(sink: dict[str, Any]) -> list[str]:
    """The sink's uplink, as the relay last saved it: state and since when, last error, its windows."""
    if "uplink_saved_at" not in sink:
        return []
    since = sink.get("connected_since") or sink.get("disconnected_since")
    state = "connected" if sink.get("connected") else "disconnected"
    lines = [f"  uplink: {state} since {since or '-'} (as of {sink['uplink_saved_at']})"]
    if sink.get("last_error"):
        lines.append(f"  last error: {sink['last_error']}")
    windows = sink.get("uplink_windows") or []
    drained = sum(window.get("drained", 0) for window in windows)
    lines.append(f"  uplink windows in the last 24 h: {len(windows)}, {drained} reports delivered")
    for window in windows[-WINDOWS_SHOWN:]:
        lasted = "still up" if window.get("open") else f"lasted {_age(window.get('lasted_s'))}"
        lines.append(f"    came up {window['came_up']}, {lasted}, delivered {window.get('drained', 0)}")
    return lines


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _decode(args: argparse.Namespace) -> int:
    """Decode every input, print one JSON object per input; 1 when any input failed, 2 for a bad option."""
    from drivers import Transport, decode_stream

    if args.protocol is not None and (problem := _check_protocol(args.protocol)):
        print(f"error: --protocol: {problem}", file=sys.stderr)
        return EXIT_USAGE
    now = datetime.now(UTC)
    total = failed = 0
    for where, request in _decode_inputs(args):
        if "error" in request:
            out: dict[str, Any] = {"protocol": None, "reports": [], "replies": [], "error": request["error"]}
        elif request["transport"] == "sms":
            out = _decode_sms(request, now)
        else:
            out = decode_stream(
                request["frames"],
                now=now,
                protocol=request["protocol"],
                transport=Transport(request["transport"]),
                messages=True,
            ).summary()
        if out["error"] is not None and where:
            out["error"] = f"{where}: {out['error']}"
        total += 1
        failed += out["error"] is not None
        print(json.dumps(out, ensure_ascii=False))
    if failed:
        print(f"relay decode: {failed} of {total} input(s) failed (see their \"error\")", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _check_protocol(name: Any) -> str | None:
    """What is wrong with a protocol name given to ``relay decode``, or None when it names a driver."""
    from drivers import drivers

    if name == "auto" or (isinstance(name, str) and name in drivers()):
        return None
    return f"expected 'auto' or one of {', '.join(drivers())}, found {_shown(name)}"


def _decode_sms(request: dict[str, Any], now: datetime) -> dict[str, Any]:
    try:
        from drivers.sms import decode_sms
    except ImportError:
        return {"protocol": None, "reports": [], "replies": [], "error": "SMS decoding is not available"}
    results = [
        decode_sms(
            frame if request["encoding"] == "hex" else frame.decode("latin-1"),
            encoding=request["encoding"],
            smsc=request.get("smsc"),
            sender=request.get("sender"),
            senders={},
            now=now,
        )
        for frame in request["raw"]
    ]
    return results[0] if len(results) == 1 else {**results[-1], "parts": results}


def _decode_inputs(args: argparse.Namespace) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each input as ``(where, request)``: ``where`` is ``FILE:LINE`` for a JSON line, "" for --hex
    and --text; a request that cannot be decoded is ``{"error": ...}`` saying what is wrong.

    :raises RelayError: the --jsonl file cannot be opened.
    """
    if args.hex is not None or args.text is not None:
        option = "--hex" if args.hex is not None else "--text"
        try:
            frame = bytes.fromhex(args.hex) if args.hex is not None else args.text.encode("latin-1")
        except ValueError as error:
            yield "", {"error": f"{option}: {_not_bytes(args.hex is not None, error)}"}
            return
        encoding = "hex" if args.hex is not None else "ascii"
        raw = [args.hex] if args.hex is not None else [frame]
        yield "", {
            "frames": [frame],
            "protocol": args.protocol or "auto",
            "transport": args.transport or "tcp",
            "encoding": encoding,
            "raw": raw,
        }
        return
    name = "<stdin>" if args.jsonl == "-" else args.jsonl
    try:
        stream = sys.stdin.buffer if args.jsonl == "-" else open(args.jsonl, "rb")  # noqa: SIM115
    except OSError as error:
        raise RelayError(f"{name}: cannot read: {error.strerror or error}") from None
    with stream:
        for number, line in enumerate(stream, start=1):
            where = f"{name}:{number}"
            try:
                text = line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                yield where, {"error": "not UTF-8 text"}
                continue
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except ValueError as error:
                yield where, {"error": f"not JSON ({error})"}
                continue
            try:
                yield where, _jsonl_request(row, args)
            except _BadLine as error:
                yield where, {"error": str(error)}


class _BadLine(ValueError):
    """A JSON line that is not a decodable input; the message says what is wrong with it."""


def _jsonl_request(row: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The request one JSON line asks for (format in README.md, ``relay decode``).

    :raises _BadLine: the line is not an object with the keys and values a request needs.
    """
    if not isinstance(row, dict):
        raise _BadLine(f"expected a JSON object, found {_shown(row)}")
    encoding = row.get("encoding", "hex")
    if encoding not in ("hex", "ascii"):
        raise _BadLine(f"encoding: expected 'hex' or 'ascii', found {_shown(encoding)}")
    if "frames" in row:
        if not isinstance(row["frames"], list) or not row["frames"]:
            raise _BadLine(f"frames: expected a non-empty list of strings, found {_shown(row['frames'])}")
        texts, labels = row["frames"], [f"frames[{index}]" for index in range(len(row["frames"]))]
    elif "frame" in row:
        texts, labels = [row["frame"]], ["frame"]
    else:
        raise _BadLine('expected a "frame" string or a "frames" list, found neither')
    frames = []
    for label, text in zip(labels, texts, strict=True):
        if not isinstance(text, str):
            raise _BadLine(f"{label}: expected a string, found {_shown(text)}")
        try:
            frames.append(bytes.fromhex(text) if encoding == "hex" else text.encode("latin-1"))
        except ValueError as error:
            raise _BadLine(f"{label}: {_not_bytes(encoding == 'hex', error)}") from None
    transport = args.transport or row.get("transport") or "tcp"
    if transport not in _TRANSPORTS:
        raise _BadLine(f"transport: expected one of {', '.join(_TRANSPORTS)}, found {_shown(transport)}")
    protocol = args.protocol or row.get("protocol") or "auto"
    if args.protocol is None and (problem := _check_protocol(protocol)):
        raise _BadLine(f"protocol: {problem}")
    if row.get("smsc") not in (None, True, False):
        raise _BadLine(f"smsc: expected true, false or null, found {_shown(row['smsc'])}")
    if not isinstance(row.get("sender", ""), str | None):
        raise _BadLine(f"sender: expected a phone number string, found {_shown(row['sender'])}")
    return {
        "frames": frames,
        "protocol": protocol,
        "transport": transport,
        "encoding": encoding,
        "raw": texts if encoding == "hex" else frames,
        "smsc": row.get("smsc"),
        "sender": row.get("sender"),
    }


def _not_bytes(is_hex: bool, error: ValueError) -> str:
    if is_hex:
        return f"not hex ({error})"
    return "expected text of single-byte (latin-1) characters"


def _shown(value: Any) -> str:
    """A JSON value as an error message shows what was found."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return repr(value) if isinstance(value, str) else json.dumps(value)


def _open_existing_journal(config: Config) -> Any:
    from ..errors import JournalError
    from ..journal import Journal

    if not config.database.exists():
        raise JournalError(f"no journal at {config.database} (has the relay run with this data_dir?)")
    return Journal.open(config.database, site=config.site)


def _export(args: argparse.Namespace) -> int:
    from ._export import ReportFilter, export, parse_time

    where = ReportFilter(
        device=args.device,
        since=parse_time("--since", args.since) if args.since else None,
        until=parse_time("--until", args.until) if args.until else None,
    )
    config = config_from(args)
    export(
        config.database,
        sys.stdout,
        fmt=args.format,
        site=config.site,
        where=where,
        limit=args.limit,
        # On a terminal the reports themselves show the progress; redirected, a counter does.
        progress=None if sys.stdout.isatty() else Progress("export", "reports"),
    )
    return EXIT_OK


def _tail(args: argparse.Namespace) -> int:
    from ._tail import tail

    config = config_from(args)
    return tail(config.database, site=config.site, device=args.device, human=args.human)


def _quarantine_list(args: argparse.Namespace) -> int:
    journal = _open_existing_journal(config_from(args))
    try:
        rows = journal.quarantine_rows(limit=args.limit)
    finally:
        journal.close()
    if args.json:
        print(json.dumps([{**row, "raw": row["raw"].hex()} for row in rows], indent=2))
        return EXIT_OK
    print(f"{len(rows)} row(s), newest first")
    for row in rows:
        excerpt = row["raw"][:32]
        shown = excerpt.decode("ascii") if all(32 <= byte < 127 for byte in excerpt) else excerpt.hex()
        print(
            f"#{row['id']} {row['received_at']} {row['transport']} {row['peer']} {row['protocol'] or '-'}: "
            f"{row['reason']}\n    {shown}{'…' if len(row['raw']) > 32 else ''} ({len(row['raw'])} bytes)"
        )
    return EXIT_OK


def _quarantine_retry(args: argparse.Namespace) -> int:
    """Re-decode the named rows (all without ids), with a counter on a terminal.

    :raises RelayError: an id is no quarantine row; nothing is retried then.
    """
    from ._export import quarantine_ids

    config = config_from(args)
    if args.ids and (missing := sorted(set(args.ids) - quarantine_ids(config.database, args.ids))):
        raise RelayError(
            f"no quarantine row with id {', '.join(map(str, missing))} (see relay quarantine list)"
        )
    journal = _open_existing_journal(config)
    try:
        ids = args.ids or sorted(row["id"] for row in journal.quarantine_rows(limit=1_000_000))
        outcomes = _retry_in_chunks(journal, ids, config, Progress("retry", "rows", total=len(ids)))
    finally:
        journal.close()
    if args.json:
        from dataclasses import asdict

        print(json.dumps([asdict(outcome) for outcome in outcomes], indent=2))
        return EXIT_OK
    decoded = [outcome for outcome in outcomes if outcome.error is None]
    for outcome in outcomes:
        if outcome.error is None:
            print(f"#{outcome.quarantine_id}: {outcome.reports} report(s) stored, row removed")
        else:
            print(f"#{outcome.quarantine_id}: still undecodable: {outcome.error}")
    print(f"{len(decoded)} of {len(outcomes)} row(s) decoded")
    return EXIT_OK


#: Quarantine rows re-decoded per call (each call reads the quarantine once).
RETRY_CHUNK = 200


def _retry_in_chunks(journal: Any, ids: list[int], config: Config, progress: Progress) -> list[Any]:
    from ..journal import retry_quarantine as retry

    senders = config.modem.senders if config.modem else {}
    outcomes = []
    for start in range(0, len(ids), RETRY_CHUNK):
        chunk = ids[start : start + RETRY_CHUNK]
        outcomes += retry(journal, ids=chunk, senders=senders)
        progress.advance(len(chunk))
    progress.finish()
    return outcomes


def _salvage(args: argparse.Namespace) -> int:
    from ..errors import JournalError
    from ..journal import Journal, salvage

    config = config_from(args)
    if args.file.resolve() == config.database.resolve():
        raise JournalError(f"{args.file} is the live journal; salvage reads a journal that was set aside")
    journal = Journal.open(config.database, site=config.site)
    try:
        counts = salvage(args.file, journal)
    finally:
        journal.close()
    ranges = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in counts.unreadable_ranges[:20])
    print(f"{counts.reports} report(s) recovered ({counts.photos} with a photo) into {config.database}")
    print(f"{counts.unreadable} report(s) could not be read" + (f" (seq {ranges})" if ranges else ""))
    print(
        f"{counts.unreadable + counts.missing} report(s) lost between the first and the last recovered one"
        " (unreadable, or not found: lost with a damaged page or deleted before)"
    )
    if counts.reports:
        print("the recovered reports have new ids and every sink will send them (again)")
    return EXIT_OK


def _vectors(args: argparse.Namespace) -> int:
    from ._vectors import default_directory, format_table, vector_table

    directory = args.directory or default_directory()
    if directory is None:
        raise RelayError("no vector directory given, and this installation has no tests/data/vectors")
    rows = vector_table(directory)
    if args.json:
        print(
            json.dumps([row if isinstance(row, dict) else vars(row) for row in rows], indent=2, default=str)
        )
    else:
        print(format_table(rows))
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
