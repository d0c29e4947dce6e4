"""The status page at ``/``: rendered by a real headless Chromium from a running relay, and its token."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
import trio

from relay.config import check, parse
from relay.errors import ConfigError
from relay.service._page import render
from tests import devices
from tests.modem_emulator import ModemEmulator
from tests.relay.harness import relay_config, running_relay, wait_until

IMEI = "868683020419374"
PT600 = "1234567"
QUIET_IMEI = "359710049094643"
TOKEN = "s3cret-token-for-tests"
REPO = Path(__file__).resolve().parents[2]


def chromium() -> str:
    """The Chromium binary; fails (never skips) when there is none: ``./dev test`` installs it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.fail("no chromium on PATH: `./dev test` installs it (apt-get install chromium)")


async def browse(url: str, profile: Path, *options: str) -> bytes:
    """Run headless Chromium on ``url`` with ``options``; its stdout (the DOM for ``--dump-dom``)."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *options,
        url,
    ]
    with trio.fail_after(90):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout


class _Text(HTMLParser):
    """The visible text of a document (script and style left out), whitespace collapsed."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in ("script", "style", "title")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style", "title")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    @classmethod
    def of(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        return re.sub(r"\s+", " ", " ".join(parser.parts))


def card(dom: str, title: str) -> str:
    """The text of the one card (``<article>``) whose text starts with ``title``."""
    found = [
        text
        for part in dom.split("<article")[1:]
        if (text := _Text.of("<article" + part.split("</article>")[0]).strip()).startswith(title)
    ]
    assert len(found) == 1, (title, found)
    return found[0]


async def get(port: int, target: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    lines = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
    async with stream:
        await stream.send_all(f"GET {target} HTTP/1.1\r\nHost: relay\r\n{lines}\r\n".encode())
        response = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    parsed = {name.lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
    return int(status.split()[1]), parsed, body


async def test_the_page_in_headless_chromium_shows_devices_sinks_journal_and_modem(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    emulator = ModemEmulator(link=tmp_path / "usb-SimTech_SIM7600-if02-port0")
    await nursery.start(emulator.run)
    modem = {"port": str(emulator.link), "command_timeout_s": 0.5, "reopen_delay_s": 0.1}
    down_sink = {"name": "platform", "type": "mqtt", "url": "mqtt://127.0.0.1:9", "retry_min_s": 0.2}
    async with running_relay(
        tmp_path / "relay",
        status={"listen": "127.0.0.1:0", "token": TOKEN, "sink_stall_s": 0.5},
        sinks=[down_sink],
        modem=modem,
    ) as relay:
        ingest = relay.listener.ingest
        ingest.now = lambda: datetime.now(UTC) - timedelta(minutes=25)  # silent since: offline
        await devices.tcp_exchange(relay.port, [devices.gps103_position(QUIET_IMEI, 1)], replies=1)
        del ingest.now
        sos = devices.gps103_position(IMEI, 2).replace(b",tracker,", b",help me,")
        await devices.tcp_exchange(relay.port, [devices.gps103_login(IMEI), sos], replies=1)
        await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 3)], replies=1)
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        async with stream:  # pt502 is not answered: wait until its report is stored
            await stream.send_all(devices.pt502_position(PT600, 4))
            await wait_until(lambda: relay.journal.stats.committed_reports == 5, what="the PT-600's report")
        await wait_until(lambda: relay.health()["status"] != "ok", what="the sink to be stuck")
        await wait_until(
            lambda: relay.modem_status is not None and relay.modem_status.state == "ready", what="the modem"
        )
        url = f"http://127.0.0.1:{relay.status_port}/?token={TOKEN}"
        dom = (await browse(url, tmp_path / "profile", "--dump-dom")).decode()
        screenshot = tmp_path / "status-page.png"
        await browse(url, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=360,1800")

    assert screenshot.stat().st_size > 10_000
    (REPO / "test-output").mkdir(exist_ok=True)
    shutil.copyfile(screenshot, REPO / "test-output" / "status-page.png")

    text = _Text.of(dom)
    assert "Relay test-site PROBLEM disconnected for " in text  # the sink is down
    assert "clock synced" in text
    assert "Devices 2 online, 1 offline" in text
    coban = card(dom, IMEI)
    assert coban.startswith(f"{IMEI} online protocol gps103 / tcp last report ")
    assert "last event position" in coban
    assert re.search(r"alarms sos \d+ s ago", coban)  # the SOS before the newest position is still shown
    assert "last fix 51.05206, -0.11667 map 2026-11-20 08:00:03 UTC" in coban  # position 3 (51°03.1234')
    pt600 = card(dom, PT600)
    assert "protocol pt502 / tcp" in pt600 and "battery level 15" in pt600 and "-32.966" in pt600
    quiet = card(dom, QUIET_IMEI)
    assert quiet.startswith(f"{QUIET_IMEI} offline") and "last report 25 min ago 20" in quiet
    platform = card(dom, "platform")
    assert platform.startswith("platform not connected sends to mqtt · mqtt://127.0.0.1:9 backlog 5 reports")
    assert "oldest unsent 25 min ago" in platform and "last error" in platform
    assert re.search(r"size \d+\.\d MB of 2\.00 GB \(0%\)", text)
    assert "reports 5 quarantine 0 undecodable frames dead letters 0 refused for good" in text
    assert re.search(r"Modem SMS ready port \S+usb-SimTech_SIM7600-if02-port0 SIM READY", text)
    assert "signal good: -79 dBm (CSQ 17,99)" in text
    # The token stays in the page's own links, never in a link to another site.
    assert f'href="/status?token={TOKEN}"' in dom
    maps = re.findall(r'href="(https://www\.openstreetmap\.org/[^"]*)"', dom)
    assert len(maps) == 3 and all("mlat=" in link and TOKEN not in link for link in maps)


async def test_every_path_but_healthz_needs_the_token_as_bearer_or_query(tmp_path: Path) -> None:
    async with running_relay(tmp_path, status={"listen": "127.0.0.1:0", "token": TOKEN}) as relay:
        port = relay.status_port
        assert port
        await devices.tcp_exchange(relay.port, [devices.gps103_login(IMEI)], replies=2)
        for path in ("/", "/status", "/metrics", "/nope"):
            code, headers, _ = await get(port, path)
            assert code == 401 and headers["www-authenticate"].startswith("Bearer"), path
            assert (await get(port, f"{path}?token=wrong-{TOKEN}"))[0] == 401
            assert (await get(port, path, Authorization=f"Bearer {TOKEN}x"))[0] == 401
        assert (await get(port, "/healthz"))[0] == 200
        code, headers, body = await get(port, f"/?token={TOKEN}", Accept="text/html,*/*")
        assert code == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert headers["referrer-policy"] == "no-referrer"
        assert "default-src 'none'" in headers["content-security-policy"]
        assert IMEI in body.decode() and "<script>" in body.decode()
        code, headers, body = await get(port, "/", Authorization=f"Bearer {TOKEN}", Accept="application/json")
        assert code == 200 and headers["content-type"] == "application/json"
        document = json.loads(body)
        assert document["devices"][0]["device_id"] == IMEI
        assert document["relay"]["site"] == "test-site" and document["relay"]["clock"] == "synced"
        code, _, body = await get(port, f"/status?token={TOKEN}")
        assert code == 200 and json.loads(body)["relay"]["health"] == "ok"


async def test_a_token_file_is_read_at_start(tmp_path: Path) -> None:
    token_file = tmp_path / "status-token"
    token_file.write_text(TOKEN + "\n")
    status = {"listen": "127.0.0.1:0", "token_file": str(token_file)}
    async with running_relay(tmp_path, status=status) as relay:
        assert relay.status_port
        assert (await get(relay.status_port, "/status"))[0] == 401
        assert (await get(relay.status_port, "/status", Authorization=f"Bearer {TOKEN}"))[0] == 200


def problems(status: dict[str, str], tmp_path: Path) -> list[str]:
    try:
        parse(relay_config(tmp_path, status=status))
    except ConfigError as error:
        return [f"{problem.key}: {problem.expected}" for problem in error.problems]
    return []


def test_a_status_endpoint_off_loopback_needs_a_token(tmp_path: Path) -> None:
    assert problems({"listen": "127.0.0.1:8080"}, tmp_path) == []
    assert problems({"listen": "[::1]:8080"}, tmp_path) == []
    assert problems({"listen": "localhost:8080"}, tmp_path) == []
    (missing,) = problems({"listen": "0.0.0.0:8080"}, tmp_path)
    assert missing.startswith("status.token: a token (or token_file) when status.listen is not a loopback")
    assert problems({"listen": "192.168.1.10:8080"}, tmp_path) == [missing]
    assert problems({"listen": "0.0.0.0:8080", "token": TOKEN}, tmp_path) == []
    assert problems({"listen": "0.0.0.0:8080", "token": "short"}, tmp_path) == [
        "status.token: a token of at least 16 printable characters without spaces"
    ]
    assert problems({"listen": "0.0.0.0:8080", "token": TOKEN, "token_file": "/x"}, tmp_path) == [
        "status.token_file: token or token_file, not both"
    ]


def test_check_config_refuses_a_missing_status_token_file(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(f'[status]\nlisten = "0.0.0.0:8080"\ntoken_file = "{tmp_path}/nope"\n')
    checked = check(config)
    assert checked.config is None
    assert [(e.key, e.expected) for e in checked.errors] == [("status.token_file", "a readable file")]


def test_what_a_device_sends_is_escaped_on_the_page() -> None:
    device_id = "<b>x&y"  # device ids are printable ASCII: markup must come out as text
    status = {
        "devices": [
            {
                "device_id": device_id,
                "protocol": "gps103",
                "transport": "udp",
                "last_seen": "2026-11-20T08:00:00Z",
                "age_s": 5.0,
                "last_fix": None,
                "last_lat": None,
                "last_lon": None,
                "alarms": ["<i>"],
                "recent_alarms": [],
            }
        ],
        "sinks": [],
        "reports": 1,
        "quarantine": 0,
        "relay": {
            "site": "s",
            "version": "1",
            "uptime_s": 3700,
            "now": "2026-11-20T08:00:05Z",
            "clock": "unsynced",
            "health": "ok",
            "problems": [],
            "journal_max_bytes": 1 << 20,
            "sinks": {},
            "modem": None,
        },
    }
    page = render(status)
    assert "&lt;b&gt;x&amp;y" in page and "<b>" not in page and "&lt;i&gt;" in page
    text = _Text.of(page)
    assert "up 1 h 1 min" in text and "clock NOT SYNCED" in text
    assert f"{device_id} online protocol gps103 / udp" in text and "last fix none yet" in text
    assert "token" not in page  # no token configured: none in the links
