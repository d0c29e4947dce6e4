"""watch: vectors, bracket-balanced framing with escapes, replies (with and without index), commands, fuzz."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import drivers
from drivers import Command, CommandType, DriverError, FramingError, Match, Transport, UnsupportedCommand
from drivers.watch import WatchSession, escape, sniff, unescape
from tests import vectors
from tests.drivers.streams import feed_frames

NOW = vectors.NOW
NEXT_FRAME = b"[3G*12"

DEVICE_ROWS = vectors.load("watch")
DECODER_ROWS = [row for row in DEVICE_ROWS if row.row.get("kind") != "framing"]
FRAMING_ROWS = [row for row in DEVICE_ROWS if row.row.get("kind") == "framing"]
FRAMES = [frame for row in DECODER_ROWS for frame in row.frames()]
COMMAND_FRAMES = {
    frame for row in vectors.load("watch", direction="server_to_device") for frame in row.frames()
}
IMEI = "123456789012345"
WORK = "WORK,6-9,11-13,13-15,17-19"

#: Our command for each reference encoding.
COMMANDS: list[tuple[CommandType, dict[str, Any], bytes]] = [
    (CommandType.REBOOT_DEVICE, {}, b"[CS*123456789012345*0005*RESET]"),
    (CommandType.SOS_NUMBER, {"index": 1, "phone": "123456789"}, b"[CS*123456789012345*000e*SOS1,123456789]"),
    (CommandType.MESSAGE, {"message": "text"}, b"[CS*123456789012345*0018*MESSAGE,0074006500780074]"),
    (CommandType.VOICE_MESSAGE, {"data": b"#!AMR\n%s".hex()}, b"[CS*123456789012345*000b*TK,#!AMR\n%s]"),
    (
        CommandType.VOICE_MESSAGE,
        {"data": b"}[],*".hex()},
        b"[CS*123456789012345*000d*TK,}\x01}\x02}\x03}\x04}\x05]",
    ),
    (CommandType.VOICE_MESSAGE, {"data": "ff"}, b"[CS*123456789012345*0004*TK,\xff]"),
    (CommandType.CUSTOM, {"data": WORK}, b"[CS*123456789012345*001a*" + WORK.encode() + b"]"),
    (CommandType.SET_TIMEZONE, {"timezone": 1}, b"[CS*123456789012345*0006*LZ,,+1]"),
    (CommandType.SET_TIMEZONE, {"timezone": 1.5}, b"[CS*123456789012345*0008*LZ,,+1.5]"),
    (CommandType.SET_TIMEZONE, {"timezone": -1}, b"[CS*123456789012345*0006*LZ,,-1]"),
    (CommandType.SET_TIMEZONE, {"timezone": -11.5}, b"[CS*123456789012345*0009*LZ,,-11.5]"),
    (CommandType.SET_TIMEZONE, {"timezone": 5.75, "language": "0"}, b"[CS*123456789012345*000a*LZ,0,+5.75]"),
]  # fmt: skip


def _reports(frames: list[bytes]) -> list[dict]:
    session = WatchSession()
    out = []
    for frame in frames:
        try:
            result = session.decode(frame, now=NOW)
        except DriverError as error:
            out.append({"error": str(error)})
            continue
        out.extend(report.to_json() for report in result.reports)
        out.append({"replies": result.replies})
    return out


class TestReferenceFramesAndCommands:
    @pytest.mark.parametrize("vector", FRAMING_ROWS, ids=lambda vector: vector.id)
    def test_framer_cuts_the_first_frame_the_reference_cuts(self, vector: vectors.Vector) -> None:
        expect = vector.row["expect"]
        first = expect["first_frame"]
        wanted = bytes.fromhex(first) if expect["first_frame_encoding"] == "hex" else first.encode("latin-1")
        frames, _ = feed_frames(WatchSession(), vector.frames())
        assert unescape(frames[0]) == wanted  # the reference framer hands on unescaped bytes

    @pytest.mark.parametrize(("kind", "params", "expected"), COMMANDS, ids=lambda value: str(value)[:30])
    def test_command_encodings_match_the_reference(
        self, kind: CommandType, params: dict, expected: bytes
    ) -> None:
        assert expected in COMMAND_FRAMES
        assert WatchSession().encode(Command(type=kind, device_id=IMEI, params=params)) == expected

    def test_every_reference_command_is_checked(self) -> None:
        assert {expected for _, _, expected in COMMANDS} == COMMAND_FRAMES


class TestFraming:
    @pytest.mark.parametrize("frame", FRAMES, ids=lambda frame: frame[:24].decode("latin-1"))
    def test_whole_bytewise_and_split_feeding_give_the_same_reports(self, frame: bytes) -> None:
        whole, _ = feed_frames(WatchSession(), [frame])
        assert whole == [frame]
        expected = _reports(whole)
        bytewise, _ = feed_frames(WatchSession(), [frame[i : i + 1] for i in range(len(frame))])
        assert bytewise == [frame]
        rng = random.Random(len(frame))
        for _ in range(3):
            cuts = sorted(rng.sample(range(1, len(frame)), 4))
            chunks = [frame[a:b] for a, b in zip([0, *cuts], [*cuts, len(frame)], strict=True)]
            split, _ = feed_frames(WatchSession(), chunks)
            assert _reports(split) == expected

    @pytest.mark.parametrize("frame", FRAMES, ids=lambda frame: frame[:24].decode("latin-1"))
    def test_trailing_bytes_of_the_next_frame_stay_buffered(self, frame: bytes) -> None:
        frames, session = feed_frames(WatchSession(), [frame + NEXT_FRAME])
        assert frames == [frame]
        assert session.buffered == len(NEXT_FRAME)

    def test_brackets_in_a_wifi_name_do_not_end_the_frame(self) -> None:
        frame = b"[3G*1234567890*0012*WT,x,[my wifi],y]"
        frames, _ = feed_frames(WatchSession(), [b"noise" + frame + frame])
        assert frames == [frame, frame]

    def test_length_field_ends_a_frame_whose_content_has_an_unbalanced_bracket(self) -> None:
        frame = b"[3G*1234567890*0008*UD,a[b,c]"
        frames, session = feed_frames(WatchSession(), [frame + NEXT_FRAME])
        assert frames == [frame]
        assert session.buffered == len(NEXT_FRAME)

    def test_escaped_binary_is_unescaped_for_decoding(self) -> None:
        audio = bytes(range(256))
        frame = b"[CS*1234567890*0103*TK," + escape(audio) + b"]"
        frames, _ = feed_frames(WatchSession(), [frame[i : i + 7] for i in range(0, len(frame), 7)])
        assert frames == [frame]
        report = WatchSession().decode(frame, now=NOW).reports[0]
        assert report.media == audio and report.media_type == "audio/amr"

    def test_a_large_photo_arriving_in_small_chunks_is_scanned_once(self) -> None:
        photo = bytes(random.Random(1).randrange(256) for _ in range(150_000))
        frame = b"[3G*1234567890*0000*img,5,231123120000," + escape(photo) + b"]"
        started = time.perf_counter()
        frames, _ = feed_frames(WatchSession(), [frame[i : i + 512] for i in range(0, len(frame), 512)])
        assert time.perf_counter() - started < 5
        assert frames == [frame]
        assert WatchSession().decode(frame, now=NOW).reports[0].media == photo

    def test_an_endless_frame_is_a_framing_error(self) -> None:
        session = WatchSession()
        session.receive_data(b"[3G*1234567890*0002*" + b"x" * session.max_frame)
        with pytest.raises(FramingError):
            list(session.frames())

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(st.binary(max_size=200))
    def test_escape_round_trips(self, data: bytes) -> None:
        escaped = escape(data)
        assert not set(escaped) & set(b"[],*")
        assert unescape(escaped) == data


class TestDecoding:
    def test_replies_carry_the_devices_index(self) -> None:
        frame = b"[ZJ*014111001350304*0033*0009*LK,0,0,53]"
        result = WatchSession().decode(frame, now=NOW)
        assert result.replies == (b"[ZJ*014111001350304*0033*0002*LK]",)

    def test_init_and_tkq_are_answered(self) -> None:
        session = WatchSession()
        assert session.decode(b"[3G*1234567890*0004*INIT]", now=NOW).replies == (
            b"[3G*1234567890*0006*INIT,1]",
        )
        assert session.decode(b"[3G*1234567890*0004*TKQ2]", now=NOW).replies == (
            b"[3G*1234567890*0004*TKQ2]",
        )

    def test_voice_chunks_are_assembled_and_each_is_acknowledged(self) -> None:
        session = WatchSession()
        first = session.decode(b"[3G*1234567890*0013*JXTK,1,1,1,2,ab]", now=NOW)
        assert first.reports == () and first.replies == (b"[3G*1234567890*0007*JXTKR,1]",)
        last = session.decode(b"[3G*1234567890*0013*JXTK,1,1,2,2,cd]", now=NOW)
        assert last.reports[0].media == b"abcd"

    def test_status_bits_become_alarms_and_motion(self) -> None:
        frame = (
            b"[3G*1234567890*0050*UD,220414,134652,A,22.571707,N,113.8613968,E,"
            b"0.1,0.0,100,7,60,90,1000,50,00110011,0]"
        )
        report = WatchSession().decode(frame, now=NOW).reports[0]
        assert set(report.alarms) == {"lowBattery", "sos", "removing"}
        assert report.attributes["motion"] is True
        assert report.event == "alarm"

    def test_commands_follow_the_devices_maker_and_index(self) -> None:
        session = WatchSession()
        session.decode(b"[ZJ*014111001350304*0033*0002*LK]", now=NOW)
        reboot = Command(type=CommandType.REBOOT_DEVICE, device_id="014111001350304")
        assert session.encode(reboot) == b"[ZJ*014111001350304*0001*0005*RESET]"

    def test_unknown_command_is_refused(self) -> None:
        with pytest.raises(UnsupportedCommand):
            WatchSession().encode(Command(type=CommandType.ENGINE_STOP, device_id="1"))

    @pytest.mark.parametrize(
        "frame", [b"[3G*1*0002*LK", b"[3G1*0002*LK]", b"[3G*1234567890*0010*UD,1,2,3]", b"[3G*1*0009*img,1]"]
    )
    def test_malformed_frames_raise_driver_error(self, frame: bytes) -> None:
        with pytest.raises(DriverError):
            WatchSession().decode(frame, now=NOW)


class TestSniffing:
    @pytest.mark.parametrize("head", [b"[", b"[3", b"[3G*", b"[3G*12345"])
    def test_partial_header_asks_for_more(self, head: bytes) -> None:
        assert sniff(head, Transport.TCP) is Match.MORE

    @pytest.mark.parametrize("head", [b"(087", b"[3G-", b"[**", b"[3G**"])
    def test_other_bytes_are_refused(self, head: bytes) -> None:
        assert sniff(head, Transport.TCP) is Match.NO

    def test_every_vector_frame_is_watch_to_the_registry(self) -> None:
        for frame in FRAMES:
            found = drivers.detect(frame, Transport.TCP, final=True)
            assert isinstance(found, drivers.Driver) and found.name == "watch"
