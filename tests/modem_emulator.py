"""A GSM modem emulator on a real pty, following 3GPP TS 27.005 / 27.007 behaviour, run as a trio task.

The code under test opens :attr:`ModemEmulator.link` (a symlink to the pty's slave, like a
``/dev/serial/by-id`` name) with pyserial; the emulator serves the master side. What it does:

* command echo (``ATE0``/``ATE1``), final result codes verbose or numeric (``ATV1``/``ATV0``), errors
  as ``ERROR`` or ``+CME/+CMS ERROR`` numeric or verbose (``AT+CMEE=0/1/2``);
* ``+CPIN``, ``+CSQ``, ``+CREG``/``+CEREG``, ``+CMGF``, ``+CPMS`` (test, read, set; used/total per
  storage), ``+CNMI`` (refuses modes not in :attr:`cnmi_supported`), ``+CMGR``, ``+CMGL`` (PDU mode
  only), ``+CMGD`` (with delflags), ``+CMGS`` (``> `` prompt, Ctrl-Z sends, ESC aborts), ``+CSCA``;
* storage indices from :attr:`index_base`, a capacity per storage (``+CMS ERROR: 322`` style "full":
  a delivered SMS is refused and stays "at the service centre" in :attr:`refused`);
* URCs: ``+CMTI`` when an SMS is stored, injected between commands, or in the middle of the next
  response (:meth:`deliver` with ``announce="mid-response"``);
* failure modes: :attr:`silent` (reads and ignores everything), :meth:`unplug` (the pty is closed)
  and :meth:`replug` (a new pty, the link re-pointed), :meth:`garbage`;
* tracker scripting: :attr:`replies` maps a sent text to the texts the tracker answers with (after
  :attr:`reply_delay_s`), delivered as SMS from the destination number.

Observations for tests: :attr:`deleted`, :attr:`sent`, :attr:`commands`, :meth:`stored`.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import trio

from drivers.sms_pdu import Submit, decode_pdu, encode_deliver

CMS_TEXT = {
    321: "invalid memory index",
    322: "memory full",
    302: "operation not allowed",
    500: "unknown error",
}
CME_TEXT = {
    3: "operation not allowed",
    4: "operation not supported",
    10: "SIM not inserted",
    11: "SIM PIN required",
}


@dataclass
class Slot:
    stat: int  # 0 REC UNREAD, 1 REC READ, 2 STO UNSENT, 3 STO SENT
    pdu: bytes


@dataclass
class SentSms:
    destination: str
    text: str | None
    pdu: bytes
    reference: int


@dataclass
class ModemEmulator:
    link: Path
    storages: tuple[str, ...] = ("SM", "ME")
    capacity: int = 10
    index_base: int = 1
    echo: bool = True
    pin_state: str = "READY"
    cnmi_supported: tuple[str, ...] = ("2,1,0,0,0", "2,1,0,2,0")
    #: "standard" ``+CMGR: 0,,25``; "telit" ``+CMGR: 0,"",25``; "same_line" header and PDU on one line;
    #: "bare" ``+CMGR: 25`` (length only).
    header_style: str = "standard"
    #: Lie in the header's length field (real modems do).
    header_length_bias: int = 0
    replies: dict[str, list[str]] = field(default_factory=dict)
    reply_delay_s: float = 0.05
    reply_matcher: Callable[[str, str], bool] | None = None

    def __post_init__(self) -> None:
        self.silent = False
        self.verbose = True  # ATV1
        self.cmee = 0
        self.pdu_mode = False
        self.mem = [self.storages[0]] * 3
        self.cnmi = ""
        self.slots: dict[str, dict[int, Slot]] = {name: {} for name in self.storages}
        self.deleted: list[tuple[str, int]] = []
        self.sent: list[SentSms] = []
        self.refused: list[bytes] = []
        self.commands: list[str] = []
        self._mid_response_urcs: list[str] = []
        self._message_reference = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._plugged = trio.Event()
        self._nursery: trio.Nursery | None = None
        self.connected = 0

    # --- Test controls ---------------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[ModemEmulator] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the pty until cancelled (surviving unplug/replug)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._open_pty()
            task_status.started(self)
            try:
                while True:
                    await self._plugged.wait()
                    try:
                        await self._serve()
                    except OSError:
                        await trio.sleep(0.01)
            finally:
                self._close_pty()

    def deliver(
        self, pdu: bytes, *, storage: str | None = None, announce: str = "now", stat: int = 0
    ) -> int | None:
        """Store an incoming SMS and announce it with ``+CMTI`` (``announce``: now, mid-response, never).

        Returns the index, or ``None`` when the storage is full (the SMS is left in :attr:`refused`).
        """
        storage = storage or self.mem[2]
        slots = self.slots[storage]
        if len(slots) >= self.capacity:
            self.refused.append(pdu)
            return None
        index = self.index_base
        while index in slots:
            index += 1
        slots[index] = Slot(stat, pdu)
        urc = f'+CMTI: "{storage}",{index}'
        if announce == "now":
            self._send_urc(urc)
        elif announce == "mid-response":
            self._mid_response_urcs.append(urc)
        return index

    def deliver_text(self, sender: str, text: str, **kwargs: object) -> int | None:
        pdu = encode_deliver(
            sender, text, timestamp=datetime.now(UTC).replace(microsecond=0), smsc="+15550000000"
        )
        return self.deliver(pdu, **kwargs)  # type: ignore[arg-type]

    def stored(self, storage: str | None = None) -> dict[int, bytes]:
        return {index: slot.pdu for index, slot in self.slots[storage or self.mem[0]].items()}

    def inject_urc(self, line: str) -> None:
        self._send_urc(line)

    def garbage(self, data: bytes) -> None:
        self._write(data)

    async def unplug(self) -> None:
        """The USB device disappears: the pty is closed under the open port."""
        self._plugged = trio.Event()
        self._close_pty()
        await trio.sleep(0)

    async def replug(self) -> None:
        """A new device node appears and the link points to it; the modem has restarted (settings lost)."""
        self.verbose, self.cmee, self.pdu_mode, self.cnmi, self.echo = True, 0, False, "", True
        self._open_pty()
        await trio.sleep(0)

    # --- The pty ---------------------------------------------------------------------------------------

    def _open_pty(self) -> None:
        previous = self.link.resolve() if self.link.is_symlink() else None
        spare: list[int] = []
        master, slave = pty.openpty()
        while previous is not None and Path(os.ttyname(slave)) == previous and len(spare) < 8:
            # The kernel reuses a freed pty number; a replugged USB modem usually gets a new node.
            spare += [master, slave]
            master, slave = pty.openpty()
        for fd in spare:
            os.close(fd)
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        tmp = self.link.with_suffix(".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.link)
        self._plugged.set()

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    trio.lowlevel.notify_closing(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None

    def _write(self, data: bytes) -> None:
        if self._master is None:
            return
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._master, data)

    def _send_urc(self, line: str) -> None:
        if not self.silent:
            self._write(f"\r\n{line}\r\n".encode())

    async def _serve(self) -> None:
        master = self._master
        assert master is not None
        buffer = bytearray()
        prompt_length: int | None = None
        while True:
            try:
                await trio.lowlevel.wait_readable(master)
            except trio.ClosedResourceError:
                return
            if self._master != master:
                return
            try:
                chunk = os.read(master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                # EIO: nobody has the slave open (between runs of the code under test).
                await trio.sleep(0.01)
                continue
            if self.silent:
                continue
            if self.echo:
                self._write(chunk)
            buffer += chunk
            while True:
                if prompt_length is not None:
                    end = min((i for i in (buffer.find(b"\x1a"), buffer.find(b"\x1b")) if i >= 0), default=-1)
                    if end < 0:
                        break
                    body, terminator = bytes(buffer[:end]), buffer[end]
                    del buffer[: end + 1]
                    length, prompt_length = prompt_length, None
                    if terminator == 0x1A:
                        self._finish_send(body.decode("ascii", "replace").strip(), length)
                    else:
                        self._final_ok()
                    continue
                end = buffer.find(b"\r")
                if end < 0:
                    break
                line = bytes(buffer[:end]).decode("ascii", "replace").strip()
                del buffer[: end + 1]
                if buffer[:1] == b"\n":
                    del buffer[0]
                if not line:
                    continue
                self.commands.append(line)
                prompt_length = self._command(line)

    # --- Responses -------------------------------------------------------------------------------------

    def _respond(self, lines: list[str], *, ok: bool = True) -> None:
        out = b""
        for number, line in enumerate(lines):
            out += (f"\r\n{line}\r\n" if self.verbose else f"{line}\r\n").encode()
            if number == 0 and self._mid_response_urcs:
                for urc in self._mid_response_urcs:
                    out += f"\r\n{urc}\r\n".encode()
                self._mid_response_urcs.clear()
        if ok:
            out += b"\r\nOK\r\n" if self.verbose else b"0\r"
        self._write(out)
        for urc in self._mid_response_urcs:
            self._send_urc(urc)
        self._mid_response_urcs.clear()

    def _final_ok(self) -> None:
        self._respond([])

    def _error(self, kind: str = "", code: int = 0) -> None:
        if not kind or self.cmee == 0:
            self._write(b"\r\nERROR\r\n" if self.verbose else b"4\r")
            return
        value = (
            str(code) if self.cmee == 1 else (CMS_TEXT if kind == "CMS" else CME_TEXT).get(code, "unknown")
        )
        self._write(f"\r\n+{kind} ERROR: {value}\r\n".encode())

    def _command(self, line: str) -> int | None:
        """Answer one command line; returns the TPDU length when a ``> `` prompt was opened."""
        upper = line.upper()
        if not upper.startswith("AT"):
            self._error()
            return None
        body = line[2:]
        if upper in ("AT", "ATZ", "ATI") or upper.startswith("AT&"):
            self._final_ok()
        elif re.fullmatch(r"ATE[01]?", upper):
            self.echo = upper.endswith("1")
            self._final_ok()
        elif re.fullmatch(r"ATV[01]?", upper):
            self._final_ok()
            self.verbose = upper.endswith("1")
        elif m := re.fullmatch(r"\+CMEE=([012])", body, re.I):
            self.cmee = int(m.group(1))
            self._final_ok()
        elif upper == "AT+CPIN?":
            if self.pin_state == "NO SIM":
                self._error("CME", 10)
            else:
                self._respond([f"+CPIN: {self.pin_state}"])
        elif upper == "AT+CSQ":
            self._respond(["+CSQ: 17,99"])
        elif upper in ("AT+CREG?", "AT+CEREG?"):
            self._respond([f"{upper[2:-1]}: 0,1"])
        elif m := re.fullmatch(r"\+CMGF=([01])", body, re.I):
            self.pdu_mode = m.group(1) == "0"
            self._final_ok()
        elif upper == "AT+CMGF?":
            self._respond([f"+CMGF: {0 if self.pdu_mode else 1}"])
        elif upper.startswith("AT+CPMS"):
            self._cpms(body[5:])
        elif upper.startswith("AT+CNMI="):
            if body[6:] in self.cnmi_supported:
                self.cnmi = body[6:]
                self._final_ok()
            else:
                self._error("CMS", 303)
        elif upper == "AT+CSCA?":
            self._respond(['+CSCA: "+15550000000",145'])
        elif m := re.fullmatch(r"\+CMGR=(\d+)(?:,\d)?", body, re.I):
            self._cmgr(int(m.group(1)))
        elif m := re.fullmatch(r"\+CMGL(?:=(.*))?", body, re.I):
            self._cmgl(m.group(1) or "0")
        elif m := re.fullmatch(r"\+CMGD=(\d+)(?:,(\d))?", body, re.I):
            self._cmgd(int(m.group(1)), int(m.group(2) or 0))
        elif m := re.fullmatch(r"\+CMGS=(\d+)", body, re.I):
            if not self.pdu_mode:
                self._error("CMS", 302)
                return None
            self._write(b"\r\n> ")
            return int(m.group(1))
        else:
            self._error()
        return None

    def _cpms(self, rest: str) -> None:
        if rest == "=?":
            names = ",".join(f'"{name}"' for name in self.storages)
            self._respond([f"+CPMS: ({names}),({names}),({names})"])
            return
        if rest == "?":
            parts = [f'"{m}",{len(self.slots[m])},{self.capacity}' for m in self.mem]
            self._respond(["+CPMS: " + ",".join(parts)])
            return
        names = re.findall(r'"([A-Z_]+)"', rest)
        if not rest.startswith("=") or not names or any(name not in self.storages for name in names):
            self._error("CMS", 302)
            return
        for position, name in enumerate(names[:3]):
            self.mem[position] = name
        usage = [f"{len(self.slots[m])},{self.capacity}" for m in self.mem]
        self._respond(["+CPMS: " + ",".join(usage)])

    def _entry(self, prefix: str, index: int | None, slot: Slot) -> list[str]:
        tpdu = len(slot.pdu) - slot.pdu[0] - 1 + self.header_length_bias
        hex_pdu = slot.pdu.hex().upper()
        lead = f"{index}," if index is not None else ""
        if self.header_style == "telit":
            return [f'{prefix}: {lead}{slot.stat},"",{tpdu}', hex_pdu]
        if self.header_style == "same_line":
            return [f"{prefix}: {lead}{slot.stat},,{tpdu} {hex_pdu}"]
        if self.header_style == "bare" and index is None:
            return [f"{prefix}: {tpdu}", hex_pdu]
        return [f"{prefix}: {lead}{slot.stat},,{tpdu}", hex_pdu]

    def _cmgr(self, index: int) -> None:
        slot = self.slots[self.mem[0]].get(index)
        if slot is None:
            self._error("CMS", 321)
            return
        lines = self._entry("+CMGR", None, slot)
        if slot.stat == 0:
            slot.stat = 1
        self._respond(lines)

    def _cmgl(self, argument: str) -> None:
        if not self.pdu_mode or not argument.isdigit():
            self._error()
            return
        wanted = int(argument)
        lines: list[str] = []
        for index, slot in sorted(self.slots[self.mem[0]].items()):
            if wanted == 4 or slot.stat == wanted:
                lines += self._entry("+CMGL", index, slot)
                if slot.stat == 0:
                    slot.stat = 1
        self._respond(lines)

    def _cmgd(self, index: int, flag: int) -> None:
        slots = self.slots[self.mem[0]]
        if flag == 0:
            if index in slots:
                del slots[index]
                self.deleted.append((self.mem[0], index))
            self._final_ok()
            return
        keep = {1: (0, 2), 2: (0, 2), 3: (0,), 4: ()}.get(flag, ())
        for number in [i for i, slot in slots.items() if slot.stat not in keep]:
            del slots[number]
            self.deleted.append((self.mem[0], number))
        self._final_ok()

    def _finish_send(self, hex_pdu: str, length: int) -> None:
        try:
            pdu = decode_pdu(bytes.fromhex(hex_pdu), smsc=True)
        except ValueError:
            self._error("CMS", 304)
            return
        if (
            not isinstance(pdu, Submit)
            or len(bytes.fromhex(hex_pdu)) - bytes.fromhex(hex_pdu)[0] - 1 != length
        ):
            self._error("CMS", 304)
            return
        self._message_reference = (self._message_reference + 1) % 256
        self.sent.append(
            SentSms(pdu.destination.number, pdu.text, bytes.fromhex(hex_pdu), self._message_reference)
        )
        self._respond([f"+CMGS: {self._message_reference}"])
        answers = self._answers_for(pdu.text or "")
        if answers and self._nursery is not None:
            self._nursery.start_soon(self._reply_later, pdu.destination.number, answers)

    def _answers_for(self, text: str) -> list[str]:
        for pattern, answers in self.replies.items():
            matcher = self.reply_matcher or (lambda sent, key: sent == key)
            if matcher(text, pattern):
                return answers
        return []

    async def _reply_later(self, sender: str, answers: list[str]) -> None:
        for answer in answers:
            await trio.sleep(self.reply_delay_s)
            self.deliver_text(sender, answer)
