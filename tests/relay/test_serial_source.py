"""A tracker on a serial line (a real pty) goes through the same sniff, commit and reply path as TCP."""

from __future__ import annotations

import os
import pty
import tty
from pathlib import Path

import trio

from tests import devices
from tests.relay.harness import running_relay, wait_until

IMEI = "868683020419374"


async def read_exactly(fd: int, count: int, timeout: float = 10) -> bytes:
    data = b""
    with trio.fail_after(timeout):
        while len(data) < count:
            await trio.lowlevel.wait_readable(fd)
            data += os.read(fd, count - len(data))
    return data


async def test_a_serial_tracker_is_answered_after_commit_and_survives_a_replug(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    tty.setraw(master)
    link = tmp_path / "usb-FTDI_tracker-if00-port0"
    link.symlink_to(os.ttyname(slave))
    serial = [{"port": str(link), "baudrate": 9600, "reopen_delay_s": 0.1}]
    async with running_relay(tmp_path / "relay", serial=serial) as relay:
        os.write(master, devices.gps103_login(IMEI))
        assert await read_exactly(master, 4) == b"LOAD"
        os.write(master, devices.gps103_position(IMEI, 7))
        assert await read_exactly(master, 2) == b"ON"
        assert relay.journal.committed_reports == 2

        # Unplugged: the pty goes away; a new one appears under the same by-id name.
        os.close(master)
        os.close(slave)
        master, slave = pty.openpty()
        tty.setraw(master)
        link.unlink()
        link.symlink_to(os.ttyname(slave))
        # Like a tracker, resend until acknowledged: bytes written before the relay reopens the port
        # may be flushed by the open.
        answer = b""
        with trio.fail_after(20):
            while answer != b"ON":
                os.write(master, devices.gps103_position(IMEI, 8))
                with trio.move_on_after(0.5):
                    answer = await read_exactly(master, 2)
        await wait_until(lambda: relay.journal.committed_reports >= 3, what="the third report")
        assert relay.journal.read_after(0, 100)[-1].document["time"] == devices.iso(8)
    os.close(master)
    os.close(slave)
