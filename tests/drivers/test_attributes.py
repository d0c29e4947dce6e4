"""One attribute vocabulary: every key a driver emits is named, with its unit, in ``drivers.attributes``."""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from drivers import attributes, gps103, gt06
from tests import vectors

ALL = [vector for path in sorted(vectors.VECTORS.glob("*.jsonl")) for vector in vectors.load(path.stem)]


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in _keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in _keys(item)}
    return set()


def _client_parameters(vector: vectors.Vector) -> set[str]:
    """The parameter names of an OsmAnd request (query, form or JSON ``extras``): the client's own
    names, passed through as they are."""
    names: set[str] = set()
    for frame in vector.frames():
        head, _, body = frame.decode("latin-1").partition("\r\n\r\n")
        target = head.split(" ")[1] if " " in head else ""
        names |= {name for name, _ in parse_qsl(urlsplit(target).query, keep_blank_values=True)}
        names |= {name for name, _ in parse_qsl(body, keep_blank_values=True)}
        with contextlib.suppress(ValueError):
            names |= _keys(json.loads(body))
    return names


def test_every_attribute_a_driver_emits_on_the_vectors_is_in_the_vocabulary() -> None:
    unknown: dict[str, str] = {}
    for vector in ALL:
        passed_through = _client_parameters(vector) if vector.row["protocol"] == "osmand" else set()
        for report in vectors.decode(vector)["reports"]:
            for name in report["attributes"]:
                if not attributes.known(name) and name not in passed_through:
                    unknown.setdefault(name, vector.id)
    assert unknown == {}


def test_every_name_has_a_unit_in_its_suffix_or_none() -> None:
    suffixes = {"_pct": "%", "_v": "V", "_m": "m", "_c": "°C", "_kmh": "km/h", "_l": "l", "_min": "min"}
    for name, attribute in attributes.VOCABULARY.items():
        suffix = next((suffix for suffix in suffixes if name.endswith(suffix)), None)
        if suffix is not None:
            assert attribute.unit == suffixes[suffix], name


@pytest.mark.parametrize("name", ["io239", "adc2", "din4", "dout1", "temperature2_c", "eye_temperature3_c"])
def test_numbered_families_are_known(name: str) -> None:
    assert attributes.known(name)


@pytest.mark.parametrize("name", ["battery_level", "odometer_km", "fuel", "charging", "io", "temperature_f"])
def test_retired_and_malformed_names_are_not(name: str) -> None:
    assert not attributes.known(name)


def test_gps103_obd_odometer_is_stored_in_metres() -> None:
    session = gps103.Gps103Session()
    frame = b"imei:359710045678901,OBD,191113095050,123.5,1.2,7.3,15,60,30%,90,20%,2000,12.6,,,;"
    decoded = session.decode(frame, now=vectors.NOW)
    assert decoded.reports[0].attributes["odometer_m"] == 123_500
    assert "odometer_km" not in decoded.reports[0].attributes


def test_gt06_battery_level_is_one_percentage_or_its_raw_value_never_both() -> None:
    found: dict[str, int] = {}
    gt06.Gt06Session._battery_level(3, found)
    assert found == {"battery_pct": 50}
    found = {}
    gt06.Gt06Session._battery_level(0x40, found)
    assert found == {"battery_raw": 0x40}
