"""The config file: every mistake reported at once with file, key, expected and found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from relay.config import defaults, load, parse
from relay.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay", "check-config", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "path",
    [ROOT / "config" / "relay.toml", *sorted((ROOT / "config" / "examples").glob("*.toml"))],
    ids=lambda path: path.name,
)
def test_shipped_configs_are_valid(path: Path) -> None:
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_the_annotated_config_shows_the_embedded_defaults() -> None:
    shipped = load(ROOT / "config" / "relay.toml")
    embedded = defaults()
    assert shipped.listen == embedded.listen
    assert shipped.journal == embedded.journal
    assert shipped.log_level == embedded.log_level
    assert shipped.status == embedded.status


def test_every_error_is_reported_with_file_key_expected_and_found(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(
        '[relay]\nsite = "depot 1"\n'
        "[listen]\nprot = 8888\nport = 70000\n"
        '[[sinks]]\nname = "broker"\ntype = "mqtt"\nurl = "htp://x"\n'
        '[[sinks]]\nname = "b2"\ntype = "carrier-pigeon"\n'
        "[wat]\n"
    )
    result = check_config(path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith(f"error: {path}: ") for line in lines)
    text = result.stderr
    assert "relay.site: expected a name of letters, digits" in text and "found 'depot 1'" in text
    assert "listen.prot: expected one of the known keys" in text and "found an unknown key" in text
    assert "listen.port: expected an integer from 0 to 65535, found 70000" in text
    assert "sinks[0].url: expected an mqtt://host[:port] or mqtts://host[:port] URL, found 'htp://x'" in text
    assert "sinks[1].type: expected one of 'mqtt'" in text
    assert "wat: expected one of the known sections" in text
    assert len(lines) == 6


def test_toml_syntax_errors_and_missing_files_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[relay\nsite = 1\n")
    result = check_config(path)
    assert result.returncode == 1 and "expected valid TOML" in result.stderr and "line 1" in result.stderr
    missing = check_config(tmp_path / "nope.toml")
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_required_keys_and_duplicate_sink_names() -> None:
    with pytest.raises(ConfigError) as raised:
        parse(
            {
                "sinks": [
                    {"name": "a", "type": "mqtt"},
                    {"name": "a", "type": "mqtt", "url": "mqtt://h"},
                    {"name": "a", "type": "mqtt", "url": "mqtt://h"},
                ],
                "modem": {"baudrate": 9600},
            }
        )
    messages = [str(problem) for problem in raised.value.problems]
    assert "<defaults>: sinks[0].url: expected a value (this key is required), found nothing" in messages
    assert "<defaults>: sinks[2].name: expected a name no other sink has, found 'a'" in messages
    assert "<defaults>: modem.port: expected a value (this key is required), found nothing" in messages


def test_relative_data_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "relay.toml"
    path.write_text('[relay]\ndata_dir = "../var"\n')
    assert load(path).data_dir == (tmp_path / "var").resolve()


def test_mqtt_sink_defaults_follow_the_site() -> None:
    config = parse(
        {"relay": {"site": "yard-7"}, "sinks": [{"name": "b", "type": "mqtt", "url": "mqtts://broker"}]}
    )
    sink = config.sinks[0]
    assert sink.topic_prefix == "relay/yard-7" and sink.client_id == "relay-yard-7-b"
    assert sink.tls and sink.port == 8883 and sink.host == "broker"
