"""The relay's TOML configuration: parsed, checked in full, and turned into frozen settings.

Every mistake is reported at once, each naming the file, the key, what was expected and what was
found, so a field engineer fixes a file in one pass. Unknown keys are errors (a typo must never be
silently ignored on a box nobody watches).

Each section is one frozen dataclass whose fields are its keys: a field declared with :func:`setting`
carries its check and its one-line doc, and the parser walks those fields (no other list of keys).
The ``[relay]`` keys are the :class:`Config`'s own settings; each sink type is one class in
:data:`SINK_TYPES`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from drivers import MAX_DEVICE_ID, InvalidDeviceId, check_device_id

from . import calibration
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


# -- the values a string key may take ------------------------------------------------------------


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class UnknownDevices(StrEnum):
    """What the relay does with a device the registry does not list."""

    ACCEPT = "accept"
    QUARANTINE = "quarantine"
    REJECT = "reject"


class Synchronous(StrEnum):
    """How hard SQLite works to keep a commit across a power cut."""

    #: Every group commit is fsynced: an acknowledged report survives a power cut.
    FULL = "full"
    #: Faster; the last commits may be lost on power loss.
    NORMAL = "normal"


class Drain(StrEnum):
    """The order a sink sends its backlog in."""

    #: Per device oldest first, in the order the reports were received.
    IN_ORDER = "in_order"
    #: After each (re)connection every device's newest report first, then the backlog oldest first.
    LIVE_FIRST = "live_first"


class Start(StrEnum):
    """Where a sink the journal has no position for begins."""

    #: Everything still retained in the journal.
    OLDEST = "oldest"
    #: The journal's newest report: only later ones are sent.
    NOW = "now"


class SinkType(StrEnum):
    """The ``type`` of a ``[[sinks]]`` table."""

    MQTT = "mqtt"
    HTTP = "http"
    OSMAND = "osmand"
    PASSTHROUGH = "passthrough"


# -- checks: each returns what was expected, or None when the value is fine ----------------------

_Check = Callable[[Any], str | None]


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


def _one_of(choices: type[StrEnum]) -> _Check:
    def check(value: Any) -> str | None:
        ok = isinstance(value, str) and value in {choice.value for choice in choices}
        return None if ok else "one of " + ", ".join(repr(choice.value) for choice in choices)

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


def _senders(value: Any) -> str | None:
    return None if isinstance(value, dict) else 'a table of "+number" = "device id"'


def _site(value: Any) -> str | None:
    ok = isinstance(value, str) and value and all(ch.isalnum() or ch in "-_." for ch in value)
    return None if ok else "a name of letters, digits, '-', '_' or '.' (it goes into MQTT topics)"


def _topic_prefix(value: Any) -> str | None:
    ok = (
        isinstance(value, str) and value and not any(ch in value for ch in "#+\0") and not value.endswith("/")
    )
    return None if ok else "an MQTT topic prefix without '#', '+' or a trailing '/'"


def _listen_address(value: Any) -> str | None:
    if value == "":
        return None
    try:
        parse_listen(value)
    except (ValueError, TypeError):
        return 'host:port (e.g. "127.0.0.1:8080"), or "" for no status endpoint'
    return None


#: The shortest ``[status] token`` accepted (e.g. ``openssl rand -hex 16`` makes 32 characters).
MIN_STATUS_TOKEN = 16


def _status_token(value: Any) -> str | None:
    ok = isinstance(value, str) and len(value) >= MIN_STATUS_TOKEN and value.isprintable()
    ok = ok and " " not in value
    return None if ok else f"a token of at least {MIN_STATUS_TOKEN} printable characters without spaces"


def _serial_protocol(value: Any) -> str | None:
    names = _protocol_names()
    return None if value == "auto" or value in names else "'auto' or one of " + ", ".join(names)


def _protocol_names() -> list[str]:
    import drivers

    return list(drivers.drivers())


_STR = _is(str, "a string")
_BOOL = _is(bool, "true or false")


def setting(
    default: Any = MISSING,
    check: _Check = _STR,
    doc: str = "",
    *,
    convert: Callable[[Any], Any] | None = None,
    factory: Callable[[], Any] | None = None,
    opens: str | None = None,
) -> Any:
    """A config key: a dataclass field carrying its ``check``, its one-line ``doc`` and how the TOML
    value becomes the field's (``convert``; default: as is). Without a default the key is required.
    ``opens``: ``"file"`` or ``"device"`` when the value names one (``relay check-config`` looks)."""
    metadata = {"check": check, "doc": doc, "convert": convert, "opens": opens}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def choice(default: StrEnum, doc: str) -> Any:
    """A key whose value is one of ``default``'s enum (the TOML string, turned into the member)."""
    kind = type(default)
    return setting(default, _one_of(kind), doc, convert=kind)


# -- the sections --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenSettings:
    """The ``[listen]`` section: the one port trackers report to."""

    host: str = setting("0.0.0.0", _STR, 'the address to listen on ("::" for IPv6 too)')
    port: int = setting(DEFAULT_PORT, _int_range(0, 65535), "TCP and UDP on this port (0: any free port)")
    tcp: bool = setting(True, _BOOL, "accept TCP (and HTTP) trackers")
    udp: bool = setting(True, _BOOL, "accept UDP trackers")
    #: Trackers send heartbeats every few minutes.
    idle_timeout_s: float = setting(
        1800.0, _number_range(1, 7 * 86400), "a TCP connection silent this long is closed"
    )
    sniff_timeout_s: float = setting(
        30.0, _number_range(0.1, 3600), "time a new stream gets to show which protocol it speaks"
    )
    max_connections: int = setting(10000, _int_range(1, 1_000_000), "TCP connections at once")
    max_connections_per_ip: int = setting(200, _int_range(1, 1_000_000), "TCP connections from one address")
    max_buffered_mb: int = setting(
        32,
        _int_range(1, 4096),
        "bytes of partial frames held across all connections; the connection that goes over is closed",
    )
    max_udp_peers: int = setting(
        20_000,
        _int_range(1, 10_000_000),
        "UDP peers whose session (device id, partial photo) is remembered; the least recent are forgotten",
    )


@dataclass(frozen=True, slots=True)
class JournalSettings:
    """The ``[journal]`` section: the SQLite journal every report is committed to."""

    synchronous: Synchronous = choice(
        Synchronous.FULL, "full: every group commit fsynced; normal: may lose the last commits on power loss"
    )
    max_batch: int = setting(2000, _int_range(1, 100_000), "most reports written in one transaction")
    #: Fewer fsyncs and page rewrites on the SD card, at the cost of up to this much added to an
    #: acknowledgement at light load (trackers wait seconds).
    commit_interval_ms: int = setting(200, _int_range(0, 5000), "the least time between two group commits")
    max_db_mb: int = setting(
        2048, _int_range(1, 1_000_000), "size cap: delivered reports go first, then the oldest undelivered"
    )
    retention_days: float = setting(
        30.0, _number_range(0.01, 3650), "delivered reports older than this are deleted"
    )
    startup_check_s: float = setting(
        30.0,
        _number_range(0, 3600),
        "the journal is checked at start for at most this long; a damaged one is set aside (0: no check)",
    )
    quarantine_max_mb: int = setting(
        64, _int_range(1, 1_000_000), "bytes all quarantined input may take; beyond it bad input is counted"
    )
    quarantine_peer_max_kb: int = setting(
        1024, _int_range(1, 1_000_000), "bytes of quarantined input one peer address may take"
    )
    quarantine_frame_max_kb: int = setting(
        64, _int_range(1, 65_536), "a quarantined frame longer than this keeps only its head"
    )
    max_devices: int = setting(
        20_000, _int_range(1, 10_000_000), "devices whose last-seen row is kept (least recent forgotten)"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkSettings:
    """The keys every sink has; each sink type's class (:data:`SINK_TYPES`) adds its own."""

    type: ClassVar[SinkType]

    name: str = setting(check=_STR, doc="names the sink in logs, status and its journal position")
    start: Start = choice(
        Start.OLDEST,
        "where a newly added sink begins: oldest (all the journal keeps) or now (only later reports)",
    )
    drain: Drain = choice(
        Drain.IN_ORDER, "in_order: per device oldest first; live_first: each device's newest first"
    )
    retry_min_s: float = setting(1.0, _number_range(0.01, 3600), "the shortest wait before a retry")
    retry_max_s: float = setting(60.0, _number_range(0.01, 86400), "the longest wait before a retry")
    probe_interval_s: float = setting(
        1.0,
        _number_range(0, 3600),
        "while the server cannot be reached, how often a bare TCP connect checks it is back"
        " (cuts the backoff short; about 60 bytes a probe; 0: off)",
    )

    @classmethod
    def derive(cls, values: dict[str, Any], site: str) -> None:
        """Fill in the defaults that depend on other values (checked, converted ``values``)."""
        del values, site

    @property
    def target(self) -> str:
        """Where the sink sends, fit for a log line (a password in the URL shown as ``***``)."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSinkSettings(SinkSettings):
    """Publish each report to an MQTT broker (QoS 1), the report's device in the topic."""

    type: ClassVar[SinkType] = SinkType.MQTT

    url: str = setting(check=_mqtt_url, doc="mqtt://host[:port] or mqtts://host[:port] (TLS)")
    topic_prefix: str = setting("", _topic_prefix, "topics start with this (default: relay/<site>)")
    client_id: str = setting("", _STR, "the MQTT client id (default: relay-<site>-<name>)")
    username: str | None = setting(None, _STR, "the broker's user (or in the URL, not both)")
    password: str | None = setting(None, _STR, "the broker's password (never logged)")
    ca_file: str | None = setting(
        None, _STR, "the CA certificate for mqtts:// with a private CA", opens="file"
    )
    keepalive_s: int = setting(30, _int_range(5, 3600), "the MQTT keepalive")
    inflight: int = setting(
        50, _int_range(1, 1000), "reports published but not yet acknowledged (PUBACK) at any moment"
    )
    qos: int = setting(1, _int_range(1, 1), "always 1: a report leaves the queue only after its PUBACK")
    #: A stalled broker: the connection is dropped and the window sent again on the next one.
    puback_timeout_s: float = setting(
        30.0, _number_range(0.1, 3600), "a publish unacknowledged this long means a stalled broker"
    )
    commands: bool = setting(
        True, _BOOL, "take commands for the devices from <topic_prefix>/<device_id>/command"
    )

    @classmethod
    def derive(cls, values: dict[str, Any], site: str) -> None:
        values["topic_prefix"] = values.get("topic_prefix") or f"relay/{site}"
        values["client_id"] = values.get("client_id") or f"relay-{site}-{values['name']}"
        credentials = url_credentials(values["url"])
        if credentials is not None:  # parse() made sure the username/password keys are not given too
            values["username"], values["password"] = credentials

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


class _UrlSink:
    """The properties of a sink that sends HTTP requests to ``url`` (a mixin; no fields)."""

    __slots__ = ()
    url: str

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


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpSinkSettings(_UrlSink, SinkSettings):
    """POST JSON batches of normalized reports to ``url``."""

    type: ClassVar[SinkType] = SinkType.HTTP

    url: str = setting(check=_http_url, doc="http(s)://host[:port]/path the batches are POSTed to")
    headers: Mapping[str, str] = setting(
        check=_headers, doc="extra request headers (a table)", convert=dict, factory=dict
    )
    token: str | None = setting(None, _STR, "a bearer token (Authorization: Bearer)")
    token_file: str | None = setting(None, _STR, "or a file holding it (read at start)", opens="file")
    gzip: bool = setting(False, _BOOL, "Content-Encoding: gzip request bodies")
    verify: bool = setting(True, _BOOL, "check the server's TLS certificate")
    ca_file: str | None = setting(
        None, _STR, "check it against this CA (default: the system's CAs)", opens="file"
    )
    timeout_s: float = setting(30.0, _number_range(0.1, 3600), "longest wait for one read, write or connect")
    request_deadline_s: float = setting(
        60.0, _number_range(0.1, 86400), "longest time for a whole request (connect, upload, answer)"
    )
    #: A batch is sent when it holds this many reports, would pass this many bytes, or its oldest
    #: report has waited this long (whichever comes first).
    batch_max_reports: int = setting(500, _int_range(1, 100_000), "most reports in one batch")
    batch_max_bytes: int = setting(1_000_000, _int_range(1024, 100_000_000), "most bytes in one batch")
    batch_max_age_s: float = setting(1.0, _number_range(0, 3600), "longest a report waits for its batch")
    retry_max_s: float = setting(300.0, _number_range(0.01, 86400), "the longest wait before a retry")


@dataclass(frozen=True, slots=True, kw_only=True)
class OsmandSinkSettings(_UrlSink, SinkSettings):
    """One HTTP request per position, in the OsmAnd form a Traccar server reads (port 5055)."""

    type: ClassVar[SinkType] = SinkType.OSMAND

    url: str = setting(check=_http_url, doc="http(s)://host[:port]/ of the Traccar OsmAnd port")
    headers: Mapping[str, str] = setting(
        check=_headers, doc="extra request headers (a table)", convert=dict, factory=dict
    )
    verify: bool = setting(True, _BOOL, "check the server's TLS certificate")
    ca_file: str | None = setting(
        None, _STR, "check it against this CA (default: the system's CAs)", opens="file"
    )
    timeout_s: float = setting(15.0, _number_range(0.1, 3600), "longest wait for one read, write or connect")
    request_deadline_s: float = setting(
        30.0, _number_range(0.1, 86400), "longest time for a whole request (connect, upload, answer)"
    )
    concurrency: int = setting(
        8, _int_range(1, 256), "devices sent to in parallel (each device's positions stay in order)"
    )
    inflight: int = setting(
        200, _int_range(1, 10_000), "reports handed out at once (over all devices) and not yet answered"
    )
    retry_max_s: float = setting(300.0, _number_range(0.01, 86400), "the longest wait before a retry")


@dataclass(frozen=True, slots=True, kw_only=True)
class PassthroughSinkSettings(SinkSettings):
    """Each device's raw frames to ``host:port`` over its own transport, one upstream session per device."""

    type: ClassVar[SinkType] = SinkType.PASSTHROUGH

    host: str = setting(check=_STR, doc="the upstream server's host")
    port: int = setting(check=_int_range(1, 65535), doc="the upstream server's port")
    protocols: tuple[str, ...] = setting(
        (),
        _names,
        "only these protocols are forwarded (empty: all); the others are acknowledged",
        convert=tuple,
    )
    connect_timeout_s: float = setting(10.0, _number_range(0.1, 600), "longest wait for a connection")
    ack_timeout_s: float = setting(
        10.0, _number_range(0.1, 600), "how long an upstream acknowledgement (record count, login) may take"
    )
    idle_timeout_s: float = setting(
        300.0, _number_range(1, 7 * 86400), "an upstream session with nothing to send this long is closed"
    )

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


#: Each sink ``type`` and the class of its settings (``relay.sinks`` maps those to the sinks).
SINK_TYPES: dict[SinkType, type[SinkSettings]] = {
    settings.type: settings
    for settings in (MqttSinkSettings, HttpSinkSettings, OsmandSinkSettings, PassthroughSinkSettings)
}


@dataclass(frozen=True, slots=True)
class StatusSettings:
    """The ``[status]`` section: where the status endpoint listens, who may read it, and when /healthz
    calls a sink stuck."""

    listen: str = setting(
        "", _listen_address, 'host:port of GET /, /healthz, /metrics and /status ("": no endpoint)'
    )
    #: ``Authorization: Bearer`` or ``?token=``; required when ``listen`` is not a loopback address.
    token: str | None = setting(None, _status_token, "asked of every request but /healthz")
    token_file: str | None = setting(None, _STR, "or a file holding it (read at start)", opens="file")
    commands: bool = setting(
        True, _BOOL, "serve /api/devices/<id>/commands (POST queues a command; with a token, only Bearer)"
    )
    sink_stall_s: float = setting(
        300.0,
        _number_range(0.1, 7 * 86400),
        "a sink with a backlog and no delivery (or disconnected with an error) this long makes /healthz 503",
    )


@dataclass(frozen=True, slots=True)
class ModemSettings:
    """The ``[modem]`` section: the serial port and how patient to be with it."""

    port: str = setting(check=_STR, doc="the modem's serial port", opens="device")
    baudrate: int = setting(115200, _int_range(300, 4_000_000), "the serial line's speed")
    senders: Mapping[str, str] = setting(
        check=_senders, doc="SMS sender number -> device id (a table)", convert=dict, factory=dict
    )
    command_timeout_s: float = setting(
        10.0, _number_range(0.5, 600), "longest wait for an AT command's answer"
    )
    reopen_delay_s: float = setting(5.0, _number_range(0.1, 3600), "wait before opening a lost port again")
    concat_timeout_s: float = setting(
        600.0,
        _number_range(1, 86400),
        "how long the parts of a concatenated SMS are waited for before it is quarantined",
    )


@dataclass(frozen=True, slots=True)
class SerialSource:
    """A tracker wired to a serial port, speaking one of the drivers' protocols (a ``[[serial]]`` table)."""

    port: str = setting(check=_STR, doc="the tracker's serial port", opens="device")
    baudrate: int = setting(9600, _int_range(300, 4_000_000), "the serial line's speed")
    protocol: str = setting("auto", _serial_protocol, '"auto" (recognised from the bytes) or a protocol name')
    reopen_delay_s: float = setting(5.0, _number_range(0.1, 3600), "wait before opening a lost port again")


def _time_zone(value: Any) -> str | None:
    expected = 'an IANA time zone name, e.g. "Europe/Berlin" or "UTC"'
    if not isinstance(value, str) or not value:
        return expected
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return expected
    return None


def _device_id_check(value: Any) -> str | None:
    ok = _is_device_id(value)
    return None if ok else f"a device id of 1 to {MAX_DEVICE_ID} printable ASCII characters without spaces"


def _phone(value: Any) -> str | None:
    ok = isinstance(value, str) and sum(ch.isdigit() for ch in value) >= 3
    ok = ok and all(ch.isdigit() or ch in "+ -()" for ch in value)
    return None if ok else 'a phone number, e.g. "+15551234567"'


def _tags(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(item, str) and item for item in value)
    return None if ok else 'a list of words, e.g. ["bike", "yard-2"]'


def _optional_protocol(value: Any) -> str | None:
    names = _protocol_names()
    return None if value in names else "one of " + ", ".join(names)


def _calibration(value: Any) -> str | None:
    return calibration.parse(value)[1]


def _calibrations(value: Any) -> tuple[calibration.Calibration, ...]:
    return calibration.parse(value)[0]


@dataclass(frozen=True, slots=True)
class DeviceSettings:
    """One known tracker (a ``[[devices]]`` table): the registry (:mod:`relay.devices`) is made of them."""

    id: str = setting(check=_device_id_check, doc="the device id the tracker reports (its IMEI, mostly)")
    name: str = setting("", _STR, "what people call it (a bike number, a plate)")
    phone: str | None = setting(
        None, _phone, "its SIM's number: SMS from it are its reports (replaces [modem.senders])"
    )
    protocol: str | None = setting(None, _optional_protocol, "the protocol it speaks (informative)")
    timezone: str | None = setting(
        None, _time_zone, "the time zone its clock is set to, for protocols that send local time"
    )
    offline_after_s: float | None = setting(
        None,
        _number_range(0, 30 * 86400),
        "silence this long makes it offline: deviceOffline (default: [relay] offline_after_s; 0: never)",
    )
    sms_after_s: float | None = setting(
        None,
        _number_range(0, 30 * 86400),
        "a command queued this long for it goes by SMS to its phone instead (default: never)",
    )
    tags: tuple[str, ...] = setting((), _tags, "free words to group devices by", convert=tuple)
    calibration: tuple[calibration.Calibration, ...] = setting(
        (),
        _calibration,
        "sensor tables: {input = raw attribute, output = calibrated attribute, points = [[raw, value], ...]}",
        convert=_calibrations,
    )


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the relay needs to run, validated. Its own settings are the ``[relay]`` keys."""

    source: str = "<defaults>"
    site: str = setting("relay", _site, "names this gateway in MQTT topics and in every report")
    data_dir: Path = setting(
        Path("data"), _STR, "the journal lives here; relative to the config file", convert=Path
    )
    log_level: LogLevel = choice(LogLevel.INFO, "debug | info | warning | error")
    offline_after_s: float = setting(
        0.0,
        _number_range(0, 30 * 86400),
        "a device silent this long is offline (deviceOffline, then deviceOnline when it is back; 0: off)",
    )
    unknown_devices: UnknownDevices = choice(
        UnknownDevices.ACCEPT,
        "a device not in the registry: accept (store and answer), quarantine (keep its bytes, answer"
        " nothing) or reject (close its connection)",
    )
    devices_file: str = setting(
        "", _STR, "more [[devices]] in a TOML or CSV file (relative to this file), reloaded on SIGHUP"
    )
    listen: ListenSettings = ListenSettings()
    journal: JournalSettings = JournalSettings()
    sinks: tuple[SinkSettings, ...] = ()
    modem: ModemSettings | None = None
    serial: tuple[SerialSource, ...] = ()
    status: StatusSettings = StatusSettings()
    devices: tuple[DeviceSettings, ...] = ()

    @property
    def database(self) -> Path:
        return self.data_dir / "journal.sqlite3"


_DEFAULT = Config()

#: The tables of the file (``[name]``) and the class whose settings are their keys.
SECTIONS: dict[str, type] = {
    "relay": Config,
    "listen": ListenSettings,
    "journal": JournalSettings,
    "modem": ModemSettings,
    "status": StatusSettings,
}
#: The arrays of tables (``[[name]]``); a sink's class is chosen by its ``type``.
ARRAYS = ("sinks", "serial", "devices")


@dataclass(frozen=True, slots=True)
class Key:
    """One config key: where it goes (``relay``, ``sinks.mqtt``, ``serial``…), its name, default and doc."""

    section: str
    name: str
    default: Any
    doc: str


def keys() -> Iterator[Key]:
    """Every key the config file may have, walked from the settings dataclasses."""
    for section, settings in SECTIONS.items():
        for item in _settings(settings):
            yield Key(section, item.name, _default(item), item.metadata["doc"])
    for kind, settings in SINK_TYPES.items():
        yield Key(f"sinks.{kind}", "type", kind.value, "the sink's type")
        for item in _settings(settings):
            yield Key(f"sinks.{kind}", item.name, _default(item), item.metadata["doc"])
    for item in _settings(SerialSource):
        yield Key("serial", item.name, _default(item), item.metadata["doc"])
    for item in _settings(DeviceSettings):
        yield Key("devices", item.name, _default(item), item.metadata["doc"])


def _settings(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of ``cls`` that are config keys (declared with :func:`setting`)."""
    return [item for item in fields(cls) if "check" in item.metadata]


def _default(item: dataclasses.Field[Any]) -> Any:
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    return MISSING


def _schema(cls: type) -> dict[str, _Check]:
    return {item.name: item.metadata["check"] for item in _settings(cls)}


def _required(cls: type) -> list[str]:
    return [item.name for item in _settings(cls) if _default(item) is MISSING]


def _convert(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Checked TOML ``values`` as the field values of ``cls`` (enums, tuples, paths)."""
    converters = {item.name: item.metadata["convert"] for item in _settings(cls)}
    return {key: (converters[key] or _same)(value) for key, value in values.items()}


def _same(value: Any) -> Any:
    return value


# -- parsing -------------------------------------------------------------------------------------


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

    def required(self, prefix: str, raw: Any, cls: type) -> bool:
        """Say each required key of ``cls`` missing from ``raw``; True when none is."""
        missing = [key for key in _required(cls) if isinstance(raw, dict) and key not in raw]
        for key in missing:
            self.problem(f"{prefix}.{key}", "a value (this key is required)", NOTHING)
        return isinstance(raw, dict) and not missing


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
        if section not in SECTIONS and section not in ARRAYS:
            known = ", ".join([*(f"[{name}]" for name in SECTIONS), *(f"[[{name}]]" for name in ARRAYS)])
            checker.problem(section, f"one of the known sections: {known}", UNKNOWN_SECTION)
    sections = {
        name: checker.table(name, data.get(name, {}), _schema(SECTIONS[name]))
        for name in ("relay", "listen", "journal", "status")
    }
    _check_status_access(checker, sections["status"], data.get("status", {}))
    site = sections["relay"].get("site", _DEFAULT.site)
    sinks = _parse_sinks(checker, data.get("sinks", []), site)

    modem: ModemSettings | None = None
    if "modem" in data:
        values = checker.table("modem", data["modem"], _schema(ModemSettings))
        complete = checker.required("modem", data["modem"], ModemSettings)
        for number, device in values.get("senders", {}).items():
            if not _is_device_id(device):
                checker.problem(
                    f"modem.senders.{number}",
                    f"a device id of 1 to {MAX_DEVICE_ID} printable ASCII characters without spaces",
                    device,
                )
        if complete and all(key in values for key in _required(ModemSettings)):
            modem = ModemSettings(**_convert(ModemSettings, values))

    serial: list[SerialSource] = []
    raw_serial = data.get("serial", [])
    if not isinstance(raw_serial, list):
        checker.problem("serial", "an array of tables ([[serial]])", raw_serial)
        raw_serial = []
    for index, raw in enumerate(raw_serial):
        values = checker.table(f"serial[{index}]", raw, _schema(SerialSource))
        if checker.required(f"serial[{index}]", raw, SerialSource) and values.keys() == raw.keys():
            serial.append(SerialSource(**_convert(SerialSource, values)))

    devices = _parse_devices(checker, data.get("devices", []))

    if checker.problems:
        raise ConfigError(checker.problems)
    return Config(
        devices=tuple(devices),
        source=source,
        **_convert(Config, sections["relay"]),
        listen=ListenSettings(**_convert(ListenSettings, sections["listen"])),
        journal=JournalSettings(**_convert(JournalSettings, sections["journal"])),
        sinks=tuple(sinks),
        modem=modem,
        serial=tuple(serial),
        status=StatusSettings(**_convert(StatusSettings, sections["status"])),
    )


def _parse_sinks(checker: _Checker, raw_sinks: Any, site: str) -> list[SinkSettings]:
    sinks: list[SinkSettings] = []
    if not isinstance(raw_sinks, list):
        checker.problem("sinks", "an array of tables ([[sinks]])", raw_sinks)
        raw_sinks = []
    names: set[str] = set()
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
        if not isinstance(kind, str) or kind not in SINK_TYPES:
            checker.problem(f"{prefix}.type", "one of " + ", ".join(repr(t.value) for t in SINK_TYPES), kind)
            continue
        settings = SINK_TYPES[SinkType(kind)]
        schema = _schema(settings)
        values = checker.table(prefix, raw, {"name": schema.pop("name"), "type": _STR, **schema})
        values.pop("type", None)
        complete = checker.required(prefix, raw, settings)
        if "token" in values and "token_file" in values:
            checker.problem(f"{prefix}.token_file", "token or token_file, not both", _Described("both"))
            continue
        if _credentials_twice(checker, prefix, values):
            continue
        if kind == SinkType.MQTT.value and "password" in values and "username" not in values:
            # MQTT sends no password without a user name: it would be dropped without a word.
            checker.problem(f"{prefix}.username", "a username beside the password", _Described("none"))
            continue
        if duplicate or not complete or any(key not in values for key in _required(settings)):
            continue
        values = _convert(settings, values)
        settings.derive(values, site)
        sinks.append(settings(**values))
    return sinks


def _parse_devices(
    checker: _Checker, raw_devices: Any, label: Callable[[int], str] = "devices[{}]".format
) -> list[DeviceSettings]:
    """The ``[[devices]]`` tables (each named by ``label(index)`` in errors); a duplicate id or phone
    number is an error (naming both)."""
    devices: list[DeviceSettings] = []
    if not isinstance(raw_devices, list):
        checker.problem("devices", "an array of tables ([[devices]])", raw_devices)
        return devices
    ids: dict[str, int] = {}
    phones: dict[str, int] = {}
    for index, raw in enumerate(raw_devices):
        prefix = label(index)
        values = checker.table(prefix, raw, _schema(DeviceSettings))
        complete = checker.required(prefix, raw, DeviceSettings)
        device_id = values.get("id")
        if device_id is not None:
            if device_id in ids:
                expected = f"an id no other device has ({label(ids[device_id])})"
                checker.problem(f"{prefix}.id", expected, device_id)
                continue
            ids[device_id] = index
        phone = values.get("phone")
        if phone is not None:
            digits = _digits(phone)
            if digits in phones:
                checker.problem(
                    f"{prefix}.phone", f"a number no other device has ({label(phones[digits])})", phone
                )
                continue
            phones[digits] = index
        if complete and isinstance(raw, dict) and values.keys() == raw.keys():
            devices.append(DeviceSettings(**_convert(DeviceSettings, values)))
    return devices


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


def _named_paths(data: Mapping[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """``(key, path, is_device)`` for every file and device the parsed TOML names under a known key
    (the keys declared with ``opens="file"`` or ``opens="device"``)."""
    for prefix, raw, settings in _tables(data):
        for item in _settings(settings):
            opens, value = item.metadata["opens"], raw.get(item.name)
            if opens and isinstance(value, str) and (value or opens == "device"):
                yield f"{prefix}.{item.name}", value, opens == "device"


def _tables(data: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any], type]]:
    """``(key prefix, table, settings class)`` for every table of the parsed TOML of a known kind."""
    sinks = data.get("sinks")
    for index, raw in enumerate(sinks if isinstance(sinks, list) else []):
        kind = raw.get("type") if isinstance(raw, dict) else None
        if isinstance(kind, str) and kind in SINK_TYPES:
            yield f"sinks[{index}]", raw, SINK_TYPES[SinkType(kind)]
    for name, settings in SECTIONS.items():
        if isinstance(data.get(name), dict):
            yield name, data[name], settings
    serial = data.get("serial")
    for index, raw in enumerate(serial if isinstance(serial, list) else []):
        if isinstance(raw, dict):
            yield f"serial[{index}]", raw, SerialSource


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
    if config.devices_file:
        file = path.parent / config.devices_file
        more = load_devices(file)
        problems = []
        ids = {device.id for device in config.devices}
        phones = {_digits(device.phone) for device in config.devices if device.phone}
        for device in more:
            twice = f"not also in {path.name}'s [[devices]]"
            if device.id in ids:
                problems.append(ConfigProblem(str(file), f"device {device.id}", f"an id {twice}", device.id))
            elif device.phone and _digits(device.phone) in phones:
                where = f"device {device.id}.phone"
                problems.append(ConfigProblem(str(file), where, f"a number {twice}", device.phone))
        if problems:
            raise ConfigError(problems)
        config = dataclasses.replace(config, devices=config.devices + more, devices_file=str(file.resolve()))
    return config


def _digits(phone: str | None) -> str:
    return "".join(ch for ch in phone or "" if ch.isdigit())


#: The columns a devices CSV file may have (calibration tables need the TOML form).
CSV_COLUMNS = ("id", "name", "phone", "protocol", "timezone", "offline_after_s", "tags")


def load_devices(path: Path) -> tuple[DeviceSettings, ...]:
    """The devices of a devices file: ``[[devices]]`` tables in a ``.toml`` file, or a ``.csv`` file
    with a header row of :data:`CSV_COLUMNS` (``tags`` separated by spaces; an empty cell is the
    key's default). A byte-order mark (as Excel writes) is accepted.

    :raises ConfigError: unreadable, or any device in it invalid (named by its table or CSV line).
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        problem = ConfigProblem(str(path), "", "a readable UTF-8 devices file", str(error))
        raise ConfigError([problem]) from None
    checker = _Checker(str(path))
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        unknown = [name for name in reader.fieldnames or () if name not in CSV_COLUMNS]
        if unknown or "id" not in (reader.fieldnames or ()):
            expected = "a header row of " + ", ".join(CSV_COLUMNS) + " (id required)"
            header = repr(",".join(reader.fieldnames or ()))
            raise ConfigError([ConfigProblem(str(path), "line 1", expected, header)])
        rows = [_csv_device(row) for row in reader]
        devices = _parse_devices(checker, rows, lambda index: f"line {index + 2}")
    elif path.suffix.lower() == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError([ConfigProblem(str(path), "", "valid TOML", str(error))]) from None
        for key in data:
            if key != "devices":
                checker.problem(key, "only [[devices]] tables", UNKNOWN_SECTION)
        devices = _parse_devices(checker, data.get("devices", []))
    else:
        raise ConfigError([ConfigProblem(str(path), "", "a .toml or .csv devices file", repr(path.suffix))])
    if checker.problems:
        raise ConfigError(checker.problems)
    return tuple(devices)


def _csv_device(row: Mapping[str, str | None]) -> dict[str, Any]:
    device: dict[str, Any] = {}
    for key, value in row.items():
        if key is None or value is None or not value.strip():
            continue  # an empty cell is the default; extra cells past the header are csv's None key
        value = value.strip()
        if key == "tags":
            device[key] = value.replace(";", " ").split()
        elif key == "offline_after_s":
            try:
                device[key] = float(value)
            except ValueError:
                device[key] = value  # the check says what is wrong
        else:
            device[key] = value
    return device


def defaults() -> Config:
    """The embedded defaults: listen on 8888, journal in ./data, no sinks (store only)."""
    return Config()


def _replace_data_dir(config: Config, data_dir: Path) -> Config:
    from dataclasses import replace

    return replace(config, data_dir=data_dir)
