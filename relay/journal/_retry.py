"""Quarantined bytes, re-decoded with today's drivers (``relay quarantine retry``).

A row that now decodes becomes ordinary reports — with the row's original ``received_at``, transport
and peer — and leaves the quarantine in the same transaction, so nothing is lost or doubled even if
the command is interrupted. A row that still fails stays, with the new reason shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from drivers import DriverError, Report, Transport, decode_stream

from ._journal import Journal
from ._records import Entry, Released


@dataclass(frozen=True, slots=True)
class Outcome:
    quarantine_id: int
    reports: int
    error: str | None


def redecode(row: Mapping[str, Any], *, senders: Mapping[str, str]) -> list[Report]:
    """The reports in one quarantine row.

    :raises DriverError: the bytes still cannot be decoded (the message says why).
    """
    raw: bytes = row["raw"]
    received = datetime.fromisoformat(row["received_at"].replace("Z", "+00:00"))
    transport = Transport(row["transport"])
    if transport is Transport.SMS:
        return _redecode_sms(raw, senders=senders, now=received)
    # A serial line carries what a TCP stream does; HTTP requests are recognised on TCP too.
    as_transport = Transport.TCP if transport in (Transport.SERIAL, Transport.HTTP) else transport
    decode = partial(decode_stream, [raw], now=received, transport=as_transport, messages=True)
    result = decode()
    if result.protocol is None and row.get("protocol"):
        result = decode(protocol=row["protocol"])
    if result.protocol is None:
        raise DriverError("relay", result.error or "no driver recognises these bytes", data=raw)
    if not result.reports:
        errors = result.errors
        raise errors[0] if errors else DriverError(result.protocol, "decodes to no report", data=raw)
    return result.reports


def _redecode_sms(raw: bytes, *, senders: Mapping[str, str], now: datetime) -> list[Report]:
    from drivers.sms import message_reports
    from drivers.sms_pdu import Deliver, Reassembler, decode_pdu

    reassembler = Reassembler()
    message = None
    for line in raw.split(b"\n"):
        try:
            pdu = decode_pdu(bytes.fromhex(line.decode("ascii")), reference=now)
        except (ValueError, UnicodeDecodeError) as error:
            raise DriverError("sms", f"stored PDU is not hex: {error}", data=line) from None
        if not isinstance(pdu, Deliver):
            raise DriverError(
                "sms", f"stored PDU is a {type(pdu).__name__}, not a received message", data=line
            )
        message = reassembler.add(pdu, now.timestamp()) or message
    if message is None:
        raise DriverError("sms", "the stored parts do not make a whole message", data=raw)
    return message_reports(message, senders=senders, now=now)


def retry(journal: Journal, *, ids: list[int] | None = None, senders: Mapping[str, str]) -> list[Outcome]:
    """Re-decode quarantine rows (all, or ``ids``), oldest first; commit what decodes, one row per
    transaction."""
    outcomes = []
    for row in sorted(journal.quarantine_rows(limit=1_000_000), key=lambda row: row["id"]):
        if ids is not None and row["id"] not in ids:
            continue
        try:
            reports = redecode(row, senders=senders)
        except (DriverError, KeyError, ValueError) as error:
            outcomes.append(Outcome(row["id"], 0, str(error)))
            continue
        received = datetime.fromisoformat(row["received_at"].replace("Z", "+00:00"))
        entries = [
            Entry(report, row["raw"] if index == 0 else None, row["transport"], row["peer"], received)
            for index, report in enumerate(reports)
        ]
        journal.write_now([*entries, Released(row["id"])])
        outcomes.append(Outcome(row["id"], len(reports), None))
    return outcomes
