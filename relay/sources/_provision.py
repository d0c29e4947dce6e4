"""Point a tracker at the relay by SMS: the documented command sequence per family, one reply per step.

Sequences (``protocols.md`` §0, ``modem.md`` §9):

* Coban (TK103/GPS103/BN-407, password ``123456``, speaks ``gps103``): ``begin``, ``time zone 0`` (the
  relay reads tracker times as UTC), ``apn``, ``up`` (only with an APN user), ``adminip``,
  ``fix<interval>s<interval>s***n``, ``gprs``, ``protocol 18``, then ``check`` (the status reply).
* Bofan (PT502/PT600, password ``000000``, speaks ``pt502``): ``GID`` (only with a device id),
  ``APN``, ``SVR``, ``GTI``. No public sample of a Bofan reply exists: any reply naming the setting or
  saying ok/success/set counts, and every reply is printed verbatim.

Trackers answer in minutes, not seconds (an operator logged four hours once), and firmwares differ in
case and punctuation, so replies are matched loosely: lower-cased, letters and digits only. Each step
ends as :attr:`Outcome.ACKNOWLEDGED`, :attr:`Outcome.UNEXPECTED` (a reply that is not the
acknowledgement, printed) or :attr:`Outcome.NO_REPLY` (nothing from the tracker within the wait). A
late acknowledgement of an earlier step is credited to that step.

While provisioning, messages from other senders are left on the modem for the relay, untouched;
replies from the tracker are deleted once printed.

:func:`provision` drives either a modem of its own (``relay provision`` with the relay stopped) or the
running relay's modem task (:class:`OutboxLink`: the SMS go through its :class:`~._modem.Outbox`,
the tracker's replies come from its message handling, which hands them over instead of storing them).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import trio

from drivers.sms import sender_device
from drivers.sms_pdu import Deliver, PduError, Reassembler, decode_pdu

from ._modem import AtError, Modem, ModemError, Outbox

log = logging.getLogger("relay.modem")

COBAN_PASSWORD = "123456"
BOFAN_PASSWORD = "000000"
DEFAULT_WAIT_S = 180.0
#: How often storage is listed while waiting, in case a ``+CMTI`` was lost.
POLL_S = 5.0
_ACK_WORDS = ("ok", "succe")  # "ok", "OK!", "Succeed", "success", "successful"
_BOFAN_ACK_WORDS = ("ok", "succe", "set")
#: Coban intervals: three digits and a unit; 255 is the largest value a unit takes.
_COBAN_MAX_VALUE = 255


class Outcome(enum.StrEnum):
    ACKNOWLEDGED = "acknowledged"
    UNEXPECTED = "unexpected reply"
    NO_REPLY = "no reply in time"
    NOT_SENT = "not sent"


@dataclass(frozen=True)
class Step:
    """One SMS command and the words that make a reply its acknowledgement.

    A reply acknowledges the step when its normalised text holds one of ``keywords`` and, unless
    ``keywords_suffice``, one of ``ack_words``.
    """

    command: str
    keywords: tuple[str, ...]
    ack_words: tuple[str, ...] = _ACK_WORDS
    keywords_suffice: bool = False

    def acknowledged_by(self, reply: str) -> bool:
        text = normalise(reply)
        if not any(keyword in text for keyword in self.keywords):
            return False
        return self.keywords_suffice or any(word in text for word in self.ack_words)


@dataclass
class StepResult:
    step: Step
    outcome: Outcome = Outcome.NO_REPLY
    replies: list[str] = field(default_factory=list)
    late: bool = False


def normalise(text: str) -> str:
    """Lower case, letters and digits only: ``"APN OK!"`` and ``"apn ok"`` both become ``"apnok"``."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def coban_interval(seconds: int) -> str:
    """``030s``, ``005m``, ``002h``: the Coban interval notation."""
    if seconds < 1:
        raise ValueError("the interval must be at least one second")
    if seconds <= _COBAN_MAX_VALUE:
        return f"{seconds:03d}s"
    if seconds // 60 <= _COBAN_MAX_VALUE:
        return f"{seconds // 60:03d}m"
    return f"{min(seconds // 3600, _COBAN_MAX_VALUE):03d}h"


def coban_steps(
    *,
    server: str,
    port: int,
    apn: str,
    interval_s: int = 30,
    password: str = COBAN_PASSWORD,
    apn_user: str | None = None,
    apn_password: str | None = None,
) -> list[Step]:
    """The Coban sequence (Plaspy's BN-407/GPS103 pages) for a relay at ``server:port``."""
    every = coban_interval(interval_s)
    steps = [
        Step(f"begin{password}", ("begin",)),
        Step(f"time zone{password} 0", ("time",)),
        Step(f"apn{password} {apn}", ("apn",)),
    ]
    if apn_user:
        steps.append(Step(f"up{password} {apn_user} {apn_password or ''}".rstrip(), ("up", "user")))
    steps += [
        Step(f"adminip{password} {server} {port}", ("adminip", "ip")),
        Step(f"fix{every}{every}***n{password}", ("fix",)),
        Step(f"gprs{password}", ("gprs",)),
        Step(f"protocol{password} 18", ("protocol",)),
        Step(f"check{password}", ("gprs", "battery", "power", "apn", "gps"), keywords_suffice=True),
    ]
    return steps


def bofan_steps(
    *,
    server: str,
    port: int,
    apn: str,
    interval_s: int = 30,
    password: str = BOFAN_PASSWORD,
    apn_user: str | None = None,
    apn_password: str | None = None,
    device_id: str | None = None,
) -> list[Step]:
    """The Bofan PT502/PT600 sequence (Plaspy's pages; no factory reset) for ``server:port``."""
    steps = []
    if device_id:
        steps.append(Step(f"{password}GID{device_id}", ("gid", "id"), _BOFAN_ACK_WORDS))
    apn_value = ",".join([apn, apn_user, apn_password or ""]) if apn_user else apn
    steps += [
        Step(f"{password}APN{apn_value}", ("apn",), _BOFAN_ACK_WORDS),
        Step(f"{password}SVR{server},{port}", ("svr", "server", "ip"), _BOFAN_ACK_WORDS),
        Step(f"{password}GTI{interval_s}", ("gti", "interval", "time"), _BOFAN_ACK_WORDS),
    ]
    return steps


def steps_for(
    family: str,
    *,
    server: str,
    port: int,
    apn: str,
    interval_s: int = 30,
    password: str | None = None,
    apn_user: str | None = None,
    apn_password: str | None = None,
    device_id: str | None = None,
) -> list[Step]:
    """The steps of ``family`` (``coban`` or ``bofan``) for a relay at ``server:port``.

    :raises ValueError: an unknown family, or a value its sequence cannot carry."""
    common: dict = {
        "server": server,
        "port": port,
        "apn": apn,
        "interval_s": interval_s,
        "apn_user": apn_user,
        "apn_password": apn_password,
    }
    if password:
        common["password"] = password
    if family == "coban":
        return coban_steps(**common)
    if family == "bofan":
        return bofan_steps(**common, device_id=device_id)
    raise ValueError(f"unknown tracker family {family!r} (coban or bofan)")


def same_number(a: str, b: str) -> bool:
    """Two spellings of one phone number (``+63917...``, ``0917...``, ``63 917 ...``)."""
    return sender_device(a, {b: "x"}) == "x"


class SmsLink(Protocol):
    """What provisioning needs of a modem: send a text, and the tracker's replies as they come."""

    async def start(self) -> None:
        """Before the first step: what arrived before it is no reply."""

    async def send_text(self, to: str, text: str) -> object:
        """:raises ModemError: not sent."""

    async def next_replies(self) -> list[str]:
        """Wait a while for replies from the tracker; their texts (maybe none)."""


class OutboxLink:
    """Provisioning through the running relay's modem task: steps go out through ``outbox`` (each
    given ``send_timeout_s`` to leave), replies come on ``replies`` (see :class:`ReplyTaps`).
    ``down()`` says why the modem cannot send now (``None``: it can): a step is then not sent at once,
    instead of after its timeout."""

    def __init__(
        self,
        outbox: Outbox,
        replies: trio.MemoryReceiveChannel[str],
        *,
        send_timeout_s: float = 60.0,
        down: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.outbox = outbox
        self.replies = replies
        self.send_timeout_s = send_timeout_s
        self.down = down
        #: SMS sent and not sent so far.
        self.sent = self.failed = 0

    async def start(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_text(self, to: str, text: str) -> object:
        reason = self.down()
        try:
            if reason is not None:
                raise ModemError(reason)
            references = await self.outbox.send(to, text, timeout_s=self.send_timeout_s)
        except ModemError:
            self.failed += 1
            raise
        self.sent += 1
        return references

    async def next_replies(self) -> list[str]:
        texts = [await self.replies.receive()]
        while True:
            try:
                texts.append(self.replies.receive_nowait())
            except trio.WouldBlock:
                return texts


#: Replies held for one provisioning session at most (a tracker sends one or two per step).
MAX_HELD_REPLIES = 32


class ReplyTaps:
    """The phone numbers being provisioned through the running relay, and where their replies go.

    The relay's SMS handling offers every message to :meth:`offer` first; one from a number being
    provisioned is handed to that session (and, unless it is a report, not stored)."""

    def __init__(self) -> None:
        self._taps: dict[str, trio.MemorySendChannel[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._taps)

    def open(self, number: str) -> trio.MemoryReceiveChannel[str]:
        """Start taking ``number``'s replies; :meth:`close` it when done.

        :raises ModemError: that number is being provisioned already."""
        if any(same_number(number, known) for known in self._taps):
            raise ModemError(f"{number} is being provisioned already")
        send, receive = trio.open_memory_channel[str](MAX_HELD_REPLIES)
        self._taps[number] = send
        return receive

    def close(self, number: str) -> None:
        channel = self._taps.pop(number, None)
        if channel is not None:
            channel.close()

    def offer(self, sender: str | None, text: str | None) -> bool:
        """Hand ``text`` to the session provisioning ``sender``; whether there is one."""
        if not sender:
            return False
        for number, channel in self._taps.items():
            if same_number(sender, number):
                try:
                    channel.send_nowait(text or "")
                except (trio.WouldBlock, trio.ClosedResourceError):
                    log.warning("provisioning %s: reply dropped, %d unread already", number, MAX_HELD_REPLIES)
                return True
        return False


async def provision(
    link: Modem | SmsLink,
    to: str,
    steps: Sequence[Step],
    *,
    wait_s: float = DEFAULT_WAIT_S,
    out: Callable[[str], None] = print,
) -> list[StepResult]:
    """Send each step to ``to``, wait up to ``wait_s`` for its reply, print what happens.

    ``link`` is an initialised :class:`Modem` (``+CMTI`` indications on) or the running relay's
    (:class:`OutboxLink`). Returns one result per step.
    """
    results = [StepResult(step) for step in steps]
    inbox: SmsLink = _Replies(link, to) if isinstance(link, Modem) else link
    await inbox.start()
    for number, result in enumerate(results, start=1):
        out(f"step {number}/{len(results)}: {result.step.command}")
        try:
            await inbox.send_text(to, result.step.command)
        except ModemError as error:
            result.outcome = Outcome.NOT_SENT
            out(f"  not sent: {error}")
            continue
        with trio.move_on_after(wait_s):
            while result.outcome is Outcome.NO_REPLY:
                for reply in await inbox.next_replies():
                    _credit(results, number - 1, reply, out)
        if result.outcome is Outcome.NO_REPLY:
            out(f"  no reply in time ({wait_s:g} s)")
    summary = {outcome: sum(r.outcome is outcome for r in results) for outcome in Outcome}
    out(
        f"{to}: "
        + ", ".join(f"{count} {outcome.value}" for outcome, count in summary.items() if count)
        + f" of {len(results)} steps"
    )
    return results


def _credit(results: list[StepResult], current: int, reply: str, out: Callable[[str], None]) -> None:
    step = results[current]
    if step.step.acknowledged_by(reply):
        step.outcome = Outcome.ACKNOWLEDGED
        step.replies.append(reply)
        out(f"  reply: {reply!r} -> acknowledged")
        return
    for index, earlier in enumerate(results[:current]):
        if earlier.outcome is not Outcome.ACKNOWLEDGED and earlier.step.acknowledged_by(reply):
            earlier.outcome = Outcome.ACKNOWLEDGED
            earlier.late = True
            earlier.replies.append(reply)
            out(f"  reply: {reply!r} -> late acknowledgement of step {index + 1} ({earlier.step.command})")
            return
    step.outcome = Outcome.UNEXPECTED
    step.replies.append(reply)
    out(f"  reply: {reply!r} -> unexpected reply")


class _Replies:
    """Texts from one number as they arrive; everything else stays on the modem for the relay."""

    def __init__(self, modem: Modem, sender: str) -> None:
        self.modem = modem
        self.sender = sender
        self.seen: set[tuple[str, int, bytes]] = set()
        self.reassembler = Reassembler()

    async def send_text(self, to: str, text: str) -> object:
        return await self.modem.send_text(to, text)

    async def start(self) -> None:
        # What is stored now is old: not a reply to anything sent from here on.
        for item in await self._list():
            self.seen.add((item.storage, item.index, item.pdu))

    async def _list(self) -> list:
        found = []
        home = self.modem.storage
        for storage in self.modem.scan_storages or (home,):
            if storage:
                await self.modem.select_storage(storage)
            found += await self.modem.list_messages()
        if home:
            await self.modem.select_storage(home)
        return found

    async def next_replies(self) -> list[str]:
        """Wait for a new message (a ``+CMTI`` or the next poll) and return the tracker's texts in it."""
        await self.modem.wait_urc(POLL_S)
        self.modem.pending_urcs()
        texts = []
        for item in await self._list():
            key = (item.storage, item.index, item.pdu)
            if key in self.seen:
                continue
            self.seen.add(key)
            try:
                pdu = decode_pdu(item.pdu, smsc=None, reference=datetime.now(UTC))
            except PduError:
                continue
            if not isinstance(pdu, Deliver) or not same_number(pdu.sender.number, self.sender):
                continue
            message = self.reassembler.add(pdu, trio.current_time(), tag=(item.storage, item.index))
            if message is None:
                continue
            for storage, index in message.tags:
                try:
                    await self.modem.delete_message(index, storage)
                except AtError as error:
                    log.warning("could not delete reply %s %d: %s", storage, index, error)
            texts.append(message.text or "")
        if self.modem.scan_storages:
            await self.modem.select_storage(self.modem.scan_storages[0])
        return texts
