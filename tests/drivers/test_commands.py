"""The command contract every driver keeps: Traccar's names, one parameter table, refusals with reasons."""

from __future__ import annotations

import re

import pytest

import drivers
from drivers import (
    COMMON_PARAMETERS,
    PARAMETERS,
    Command,
    CommandType,
    InvalidCommand,
    UnsupportedCommand,
    Via,
)

PROTOCOLS = sorted(drivers.drivers())
IMEI = "123456789012345"
#: Parameters that make a valid command of each type (the smallest set).
VALID: dict[CommandType, dict[str, object]] = {
    CommandType.CUSTOM: {"data": "STATUS#"},
    CommandType.POSITION_PERIODIC: {"frequency": 60},
    CommandType.OUTPUT_CONTROL: {"index": 1, "data": 1},
    CommandType.SET_TIMEZONE: {"timezone": 2},
    CommandType.ALARM_SPEED: {"speed": 90},
    CommandType.SOS_NUMBER: {"phone": "+15551234567"},
    CommandType.MESSAGE: {"message": "hello"},
    CommandType.VOICE_MESSAGE: {"data": "2321414d520a"},
}


def test_the_values_are_traccars_command_names() -> None:
    assert {kind.value for kind in CommandType} >= {
        "custom", "rebootDevice", "positionSingle", "positionPeriodic", "positionStop", "engineStop",
        "engineResume", "requestPhoto", "outputControl", "setTimezone", "alarmSpeed", "alarmArm",
        "alarmDisarm", "sosNumber", "message", "voiceMessage",
    }  # fmt: skip
    assert set(PARAMETERS) == set(CommandType)
    assert all(param.doc for params in (*PARAMETERS.values(), COMMON_PARAMETERS) for param in params)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("via", list(Via))
def test_every_supported_command_is_checked_and_encoded(protocol: str, via: Via) -> None:
    for kind in drivers.supported_commands(protocol, via):
        command = Command(type=kind, device_id=IMEI, params=VALID.get(kind, {}))
        checked = drivers.check_command(protocol, command, via=via)
        assert checked.type is kind
        if via is Via.SMS:
            assert drivers.encode_sms(protocol, command)
        else:
            driver = drivers.get(protocol)
            assert driver.new_session(min(driver.session.transports)).encode(command)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_type_the_protocol_cannot_carry_is_refused_with_what_it_can(protocol: str) -> None:
    session = drivers.get(protocol).session
    assert session.answered_commands <= session.supported_commands
    for via in Via:
        for kind in set(CommandType) - drivers.supported_commands(protocol, via):
            command = Command(type=kind, device_id=IMEI, params=VALID.get(kind, {}))
            with pytest.raises(UnsupportedCommand, match=f"'{kind.value}' is not supported over"):
                drivers.check_command(protocol, command, via=via)


def test_osmand_takes_no_command_and_an_unknown_protocol_is_named() -> None:
    assert drivers.supported_commands("osmand") == frozenset()
    assert drivers.supported_commands("osmand", Via.SMS) == frozenset()
    assert drivers.supported_commands("nope") == frozenset()
    with pytest.raises(UnsupportedCommand, match="unknown protocol 'nope'; known: gps103"):
        drivers.check_command("nope", Command(type=CommandType.REBOOT_DEVICE, device_id=IMEI, params={}))


@pytest.mark.parametrize(
    ("kind", "params", "reason"),
    [
        (CommandType.POSITION_PERIODIC, {"frequency": True}, "frequency must be a number, not True"),
        (CommandType.POSITION_PERIODIC, {"frequency": 1.5}, "frequency must be a whole number, not 1.5"),
        (CommandType.POSITION_PERIODIC, {"frequency": 86401}, "frequency 86401 is outside 1..86400"),
        (CommandType.CUSTOM, {"data": ""}, "data is empty"),
        (CommandType.CUSTOM, {"data": "x" * 1025}, "data of 1025 characters exceeds 1024"),
        (CommandType.CUSTOM, {"data": "0g", "hex": True}, "data is not hex digits in pairs"),
        (CommandType.CUSTOM, {"data": 5}, "data must be text, not int"),
        (CommandType.SOS_NUMBER, {"phone": "call me"}, "phone 'call me' is not a phone number"),
        (CommandType.SET_TIMEZONE, {"timezone": 15}, "timezone 15 is not a quarter hour within -12..+14"),
        (CommandType.REBOOT_DEVICE, {"devicePassword": "12 34"}, "'12 34' is not 1 to 16 letters or digits"),
    ],
)
def test_bad_parameters_are_refused_before_any_protocol_sees_them(
    kind: CommandType, params: dict, reason: str
) -> None:
    protocol = next(p for p in PROTOCOLS if kind in drivers.supported_commands(p))
    with pytest.raises(InvalidCommand, match=re.escape(reason)):
        drivers.check_command(protocol, Command(type=kind, device_id=IMEI, params=params))


def test_a_bad_device_id_is_an_invalid_command() -> None:
    command = Command(type=CommandType.ENGINE_STOP, device_id=" ", params={})
    with pytest.raises(InvalidCommand, match="gt06: engineStop: device id is empty"):
        drivers.check_command("gt06", command)
    padded = Command(type=CommandType.ENGINE_STOP, device_id=f" {IMEI}\n", params={})
    assert drivers.check_command("gt06", padded).device_id == IMEI
