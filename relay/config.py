"""The relay's TOML configuration: parsed, checked in full, and turned into frozen settings.

Every mistake is reported at once, each naming the file, the key, what was expected and what was
found, so a field engineer fixes a file in one pass. Unknown keys are errors (a typo must never be
silently ignored on a box nobody watches).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from drivers import MAX_DEVICE_ID, InvalidDeviceId, check_device_id

from .errors import ConfigError, ConfigProblem

DEFAULT_PORT = 8888


def _split_userinfo(url: str) -> tuple[str, str, str, str] | None:
    """``(scheme://, userinfo, host and the rest)`` when ``url`` has credentials, else None.

    Split as :func:`urllib.parse.urlsplit` does (the authority ends at the first ``/``, ``?`` or
    ``#``; the userinfo at its last ``@``), but without failing on a bad port."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return None
    end = min((index for index in map(rest.find, "/?#") if index >= 0), default=len(rest))
    authority, path = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return None
    return scheme + separator, userinfo, host, path


def redact_url(url: str) -> str:
    """``url`` fit for a log line: a password in it replaced by ``***``, and so is a user name
    without a password (services that take a token there: it is the secret)."""
    parts = _split_userinfo(url)
    if parts is None:
        return url
    start, userinfo, host, path = parts
    user, colon, _password = userinfo.partition(":")
    return f"{start}{user + ':' if colon else ''}***@{host}{path}"


def strip_credentials(url: str) -> str:
    """``url`` without its ``user:password@`` part."""
    parts = _split_userinfo(url)
    if parts is None:
        return url
    start, _userinfo, host, path = parts
    return f"{start}{host}{path}"


def url_credentials(url: str) -> tuple[str, str] | None:
    """``(user, password)`` from ``url``, percent-decoded (``%40`` is ``@``), or None without any.
    A URL with a user and no password gives an empty password."""
    parts = _split_userinfo(url)
    if parts is None:
        return None
    user, _colon, password = parts[1].partition(":")
    return unquote(user), unquote(password)


@dataclass(frozen=True, slots=True)
class ListenSettings:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    tcp: bool = True
    udp: bool = True
    #: A TCP connection silent this long is closed (trackers send heartbeats every few minutes).
    idle_timeout_s: float = 1800.0
    #: Time a new stream gets to send enough bytes for its protocol to be recognised.
    sniff_timeout_s: float = 30.0
    max_connections: int = 10000
    max_connections_per_ip: int = 200
    #: Bytes of partial frames held across all connections; the connection that goes over is closed.
    max_buffered_mb: int = 32
    #: UDP peers whose session (device id, partial photo) is remembered; the least recent are forgotten.
    max_udp_peers: int = 20_000


@dataclass(frozen=True, slots=True)
class JournalSettings:
    #: "full" (default) fsyncs every group commit; "normal" may lose the last commits on power loss.
    synchronous: str = "full"
    #: Upper bound on reports written in one transaction.
    max_batch: int = 2000
    #: The least time between two group commits: fewer fsyncs and page rewrites on the SD card, at
    #: the cost of up to this much added to an acknowledgement at light load (trackers wait seconds).
    commit_interval_ms: int = 200
    #: The journal's size cap; when reached, delivered reports go first, then the oldest undelivered.
    max_db_mb: int = 2048
    #: Delivered reports older than this are deleted.
    retention_days: float = 30.0
    #: At start the journal is checked (``PRAGMA quick_check``) for at most this long; a damaged one
    #: is set aside and a fresh one started. 0: no check.
    startup_check_s: float = 30.0
    #: Bytes all quarantined (undecodable) input may take; beyond it new bad input is counted, not kept.
    quarantine_max_mb: int = 64
    #: Bytes of quarantined input one peer address may take.
    quarantine_peer_max_kb: int = 1024
    #: A quarantined frame longer than this keeps only its head.
    quarantine_frame_max_kb: int = 64
    #: Devices whose "last seen" row is kept; the least recently seen are forgotten first.
    max_devices: int = 20_000


@dataclass(frozen=True, slots=True)
class MqttSinkSettings:
    name: str
    url: str
    topic_prefix: str
    type: str = "mqtt"
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    keepalive_s: int = 30
    #: Reports published but not yet acknowledged (PUBACK) at any moment.
    inflight: int = 50
    qos: int = 1
    retry_min_s: float = 1.0
    retry_max_s: float = 60.0
    #: "in_order" (default) or "live_first": each device's newest report first, then the backlog.
    drain: str = "in_order"
    #: A publish unacknowledged this long means a stalled broker: the connection is dropped and the
    #: window sent again on the next one.
    puback_timeout_s: float = 30.0

    @property
    def target(self) -> str:
        """Where the sink sends, fit for a log line (a password in the URL shown as ``***``)."""
        return redact_url(self.url)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"


@dataclass(frozen=True, slots=True)
class HttpSinkSettings:
    """POST JSON batches of normalized reports to ``url``."""

    name: str
    url: str
    type: str = "http"
    #: Extra request headers (``Authorization`` comes from ``token``/``token_file``).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: A bearer token, or a file holding one (read at start; keeps secrets out of the config file).
    token: str | None = None
    token_file: str | None = None
    #: ``Content-Encoding: gzip`` request bodies.
    gzip: bool = False
    #: Check the server's TLS certificate (against ``ca_file`` when given, else the system's CAs).
    verify: bool = True
    ca_file: str | None = None
    #: Longest wait for one read, write or connect.
    timeout_s: float = 30.0
    #: Longest time for a whole request (connect, upload, answer): a server trickling bytes is given up on.
    request_deadline_s: float = 60.0
    #: A batch is sent when it holds this many reports, would pass this many bytes, or its oldest
    #: report has waited this long (whichever comes first).
    batch_max_reports: int = 500
    batch_max_bytes: int = 1_000_000
    batch_max_age_s: float = 1.0
    retry_min_s: float = 1.0
    retry_max_s: float = 300.0
    drain: str = "in_order"

    @property
    def target(self) -> str:
        """Where the sink sends, fit for a log line (a password in the URL shown as ``***``)."""
        return redact_url(self.url)

    @property
    def endpoint(self) -> str:
        """The URL requests go to: ``url`` without its credentials (they go as HTTP basic auth)."""
        return strip_credentials(self.url)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """``(user, password)`` from the URL, percent-decoded, or None."""
        return url_credentials(self.url)


@dataclass(frozen=True, slots=True)
class OsmandSinkSettings:
    """One HTTP request per position, in the OsmAnd form a Traccar server reads (port 5055)."""

    name: str
    url: str
    type: str = "osmand"
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: bool = True
    ca_file: str | None = None
    timeout_s: float = 15.0
    request_deadline_s: float = 30.0
    #: Devices sent to in parallel (each device's positions stay in order).
    concurrency: int = 8
    #: Reports handed out at once (over all devices) and not yet answered.
    inflight: int = 200
    retry_min_s: float = 1.0
    retry_max_s: float = 300.0
    drain: str = "in_order"

    @property
    def target(self) -> str:
        """Where the sink sends, fit for a log line (a password in the URL shown as ``***``)."""
        return redact_url(self.url)

    @property
    def endpoint(self) -> str:
        """The URL requests go to: ``url`` without its credentials (they go as HTTP basic auth)."""
        return strip_credentials(self.url)

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        """``(user, password)`` from the URL, percent-decoded, or None."""
        return url_credentials(self.url)


@dataclass(frozen=True, slots=True)
class PassthroughSinkSettings:
    """Each device's raw frames to ``host:port`` over its own transport, one upstream session per device."""

    name: str
    host: str
    port: int
    type: str = "passthrough"
    #: Only these protocols are forwarded (empty: all); the others are acknowledged without sending.
    protocols: tuple[str, ...] = ()
    connect_timeout_s: float = 10.0
    #: How long an upstream acknowledgement (Teltonika record count, GT06 login) may take.
    ack_timeout_s: float = 10.0
    #: An upstream session with nothing to send for this long is closed.
    idle_timeout_s: float = 300.0
    retry_min_s: float = 1.0
    retry_max_s: float = 60.0
    drain: str = "in_order"

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


#: Any sink's settings (each type adds its own class, registered in SINK_SCHEMAS).
SinkSettings = MqttSinkSettings | HttpSinkSettings | OsmandSinkSettings | PassthroughSinkSettings


@dataclass(frozen=True, slots=True)
class StatusSettings:
    """The ``[status]`` section: where the status endpoint listens, who may read it, and when /healthz
    calls a sink stuck."""

    listen: str = ""
    #: Asked of every request but /healthz (``Authorization: Bearer`` or ``?token=``); required when
    #: ``listen`` is not a loopback address. ``token_file``: a file holding it (read at start).
    token: str | None = None
    token_file: str | None = None
    #: A sink with undelivered reports and no delivery, or disconnected with an error, for longer than
    #: this makes /healthz answer 503.
    sink_stall_s: float = 300.0


@dataclass(frozen=True, slots=True)
class ModemSettings:
    """The ``[modem]`` section: the serial port and how patient to be with it."""

    port: str
    baudrate: int = 115200
    senders: Mapping[str, str] = field(default_factory=dict)
    command_timeout_s: float = 10.0
    reopen_delay_s: float = 5.0
    #: How long the parts of a concatenated SMS are waited for before the message is quarantined.
    concat_timeout_s: float = 600.0


@dataclass(frozen=True, slots=True)
class SerialSource:
    """A tracker wired to a serial port, speaking one of the drivers' protocols."""

    port: str
    baudrate: int = 9600
    #: "auto" (sniffed like a TCP stream) or a protocol name.
    protocol: str = "auto"
    reopen_delay_s: float = 5.0


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the relay needs to run, validated."""

    source: str = "<defaults>"
    site: str = "relay"
    data_dir: Path = Path("data")
    log_level: str = "info"
    listen: ListenSettings = ListenSettings()
    journal: JournalSettings = JournalSettings()
    sinks: tuple[SinkSettings, ...] = ()
    modem: ModemSettings | None = None
    serial: tuple[SerialSource, ...] = ()
    status: StatusSettings = StatusSettings()

    @property
    def database(self) -> Path:
        return self.data_dir / "journal.sqlite3"


_DEFAULT = Config()

# -- schema --------------------------------------------------------------------------------------

_Check = Callable[[Any], str | None]  # returns what was expected, or None when the value is fine


def _is(kind: type | tuple[type, ...], expected: str) -> _Check:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            return expected
        return None if isinstance(value, kind) else expected

    return check


def _int_range(low: int, high: int) -> _Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        return None if ok else f"an integer from {low} to {high}"

    return check


def _number_range(low: float, high: float) -> _Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
        return None if ok else f"a number from {low} to {high}"

    return check


def _one_of(*choices: str) -> _Check:
    def check(value: Any) -> str | None:
        return None if value in choices else "one of " + ", ".join(repr(c) for c in choices)

    return check


def _mqtt_url(value: Any) -> str | None:
    expected = "an mqtt://host[:port] or mqtts://host[:port] URL"
    if not isinstance(value, str):
        return expected
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return expected
    return None if parts.scheme in ("mqtt", "mqtts") and parts.hostname else expected


def _http_url(value: Any) -> str | None:
    expected = "an http://host[:port]/path or https://host[:port]/path URL"
    if not isinstance(value, str):
        return expected
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError:
        return expected
    return None if parts.scheme in ("http", "https") and parts.hostname else expected


def _headers(value: Any) -> str | None:
    ok = isinstance(value, dict) and all(
        isinstance(key, str) and isinstance(text, str) and key and "\n" not in text
        for key, text in value.items()
    )
    return None if ok else 'a table of "Header-Name" = "value" strings'


def _names(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(item, str) and item for item in value)
    return None if ok else 'a list of protocol names, e.g. ["gt06", "teltonika"]'


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too). :raises ValueError: not of that form."""
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, found {value!r}")
    return host.strip("[]"), int(port)


def _is_device_id(value: Any) -> bool:
    try:
        return isinstance(value, str) and check_device_id(value) == value
    except InvalidDeviceId:
        return False


def _site(value: Any) -> str | None:
    ok = isinstance(value, str) and value and all(ch.isalnum() or ch in "-_." for ch in value)
    return None if ok else "a name of letters, digits, '-', '_' or '.' (it goes into MQTT topics)"


def _topic_prefix(value: Any) -> str | None:
    ok = (
        isinstance(value, str) and value and not any(ch in value for ch in "#+\0") and not value.endswith("/")
    )
    return None if ok else "an MQTT topic prefix without '#', '+' or a trailing '/'"


_STR = _is(str, "a string")
_BOOL = _is(bool, "true or false")

_RELAY: dict[str, _Check] = {
    "site": _site,
    "data_dir": _STR,
    "log_level": _one_of("debug", "info", "warning", "error"),
}
_LISTEN: dict[str, _Check] = {
    "host": _STR,
    "port": _int_range(0, 65535),  # 0 = any free port (tests)
    "tcp": _BOOL,
    "udp": _BOOL,
    "idle_timeout_s": _number_range(1, 7 * 86400),
    "sniff_timeout_s": _number_range(0.1, 3600),
    "max_connections": _int_range(1, 1_000_000),
    "max_connections_per_ip": _int_range(1, 1_000_000),
    "max_buffered_mb": _int_range(1, 4096),
    "max_udp_peers": _int_range(1, 10_000_000),
}
_JOURNAL: dict[str, _Check] = {
    "synchronous": _one_of("full", "normal"),
    "max_batch": _int_range(1, 100_000),
    "commit_interval_ms": _int_range(0, 5000),
    "max_db_mb": _int_range(1, 1_000_000),
    "retention_days": _number_range(0.01, 3650),
    "startup_check_s": _number_range(0, 3600),
    "quarantine_max_mb": _int_range(1, 1_000_000),
    "quarantine_peer_max_kb": _int_range(1, 1_000_000),
    "quarantine_frame_max_kb": _int_range(1, 65_536),
    "max_devices": _int_range(1, 10_000_000),
}
_MQTT: dict[str, _Check] = {
    "name": _STR,
    "type": _STR,
    "url": _mqtt_url,
    "topic_prefix": _topic_prefix,
    "client_id": _STR,
    "username": _STR,
    "password": _STR,
    "ca_file": _STR,
    "keepalive_s": _int_range(5, 3600),
    "inflight": _int_range(1, 1000),
    "qos": _int_range(1, 1),
    "puback_timeout_s": _number_range(0.1, 3600),
    "retry_min_s": _number_range(0.01, 3600),
    "retry_max_s": _number_range(0.01, 86400),
    "drain": _one_of("in_order", "live_first"),
}
_RETRY_DRAIN: dict[str, _Check] = {
    "retry_min_s": _number_range(0.01, 3600),
    "retry_max_s": _number_range(0.01, 86400),
    "drain": _one_of("in_order", "live_first"),
}
_HTTP: dict[str, _Check] = {
    "name": _STR,
    "type": _STR,
    "url": _http_url,
    "headers": _headers,
    "token": _STR,
    "token_file": _STR,
    "gzip": _BOOL,
    "verify": _BOOL,
    "ca_file": _STR,
    "timeout_s": _number_range(0.1, 3600),
    "request_deadline_s": _number_range(0.1, 86400),
    "batch_max_reports": _int_range(1, 100_000),
    "batch_max_bytes": _int_range(1024, 100_000_000),
    "batch_max_age_s": _number_range(0, 3600),
    **_RETRY_DRAIN,
}
_OSMAND: dict[str, _Check] = {
    "name": _STR,
    "type": _STR,
    "url": _http_url,
    "headers": _headers,
    "verify": _BOOL,
    "ca_file": _STR,
    "timeout_s": _number_range(0.1, 3600),
    "request_deadline_s": _number_range(0.1, 86400),
    "concurrency": _int_range(1, 256),
    "inflight": _int_range(1, 10_000),
    **_RETRY_DRAIN,
}
_PASSTHROUGH: dict[str, _Check] = {
    "name": _STR,
    "type": _STR,
    "host": _STR,
    "port": _int_range(1, 65535),
    "protocols": _names,
    "connect_timeout_s": _number_range(0.1, 600),
    "ack_timeout_s": _number_range(0.1, 600),
    "idle_timeout_s": _number_range(1, 7 * 86400),
    **_RETRY_DRAIN,
}
_MODEM: dict[str, _Check] = {
    "port": _STR,
    "baudrate": _int_range(300, 4_000_000),
    "senders": _is(dict, 'a table of "+number" = "device id"'),
    "command_timeout_s": _number_range(0.5, 600),
    "reopen_delay_s": _number_range(0.1, 3600),
    "concat_timeout_s": _number_range(1, 86400),
}
_SERIAL: dict[str, _Check] = {
    "port": _STR,
    "baudrate": _int_range(300, 4_000_000),
    "protocol": _STR,
    "reopen_delay_s": _number_range(0.1, 3600),
}


def _mqtt_defaults(values: dict[str, Any], site: str) -> None:
    values.setdefault("topic_prefix", f"relay/{site}")
    values.setdefault("client_id", f"relay-{site}-{values['name']}")
    credentials = url_credentials(values["url"])
    if credentials is not None:  # parse() made sure the username/password keys are not given too
        values["username"], values["password"] = credentials


def _no_defaults(values: dict[str, Any], site: str) -> None:
    del values, site


def _passthrough_defaults(values: dict[str, Any], site: str) -> None:
    del site
    values["protocols"] = tuple(values.get("protocols", ()))


#: Sink type -> (schema, settings class, required keys, fills defaults that depend on other values).
SINK_SCHEMAS: dict[
    str, tuple[dict[str, _Check], type, tuple[str, ...], Callable[[dict[str, Any], str], None]]
] = {
    "mqtt": (_MQTT, MqttSinkSettings, ("name", "type", "url"), _mqtt_defaults),
    "http": (_HTTP, HttpSinkSettings, ("name", "type", "url"), _no_defaults),
    "osmand": (_OSMAND, OsmandSinkSettings, ("name", "type", "url"), _no_defaults),
    "passthrough": (
        _PASSTHROUGH,
        PassthroughSinkSettings,
        ("name", "type", "host", "port"),
        _passthrough_defaults,
    ),
}


def _listen_address(value: Any) -> str | None:
    if value == "":
        return None
    try:
        parse_listen(value)
    except (ValueError, TypeError):
        return 'host:port (e.g. "127.0.0.1:8080"), or "" for no status endpoint'
    return None


def _status_token(value: Any) -> str | None:
    ok = isinstance(value, str) and len(value) >= MIN_STATUS_TOKEN and value.isprintable()
    ok = ok and " " not in value
    return None if ok else f"a token of at least {MIN_STATUS_TOKEN} printable characters without spaces"


#: The shortest ``[status] token`` accepted (e.g. ``openssl rand -hex 16`` makes 32 characters).
MIN_STATUS_TOKEN = 16

_STATUS: dict[str, _Check] = {
    "listen": _listen_address,
    "token": _status_token,
    "token_file": _STR,
    "sink_stall_s": _number_range(0.1, 7 * 86400),
}


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable only from this machine (``127.0.0.1``, ``::1``, ``localhost``)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_status_access(checker: _Checker, status: Mapping[str, Any], raw: Any) -> None:
    """A status endpoint reachable from the network needs a token; ``token`` or ``token_file``, not both.
    (``status``: the valid keys; ``raw``: the section as written, so a bad token is not also missing.)"""
    given = {key for key in ("token", "token_file") if isinstance(raw, dict) and key in raw}
    if len(given) == 2:
        checker.problem("status.token_file", "token or token_file, not both", _Described("both"))
    listen = status.get("listen", "")
    if listen and not given and not is_loopback(parse_listen(listen)[0]):
        checker.problem(
            "status.token",
            "a token (or token_file) when status.listen is not a loopback address: the page shows "
            "every device's position to whoever can reach the port",
            NOTHING,
        )
_SECTIONS: dict[str, dict[str, _Check]] = {
    "relay": _RELAY,
    "listen": _LISTEN,
    "journal": _JOURNAL,
    "modem": _MODEM,
    "status": _STATUS,
}


class _Checker:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[ConfigProblem] = []

    def problem(self, key: str, expected: str, found: Any) -> None:
        self.problems.append(ConfigProblem(self.file, key, expected, _show(found)))

    def table(self, prefix: str, values: Any, schema: Mapping[str, _Check]) -> dict[str, Any]:
        if not isinstance(values, dict):
            self.problem(prefix, "a table", values)
            return {}
        good: dict[str, Any] = {}
        for key, value in values.items():
            name = f"{prefix}.{key}"
            check = schema.get(key)
            if check is None:
                self.problem(name, "one of the known keys: " + ", ".join(schema), UNKNOWN_KEY)
                continue
            expected = check(value)
            if expected is not None:
                shown = redact_url(value) if key == "url" and isinstance(value, str) else value
                self.problem(name, expected, shown)
                continue
            good[key] = value
        return good


class _Described(str):
    """A description of what was found (shown as is), not a value from the file (shown quoted)."""


NOTHING = _Described("nothing")
UNKNOWN_KEY = _Described("an unknown key")
UNKNOWN_SECTION = _Described("an unknown section")


def _show(value: Any) -> str:
    if isinstance(value, _Described):
        return str(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def parse(data: Mapping[str, Any], *, source: str = "<defaults>") -> Config:
    """Validate a parsed TOML document and build the :class:`Config`.

    :raises ConfigError: listing every problem found, not just the first.
    """
    checker = _Checker(source)
    for section in data:
        if section not in _SECTIONS and section not in ("sinks", "serial"):
            known = ", ".join([*(f"[{name}]" for name in _SECTIONS), "[[sinks]]", "[[serial]]"])
            checker.problem(section, f"one of the known sections: {known}", UNKNOWN_SECTION)
    relay = checker.table("relay", data.get("relay", {}), _RELAY)
    listen = checker.table("listen", data.get("listen", {}), _LISTEN)
    journal = checker.table("journal", data.get("journal", {}), _JOURNAL)
    status = checker.table("status", data.get("status", {}), _STATUS)
    _check_status_access(checker, status, data.get("status", {}))

    sinks: list[SinkSettings] = []
    raw_sinks = data.get("sinks", [])
    if not isinstance(raw_sinks, list):
        checker.problem("sinks", "an array of tables ([[sinks]])", raw_sinks)
        raw_sinks = []
    names: set[str] = set()
    site = relay.get("site", _DEFAULT.site)
    for index, raw in enumerate(raw_sinks):
        prefix = f"sinks[{index}]"
        # A duplicate name is said even when the sink has other mistakes: both need fixing.
        name = raw.get("name") if isinstance(raw, dict) else None
        duplicate = isinstance(name, str) and name in names
        if duplicate:
            checker.problem(f"{prefix}.name", "a name no other sink has", name)
        elif isinstance(name, str):
            names.add(name)
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind not in SINK_SCHEMAS:
            checker.problem(f"{prefix}.type", "one of " + ", ".join(repr(t) for t in SINK_SCHEMAS), kind)
            continue
        schema, settings_type, required, fill_defaults = SINK_SCHEMAS[kind]
        values = checker.table(prefix, raw, schema)
        for key in required:
            if key not in raw:
                checker.problem(f"{prefix}.{key}", "a value (this key is required)", NOTHING)
        if "token" in values and "token_file" in values:
            checker.problem(f"{prefix}.token_file", "token or token_file, not both", _Described("both"))
            continue
        if _credentials_twice(checker, prefix, values):
            continue
        if duplicate or any(key not in values for key in required):
            continue
        fill_defaults(values, site)
        sinks.append(settings_type(**values))

    modem: ModemSettings | None = None
    if "modem" in data:
        values = checker.table("modem", data["modem"], _MODEM)
        if isinstance(data["modem"], dict) and "port" not in data["modem"]:
            checker.problem("modem.port", "a value (this key is required)", NOTHING)
        senders = values.get("senders", {})
        for number, device in senders.items():
            if not _is_device_id(device):
                checker.problem(
                    f"modem.senders.{number}",
                    f"a device id of 1 to {MAX_DEVICE_ID} printable ASCII characters without spaces",
                    device,
                )
        if "port" in values:
            modem = ModemSettings(**values)

    serial: list[SerialSource] = []
    raw_serial = data.get("serial", [])
    if not isinstance(raw_serial, list):
        checker.problem("serial", "an array of tables ([[serial]])", raw_serial)
        raw_serial = []
    for index, raw in enumerate(raw_serial):
        values = checker.table(f"serial[{index}]", raw, _SERIAL)
        if isinstance(raw, dict) and "port" not in raw:
            checker.problem(f"serial[{index}].port", "a value (this key is required)", NOTHING)
        protocol = values.get("protocol", "auto")
        if protocol != "auto" and protocol not in _protocol_names():
            checker.problem(
                f"serial[{index}].protocol", "'auto' or one of " + ", ".join(_protocol_names()), protocol
            )
            continue
        if "port" in values:
            serial.append(SerialSource(**values))

    if checker.problems:
        raise ConfigError(checker.problems)
    return Config(
        source=source,
        site=site,
        data_dir=Path(relay.get("data_dir", str(_DEFAULT.data_dir))),
        log_level=relay.get("log_level", _DEFAULT.log_level),
        listen=ListenSettings(**listen),
        journal=JournalSettings(**journal),
        sinks=tuple(sinks),
        modem=modem,
        serial=tuple(serial),
        status=StatusSettings(**status),
    )


def _credentials_twice(checker: _Checker, prefix: str, values: Mapping[str, Any]) -> bool:
    """Say so (and return True) when the URL holds credentials and other keys give some too:
    one of them would be silently ignored."""
    if "url" not in values or url_credentials(values["url"]) is None:
        return False
    others = [key for key in ("username", "password", "token", "token_file") if key in values]
    if any(name.lower() == "authorization" for name in values.get("headers", {})):
        others.append("headers.Authorization")
    if not others:
        return False
    checker.problem(
        f"{prefix}.url",
        f"credentials in the URL or in {' / '.join(others)}, not both",
        _Described("both"),
    )
    return True


def _protocol_names() -> list[str]:
    import drivers

    return list(drivers.drivers())


def load(path: str | Path) -> Config:
    """Read and validate a config file.

    :raises ConfigError: the file is missing, unreadable, not TOML, or has invalid values.
    """
    path = Path(path)
    return _load(path, _read(path))


@dataclass(frozen=True, slots=True)
class Checked:
    """What ``relay check-config`` finds in a file: the config (None when it has errors), every error
    (those of :func:`load` and files it names that are missing), and warnings (devices not there now)."""

    config: Config | None
    errors: tuple[ConfigProblem, ...]
    warnings: tuple[ConfigProblem, ...]


def check(path: str | Path) -> Checked:
    """Validate a config file as :func:`load` does, and look on this machine at what it names.

    A file a sink reads (``ca_file``, ``token_file``) that is missing or unreadable is an error; a
    modem or ``[[serial]]`` port that is missing is a warning, since a USB device can be plugged in
    after start (the relay keeps trying to open it). Relative file names are taken from the current directory,
    as the relay opens them.

    :raises ConfigError: the file is missing, unreadable or not TOML.
    """
    path = Path(path)
    data = _read(path)
    errors: list[ConfigProblem] = []
    warnings: list[ConfigProblem] = []
    for key, named, is_device in _named_paths(data):
        problem = _path_problem(named, is_device=is_device)
        if problem is not None:
            expected = "a serial device" if is_device else "a readable file"
            note = f"{named!r} ({problem}{'; the relay keeps trying to open it' if is_device else ''})"
            (warnings if is_device else errors).append(ConfigProblem(str(path), key, expected, note))
    config: Config | None = None
    try:
        config = _load(path, data)
    except ConfigError as error:
        errors[:0] = error.problems
    return Checked(None if errors else config, tuple(errors), tuple(warnings))


#: Sink keys that name a file the sink reads.
_FILE_KEYS = ("ca_file", "token_file")


def _named_paths(data: Mapping[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """``(key, path, is_device)`` for every file and device the parsed TOML names under a known key."""
    sinks = data.get("sinks")
    for index, raw in enumerate(sinks if isinstance(sinks, list) else []):
        if isinstance(raw, dict) and raw.get("type") in SINK_SCHEMAS:
            schema = SINK_SCHEMAS[raw["type"]][0]
            for key in _FILE_KEYS:
                if key in schema and isinstance(raw.get(key), str) and raw[key]:
                    yield f"sinks[{index}].{key}", raw[key], False
    status = data.get("status")
    if isinstance(status, dict) and isinstance(status.get("token_file"), str) and status["token_file"]:
        yield "status.token_file", status["token_file"], False
    modem = data.get("modem")
    if isinstance(modem, dict) and isinstance(modem.get("port"), str):
        yield "modem.port", modem["port"], True
    serial = data.get("serial")
    for index, raw in enumerate(serial if isinstance(serial, list) else []):
        if isinstance(raw, dict) and isinstance(raw.get("port"), str):
            yield f"serial[{index}].port", raw["port"], True


def _path_problem(path: str, *, is_device: bool) -> str | None:
    """What keeps the relay from opening ``path``, or None when it looks usable."""
    if not os.path.exists(path):
        return "no such device now" if is_device else "no such file"
    if os.path.isdir(path):
        return "a directory"
    if not os.access(path, os.R_OK):
        return "not readable by this user"
    return None


def _read(path: Path) -> dict[str, Any]:
    """The parsed TOML of ``path``. :raises ConfigError: missing, unreadable or not TOML."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(str(path), "", "a readable config file", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([ConfigProblem(str(path), "", "a readable UTF-8 file", str(error))]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([ConfigProblem(str(path), "", "valid TOML", str(error))]) from None


def _load(path: Path, data: Mapping[str, Any]) -> Config:
    config = parse(data, source=str(path))
    if not config.data_dir.is_absolute():
        # Relative paths are relative to the config file, so a config works from any cwd.
        config = _replace_data_dir(config, (path.parent / config.data_dir).resolve())
    return config


def defaults() -> Config:
    """The embedded defaults: listen on 8888, journal in ./data, no sinks (store only)."""
    return Config()


def _replace_data_dir(config: Config, data_dir: Path) -> Config:
    from dataclasses import replace

    return replace(config, data_dir=data_dir)
