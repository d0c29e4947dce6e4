"""teltonika against the shared vectors, plus framing, CRC policy, UDP, IO mapping, commands and fuzz."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from drivers import Command, CommandType, DriverError, Match, Transport
from drivers._crc import crc16_ibm
from drivers.teltonika import TeltonikaSession, codec12, sniff
from tests import vectors
from tests.drivers.streams import feed_reports

NOW = vectors.NOW
DEVICE_TO_SERVER = vectors.load("teltonika")
DECODED = [vector for vector in DEVICE_TO_SERVER if vector.row.get("kind") != "framing"]
TCP = [vector for vector in DECODED if vector.transport is Transport.TCP]
COMMANDS = vectors.load("teltonika", direction="server_to_device")

IMEI = "123456789012345"
HANDSHAKE = b"\x00\x0f" + IMEI.encode()
IMEI_PREFIX_UDP = b"\x00\x0f"


def avl(codec: int, records: list[bytes]) -> bytes:
    """A TCP AVL packet with a correct CRC."""
    data = bytes([codec, len(records)]) + b"".join(records) + bytes([len(records)])
    return b"\x00" * 4 + len(data).to_bytes(4, "big") + data + crc16_ibm(data).to_bytes(4, "big")


def record8(*, priority: int = 0, io1: dict[int, int] | None = None, io2: dict[int, int] | None = None,
            io8: dict[int, bytes] | None = None, event: int = 0, sats: int = 9) -> bytes:  # fmt: skip
    """One codec 8 record at 2020-01-02T03:04:05.678Z, 54.1234567 N, 25.7654321 E, 55 km/h, course 90."""
    io1, io2, io8 = io1 or {}, io2 or {}, io8 or {}
    body = (
        (1577934245678).to_bytes(8, "big")
        + bytes([priority])
        + (257654321).to_bytes(4, "big")
        + (541234567).to_bytes(4, "big")
        + (120).to_bytes(2, "big")
        + (90).to_bytes(2, "big")
        + bytes([sats])
        + (55).to_bytes(2, "big")
        + bytes([event, len(io1) + len(io2) + len(io8)])
    )
    body += bytes([len(io1)]) + b"".join(bytes([k, v]) for k, v in io1.items())
    body += bytes([len(io2)]) + b"".join(bytes([k]) + v.to_bytes(2, "big") for k, v in io2.items())
    body += b"\x00"
    body += bytes([len(io8)]) + b"".join(bytes([k]) + v for k, v in io8.items())
    return body


# -- the shared vectors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector", [vector for vector in DEVICE_TO_SERVER if vector.row.get("kind") == "framing"]
)
def test_framer_cuts_the_same_first_frame_as_the_reference(vector: vectors.Vector) -> None:
    session = TeltonikaSession()
    session.receive_data(vector.frames()[0])
    assert next(session.frames()).hex() == vector.row["expect"]["first_frame"]


@pytest.mark.parametrize("vector", TCP, ids=lambda vector: vector.id)
def test_whole_byte_by_byte_and_random_splits_decode_alike(vector: vectors.Vector) -> None:
    data = b"".join(vector.frames())
    whole = feed_reports(TeltonikaSession(Transport.TCP), [data])
    assert feed_reports(TeltonikaSession(Transport.TCP), [data[i : i + 1] for i in range(len(data))]) == whole
    for seed in range(3):
        rng = random.Random(seed)
        cuts = sorted(rng.sample(range(1, len(data)), k=min(len(data) - 1, 5)))
        assert (
            feed_reports(
                TeltonikaSession(Transport.TCP),
                [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)],
            )
            == whole
        )


@pytest.mark.parametrize("vector", TCP, ids=lambda vector: vector.id)
def test_trailing_bytes_of_the_next_frame_stay_in_the_buffer(vector: vectors.Vector) -> None:
    session = TeltonikaSession()
    frame = vector.frames()[0]
    declared = int.from_bytes(frame[4:8], "big") + 12 if frame[:2] == b"\x00\x00" else len(frame)
    if declared != len(frame):
        pytest.skip("length field disagrees with the frame")
    session.receive_data(frame + HANDSHAKE[:5])
    assert len(list(session.frames())) == 1
    assert session.abandon() == HANDSHAKE[:5]


# -- sniffing ----------------------------------------------------------------------------------


def test_tcp_sniffer_wants_the_whole_imei_handshake() -> None:
    assert sniff(HANDSHAKE, Transport.TCP) is Match.YES
    assert sniff(HANDSHAKE[:9], Transport.TCP) is Match.MORE
    assert sniff(b"\xff" + HANDSHAKE, Transport.TCP) is Match.YES
    assert sniff(b"\x00\x0f12345678901234X", Transport.TCP) is Match.NO
    assert sniff(b"\x00\x0e" + IMEI.encode(), Transport.TCP) is Match.NO


def test_tcp_sniffer_accepts_an_avl_header_only_with_a_known_codec() -> None:
    packet = avl(0x08, [record8()])
    assert sniff(packet, Transport.TCP) is Match.YES
    assert sniff(packet[:6], Transport.TCP) is Match.MORE
    assert sniff(packet[:8] + b"\x42\x01", Transport.TCP) is Match.NO


def test_udp_sniffer_wants_the_imei_at_offset_six_and_a_codec() -> None:
    datagram = vectors.load("teltonika")[-1].frames()[0]
    assert sniff(datagram, Transport.UDP) is Match.YES
    assert sniff(datagram[:23] + b"\x42" + datagram[24:], Transport.UDP) is Match.NO
    assert sniff(datagram[:10], Transport.UDP) is Match.MORE


@pytest.mark.parametrize("protocol", ["gps103", "pt502", "h02", "gt06", "watch", "tk103", "osmand"])
def test_sniffer_never_claims_another_protocols_frames(protocol: str) -> None:
    for vector in vectors.load(protocol):
        head = vector.frames()[0][:64]
        assert sniff(head, Transport.TCP) is Match.NO, vector.id
        assert sniff(head, Transport.UDP) is Match.NO, vector.id


# -- TCP session -------------------------------------------------------------------------------


def test_handshake_is_accepted_and_names_the_session() -> None:
    session = TeltonikaSession()
    result = session.decode(HANDSHAKE, now=NOW)
    assert result.replies == (b"\x01",) and result.device_id == session.device_id == IMEI
    report = session.decode(avl(0x08, [record8()]), now=NOW).reports[0]
    assert report.device_id == IMEI


def test_avl_packet_is_answered_with_the_record_count_as_four_bytes() -> None:
    result = TeltonikaSession().decode(avl(0x08, [record8(), record8()]), now=NOW)
    assert result.replies == (b"\x00\x00\x00\x02",) and len(result.reports) == 2


def test_record_fields_are_decoded_in_fixed_units() -> None:
    report = TeltonikaSession().decode(avl(0x08, [record8()]), now=NOW).reports[0]
    assert report.time == datetime(2020, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert report.lat == pytest.approx(54.1234567) and report.lon == pytest.approx(25.7654321)
    assert (report.altitude_m, report.course_deg, report.speed_kmh, report.satellites) == (
        120.0,
        90.0,
        55.0,
        9,
    )
    assert report.valid is True


def test_bad_avl_crc_is_an_error_without_a_reply() -> None:
    packet = bytearray(avl(0x08, [record8()]))
    packet[-1] ^= 0xFF
    with pytest.raises(DriverError, match="bad CRC"):
        TeltonikaSession().decode(bytes(packet), now=NOW)


def test_keep_alive_is_cut_alone_and_ignored() -> None:
    session = TeltonikaSession()
    session.receive_data(b"\xff" + HANDSHAKE)
    ping, handshake = list(session.frames())
    assert ping == b"\xff" and session.decode(ping, now=NOW).reports == ()
    assert handshake == HANDSHAKE


def test_io_elements_are_kept_raw_and_the_well_known_ones_named() -> None:
    record = record8(io1={239: 1, 240: 0, 21: 4}, io2={66: 12500, 67: 4012, 72: 0xFF9C, 9: 1234})
    attributes = TeltonikaSession().decode(avl(0x08, [record]), now=NOW).reports[0].attributes
    assert attributes["io239"] == 1 and attributes["ignition"] is True and attributes["movement"] is False
    assert attributes["power_v"] == 12.5 and attributes["battery_v"] == 4.012
    assert attributes["temperature_c"] == -10.0 and attributes["adc1"] == 1.234 and attributes["rssi"] == 4


def test_ibutton_becomes_the_driver_id() -> None:
    record = record8(io8={78: bytes.fromhex("0102030405060708")})
    report = TeltonikaSession().decode(avl(0x08, [record]), now=NOW).reports[0]
    assert report.driver_id == "0807060504030201"


@pytest.mark.parametrize(
    ("io1", "event", "alarm"),
    [
        ({252: 1}, 252, "powerCut"),
        ({247: 1}, 247, "accident"),
        ({249: 1}, 249, "jamming"),
        ({246: 1}, 246, "tow"),
        ({236: 1}, 236, "general"),
        ({253: 2}, 253, "hardBraking"),
        ({175: 1}, 175, "geofenceEnter"),
        ({175: 0}, 175, "geofenceExit"),
    ],
)
def test_alarm_io_elements_raise_alarms(io1: dict[int, int], event: int, alarm: str) -> None:
    report = TeltonikaSession().decode(avl(0x08, [record8(io1=io1, event=event)]), now=NOW).reports[0]
    assert alarm in report.alarms


def test_panic_priority_is_an_sos() -> None:
    report = TeltonikaSession().decode(avl(0x08, [record8(priority=2)]), now=NOW).reports[0]
    assert report.alarms == ("sos",)


def test_codec12_response_is_a_command_result() -> None:
    frame = codec12(b"DOUT1:1 DOUT2:0", message_type=0x06)
    result = TeltonikaSession().decode(frame, now=NOW)
    assert result.replies == ()
    assert result.reports[0].event == "commandResult"
    assert result.reports[0].attributes["result"] == "DOUT1:1 DOUT2:0"


def test_codec12_response_with_bad_crc_is_kept_and_marked() -> None:
    frame = codec12(b"OK", message_type=0x06)[:-1] + b"\x00"
    report = TeltonikaSession().decode(frame, now=NOW).reports[0]
    assert report.attributes["crc_ok"] is False and report.attributes["result"] == "OK"


def test_oversized_avl_length_is_a_framing_error() -> None:
    session = TeltonikaSession()
    session.receive_data(b"\x00\x00\x00\x00\x00\x10\x00\x00")
    with pytest.raises(DriverError):
        list(session.frames())


# -- UDP -----------------------------------------------------------------------------------------


def test_udp_ack_echoes_packet_id_and_avl_packet_id() -> None:
    datagram = next(vector for vector in DECODED if vector.transport is Transport.UDP).frames()[0]
    session = TeltonikaSession(Transport.UDP)
    assert session.datagram_frames(datagram) == [datagram]
    result = session.decode(datagram, now=NOW)
    assert result.replies == (bytes.fromhex("0005cafe012804"),)
    assert result.device_id == "352094089397464" and len(result.reports) == 4


# -- commands ----------------------------------------------------------------------------------


def test_custom_text_command_matches_the_reference_encoding() -> None:
    command = Command(type=CommandType.CUSTOM, device_id=IMEI, params={"data": "setdigout 11"})
    assert TeltonikaSession().encode(command) == COMMANDS[0].frames()[0]


def test_custom_hex_command_matches_the_reference_encoding() -> None:
    params = {"data": "03030000000185e8", "hex": True}
    command = Command(type=CommandType.CUSTOM, device_id=IMEI, params=params)
    assert TeltonikaSession().encode(command) == COMMANDS[1].frames()[0]


@pytest.mark.parametrize(
    ("type_", "text"),
    [
        (CommandType.ENGINE_STOP, b"setdigout 1"),
        (CommandType.ENGINE_RESUME, b"setdigout 0"),
        (CommandType.REBOOT_DEVICE, b"cpureset"),
        (CommandType.POSITION_SINGLE, b"getgps"),
    ],
)
def test_commands_are_codec12_with_crc(type_: CommandType, text: bytes) -> None:
    frame = TeltonikaSession().encode(Command(type=type_, device_id=IMEI))
    assert frame[8:11] == b"\x0c\x01\x05" and frame[15 : 15 + len(text)] == text
    assert crc16_ibm(frame[8:-4]) == int.from_bytes(frame[-4:], "big")


def test_unsupported_command_is_refused() -> None:
    with pytest.raises(DriverError):
        TeltonikaSession().encode(Command(type=CommandType.REQUEST_PHOTO, device_id=IMEI))


def test_a_datagram_without_avl_records_is_named_by_its_codec_in_the_error() -> None:
    data = bytes([0x0C, 1, 0x06]) + (2).to_bytes(4, "big") + b"ok" + b"\x01"
    body = (1).to_bytes(2, "big") + b"\x01\x05" + IMEI_PREFIX_UDP + IMEI.encode() + data
    datagram = len(body).to_bytes(2, "big") + body
    with pytest.raises(DriverError, match=r"codec CODEC_12 \(0x0c\) carries no AVL records"):
        TeltonikaSession(Transport.UDP).decode(datagram, now=NOW)
