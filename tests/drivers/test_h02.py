"""h02: vectors, framing of text/binary/X frames, the pt502 "$" conflict, replies, commands, fuzzing."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

import drivers
from drivers import Command, CommandType, DriverError, FramingError, Match, Transport, UnsupportedCommand
from drivers.h02 import BINARY_FRAME, H02Session, sniff
from tests import vectors
from tests.drivers.streams import feed_frames

NOW = vectors.NOW
DEVICE_ROWS = vectors.load("h02")
DECODER_ROWS = [row for row in DEVICE_ROWS if row.row.get("kind") != "framing"]
FRAMING_ROWS = [row for row in DEVICE_ROWS if row.row.get("kind") == "framing"]
COMMAND_ROWS = vectors.load("h02", direction="server_to_device")
FRAMES = [frame for row in DECODER_ROWS for frame in row.frames()]
PT502_FRAMES = [frame for row in vectors.load("pt502") for frame in row.frames()]
#: The first bytes of another frame, to show they are left in the buffer.
NEXT_FRAME = b"*HQ,41"


def _reports(session: H02Session, frames: list[bytes]) -> list[dict]:
    out = []
    for frame in frames:
        try:
            out.extend(report.to_json() for report in session.decode(frame, now=NOW).reports)
        except DriverError as error:
            out.append({"error": str(error)})
    return out


def _splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, 5)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


class TestReferenceFramesAndCommands:
    @pytest.mark.parametrize("vector", FRAMING_ROWS, ids=lambda vector: vector.id)
    def test_framer_cuts_the_first_frame_the_reference_cuts(self, vector: vectors.Vector) -> None:
        expect = vector.row["expect"]
        first = expect["first_frame"]
        wanted = bytes.fromhex(first) if expect["first_frame_encoding"] == "hex" else first.encode("latin-1")
        session = H02Session()
        session.receive_data(vector.frames()[0] + NEXT_FRAME)
        assert next(session.frames()) == wanted

    @pytest.mark.parametrize("vector", COMMAND_ROWS, ids=lambda vector: vector.id)
    def test_command_encodings_match_the_reference(self, vector: vectors.Vector) -> None:
        types = {
            "TYPE_ALARM_ARM": (CommandType.ALARM_ARM, {}),
            "TYPE_ALARM_DISARM": (CommandType.ALARM_DISARM, {}),
            "TYPE_ENGINE_STOP": (CommandType.ENGINE_STOP, {}),
            "TYPE_ENGINE_RESUME": (CommandType.ENGINE_RESUME, {}),
            "TYPE_POSITION_PERIODIC": (CommandType.POSITION_PERIODIC, {"frequency": 10}),
        }
        kind, params = types[vector.row["expect"]["command_types_in_test"][0]]
        # The reference encoder ran at 01:02:03.
        command = Command(type=kind, device_id="123456789012345", params=params)
        assert H02Session().encode(command, now=NOW.replace(hour=1, minute=2, second=3)) == vector.frames()[0]


class TestFraming:
    @pytest.mark.parametrize("frame", FRAMES, ids=lambda frame: frame[:12].hex())
    def test_whole_bytewise_and_split_feeding_give_the_same_reports(self, frame: bytes) -> None:
        whole, _ = feed_frames(H02Session(), [frame])
        expected = _reports(H02Session(), whole)
        assert expected and "error" not in expected[0]
        bytewise, _ = feed_frames(H02Session(), [frame[i : i + 1] for i in range(len(frame))])
        assert _reports(H02Session(), bytewise) == expected
        for seed in range(3):
            split, _ = feed_frames(H02Session(), _splits(frame, seed))
            assert _reports(H02Session(), split) == expected

    @pytest.mark.parametrize("frame", FRAMES, ids=lambda frame: frame[:12].hex())
    def test_trailing_bytes_of_the_next_frame_stay_buffered(self, frame: bytes) -> None:
        frames, session = feed_frames(H02Session(), [frame + NEXT_FRAME])
        assert frames == [frame]
        assert session.buffered == len(NEXT_FRAME)

    def test_binary_extension_bytes_stay_with_their_frame_when_they_arrive_together(self) -> None:
        long = bytes.fromhex(
            "2441090013450831250401145047888000008554650e000000fffff9ffff001006000000000106020299109c01"
        )
        frames, _ = feed_frames(H02Session(), [long + long])
        assert frames == [long, long]

    def test_a_lone_32_byte_frame_is_cut_without_waiting_for_more(self) -> None:
        short = bytes.fromhex("2441060116601245431311165035313006004318210e000000fffffbffff0024")
        assert len(short) == BINARY_FRAME
        frames, session = feed_frames(H02Session(), [short])
        assert frames == [short]
        assert session.buffered == 0

    def test_noise_and_line_ends_between_frames_are_skipped(self) -> None:
        text = b"*HQ,4210051415,V1,164549,A,0956.3869,N,08406.7068,W,000.00,000,221215,FFFFFBFF#"
        frames, session = feed_frames(H02Session(), [b"\r\n\x00garbage" + text + b"\r\n" + text])
        assert frames == [text, text]
        assert session.buffered == 0

    def test_an_endless_text_frame_is_a_framing_error(self) -> None:
        session = H02Session()
        session.receive_data(b"*HQ," + b"1" * (session.max_frame + 1))
        with pytest.raises(FramingError):
            list(session.frames())


class TestSniffing:
    @pytest.mark.parametrize("frame", PT502_FRAMES, ids=lambda frame: frame[:10].hex())
    def test_pt502_frames_are_never_h02(self, frame: bytes) -> None:
        for end in range(1, min(len(frame), 40) + 1):
            assert sniff(frame[:end], Transport.TCP) is not Match.YES
        found = drivers.detect(frame, Transport.TCP, final=True)
        assert isinstance(found, drivers.Driver) and found.name == "pt502"

    @pytest.mark.parametrize("frame", FRAMES, ids=lambda frame: frame[:10].hex())
    def test_h02_frames_are_h02_and_never_pt502(self, frame: bytes) -> None:
        assert sniff(frame, Transport.TCP) is Match.YES
        assert drivers.get("pt502").sniff(frame, Transport.TCP) is not Match.YES
        found = drivers.detect(frame, Transport.TCP, final=True)
        assert isinstance(found, drivers.Driver) and found.name == "h02"

    def test_binary_frame_asks_for_more_until_its_layout_is_certain(self) -> None:
        frame = bytes.fromhex("2441060116601245431311165035313006004318210e000000fffffbffff0024")
        verdicts = [sniff(frame[:end], Transport.TCP) for end in range(1, len(frame) + 1)]
        assert verdicts[0] is Match.MORE
        assert Match.NO not in verdicts
        assert verdicts[-1] is Match.YES

    @pytest.mark.parametrize(
        "head", [b"$POS,", b"$PHO3821-1,", b"$FUS865456055519122,H", b"$GPRMC,", b"$\x9a", b"*H#", b"X,"]
    )
    def test_text_dollar_sentences_and_junk_are_refused(self, head: bytes) -> None:
        assert sniff(head, Transport.TCP) is Match.NO


class TestDecoding:
    def test_text_position_in_all_three_coordinate_forms(self) -> None:
        session = H02Session()
        frames = [
            b"*HQ,1,V1,121557,A,2335.3408,S,04802.8926,W,0.1,158,241115,FFFFFFFF#",
            b"*HQ,1,V1,121557,A,23353408,S,048028926,W,0.1,158,241115,FFFFFFFF#",
            b"*HQ,1,V1,121557,A,-23-35.3408,S,-48-2.8926,W,0.1,158,241115,FFFFFFFF#",
        ]
        positions = {(r.lat, r.lon) for f in frames for r in session.decode(f, now=NOW).reports}
        assert len({(round(lat, 6), round(lon, 6)) for lat, lon in positions}) == 1
        lat, lon = positions.pop()
        assert lat == pytest.approx(-23.589013, abs=1e-6)
        assert lon == pytest.approx(-48.04821, abs=1e-6)

    def test_status_bits_are_active_low(self) -> None:
        session = H02Session()
        base = "*HQ,1,V1,121557,A,2335.3408,N,04802.8926,E,10.0,158,241115,{}#"
        quiet = session.decode(base.format("FFFFFFFF").encode(), now=NOW).reports[0]
        assert quiet.alarms == () and quiet.attributes["ignition"] is True
        assert quiet.speed_kmh == pytest.approx(18.52)
        loud = session.decode(base.format("FFF3FBFC").encode(), now=NOW).reports[0]
        assert set(loud.alarms) == {"vibration", "sos", "powerCut"}
        assert loud.attributes["ignition"] is False

    def test_v1_is_answered_with_the_time_of_now(self) -> None:
        frame = b"*HQ,4210051415,V1,164549,A,0956.3869,N,08406.7068,W,000.00,000,221215,FFFFFBFF#"
        now = datetime(2024, 2, 3, 4, 5, 6, tzinfo=UTC)
        assert H02Session().decode(frame, now=now).replies == (b"*HQ,4210051415,V4,V1,20240203040506#",)

    def test_heartbeat_is_echoed_up_to_its_type(self) -> None:
        result = H02Session().decode(b"*HQ,135790246811220,HTBT,87#", now=NOW)
        assert result.replies == (b"*HQ,135790246811220,HTBT#",)
        assert result.reports[0].event == "heartbeat"
        assert result.reports[0].attributes == {"battery_pct": 87}

    def test_v4_answer_keeps_the_command_result(self) -> None:
        frame = (
            b"*TH,2020916012,V4,S20,DONE,130305,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,F7FFFBFF#"
        )
        report = H02Session().decode(frame, now=NOW).reports[0]
        assert report.event == "commandResult" and report.lat is not None
        assert report.attributes["result"] == "S20,DONE,130305"
        assert report.time == datetime(2002, 9, 22, 5, 3, 16, tzinfo=UTC)

    def test_long_id_binary_frame_reads_a_15_digit_imei(self) -> None:
        frame = bytes.fromhex(
            "2435248308419329301047591808172627335900074412294e024138feffffffff01120064ba73005ecc"
        )
        report = H02Session().decode(frame, now=NOW).reports[0]
        assert report.device_id == "352483084193293"
        assert report.speed_kmh == pytest.approx(24 * 1.852)
        assert report.course_deg == 138

    def test_position_without_a_fix_is_a_status_report(self) -> None:
        frame = b"*HQ,353588020068342,V1,000000,V,0.0000,0,0.0000,0,0.00,0.00,000000,ffffffff#"
        report = H02Session().decode(frame, now=NOW).reports[0]
        assert report.event == "status" and report.lat is None

    @pytest.mark.parametrize(
        "frame",
        [b"*HQ,1,V1,121557,A,2335.3408,N#", b"*HQ,abc,V1#", b"*HQ#", b"$" + b"\x41" * 31, b"hello"],
    )
    def test_malformed_frames_raise_driver_error(self, frame: bytes) -> None:
        with pytest.raises(DriverError):
            H02Session().decode(frame, now=NOW)


class TestCommands:
    def test_time_field_is_the_relays_clock_or_a_placeholder(self) -> None:
        session = H02Session()
        stop = Command(type=CommandType.ENGINE_STOP, device_id="4210051415")
        assert session.encode(stop) == b"*HQ,4210051415,S20,000000,1,1#"
        assert session.encode(stop, now=datetime(2024, 1, 1, 13, 14, 15, tzinfo=UTC)) == (
            b"*HQ,4210051415,S20,131415,1,1#"
        )
        session.receive_data(b"*HQ,4210051415,HTBT,87#")
        session.events(now=datetime(2024, 1, 1, 20, 0, 1, tzinfo=UTC))
        assert session.encode(stop) == b"*HQ,4210051415,S20,200001,1,1#"

    def test_custom_text_is_framed(self) -> None:
        command = Command(type=CommandType.CUSTOM, device_id="4210051415", params={"data": "S26,000000"})
        assert H02Session().encode(command) == b"*HQ,4210051415,S26,000000#"

    def test_unknown_command_is_refused(self) -> None:
        with pytest.raises(UnsupportedCommand):
            H02Session().encode(Command(type=CommandType.REQUEST_PHOTO, device_id="1"))
