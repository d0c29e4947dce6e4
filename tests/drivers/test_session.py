"""The session every driver shares (the h11 shape): bytes in with ``receive_data``, ``b""`` at the end,
and what they decoded to from ``events``, each with its exact wire bytes; bad input on one channel."""

from __future__ import annotations

from datetime import UTC, datetime

from drivers import Decoded, DriverBug, DriverError, Report, Transport, decode_stream, get

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
IMEI = "868683020419374"
ANONYMOUS = Report(protocol="gps103", device_id=None, event="heartbeat")
OWN = Report(protocol="gps103", device_id="other", event="heartbeat")


def scripted(*answers: Decoded | Exception) -> object:
    """A gps103 session whose decode hook gives ``answers`` in turn (the framer stays gps103's)."""
    session = get("gps103").new_session(Transport.TCP)
    pending = iter(answers)

    def decode(frame: bytes, *, now: datetime) -> Decoded:
        answer = next(pending)
        if isinstance(answer, Exception):
            raise answer
        return answer

    session.decode = decode  # type: ignore[method-assign]
    return session


def test_events_learn_the_login_and_fill_reports_that_have_no_id() -> None:
    session = scripted(Decoded(reports=(ANONYMOUS,)), Decoded(reports=(ANONYMOUS, OWN), device_id=IMEI))
    session.receive_data(b"imei:1;\r\nimei:2;")
    first, second = session.events(now=NOW)
    assert isinstance(first, Decoded) and first.reports == (ANONYMOUS,)
    assert isinstance(second, Decoded) and session.device_id == IMEI
    assert [report.device_id for report in second.reports] == [IMEI, "other"]
    assert first.wire + second.wire == b"imei:1;\r\nimei:2;"  # every byte belongs to one frame


def test_bad_input_is_one_channel_and_the_frames_behind_it_carry_on() -> None:
    session = scripted(
        DriverError("gps103", "malformed", replies=(b"NO",)),
        RuntimeError("a bug"),
        Decoded(reports=(ANONYMOUS,), device_id="x\x01y"),
        Decoded(reports=(OWN,), replies=(b"ON",)),
    )
    session.receive_data(b"a;b;c;d;")
    malformed, bug, bad_id, good = session.events(now=NOW)
    assert isinstance(malformed, DriverError) and malformed.wire == b"a;" and malformed.replies == (b"NO",)
    assert isinstance(bug, DriverBug) and isinstance(bug.__cause__, RuntimeError) and bug.wire == b"b;"
    assert isinstance(bad_id, DriverError) and "device id" in str(bad_id) and session.device_id is None
    assert isinstance(good, Decoded) and good.replies == (b"ON",) and good.wire == b"d;"
    assert session.closed is None


def test_the_end_of_the_stream_decodes_a_last_undelimited_frame_and_closes() -> None:
    session = get("gps103").new_session(Transport.TCP)
    session.receive_data(f"##,imei:{IMEI},A;{IMEI}".encode())
    (login,) = session.events(now=NOW)
    assert isinstance(login, Decoded) and login.replies == (b"LOAD",)
    session.receive_data(b"")
    (heartbeat,) = session.events(now=NOW)
    assert isinstance(heartbeat, Decoded) and heartbeat.wire == IMEI.encode()
    assert session.closed == "the stream ended"
    session.receive_data(b"late")
    (late,) = session.events(now=NOW)
    assert isinstance(late, DriverError) and late.close and late.wire == b"late"


def test_an_unframeable_stream_is_one_closing_error_with_all_its_bytes() -> None:
    session = get("h02").new_session(Transport.TCP)
    data = b"*HQ," + b"1" * (session.max_frame + 10)
    session.receive_data(data)
    (error,) = session.events(now=NOW)
    assert isinstance(error, DriverError) and error.close and error.wire == data
    assert session.buffered == 0 and session.held_bytes == 0


def test_http_bad_requests_carry_their_400_and_close_when_asked() -> None:
    session = get("osmand").new_session(Transport.TCP)
    session.receive_data(b"GET /?lat=1&lon=2 HTTP/1.1\r\nHost: x\r\n\r\nGET /?id=7&lat=1&lon=2 HTTP/1.1\r\n")
    session.receive_data(b"Connection: close\r\n\r\n")
    rejected, accepted = session.events(now=NOW)
    assert isinstance(rejected, DriverError) and rejected.replies[0].startswith(b"HTTP/1.1 400")
    assert not rejected.close
    assert isinstance(accepted, Decoded) and accepted.close and session.closed is not None


def test_decode_stream_is_the_relays_path_for_a_whole_stream() -> None:
    stream = [b"HELLO?\r\n", f"##,imei:{IMEI},A;".encode(), f"{IMEI};".encode()]
    result = decode_stream(stream, now=NOW)
    assert result.protocol == "gps103" and result.skipped == b"HELLO?\r\n"
    assert [report.device_id for report in result.reports] == [IMEI, IMEI]
    assert result.replies == [b"LOAD", b"ON"]
    assert decode_stream([b"nothing at all"], now=NOW).protocol is None


def test_noise_after_a_frame_is_bounded_and_closes_the_stream() -> None:
    session = get("watch").new_session(Transport.TCP)
    session.receive_data(b"[3G*8308406279*0008*LK,0,0,84]")
    (heartbeat,) = session.events(now=NOW)
    assert isinstance(heartbeat, Decoded)
    events: list[Decoded | DriverError] = []
    for _ in range(40):  # a peer that keeps sending bytes that are no frame
        session.receive_data(b"x" * 16384)
        events += session.events(now=NOW)
        assert session.held_bytes <= 2 * session.max_frame + 16384 * 2
    assert any(isinstance(event, DriverError) and event.close for event in events)
    assert session.closed is not None and session.held_bytes == 0


def test_bytes_that_make_no_frame_at_the_end_are_reported_not_dropped() -> None:
    session = get("h02").new_session(Transport.TCP)
    frame = b"*HQ,353505220903211,XT,1,100#"
    session.receive_data(frame + b"$'\x05 garbage!")
    session.receive_data(b"")
    events = session.events(now=NOW)
    assert b"".join(event.wire for event in events) == frame + b"$'\x05 garbage!"
    assert isinstance(events[-1], DriverError) and b"garbage" in events[-1].wire
