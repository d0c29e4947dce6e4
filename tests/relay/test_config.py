"""The config file: every mistake reported at once with file, key, expected and found."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

from relay.config import defaults, load, parse
from relay.errors import ConfigError
from tests.relay.harness import wait_until

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


def test_a_duplicate_sink_name_is_reported_even_when_that_sink_has_other_errors() -> None:
    with pytest.raises(ConfigError) as raised:
        parse(
            {
                "sinks": [
                    {"name": "a", "type": "mqtt", "url": "mqtt://h"},
                    {"name": "a", "type": "mqtt", "url": "htp://h"},
                    {"name": "a", "type": "http"},
                ]
            }
        )
    messages = [str(problem) for problem in raised.value.problems]
    assert messages == [
        "<defaults>: sinks[1].name: expected a name no other sink has, found 'a'",
        "<defaults>: sinks[1].url: expected an mqtt://host[:port] or mqtts://host[:port] URL, found 'htp://h'",
        "<defaults>: sinks[2].name: expected a name no other sink has, found 'a'",
        "<defaults>: sinks[2].url: expected a value (this key is required), found nothing",
    ]


def test_token_together_with_token_file_is_an_error() -> None:
    sink = {"name": "central", "type": "http", "url": "https://h/r", "token": "t", "token_file": "/etc/t"}
    with pytest.raises(ConfigError) as raised:
        parse({"sinks": [sink]})
    assert [str(problem) for problem in raised.value.problems] == [
        "<defaults>: sinks[0].token_file: expected token or token_file, not both, found both"
    ]


def test_an_mqtt_password_without_a_username_is_refused() -> None:
    sink = {"name": "b", "type": "mqtt", "url": "mqtt://h", "password": "secret"}
    with pytest.raises(ConfigError) as raised:
        parse({"sinks": [sink]})
    assert [str(problem) for problem in raised.value.problems] == [
        "<defaults>: sinks[0].username: expected a username beside the password, found none"
    ]


def test_check_config_looks_for_the_files_and_ports_the_config_names(tmp_path: Path) -> None:
    ca, token = tmp_path / "ca.pem", tmp_path / "token"
    sinks = (
        f'[[sinks]]\nname = "broker"\ntype = "mqtt"\nurl = "mqtts://h"\nca_file = "{ca}"\n'
        f'[[sinks]]\nname = "central"\ntype = "http"\nurl = "https://h/r"\ntoken_file = "{token}"\n'
    )
    ports = '[modem]\nport = "/dev/serial/by-id/no-such-modem"\n[[serial]]\nport = "/dev/no-such-tty"\n'
    path = tmp_path / "relay.toml"
    path.write_text(sinks + ports)
    missing = check_config(path)
    assert missing.returncode == 1 and "ok" not in missing.stdout
    assert missing.stderr.splitlines() == [
        f"warning: {path}: modem.port: expected a serial device, found '/dev/serial/by-id/no-such-modem' "
        "(no such device now; the relay keeps trying to open it)",
        f"warning: {path}: serial[0].port: expected a serial device, found '/dev/no-such-tty' "
        "(no such device now; the relay keeps trying to open it)",
        f"error: {path}: sinks[0].ca_file: expected a readable file, found '{ca}' (no such file)",
        f"error: {path}: sinks[1].token_file: expected a readable file, found '{token}' (no such file)",
    ]
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    token.mkdir()
    a_directory = check_config(path)
    assert a_directory.returncode == 1
    assert a_directory.stderr.splitlines()[2:] == [
        f"error: {path}: sinks[1].token_file: expected a readable file, found '{token}' (a directory)"
    ]
    token.rmdir()
    token.write_text("s3cret\n")
    only_warnings = check_config(path)
    assert only_warnings.returncode == 0 and f"{path}: ok" in only_warnings.stdout
    assert [line.split(":")[0] for line in only_warnings.stderr.splitlines()] == ["warning", "warning"]


# -- what the config names, at run time ----------------------------------------------------------


async def _first_log_line(sink: object, event: str, caplog: pytest.LogCaptureFixture) -> str:
    from relay.logs import LogfmtFormatter

    caplog.set_level(logging.INFO, "relay")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sink.run)  # type: ignore[attr-defined]
        await wait_until(lambda: any(record.msg == event for record in caplog.records), 10, event)
        nursery.cancel_scope.cancel()
    return LogfmtFormatter().format(next(record for record in caplog.records if record.msg == event))


async def test_an_mqtt_sink_that_cannot_read_its_ca_file_names_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from relay.journal import Journal
    from relay.sinks._mqtt import MqttSink

    ca = tmp_path / "missing-ca.pem"
    sink = {"name": "b", "type": "mqtt", "url": "mqtts://127.0.0.1:9", "ca_file": str(ca)}
    settings = parse({"sinks": [sink]})
    journal = Journal.open(tmp_path / "journal.sqlite3")
    try:
        line = await _first_log_line(MqttSink(settings.sinks[0], journal), "mqtt_disconnected", caplog)
    finally:
        journal.close()
    assert f'error="sink \'b\': cannot use ca_file {ca}: ' in line


async def test_an_http_sink_that_cannot_read_its_token_file_names_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from drivers import Report
    from relay.journal import Entry, Journal
    from relay.sinks._http import HttpSink

    token = tmp_path / "token"
    token.write_bytes(b"\xff\xfe not UTF-8")
    sink = {"name": "c", "type": "http", "url": "http://127.0.0.1:9/r", "token_file": str(token)}
    settings = parse({"sinks": [{**sink, "retry_min_s": 0.01, "retry_max_s": 0.05}]})
    journal = Journal.open(tmp_path / "journal.sqlite3")
    report = Report(protocol="gps103", device_id="a", event="heartbeat")
    journal.write_now([Entry(report, b"x", "tcp", "p", datetime.now(UTC))])
    try:
        line = await _first_log_line(HttpSink(settings.sinks[0], journal), "http_retry", caplog)
    finally:
        journal.close()
    assert f'error="TransportError: cannot read token_file {token}: ' in line


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


def test_string_keys_with_fixed_values_name_every_value() -> None:
    sink = {"name": "b", "type": "mqtt", "url": "mqtt://h", "start": "yesterday", "drain": "random"}
    with pytest.raises(ConfigError) as raised:
        parse({"journal": {"synchronous": "off"}, "relay": {"log_level": "loud"}, "sinks": [sink]})
    assert [str(problem) for problem in raised.value.problems] == [
        "<defaults>: relay.log_level: expected one of 'debug', 'info', 'warning', 'error', found 'loud'",
        "<defaults>: journal.synchronous: expected one of 'full', 'normal', found 'off'",
        "<defaults>: sinks[0].start: expected one of 'oldest', 'now', found 'yesterday'",
        "<defaults>: sinks[0].drain: expected one of 'in_order', 'live_first', found 'random'",
    ]
    config = parse({"sinks": [{**sink, "start": "now", "drain": "live_first"}]})
    assert config.sinks[0].start == "now" and config.sinks[0].drain == "live_first"
    assert parse({"sinks": [{"name": "b", "type": "mqtt", "url": "mqtt://h"}]}).sinks[0].start == "oldest"


def test_every_sink_type_has_a_sink() -> None:
    from relay.config import SINK_TYPES
    from relay.sinks._table import SINK_CLASSES

    assert set(SINK_CLASSES) == set(SINK_TYPES.values())


def test_an_unhashable_sink_type_is_an_error_not_a_crash() -> None:
    with pytest.raises(ConfigError) as raised:
        parse({"sinks": [{"name": "b", "type": ["mqtt"]}]})
    assert [str(problem) for problem in raised.value.problems] == [
        "<defaults>: sinks[0].type: expected one of 'mqtt', 'http', 'osmand', 'passthrough', found a list"
    ]
