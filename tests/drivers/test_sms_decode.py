"""``relay decode --transport sms``: the decode_sms engine on PDUs and texts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from drivers.sms import SmsRejected, decode_sms, message_reports, sender_device
from drivers.sms_pdu import Concat, Deliver, Reassembler, decode_pdu, encode_deliver

from .test_sms_pdu import DELIVERS, INVALID, STATUS_REPORTS, SUBMITS, _ids
from .test_sms_text import TEXTS

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
COBAN = "lat:14.632742\nlong:121.001790\nspeed:12.50\nT:26/11/23 11:59\nhttp://maps.google.com/maps?f=q&q=14.632742,121.001790&z=16"
STAMP = datetime(2026, 11, 23, 11, 59, 30, tzinfo=UTC)
KEYS = {"protocol", "reports", "replies", "error", "sms"}


def test_coban_pdu_from_a_mapped_sender_gives_a_report_and_the_sms_object() -> None:
    pdu = encode_deliver("+639171234567", COBAN, timestamp=STAMP, smsc="+639170000130").hex()
    out = decode_sms(pdu, encoding="hex", smsc=True, senders={"+639171234567": "865456055519122"}, now=NOW)
    assert set(out) == KEYS
    assert out["error"] is None and out["protocol"] == "gps103" and out["replies"] == []
    [report] = out["reports"]
    assert report["device_id"] == "865456055519122"
    assert (report["lat"], report["lon"], report["speed_kmh"]) == (14.632742, 121.00179, 12.5)
    assert report["time"] == "2026-11-23T11:59:00Z"
    assert out["sms"] == {
        "sender": "+639171234567",
        "timestamp": "2026-11-23T11:59:30+00:00",
        "dcs": "0x00",
        "text": COBAN,
        "payload_hex": None,
        "concat": None,
    }
    assert report["attributes"]["time_source"] == "inferred_zone"
    json.dumps(out)


def test_pdu_without_the_smsc_prefix_decodes_alike() -> None:
    full = encode_deliver("+639171234567", COBAN, timestamp=STAMP, smsc="+639170000130")
    bare = full[full[0] + 1 :].hex()
    for smsc in (False, None):
        out = decode_sms(bare, encoding="hex", smsc=smsc, now=NOW)
        assert out["error"] is None and out["sms"]["sender"] == "+639171234567"


def test_unknown_sender_still_decodes_with_no_device() -> None:
    out = decode_sms(encode_deliver("+4915112345678", COBAN, timestamp=STAMP), encoding="hex", now=NOW)
    assert out["reports"][0]["device_id"] is None and out["error"] is None


def test_ascii_text_with_optional_sender() -> None:
    out = decode_sms(
        COBAN, encoding="ascii", sender="0917 123 4567", senders={"+63 917 123 4567": "dev"}, now=NOW
    )
    assert out["reports"][0]["device_id"] == "dev"
    assert out["sms"] == {
        "sender": "0917 123 4567",
        "timestamp": None,
        "dcs": None,
        "text": COBAN,
        "payload_hex": None,
        "concat": None,
    }
    out = decode_sms(COBAN, encoding="ascii", now=NOW)
    assert out["error"] is None
    assert out["reports"][0]["attributes"] == {"time_raw": "26/11/23 11:59", "time_source": "device_utc"}


@pytest.mark.parametrize(("line", "row"), STATUS_REPORTS, ids=_ids(STATUS_REPORTS))
def test_status_report_gives_a_clear_error(line: int, row: dict) -> None:
    out = decode_sms(row["pdu"], encoding="hex", smsc=True, now=NOW)
    assert out["reports"] == [] and "status report" in out["error"]


@pytest.mark.parametrize(("line", "row"), INVALID, ids=_ids(INVALID))
def test_broken_pdu_gives_a_clear_error(line: int, row: dict) -> None:
    out = decode_sms(row["pdu"], encoding="hex", smsc=None, now=NOW)
    assert set(out) == KEYS
    assert out["reports"] == [] and out["error"].startswith("sms: ")


@pytest.mark.parametrize(("line", "row"), SUBMITS[:3], ids=_ids(SUBMITS[:3]))
def test_stored_submit_is_not_a_received_message(line: int, row: dict) -> None:
    out = decode_sms(row["pdu"], encoding="hex", smsc=True, now=NOW)
    assert "SMS-SUBMIT" in out["error"]


@pytest.mark.parametrize(("line", "row"), DELIVERS, ids=_ids(DELIVERS))
def test_every_deliver_vector_fills_the_sms_object(line: int, row: dict) -> None:
    out = decode_sms(row["pdu"], encoding="hex", smsc=True, now=NOW)
    expect = row["expect"]
    assert out["sms"]["sender"] == expect["sender"]
    assert out["sms"]["timestamp"] == expect["timestamp"]
    assert out["sms"]["dcs"] == expect["dcs"]
    udh = expect.get("udh") or {}
    assert out["sms"]["concat"] == ({k: udh[k] for k in ("ref", "total", "seq")} if "ref" in udh else None)
    # None of these public samples is a tracker text: each gets an error, none crashes.
    assert out["error"] and out["reports"] == []
    json.dumps(out)


@pytest.mark.parametrize(("line", "row"), TEXTS, ids=_ids(TEXTS))
def test_every_tracker_text_row_decodes_as_ascii(line: int, row: dict) -> None:
    out = decode_sms(row["text"], encoding="ascii", sender="+15551234567", now=NOW)
    if row["family"] == "coban":
        assert out["error"] is None and out["protocol"] == "gps103" and len(out["reports"]) == 1
    else:
        assert out["error"] and out["reports"] == []


def test_one_part_of_a_concatenated_message_says_so() -> None:
    pdu = encode_deliver("+1555", "lat:1", timestamp=STAMP, concat=Concat(ref=5, total=2, seq=1))
    out = decode_sms(pdu.hex(), encoding="hex", now=NOW)
    assert out["sms"]["concat"] == {"ref": 5, "total": 2, "seq": 1}
    assert "part 1 of 2" in out["error"]


def test_binary_payload_and_bad_encoding_are_errors() -> None:
    pdu = encode_deliver("+1555", data=b"\x00\x01", timestamp=STAMP)
    assert "binary" in decode_sms(pdu, encoding="hex", now=NOW)["error"]
    assert "not hex or ascii" in decode_sms("x", encoding="base64", now=NOW)["error"]  # type: ignore[arg-type]


def test_binary_payload_is_shown_as_hex() -> None:
    pdu = encode_deliver("+1555", data=b"\x00\x01\xfe\xff", timestamp=STAMP)
    out = decode_sms(pdu, encoding="hex", now=NOW)
    assert out["sms"]["text"] is None
    assert out["sms"]["payload_hex"] == "0001feff"
    assert out["sms"]["dcs"] == "0x04"
    json.dumps(out)


def test_binary_message_is_quarantined_with_its_payload_in_the_reason() -> None:
    part = decode_pdu(encode_deliver("+639171234567", data=b"\xca\xfe", timestamp=STAMP))
    assert isinstance(part, Deliver)
    message = Reassembler().add(part, 0.0)
    assert message is not None and message.payload_hex == "cafe"
    with pytest.raises(SmsRejected, match="binary payload from \\+639171234567, not text: cafe"):
        message_reports(message, senders={"+639171234567": "dev"}, now=NOW)


def test_pdu_century_is_the_one_nearest_the_clock() -> None:
    pdu = encode_deliver("+1555", COBAN, timestamp=datetime(2099, 12, 31, 23, 59, 30, tzinfo=UTC))
    out = decode_sms(pdu.hex(), encoding="hex", now=NOW)
    assert out["sms"]["timestamp"] == "1999-12-31T23:59:30+00:00"


def test_known_tracker_zone_is_used_for_the_text_time() -> None:
    text = COBAN.replace("T:26/11/23 11:59", "T:26/11/23 19:40")
    # Sent eight minutes after T: in a +08:00 tracker: no zone fits, but the known zone does.
    pdu = encode_deliver("+639171234567", text, timestamp=datetime(2026, 11, 23, 11, 48, tzinfo=UTC))
    out = decode_sms(pdu.hex(), encoding="hex", now=NOW, zone=timedelta(hours=8))
    [report] = out["reports"]
    assert report["time"] == "2026-11-23T11:40:00Z"
    assert report["attributes"]["time_source"] == "device_zone"


def test_message_reports_takes_the_zone_of_its_device() -> None:
    message, _ = _message("+639171234567", COBAN.replace("T:26/11/23 11:59", "T:26/11/23 12:40"))
    zones = {"dev": timedelta(hours=1), "other": timedelta(hours=5)}
    [report] = message_reports(message, senders={"+639171234567": "dev"}, now=NOW, zones=zones)
    assert report.time == datetime(2026, 11, 23, 11, 40, tzinfo=UTC)
    [report] = message_reports(message, senders={"+639171234567": "dev"}, now=NOW)
    assert report.time == STAMP and report.attributes["time_source"] == "sms_centre"


def test_sender_matching_on_digits_and_national_form() -> None:
    senders = {"+63 917 123 4567": "a", "+15551234567": "b"}
    assert sender_device("+639171234567", senders) == "a"
    assert sender_device("09171234567", senders) == "a"
    assert sender_device("15551234567", senders) == "b"
    # Same last digits in another country: not the same phone.
    assert sender_device("+449171234567", senders) is None
    assert sender_device("09171234567", {"+639171234567": "a", "+449171234567": "c"}) is None
    assert sender_device("+639171234567", {"09171234567": "a"}) == "a"
    assert sender_device("123", senders) is None
    assert sender_device(None, senders) is None


def _message(sender: str, *texts: str):
    reassembler = Reassembler(timeout_s=1)
    message = None
    for seq, text in enumerate(texts, start=1):
        concat = Concat(ref=3, total=len(texts), seq=seq) if len(texts) > 1 else None
        part = decode_pdu(encode_deliver(sender, text, timestamp=STAMP, concat=concat))
        assert isinstance(part, Deliver)
        message = reassembler.add(part, 0.0)
    return message, reassembler


def test_message_reports_maps_the_sender_and_parses_the_joined_text() -> None:
    message, _ = _message("+639171234567", COBAN[:100], COBAN[100:])
    [report] = message_reports(message, senders={"+639171234567": "dev"}, now=NOW)
    assert report.device_id == "dev" and report.lat == 14.632742
    assert report.attributes["sender"] == "+639171234567"


def test_message_reports_rejects_what_belongs_in_quarantine() -> None:
    message, _ = _message("+639171234567", COBAN)
    with pytest.raises(SmsRejected, match=r"not in \[modem.senders\]"):
        message_reports(message, senders={}, now=NOW)
    chatter, _ = _message("+639171234567", "see you at 8")
    with pytest.raises(SmsRejected, match="not a known tracker text"):
        message_reports(chatter, senders={"+639171234567": "dev"}, now=NOW)
    partial, reassembler = _message("+639171234567", COBAN[:50], COBAN[50:])
    assert partial is not None  # complete; now make one that is not
    first = decode_pdu(
        encode_deliver("+639171234567", "x", timestamp=STAMP, concat=Concat(ref=4, total=2, seq=1))
    )
    assert isinstance(first, Deliver)
    reassembler.add(first, 0.0)
    [expired] = reassembler.expire(5.0)
    with pytest.raises(SmsRejected, match=r"parts \[2\]"):
        message_reports(expired, senders={"+639171234567": "dev"}, now=NOW)
