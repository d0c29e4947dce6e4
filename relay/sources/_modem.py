"""A GSM modem on a serial port, spoken to in AT commands from trio (no threads).

:func:`serve_modem` is the relay's SMS source: it initialises the modem, reads every stored
message, then each one announced by ``+CMTI``, and hands whole messages to ``on_sms``. A message is
deleted from the modem only after ``on_sms`` returns (the relay commits the report or the quarantine
row first), so a crash or a power cut at any point loses nothing: the message is read again on the
next start. A silent modem is closed, reopened and re-initialised; a vanished USB device is waited
for (a ``/dev/serial/by-id/...`` path follows the device to its new ``ttyUSB`` number).

The serial port is opened by pyserial (for the termios setup) and then driven non-blocking with
``trio.lowlevel.wait_readable``/``wait_writable``; ``notify_closing`` is called before every close.

Line discipline (27.007/27.005 as modems implement them, see ``modem.md``): every line is classified
as it arrives. A line with the running command's prefix belongs to it; ``OK``/``ERROR``/``+CME
ERROR``/``+CMS ERROR`` end it; a known unsolicited code (``+CMTI``, ``+CDSI``, ``RING``, ...) is queued
even in the middle of a response; the line after a ``+CMGL:``/``+CMGR:`` header is its PDU; anything
else is noise and is logged and dropped. Header lengths are not trusted: PDUs are measured themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn

import trio

from drivers.sms_pdu import (
    Deliver,
    Message,
    PduError,
    Reassembler,
    StatusReport,
    Submit,
    decode_pdu,
    split_submit,
)

from ..config import ModemSettings
from ..errors import RelayError

log = logging.getLogger("relay.modem")

#: Longest line kept while waiting for its end; a PDU line is at most ~360 characters.
MAX_LINE = 4096
#: Transient errors worth a retry (27.007 CME 14 SIM busy, vendor 515 "please wait"; CMS 314 SIM busy).
RETRY_CME = frozenset({14, 515})
RETRY_CMS = frozenset({314})
RETRIES = 3
RETRY_PAUSE_S = 0.5
#: Time for the ``> `` prompt, then for ``+CMGS`` after Ctrl-Z (the network round trip).
PROMPT_TIMEOUT_S = 5.0
#: A full listing may take a while on a SIM with 50 messages: this many command timeouts.
LIST_TIMEOUT_FACTOR = 3
#: Quiet time that separates stale output from the answer to the next command.
SYNC_SETTLE_S = 0.2
SEND_TIMEOUT_S = 60.0
CTRL_Z = b"\x1a"
ESC = b"\x1b"
#: Storage preference for reading and receiving (python-gsmmodem prefers ME, then SM).
STORAGE_PREFERENCE = ("ME", "SM", "MT")
#: Storages read in full at start-up ("MT" is ME and SM together, so it is not read again).
SCANNED_STORAGES = ("SM", "ME")
#: New-message indications, best first: +CMTI (store, then announce), never +CMT direct delivery.
CNMI_CHOICES = ("2,1,0,0,0", "2,1,0,2,0", "2,1,2,1,0", "2,1", "1,1")
#: Unsolicited result codes recognised anywhere, even in the middle of another response.
URC_PREFIXES = (
    "+CMTI:",
    "+CDSI:",
    "+CMT:",
    "+CDS:",
    "+CBM:",
    "RING",
    "+CRING:",
    "+CLIP:",
    "+CREG:",
    "+CEREG:",
    "+CGREG:",
    "+CIEV:",
    "+CUSD:",
    "+QIND:",
    "+CPIN:",
    "+CFUN:",
    "^",
    "RDY",
    "Call Ready",
    "SMS Ready",
    "NO CARRIER",
)
#: URCs followed by a PDU line that belongs to them.
PDU_URCS = ("+CMT:", "+CDS:", "+CBM:")
#: Signs that the modem restarted and lost its settings (Quectel ``RDY``, SIMCom ``SMS Ready``).
RESET_URCS = ("RDY", "SMS Ready")
_FINAL_OK = ("OK", "0")
_FINAL_ERROR = ("ERROR", "4", "COMMAND NOT SUPPORT", "NO CARRIER")

CMS_ERRORS = {
    300: "ME failure",
    301: "SMS service of ME reserved",
    302: "operation not allowed",
    303: "operation not supported",
    304: "invalid PDU mode parameter",
    305: "invalid text mode parameter",
    310: "SIM not inserted",
    311: "SIM PIN required",
    312: "PH-SIM PIN required",
    313: "SIM failure",
    314: "SIM busy",
    315: "SIM wrong",
    316: "SIM PUK required",
    317: "SIM PIN2 required",
    318: "SIM PUK2 required",
    320: "memory failure",
    321: "invalid memory index",
    322: "memory full",
    330: "SMSC address unknown",
    331: "no network service",
    332: "network timeout",
    340: "no +CNMA acknowledgement expected",
    500: "unknown error",
    512: "SIM not ready",
    513: "message length exceeds",
    514: "invalid request parameters",
    515: "ME storage failure",
    517: "invalid service mode",
    528: "more message to send state error",
    529: "MO SMS is not allowed",
    530: "GPRS is suspended",
    531: "ME storage full",
}
CME_ERRORS = {
    0: "phone failure",
    1: "no connection to phone",
    2: "phone adaptor link reserved",
    3: "operation not allowed",
    4: "operation not supported",
    5: "PH-SIM PIN required",
    10: "SIM not inserted",
    11: "SIM PIN required",
    12: "SIM PUK required",
    13: "SIM failure",
    14: "SIM busy",
    15: "SIM wrong",
    16: "incorrect password",
    17: "SIM PIN2 required",
    18: "SIM PUK2 required",
    20: "memory full",
    21: "invalid index",
    22: "not found",
    23: "memory failure",
    24: "text string too long",
    25: "invalid characters in text string",
    30: "no network service",
    31: "network timeout",
    32: "network not allowed, emergency calls only",
    100: "unknown",
    515: "please wait, init or command processing in progress",
}
_RP_CAUSES = {8: "operator determined barring", 10: "call barred", 21: "short message transfer rejected"}


class ModemError(RelayError):
    """The modem cannot be used: it said no, went silent, or disappeared."""


class ModemTimeout(ModemError):
    """No final result code in time: the modem stopped answering."""


class ModemGone(ModemError):
    """The serial device cannot be opened or vanished (USB unplugged)."""


class AtError(ModemError):
    """A command ended in ``ERROR``, ``+CME ERROR`` or ``+CMS ERROR``, with the readable meaning."""

    def __init__(self, command: str, result: str) -> None:
        self.command = command
        self.result = result
        self.kind, self.code, meaning = _explain(result)
        super().__init__(f"{command}: {result}" + (f" ({meaning})" if meaning else ""))


def _explain(result: str) -> tuple[str, int | None, str | None]:
    match = re.match(r"\+(CMS|CME) ERROR:\s*(.*)", result)
    if not match:
        return "ERROR", None, None
    kind, value = match.group(1), match.group(2).strip()
    if not value.isdigit():
        return kind, None, None  # verbose form (AT+CMEE=2): the text is the meaning
    code = int(value)
    table = CMS_ERRORS if kind == "CMS" else CME_ERRORS
    meaning = table.get(code)
    if meaning is None and kind == "CMS" and code < 128:
        meaning = "network cause: " + _RP_CAUSES.get(code, f"RP cause {code}")
    return kind, code, meaning


@dataclass(frozen=True, slots=True)
class Urc:
    """An unsolicited result code: its line and, for ``+CMT``/``+CDS``, the PDU line after it."""

    line: str
    pdu: str | None = None

    @property
    def name(self) -> str:
        return self.line.split(":", 1)[0].strip()


@dataclass(frozen=True, slots=True)
class StoredPdu:
    """One message slot as ``+CMGL``/``+CMGR`` shows it."""

    storage: str
    index: int
    stat: int | None
    pdu: bytes


@dataclass(frozen=True)
class IncomingSms:
    """A received message for ``on_sms``.

    ``message`` is the decoded (and, for concatenated messages, reassembled) message: sender,
    timestamp, ``text`` and the decoded parts; ``None`` when the PDU could not be decoded, with the
    reason in ``error``. ``message.complete`` is false for a concatenated message whose other parts
    never came (see ``message.missing``). ``pdus`` are the raw PDUs as stored (service-centre part
    included), in part order; ``storage`` and ``indices`` say where they are on the modem (empty for a
    message delivered directly, which cannot be deleted).
    """

    pdus: tuple[bytes, ...]
    message: Message | None
    storage: str
    indices: tuple[int, ...]
    error: str | None = None

    @property
    def sender(self) -> str | None:
        return self.message.sender if self.message else None

    @property
    def text(self) -> str | None:
        return self.message.text if self.message else None


# --- The serial line --------------------------------------------------------------------------------------


@dataclass
class ModemStatus:
    """What the status page shows of the modem, kept up to date by :func:`serve_modem`."""

    port: str
    #: "opening" (not answered yet), "ready" (initialised, taking SMS) or "down" (see ``error``).
    state: str = "opening"
    #: The SIM's ``+CPIN`` state (``READY``, ``SIM PIN``, ...) as last read.
    sim: str | None = None
    #: The last ``+CSQ`` answer: RSSI 0-31 (99: unknown) and bit error rate, e.g. ``"17,99"``.
    signal: str | None = None
    error: str | None = None


class Modem:
    """One open serial port speaking AT; one command at a time (callers must not overlap).

    Use ``async with await Modem.open(port) as modem`` or :meth:`aclose`. Every method raises
    :class:`ModemTimeout` when the modem does not answer, :class:`ModemGone` when the device vanished,
    :class:`AtError` when it refuses.
    """

    def __init__(self, serial: Any, *, port: str, command_timeout_s: float = 10.0) -> None:
        self._serial = serial
        self._fd: int = serial.fileno()
        self.port = port
        self.command_timeout_s = command_timeout_s
        self._buffer = bytearray()
        self._urcs: deque[Urc] = deque()
        self._closed = False
        #: The storage ``AT+CMGR``/``AT+CMGD`` work on (mem1), once chosen.
        self.storage: str | None = None
        #: Every storage the modem may announce in ``+CMTI``.
        self.storages: tuple[str, ...] = ()
        #: The storages read at start-up and on every scan (the chosen one first).
        self.scan_storages: tuple[str, ...] = ()
        #: A message could not be handed over: read everything again at the next poll.
        self.rescan_wanted = False
        #: The SIM state and signal as last read (``initialise``, ``read_signal``).
        self.sim: str | None = None
        self.signal: str | None = None

    @classmethod
    async def open(cls, port: str, baudrate: int = 115200, *, command_timeout_s: float = 10.0) -> Modem:
        """Open ``port`` (a path; ``/dev/serial/by-id`` links are resolved on every open).

        :raises ModemGone: the device does not exist or cannot be opened.
        """
        import serial  # pyserial: imported here so the relay starts without it when there is no modem

        try:
            handle = serial.Serial(
                os.path.realpath(port), baudrate=baudrate, timeout=0, write_timeout=0, exclusive=True
            )
        except (serial.SerialException, OSError, ValueError) as error:
            raise ModemGone(f"cannot open modem port {port}: {error}") from error
        os.set_blocking(handle.fileno(), False)
        log.info("modem port %s open at %d baud", port, baudrate)
        return cls(handle, port=port, command_timeout_s=command_timeout_s)

    async def __aenter__(self) -> Modem:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the port (idempotent). Tasks waiting on it get ``ClosedResourceError`` first."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            trio.lowlevel.notify_closing(self._fd)
        with contextlib.suppress(Exception):
            self._serial.close()
        await trio.lowlevel.checkpoint()

    # Bytes.

    async def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            await trio.lowlevel.wait_writable(self._fd)
            try:
                sent = os.write(self._fd, view)
            except BlockingIOError:
                continue
            except OSError as error:
                raise ModemGone(f"modem port {self.port} write failed: {error}") from error
            view = view[sent:]

    async def _fill(self) -> None:
        try:
            await trio.lowlevel.wait_readable(self._fd)
        except trio.ClosedResourceError:
            raise ModemGone(f"modem port {self.port} was closed") from None
        try:
            chunk = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as error:
            raise ModemGone(f"modem port {self.port} read failed: {error}") from error
        if not chunk:
            raise ModemGone(f"modem port {self.port} hung up (device unplugged?)")
        self._buffer += chunk

    async def _next_line(self, *, prompt: bool = False) -> str:
        """The next non-empty line, or ``">"`` for the ``> `` send prompt when ``prompt`` is set."""
        while True:
            while self._buffer[:1] in (b"\r", b"\n"):
                del self._buffer[0]
            if prompt and self._buffer[:1] == b">":
                del self._buffer[: 2 if self._buffer[1:2] == b" " else 1]
                return ">"
            end = min((i for i in (self._buffer.find(b"\r"), self._buffer.find(b"\n")) if i >= 0), default=-1)
            if end >= 0:
                raw = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                line = raw.decode("latin-1").strip()
                if line:
                    return line
                continue
            if len(self._buffer) > MAX_LINE:
                log.warning(
                    "modem: dropping %d bytes without a line end (garbage on the line?)", len(self._buffer)
                )
                self._buffer.clear()
            await self._fill()

    # Commands.

    async def command(
        self,
        command: str,
        *,
        prefix: str | None = None,
        timeout: float | None = None,
        pdu_lines: bool = False,
    ) -> list[str]:
        """Send ``command`` and return its information lines (those starting with ``prefix``).

        With ``pdu_lines``, the line after each ``prefix`` header (its PDU) is returned too.
        Transient "busy" errors are retried. A query whose information line arrived but whose ``OK``
        never did (some old modems) returns what it has, with a warning.

        :raises AtError: the final result was an error.
        :raises ModemTimeout: no final result in ``timeout`` (default: ``command_timeout_s``).
        """
        for attempt in range(RETRIES):
            try:
                return await self._command_once(command, prefix, timeout, pdu_lines)
            except AtError as error:
                transient = (error.kind == "CME" and error.code in RETRY_CME) or (
                    error.kind == "CMS" and error.code in RETRY_CMS
                )
                if not transient or attempt == RETRIES - 1:
                    raise
                log.info("modem busy (%s), retrying", error)
                await trio.sleep(RETRY_PAUSE_S)
        raise AssertionError("unreachable")

    async def _command_once(
        self, command: str, prefix: str | None, timeout: float | None, pdu_lines: bool
    ) -> list[str]:
        await self._write(command.encode("ascii") + b"\r")
        lines: list[str] = []
        with trio.move_on_after(timeout or self.command_timeout_s):
            while True:
                line = await self._next_line()
                if prefix and line.startswith(prefix):
                    lines.append(line)
                    if pdu_lines and not _pdu_on_line(line):
                        lines.append(await self._next_line())
                    continue
                final = _final(line)
                if final == "ok":
                    return lines
                if final == "error":
                    raise AtError(command, line)
                if self._take_urc(line):
                    await self._urc_pdu(line)
                    continue
                if line.upper() != command.upper():  # not our echo
                    log.debug("modem: ignoring %r during %s", line[:80], command)
        if lines:
            log.warning("modem: %s answered %r without a final OK", command, lines[-1][:80])
            return lines
        raise ModemTimeout(
            f"modem on {self.port} did not answer {command} within {timeout or self.command_timeout_s} s"
        )

    def _take_urc(self, line: str) -> bool:
        if not line.startswith(URC_PREFIXES):
            return False
        self._urcs.append(Urc(line))
        return True

    async def _urc_pdu(self, line: str) -> None:
        if line.startswith(PDU_URCS):
            pdu = await self._next_line()
            self._urcs[-1] = Urc(line, pdu)

    async def wait_urc(self, timeout: float) -> Urc | None:
        """The next unsolicited result code, waiting at most ``timeout`` seconds while idle."""
        if self._urcs:
            return self._urcs.popleft()
        with trio.move_on_after(timeout):
            while True:
                line = await self._next_line()
                if self._take_urc(line):
                    await self._urc_pdu(line)
                    return self._urcs.popleft()
                log.debug("modem: ignoring idle line %r", line[:80])
        return None

    def pending_urcs(self) -> list[Urc]:
        """Take the URCs queued while commands ran."""
        out = list(self._urcs)
        self._urcs.clear()
        return out

    # The SMS dialogue.

    async def initialise(self) -> None:
        """Echo off, errors on, SIM and network checks, PDU mode, storage, ``+CMTI`` indications.

        :raises AtError: the SIM needs a PIN, PDU mode is refused, ...
        """
        await self._sync()
        await self.command("ATE0")
        await self._optional("ATV1")
        await self._optional("AT+CMEE=1")
        pin = await self.command("AT+CPIN?", prefix="+CPIN:")
        state = self.sim = pin[0].split(":", 1)[1].strip() if pin else "unknown"
        if state != "READY":
            raise ModemError(f"modem on {self.port}: the SIM is not ready ({state}); unlock it first")
        if signal := await self.read_signal():
            log.info("modem signal %s", signal)
        with contextlib.suppress(AtError):
            registration = await self.command("AT+CREG?", prefix="+CREG:")
            if registration:
                stat = registration[0].split(",")[-1].strip() if "," in registration[0] else "?"
                if stat not in ("1", "5"):
                    log.warning("modem not registered on a network (%s): SMS will wait", registration[0])
        await self.command("AT+CMGF=0")
        await self._choose_storage()
        for choice in CNMI_CHOICES:
            try:
                await self.command(f"AT+CNMI={choice}")
                break
            except AtError as error:
                log.info("modem refused AT+CNMI=%s (%s)", choice, error)
        else:
            log.warning("modem accepts no +CNMI setting: new messages are found by polling only")
        log.info("modem on %s ready (storage %s)", self.port, self.storage or "default")

    async def _sync(self) -> None:
        """Get in step with the modem: abort a half-typed command or send prompt, drop stale output."""
        await self._write(ESC + b"\r")
        await self._drain(SYNC_SETTLE_S)
        for _ in range(3):
            try:
                await self.command("AT", timeout=min(self.command_timeout_s, 2.0))
            except (ModemTimeout, AtError):
                await self._drain(SYNC_SETTLE_S)
                continue
            await self._drain(SYNC_SETTLE_S)
            return
        await self.command("AT")

    async def _drain(self, seconds: float) -> None:
        """Read for ``seconds`` and drop everything but URCs."""
        with trio.move_on_after(seconds):
            while True:
                line = await self._next_line()
                if self._take_urc(line):
                    await self._urc_pdu(line)
        self._buffer.clear()

    async def _optional(self, command: str) -> None:
        try:
            await self.command(command)
        except AtError as error:
            log.info("modem refused %s (%s), going on", command, error)

    async def _choose_storage(self) -> None:
        try:
            offered = parse_cpms_lists((await self.command("AT+CPMS=?", prefix="+CPMS:") or ["+CPMS: "])[0])
        except AtError as error:
            log.warning("modem: no storage list (%s), keeping its default", error)
            offered = []
        if not offered or not any(offered):
            self.storage = None
            return
        read, receive = offered[0], offered[2] if len(offered) > 2 else offered[-1]
        both = [name for name in read if name in receive] or read
        choice = next((name for name in STORAGE_PREFERENCE if name in both), both[0])
        self.storages = tuple(dict.fromkeys([*read, *receive]))
        # Messages may already wait in another storage (a SIM moved from a phone): read those too.
        self.scan_storages = tuple(
            dict.fromkeys([choice, *(name for name in SCANNED_STORAGES if name in read)])
        )
        arguments = ",".join(f'"{choice}"' for _ in offered[:3])
        try:
            status = await self.command(f"AT+CPMS={arguments}", prefix="+CPMS:")
        except AtError:
            status = await self.command(f'AT+CPMS="{choice}"', prefix="+CPMS:")
        self.storage = choice
        if status:
            used_total = parse_cpms_usage(status[0])
            if used_total:
                log.info("modem storage %s: %d of %d used", choice, *used_total)

    async def select_storage(self, storage: str) -> None:
        """Make ``storage`` the one read and deleted from (``+CMTI`` may name another)."""
        if storage and storage != self.storage:
            await self.command(f'AT+CPMS="{storage}"', prefix="+CPMS:")
            self.storage = storage

    async def read_signal(self) -> str | None:
        """The ``+CSQ`` answer (``"rssi,ber"``), or None when the modem has none."""
        with contextlib.suppress(AtError):
            lines = await self.command("AT+CSQ", prefix="+CSQ:")
            if lines:
                self.signal = lines[0].split(":", 1)[1].strip()
        return self.signal

    async def storage_usage(self) -> tuple[int, int] | None:
        """``(used, total)`` of the read storage, from ``AT+CPMS?``."""
        lines = await self.command("AT+CPMS?", prefix="+CPMS:")
        return parse_cpms_usage(lines[0]) if lines else None

    async def list_messages(self) -> list[StoredPdu]:
        """Every stored message (``AT+CMGL=4``), PDUs measured from themselves."""
        lines = await self.command(
            "AT+CMGL=4", prefix="+CMGL:", pdu_lines=True, timeout=LIST_TIMEOUT_FACTOR * self.command_timeout_s
        )
        out = []
        for header, pdu in _pairs(lines):
            fields = _header_fields(header)
            if not fields or not fields[0].isdigit():
                log.warning("modem: unreadable list entry %r", header[:80])
                continue
            data = _pdu_bytes(pdu)
            stat = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
            if data is None:
                log.warning("modem: index %s holds no hex PDU (%r)", fields[0], pdu[:40])
                data = pdu.encode("latin-1")
            out.append(StoredPdu(self.storage or "", int(fields[0]), stat, data))
        return out

    async def read_message(self, index: int, storage: str | None = None) -> StoredPdu | None:
        """The message at ``index`` (``None`` for an empty slot: a bare ``OK`` or ``+CMS ERROR: 321``)."""
        if storage:
            await self.select_storage(storage)
        try:
            lines = await self.command(f"AT+CMGR={index}", prefix="+CMGR:", pdu_lines=True)
        except AtError as error:
            if error.code == 321:
                return None
            raise
        pairs = _pairs(lines)
        if not pairs:
            return None
        header, pdu = pairs[0]
        fields = _header_fields(header)
        stat = int(fields[0]) if fields and fields[0].isdigit() and len(fields) > 1 else None
        data = _pdu_bytes(pdu)
        return StoredPdu(self.storage or "", index, stat, data if data is not None else pdu.encode("latin-1"))

    async def delete_message(self, index: int, storage: str | None = None) -> None:
        if storage:
            await self.select_storage(storage)
        await self.command(f"AT+CMGD={index}")

    async def send_pdu(self, pdu: bytes, tpdu_length: int) -> int:
        """Send one SMS-SUBMIT; returns the message reference from ``+CMGS``.

        :raises AtError: ``+CMS ERROR`` (no network, SMSC unknown, ...).
        :raises ModemTimeout: no prompt, or no result within :data:`SEND_TIMEOUT_S`.
        """
        await self._write(f"AT+CMGS={tpdu_length}\r".encode())
        line = ""  # a silent modem gives no line at all
        with trio.move_on_after(PROMPT_TIMEOUT_S):
            while True:
                line = await self._next_line(prompt=True)
                if line == ">":
                    break
                if _final(line) == "error":
                    raise AtError(f"AT+CMGS={tpdu_length}", line)
                if self._take_urc(line):
                    await self._urc_pdu(line)
        if line != ">":
            await self._write(ESC)
            raise ModemTimeout(f"modem on {self.port} gave no '> ' prompt for AT+CMGS")
        await self._write(pdu.hex().upper().encode() + CTRL_Z)
        reference: int | None = None
        with trio.move_on_after(SEND_TIMEOUT_S):
            while True:
                line = await self._next_line()
                if line.startswith("+CMGS:"):
                    match = re.match(r"\+CMGS:\s*(\d+)", line)
                    reference = int(match.group(1)) if match else -1
                    continue
                final = _final(line)
                if final == "ok":
                    return reference if reference is not None else -1
                if final == "error":
                    raise AtError("AT+CMGS", line)
                if self._take_urc(line):
                    await self._urc_pdu(line)
        raise ModemTimeout(f"modem on {self.port} did not confirm the SMS within {SEND_TIMEOUT_S} s")

    async def send_text(self, to: str, text: str, *, concat_ref: int = 0) -> list[int]:
        """Send ``text`` to ``to`` (split and concatenated when long); returns the message references."""
        references = []
        for part in split_submit(to, text, concat_ref=concat_ref):
            references.append(await self.send_pdu(part.pdu, part.tpdu_length))
            log.info("modem sent SMS to %s (%d octets, ref %d)", to, part.tpdu_length, references[-1])
        return references


def _final(line: str) -> str | None:
    if line in _FINAL_OK:
        return "ok"
    if line in _FINAL_ERROR or line.startswith(("+CME ERROR", "+CMS ERROR")):
        return "error"
    return None


def _pdu_on_line(header: str) -> bool:
    """``+CMGR: 1,,147 0791...``: some modems put the PDU after the header on the same line."""
    return bool(re.search(r"\s[0-9A-Fa-f]{20,}\"?$", header))


def _pairs(lines: list[str]) -> list[tuple[str, str]]:
    out = []
    index = 0
    while index < len(lines):
        header = lines[index]
        same_line = re.search(r"\s([0-9A-Fa-f]{20,})\"?$", header)
        if same_line:
            out.append((header[: same_line.start()], same_line.group(1)))
            index += 1
        elif index + 1 < len(lines):
            out.append((header, lines[index + 1]))
            index += 2
        else:
            index += 1
    return out


def _header_fields(header: str) -> list[str]:
    body = header.split(":", 1)[1] if ":" in header else header
    return [field.strip() for field in body.split(",")]


def _pdu_bytes(text: str) -> bytes | None:
    cleaned = text.strip().strip('"').replace(" ", "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        return None


def parse_cpms_lists(line: str) -> list[list[str]]:
    """``AT+CPMS=?`` in every shape seen on real modems, as one list of storage names per memory."""
    body = line.split(":", 1)[1] if ":" in line else line
    groups = re.findall(r"\(([^()]*)\)", body)
    if not groups:
        return [[name] for name in re.findall(r"[A-Z][A-Z0-9_]*", body)]
    return [re.findall(r"[A-Z][A-Z0-9_]*", group) for group in groups]


def parse_cpms_usage(line: str) -> tuple[int, int] | None:
    """``(used, total)`` of the first storage in ``+CPMS: "SM",2,10,...`` or ``+CPMS: 2,10,...``."""
    numbers = re.findall(r"(?<![A-Za-z_])(\d+)", line.split(":", 1)[1] if ":" in line else line)
    if len(numbers) >= 2:
        return int(numbers[0]), int(numbers[1])
    return None


# --- The relay's SMS source ----------------------------------------------------------------------------


OnSms = Callable[[IncomingSms], Awaitable[None]]


@dataclass(eq=False)
class _Outgoing:
    to: str
    text: str
    done: trio.Event = field(default_factory=trio.Event)
    references: list[int] = field(default_factory=list)
    error: str | None = None
    abandoned: bool = False


class Outbox:
    """SMS the running relay sends through the modem task it already runs (the port is that task's,
    so nothing else may open it): :meth:`send` waits until the modem sent it or refused it. Between
    two unsolicited messages the task sends what is waiting, so sending never interleaves with reading."""

    def __init__(self) -> None:
        self._waiting: deque[_Outgoing] = deque()
        self._idle: trio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    async def send(self, to: str, text: str, *, timeout_s: float = 120.0) -> list[int]:
        """Send ``text`` to ``to``; the message references.

        :raises ModemError: the modem refused it, or did not send it within ``timeout_s`` (it is down).
        """
        outgoing = _Outgoing(to, text)
        self._waiting.append(outgoing)
        if self._idle is not None:
            self._idle.cancel()
        with trio.move_on_after(timeout_s):
            await outgoing.done.wait()
        if not outgoing.done.is_set():
            outgoing.abandoned = True
            raise ModemError(f"the modem did not send the SMS to {to} within {timeout_s:g} s")
        if outgoing.error is not None:
            raise ModemError(outgoing.error)
        return outgoing.references

    async def wait_urc(self, modem: Modem, timeout: float) -> Urc | None:
        """The modem's next URC, or ``None`` at ``timeout`` or as soon as an SMS is waiting."""
        if self._waiting:
            return None
        with trio.CancelScope() as scope:
            self._idle = scope
            try:
                return await modem.wait_urc(timeout)
            finally:
                self._idle = None
        return None

    async def flush(self, modem: Modem) -> None:
        """Send every waiting SMS (in the modem task, between URCs)."""
        while self._waiting:
            outgoing = self._waiting.popleft()
            if outgoing.abandoned:
                continue
            try:
                outgoing.references = await modem.send_text(outgoing.to, outgoing.text)
            except AtError as error:
                outgoing.error = f"the modem refused the SMS to {outgoing.to}: {error}"
            except ModemError as error:  # the modem went away: it is reopened, the SMS is not retried
                outgoing.error = f"the SMS to {outgoing.to} was not sent: {error}"
                outgoing.done.set()
                raise
            outgoing.done.set()


async def serve_modem(
    settings: ModemSettings,
    on_sms: OnSms,
    *,
    poll_interval_s: float = 60.0,
    status: ModemStatus | None = None,
    outbox: Outbox | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Take SMS from the modem forever; never returns.

    ``task_status.started()`` is called at once: a missing modem must not hold up the relay.

    For each message (after reassembly): ``await on_sms(IncomingSms)``; when it returns, the
    message's slots are deleted from the modem; when it raises, the message stays on the modem, the
    error is logged, and it is offered again on the next scan. Status reports and stored outgoing
    messages are deleted without a call. Every ``poll_interval_s`` the modem is asked for its storage
    use, which doubles as a health check (a silent modem is reopened) and finds messages whose
    ``+CMTI`` was lost. What ``outbox`` holds is sent between two messages (commands by SMS).

    Error handling: a timeout, an AT error during set-up, a vanished device (or a bug here, logged
    with its traceback) closes the port, waits ``reopen_delay_s`` and starts again with a full
    initialisation and scan. Parts of concatenated messages are forgotten then and read again from
    storage (a restarted modem may have renumbered them). An exception from ``on_sms`` is logged and
    affects only that message. Cancellation closes the port. ``status``, when given, follows the
    modem's state, SIM and signal (read again at every poll).
    """
    task_status.started()
    status = status or ModemStatus(settings.port)
    outbox = Outbox() if outbox is None else outbox  # an empty one is falsy
    concat_timeout_s = float(getattr(settings, "concat_timeout_s", 600.0))
    while True:
        reassembler = Reassembler(timeout_s=concat_timeout_s)
        try:
            modem = await Modem.open(
                settings.port, settings.baudrate, command_timeout_s=settings.command_timeout_s
            )
        except ModemGone as error:
            status.state, status.error = "down", str(error)
            log.warning("%s; retrying in %s s", error, settings.reopen_delay_s)
            await trio.sleep(settings.reopen_delay_s)
            continue
        try:
            async with modem:
                await _serve_open_modem(modem, on_sms, reassembler, poll_interval_s, status, outbox)
        except ModemError as error:
            status.state, status.error, status.sim = "down", str(error), modem.sim
            log.warning("%s; reopening in %s s", error, settings.reopen_delay_s)
        except Exception:
            status.state, status.error = "down", "unexpected error (see the log)"
            # A bug here must not take the relay's TCP/UDP service down with it.
            log.exception("modem: unexpected error; reopening in %s s", settings.reopen_delay_s)
        await trio.sleep(settings.reopen_delay_s)


async def _serve_open_modem(
    modem: Modem,
    on_sms: OnSms,
    reassembler: Reassembler,
    poll_interval_s: float,
    status: ModemStatus,
    outbox: Outbox,
) -> None:
    await modem.initialise()
    status.state, status.error, status.sim, status.signal = "ready", None, modem.sim, modem.signal
    await _scan(modem, on_sms, reassembler)
    next_poll = trio.current_time() + poll_interval_s
    while True:
        for message in reassembler.expire(trio.current_time()):
            log.warning(
                "modem: gave up waiting for parts %s of a message from %s",
                list(message.missing),
                message.sender,
            )
            await _hand_over(modem, on_sms, message)
        await outbox.flush(modem)
        deadline = min(next_poll, reassembler.next_deadline() or next_poll)
        urc = await outbox.wait_urc(modem, max(deadline - trio.current_time(), 0))
        if urc is None:
            if len(outbox):
                continue
            if trio.current_time() >= next_poll:
                usage = await modem.storage_usage()
                status.signal = await modem.read_signal()
                next_poll = trio.current_time() + poll_interval_s
                if usage:
                    used, total = usage
                    if used >= total:
                        log.warning(
                            "modem storage full (%d of %d): new SMS wait at the service centre", used, total
                        )
                if modem.rescan_wanted or (usage and usage[0] > len(reassembler.pending_tags())):
                    await _scan(modem, on_sms, reassembler)
            continue
        await _handle_urc(modem, urc, on_sms, reassembler)


async def _handle_urc(modem: Modem, urc: Urc, on_sms: OnSms, reassembler: Reassembler) -> None:
    if urc.name in ("+CMTI", "+CDSI"):
        match = re.match(r'\+C(?:MT|DS)I:\s*"?([A-Za-z_]*)"?\s*,\s*(\d+)', urc.line)
        if not match:
            log.warning("modem: unreadable %r", urc.line)
            return
        storage, index = match.group(1) or (modem.storage or ""), int(match.group(2))
        if modem.storages and storage not in modem.storages:
            log.warning("modem announced a message in unknown storage %s; scanning instead", storage)
            await _scan(modem, on_sms, reassembler)
            return
        if any(tag[:2] == (storage, index) for tag in reassembler.pending_tags()):
            return
        log.info("modem: new message at %s %d", storage, index)
        try:
            stored = await modem.read_message(index, storage)
        except AtError as error:
            log.warning("modem: cannot read %s %d (%s); the next scan tries again", storage, index, error)
            modem.rescan_wanted = True
            return
        if stored is None:
            log.info("modem: slot %s %d is empty", storage, index)
            return
        await _take(modem, stored, on_sms, reassembler)
    elif urc.name == "+CMT" and urc.pdu:
        data = _pdu_bytes(urc.pdu)
        log.warning("modem delivered a message directly (+CMT): it cannot be kept on the modem")
        if data is not None:
            await _take(modem, StoredPdu("", -1, None, data), on_sms, reassembler)
    elif urc.line.startswith(RESET_URCS):
        raise ModemError(f"the modem restarted ({urc.line})")
    elif urc.line.startswith(("^SMMEMFULL", '+QIND: "smsfull"')):
        log.warning("modem storage full (%s): reading everything", urc.line)
        await _scan(modem, on_sms, reassembler)
    else:
        log.debug("modem: %s", urc.line)


async def _scan(modem: Modem, on_sms: OnSms, reassembler: Reassembler) -> None:
    """Read every stored message (at start, after a reopen, and when URCs may have been lost)."""
    home = modem.storage
    modem.rescan_wanted = False
    for storage in modem.scan_storages or (home,):
        if storage:
            await modem.select_storage(storage)
        stored = await modem.list_messages()
        if stored:
            log.info("modem holds %d stored message(s) in %s", len(stored), storage or "its storage")
        for item in stored:
            if not reassembler.holds((item.storage, item.index, item.pdu)):
                await _take(modem, item, on_sms, reassembler)
    if home:
        await modem.select_storage(home)
    for urc in modem.pending_urcs():
        await _handle_urc(modem, urc, on_sms, reassembler)


async def _take(modem: Modem, stored: StoredPdu, on_sms: OnSms, reassembler: Reassembler) -> None:
    tag = (stored.storage, stored.index, stored.pdu)
    try:
        # A two-digit year is read in the century nearest now.
        pdu = decode_pdu(stored.pdu, smsc=None, reference=datetime.now(UTC))
    except PduError as error:
        log.warning("modem: undecodable PDU at %s %d: %s", stored.storage, stored.index, error)
        incoming = IncomingSms((stored.pdu,), None, stored.storage, _indices([tag]), error=str(error))
        await _deliver(modem, on_sms, incoming)
        return
    if isinstance(pdu, StatusReport | Submit):
        kind = "status report" if isinstance(pdu, StatusReport) else "stored outgoing message"
        log.info("modem: deleting a %s at %s %d (not a tracker message)", kind, stored.storage, stored.index)
        if stored.index >= 0:
            try:
                await modem.delete_message(stored.index, stored.storage)
            except AtError as error:
                log.warning("modem: could not delete %s %d (%s)", stored.storage, stored.index, error)
        return
    assert isinstance(pdu, Deliver)
    message = reassembler.add(pdu, trio.current_time(), tag=tag)
    if message is None:
        concat = pdu.concat
        log.info(
            "modem: part %s of %s from %s, waiting for the rest",
            concat and concat.seq,
            concat and concat.total,
            pdu.sender.number,
        )
        return
    await _hand_over(modem, on_sms, message)


async def _hand_over(modem: Modem, on_sms: OnSms, message: Message) -> None:
    storages = {tag[0] for tag in message.tags}
    incoming = IncomingSms(
        pdus=tuple(tag[2] for tag in message.tags),
        message=message,
        storage=storages.pop() if len(storages) == 1 else "",
        indices=_indices(message.tags),
    )
    await _deliver(modem, on_sms, incoming, tags=message.tags)


def _indices(tags: Any) -> tuple[int, ...]:
    return tuple(tag[1] for tag in tags if tag[1] >= 0)


async def _deliver(modem: Modem, on_sms: OnSms, incoming: IncomingSms, *, tags: Any = None) -> None:
    try:
        await on_sms(incoming)
    except Exception:
        log.exception("modem: on_sms failed for a message from %s; it stays on the modem", incoming.sender)
        modem.rescan_wanted = True
        return
    slots = (
        [(tag[0], tag[1]) for tag in tags]
        if tags is not None
        else [(incoming.storage, i) for i in incoming.indices]
    )
    for storage, index in dict.fromkeys(slots):
        if index < 0:
            continue
        try:
            await modem.delete_message(index, storage)
        except AtError as error:
            log.warning("modem: could not delete %s %d (%s); it will be read again", storage, index, error)
            continue
        log.info("modem: deleted %s %d", storage, index)


async def send_sms(settings: ModemSettings, to: str, text: str) -> None:
    """Open the modem, send ``text`` to ``to`` (concatenated when long), close it.

    :raises ModemError: the modem is absent, silent, or refused the message (the reason is readable).
    """
    modem = await Modem.open(settings.port, settings.baudrate, command_timeout_s=settings.command_timeout_s)
    async with modem:
        await modem._sync()
        await modem.command("ATE0")
        await modem._optional("AT+CMEE=1")
        await modem.command("AT+CMGF=0")
        await modem.send_text(to, text)
