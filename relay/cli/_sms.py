"""``relay sms send`` and ``relay provision coban|bofan``: the modem from the command line.

The modem is named by ``--modem PATH`` and ``--baudrate``, or taken from the ``[modem]`` section of
``--config`` (``sms send --port``, its old name, works for one more release, with a warning).

A serial port has one user. When a relay runs on the data directory of ``--config`` (or
``--data-dir``) and holds that modem, the SMS go through its modem task instead, over its control
socket (:mod:`relay.service._control`): the relay keeps answering its trackers, and the tracker's
replies reach this command. ``--deadline`` bounds the wait for each SMS to leave; a modem that is down
is an error at once. Without a running relay the command opens the port itself, as before.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from argparse import SUPPRESS
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import trio

from ..config import ModemSettings
from ..errors import RelayError
from ..sources import DEFAULT_WAIT_S, Modem, Outcome, provision, send_sms, steps_for
from ._common import Deprecated

EXIT_OK = 0
EXIT_FAILURE = 1
#: How long an SMS may wait for a running relay's modem to send it.
DEADLINE_S = 60.0
#: The longest ``--deadline`` (what the relay takes, :data:`relay.service._control.MAX_TIMEOUT_S`).
MAX_DEADLINE_S = 600.0
#: Time the running relay gets to answer beyond the deadlines it was given.
ANSWER_MARGIN_S = 10.0


def add_commands(subparsers: Any) -> None:
    """Add ``sms`` (with ``send``) and ``provision`` to the ``relay`` command's subparsers."""
    sms = subparsers.add_parser("sms", help="send an SMS through the modem")
    sms_commands = sms.add_subparsers(title="sms commands", metavar="SMS_COMMAND")
    send = sms_commands.add_parser("send", help="send one SMS (long texts are sent as concatenated parts)")
    send.add_argument("--to", required=True, help="the destination number, e.g. +639171234567")
    send.add_argument("text", help="the message text")
    _modem_arguments(send)
    send.add_argument("--port", dest="modem", action=Deprecated, instead="--modem", help=SUPPRESS)
    send.set_defaults(handler=_send)
    sms.set_defaults(handler=lambda args: sms.print_help() or EXIT_FAILURE)

    prov = subparsers.add_parser("provision", help="point a tracker at this relay by SMS, step by step")
    prov.add_argument("family", choices=["coban", "bofan"], help="coban (gps103) or bofan (pt502)")
    prov.add_argument("--to", required=True, help="the tracker's phone number")
    prov.add_argument("--server", required=True, help="the relay's public address (IP or host name)")
    prov.add_argument("--server-port", type=int, default=8888, help="the relay's public port (default 8888)")
    prov.add_argument(
        "--port", type=int, dest="server_port", action=Deprecated, instead="--server-port", help=SUPPRESS
    )
    prov.add_argument("--apn", required=True, help="the tracker SIM's APN")
    prov.add_argument("--apn-user", help="APN user name, if the operator needs one")
    prov.add_argument("--apn-password", help="APN password, if the operator needs one")
    prov.add_argument("--interval", type=int, default=30, help="reporting interval in seconds (default 30)")
    prov.add_argument("--password", help="the tracker's SMS password (default 123456 coban, 000000 bofan)")
    prov.add_argument("--device-id", help="bofan only: set the device id (GID) first")
    prov.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        help=f"seconds to wait for each reply (default {DEFAULT_WAIT_S:g}; trackers can take minutes)",
    )
    _modem_arguments(prov)
    prov.set_defaults(handler=_provision)


def _modem_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--modem", help="the modem's serial port, e.g. /dev/serial/by-id/...")
    parser.add_argument("--baudrate", type=int, help="serial speed (default 115200)")
    parser.add_argument("--config", type=Path, help="take the modem from this config file's [modem] section")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each AT command")
    parser.add_argument("--data-dir", type=Path, help="the running relay's data directory (else --config's)")
    parser.add_argument(
        "--deadline",
        type=float,
        default=DEADLINE_S,
        help=f"through a running relay: seconds each SMS may take to leave (default {DEADLINE_S:g})",
    )


def modem_settings(args: argparse.Namespace) -> ModemSettings:
    """The modem from the command line, else from ``--config``.

    :raises RelayError: neither names a modem.
    """
    settings = None
    if getattr(args, "config", None):
        try:
            from ..config import load
        except ImportError as error:
            raise RelayError(f"--config cannot be read here ({error}); use --modem PATH") from error
        modem = load(args.config).modem
        if modem is None and not args.modem:
            raise RelayError(f"{args.config}: no [modem] section; add one or use --modem PATH")
        if modem is not None:
            settings = modem
    if args.modem:
        settings = ModemSettings(
            port=args.modem,
            baudrate=args.baudrate or (settings.baudrate if settings else 115200),
            command_timeout_s=args.timeout,
        )
    if settings is None:
        raise RelayError("no modem: give --modem PATH (e.g. /dev/serial/by-id/usb-...) or --config FILE")
    if args.baudrate:
        settings = replace(settings, baudrate=args.baudrate)
    return settings


def _named_modem(args: argparse.Namespace) -> tuple[Path, str | None]:
    """The running relay's control socket to try, and the modem port this command means (if named)."""
    from ..service._control import socket_path
    from ._common import config_from

    if not 0 < args.deadline <= MAX_DEADLINE_S:
        raise RelayError(f"--deadline {args.deadline:g} is not in (0, {MAX_DEADLINE_S:g}] seconds")
    config = config_from(args)
    port = args.modem or (config.modem.port if config.modem is not None else None)
    return socket_path(config.data_dir), port


class Unreachable(RelayError):
    """A relay may run, but this user cannot reach its control socket (its data directory is private)."""


def direct(hint: str | None, run: Callable[[], int]) -> int:
    """Run the command on the port itself; when that fails and a relay may hold the port (``hint``),
    the error says so."""
    try:
        return run()
    except RelayError as error:
        if hint:
            raise RelayError(f"{error} ({hint})") from None
        raise


def _try_relay(
    path: Path, request: dict[str, Any], **kwargs: Any
) -> tuple[dict[str, Any] | None, str | None]:
    """:func:`through_relay`, with a socket this user may not reach taken as no relay, and said why."""
    try:
        return through_relay(path, request, **kwargs), None
    except Unreachable as error:
        return None, str(error)


def through_relay(
    path: Path, request: dict[str, Any], *, timeout_s: float, out: Callable[[str], None] = print
) -> dict[str, Any] | None:
    """Hand ``request`` to the relay listening on ``path`` (see :mod:`relay.service._control`); its
    progress lines go to ``out``; its final answer. ``None``: no relay answers there, or it holds
    another modem (take the port directly).

    :raises Unreachable: this user may not connect to the socket.
    :raises RelayError: the relay went silent, or closed the connection.
    """
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with client:
        client.settimeout(timeout_s)
        try:
            client.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            return None  # no relay (or one that died and left its socket)
        except PermissionError as error:
            raise Unreachable(
                f"a running relay's control socket {path} cannot be reached: {error.strerror};"
                " run this as the relay's user"
            ) from None
        except OSError as error:
            if len(os.fsencode(path)) > 107:
                return None  # the relay could not listen there either
            raise RelayError(f"cannot reach the running relay at {path}: {error}") from None
        reader = client.makefile("rb")
        try:
            client.sendall(json.dumps(request).encode() + b"\n")
            for line in reader:
                try:
                    answer = json.loads(line)
                except ValueError:
                    raise RelayError(f"the running relay answered with no JSON: {line!r}") from None
                if not isinstance(answer, dict):
                    raise RelayError(f"the running relay answered {answer!r}, not an object")
                if "line" in answer:
                    out(str(answer["line"]))
                    continue
                return None if "other_modem" in answer else answer
        except TimeoutError:
            raise RelayError(f"the running relay did not answer within {timeout_s:g} s") from None
        except OSError as error:
            raise RelayError(f"the running relay's control socket failed: {error}") from None
        finally:
            reader.close()
    raise RelayError("the running relay closed the connection before answering (did it stop?)")


def _send(args: argparse.Namespace) -> int:
    path, port = _named_modem(args)
    request = {"op": "sms_send", "to": args.to, "text": args.text, "timeout_s": args.deadline, "modem": port}
    answer, hint = _try_relay(path, request, timeout_s=args.deadline + ANSWER_MARGIN_S)
    if answer is not None:
        if "error" in answer:
            raise RelayError(f"not sent: {answer['error']}")
        print(f"sent to {args.to} by the running relay's modem ({answer.get('parts')} part(s))")
        return EXIT_OK

    def send() -> int:
        trio.run(send_sms, modem_settings(args), args.to, args.text)
        print(f"sent to {args.to}")
        return EXIT_OK

    return direct(hint, send)


@dataclass
class ProvisionRequest:
    family: str
    to: str
    server: str
    port: int
    apn: str
    interval_s: int = 30
    password: str | None = None
    apn_user: str | None = None
    apn_password: str | None = None
    device_id: str | None = None
    wait_s: float = DEFAULT_WAIT_S

    def fields(self) -> dict[str, Any]:
        """What :func:`relay.sources.steps_for` takes besides the family."""
        return {
            "server": self.server,
            "port": self.port,
            "apn": self.apn,
            "interval_s": self.interval_s,
            "password": self.password,
            "apn_user": self.apn_user,
            "apn_password": self.apn_password,
            "device_id": self.device_id if self.family == "bofan" else None,
        }

    def steps(self) -> list:
        return steps_for(self.family, **self.fields())


async def run_provision(settings: ModemSettings, request: ProvisionRequest, out: Any = print) -> int:
    """Open and initialise the modem, run the steps, print each outcome; 0 when all were acknowledged."""
    modem = await Modem.open(settings.port, settings.baudrate, command_timeout_s=settings.command_timeout_s)
    async with modem:
        await modem.initialise()
        out(f"provisioning {request.family} tracker {request.to} for {request.server}:{request.port}")
        results = await provision(modem, request.to, request.steps(), wait_s=request.wait_s, out=out)
    return EXIT_OK if all(r.outcome is Outcome.ACKNOWLEDGED for r in results) else EXIT_FAILURE


def _provision(args: argparse.Namespace) -> int:
    request = ProvisionRequest(
        family=args.family,
        to=args.to,
        server=args.server,
        port=args.server_port,
        apn=args.apn,
        interval_s=args.interval,
        password=args.password,
        apn_user=args.apn_user,
        apn_password=args.apn_password,
        device_id=args.device_id,
        wait_s=args.wait,
    )

    def out(line: str) -> None:
        print(line, flush=True)

    path, port = _named_modem(args)
    try:
        request.steps()  # a bad value is refused here, before anything is sent
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    asked = {"op": "provision", "family": request.family, "to": request.to, **request.fields(),
             "wait_s": request.wait_s, "timeout_s": args.deadline, "modem": port}  # fmt: skip
    # A silent relay is given one step's deadlines (the SMS to leave, the reply) and a margin.
    silence_s = args.deadline + request.wait_s + ANSWER_MARGIN_S
    answer, hint = _try_relay(path, asked, timeout_s=silence_s, out=out)
    if answer is not None:
        if "error" in answer:
            raise RelayError(f"cannot provision through the running relay: {answer['error']}")
        return int(answer.get("exit", EXIT_FAILURE))

    def run() -> int:
        try:
            return trio.run(run_provision, modem_settings(args), request, out)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILURE

    return direct(hint, run)
