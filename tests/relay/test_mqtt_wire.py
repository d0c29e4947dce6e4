"""The MQTT sink's own packets (relay/sinks/_mqtt_wire.py): the bytes MQTT 3.1.1 specifies, and a
reader that cuts the broker's stream wherever TCP splits it and refuses what is not MQTT."""

from __future__ import annotations

import pytest

from relay.sinks import _mqtt_wire as wire


def test_connect_carries_a_clean_session_the_will_and_the_credentials() -> None:
    will = ("t/status", b"offline")
    packet = wire.connect("relay-1", keepalive_s=30, username="u", password="p", will=will)
    body = (
        b"\x00\x04MQTT\x04"
        + bytes([0x80 | 0x40 | 0x20 | 0x08 | 0x04 | 0x02])
        + b"\x00\x1e"
        + b"\x00\x07relay-1"
        + b"\x00\x08t/status"
        + b"\x00\x07offline"
        + b"\x00\x01u\x00\x01p"
    )
    assert packet == b"\x10" + bytes([len(body)]) + body
    assert wire.connect("c", keepalive_s=5)[9] == 0x02  # no will, no user: only the clean session


def test_publish_puback_subscribe_bytes() -> None:
    assert wire.publish(b"a/b", b"xy", 10) == b"\x32\x09\x00\x03a/b\x00\x0axy"
    assert wire.publish(b"s", b"online", 1, retain=True)[0] == 0x33
    assert wire.puback(258) == b"\x40\x02\x01\x02"
    assert wire.subscribe(7, "p/+/command") == b"\x82\x10\x00\x07\x00\x0bp/+/command\x01"
    large = wire.publish(b"t", b"x" * 200_000, 1)
    # 200,005 (id, topic, payload) in three length bytes: 69 + 26 * 128 + 12 * 128**2
    assert large[1:4] == bytes([0x80 | 69, 0x80 | 26, 12]) and len(large) == 4 + 200_005


def test_the_reader_cuts_packets_wherever_the_stream_is_split() -> None:
    stream = (
        b"\x20\x02\x00\x00"  # CONNACK accepted
        + b"\x40\x02\x00\x01"  # PUBACK 1
        + b"\x90\x03\x00\x02\x01"  # SUBACK 2, QoS 1 granted
        + b"\x32\x0f\x00\x09p/1/comma\x00\x05{}"  # PUBLISH QoS 1, id 5
        + b"\xd0\x00"  # PINGRESP
    )
    expected = [
        wire.ConnAck(False, 0),
        wire.PubAck(1),
        wire.SubAck(2, b"\x01"),
        wire.Message("p/1/comma", b"{}", 1, 5, False),
        wire.PingResp(),
    ]
    for cut in range(len(stream) + 1):
        reader = wire.PacketReader()
        assert reader.feed(stream[:cut]) + reader.feed(stream[cut:]) == expected
    reader = wire.PacketReader()
    assert [p for byte in stream for p in reader.feed(bytes([byte]))] == expected
    again = wire.PacketReader().feed(b"\x3a\x07\x00\x01t\x00\x05{}")  # DUP, QoS 1, id 5
    assert again == [wire.Message("t", b"{}", 1, 5, False, dup=True)]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x30\xff\xff\xff\xff\x01", "longer than 4 bytes"),
        (b"\x30\x80\x80\x80\x01", "at most"),  # 2 MiB: more than a broker sends a client
        (b"\x10\x00", "unexpected packet"),  # a CONNECT from the broker
        (b"\x36\x03\x00\x01a", "malformed PUBLISH"),  # QoS 3
        (b"\x32\x04\x00\x09ab", "shorter than its topic"),
        (b"\x30\x04\x00\x02\xff\xfe", "not UTF-8"),
    ],
)
def test_the_reader_refuses_what_is_not_mqtt(data: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError, match=reason):
        wire.PacketReader().feed(data)
