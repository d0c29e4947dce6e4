"""gt06 against the shared vectors, plus framing, session, reply, command and fuzz behaviour."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from typing import Any

import pytest

import drivers
from drivers import (
    Command,
    CommandType,
    DriverError,
    InvalidCommand,
    Match,
    Transport,
    UnsupportedCommand,
    detect,
    gt06,
)
from drivers._crc import crc16_x25
from drivers.gt06 import Gt06Session, frame_bytes, sniff
from tests import vectors
from tests.drivers.streams import feed_reports

NOW = vectors.NOW
DEVICE_TO_SERVER = vectors.load("gt06")
DECODED = [vector for vector in DEVICE_TO_SERVER if vector.row.get("kind") != "framing"]
COMMANDS = vectors.load("gt06", direction="server_to_device")

LOGIN = bytes.fromhex("78780d01012345678901234500018cdd0d0a")
LOGIN_WITH_WEST_TIMEZONE = bytes.fromhex("787811010864717003664467100f190a0002c6d20d0a")
POSITION = bytes.fromhex("78781f120f0a140e150bc505e51e780293a9e800540000f601006e0055da00035f240d0a")


def random_splits(data: bytes, seed: int, avoid: set[int] = frozenset()) -> list[bytes]:
    rng = random.Random(seed)
    allowed = [cut for cut in range(1, len(data)) if cut not in avoid]
    cuts = sorted(rng.sample(allowed, k=min(len(allowed), rng.randint(1, 6))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


# -- the shared vectors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector", [vector for vector in DEVICE_TO_SERVER if vector.row.get("kind") == "framing"]
)
def test_framer_cuts_the_same_first_frame_as_the_reference(vector: vectors.Vector) -> None:
    session = Gt06Session()
    session.receive_data(vector.frames()[0])
    frames = list(session.frames())
    assert frames[0].hex() == vector.row["expect"]["first_frame"]


def _inner_crlf_ends(data: bytes) -> set[int]:
    """Offsets just past a CR LF inside a frame's data, before its declared end.

    A piece of the stream that ends exactly there is indistinguishable from a frame with a short
    length field (which the framer must answer at once, as Traccar does), so splits there are skipped.
    """
    declared = data[2] + 5 if data[:2] == b"\x78\x78" else int.from_bytes(data[2:4], "big") + 6
    return {
        i + 2 for i in range(len(data) - 1) if data[i : i + 2] == b"\r\n" and i + 2 < min(declared, len(data))
    }


@pytest.mark.parametrize("vector", DECODED, ids=lambda vector: vector.id)
def test_whole_byte_by_byte_and_random_splits_decode_alike(vector: vectors.Vector) -> None:
    data = b"".join(vector.frames())
    whole = feed_reports(Gt06Session(Transport.TCP), [data])
    avoid = _inner_crlf_ends(data)
    if not avoid:
        assert feed_reports(Gt06Session(Transport.TCP), [data[i : i + 1] for i in range(len(data))]) == whole
    for seed in range(3):
        assert feed_reports(Gt06Session(Transport.TCP), random_splits(data, seed, avoid)) == whole


@pytest.mark.parametrize("vector", DECODED[:40], ids=lambda vector: vector.id)
def test_trailing_bytes_of_the_next_frame_stay_in_the_buffer(vector: vectors.Vector) -> None:
    data = vector.frames()[0]
    session = Gt06Session()
    session.receive_data(data + LOGIN[:7])
    frames = list(session.frames())
    assert frames and bytes(session.abandon()).endswith(LOGIN[:7])


# -- sniffing ----------------------------------------------------------------------------------


def test_sniffer_claims_both_start_markers_and_waits_on_one_byte() -> None:
    assert sniff(b"\x78\x78\x0d\x01", Transport.TCP) is Match.YES
    assert sniff(b"\x79\x79\x00\x0e", Transport.TCP) is Match.YES
    assert sniff(b"\x78", Transport.TCP) is Match.MORE
    assert sniff(b"\x78\x79", Transport.TCP) is Match.NO


@pytest.mark.parametrize("protocol", ["gps103", "pt502", "h02", "teltonika", "watch", "tk103", "osmand"])
def test_sniffer_never_claims_another_protocols_frames(protocol: str) -> None:
    for vector in vectors.load(protocol):
        assert sniff(vector.frames()[0][:32], vector.transport) is Match.NO, vector.id


# -- session and replies -----------------------------------------------------------------------


def test_login_is_answered_with_its_serial_and_names_the_session() -> None:
    session = Gt06Session()
    result = session.decode(LOGIN, now=NOW)
    assert result.replies == (bytes.fromhex("787805010001d9dc0d0a"),)
    assert result.device_id == session.device_id == "123456789012345"
    position = session.decode(POSITION, now=NOW)
    assert position.reports[0].device_id == "123456789012345"


def test_login_timezone_shifts_later_gps_times_to_utc() -> None:
    session = Gt06Session()
    login = session.decode(LOGIN_WITH_WEST_TIMEZONE, now=NOW).reports[0]
    assert login.attributes["timezone_min"] == -240
    report = session.decode(POSITION, now=NOW).reports[0]
    # The device clock says 14:21:11 at UTC-4, so UTC is four hours later.
    assert report.time == datetime(2015, 10, 20, 18, 21, 11, tzinfo=UTC)


def test_position_fields_are_decoded_in_fixed_units() -> None:
    report = Gt06Session().decode(POSITION, now=NOW).reports[0]
    assert (report.lat, report.lon) == (pytest.approx(54.94535, abs=1e-5), pytest.approx(24.01762, abs=1e-5))
    assert report.time == datetime(2015, 10, 20, 14, 21, 11, tzinfo=UTC)
    assert report.valid is True and report.satellites == 5 and report.speed_kmh == 0.0


def test_heartbeat_is_acked_with_its_serial_and_reports_status() -> None:
    heartbeat = frame_bytes(0x13, bytes([0x46, 0x06, 0x04, 0x00, 0x02]), 0x0102)
    result = Gt06Session().decode(heartbeat, now=NOW)
    assert result.replies == (frame_bytes(0x13, b"", 0x0102),)
    report = result.reports[0]
    assert report.event == "heartbeat" and report.lat is None
    assert report.attributes["ignition"] is True and report.attributes["battery_pct"] == 100
    assert report.attributes["gps_tracking"] is True


def test_terminal_info_and_alarm_byte_raise_alarms() -> None:
    # Terminal info bits 3-5 = 4 (sos) and alarm byte 0x02 (powerCut).
    heartbeat = frame_bytes(0x13, bytes([0x20, 0x04, 0x04, 0x02, 0x02]), 7)
    assert Gt06Session().decode(heartbeat, now=NOW).reports[0].alarms == ("sos", "powerCut")


# -- alarm codes, one frame per code and packet type -----------------------------------------------

#: A fix at 2024-05-06 07:08:09: 9 satellites, 12.5 N 13.25 E, 40 km/h, course 90, valid.
GPS_BLOCK = (
    bytes([24, 5, 6, 7, 8, 9, 0xC9])
    + round(12.5 * gt06.COORDINATE_SCALE).to_bytes(4, "big")
    + round(13.25 * gt06.COORDINATE_SCALE).to_bytes(4, "big")
    + bytes([40])
    + (0x1400 | 90).to_bytes(2, "big")
)
CELL = bytes.fromhex("00f0" "01" "1234" "00abcd")  # MCC 240, MNC 1, LAC, 3-byte cell id
CELL_4G = bytes.fromhex("00f0" "01" "00001234" "00000000000abcde")  # LAC 4 bytes, cell id 8 bytes
#: Terminal info (no alarm bits), voltage level 4, GSM signal 3.
STATUS = bytes([0x00, 0x04, 0x03])
TIME = bytes([24, 5, 6, 7, 8, 9])


def _lang(code: int) -> bytes:
    """The language byte (English); its high nibble carries bits 8-11 of an extended alarm code."""
    return bytes([(code >> 8) << 4 | 0x02])


#: Packet builders: alarm code -> (type, content, declared length or None), for every layout that
#: carries Traccar's alarm byte.
STANDARD_LAYOUTS: dict[str, Any] = {
    "0x16 gps+lbs+status": lambda c: (0x16, GPS_BLOCK + b"\x09" + CELL + STATUS + bytes([c]) + _lang(c)),
    "0x26 gps+lbs+status": lambda c: (0x26, GPS_BLOCK + b"\x09" + CELL + STATUS + bytes([c]) + _lang(c)),
    "0x32 gps+lbs+status": lambda c: (0x32, GPS_BLOCK + b"\x09" + CELL + STATUS + bytes([c]) + _lang(c)),
    "0x19 lbs+status": lambda c: (0x19, CELL + STATUS + bytes([c]) + _lang(c)),
    "0xa5 4g lbs alarm": lambda c: (0xA5, CELL_4G + STATUS + bytes([c]) + _lang(c)),
    "0x13 heartbeat": lambda c: (0x13, STATUS + bytes([c]) + _lang(c)),
    "0x13 obd6": lambda c: (0x13, b"\x00\x8c\x43" + bytes([c]) + b"\x02\x64\x01\x04\xb0" + bytes(5)),
    "0x12 s5": lambda c: (0x12, GPS_BLOCK + CELL + b"\x00\x04\xb0\x03" + bytes([c]) + bytes(7)),
    "0xa2 lw 4g": lambda c: (
        0xA2,
        GPS_BLOCK + CELL_4G + b"\x01" + b"\x00\x04\xb0\x05\x03" + bytes([c]) + _lang(c) + bytes(18),
    ),
    "0x36 jimi status": lambda c: (0x36, STATUS + bytes([c]) + _lang(c) + bytes.fromhex("00180201a4")),
}
#: Layouts whose language byte extends the code (codes above 0xFF reach these only).
EXTENDED_LAYOUTS: dict[str, Any] = {
    "0x27 gps+lbs+status+geofence": lambda c: (
        0x27,
        GPS_BLOCK + b"\x09" + CELL + STATUS + bytes([c & 0xFF]) + _lang(c) + b"\x01",
    ),
    "0xa4 4g fence": lambda c: (
        0xA4,
        GPS_BLOCK + b"\x10" + CELL_4G + STATUS + bytes([c & 0xFF]) + _lang(c) + b"\x01",
    ),
    "0x39 alarm module": lambda c: (
        0x39,
        GPS_BLOCK + b"\x01" + CELL + b"\x20" + STATUS + bytes([c & 0xFF]) + _lang(c) + b"\x00\x6a\x01\x50",
    ),
    "0xa9 wifi alarm": lambda c: (
        0xA9,
        TIME + bytes.fromhex("00f0" "01" "00" "01" "1234" "00abcd" "20" "00" "01")
        + bytes.fromhex("aabbccddeeff30")
        + bytes([c & 0xFF])
        + _lang(c),
    ),
}
LAYOUTS = {**STANDARD_LAYOUTS, **EXTENDED_LAYOUTS}
#: Layouts with their own GPS fix (the others report cells or status only).
WITH_FIX = {name for name in LAYOUTS if "gps" in name} | {"0x12 s5", "0xa2 lw 4g", "0x39 alarm module"}
#: Declared lengths that pick a variant layout (Traccar's decodeVariant).
DECLARED = {"0x13 obd6": gt06.OBD6_LENGTH, "0x12 s5": gt06.S5_LENGTH, "0xa2 lw 4g": gt06.LW4G_LENGTH}


def _layout_frame(name: str, code: int) -> bytes:
    type_, content = LAYOUTS[name](code)
    frame = frame_bytes(type_, content, 0x0101)
    assert name not in DECLARED or frame[2] == DECLARED[name], "the layout's size must select its variant"
    return frame


def _decode_one(frame: bytes, model: str | None = None) -> Any:
    session = Gt06Session()
    session.model = model
    (report,) = session.decode(frame, now=NOW).reports
    return report


def _cases() -> list[Any]:
    cases = []
    for code, name in gt06.ALARM_CODES.items():
        for layout in EXTENDED_LAYOUTS if code > 0xFF else LAYOUTS:
            cases.append(pytest.param(layout, code, name, id=f"{layout}-0x{code:02x}"))
    return cases


@pytest.mark.parametrize(("layout", "code", "alarm"), _cases())
def test_every_mapped_alarm_code_is_named_in_every_packet_that_carries_it(
    layout: str, code: int, alarm: str
) -> None:
    report = _decode_one(_layout_frame(layout, code))
    assert report.alarms == (alarm,)
    assert report.attributes["alarm_code"] == code
    if layout in WITH_FIX:
        assert (report.lat, report.lon) == (pytest.approx(12.5), pytest.approx(13.25))


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("code", [0x00, 0x07, 0x20, 0xF0, 0xFF])
def test_an_unknown_alarm_code_raises_no_alarm_but_keeps_the_report(layout: str, code: int) -> None:
    report = _decode_one(_layout_frame(layout, code))
    assert report.alarms == ()
    assert report.attributes["alarm_code"] == code
    if layout in WITH_FIX:
        assert report.valid is True and report.lat == pytest.approx(12.5)


@pytest.mark.parametrize("layout", list(EXTENDED_LAYOUTS))
def test_a_language_nibble_that_makes_an_unknown_code_raises_no_alarm(layout: str) -> None:
    # 0x0201 is not 0x01 (sos): the high nibble of the language byte belongs to the code.
    assert _decode_one(_layout_frame(layout, 0x0201)).alarms == ()


MODEL_CASES = [
    *[("LW4G", code, alarm) for code, alarm in gt06.LW_ALARM_CODES.items()],
    *[("SEEWORLD", code, alarm) for code, alarm in gt06.SEEWORLD_ALARM_CODES.items()],
    *[(vl, code, alarm) for vl in sorted(gt06.VL_MODELS) for code, alarm in gt06.VL_ALARM_CODES.items()],
]


@pytest.mark.parametrize(("model", "code", "alarm"), MODEL_CASES)
def test_model_variants_read_some_codes_differently(model: str, code: int, alarm: str) -> None:
    frame = _layout_frame("0x26 gps+lbs+status", code)
    assert _decode_one(frame, model=model).alarms == (alarm,)
    assert _decode_one(frame).alarms == (gt06.ALARM_CODES[code],)  # no model: the standard reading


@pytest.mark.parametrize(("model", "power"), [("LW4G", 12.0), ("SEEWORLD", 0x30)])
def test_models_whose_heartbeat_ends_in_power_raise_no_alarm_from_it(model: str, power: float) -> None:
    frame = frame_bytes(0x13, STATUS + (b"\x00\x78" if model == "LW4G" else b"\x30") + b"\x02", 1)
    report = _decode_one(frame, model=model)
    assert report.alarms == () and report.attributes["power_v"] == power


@pytest.mark.parametrize(("bits", "alarm"), sorted(gt06.TERMINAL_ALARMS.items()))
def test_terminal_info_alarm_bits(bits: int, alarm: str) -> None:
    content = GPS_BLOCK + b"\x09" + CELL + bytes([bits << 3, 0x04, 0x03, 0x00, 0x02])
    assert _decode_one(frame_bytes(0x16, content, 1)).alarms == (alarm,)


def test_vxt01_terminal_alarm_7_is_overspeed_and_its_alarm_byte_is_no_alarm() -> None:
    # 0x16 declared 0x24 (VXT01): no cell length, power volts; alarm byte 0x01 is not sos here.
    content = GPS_BLOCK + CELL + bytes([7 << 3]) + b"\x04\xb0\x03\x01"
    frame = frame_bytes(0x16, content, 1)
    assert frame[2] == gt06.VXT01_LENGTH
    report = _decode_one(frame)
    assert report.alarms == ("overspeed",) and report.attributes["power_v"] == 12.0


def test_zero_cell_length_still_reads_the_status_block_after_it() -> None:
    content = GPS_BLOCK + b"\x00" + STATUS + b"\x01\x02"
    report = _decode_one(frame_bytes(0x26, content, 1))
    assert report.alarms == ("sos",) and report.lat == pytest.approx(12.5)


def test_a_longer_cell_length_is_skipped_to_find_the_alarm_byte() -> None:
    content = GPS_BLOCK + b"\x0b" + CELL + b"\xee\xee" + STATUS + b"\x04\x02"
    assert _decode_one(frame_bytes(0x16, content, 1)).alarms == ("geofenceEnter",)


def test_wetrust_card_alarm_flag_is_a_general_alarm() -> None:
    content = GPS_BLOCK + CELL + bytes(4) + b"\x017" + b"\x01\x00\x00\x10"
    frame = frame_bytes(0x12, content, 1)
    assert frame[2] == gt06.WETRUST_LENGTH
    report = _decode_one(frame)
    assert report.alarms == ("general",) and report.attributes["card"] == "7"


@pytest.mark.parametrize(("code", "alarm"), sorted(gt06.EVENT_ALARMS.items()))
def test_0x95_event_codes_long_form(code: int, alarm: str) -> None:
    # Time, lat, lon, flags (no satellites, no speed), event.
    content = GPS_BLOCK[:6] + GPS_BLOCK[7:15] + GPS_BLOCK[16:18] + bytes([code])
    report = _decode_one(frame_bytes(0x95, content, 1))
    assert report.alarms == (alarm,) and report.lat == pytest.approx(12.5)


def test_0x95_short_form_event_1_is_a_general_alarm() -> None:
    assert _decode_one(frame_bytes(0x95, TIME + b"\x01", 1)).alarms == ("general",)


@pytest.mark.parametrize(
    ("module", "code", "alarm"),
    [
        *[(0x2B, code, alarm) for code, alarm in sorted(gt06.MODULAR_EVENTS.items())],
        *[(0x34, code, alarm) for code, alarm in sorted(gt06.MODULAR_EVENT_RECORDS.items())],
        (0x2B, 0x16, None),
        (0x34, 0x11, None),
    ],
)
def test_modular_packet_events(module: int, code: int, alarm: str | None) -> None:
    data = bytes([code]) + (bytes(5) if module == 0x34 else b"")
    content = module.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data
    report = _decode_one(frame_bytes(0x70, content, 1, extended=True))
    assert report.alarms == ((alarm,) if alarm else ())


@pytest.mark.parametrize(
    ("status", "alarm"), [*sorted(gt06.AZ735_ALARMS.items()), (0xA0, None), (0x50, None)]
)
def test_az735_alarm_packet_status_byte(status: int, alarm: str | None) -> None:
    # Time, GPS length, GPS block, sized cell + signal, no extra cells, no WiFi, status, reserved.
    gps = GPS_BLOCK[:6] + b"\x0c" + GPS_BLOCK[6:]
    content = gps + b"\x09" + CELL + b"\x20" + b"\x00\x00" + bytes([status, 0])
    report = _decode_one(frame_bytes(0x33, content, 1, extended=True))
    assert report.alarms == ((alarm,) if alarm else ())
    assert report.lat == pytest.approx(12.5)


def test_bad_crc_is_recorded_not_dropped() -> None:
    broken = POSITION[:-4] + b"\x00\x00" + POSITION[-2:]
    result = Gt06Session().decode(broken, now=NOW)
    assert result.reports[0].attributes["crc_ok"] is False
    assert result.reports[0].lat is not None and result.replies


def test_good_crc_leaves_no_crc_attribute() -> None:
    assert "crc_ok" not in Gt06Session().decode(POSITION, now=NOW).reports[0].attributes


def test_time_request_is_answered_with_the_callers_clock() -> None:
    now = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    result = Gt06Session().decode(bytes.fromhex("7878058a000688290d0a"), now=now)
    assert result.replies == (frame_bytes(0x8A, bytes([31, 2, 3, 4, 5, 6]), 0x0006),)


def test_command_answer_is_a_command_result_with_its_text() -> None:
    frame = bytes.fromhex(
        "78782d152500000000437574206f666620746865206675656c20737570706c793a2053756363657373210002013b898a0d0a"
    )
    report = Gt06Session().decode(frame, now=NOW).reports[0]
    assert report.event == "commandResult"
    assert report.attributes["result"] == "Cut off the fuel supply: Success!"


def test_wifi_packet_is_answered_with_its_own_time_and_no_serial() -> None:
    frame = bytes.fromhex("787800691710231108500200cc080c4e2fa5640c4e2fa66e0d0a")
    result = Gt06Session().decode(frame, now=NOW)
    assert result.replies == (bytes.fromhex("78780069171023110850") + b"\r\n",)
    assert result.reports[0].time == datetime(2017, 10, 23, 11, 8, 50, tzinfo=UTC)


def test_zero_length_wifi_frame_is_cut_at_its_crlf() -> None:
    session = Gt06Session()
    session.receive_data(bytes.fromhex("787800691710231108500200cc080c4e2fa5640c4e2fa66e0d0a") + LOGIN)
    assert [len(frame) for frame in session.frames()] == [26, len(LOGIN)]


def test_garbage_at_stream_start_is_a_framing_error() -> None:
    session = Gt06Session()
    session.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(DriverError):
        list(session.frames())


def test_unknown_types_are_kept_as_raw_messages() -> None:
    report = Gt06Session().decode(frame_bytes(0x5A, b"\x01\x02\x03", 9), now=NOW).reports[0]
    assert report.event == "message" and report.attributes["raw"] == "010203"


# -- commands ----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", COMMANDS, ids=lambda vector: vector.id)
def test_engine_stop_matches_the_reference_encoding(vector: vectors.Vector) -> None:
    command = Command(type=CommandType.ENGINE_STOP, device_id="123456789012345")
    assert Gt06Session().encode(command) == vector.frames()[0]


@pytest.mark.parametrize(
    ("type_", "params", "text"),
    [
        (CommandType.ENGINE_RESUME, {}, b"Relay,0#"),
        (CommandType.REBOOT_DEVICE, {}, b"RESET#"),
        (CommandType.POSITION_SINGLE, {}, b"WHERE#"),
        (CommandType.POSITION_PERIODIC, {"frequency": 60}, b"TIMER,60#"),
        (CommandType.CUSTOM, {"data": "STATUS#"}, b"STATUS#"),
    ],
)
def test_commands_are_0x80_text_with_serial_and_crc(type_: CommandType, params: dict, text: bytes) -> None:
    frame = Gt06Session().encode(Command(type=type_, device_id="1", params=params))
    assert frame[3] == 0x80 and frame[4] == 4 + len(text) and frame[9 : 9 + len(text)] == text
    assert crc16_x25(frame[2:-4]) == int.from_bytes(frame[-4:-2], "big") and frame.endswith(b"\r\n")


def test_command_serial_counts_up_per_session() -> None:
    session = Gt06Session()
    command = Command(type=CommandType.REBOOT_DEVICE, device_id="1")
    first, second = session.encode(command), session.encode(command)
    assert int.from_bytes(first[-6:-4], "big") + 1 == int.from_bytes(second[-6:-4], "big")


def test_unsupported_command_is_refused() -> None:
    with pytest.raises(UnsupportedCommand, match="'requestPhoto' is not supported over data"):
        Gt06Session().encode(Command(type=CommandType.REQUEST_PHOTO, device_id="1"))


def test_the_first_timer_command_is_these_bytes() -> None:
    command = Command(type=CommandType.POSITION_PERIODIC, device_id="1", params={"frequency": 30})
    body = bytes([0x13, 0x80, 0x0D]) + b"\0\0\0\0" + b"TIMER,30#" + b"\0\0"
    assert Gt06Session().encode(command) == b"xx" + body + crc16_x25(body).to_bytes(2, "big") + b"\r\n"


@pytest.mark.parametrize(
    ("type_", "params", "sms"),
    [
        (CommandType.ENGINE_STOP, {}, "Relay,1#"),
        (CommandType.ENGINE_RESUME, {}, "Relay,0#"),
        (CommandType.REBOOT_DEVICE, {}, "RESET#"),
        (CommandType.POSITION_SINGLE, {}, "WHERE#"),
        (CommandType.POSITION_PERIODIC, {"frequency": 60}, "TIMER,60#"),
        (CommandType.CUSTOM, {"data": "STATUS#"}, "STATUS#"),
    ],
)
def test_the_sms_form_is_the_same_text(type_: CommandType, params: dict, sms: str) -> None:
    command = Command(type=type_, device_id="1", params=params)
    assert drivers.encode_sms("gt06", command) == sms
    assert Gt06Session().expects_answer(command)


@pytest.mark.parametrize(
    ("type_", "params", "reason"),
    [
        (CommandType.POSITION_PERIODIC, {"frequency": 3}, "frequency 3 s is outside 5..18000"),
        (CommandType.CUSTOM, {"data": "A" * 246}, "the command text of 246 characters exceeds gt06's 245"),
        (CommandType.CUSTOM, {"data": "00ff", "hex": True}, "a gt06 command is text"),
        (CommandType.CUSTOM, {"data": "RELAY,1#\n"}, "data has character U+000A at 8"),
    ],
)
def test_bad_commands_are_refused_with_the_reason(type_: CommandType, params: dict, reason: str) -> None:
    with pytest.raises(InvalidCommand, match=re.escape(reason)):
        drivers.check_command("gt06", Command(type=type_, device_id="1", params=params))


# -- limits and detection ------------------------------------------------------------------------


def test_an_oversized_declared_length_does_not_grow_the_buffer_forever() -> None:
    session = Gt06Session()
    session.receive_data(b"\x79\x79\xff\xff" + b"\x00" * (session.max_frame + 10))
    with pytest.raises(DriverError):
        list(session.frames())


def test_auto_detection_picks_gt06_for_a_login() -> None:
    found = detect(LOGIN, Transport.TCP, final=True)
    assert found is not None and getattr(found, "name", None) == "gt06"


def test_a_short_packet_is_named_by_its_type_in_the_error() -> None:
    with pytest.raises(DriverError, match=r"type LOGIN \(0x01\) too short"):
        Gt06Session().decode(frame_bytes(gt06.PacketType.LOGIN, b"\x01\x23", 1), now=NOW)
    with pytest.raises(DriverError, match=r"type GPS_LBS_1 \(0x12\)"):
        Gt06Session().decode(frame_bytes(0x12, b"\x0f\x0a", 1), now=NOW)
