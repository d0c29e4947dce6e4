"""Decode frames outside the relay: the engine of ``relay decode`` and of the vector tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ._model import DriverError, Transport
from ._registry import NEED_MORE, Driver, detect, get
from ._session import Session


def decode_frames(
    frames: Sequence[bytes],
    *,
    now: datetime,
    protocol: str = "auto",
    transport: Transport = Transport.TCP,
    device_id: str | None = None,
) -> dict[str, Any]:
    """Decode ``frames`` in order, in one session, and describe the outcome as ``relay decode`` prints it.

    Each input is one or more complete frames; a final frame without its delimiter is still decoded,
    as at the end of a stream. Reports without a device id get the session's, as in the relay
    (:meth:`Session.fill_device_id`). Returns ``{"protocol", "reports", "replies", "error"}``; a decode error
    is reported in ``error`` (the first one) and decoding goes on with the next frame.
    """
    out: dict[str, Any] = {"protocol": None, "reports": [], "replies": [], "error": None}
    if not frames:
        out["error"] = "no input"
        return out
    driver: Driver | None
    if protocol == "auto":
        found = detect(frames[0], transport, final=True)
        driver = found if isinstance(found, Driver) else None
        if driver is None or found is NEED_MORE:
            out["error"] = f"no driver recognises these bytes ({frames[0][:16].hex()})"
            return out
    else:
        try:
            driver = get(protocol)
        except KeyError as error:
            out["error"] = str(error.args[0])
            return out
    out["protocol"] = driver.name
    session = driver.new_session(transport, device_id=device_id)
    for data in frames:
        for frame in _frames_of(session, data, transport, out):
            try:
                result = session.decode(frame, now=now)
            except DriverError as error:
                out["error"] = out["error"] or str(error)
                continue
            if result.error is not None:
                out["error"] = out["error"] or str(result.error)
            out["reports"].extend(report.to_json() for report in session.fill_device_id(result))
            out["replies"].extend(reply.hex() for reply in result.replies)
    return out


def _frames_of(session: Session, data: bytes, transport: Transport, out: dict[str, Any]) -> list[bytes]:
    if transport is Transport.UDP:
        return session.datagram_frames(data)
    session.receive_data(data)
    try:
        frames = list(session.frames())
    except DriverError as error:
        out["error"] = out["error"] or str(error)
        session.take_buffer()
        return []
    rest = session.take_buffer()
    if rest.strip(b"\r\n\x00 "):
        frames.append(rest)
    return frames
