"""``relay decode --transport sms``: one SMS (a PDU or a tracker's text) to the ``relay decode`` object.

Pure: the PDU codec (:mod:`drivers.sms_pdu`) and the text parsers (:mod:`drivers.sms_text`) glued
together. Every failure, including status reports and broken PDUs, is a clear ``error`` string,
never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from ._model import DriverError, Report
from .sms_pdu import Deliver, Message, PduError, StatusReport, Submit, decode_hex, decode_pdu
from .sms_text import parse_tracker_sms


class SmsRejected(DriverError):
    """A received SMS that gives no report (unknown sender, unknown text, parts missing): quarantine it."""

    def __init__(self, message: str) -> None:
        super().__init__("sms", message)


def message_reports(
    message: Message,
    *,
    senders: Mapping[str, str],
    now: datetime,
    zones: Mapping[str, timedelta] | None = None,
) -> list[Report]:
    """The reports in one whole received message (what the relay's modem source journals).

    :param zones: device id -> the tracker's UTC offset, for the trackers whose zone is known; the
        others' zone is inferred from the service-centre timestamp (see :mod:`drivers.sms_text`).

    :raises SmsRejected: the sender is not in ``senders``, parts are missing, the payload is binary,
        or the text is not a known tracker format. The message says which, for the quarantine row.
    """
    device_id = sender_device(message.sender, senders)
    if device_id is None:
        raise SmsRejected(f"sender {message.sender} is not in [modem.senders]")
    if not message.complete:
        raise SmsRejected(f"parts {list(message.missing)} of a message from {message.sender} never came")
    text = message.text
    if text is None:
        payload = message.payload_hex or ""
        shown = payload if len(payload) <= _SHOWN_HEX else payload[:_SHOWN_HEX] + "..."
        raise SmsRejected(f"binary payload from {message.sender}, not text: {shown}")
    reports = parse_tracker_sms(
        text,
        sender=message.sender,
        device_id=device_id,
        received=message.timestamp,
        now=now,
        zone=(zones or {}).get(device_id),
    )
    if reports is None:
        raise SmsRejected(f"not a known tracker text from {message.sender}: {text[:60]!r}")
    return reports


#: Hex digits of a binary payload quoted in a rejection.
_SHOWN_HEX = 64


def sender_device(sender: str | None, senders: Mapping[str, str]) -> str | None:
    """The device id ``[modem.senders]`` maps ``sender`` to, or ``None``.

    Numbers are compared on their digits (``+63 917 123 4567`` matches ``+639171234567`` and
    ``639171234567``). A national number (``0917...``) matches an international key ending in the same
    nine digits, and the other way round, only when exactly one key does.
    """
    if not sender:
        return None
    if sender in senders:
        return senders[sender]
    digits = _digits(sender)
    if not digits:
        return None
    for key, device in senders.items():
        if _digits(key) == digits:
            return device
    if len(digits) < _NATIONAL_DIGITS:
        return None
    tail = digits[-_NATIONAL_DIGITS:]
    matches = {
        device
        for key, device in senders.items()
        if _digits(key).endswith(tail) and (_national(key) or _national(sender))
    }
    return matches.pop() if len(matches) == 1 else None


def _national(number: str) -> bool:
    stripped = number.strip()
    return not stripped.startswith("+") and stripped.startswith("0") and not stripped.startswith("00")


#: Subscriber numbers have at least this many digits; a national and an international form agree on them.
_NATIONAL_DIGITS = 9


def _digits(number: str) -> str:
    return "".join(char for char in number if char.isdigit())


def decode_sms(
    data: bytes | str,
    *,
    encoding: Literal["hex", "ascii"],
    smsc: bool | None = None,
    sender: str | None = None,
    senders: Mapping[str, str] | None = None,
    now: datetime,
    zone: timedelta | None = None,
) -> dict[str, Any]:
    """Decode one SMS as ``relay decode`` prints it.

    :param data: with ``encoding="hex"``, an SMS-DELIVER PDU as hex text or as raw octets; with
        ``"ascii"``, the message text.
    :param smsc: whether the PDU starts with the service-centre address (``None``: find out).
    :param sender: the sender of an ``ascii`` text (a PDU names its own sender).
    :param senders: ``[modem.senders]``, sender number -> device id.
    :param now: the clock: the reference for a PDU timestamp's century and for a text's date.
    :param zone: the tracker's UTC offset when known (see :func:`drivers.sms_text.parse_tracker_sms`).
    :returns: ``{"protocol", "reports", "replies": [], "error", "sms": {"sender", "timestamp", "dcs",
        "text", "payload_hex", "concat"}}``; ``sms`` is ``null`` when the PDU could not be read at all.
        ``payload_hex`` is the user data of an 8-bit (binary) message as hex, ``null`` for a text.
        Reports are ``Report.to_json()`` objects; ``protocol`` is that of the reports (``gps103`` for
        Coban texts).
    """
    out: dict[str, Any] = {"protocol": None, "reports": [], "replies": [], "error": None, "sms": None}
    senders = senders or {}
    if encoding == "ascii":
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        out["sms"] = {
            "sender": sender,
            "timestamp": None,
            "dcs": None,
            "text": text,
            "payload_hex": None,
            "concat": None,
        }
        _parse_text(out, text, sender=sender, senders=senders, received=None, now=now, zone=zone)
        return out
    if encoding != "hex":
        out["error"] = f"sms: encoding {encoding!r} is not hex or ascii"
        return out
    try:
        pdu = (
            decode_hex(data, smsc=smsc, reference=now)
            if isinstance(data, str)
            else decode_pdu(data, smsc=smsc, reference=now)
        )
    except PduError as error:
        out["error"] = str(error)
        return out
    if isinstance(pdu, StatusReport):
        out["error"] = (
            f"sms: a status report (delivery report for message {pdu.reference} to "
            f"{pdu.recipient.number or 'an unknown number'}, status {pdu.status}), not a message"
        )
        return out
    if isinstance(pdu, Submit):
        out["error"] = (
            f"sms: an SMS-SUBMIT (an outgoing message to {pdu.destination.number}), not a received one"
        )
        return out
    out["sms"] = sms_json(pdu)
    if pdu.text is None:
        out["error"] = f"sms: binary {pdu.charset} payload ({len(pdu.user_data.payload)} octets), not text"
        return out
    concat = pdu.concat
    _parse_text(
        out,
        pdu.text,
        sender=pdu.sender.number,
        senders=senders,
        received=pdu.timestamp,
        now=now,
        zone=zone,
        part=concat,
    )
    return out


def sms_json(pdu: Deliver) -> dict[str, Any]:
    """The ``"sms"`` object of ``relay decode`` for one decoded SMS-DELIVER."""
    concat = pdu.concat
    return {
        "sender": pdu.sender.number,
        "timestamp": pdu.timestamp.isoformat(),
        "dcs": f"0x{pdu.dcs:02X}",
        "text": pdu.text,
        "payload_hex": pdu.payload_hex,
        "concat": concat.to_json() if concat else None,
    }


def _parse_text(
    out: dict[str, Any],
    text: str,
    *,
    sender: str | None,
    senders: Mapping[str, str],
    received: datetime | None,
    now: datetime,
    zone: timedelta | None,
    part: Any = None,
) -> None:
    device_id = sender_device(sender, senders)
    reports = parse_tracker_sms(
        text, sender=sender, device_id=device_id, received=received, now=now, zone=zone
    )
    if reports is None:
        where = (
            f" (part {part.seq} of {part.total}, ref {part.ref}: the other parts are needed)" if part else ""
        )
        out["error"] = f"sms: not a known tracker text{where}: {text[:60]!r}"
        return
    out["protocol"] = reports[0].protocol if reports else None
    out["reports"] = [report.to_json() for report in reports]
