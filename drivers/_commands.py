"""The parameters of each command type, declared once, and the one check that normalises them.

Names are Traccar's command keys where Traccar has one (``frequency``, ``data``, ``index``,
``timezone``, ``phone``, ``message``, ``devicePassword``). :func:`normalise` is what every driver's
``encode`` and ``encode_sms`` run first; what a protocol adds (its own ranges and lengths) it checks in
its encoder, raising :class:`InvalidCommand` too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ._model import Command, CommandType, InvalidCommand

#: The longest text a parameter may hold before any protocol's own limit (a command goes into one
#: frame or one SMS; none takes more).
MAX_TEXT = 1024
#: The longest voice message, in bytes of audio (a watch takes a few seconds of AMR).
MAX_VOICE_BYTES = 64 * 1024
#: The longest period a tracker is asked to report at: a day.
MAX_FREQUENCY_S = 86_400
MAX_SPEED_KMH = 400
_PHONE = re.compile(r"\+?\d{3,20}")
_PASSWORD = re.compile(r"[0-9A-Za-z]{1,16}")
_ZONE = re.compile(r"(?:GMT|UTC)?\s*(?P<sign>[+-])(?P<hours>\d{1,2})(?::?(?P<minutes>\d\d))?")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise InvalidCommand("", f"{what} must be a number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise InvalidCommand("", f"{what} must be a whole number, not {value!r}")


def _in_range(low: int, high: int) -> Callable[[Any, str], int]:
    def check(value: Any, what: str) -> int:
        number = _integer(value, what)
        if not low <= number <= high:
            raise InvalidCommand("", f"{what} {number} is outside {low}..{high}")
        return number

    return check


def _switch(value: Any, what: str) -> int:
    """``1``/``0``, ``"1"``/``"0"`` or true/false: on or off."""
    if isinstance(value, bool):
        return int(value)
    if value in (0, 1, "0", "1"):
        return int(value)
    raise InvalidCommand("", f"{what} must be 1 (on) or 0 (off), not {value!r}")


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidCommand("", f"{what} must be true or false, not {value!r}")


def ascii_text(value: Any, what: str) -> str:
    """Printable ASCII (a device reads bytes, not Unicode), 1 to :data:`MAX_TEXT` characters."""
    text = _text(value, what)
    for index, char in enumerate(text):
        if not " " <= char <= "~":
            raise InvalidCommand(
                "", f"{what} has character U+{ord(char):04X} at {index}: only printable ASCII is sent"
            )
    return text


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidCommand("", f"{what} must be text, not {type(value).__name__}")
    if not value:
        raise InvalidCommand("", f"{what} is empty")
    if len(value) > MAX_TEXT:
        raise InvalidCommand("", f"{what} of {len(value)} characters exceeds {MAX_TEXT}")
    return value


def _message(value: Any, what: str) -> str:
    text = _text(value, what)
    if any(ord(char) < 32 and char not in "\n" for char in text):
        raise InvalidCommand("", f"{what} has a control character")
    return text


def _phone(value: Any, what: str) -> str:
    text = value if isinstance(value, str) else str(value) if isinstance(value, int) else None
    if text is None or not _PHONE.fullmatch(text.replace(" ", "")):
        raise InvalidCommand("", f"{what} {value!r} is not a phone number (digits, an optional leading +)")
    return text.replace(" ", "")


def _password(value: Any, what: str) -> str:
    text = value if isinstance(value, str) else str(value) if isinstance(value, int) else None
    if text is None or not _PASSWORD.fullmatch(text):
        raise InvalidCommand("", f"{what} {value!r} is not 1 to 16 letters or digits")
    return text


def _timezone(value: Any, what: str) -> float:
    """Hours east of UTC, in quarter hours: a number (``5.5``) or ``GMT+5:30``/``UTC-3``/``+0530``."""
    if isinstance(value, bool):
        raise InvalidCommand("", f"{what} must be a UTC offset, not {value!r}")
    if isinstance(value, int | float):
        hours = float(value)
    elif isinstance(value, str) and (match := _ZONE.fullmatch(value.strip())):
        hours = int(match["hours"]) + int(match["minutes"] or 0) / 60
        hours = -hours if match["sign"] == "-" else hours
    elif isinstance(value, str) and value.strip() in ("GMT", "UTC", "Z"):
        hours = 0.0
    else:
        raise InvalidCommand(
            "",
            f"{what} {value!r} is not a UTC offset (hours such as 5.5, or GMT+5:30); a named zone changes"
            " its offset with the seasons, which a tracker does not follow",
        )
    if not -12 <= hours <= 14 or (hours * 4) % 1:
        raise InvalidCommand("", f"{what} {value!r} is not a quarter hour within -12..+14")
    return hours


def _language(value: Any, what: str) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not re.fullmatch(r"[0-9A-Za-z]{1,8}", text):
        raise InvalidCommand("", f"{what} {value!r} is not a language code (1 to 8 letters or digits)")
    return text


def _voice(value: Any, what: str) -> str:
    """Audio as lower-case hex (bytes are accepted and converted)."""
    if isinstance(value, bytes | bytearray):
        value = bytes(value).hex()
    if not isinstance(value, str) or not _HEX.fullmatch(value) or not value:
        raise InvalidCommand("", f"{what} must be the audio as hex digits, in pairs")
    if len(value) // 2 > MAX_VOICE_BYTES:
        raise InvalidCommand("", f"{what} of {len(value) // 2} bytes exceeds {MAX_VOICE_BYTES}")
    return value.lower()


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a command type: its key, what it means (with its unit), how it is checked."""

    name: str
    doc: str
    check: Callable[[Any, str], Any]
    required: bool = True
    default: Any = None


#: Every command type's parameters, in one place (the README's command table documents them).
PARAMETERS: Mapping[CommandType, tuple[Param, ...]] = {
    CommandType.CUSTOM: (
        Param("data", "the protocol's own command, sent as it is (printable ASCII)", _text),
        Param("hex", "`data` is hex digits, sent as those bytes (binary protocols)", _flag, False, False),
    ),
    CommandType.REBOOT_DEVICE: (),
    CommandType.POSITION_SINGLE: (),
    CommandType.POSITION_PERIODIC: (
        Param("frequency", f"seconds between positions, 1..{MAX_FREQUENCY_S}", _in_range(1, MAX_FREQUENCY_S)),
    ),
    CommandType.POSITION_STOP: (),
    CommandType.ENGINE_STOP: (),
    CommandType.ENGINE_RESUME: (),
    CommandType.REQUEST_PHOTO: (),
    CommandType.OUTPUT_CONTROL: (
        Param("index", "the output's number, 0..9 (default 1)", _in_range(0, 9), False, 1),
        Param("data", "1 switches the output on, 0 off", _switch),
    ),
    CommandType.SET_TIMEZONE: (
        Param("timezone", "the UTC offset in hours (in quarter hours, -12..14), or GMT+5:30", _timezone),
        Param("language", "the watch's language code (watch only)", _language, False),
    ),
    CommandType.ALARM_SPEED: (
        Param("speed", f"the speed limit in km/h, 1..{MAX_SPEED_KMH}", _in_range(1, MAX_SPEED_KMH)),
    ),
    CommandType.ALARM_ARM: (),
    CommandType.ALARM_DISARM: (),
    CommandType.SOS_NUMBER: (
        Param("index", "which SOS number, 1..3", _in_range(1, 3), False, 1),
        Param("phone", "the phone number (digits, an optional leading +)", _phone),
    ),
    CommandType.MESSAGE: (Param("message", "the text shown on the device", _message),),
    CommandType.VOICE_MESSAGE: (Param("data", "the audio (AMR) as hex digits", _voice),),
}
#: Parameters any command may carry.
COMMON_PARAMETERS: tuple[Param, ...] = (
    Param("devicePassword", "the device's SMS password (default: its factory one)", _password, False),
)


def normalise(protocol: str, command: Command) -> Command:
    """``command`` with its parameters checked against :data:`PARAMETERS`, converted to their types
    and with defaults filled in; an optional parameter without a default is left out.

    :raises InvalidCommand: a parameter is missing, unknown, of the wrong type or out of range.
    """
    declared = PARAMETERS[command.type] + COMMON_PARAMETERS
    names = {param.name for param in declared}
    unknown = sorted(set(command.params) - names)
    if unknown:
        known = ", ".join(param.name for param in declared)
        raise InvalidCommand(
            protocol, f"{command.type.value}: unknown parameter {unknown[0]!r} (known: {known or 'none'})"
        )
    params: dict[str, Any] = {}
    for param in declared:
        value = command.params.get(param.name)
        if value is None:
            if param.required:
                raise InvalidCommand(
                    protocol, f"{command.type.value}: missing parameter {param.name!r} ({param.doc})"
                )
            if param.default is not None:
                params[param.name] = param.default
            continue
        try:
            params[param.name] = param.check(value, param.name)
        except InvalidCommand as error:
            raise InvalidCommand(protocol, f"{command.type.value}: {error.reason}") from None
    if command.type is CommandType.CUSTOM:
        if params["hex"] and not _HEX.fullmatch(params["data"]):
            raise InvalidCommand(protocol, "custom: data is not hex digits in pairs, as hex=true says")
        if not params["hex"]:
            try:
                ascii_text(params["data"], "data")
            except InvalidCommand as error:
                raise InvalidCommand(protocol, f"custom: {error.reason}") from None
    return replace(command, params=params)


def check_length(protocol: str, command: Command, what: str, text: str | bytes, limit: int) -> None:
    """:raises InvalidCommand: ``text`` is longer than the protocol takes."""
    if len(text) > limit:
        raise InvalidCommand(
            protocol, f"{command.type.value}: {what} of {len(text)} characters exceeds {protocol}'s {limit}"
        )


def device_password(protocol: str, command: Command, default: str, pattern: str, what: str) -> str:
    """The SMS password of ``command`` (``devicePassword``), else the family's factory ``default``.

    :raises InvalidCommand: the password does not match ``pattern`` (``what`` says what it must be).
    """
    password = str(command.params.get("devicePassword", default))
    if not re.fullmatch(pattern, password):
        raise InvalidCommand(protocol, f"{command.type.value}: devicePassword {password!r} is not {what}")
    return password


def whole_hours(protocol: str, command: Command) -> int:
    """The ``timezone`` of ``command`` in whole hours.

    :raises InvalidCommand: the offset has minutes, which the protocol cannot carry.
    """
    hours = command.params["timezone"]
    if hours % 1:
        raise InvalidCommand(
            protocol, f"{command.type.value}: timezone {hours:g} h has minutes; {protocol} takes whole hours"
        )
    return int(hours)
