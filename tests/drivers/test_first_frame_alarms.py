"""An alarm as the very first frame: a tracker that wakes up on an alarm (or whose connection dropped)
opens its stream, or sends its datagram, with the alarm itself, not a login. The one port must still
recognise the protocol from those bytes and store the alarm.
"""

from __future__ import annotations

import pytest

import drivers
from drivers import Driver, Transport, alarms, decode_stream
from tests import vectors

TCP, UDP = Transport.TCP, Transport.UDP

PT502_IN1 = (
    b"$IN1,1360000277,182241.000,A,0846.0896,N,07552.1738,W,13.58,26.88,291017,,,"
    b"A/00000,00000/0,0,0,0/62792900//f65//\r\n"
)
GPS103_HELP_ME = b"imei:123456789012345,help me,1201011201,,F,120100.000,A,6000.0000,N,13000.0000,E,0.00,;"
GT06_SOS = bytes.fromhex("7878241617070a150e24ca01fba0040780e177005c0001720253360027db6204e40400004bf1e90d0a")
H02_SOS = b"*HQ,353505220903211,V1,075228,A,5227.5039,N,01032.8443,E,0.00,0,231013,FFFBFFFF,106,14, 201,2173#"
# One codec 8 record of priority 2 (panic: SOS), without the IMEI handshake before it (TCP), and in a
# datagram that names the IMEI (UDP).
TELTONIKA_AVL = (
    "8e0100000167efa919800200000000000000000000000000000000fc0013000800ef0000f00000150500c80000450200"
    "010000710000fc00000900b5000000b600000042305600cd432a00ce6064001100090012ff22001303d1000f00000002"
    "00f1000059d90010000000000000000001"
)
TELTONIKA_TCP = bytes.fromhex("0000000000000071" + TELTONIKA_AVL + "0000e1b8")
TELTONIKA_UDP = bytes.fromhex("0086cafe0101000f333532303933303835363938323036" + TELTONIKA_AVL)
WATCH_SOS = (
    b"[3G*8809008845*00C0*AL,271219,094744,V,00.000000,N, 0.0000000,E,0.00,0.0,0.0,0,100,81,0,0,"
    b"00010000,7,0,460,0,9336,3981,141,9336,3912,141,9336,3982,140,9765,4233,134,9765,4071,134,9765,"
    b"4321,134,9336,4353,132,0,0.0]"
)
TK103_POWER_CUT = b"(013632651491,ZC13,040613,A,2234.0297N,11405.9101E,000.0,040137,178.48)"
OSMAND_SOS = (
    b"GET /?id=123456&lat=60.0&lon=30.0&timestamp=1609459200&alarm=sos HTTP/1.1\r\n"
    b"Host: relay\r\n\r\n"
)

CASES = [
    ("pt502", TCP, PT502_IN1, alarms.SOS),
    ("pt502", UDP, PT502_IN1, alarms.SOS),
    ("gps103", TCP, GPS103_HELP_ME, alarms.SOS),
    ("gps103", UDP, GPS103_HELP_ME, alarms.SOS),
    ("gt06", TCP, GT06_SOS, alarms.SOS),
    ("h02", TCP, H02_SOS, alarms.SOS),
    ("h02", UDP, H02_SOS, alarms.SOS),
    ("teltonika", TCP, TELTONIKA_TCP, alarms.SOS),
    ("teltonika", UDP, TELTONIKA_UDP, alarms.SOS),
    ("watch", TCP, WATCH_SOS, alarms.SOS),
    ("tk103", TCP, TK103_POWER_CUT, alarms.POWER_CUT),
    ("tk103", UDP, TK103_POWER_CUT, alarms.POWER_CUT),
    ("osmand", TCP, OSMAND_SOS, alarms.SOS),
]


def test_every_driver_and_each_of_its_network_transports_has_a_case() -> None:
    covered = {(protocol, transport) for protocol, transport, _, _ in CASES}
    wanted = {
        (name, transport)
        for name, driver in drivers.drivers().items()
        for transport in (TCP, UDP)
        if transport in driver.session.transports
    }
    assert covered == wanted


@pytest.mark.parametrize(
    ("protocol", "transport", "frame", "alarm"),
    CASES,
    ids=[f"{protocol}-{transport.value}" for protocol, transport, _, _ in CASES],
)
def test_alarm_as_first_frame_is_recognised_and_stored_as_its_alarm(
    protocol: str, transport: Transport, frame: bytes, alarm: str
) -> None:
    # A stream is sniffed as its bytes arrive; a datagram is sniffed whole.
    found = drivers.detect(frame, transport, final=transport is UDP)
    assert isinstance(found, Driver), f"nothing recognises {frame[:16]!r}"
    assert found.name == protocol
    if transport is TCP:
        for end in range(1, len(frame)):
            early = drivers.detect(frame[:end], transport)
            assert not isinstance(early, Driver) or early.name == protocol, f"{early} after {end} bytes"
    out = decode_stream(
        [frame],
        now=vectors.NOW,
        protocol="auto",
        transport=transport,
        messages=True,
    ).summary()
    assert out["error"] is None
    assert out["protocol"] == protocol
    [report] = out["reports"]
    assert alarm in report["alarms"]
    assert report["event"] == "alarm"
