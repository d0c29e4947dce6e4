"""osmand: HTTP/1.1 request framing, the query and JSON forms, and the exact replies."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import (
    Command,
    CommandType,
    Decoded,
    DriverBug,
    DriverError,
    Match,
    Report,
    Transport,
    UnsupportedCommand,
    osmand,
)
from drivers.osmand import REPLY_OK, REPLY_OK_CLOSE, OsmandSession, encode_position
from tests import vectors

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
VECTORS = vectors.load("osmand")
def request(
    target: str = "/?id=7&lat=1.5&lon=2.5", *, method: str = "GET", headers: str = "", body: bytes = b""
) -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"{method} {target} HTTP/1.1\r\nHost: relay\r\n{headers}{length}\r\n".encode() + body


def feed(session: OsmandSession, *chunks: bytes) -> list[Decoded | DriverError]:
    results: list[Decoded | DriverError] = []
    for chunk in chunks:
        session.receive_data(chunk)
        results.extend(session.events(now=NOW))
    return results


def outcome(results: list[Decoded | DriverError]) -> list[tuple[object, ...]]:
    """Results in comparable form (errors by their text)."""
    return [
        (str(result), result.replies, result.close)
        if isinstance(result, DriverError)
        else ([report.to_json() for report in result.reports], result.replies, result.device_id)
        for result in results
    ]


def decode_one(data: bytes) -> Decoded | DriverError:
    session = OsmandSession(Transport.TCP)
    results = feed(session, data)
    assert len(results) == 1
    return results[0]


def only_report(data: bytes) -> dict:
    result = decode_one(data)
    assert isinstance(result, Decoded), result
    assert result.replies == (REPLY_OK,)
    (report,) = result.reports
    return report.to_json()


# -- the shared vectors ------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda vector: vector.id)
def test_vector_is_answered_200_with_its_device_id_or_400_without(vector: vectors.Vector) -> None:
    (frame,) = vector.frames()
    result = decode_one(frame)
    expected_id = vector.row["expect"].get("device_id")
    if expected_id is None:
        assert isinstance(result, DriverError)
        assert result.replies[0].startswith(b"HTTP/1.1 400 Bad Request\r\n")
    else:
        assert result.replies == (REPLY_OK,)
        assert [report.device_id for report in result.reports] == [expected_id]


def test_json_extras_become_attributes_with_their_json_types() -> None:
    (frame,) = VECTORS[1].frames()
    (report,) = decode_one(frame).reports
    assert report.attributes["device_integer_twelve_test"] == 12
    assert report.attributes["device_bool_false_test"] is False
    assert report.attributes["device_string_test"] == "long_device_id"
    assert report.attributes["battery_pct"] == 100.0
    assert report.attributes["trigger"] == "motionchange"


@pytest.mark.parametrize("vector", VECTORS, ids=lambda vector: vector.id)
def test_vector_fed_whole_byte_by_byte_and_split_gives_the_same_result(vector: vectors.Vector) -> None:
    (frame,) = vector.frames()
    whole = feed(OsmandSession(), frame)
    by_byte = feed(OsmandSession(), *(frame[i : i + 1] for i in range(len(frame))))
    rng = random.Random(vector.line)
    cuts = sorted(rng.sample(range(1, len(frame)), 5))
    split = feed(OsmandSession(), *(frame[a:b] for a, b in zip([0, *cuts], [*cuts, len(frame)], strict=True)))
    assert outcome(by_byte) == outcome(whole)
    assert outcome(split) == outcome(whole)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda vector: vector.id)
def test_bytes_of_the_next_request_stay_in_the_buffer(vector: vectors.Vector) -> None:
    (frame,) = vector.frames()
    session = OsmandSession()
    session.receive_data(frame + b"POST /?id=1")
    assert len(list(session.frames())) == 1
    assert session.abandon() == b"POST /?id=1"


# -- sniffing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("head", [b"GET ", b"POST /", b"PUT /x", b"HEAD / HTTP/1.1"])
def test_sniff_claims_http_methods(head: bytes) -> None:
    assert osmand.sniff(head, Transport.TCP) is Match.YES


@pytest.mark.parametrize("head", [b"", b"G", b"PO", b"HEAD"])
def test_sniff_asks_for_more_on_a_method_prefix(head: bytes) -> None:
    assert osmand.sniff(head, Transport.TCP) is Match.MORE


@pytest.mark.parametrize("head", [b"GETX", b"DELETE /", b"get /", b"(0270", b"\x78\x78"])
def test_sniff_refuses_anything_else(head: bytes) -> None:
    assert osmand.sniff(head, Transport.TCP) is Match.NO


# -- keep-alive and closing ----------------------------------------------------------------------


def test_keep_alive_answers_several_requests_on_one_connection() -> None:
    session = OsmandSession()
    stream = request("/?id=1&lat=1&lon=1") + request("/?id=2&lat=2&lon=2") + request("/?id=3&lat=3&lon=3")
    results = feed(session, stream)
    assert [result.reports[0].device_id for result in results] == ["1", "2", "3"]
    assert [result.replies for result in results] == [(REPLY_OK,)] * 3
    assert session.closed is None
    assert session.buffered == 0


def test_blank_lines_between_requests_are_ignored() -> None:
    session = OsmandSession()
    results = feed(session, request() + b"\r\n" + request())
    assert len(results) == 2


def test_connection_close_is_honoured_and_later_bytes_are_refused() -> None:
    session = OsmandSession()
    (result,) = feed(session, request(headers="Connection: close\r\n"))
    assert result.replies == (REPLY_OK_CLOSE,) and result.close
    assert session.closed is not None
    session.receive_data(request())
    (late,) = session.events(now=NOW)
    assert isinstance(late, DriverError) and late.close and "after the stream closed" in str(late)


def test_http_1_0_closes_unless_keep_alive_is_asked_for() -> None:
    plain = decode_one(b"GET /?id=1&lat=1&lon=1 HTTP/1.0\r\n\r\n")
    assert plain.replies == (REPLY_OK_CLOSE,)
    kept = decode_one(b"GET /?id=1&lat=1&lon=1 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    assert kept.replies == (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",)


def test_bare_lf_line_ends_are_accepted() -> None:
    report = only_report(b"GET /?id=9&lat=1&lon=2 HTTP/1.1\nHost: x\n\n")
    assert report["device_id"] == "9"


# -- bodies --------------------------------------------------------------------------------------


def test_form_encoded_post_body_is_decoded_and_overrides_the_query() -> None:
    body = b"id=44&lat=10.5&lon=-20.25&speed=10"
    data = request(
        "/?lat=0&lon=0",
        method="POST",
        headers="Content-Type: application/x-www-form-urlencoded\r\n",
        body=body,
    )
    report = only_report(data)
    assert (report["device_id"], report["lat"], report["lon"]) == ("44", 10.5, -20.25)
    assert report["speed_kmh"] == pytest.approx(18.52)


def test_put_and_head_are_answered_like_get() -> None:
    assert only_report(request(method="PUT"))["device_id"] == "7"
    assert only_report(request(method="HEAD"))["device_id"] == "7"


def test_chunked_json_body_is_reassembled() -> None:
    body = json.dumps({"device_id": "c1", "location": {"coords": {"latitude": 1, "longitude": 2}}}).encode()
    chunked = b"".join(
        f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n" for part in (body[:10], body[10:])
    )
    data = request(
        "/", method="POST", headers="Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
    )
    session = OsmandSession()
    results = feed(session, data + chunked, b"0\r\nX-Trailer: 1\r\n\r\n")
    (result,) = results
    assert result.reports[0].device_id == "c1"
    assert session.buffered == 0


def test_oversized_content_length_is_refused_413_before_the_body_arrives() -> None:
    session = OsmandSession()
    head = request("/", method="POST", headers=f"Content-Length: {OsmandSession.max_frame}\r\n")
    (result,) = feed(session, head + b"{")
    assert isinstance(result, DriverError) and result.close
    assert result.replies[0].startswith(b"HTTP/1.1 413 Payload Too Large\r\n")
    assert b"Connection: close\r\n" in result.replies[0]
    assert session.closed is not None and session.buffered == 0


def test_oversized_chunked_body_is_refused_413_and_the_buffer_stays_bounded() -> None:
    session = OsmandSession()
    session.receive_data(request("/", method="POST", headers="Transfer-Encoding: chunked\r\n"))
    results: list[Decoded | DriverError] = []
    while session.closed is None:
        session.receive_data(b"3e8\r\n" + b"x" * 1000 + b"\r\n")
        results.extend(session.events(now=NOW))
        assert session.buffered <= OsmandSession.max_frame
    (result,) = results
    assert session.buffered == 0
    assert result.replies[0].startswith(b"HTTP/1.1 413 ")


def test_oversized_head_is_refused_431() -> None:
    session = OsmandSession()
    (result,) = feed(session, b"GET /?" + b"a" * osmand.MAX_HEAD)
    assert result.replies[0].startswith(b"HTTP/1.1 431 ")
    assert isinstance(result, DriverError) and result.close


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1\r\n bad: fold\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_unframeable_requests_get_an_error_reply_and_close(data: bytes) -> None:
    session = OsmandSession()
    (result,) = feed(session, data)
    assert isinstance(result, DriverError) and result.close
    assert result.replies[0].split(b" ", 2)[1] in (b"400", b"501", b"505")
    assert b"Connection: close\r\n" in result.replies[0]
    assert session.closed is not None


# -- 400 replies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/?lat=1&lon=2", b"missing id or deviceid"),
        ("/?id=1&lat=abc&lon=2", b"lat 'abc' is not a number"),
        ("/?id=1&lat=91&lon=2", b"lat 91.0 outside -90..90"),
        ("/?id=1&lat=1", b"lat and lon must come together"),
        ("/?id=1&location=1;2", b"bad location"),
        ("/?id=1&lat=nan&lon=2", b"is not a number"),
        ("/?id=1&lat=1&lon=2&timestamp=yesterday", b"bad timestamp"),
        ("/?id=1&lat=1&lon=2&cell=1,2", b"bad cell"),
    ],
)
def test_unusable_request_is_answered_400_and_the_connection_goes_on(target: str, reason: bytes) -> None:
    session = OsmandSession()
    rejected, accepted = feed(session, request(target), request())
    assert isinstance(rejected, DriverError) and not rejected.close
    reply = rejected.replies[0]
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n")
    assert b"Connection" not in reply
    head, body = reply.split(b"\r\n\r\n", 1)
    assert reason in body
    assert f"Content-Length: {len(body)}".encode() in head
    assert session.closed is None
    assert accepted.replies == (REPLY_OK,)


def test_a_400_to_head_has_no_body() -> None:
    result = decode_one(request("/?lat=1", method="HEAD"))
    assert result.replies[0].endswith(b"\r\n\r\n")


# -- the query form --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("1377177267", "2013-08-22T13:14:27Z"),
        ("1442068686579", "2015-09-12T14:38:06.579Z"),
        ("2025-06-15T13:45:12.862Z", "2025-06-15T13:45:12.862Z"),
        ("2025-06-15T15:45:12%2B02:00", "2025-06-15T13:45:12Z"),
        ("2014-06-04+09%3A10%3A11", "2014-06-04T09:10:11Z"),
    ],
)
def test_timestamp_forms(stamp: str, expected: str) -> None:
    assert only_report(request(f"/?id=1&lat=1&lon=1&timestamp={stamp}"))["time"] == expected


def test_missing_timestamp_uses_now() -> None:
    assert only_report(request())["time"] == "2026-11-23T12:00:00Z"


def test_all_known_query_parameters() -> None:
    target = (
        "/?deviceid=abc&location=-33.5,151.25&speed=10&bearing=370&altitude=12.5&accuracy=4&hdop=0.9"
        "&batt=55&charge=true&driverUniqueId=D42&valid=false&cell=250,1,1234,5678,-70"
        "&cell=250,1,1,2&wifi=AA-BB-CC-DD-EE-FF,-60&rpm=900&ignition=false&note=hello&ratio=0.5"
    )
    report = only_report(request(target))
    assert (report["device_id"], report["lat"], report["lon"]) == ("abc", -33.5, 151.25)
    assert report["speed_kmh"] == pytest.approx(18.52)
    assert report["course_deg"] == pytest.approx(10.0)
    assert report["altitude_m"] == 12.5
    assert report["valid"] is False
    assert report["driver_id"] == "D42"
    assert report["attributes"] == {
        "accuracy_m": 4.0,
        "hdop": 0.9,
        "battery_pct": 55.0,
        "charge": True,
        "mcc": 250,
        "mnc": 1,
        "lac": 1234,
        "cid": 5678,
        "rssi": -70,
        "cells": [{"mcc": 250, "mnc": 1, "lac": 1, "cid": 2}],
        "wifi": [{"mac": "aa:bb:cc:dd:ee:ff", "rssi": -60}],
        "rpm": 900,
        "ignition": False,
        "note": "hello",
        "ratio": 0.5,
    }


def test_request_without_position_is_a_status_report() -> None:
    report = only_report(request("/?id=5&batt=12"))
    assert (report["event"], report["lat"], report["valid"]) == ("status", None, None)
    assert report["attributes"] == {"battery_pct": 12.0}


# -- the JSON form ---------------------------------------------------------------------------------


def json_request(payload: object, target: str = "/") -> bytes:
    body = json.dumps(payload).encode()
    return request(target, method="POST", headers="Content-Type: application/json\r\n", body=body)


def test_json_location_array_gives_one_report_each_and_speed_in_metres_per_second() -> None:
    locations = [
        {
            "timestamp": "2025-01-01T00:00:00Z",
            "coords": {"latitude": 1, "longitude": 2, "speed": 10, "heading": 90},
        },
        {
            "timestamp": "2025-01-01T00:01:00Z",
            "coords": {"latitude": 3, "longitude": 4, "speed": -1, "heading": -1},
        },
    ]
    result = decode_one(json_request({"device_id": 77, "location": locations}))
    first, second = (report.to_json() for report in result.reports)
    assert result.device_id == "77"
    assert (first["speed_kmh"], first["course_deg"], first["time"]) == (36.0, 90.0, "2025-01-01T00:00:00Z")
    assert (second["speed_kmh"], second["course_deg"], second["lat"]) == (None, None, 3.0)


def test_json_device_id_may_come_from_the_url_and_time_defaults_to_now() -> None:
    payload = {"location": {"coords": {"latitude": 1, "longitude": 2}, "battery": {"level": -1}}}
    report = decode_one(json_request(payload, "/?id=url-id")).reports[0]
    assert report.device_id == "url-id"
    assert report.time == NOW
    assert "battery_pct" not in report.attributes


@pytest.mark.parametrize(
    "body",
    [
        {"location": {"coords": {"latitude": 1, "longitude": 2}}},
        {"device_id": "x", "location": {"coords": {"latitude": "1", "longitude": 2}}},
        {"device_id": "x", "location": {"coords": {"latitude": 100, "longitude": 2}}},
        {"device_id": "x", "location": {"timestamp": "soon", "coords": {"latitude": 1, "longitude": 2}}},
        {"device_id": "x", "location": []},
        {"device_id": True, "location": {"coords": {"latitude": 1, "longitude": 2}}},
        ["not", "locations"],
    ],
)
def test_unusable_json_is_answered_400(body: object) -> None:
    result = decode_one(json_request(body))
    assert isinstance(result, DriverError)
    assert result.replies[0].startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize(
    "body",
    [b"{", b"[" * 60_000, b'{"device_id": 1e999999}', b"1" * 5000],
    ids=["truncated", "deep", "huge-float", "huge-int"],
)
def test_broken_json_is_answered_400_without_raising(body: bytes) -> None:
    data = request("/", method="POST", headers="Content-Type: application/json\r\n", body=body)
    result = decode_one(data)
    assert isinstance(result, DriverError)
    assert result.replies[0].startswith(b"HTTP/1.1 400 ")


def test_commands_are_not_supported() -> None:
    with pytest.raises(UnsupportedCommand):
        OsmandSession().encode(Command(type=CommandType.POSITION_SINGLE, device_id="1"))


# -- fuzz ------------------------------------------------------------------------------------------

SEEDS = [vector.frames()[0] for vector in VECTORS]


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        position = draw(st.integers(0, len(frame) - 1))
        match draw(st.sampled_from(["flip", "insert", "delete", "truncate"])):
            case "flip":
                frame[position] = draw(st.integers(0, 255))
            case "insert":
                frame[position:position] = draw(st.binary(min_size=1, max_size=8))
            case "delete":
                del frame[position]
            case "truncate":
                del frame[position + 1 :]
    return bytes(frame) + draw(st.sampled_from([b"", *SEEDS]))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(data=mutated_streams(), cut=st.integers(1, 64))
def test_fuzzed_requests_give_replies_or_framing_errors_only(data: bytes, cut: int) -> None:
    session = OsmandSession()
    for start in range(0, len(data), cut):
        session.receive_data(data[start : start + cut])
        for result in session.events(now=NOW):
            assert not isinstance(result, DriverBug)
            if isinstance(result, DriverError) and "after the stream closed" in str(result):
                continue
            assert len(result.replies) == 1
            assert result.replies[0].startswith(b"HTTP/1.1 ")
        assert session.buffered <= OsmandSession.max_frame


# -- the encoder (the relay's OsmAnd sink) ------------------------------------------------------


def _round_trip(report: Report) -> Report:
    params = encode_position(report.to_json())
    assert params is not None
    request = f"GET /?{urlencode(params)} HTTP/1.1\r\nHost: relay\r\n\r\n".encode()
    decoded = decode_one(request)
    assert isinstance(decoded, Decoded), decoded
    (back,) = decoded.reports
    return back


def test_encoded_position_decodes_to_the_same_position() -> None:
    report = Report(
        protocol="gt06",
        device_id="359710045678901",
        event="alarm",
        time=datetime(2026, 11, 23, 10, 30, 5, tzinfo=UTC),
        valid=True,
        lat=-33.8688197,
        lon=151.2092955,
        altitude_m=58.0,
        speed_kmh=87.5,
        course_deg=271.0,
        satellites=9,
        alarms=("sos", "overspeed"),
        driver_id="D-0042",
        attributes={"battery_pct": 76, "ignition": True, "odometer_m": 123456},
    )
    back = _round_trip(report)
    assert (back.device_id, back.time, back.valid) == (report.device_id, report.time, True)
    assert (back.lat, back.lon, back.altitude_m) == (report.lat, report.lon, report.altitude_m)
    assert back.speed_kmh == pytest.approx(87.5, abs=0.01)
    assert back.course_deg == 271.0
    assert back.alarms == ("sos", "overspeed")
    assert back.driver_id == "D-0042"
    assert back.attributes["battery_pct"] == 76
    assert back.attributes["ignition"] is True
    assert back.attributes["odometer_m"] == 123456


def test_an_invalid_fix_stays_invalid_and_a_report_without_position_is_not_encoded() -> None:
    invalid = Report(protocol="h02", device_id="4210123456", time=NOW, valid=False, lat=1.5, lon=2.5)
    assert _round_trip(invalid).valid is False
    login = Report(protocol="gt06", device_id="359710045678901", event="login")
    assert encode_position(login.to_json()) is None
