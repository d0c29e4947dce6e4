"""The status page a technician opens on a phone: one self-contained HTML document, no external assets.

:func:`live` gathers what only the running relay knows (health, sinks' connections, the modem, uptime,
the clock); :func:`render` turns that and the journal's status (:meth:`relay.journal.JournalReader.status`)
into HTML. The page works offline on the Pi's network (inline CSS, a few lines of script), fits a 360-px
screen (stacked cards), and refreshes itself every :data:`REFRESH_S` seconds: a script fetches the page
again and swaps its content in (keeping the scroll position, and saying so when the relay stops
answering); without scripts, a meta refresh reloads it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from .. import __version__
from ..clock import clock_unsynced

if TYPE_CHECKING:
    from ._running import Running

#: Seconds between two refreshes of the page.
REFRESH_S = 10
#: A device silent longer than this is shown offline.
OFFLINE_AFTER_S = 600.0
#: Devices shown on the page (the most recently seen first); the JSON at /status has them all.
MAX_DEVICES_SHOWN = 500


def live(running: Running) -> dict[str, Any]:
    """What the running relay knows beyond its journal: ``/status`` serves it under ``"relay"``."""
    config = running.config
    settings = {sink.name: sink for sink in config.sinks}
    health = running.health()
    now = datetime.now(UTC)
    modem: dict[str, Any] | None = None
    if config.modem is not None:
        modem = {"port": config.modem.port, "state": "starting", "sim": None, "signal": None, "error": None}
        if running.modem_status is not None:
            modem.update(vars(running.modem_status))
    return {
        "site": config.site,
        "version": __version__,
        "uptime_s": round(time.monotonic() - running.started_at),
        "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "clock": "unsynced" if clock_unsynced(now) else "synced",
        "health": health["status"],
        "problems": [
            check["reason"]
            for check in (
                health["checks"]["journal"],
                health["checks"]["listener"],
                *health["checks"]["sinks"].values(),
            )
            if "reason" in check
        ],
        "journal_max_bytes": config.journal.max_db_mb * 1024 * 1024,
        "sinks": {
            sink.name: {
                "type": settings[sink.name].type,
                "target": _without_secrets(settings[sink.name].target),
                "connected": sink.connected,
                "last_error": sink.last_error,
                "pending": sink.backlog(),
                **running.uplink(sink),
            }
            for sink in running.sinks
        },
        "modem": modem,
    }


def _without_secrets(target: str) -> str:
    """A sink's URL without a password in it (``mqtt://user:secret@host`` -> ``mqtt://user@host``)."""
    scheme, sep, rest = target.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return target
    credentials, _, host = rest.partition("@")
    return f"{scheme}://{credentials.split(':', 1)[0]}@{host}"


def render(status: dict[str, Any], *, token: str | None = None) -> str:
    """The whole page for ``status`` (the ``/status`` document, with ``"relay"`` from :func:`live`).
    ``token``, when given, goes into the page's own links (never into links to other sites)."""
    relay = status["relay"]
    query = "?" + urlencode({"token": token}) if token else ""
    title = f"relay {relay['site']}"
    body = "".join(
        [
            _header(relay),
            _devices(status["devices"], relay["now"]),
            _sinks(status["sinks"], relay["sinks"]),
            _journal(status, relay),
            _modem(relay["modem"]),
            f'<p class="foot">as of {escape(_when(relay["now"]))} · refreshes every {REFRESH_S} s · '
            f'<a href="/status{escape(query)}">JSON</a> · <a href="/metrics{escape(query)}">metrics</a></p>',
        ]
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{escape(title)}</title>"
        f'<noscript><meta http-equiv="refresh" content="{REFRESH_S}"></noscript>'
        f"<style>{_CSS}</style></head>\n"
        f'<body><div id="gone" class="gone" hidden></div><div id="page">{body}</div>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def _header(relay: dict[str, Any]) -> str:
    ok = relay["health"] == "ok"
    problems = "".join(f"<li>{escape(problem)}</li>" for problem in relay["problems"])
    clock = relay["clock"]
    return (
        f'<header><h1>Relay <span class="site">{escape(relay["site"])}</span> '
        f'{_badge("OK" if ok else "PROBLEM", "ok" if ok else "bad")}</h1>'
        + (f'<ul class="problems">{problems}</ul>' if problems else "")
        + '<dl class="facts">'
        + _row("version", escape(relay["version"]))
        + _row("up", escape(_duration(relay["uptime_s"])))
        + _row(
            "clock",
            _badge("synced", "ok") if clock == "synced" else _badge("NOT SYNCED", "bad")
            + ' <span class="note">receive times are not to be trusted</span>',
        )
        + "</dl></header>"
    )


def _devices(devices: list[dict[str, Any]], now: str) -> str:
    online = sum(1 for device in devices if _online(device))
    cards = []
    for device in devices[:MAX_DEVICES_SHOWN]:
        is_online = _online(device)
        rows = [
            _row("protocol", f"{escape(device['protocol'] or '?')} / {escape(device['transport'] or '?')}"),
            _row("last report", _stamp(device["last_seen"], device["age_s"])),
        ]
        if device.get("last_event"):
            rows.append(_row("last event", escape(device["last_event"])))
        rows.append(_row("last fix", _fix(device)))
        if device.get("battery"):
            rows.append(_row("battery", escape(_battery(device["battery"]))))
        alarms = device.get("recent_alarms") or [
            {"alarm": alarm, "received_at": None} for alarm in device.get("alarms", [])
        ]
        if alarms:
            rows.append(_row("alarms", ", ".join(_alarm(alarm, now) for alarm in alarms)))
        badge = _badge("online", "ok") if is_online else _badge("offline", "bad")
        cards.append(
            f'<article class="card device"><h3><span class="id">{escape(device["device_id"])}</span>'
            f"{badge}</h3><dl>{''.join(rows)}</dl></article>"
        )
    more = len(devices) - MAX_DEVICES_SHOWN
    if more > 0:
        cards.append(f'<p class="note">and {more} devices seen less recently (all of them: JSON)</p>')
    if not devices:
        cards.append('<p class="note">No device has reported yet.</p>')
    summary = f"{online} online, {len(devices) - online} offline" if devices else "none yet"
    return f'<section><h2>Devices <span class="count">{summary}</span></h2>{"".join(cards)}</section>'


def _sinks(backlogs: list[dict[str, Any]], live_sinks: dict[str, dict[str, Any]]) -> str:
    cards = []
    for backlog in backlogs:
        sink = live_sinks.get(backlog["sink"], {})
        connected = sink.get("connected", False)
        kind, target = escape(sink.get("type", "?")), escape(sink.get("target", "?"))
        rows = [
            _row("sends to", f'{kind} · <span class="wrap">{target}</span>'),
            _row("backlog", f"{sink.get('pending', backlog['pending'])} reports"),
            _row(
                "oldest unsent",
                _stamp(backlog["oldest_received_at"], backlog["oldest_age_s"])
                if backlog["oldest_received_at"]
                else "nothing waiting",
            ),
        ]
        if sink.get("last_error"):
            rows.append(_row("last error", f'<span class="err wrap">{escape(sink["last_error"])}</span>'))
        badge = _badge("connected", "ok") if connected else _badge("not connected", "bad")
        cards.append(
            f'<article class="card"><h3><span class="id">{escape(backlog["sink"])}</span>{badge}</h3>'
            f"<dl>{''.join(rows)}</dl></article>"
        )
    if not backlogs:
        cards.append('<p class="note">No sink: reports are stored here and forwarded nowhere.</p>')
    return f"<section><h2>Sinks</h2>{''.join(cards)}</section>"


def _journal(status: dict[str, Any], relay: dict[str, Any]) -> str:
    size, cap = status.get("size_bytes", 0), relay["journal_max_bytes"]
    share = min(size / cap, 1.0) if cap else 0.0
    bar = f'<div class="bar"><div style="width:{share * 100:.1f}%"></div></div>'
    level = "bad" if share >= 0.9 else ""
    rows = [
        _row("size", f'<span class="{level}">{_mb(size)} of {_mb(cap)} ({share:.0%})</span>{bar}'),
        _row("reports", f"{status['reports']}"),
        _row("quarantine", f"{status['quarantine']} undecodable frames"),
        _row("dead letters", f"{status.get('dead_letters', 0)} refused for good"),
    ]
    commands = status.get("commands")
    if commands:
        oldest = f", the oldest {commands['oldest_age_s'] or 0:.0f} s old" if commands["queued"] else ""
        rows.append(_row("commands", f"{commands['queued']} waiting{oldest}, {commands['sent']} sent"))
    return f'<section><h2>Journal</h2><article class="card"><dl>{"".join(rows)}</dl></article></section>'


def _modem(modem: dict[str, Any] | None) -> str:
    if modem is None:
        return ""
    state = modem["state"]
    kind = {"ready": "ok", "down": "bad"}.get(state, "")
    rows = [_row("port", f'<span class="wrap">{escape(modem["port"])}</span>')]
    rows.append(_row("SIM", escape(modem["sim"] or "not read yet")))
    rows.append(_row("signal", escape(_signal(modem["signal"]))))
    if modem.get("error"):
        rows.append(_row("last error", f'<span class="err wrap">{escape(modem["error"])}</span>'))
    return (
        f'<section><h2>Modem</h2><article class="card"><h3><span class="id">SMS</span>{_badge(state, kind)}'
        f"</h3><dl>{''.join(rows)}</dl></article></section>"
    )


# -- formatting ---------------------------------------------------------------------------------------


def _online(device: dict[str, Any]) -> bool:
    return device["age_s"] is not None and device["age_s"] <= OFFLINE_AFTER_S


def _row(name: str, value: str) -> str:
    return f"<dt>{escape(name)}</dt><dd>{value}</dd>"


def _badge(text: str, kind: str) -> str:
    return f'<span class="badge {kind}">{escape(text)}</span>'


def _when(stamp: str | None) -> str:
    """``2026-11-20T08:00:04Z`` as ``2026-11-20 08:00:04 UTC``."""
    return f"{stamp.replace('T', ' ').rstrip('Z').split('.')[0]} UTC" if stamp else "never"


def _stamp(stamp: str | None, age_s: float | None) -> str:
    """How long ago, then the time itself, smaller."""
    if not stamp:
        return "never"
    when = f'<br><span class="note">{escape(_when(stamp))}</span>'
    return (f"{escape(_duration(age_s))} ago" if age_s is not None else "") + when


def _age(stamp: str, now: str) -> float | None:
    try:
        then, at = (datetime.fromisoformat(value.replace("Z", "+00:00")) for value in (stamp, now))
    except ValueError:
        return None
    return (at - then).total_seconds()


def _fix(device: dict[str, Any]) -> str:
    lat, lon = device.get("last_lat"), device.get("last_lon")
    if lat is None or lon is None:
        return "none yet"
    url = "https://www.openstreetmap.org/?" + urlencode({"mlat": f"{lat:.6f}", "mlon": f"{lon:.6f}"})
    url += f"#map=16/{lat:.6f}/{lon:.6f}"
    when = escape(_when(device.get("last_fix")))
    return (
        f'{lat:.5f}, {lon:.5f} <a href="{escape(quote(url, safe=":/?=&#.-"))}" rel="noreferrer" '
        f'target="_blank">map</a><br><span class="note">{when}</span>'
    )


def _alarm(alarm: dict[str, Any], now: str) -> str:
    """An alarm's name, and how long ago it came when known."""
    name = f'<span class="alarm">{escape(alarm["alarm"])}</span>'
    if not alarm.get("received_at"):
        return name
    return f'{name} <span class="note">{escape(_duration(_age(alarm["received_at"], now)))} ago</span>'


def _battery(levels: dict[str, Any]) -> str:
    parts = []
    if "battery_pct" in levels:
        parts.append(f"{levels['battery_pct']} %")
    if "battery_v" in levels:
        parts.append(f"{levels['battery_v']} V")
    if not parts and "battery_raw" in levels:
        parts.append(f"level {levels['battery_raw']}")
    return ", ".join(parts) or ", ".join(f"{key} {value}" for key, value in levels.items())


def _signal(csq: str | None) -> str:
    """A ``+CSQ`` answer in words: RSSI 0-31 is -113 to -51 dBm, 99 unknown."""
    if not csq:
        return "not read yet"
    rssi = csq.split(",", 1)[0].strip()
    if not rssi.isdigit() or int(rssi) > 31:
        return f"unknown (CSQ {csq})"
    value = int(rssi)
    words = "poor" if value < 10 else "fair" if value < 15 else "good" if value < 20 else "excellent"
    return f"{words}: {-113 + 2 * value} dBm (CSQ {csq})"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size < 1024**3 else f"{size / 1024**3:.2f} GB"


_CSS = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:#1d2733;background:#eef1f4}
#page{max-width:720px;margin:0 auto;padding:10px}
header{background:#1d2733;color:#fff;border-radius:8px;padding:10px 12px;margin-bottom:12px}
header .facts dt{color:#aab6c3}
h1{font-size:20px;margin:0 0 6px;display:flex;flex-wrap:wrap;gap:8px;align-items:center}
h2{font-size:16px;margin:16px 2px 6px;text-transform:uppercase;letter-spacing:.04em;color:#4a5867}
h2 .count{font-weight:normal;text-transform:none;letter-spacing:0;color:#6b7a89;font-size:14px}
h3{font-size:15px;margin:0 0 6px;display:flex;justify-content:space-between;gap:8px;align-items:center}
.card{background:#fff;border-radius:8px;padding:10px 12px;margin-bottom:8px;
  box-shadow:0 1px 2px rgba(0,0,0,.08)}
.id{font-family:ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere}
dl{margin:0;display:grid;grid-template-columns:104px 1fr;gap:3px 10px}
dt{color:#6b7a89}
dd{margin:0;min-width:0;overflow-wrap:anywhere}
.wrap{overflow-wrap:anywhere}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:13px;font-weight:600;
  white-space:nowrap;background:#d9dee4;color:#1d2733}
.badge.ok{background:#d3f2dc;color:#14632f}
.badge.bad{background:#fbd9d6;color:#8c1d13}
.note{color:#6b7a89;font-size:13px}
header .note{color:#c9d2dc}
.alarm{color:#8c1d13;font-weight:600}
.err{color:#8c1d13}
.bad{color:#8c1d13;font-weight:600}
.problems{margin:4px 0 8px;padding-left:18px;color:#ffd2cc}
.bar{height:6px;background:#e3e7ec;border-radius:3px;margin-top:4px;overflow:hidden}
.bar div{height:100%;background:#3c7bd9}
.gone{position:sticky;top:0;z-index:1;background:#8c1d13;color:#fff;padding:8px 12px;font-weight:600}
.foot{color:#6b7a89;font-size:13px;text-align:center}
a{color:#1f5fbf}
""".strip()

_SCRIPT = (
    "(function(){var last=new Date();"
    "setInterval(function(){fetch(location.href,{cache:'no-store',headers:{Accept:'text/html'}})"
    ".then(function(r){if(!r.ok)throw new Error('HTTP '+r.status);return r.text();})"
    ".then(function(t){var d=new DOMParser().parseFromString(t,'text/html');"
    "document.getElementById('page').replaceWith(d.getElementById('page'));"
    "document.getElementById('gone').hidden=true;last=new Date();})"
    ".catch(function(e){var g=document.getElementById('gone');g.hidden=false;"
    "g.textContent='The relay is not answering ('+e.message+'): this is how it was at '"
    "+last.toLocaleTimeString()+'.';});"
    f"}},{REFRESH_S * 1000});}})();"
)
