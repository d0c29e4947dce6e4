"""Reports by SMS: the modem's messages become journal rows, and are deleted only once committed.

A message from a number in ``[modem.senders]`` in a known tracker format becomes one or more reports
with ``transport = "sms"``; anything else (unknown sender, unknown text, a broken PDU, parts that never
came) goes to the quarantine table with the raw PDUs, so a later driver fix can re-decode it. Either
way the rows are committed before :func:`relay.modem.serve_modem` deletes the message from the modem;
a failed commit leaves the message on the modem for the next scan.

Commands go out by SMS through the same modem task (:class:`~._modem.Outbox`), so the relay never
has to stop for it: a command with ``via = "sms"``, or one that waited longer than its device's
``sms_after_s`` for the data session, is sent as its protocol's SMS text to the device's ``phone``
(:func:`send_sms_commands`). A Coban (gps103) device answers by SMS ("... ok"): that answer
acknowledges the command, as its ``commandResult`` over data would; other protocols' SMS commands are
acknowledged once the modem sent them.

``relay sms send`` and ``relay provision`` use the same modem task while the relay runs (through its
control socket, :mod:`relay.service._control`): their SMS go through the :class:`~._modem.Outbox`, and
a message from a number being provisioned is handed to that session (:class:`~._provision.ReplyTaps`);
one that is not a report is then deleted without a quarantine row (it was a reply, and it was shown).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import trio

import drivers
from drivers import DriverError, Via
from drivers.sms import SmsRejected, message_reports
from drivers.sms_text import COBAN

from ..clock import clock_unsynced, mark_unsynced
from ..devices import Registry
from ..errors import RelayError
from ..journal import COMMAND_RESULT, CommandChange, Entry, Journal, Quarantined, QueuedCommand
from ..logs import log_event
from ._modem import IncomingSms, ModemError, ModemStatus, Outbox, serve_modem
from ._provision import ReplyTaps

#: How often the queue is looked at for commands that waited past their device's ``sms_after_s``.
SMS_LOOK_S = 1.0
#: Protocols whose devices answer an SMS command by SMS in a form the drivers decode.
SMS_ANSWERED = frozenset({COBAN})

if TYPE_CHECKING:
    from ..config import ModemSettings
    from ._listener import Ingest

log = logging.getLogger("relay.sms")


def raw_pdus(sms: IncomingSms) -> bytes:
    """The stored form of a message's PDUs: one hex PDU per line (``relay quarantine retry`` decodes it
    again; each line is what ``relay decode --transport sms --hex`` takes)."""
    return b"\n".join(pdu.hex().encode("ascii") for pdu in sms.pdus)


async def serve_sms(
    settings: ModemSettings,
    ingest: Ingest,
    status: ModemStatus,
    registry: Registry | None = None,
    outbox: Outbox | None = None,
    taps: ReplyTaps | None = None,
) -> None:
    """Store every message the modem receives (a report, or a quarantine row), through ``ingest``'s
    journal and clock; the modem deletes a message once that is committed. A sender is a device by
    its ``phone`` in ``registry`` (or ``[modem.senders]``), whose ``timezone`` reads the text's local time.
    A message from a number in ``taps`` (being provisioned) goes to that session too; one that is no
    report is then not quarantined."""
    journal = ingest.journal
    registry = registry if registry is not None else Registry(senders=dict(settings.senders))
    taps = taps if taps is not None else ReplyTaps()

    async def on_sms(sms: IncomingSms) -> None:
        now = ingest.now()  # the one clock of every source (tests set it)
        peer = f"sms:{sms.sender or 'unknown'}"
        raw = raw_pdus(sms)
        items: list[Entry | Quarantined | CommandChange]
        tapped = sms.message is not None and taps.offer(sms.sender, sms.text)
        if sms.message is None:
            reason = f"undecodable SMS: {sms.error}"
            items = [Quarantined(raw, reason, "sms", peer, now)]
        else:
            try:
                reports = message_reports(
                    sms.message, senders=registry.senders, now=now, zones=registry.zones(now)
                )
            except SmsRejected as error:
                if tapped:  # a provisioning reply, shown to its session: nothing to keep
                    log_event(log, logging.INFO, "sms_provision_reply", sender=sms.sender)
                    return
                reason = error.reason
                items = [Quarantined(raw, reason, "sms", peer, now)]
            else:
                reason = ""
                device = reports[0].device_id if reports else None
                if registry.refusal(device) is not None:  # no connection to close: kept, unanswered
                    reason = f"unknown device {device} ([relay] unknown_devices = {registry.unknown_devices})"
                    items = [Quarantined(raw, reason, "sms", peer, now)]
                else:
                    reports = [registry.calibrate(report) for report in reports]
                    if clock_unsynced(now):
                        reports = [mark_unsynced(report) for report in reports]
                    items = []
                    for index, report in enumerate(reports):
                        if report.event == COMMAND_RESULT:  # an answer to the command in flight, if any
                            report, changes = journal.commands.answered(report, now)
                            items.extend(changes)
                        items.append(Entry(report, raw if index == 0 else None, "sms", peer, now))
        await journal.append(items)
        if reason:
            log_event(log, logging.WARNING, "sms_quarantined", sender=sms.sender, reason=reason)
        else:
            log_event(log, logging.INFO, "sms_report", sender=sms.sender, reports=len(items))

    await serve_modem(settings, on_sms, status=status, outbox=outbox)


def _due_by_sms(journal: Journal, registry: Registry, device: str, now: datetime) -> tuple[Any, list[Any]]:
    """The device's next command to send by SMS now: one that asks for it, or one over data that has
    waited past the device's ``sms_after_s`` and has an SMS form (it switches to SMS)."""
    command, expired = journal.commands.next_for(device, now, via=None)
    if command is None or command.via is Via.SMS:
        return command, expired
    limit = registry.sms_after(device)
    if limit is None or now - command.created_at < timedelta(seconds=limit) or command.raw is not None:
        return None, expired
    protocol = command.protocol or ""
    if command.type not in drivers.supported_commands(protocol, Via.SMS):
        return None, expired
    command.via = Via.SMS
    log_event(log, logging.INFO, "command_by_sms", device=device, id=command.id, waited_s=limit)
    return command, expired


async def _send_one(journal: Journal, outbox: Outbox, command: QueuedCommand, phone: str) -> list[Any]:
    commands = journal.commands
    try:
        text = drivers.encode_sms(command.protocol or "", command.command)
    except DriverError as error:
        return commands.failed(command, journal_now(), error.reason)
    try:
        await outbox.send(phone, text)
    except ModemError as error:
        return commands.failed(command, journal_now(), str(error))
    log_event(log, logging.INFO, "command_sent", device=command.device_id, id=command.id,
              type=command.type.value, source=command.source, via="sms", to=phone)  # fmt: skip
    return commands.sent(command, journal_now(), answered=command.protocol in SMS_ANSWERED)


def journal_now() -> datetime:
    return datetime.now(UTC)


async def send_sms_commands(journal: Journal, outbox: Outbox, registry: Registry) -> None:
    """Send the commands due by SMS (see the module), one at a time, forever; woken by the queue."""
    commands = journal.commands
    woken = trio.Event()

    def wake(_device: str) -> None:
        woken.set()

    commands.listeners.append(wake)
    while True:
        with trio.move_on_after(SMS_LOOK_S):
            await woken.wait()
        woken = trio.Event()
        for device in commands.devices():
            known = registry.get(device)
            if known is None or not known.phone:
                continue
            command, items = _due_by_sms(journal, registry, device, journal_now())
            if command is not None:
                items = items + await _send_one(journal, outbox, command, known.phone)
            if items:
                try:
                    await journal.append(items)
                except RelayError as error:
                    log_event(log, logging.ERROR, "command_state_not_stored", error=str(error))
