"""Bytes in: the one port (TCP, UDP and HTTP), serial lines, and the GSM modem's SMS, all through one
ingest path (:class:`Ingest`) that stores what the drivers decode and only then answers.

Imports: :mod:`relay.journal`, the base modules and ``drivers``; never a sink or the service.
"""

from ._listener import Ingest, Listener
from ._modem import Modem, ModemStatus, Outbox, send_sms
from ._provision import (
    DEFAULT_WAIT_S,
    OutboxLink,
    Outcome,
    ReplyTaps,
    bofan_steps,
    coban_steps,
    provision,
    steps_for,
)
from ._serial import serve_serial
from ._sms import send_sms_commands, serve_sms

__all__ = [
    "DEFAULT_WAIT_S",
    "Ingest",
    "Listener",
    "Modem",
    "ModemStatus",
    "Outbox",
    "OutboxLink",
    "Outcome",
    "ReplyTaps",
    "bofan_steps",
    "coban_steps",
    "provision",
    "send_sms",
    "send_sms_commands",
    "serve_serial",
    "serve_sms",
    "steps_for",
]
