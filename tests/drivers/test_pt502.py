"""pt502 beyond the shared vectors: which first lines the one port hands to the PT-600 driver; commands."""

from __future__ import annotations

import re

import pytest

import drivers
from drivers import (
    Command,
    CommandType,
    Driver,
    DriverError,
    FramingError,
    InvalidCommand,
    Match,
    Transport,
    UnsupportedCommand,
)
from drivers.pt502 import Pt502Session, sniff
from tests import vectors

TAIL = (
    b",1360000277,182241.000,A,0846.0896,N,07552.1738,W,13.58,26.88,291017,,,"
    b"A/00000,00000/0,0,0,0/62792900//f65//\r\n"
)


@pytest.mark.parametrize("kind", [b"IN1", b"IN2", b"IU4", b"MLA", b"SKA", b"POS", b"PHO3821-1", b"PHO0"])
@pytest.mark.parametrize("transport", [Transport.TCP, Transport.UDP])
def test_every_line_type_opens_a_pt502_stream_and_decodes(kind: bytes, transport: Transport) -> None:
    line = b"$" + kind + TAIL
    found = drivers.detect(line, transport, final=transport is Transport.UDP)
    assert isinstance(found, Driver) and found.name == "pt502"
    out = drivers.decode_stream(
        [line],
        now=vectors.NOW,
        protocol="auto",
        transport=transport,
        messages=True,
    ).summary()
    [report] = out["reports"]
    assert report["device_id"] == "1360000277"
    assert report["attributes"]["event_code"] == kind.decode()


@pytest.mark.parametrize(
    "head",
    [b"$,1,", b"$1N1,1", b"$in1,1", b"$IN 1,", b"$" + b"A" * 40 + b",", b"$GPRMC\r\n"],
)
def test_lines_without_a_type_field_are_not_pt502(head: bytes) -> None:
    assert sniff(head, Transport.TCP) is Match.NO


def test_a_type_field_in_the_making_asks_for_more() -> None:
    for end in range(len(b"$PHO3821-1")):
        assert sniff(b"$PHO3821-1"[:end], Transport.TCP) is Match.MORE


@pytest.mark.parametrize(
    "chunk", [b"$PHD0,96N0,\xff\xd8\xff", b"$PHDx,12,\xff\xd8", b"$PHD12345678,1,\xff\xd8\xff\xd8\xff"]
)
def test_a_malformed_photo_chunk_header_closes_the_stream_as_an_event_not_an_exception(chunk: bytes) -> None:
    session = Pt502Session()
    session.receive_data(b"$POS" + TAIL + chunk)
    position, error = session.events(now=vectors.NOW)
    assert position.reports[0].device_id == "1360000277"
    assert isinstance(error, FramingError) and isinstance(error, DriverError)
    assert error.wire == chunk and session.closed


def _command(kind: CommandType, **params: object) -> Command:
    return Command(type=kind, device_id="1360000277", params=params)


@pytest.mark.parametrize(
    ("kind", "params", "wire", "sms"),
    [
        (CommandType.OUTPUT_CONTROL, {"index": 1, "data": 1}, b"#OPC1,1\r\n", "000000OPC1,1"),
        (CommandType.OUTPUT_CONTROL, {"data": "0"}, b"#OPC1,0\r\n", "000000OPC1,0"),
        (CommandType.SET_TIMEZONE, {"timezone": -5}, b"#TMZ-5\r\n", "000000TMZ-5"),
        (CommandType.SET_TIMEZONE, {"timezone": "GMT+8"}, b"#TMZ8\r\n", "000000TMZ8"),
        (CommandType.ALARM_SPEED, {"speed": 80}, b"#SPD80\r\n", "000000SPD80"),
        (CommandType.POSITION_PERIODIC, {"frequency": 60}, b"#GTI60\r\n", "000000GTI60"),
        (CommandType.REBOOT_DEVICE, {}, b"#RST\r\n", "000000RST"),
        (CommandType.CUSTOM, {"data": "#PTI300"}, b"#PTI300\r\n", "#PTI300"),
        (CommandType.CUSTOM, {"data": "PTI300"}, b"#PTI300\r\n", "PTI300"),
    ],
)
def test_a_command_has_the_same_code_over_gprs_and_by_sms(
    kind: CommandType, params: dict, wire: bytes, sms: str
) -> None:
    assert Pt502Session().encode(_command(kind, **params)) == wire
    assert drivers.encode_sms("pt502", _command(kind, **params)) == sms


def test_the_sms_form_carries_the_device_password() -> None:
    command = _command(CommandType.POSITION_PERIODIC, frequency=30, devicePassword="123456")
    assert drivers.encode_sms("pt502", command) == "123456GTI30"
    with pytest.raises(InvalidCommand, match="devicePassword '1234' is not 6 digits"):
        drivers.encode_sms("pt502", _command(CommandType.REBOOT_DEVICE, devicePassword="1234"))


def test_a_photo_is_requested_over_gprs_only_and_a_position_by_sms_only() -> None:
    assert Pt502Session().encode(_command(CommandType.REQUEST_PHOTO)) == b"#PHO\r\n"
    assert drivers.encode_sms("pt502", _command(CommandType.POSITION_SINGLE)) == "000000RCP"
    with pytest.raises(UnsupportedCommand, match="'requestPhoto' is not supported over SMS"):
        drivers.encode_sms("pt502", _command(CommandType.REQUEST_PHOTO))
    with pytest.raises(UnsupportedCommand, match="'positionSingle' is not supported over data"):
        drivers.check_command("pt502", _command(CommandType.POSITION_SINGLE))


@pytest.mark.parametrize(
    ("kind", "params", "reason"),
    [
        (CommandType.SET_TIMEZONE, {"timezone": 5.5}, "timezone 5.5 h has minutes; pt502 takes whole hours"),
        (CommandType.OUTPUT_CONTROL, {"index": 0, "data": 1}, "index 0: Bofan outputs count from 1"),
        (CommandType.OUTPUT_CONTROL, {"index": 1, "data": 2}, "data must be 1 (on) or 0 (off), not 2"),
        (CommandType.POSITION_PERIODIC, {}, "missing parameter 'frequency'"),
        (CommandType.POSITION_PERIODIC, {"frequency": 0}, "frequency 0 is outside 1..86400"),
        (CommandType.ALARM_SPEED, {"speed": 500}, "speed 500 is outside 1..400"),
        (CommandType.CUSTOM, {"data": "PTI300\r\n#RST"}, "custom: data has character U+000D at 6"),
    ],
)
def test_bad_parameters_are_refused_with_the_reason(kind: CommandType, params: dict, reason: str) -> None:
    with pytest.raises(InvalidCommand, match=re.escape(reason)):
        drivers.check_command("pt502", _command(kind, **params))


def test_the_answer_to_a_photo_request_is_a_command_result_then_the_photo_flow_runs() -> None:
    session = Pt502Session()
    assert session.expects_answer(_command(CommandType.REQUEST_PHOTO))
    assert not session.expects_answer(_command(CommandType.POSITION_PERIODIC, frequency=60))
    session.encode(_command(CommandType.REQUEST_PHOTO))
    decoded = session.decode(b"$PHO6000" + TAIL.rstrip(), now=vectors.NOW)
    position, answer = decoded.reports
    assert position.event == "position" and position.lat is not None
    assert (answer.event, answer.device_id) == ("commandResult", "1360000277")
    assert answer.attributes == {"result": "PHO6000", "photo_size": 6000}
    assert decoded.replies == (b"#PHD0,960\r\n",)
    # A photo the device takes on its own (an alarm) answers no command.
    again = session.decode(b"$PHO6000" + TAIL.rstrip(), now=vectors.NOW)
    assert [report.event for report in again.reports] == ["position"]
