"""A tracker wired to a serial port: the same sniff, decode, commit-then-reply path as a TCP stream.

The port is opened with pyserial in non-blocking mode and driven from trio with
``wait_readable``/``wait_writable`` (no threads). When the device disappears (a USB adapter pulled),
the port is reopened every ``reopen_delay_s``; ``/dev/serial/by-id/...`` names survive re-plugging.
"""

from __future__ import annotations

import logging
from typing import Any

import serial
import trio

from drivers import Transport

from ..config import SerialSource
from ..logs import log_event
from ._listener import READ_SIZE, Listener

log = logging.getLogger("relay.serial")


class SerialStream(trio.abc.Stream):
    """A pyserial port as a trio stream."""

    def __init__(self, port: Any) -> None:
        self._port = port
        self._fd = port.fileno()

    @classmethod
    def open(cls, path: str, baudrate: int) -> SerialStream:
        """:raises OSError: the port cannot be opened (missing, busy, no permission)."""
        try:
            port = serial.Serial(path, baudrate, timeout=0, write_timeout=0, exclusive=True)
        except serial.SerialException as error:
            raise OSError(str(error)) from error
        return cls(port)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.wait_readable(self._fd)
        try:
            data = self._port.read(min(max_bytes or READ_SIZE, max(self._port.in_waiting, 1)))
        except (serial.SerialException, OSError) as error:
            raise trio.BrokenResourceError(f"serial port failed: {error}") from error
        if not data:
            # Readable with nothing to read: the device is gone (USB unplugged, pty closed).
            raise trio.BrokenResourceError("serial port closed")
        return bytes(data)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(bytes(data))
        while view:
            await trio.lowlevel.wait_writable(self._fd)
            try:
                written = self._port.write(view) or 0
            except (serial.SerialException, OSError) as error:
                raise trio.BrokenResourceError(f"serial port failed: {error}") from error
            view = view[written:]

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self._fd)

    async def aclose(self) -> None:
        trio.lowlevel.notify_closing(self._fd)
        self._port.close()
        await trio.lowlevel.checkpoint()


async def serve_serial(source: SerialSource, listener: Listener) -> None:
    """Serve one serial tracker forever, reopening the port whenever it fails."""
    while True:
        try:
            stream = SerialStream.open(source.port, source.baudrate)
        except OSError as error:
            log_event(
                log,
                logging.WARNING,
                "serial_unavailable",
                port=source.port,
                error=str(error),
                retry_s=source.reopen_delay_s,
            )
            await trio.sleep(source.reopen_delay_s)
            continue
        log_event(log, logging.INFO, "serial_open", port=source.port, baudrate=source.baudrate)
        try:
            await listener.serve_stream(
                stream, f"serial:{source.port}", Transport.SERIAL, protocol=source.protocol, idle_timeout=None
            )
        except trio.BrokenResourceError as error:
            log_event(log, logging.WARNING, "serial_lost", port=source.port, error=str(error))
        except Exception as error:  # a bad stream must not end the source; reopen
            log_event(log, logging.WARNING, "serial_closed", port=source.port, error=str(error))
        finally:
            await stream.aclose()
        await trio.sleep(source.reopen_delay_s)
