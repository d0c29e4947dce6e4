"""A tracker on a serial line (a real pty) goes through the same sniff, commit and reply path as TCP."""

from __future__ import annotations

import os
import pty
import tty
from pathlib import Path

import trio

from tests import devices
from tests.relay.harness import running_relay

IMEI = "868683020419374"


async def send_until_answered(fd: int, frame: bytes, answer: bytes, timeout: float = 20) -> None:
    """Resend ``frame`` until ``answer`` comes back, as a tracker does: opening a serial port flushes
    what was written before, so the first bytes may be lost while the relay (re)opens it."""
    with trio.fail_after(timeout):
        while True:
            os.write(fd, frame)
            received = b""
            with trio.move_on_after(0.5):
                while len(received) < len(answer):
                    await trio.lowlevel.wait_readable(fd)
                    received += os.read(fd, len(answer) - len(received))
            if received == answer:
                return


def new_pty(link: Path) -> tuple[int, int]:
    master, slave = pty.openpty()
    tty.setraw(master)
    link.unlink(missing_ok=True)
    link.symlink_to(os.ttyname(slave))
    return master, slave


async def test_a_serial_tracker_is_answered_after_commit_and_survives_a_replug(tmp_path: Path) -> None:
    link = tmp_path / "usb-FTDI_tracker-if00-port0"
    master, slave = new_pty(link)
    serial = [{"port": str(link), "baudrate": 9600, "reopen_delay_s": 0.1}]
    async with running_relay(tmp_path / "relay", serial=serial) as relay:
        await send_until_answered(master, devices.gps103_login(IMEI), b"LOAD")
        await send_until_answered(master, devices.gps103_position(IMEI, 7), b"ON")
        # Unplugged: the pty goes away; a new one appears under the same by-id name.
        os.close(master)
        os.close(slave)
        master, slave = new_pty(link)
        await send_until_answered(master, devices.gps103_position(IMEI, 8), b"ON")
        stored = relay.journal.read_after(0, 100)
    os.close(master)
    os.close(slave)
    assert {report.transport for report in stored} == {"serial"}
    times = [report.document["time"] for report in stored if report.has_position]
    assert set(times) == {devices.iso(7), devices.iso(8)} and times[-1] == devices.iso(8)


async def test_a_serial_line_of_a_given_protocol_is_answered(tmp_path: Path) -> None:
    link = tmp_path / "usb-FTDI_FT232R_USB_UART_A10K1234-if00-port0"
    master, _slave = new_pty(link)
    serial = [{"port": str(link), "baudrate": 9600, "reopen_delay_s": 0.1, "protocol": "gps103"}]
    async with running_relay(tmp_path / "relay", serial=serial):
        await send_until_answered(master, devices.gps103_login(IMEI), b"LOAD", timeout=5)
