"""tk103: vectors, "(...)" framing with "$...$" text, handshake/login replies, commands, fuzzing."""

from __future__ import annotations

import random
from typing import Any

import pytest

import drivers
from drivers import (
    Command,
    CommandType,
    DriverError,
    FramingError,
    InvalidCommand,
    Match,
    Transport,
    UnsupportedCommand,
    tk103,
)
from drivers.tk103 import Tk103Session, sniff
from tests import vectors
from tests.drivers.streams import feed_frames

NOW = vectors.NOW
NEXT_FRAME = b"(0870"

DEVICE_ROWS = vectors.load("tk103")
DECODER_ROWS = [row for row in DEVICE_ROWS if row.row.get("kind") != "framing"]
FRAMING_ROWS = [row for row in DEVICE_ROWS if row.row.get("kind") == "framing"]
FRAMES = [frame for row in DECODER_ROWS for frame in row.frames()]

#: Reference command type -> (our command, params); rows in the "[begin]sms2,..." form are Traccar's
#: alternative (SMS-relay) encoding, not this protocol's frames.
COMMANDS: dict[str, tuple[CommandType, dict[str, Any]]] = {
    "TYPE_OUTPUT_CONTROL": (CommandType.OUTPUT_CONTROL, {"data": 1}),
    "TYPE_ENGINE_STOP": (CommandType.ENGINE_STOP, {}),
    "TYPE_POSITION_SINGLE": (CommandType.POSITION_SINGLE, {}),
    "TYPE_POSITION_PERIODIC": (CommandType.POSITION_PERIODIC, {"frequency": 60}),
    "TYPE_POSITION_STOP": (CommandType.POSITION_STOP, {}),
    "TYPE_REBOOT_DEVICE": (CommandType.REBOOT_DEVICE, {}),
    "TYPE_CUSTOM": (CommandType.CUSTOM, {"data": "AA00"}),
    "TYPE_GET_VERSION": (CommandType.CUSTOM, {"data": "AP07"}),
    "TYPE_SET_ODOMETER": (CommandType.CUSTOM, {"data": "AX01"}),
}
COMMAND_ROWS = [
    row
    for row in vectors.load("tk103", direction="server_to_device")
    if row.row["frame"].startswith("(") and row.row["expect"]["command_types_in_test"][0] in COMMANDS
]


def _reports(frames: list[bytes]) -> list[dict]:
    session = Tk103Session()
    out = []
    for frame in frames:
        try:
            out.extend(report.to_json() for report in session.decode(frame, now=NOW).reports)
        except DriverError as error:
            out.append({"error": str(error)})
    return out


class TestReferenceFramesAndCommands:
    @pytest.mark.parametrize("vector", FRAMING_ROWS, ids=lambda vector: vector.id)
    def test_framer_cuts_the_first_frame_the_reference_cuts(self, vector: vectors.Vector) -> None:
        frames, _ = feed_frames(Tk103Session(), vector.frames())
        assert frames[0] == vector.row["expect"]["first_frame"].encode("latin-1")

    @pytest.mark.parametrize("vector", COMMAND_ROWS, ids=lambda vector: vector.id)
    def test_command_encodings_match_the_reference(self, vector: vectors.Vector) -> None:
        kind, params = COMMANDS[vector.row["expect"]["command_types_in_test"][0]]
        command = Command(type=kind, device_id="123456789012345", params=params)
        assert Tk103Session().encode(command) == vector.frames()[0]

    def test_every_vector_frame_is_tk103_to_the_sniffer(self) -> None:
        for frame in FRAMES:
            assert sniff(frame, Transport.TCP) is Match.YES, frame
            found = drivers.detect(frame, Transport.TCP, final=True)
            assert isinstance(found, drivers.Driver) and found.name == "tk103"


class TestFraming:
    @pytest.mark.parametrize("frame", FRAMES, ids=lambda frame: frame[:20].decode("latin-1"))
    def test_whole_bytewise_and_split_feeding_give_the_same_reports(self, frame: bytes) -> None:
        whole, _ = feed_frames(Tk103Session(), [frame])
        assert whole == [frame]
        expected = _reports(whole)
        bytewise, _ = feed_frames(Tk103Session(), [frame[i : i + 1] for i in range(len(frame))])
        assert _reports(bytewise) == expected
        rng = random.Random(len(frame))
        for _ in range(3):
            cuts = sorted(rng.sample(range(1, len(frame)), 4))
            chunks = [frame[a:b] for a, b in zip([0, *cuts], [*cuts, len(frame)], strict=True)]
            assert feed_frames(Tk103Session(), chunks)[0] == [frame]

    @pytest.mark.parametrize("frame", FRAMES, ids=lambda frame: frame[:20].decode("latin-1"))
    def test_trailing_bytes_of_the_next_frame_stay_buffered(self, frame: bytes) -> None:
        frames, session = feed_frames(Tk103Session(), [frame + NEXT_FRAME])
        assert frames == [frame]
        assert session.buffered == len(NEXT_FRAME)

    def test_parenthesis_inside_dollar_text_does_not_end_the_frame(self) -> None:
        frame = b"(864755555555555,ZC03,191117,234421,$Version (2016) ok)$)"
        frames, _ = feed_frames(Tk103Session(), [b"noise)" + frame + b"(0"])
        assert frames == [frame]
        report = Tk103Session().decode(frame, now=NOW).reports[0]
        assert report.attributes["result"] == "Version (2016) ok)"

    def test_an_endless_frame_is_a_framing_error(self) -> None:
        session = Tk103Session()
        session.receive_data(b"(1234" + b"5" * session.max_frame)
        with pytest.raises(FramingError):
            list(session.frames())


class TestDecoding:
    def test_handshake_is_answered_ap01hso(self) -> None:
        result = Tk103Session().decode(b"(087073005534BP00HSO)", now=NOW)
        assert result.replies == (b"(087073005534AP01HSO)",)
        assert result.reports[0].event == "heartbeat"

    def test_login_is_answered_ap05_and_carries_the_position(self) -> None:
        frame = (
            b"(088047365460BP05354188047365460150929A3258.1754S02755.4323E009.4193927301.9000000000L00000000)"
        )
        result = Tk103Session().decode(frame, now=NOW)
        assert result.replies == (b"(088047365460AP05)",)
        report = result.reports[0]
        assert report.event == "login" and report.attributes["imei"] == "354188047365460"
        assert report.lat == pytest.approx(-32.96959, abs=1e-5)
        assert report.speed_kmh == pytest.approx(9.4)

    @pytest.mark.parametrize(("digit", "alarm"), [("1", "accident"), ("2", "sos"), ("5", "overspeed")])
    def test_bo01_alarm_digit_names_the_alarm(self, digit: str, alarm: str) -> None:
        frame = f"(013612345678BO01{digit}130520A3439.9629S05826.3504W000.1175622323.8700000000L000450AC)"
        report = Tk103Session().decode(frame.encode(), now=NOW).reports[0]
        assert report.alarms == (alarm,)
        assert report.event == "alarm"

    def test_classic_status_characters_and_temperature(self) -> None:
        frame = b"(088046338039BR00160727A3354.7768N03540.7258E000.0140832068.4701000000L00BEB0D4+017.7)"
        report = Tk103Session().decode(frame, now=NOW).reports[0]
        assert report.attributes["ignition"] is True
        assert report.attributes["odometer_m"] == 0xBEB0D4
        assert report.attributes["temperature_c"] == 17.7
        assert report.course_deg == pytest.approx(68.47)

    def test_battery_report_skips_unmeasured_values(self) -> None:
        report = (
            Tk103Session().decode(b"(864768010159785,ZC20,291015,030413,3,362,65535,255)", now=NOW).reports[0]
        )
        assert report.attributes == {"battery_pct": 20, "battery_v": 3.62}

    @pytest.mark.parametrize("frame", [b"(123)", b"(AB", b"hello", b"(013612345678BR00,1,x)"])
    def test_malformed_frames_raise_driver_error_or_are_kept_as_messages(self, frame: bytes) -> None:
        try:
            result = Tk103Session().decode(frame, now=NOW)
        except DriverError:
            return
        assert all(report.lat is None for report in result.reports)

    def test_bad_coordinates_raise_driver_error(self) -> None:
        frame = b"(864755555555555,DW3B,131117,A,5562.02870N,01348.08194E,1.597,223707,291.65,-0.10,4)"
        with pytest.raises(DriverError, match="minutes"):
            Tk103Session().decode(frame, now=NOW)


class TestCommands:
    def test_engine_resume(self) -> None:
        command = Command(type=CommandType.ENGINE_RESUME, device_id="123456789012")
        assert Tk103Session().encode(command) == b"(123456789012AV011)"

    def test_interval_out_of_range_is_refused(self) -> None:
        command = Command(type=CommandType.POSITION_PERIODIC, device_id="1", params={"frequency": 70000})
        with pytest.raises(InvalidCommand, match=r"frequency 70000 s is outside 1\.\.65535"):
            Tk103Session().encode(command)

    def test_unknown_command_is_refused(self) -> None:
        with pytest.raises(UnsupportedCommand):
            Tk103Session().encode(Command(type=CommandType.REQUEST_PHOTO, device_id="1"))


class TestSniffing:
    @pytest.mark.parametrize("head", [b"(08", b"(087073005534", b"(868822040452227,DW"])
    def test_partial_header_asks_for_more(self, head: bytes) -> None:
        assert sniff(head, Transport.TCP) is Match.MORE

    @pytest.mark.parametrize(
        "head", [b"[3G*", b"*HQ,", b"(hello world, this is not it)", b"x" * 80 + b"(0870"]
    )
    def test_other_bytes_are_refused(self, head: bytes) -> None:
        assert sniff(head, Transport.TCP) is Match.NO


# -- alarm codes, one frame per code and layout ----------------------------------------------------

ID = "013612345678"
IMEI = "864768010159785"
#: The packed position after the type's data, and the comma one (ddmmyy first).
PACKED = "130520A3439.9629S05826.3504W000.1175622323.8700000000L000450AC"
COMMA = "200513,A,3439.9629S,05826.3504W,0.1,175622,323.87"

#: Every (type, data) -> alarm Traccar maps: BO01 and BQ81 by their digit, the rest by type.
ALARM_CASES = [
    *[("BO01", digit, alarm) for digit, alarm in tk103.BO01_ALARMS.items()],
    *[("BQ81", digit, alarm) for digit, alarm in tk103.BQ81_ALARMS.items()],
    # DW5x types are cell/WiFi reports (test_cell_and_wifi_reports_carry_their_types_alarm).
    *[(kind, "", alarm) for kind, alarm in tk103.TYPE_ALARMS.items() if not kind.startswith("DW5")],
]
#: Layouts a type's alarm travels in, as frame builders of (type, alarm digit).
LAYOUTS = {
    "packed": lambda kind, digit: f"({ID}{kind}{digit}{PACKED})",
    "packed ALARM keyword": lambda kind, digit: f"({ID}{kind},ALARM,{digit or 0},164,{PACKED})",
    "comma ALARM keyword": lambda kind, digit: f"({IMEI},{kind},ALARM,{digit or 0},164,{COMMA})",
}


def _alarm_params() -> list[Any]:
    params = []
    for kind, digit, alarm in ALARM_CASES:
        for layout in LAYOUTS:
            params.append(pytest.param(layout, kind, digit, alarm, id=f"{layout}-{kind}{digit}"))
        if not digit:  # type-only alarms also come comma-separated, and DW5x as cell/WiFi reports
            params.append(pytest.param("comma", kind, digit, alarm, id=f"comma-{kind}"))
    return params


def _decode_one(frame: str) -> Any:
    (report,) = Tk103Session().decode(frame.encode(), now=NOW).reports
    return report


class TestAlarmCodes:
    @pytest.mark.parametrize(("layout", "kind", "digit", "alarm"), _alarm_params())
    def test_every_mapped_alarm_is_named_with_its_position(
        self, layout: str, kind: str, digit: str, alarm: str
    ) -> None:
        frame = f"({IMEI},{kind},{COMMA})" if layout == "comma" else LAYOUTS[layout](kind, digit)
        report = _decode_one(frame)
        assert report.alarms == (alarm,)
        assert report.event == "alarm"
        assert report.lat == pytest.approx(-34.66605, abs=1e-5)
        assert report.lon == pytest.approx(-58.43917, abs=1e-5)

    @pytest.mark.parametrize("kind", sorted(k for k in tk103.TYPE_ALARMS if k.startswith("DW5")))
    def test_cell_and_wifi_reports_carry_their_types_alarm(self, kind: str) -> None:
        frame = f"({IMEI},{kind},460,0,9520,3671,1,00:11:22:33:44:55*-70*6,200513,175622)"
        report = _decode_one(frame)
        assert report.alarms == (tk103.TYPE_ALARMS[kind],) and report.attributes["cid"] == 3671

    @pytest.mark.parametrize("layout", list(LAYOUTS))
    @pytest.mark.parametrize(("kind", "digit"), [("BO01", "0"), ("BO01", "7"), ("BQ81", "6"), ("BQ81", "9")])
    def test_an_unknown_alarm_digit_raises_no_alarm_but_keeps_the_position(
        self, layout: str, kind: str, digit: str
    ) -> None:
        report = _decode_one(LAYOUTS[layout](kind, digit))
        assert report.alarms == ()
        assert report.event == "position"
        assert report.lat == pytest.approx(-34.66605, abs=1e-5)

    def test_bq81_reads_its_whole_number_so_12_is_no_alarm(self) -> None:
        assert _decode_one(f"({ID}BQ8112{PACKED})").alarms == ()

    def test_the_reference_bq81_keyword_sample_is_overspeed(self) -> None:
        # Traccar's Tk103ProtocolDecoderTest sample for the ",ALARM," form.
        frame = "(044027395704BQ81,ALARM,1,164,151101A2238.5237N11349.4571E0.7031241010.0000,00000000)"
        report = _decode_one(frame)
        assert report.alarms == ("overspeed",)
        assert report.lat == pytest.approx(22.64206, abs=1e-5)

    @pytest.mark.parametrize(
        ("kind", "ignition"), sorted(item for item in tk103.TYPE_IGNITION.items() if item[0][:3] != "DW5")
    )
    def test_ignition_types_set_ignition_and_raise_no_alarm(self, kind: str, ignition: bool) -> None:
        report = _decode_one(f"({IMEI},{kind},{COMMA})")
        assert report.alarms == () and report.attributes["ignition"] is ignition
