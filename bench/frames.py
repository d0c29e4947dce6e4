"""Simulated devices: one frame template per (protocol, transport), made distinct per device.

Every frame here is answered by its driver (an acknowledgement the relay sends only after the commit),
so a simulated device can send "as fast as its acknowledgements allow": one frame out, wait for the
answer, the next frame out. The templates come from the reference vectors; only the device id changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from drivers import Transport, decode_stream

#: (protocol, template, the id inside the template). Each is answered per frame.
TCP_KINDS: tuple[tuple[str, str, str], ...] = (
    (
        "gps103",
        "359710040000000imei:359710040000000,tracker,261120100000,,F,080000.000,A,"
        "5101.1234,N,00007.0001,W,12.00,90;",
        "359710040000000",
    ),
    (
        "h02",
        "*HQ,865205035331981,V1,132926,A,1935.3933,N,07920.4134,E,  3.34,342,280519,FFFFFFFF#",
        "865205035331981",
    ),
    (
        "tk103",
        "(088047365460BP05354188047365460150929A3258.1754S02755.4323E009.4193927301.9000000000L00000000)",
        "088047365460",
    ),
    (
        "watch",
        "[3G*6907919734*003e*AL_LTE,170525,214118,V,0,N,0,E,0,0,0,0,0,22,0,0,00010000,0,0,0]",
        "6907919734",
    ),
)
#: Teltonika codec 8E over UDP, one record; the IMEI sits at bytes 8..23 of the datagram header.
TELTONIKA_UDP = bytes.fromhex(
    "0086cafe0101000f3335323039333038353639383230368e0100000167efa919800200000000000000000000000000000000"
    "fc0013000800ef0000f00000150500c80000450200010000710000fc00000900b5000000b600000042305600cd432a00ce60"
    "64001100090012ff22001303d1000f0000000200f1000059d90010000000000000000001"
)
TELTONIKA_IMEI = slice(8, 23)
UDP_KINDS: tuple[tuple[str, str, str], ...] = (("teltonika", "", ""), TCP_KINDS[1], TCP_KINDS[0])


@dataclass(frozen=True, slots=True)
class DeviceFrames:
    """What one simulated device sends, and how many reply bytes answer each frame."""

    protocol: str
    transport: Transport
    device_id: str
    frame: bytes
    reply_length: int
    reports: int


def _device_id(template_id: str, index: int) -> str:
    """A distinct id as long as the template's (frames with length fields keep their length)."""
    width = len(template_id)
    return f"{template_id[:2]}{index:0{width - 2}d}"


def _teltonika_frame(index: int) -> tuple[str, bytes]:
    frame = bytearray(TELTONIKA_UDP)
    device_id = f"35{index:013d}"
    frame[TELTONIKA_IMEI] = device_id.encode()
    return device_id, bytes(frame)


def device(index: int, transport: Transport, only: str | None = None) -> DeviceFrames:
    """The ``index``-th simulated device on ``transport``: protocols in turn (or only the protocol
    ``only``), a distinct id each.

    :raises ValueError: the made frame does not decode to a report with a reply (a bench bug).
    """
    kinds = TCP_KINDS if transport is Transport.TCP else UDP_KINDS
    if only is not None:
        kinds = tuple(kind for kind in kinds if kind[0] == only)
    protocol, template, template_id = kinds[index % len(kinds)]
    if protocol == "teltonika":
        device_id, frame = _teltonika_frame(index)
    else:
        device_id = _device_id(template_id, index)
        frame = template.replace(template_id, device_id).encode()
    out = decode_stream(
        [frame],
        now=datetime.now(UTC),
        protocol="auto",
        transport=transport,
        messages=True,
    ).summary()
    replies = [bytes.fromhex(reply) for reply in out["replies"]]
    if out["protocol"] != protocol or not out["reports"] or not replies:
        raise ValueError(f"bench frame for {protocol}/{transport.value} not answered: {out}")
    if out["reports"][0]["device_id"] != device_id:
        raise ValueError(
            f"bench frame for {protocol}: device id {out['reports'][0]['device_id']} != {device_id}"
        )
    return DeviceFrames(
        protocol, transport, device_id, frame, sum(len(reply) for reply in replies), len(out["reports"])
    )


def login(index: int) -> tuple[bytes, int]:
    """A gps103 login (answered ``LOAD``): what an idle connection sends once."""
    return f"##,imei:86{index:013d},A;".encode(), len(b"LOAD")
