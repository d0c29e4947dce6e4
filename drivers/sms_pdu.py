"""SMS PDUs (3GPP TS 23.040 / 23.038): decode what a modem stores, encode what it sends.

Pure functions over bytes, no I/O, no clock:

* :func:`decode_pdu` turns a PDU as a modem prints it in PDU mode (with the service-centre prefix, or
  without it) into a :class:`Deliver` (a received message), a :class:`StatusReport` (a delivery
  report) or a :class:`Submit` (an outgoing message found in storage). Anything else, or any PDU that
  does not hold together, raises :class:`PduError`.
* :func:`encode_submit` / :func:`split_submit` build SMS-SUBMIT PDUs for ``AT+CMGS``;
  :func:`encode_deliver` builds SMS-DELIVER PDUs (for emulators and round-trip tests).
* :class:`Reassembler` joins the parts of concatenated messages and gives up on parts that never
  complete, with bounded memory.

Alphabets: the GSM 7-bit default alphabet with its extension table (``€ [ ] { } ~ | ^ \\`` and form
feed), UCS2 (read as UTF-16, so surrogate pairs survive) and 8-bit data.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ._model import DriverError
from ._text import printable

PROTOCOL = "sms"

# --- GSM 7-bit default alphabet (23.038 §6.2.1) -------------------------------------------------------

#: The default alphabet; index = septet value. 0x1B is the escape to the extension table.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_ESCAPE = 0x1B
#: The extension table (23.038 §6.2.1.1), reached through ``ESC``.
GSM7_EXTENSION = {
    0x0A: "\x0c",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
_GSM7_ENCODE = {char: (index,) for index, char in enumerate(GSM7_BASIC) if index != GSM7_ESCAPE}
_GSM7_ENCODE.update({char: (GSM7_ESCAPE, code) for code, char in GSM7_EXTENSION.items()})

# --- Field values ---------------------------------------------------------------------------------------

MTI_MASK = 0x03
UDHI = 0x40  # first octet: a user data header precedes the text
SRR = 0x20  # SUBMIT: status report requested
MMS = 0x04  # DELIVER: 0 = more messages waiting at the service centre
VPF_SHIFT = 3
VPF_NONE, VPF_ENHANCED, VPF_RELATIVE, VPF_ABSOLUTE = 0, 1, 2, 3

TOA_INTERNATIONAL = 0x91
TOA_UNKNOWN = 0x81
TOA_ALPHANUMERIC = 0xD0
TON_ALPHANUMERIC = 5
#: Semi-octet values above 9 in a BCD address (23.040 §9.1.2.3).
_BCD_EXTRA = "*#abc"
_BCD_DIGITS = "0123456789" + _BCD_EXTRA

IEI_CONCAT_8 = 0x00
IEI_CONCAT_16 = 0x08
IEI_PORTS_8 = 0x04
IEI_PORTS_16 = 0x05

SCTS_OCTETS = 7
MAX_ADDRESS_DIGITS = 20
MAX_ALPHANUMERIC_SENDER = 11
#: User data capacity of one message (140 octets = 160 septets).
MAX_UD_OCTETS = 140
MAX_UD_SEPTETS = 160
_QUARTER_HOUR_MINUTES = 15


class MessageType(enum.IntEnum):
    """TP-MTI as stored by a modem (direction service centre -> phone, plus stored outgoing messages)."""

    DELIVER = 0
    SUBMIT = 1
    STATUS_REPORT = 2


class Charset(enum.StrEnum):
    GSM7 = "gsm7"
    UCS2 = "ucs2"
    EIGHT_BIT = "8bit"


class TypeOfNumber(enum.IntEnum):
    """Bits 6-4 of an address's type-of-address octet."""

    UNKNOWN = 0
    INTERNATIONAL = 1
    NATIONAL = 2
    NETWORK_SPECIFIC = 3
    SUBSCRIBER = 4
    ALPHANUMERIC = 5
    ABBREVIATED = 6
    RESERVED = 7


class PduError(DriverError):
    """The PDU cannot be decoded (or the message cannot be encoded); the message says what and where."""

    def __init__(self, message: str, *, data: bytes = b"", offset: int | None = None) -> None:
        super().__init__(PROTOCOL, message, data=data, offset=offset)


# --- Decoded objects ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UdhElement:
    """One information element of a user data header."""

    iei: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Concat:
    """The concatenation element: part ``seq`` (1-based) of ``total``, joined by ``ref`` (8- or 16-bit)."""

    ref: int
    total: int
    seq: int
    bits: int = 8

    def __post_init__(self) -> None:
        limit = 0xFF if self.bits == 8 else 0xFFFF
        if self.bits not in (8, 16) or not 0 <= self.ref <= limit:
            raise ValueError(f"concat reference {self.ref} does not fit {self.bits} bits")
        if not 1 <= self.seq <= self.total <= 0xFF:
            raise ValueError(f"concat part {self.seq} of {self.total} is not valid")

    def to_json(self) -> dict[str, int]:
        return {"ref": self.ref, "total": self.total, "seq": self.seq}


@dataclass(frozen=True, slots=True)
class Address:
    """A phone number (``+`` prefixed when international) or an alphanumeric sender name."""

    number: str
    toa: int

    @property
    def ton(self) -> TypeOfNumber:
        return TypeOfNumber((self.toa >> 4) & 0x07)


@dataclass(frozen=True, slots=True, kw_only=True)
class UserData:
    """The decoded TP-UD: header elements, text (``None`` for binary 8-bit data) and raw payload."""

    charset: Charset
    udh: tuple[UdhElement, ...] = ()
    text: str | None = None
    payload: bytes = b""
    #: TP-UDL promised more than the PDU holds; what was there is decoded.
    truncated: bool = False

    @property
    def concat(self) -> Concat | None:
        return _concat_of(self.udh)

    @property
    def payload_hex(self) -> str | None:
        """The payload octets as hex for 8-bit data (binary or not) and for a text that cannot be read
        (compressed); ``None`` for a 7-bit or UCS2 text, which :attr:`text` holds."""
        if self.charset is Charset.EIGHT_BIT or self.text is None:
            return self.payload.hex()
        return None

    @property
    def ports(self) -> tuple[int, int] | None:
        """``(destination, source)`` application ports, if the header has them."""
        for element in self.udh:
            if element.iei == IEI_PORTS_16 and len(element.data) == 4:
                return int.from_bytes(element.data[:2], "big"), int.from_bytes(element.data[2:], "big")
            if element.iei == IEI_PORTS_8 and len(element.data) == 2:
                return element.data[0], element.data[1]
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Deliver:
    """A received message (SMS-DELIVER)."""

    smsc: str | None
    first_octet: int
    sender: Address
    pid: int
    dcs: int
    timestamp: datetime
    user_data: UserData

    @property
    def text(self) -> str | None:
        return self.user_data.text

    @property
    def charset(self) -> Charset:
        return self.user_data.charset

    @property
    def payload_hex(self) -> str | None:
        """See :attr:`UserData.payload_hex`."""
        return self.user_data.payload_hex

    @property
    def concat(self) -> Concat | None:
        return self.user_data.concat

    @property
    def more_messages(self) -> bool:
        return not self.first_octet & MMS


@dataclass(frozen=True, slots=True, kw_only=True)
class Submit:
    """An outgoing message (SMS-SUBMIT), as found in a modem's storage or built by :func:`encode_submit`."""

    smsc: str | None
    first_octet: int
    reference: int
    destination: Address
    pid: int
    dcs: int
    #: TP-VP as sent: one octet (relative), seven (absolute/enhanced) or ``None``.
    validity: bytes | None
    user_data: UserData

    @property
    def text(self) -> str | None:
        return self.user_data.text


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusReport:
    """A delivery report (SMS-STATUS-REPORT): not a message, never a tracker report."""

    smsc: str | None
    first_octet: int
    reference: int
    recipient: Address
    timestamp: datetime
    discharge: datetime
    status: int


Pdu = Deliver | Submit | StatusReport


# --- Decoding ---------------------------------------------------------------------------------------------


class _Reader:
    """A cursor over the PDU octets that raises :class:`PduError` naming the field that ran out."""

    def __init__(self, data: bytes, start: int = 0) -> None:
        self.data = data
        self.pos = start

    def octet(self, what: str) -> int:
        return self.take(1, what)[0]

    def take(self, count: int, what: str) -> bytes:
        end = self.pos + count
        if count < 0 or end > len(self.data):
            raise PduError(
                f"{what} needs {count} octets, only {len(self.data) - self.pos} left",
                data=self.data,
                offset=self.pos,
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def rest(self) -> bytes:
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk


def decode_pdu(
    data: bytes,
    *,
    smsc: bool | None = True,
    tpdu_length: int | None = None,
    reference: datetime | None = None,
) -> Pdu:
    """Decode one PDU as printed by ``AT+CMGR``/``AT+CMGL`` in PDU mode.

    :param smsc: ``True`` when the PDU starts with the service-centre address (what modems print),
        ``False`` for a bare TPDU, ``None`` to try both (with the prefix first).
    :param tpdu_length: the TPDU length from the ``+CMGR``/``+CMGL`` header, used only to choose
        between the two readings when ``smsc`` is ``None`` (headers are not always right).
    :param reference: about when the message was received (the caller's clock): a timestamp's
        two-digit year gets the century that puts it nearest this time. ``None``: the years 2000-2099.
    :raises PduError: reserved message type, fields beyond the data, bad BCD, bad header.
    """
    if smsc is not None:
        return _decode(data, smsc=smsc, reference=reference)
    attempts: list[tuple[bool, Pdu | PduError]] = []
    for with_prefix in (True, False):
        try:
            attempts.append((with_prefix, _decode(data, smsc=with_prefix, reference=reference)))
        except PduError as error:
            attempts.append((with_prefix, error))
    if tpdu_length is not None and data:
        prefixed = len(data) - tpdu_length == data[0] + 1
        for with_prefix, outcome in attempts:
            if with_prefix == prefixed and not isinstance(outcome, PduError):
                return outcome
    decoded = [outcome for _, outcome in attempts if not isinstance(outcome, PduError)]
    for outcome in decoded:
        if not (isinstance(outcome, Deliver | Submit) and outcome.user_data.truncated):
            return outcome
    if decoded:
        return decoded[0]
    error = attempts[0][1]
    assert isinstance(error, PduError)
    raise error


def decode_hex(text: str, *, smsc: bool | None = True, reference: datetime | None = None) -> Pdu:
    """:func:`decode_pdu` for hex as a modem prints it (stray quotes and spaces tolerated).

    :raises PduError: not hex, or not a PDU.
    """
    cleaned = "".join(text.split()).strip('"')
    try:
        data = bytes.fromhex(cleaned)
    except ValueError:
        raise PduError(f"not a hex PDU: {cleaned[:40]!r}") from None
    return decode_pdu(data, smsc=smsc, reference=reference)


def _decode(data: bytes, *, smsc: bool, reference: datetime | None) -> Pdu:
    reader = _Reader(data)
    centre = None
    if smsc:
        length = reader.octet("service-centre length")
        if length:
            toa = reader.octet("service-centre type of address")
            centre = _bcd_number(reader.take(length - 1, "service-centre address"), toa, (length - 1) * 2)
    first = reader.octet("first octet")
    mti = first & MTI_MASK
    if mti == MessageType.DELIVER:
        return _decode_deliver(reader, centre, first, reference)
    if mti == MessageType.SUBMIT:
        return _decode_submit(reader, centre, first)
    if mti == MessageType.STATUS_REPORT:
        return _decode_status_report(reader, centre, first, reference)
    raise PduError(f"message type {mti} (TP-MTI) is reserved", data=data, offset=reader.pos - 1)


def _decode_deliver(reader: _Reader, centre: str | None, first: int, reference: datetime | None) -> Deliver:
    sender = _address(reader, "sender")
    pid = reader.octet("protocol identifier")
    dcs = reader.octet("data coding scheme")
    timestamp = _timestamp(reader, "service-centre timestamp", reference)
    user_data = _user_data(reader, dcs, bool(first & UDHI))
    return Deliver(
        smsc=centre,
        first_octet=first,
        sender=sender,
        pid=pid,
        dcs=dcs,
        timestamp=timestamp,
        user_data=user_data,
    )


def _decode_submit(reader: _Reader, centre: str | None, first: int) -> Submit:
    reference = reader.octet("message reference")
    destination = _address(reader, "destination")
    pid = reader.octet("protocol identifier")
    dcs = reader.octet("data coding scheme")
    vpf = (first >> VPF_SHIFT) & 0x03
    validity = None
    if vpf == VPF_RELATIVE:
        validity = reader.take(1, "validity period")
    elif vpf in (VPF_ABSOLUTE, VPF_ENHANCED):
        validity = reader.take(SCTS_OCTETS, "validity period")
    user_data = _user_data(reader, dcs, bool(first & UDHI))
    return Submit(
        smsc=centre,
        first_octet=first,
        reference=reference,
        destination=destination,
        pid=pid,
        dcs=dcs,
        validity=validity,
        user_data=user_data,
    )


def _decode_status_report(
    reader: _Reader, centre: str | None, first: int, received: datetime | None
) -> StatusReport:
    message_reference = reader.octet("message reference")
    recipient = _address(reader, "recipient")
    timestamp = _timestamp(reader, "service-centre timestamp", received)
    discharge = _timestamp(reader, "discharge time", received)
    status = reader.octet("status")
    # Optional parameter indicator and what it announces are not needed: a report is never a message.
    return StatusReport(
        smsc=centre,
        first_octet=first,
        reference=message_reference,
        recipient=recipient,
        timestamp=timestamp,
        discharge=discharge,
        status=status,
    )


def _address(reader: _Reader, what: str) -> Address:
    digits = reader.octet(f"{what} address length")
    toa = reader.octet(f"{what} type of address")
    if digits > MAX_ADDRESS_DIGITS:
        raise PduError(f"{what} address of {digits} digits (at most {MAX_ADDRESS_DIGITS})", offset=reader.pos)
    raw = reader.take((digits + 1) // 2, f"{what} address")
    if (toa >> 4) & 0x07 == TON_ALPHANUMERIC:
        septets = _unpack_septets(raw, digits * 4 // 7)
        return Address(_gsm7_decode(septets), toa)
    return Address(_bcd_number(raw, toa, digits), toa)


def _bcd_number(raw: bytes, toa: int, digits: int) -> str:
    out = []
    for octet in raw:
        for nibble in (octet & 0x0F, octet >> 4):
            if nibble == 0x0F:
                continue
            out.append(_BCD_DIGITS[nibble])
    number = "".join(out[:digits])
    if (toa >> 4) & 0x07 == TypeOfNumber.INTERNATIONAL and number:
        return "+" + number
    return number


def _timestamp(reader: _Reader, what: str, reference: datetime | None) -> datetime:
    start = reader.pos
    raw = reader.take(SCTS_OCTETS, what)
    values = []
    for octet in raw[:6]:
        low, high = octet & 0x0F, octet >> 4
        if low > 9 or high > 9:
            raise PduError(f"{what} has a non-decimal digit ({raw.hex()})", offset=start)
        values.append(low * 10 + high)
    zone = raw[6]
    quarters = (zone & 0x07) * 10 + (zone >> 4)
    if zone >> 4 > 9:
        raise PduError(f"{what} zone is not decimal ({raw.hex()})", offset=start + 6)
    offset = timedelta(minutes=quarters * _QUARTER_HOUR_MINUTES)
    if zone & 0x08:
        offset = -offset
    year, month, day, hour, minute, second = values
    if reference is not None and reference.tzinfo is None:
        reference = reference.replace(tzinfo=UTC)
    centuries = (2000,) if reference is None else _centuries(reference.year)
    readings = []
    problem: ValueError | None = None
    for century in centuries:
        try:
            reading = datetime(century + year, month, day, hour, minute, second, tzinfo=timezone(offset))
        except ValueError as error:  # a bad field, or 29 February in a century that has none
            problem = problem or error
        else:
            readings.append(reading)
    if not readings:
        raise PduError(f"{what} is not a valid time ({raw.hex()}): {problem}", offset=start) from None
    if reference is None:
        return readings[0]
    return min(readings, key=lambda reading: abs(reading - reference))


def _centuries(year: int) -> tuple[int, ...]:
    """The centuries around ``year`` a two-digit year may belong to."""
    century = year // 100 * 100
    return tuple(value for value in (century - 100, century, century + 100) if 1 <= value <= 9899)


def charset_of(dcs: int) -> Charset:
    """The alphabet a TP-DCS selects (23.038 §4); reserved values read as the default alphabet."""
    group = dcs >> 4
    if group <= 0x07:  # general data coding, with or without automatic deletion
        alphabet = (dcs >> 2) & 0x03
        return {1: Charset.EIGHT_BIT, 2: Charset.UCS2}.get(alphabet, Charset.GSM7)
    if group == 0x0E:  # message waiting indication, UCS2 text
        return Charset.UCS2
    if group == 0x0F:
        return Charset.EIGHT_BIT if dcs & 0x04 else Charset.GSM7
    return Charset.GSM7


def _compressed(dcs: int) -> bool:
    return dcs >> 6 == 0 and bool(dcs & 0x20)


def _user_data(reader: _Reader, dcs: int, has_udh: bool) -> UserData:
    udl = reader.octet("user data length")
    start = reader.pos
    available = reader.rest()
    charset = charset_of(dcs)
    octets_needed = math.ceil(udl * 7 / 8) if charset is Charset.GSM7 else udl
    truncated = len(available) < octets_needed
    # Octets beyond TP-UDL are padding or junk some modems append: ignore them.
    ud = available[:octets_needed]
    udh: tuple[UdhElement, ...] = ()
    header_octets = 0
    if has_udh:
        if not ud:
            raise PduError("user data header announced but the user data is empty", offset=start)
        header_octets = ud[0] + 1
        if header_octets > len(ud):
            raise PduError(
                f"user data header of {header_octets} octets is longer than the user data ({len(ud)})",
                offset=start,
            )
        udh = _parse_udh(ud[1:header_octets], start + 1)
    if charset is Charset.GSM7:
        septet_count = min(udl, len(ud) * 8 // 7)
        skip = math.ceil(header_octets * 8 / 7)
        septets = _unpack_septets(ud, septet_count)[skip:]
        payload = bytes(septets)
        text: str | None = _gsm7_decode(septets)
    else:
        payload = ud[header_octets:]
        if _compressed(dcs):
            text = None
        elif charset is Charset.UCS2:
            if len(payload) % 2:
                truncated = True
            text = payload[: len(payload) // 2 * 2].decode("utf-16-be", errors="replace")
        else:
            text = payload.decode("ascii") if printable(payload) else None
    return UserData(charset=charset, udh=udh, text=text, payload=payload, truncated=truncated)


def _parse_udh(header: bytes, offset: int) -> tuple[UdhElement, ...]:
    elements = []
    pos = 0
    while pos < len(header):
        if pos + 2 > len(header):
            raise PduError("user data header element without its length", offset=offset + pos)
        iei, length = header[pos], header[pos + 1]
        if pos + 2 + length > len(header):
            raise PduError(
                f"user data header element 0x{iei:02x} of {length} octets runs past the header",
                offset=offset + pos,
            )
        elements.append(UdhElement(iei, bytes(header[pos + 2 : pos + 2 + length])))
        pos += 2 + length
    return tuple(elements)


def _concat_of(udh: Iterable[UdhElement]) -> Concat | None:
    for element in udh:
        if element.iei == IEI_CONCAT_8 and len(element.data) == 3:
            ref, total, seq = element.data
            bits = 8
        elif element.iei == IEI_CONCAT_16 and len(element.data) == 4:
            ref = int.from_bytes(element.data[:2], "big")
            total, seq = element.data[2], element.data[3]
            bits = 16
        else:
            continue
        # 23.040 §9.2.3.24.1: a zero total/seq or seq > total means "ignore this element".
        if 1 <= seq <= total:
            return Concat(ref=ref, total=total, seq=seq, bits=bits)
    return None


def _unpack_septets(data: bytes, count: int) -> list[int]:
    value = int.from_bytes(data, "little")
    return [(value >> (7 * i)) & 0x7F for i in range(min(count, len(data) * 8 // 7))]


def _gsm7_decode(septets: Sequence[int]) -> str:
    out = []
    escaped = False
    for septet in septets:
        if escaped:
            # An unknown extension code shows as its default-alphabet character (23.038 §6.2.1.1).
            out.append(GSM7_EXTENSION.get(septet, " " if septet == GSM7_ESCAPE else GSM7_BASIC[septet]))
            escaped = False
        elif septet == GSM7_ESCAPE:
            escaped = True
        else:
            out.append(GSM7_BASIC[septet])
    return "".join(out)


# --- Encoding ---------------------------------------------------------------------------------------------


def gsm7_septets(text: str) -> list[int]:
    """``text`` as GSM 7-bit septets (extension characters take two).

    :raises PduError: a character is not in the default alphabet or its extension.
    """
    out: list[int] = []
    for index, char in enumerate(text):
        codes = _GSM7_ENCODE.get(char)
        if codes is None:
            raise PduError(f"character {char!r} at {index} is not in the GSM 7-bit alphabet")
        out.extend(codes)
    return out


def gsm7_encodable(text: str) -> bool:
    return all(char in _GSM7_ENCODE for char in text)


def _pack_septets(septets: Sequence[int]) -> bytes:
    value = 0
    for index, septet in enumerate(septets):
        value |= septet << (7 * index)
    return value.to_bytes(math.ceil(7 * len(septets) / 8), "little")


def _encode_address(number: str, what: str) -> bytes:
    """An address field: length (digits), type of address, value."""
    if number.startswith("+") and _is_bcd(number[1:]):
        digits, toa = number[1:], TOA_INTERNATIONAL
    elif _is_bcd(number):
        digits, toa = number, TOA_UNKNOWN
    else:
        if not number or len(number) > MAX_ALPHANUMERIC_SENDER:
            raise PduError(f"{what} {number!r}: alphanumeric addresses have 1 to 11 characters")
        septets = gsm7_septets(number)
        packed = _pack_septets(septets)
        return bytes([math.ceil(len(septets) * 7 / 4), TOA_ALPHANUMERIC]) + packed
    if len(digits) > MAX_ADDRESS_DIGITS:
        raise PduError(f"{what} {number!r} has more than {MAX_ADDRESS_DIGITS} digits")
    return bytes([len(digits), toa]) + _bcd_encode(digits)


def _encode_smsc(number: str | None) -> bytes:
    if not number:
        return b"\x00"
    digits = number.removeprefix("+")
    if not _is_bcd(digits) or not digits:
        raise PduError(f"service-centre number {number!r} is not a phone number")
    toa = TOA_INTERNATIONAL if number.startswith("+") else TOA_UNKNOWN
    value = _bcd_encode(digits)
    return bytes([len(value) + 1, toa]) + value


def _is_bcd(text: str) -> bool:
    return bool(text) and all(char in _BCD_DIGITS for char in text)


def _bcd_encode(digits: str) -> bytes:
    nibbles = [_BCD_DIGITS.index(char) for char in digits]
    if len(nibbles) % 2:
        nibbles.append(0x0F)
    return bytes(nibbles[i] | nibbles[i + 1] << 4 for i in range(0, len(nibbles), 2))


def _encode_timestamp(value: datetime) -> bytes:
    offset = value.utcoffset()
    if offset is None:
        raise PduError("a timestamp needs a time zone")
    quarters, remainder = divmod(abs(int(offset.total_seconds())), _QUARTER_HOUR_MINUTES * 60)
    if remainder or quarters > 79:
        raise PduError(f"time zone {offset} is not a whole number of quarter hours within ±19:45")
    if not 2000 <= value.year <= 2099:
        raise PduError(f"year {value.year} does not fit a two-digit timestamp")
    fields = (value.year % 100, value.month, value.day, value.hour, value.minute, value.second)
    out = bytes((number % 10) << 4 | number // 10 for number in fields)
    zone = (quarters % 10) << 4 | quarters // 10
    if offset < timedelta(0):
        zone |= 0x08
    return out + bytes([zone])


def relative_validity(period: timedelta) -> int:
    """The TP-VP relative octet for at least ``period`` (capped at 63 weeks), per 23.040 §9.2.3.12.1."""
    minutes = max(period.total_seconds() / 60, 5)
    if minutes <= 12 * 60:
        return max(math.ceil(minutes / 5) - 1, 0)
    if minutes <= 24 * 60:
        return 143 + math.ceil((minutes - 12 * 60) / 30)
    days = minutes / (24 * 60)
    if days <= 30:
        return 166 + math.ceil(days)
    return min(192 + math.ceil(days / 7), 255)


def _content_charset(text: str | None, data: bytes | None, charset: Charset | str | None) -> Charset:
    if data is not None and charset is None:
        return Charset.EIGHT_BIT
    return _choose_charset(text or "", charset)


def _choose_charset(text: str, charset: Charset | str | None) -> Charset:
    if charset is None or charset == "auto":
        return Charset.GSM7 if gsm7_encodable(text) else Charset.UCS2
    return Charset(charset)


def _encode_user_data(
    charset: Charset, text: str | None, data: bytes | None, udh: Sequence[UdhElement]
) -> tuple[int, bytes]:
    """TP-UDL and TP-UD for the given content and header elements."""
    header = b"".join(bytes([element.iei, len(element.data)]) + element.data for element in udh)
    if header:
        header = bytes([len(header)]) + header
    if charset is Charset.GSM7:
        septets = gsm7_septets(text or "")
        # The text starts at the first septet boundary after the header (fill bits in between).
        header_septets = math.ceil(len(header) * 8 / 7)
        udl = header_septets + len(septets)
        if udl > MAX_UD_SEPTETS:
            raise PduError(f"{udl} septets do not fit one message ({MAX_UD_SEPTETS})")
        value = int.from_bytes(header, "little")
        for index, septet in enumerate(septets):
            value |= septet << (7 * (header_septets + index))
        return udl, value.to_bytes(math.ceil(udl * 7 / 8), "little")
    if charset is Charset.UCS2:
        payload = (text or "").encode("utf-16-be")
    else:
        payload = data if data is not None else (text or "").encode("latin-1")
    body = header + payload
    if len(body) > MAX_UD_OCTETS:
        raise PduError(f"{len(body)} octets do not fit one message ({MAX_UD_OCTETS})")
    return len(body), body


def _dcs_for(charset: Charset, message_class: int | None) -> int:
    alphabet = {Charset.GSM7: 0x00, Charset.EIGHT_BIT: 0x04, Charset.UCS2: 0x08}[charset]
    if message_class is None:
        return alphabet
    return 0x10 | alphabet | (message_class & 0x03)


def _udh_elements(concat: Concat | None, ports: tuple[int, int] | None) -> list[UdhElement]:
    elements = []
    if concat is not None:
        if concat.bits == 16:
            data = concat.ref.to_bytes(2, "big") + bytes([concat.total, concat.seq])
            elements.append(UdhElement(IEI_CONCAT_16, data))
        else:
            elements.append(UdhElement(IEI_CONCAT_8, bytes([concat.ref, concat.total, concat.seq])))
    if ports is not None:
        elements.append(UdhElement(IEI_PORTS_16, ports[0].to_bytes(2, "big") + ports[1].to_bytes(2, "big")))
    return elements


@dataclass(frozen=True, slots=True)
class OutgoingPdu:
    """An encoded PDU and the length ``AT+CMGS=<n>`` wants (octets after the service-centre part)."""

    pdu: bytes
    tpdu_length: int

    def hex(self) -> str:
        return self.pdu.hex().upper()


def encode_submit(
    destination: str,
    text: str | None = None,
    *,
    data: bytes | None = None,
    charset: Charset | str | None = None,
    smsc: str | None = None,
    reference: int = 0,
    validity: timedelta | None = None,
    status_report: bool = False,
    concat: Concat | None = None,
    ports: tuple[int, int] | None = None,
    message_class: int | None = None,
) -> OutgoingPdu:
    """One SMS-SUBMIT, service-centre part included (``00`` = the SIM's default centre).

    ``charset`` ``None``/``"auto"`` picks GSM 7-bit when every character has a septet, else UCS2;
    ``data`` with charset ``8bit`` sends binary octets. ``validity`` is sent as a relative period.

    :raises PduError: the text does not fit one message or the alphabet, or an address is invalid.
    """
    chosen = _content_charset(text, data, charset)
    udl, ud = _encode_user_data(chosen, text, data, _udh_elements(concat, ports))
    first = MessageType.SUBMIT
    if concat is not None or ports is not None:
        first |= UDHI
    if status_report:
        first |= SRR
    vp = b""
    if validity is not None:
        first |= VPF_RELATIVE << VPF_SHIFT
        vp = bytes([relative_validity(validity)])
    tpdu = (
        bytes([first, reference & 0xFF])
        + _encode_address(destination, "destination")
        + bytes([0, _dcs_for(chosen, message_class)])
        + vp
        + bytes([udl])
        + ud
    )
    return OutgoingPdu(_encode_smsc(smsc) + tpdu, len(tpdu))


def split_submit(
    destination: str,
    text: str,
    *,
    concat_ref: int = 0,
    reference: int = 0,
    charset: Charset | str | None = None,
    smsc: str | None = None,
    validity: timedelta | None = None,
) -> list[OutgoingPdu]:
    """``text`` as one SMS-SUBMIT, or as concatenated parts (8-bit reference ``concat_ref``) when longer.

    TP-MR counts up from ``reference`` per part. Extension characters are never split from their escape.
    """
    chosen = _choose_charset(text, charset)
    single = len(gsm7_septets(text)) if chosen is Charset.GSM7 else len(text.encode("utf-16-be"))
    limit = MAX_UD_SEPTETS if chosen is Charset.GSM7 else MAX_UD_OCTETS
    if single <= limit:
        return [
            encode_submit(
                destination, text, charset=chosen, smsc=smsc, reference=reference, validity=validity
            )
        ]
    chunks = _split_text(text, chosen)
    if len(chunks) > 0xFF:
        raise PduError(f"text needs {len(chunks)} parts; at most 255 can be joined")
    return [
        encode_submit(
            destination,
            chunk,
            charset=chosen,
            smsc=smsc,
            reference=reference + index,
            validity=validity,
            concat=Concat(ref=concat_ref & 0xFF, total=len(chunks), seq=index + 1),
        )
        for index, chunk in enumerate(chunks)
    ]


#: Payload per part next to an 8-bit-reference concatenation header (6 octets).
_PART_SEPTETS = 153
_PART_OCTETS = 134


def _split_text(text: str, charset: Charset) -> list[str]:
    chunks: list[str] = []
    current = ""
    used = 0
    for char in text:
        if charset is Charset.GSM7:
            cost, limit = len(gsm7_septets(char)), _PART_SEPTETS
        else:
            cost, limit = len(char.encode("utf-16-be")), _PART_OCTETS
        if used + cost > limit:
            chunks.append(current)
            current, used = "", 0
        current += char
        used += cost
    chunks.append(current)
    return chunks


def encode_deliver(
    sender: str,
    text: str | None = None,
    *,
    timestamp: datetime,
    data: bytes | None = None,
    charset: Charset | str | None = None,
    smsc: str | None = None,
    pid: int = 0,
    concat: Concat | None = None,
    ports: tuple[int, int] | None = None,
    message_class: int | None = None,
    more_messages: bool = False,
) -> bytes:
    """An SMS-DELIVER as a modem would print it (service-centre part first): for emulators and tests.

    :raises PduError: the content does not fit one message, or an address/timestamp is invalid.
    """
    chosen = _content_charset(text, data, charset)
    udl, ud = _encode_user_data(chosen, text, data, _udh_elements(concat, ports))
    first = MessageType.DELIVER
    if concat is not None or ports is not None:
        first |= UDHI
    if not more_messages:
        first |= MMS
    return (
        _encode_smsc(smsc)
        + bytes([first])
        + _encode_address(sender, "sender")
        + bytes([pid, _dcs_for(chosen, message_class)])
        + _encode_timestamp(timestamp)
        + bytes([udl])
        + ud
    )


# --- Reassembly -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A whole received message: one part, or the parts of a concatenated message in order.

    ``tags`` are whatever the caller passed with each part (a modem storage index, say), in part
    order, duplicates included, so every stored copy can be deleted. ``complete`` is ``False`` for a
    concatenated message given up on by :meth:`Reassembler.expire`; ``missing`` lists its absent parts.
    """

    sender: str
    timestamp: datetime
    parts: tuple[Deliver, ...]
    tags: tuple[Any, ...] = ()
    complete: bool = True
    missing: tuple[int, ...] = ()

    @property
    def text(self) -> str | None:
        """The joined text; ``None`` if any part is binary. Missing parts are simply absent."""
        texts = [part.text for part in self.parts]
        if any(text is None for text in texts):
            return None
        return "".join(text for text in texts if text is not None)

    @property
    def payload_hex(self) -> str | None:
        """The joined 8-bit payload as hex (see :attr:`UserData.payload_hex`); ``None`` unless every
        part has one."""
        payloads = [part.payload_hex for part in self.parts]
        if not payloads or any(payload is None for payload in payloads):
            return None
        return "".join(payload for payload in payloads if payload is not None)

    @property
    def concat(self) -> Concat | None:
        return self.parts[0].concat if self.parts else None


@dataclass
class _Pending:
    first_seen: float
    total: int
    parts: dict[int, Deliver] = field(default_factory=dict)
    tags: dict[int, list[Any]] = field(default_factory=dict)


class Reassembler:
    """Joins concatenated SMS parts, keyed by (sender, reference, total).

    Pure: time comes in as ``now`` (any monotonic seconds). Memory is bounded: at most
    ``max_messages`` messages wait for parts; taking in one more gives up on the oldest, which the
    next :meth:`expire` call returns like a timed-out one. A part seen again (same sequence number)
    replaces the earlier copy but keeps both tags.
    """

    def __init__(self, *, timeout_s: float = 600.0, max_messages: int = 64) -> None:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        self.timeout_s = timeout_s
        self.max_messages = max_messages
        self._pending: dict[tuple[str, int, int], _Pending] = {}
        self._evicted: list[Message] = []

    def __len__(self) -> int:
        """Messages waiting for parts."""
        return len(self._pending)

    def pending_tags(self) -> list[Any]:
        """Tags of every part held, in no particular order."""
        return [tag for pending in self._pending.values() for tags in pending.tags.values() for tag in tags]

    def holds(self, tag: Hashable) -> bool:
        return any(tag in tags for pending in self._pending.values() for tags in pending.tags.values())

    def add(self, part: Deliver, now: float, tag: Any = None) -> Message | None:
        """Take one part; return the whole message once every part is in, else ``None``.

        A message without a concatenation header (or "part 1 of 1") is returned at once.
        """
        concat = part.concat
        if concat is None or concat.total == 1:
            return Message(sender=part.sender.number, timestamp=part.timestamp, parts=(part,), tags=(tag,))
        key = (part.sender.number, concat.ref, concat.total)
        pending = self._pending.get(key)
        if pending is None:
            if len(self._pending) >= self.max_messages:
                oldest = min(self._pending, key=lambda k: self._pending[k].first_seen)
                self._evicted.append(self._give_up(oldest))
            pending = self._pending[key] = _Pending(first_seen=now, total=concat.total)
        pending.parts[concat.seq] = part
        tags = pending.tags.setdefault(concat.seq, [])
        if tag not in tags:
            tags.append(tag)
        if len(pending.parts) < pending.total:
            return None
        del self._pending[key]
        return self._message(pending, complete=True)

    def expire(self, now: float) -> list[Message]:
        """Give up on messages whose first part is older than the timeout (and any evicted ones).

        Returns them as incomplete :class:`Message` objects so their parts can be quarantined.
        """
        expired, self._evicted = self._evicted, []
        for key in [k for k, p in self._pending.items() if now - p.first_seen >= self.timeout_s]:
            expired.append(self._give_up(key))
        return expired

    def next_deadline(self) -> float | None:
        """When the oldest waiting message times out (``None`` if nothing waits)."""
        if self._evicted:
            return -math.inf
        if not self._pending:
            return None
        return min(p.first_seen for p in self._pending.values()) + self.timeout_s

    def _give_up(self, key: tuple[str, int, int]) -> Message:
        return self._message(self._pending.pop(key), complete=False)

    @staticmethod
    def _message(pending: _Pending, *, complete: bool) -> Message:
        order = sorted(pending.parts)
        parts = tuple(pending.parts[seq] for seq in order)
        tags = tuple(tag for seq in order for tag in pending.tags[seq])
        missing = tuple(seq for seq in range(1, pending.total + 1) if seq not in pending.parts)
        return Message(
            sender=parts[0].sender.number,
            timestamp=parts[0].timestamp,
            parts=parts,
            tags=tags,
            complete=complete,
            missing=missing,
        )
