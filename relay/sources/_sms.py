"""Reports by SMS: the modem's messages become journal rows, and are deleted only once committed.

A message from a number in ``[modem.senders]`` in a known tracker format becomes one or more reports
with ``transport = "sms"``; anything else (unknown sender, unknown text, a broken PDU, parts that never
came) goes to the quarantine table with the raw PDUs, so a later driver fix can re-decode it. Either
way the rows are committed before :func:`relay.modem.serve_modem` deletes the message from the modem;
a failed commit leaves the message on the modem for the next scan.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from drivers.sms import SmsRejected, message_reports

from ..clock import clock_unsynced, mark_unsynced
from ..devices import Registry
from ..journal import Entry, Quarantined
from ..logs import log_event
from ._modem import IncomingSms, ModemStatus, serve_modem

if TYPE_CHECKING:
    from ..config import ModemSettings
    from ._listener import Ingest

log = logging.getLogger("relay.sms")


def raw_pdus(sms: IncomingSms) -> bytes:
    """The stored form of a message's PDUs: one hex PDU per line (``relay quarantine retry`` decodes it
    again; each line is what ``relay decode --transport sms --hex`` takes)."""
    return b"\n".join(pdu.hex().encode("ascii") for pdu in sms.pdus)


async def serve_sms(
    settings: ModemSettings, ingest: Ingest, status: ModemStatus, registry: Registry | None = None
) -> None:
    """Store every message the modem receives (a report, or a quarantine row), through ``ingest``'s
    journal and clock; the modem deletes a message once that is committed. A sender is a device by
    its ``phone`` in ``registry`` (or ``[modem.senders]``), whose ``timezone`` reads the text's local time."""
    journal = ingest.journal
    registry = registry if registry is not None else Registry(senders=dict(settings.senders))

    async def on_sms(sms: IncomingSms) -> None:
        now = ingest.now()  # the one clock of every source (tests set it)
        peer = f"sms:{sms.sender or 'unknown'}"
        raw = raw_pdus(sms)
        items: list[Entry | Quarantined]
        if sms.message is None:
            reason = f"undecodable SMS: {sms.error}"
            items = [Quarantined(raw, reason, "sms", peer, now)]
        else:
            try:
                reports = message_reports(
                    sms.message, senders=registry.senders, now=now, zones=registry.zones(now)
                )
            except SmsRejected as error:
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
                    items = [
                        Entry(report, raw if index == 0 else None, "sms", peer, now)
                        for index, report in enumerate(reports)
                    ]
        await journal.append(items)
        if reason:
            log_event(log, logging.WARNING, "sms_quarantined", sender=sms.sender, reason=reason)
        else:
            log_event(log, logging.INFO, "sms_report", sender=sms.sender, reports=len(items))

    await serve_modem(settings, on_sms, status=status)
