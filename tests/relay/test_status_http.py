"""The status endpoint: /healthz, /metrics and /status over real HTTP."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from relay import statistics
from relay.buckets import Buckets
from relay.service._running import SinkWatch
from tests import devices
from tests.broker import Mosquitto
from tests.relay.harness import running_relay, wait_until

IMEI = "868683020419374"


async def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"{method} {path} HTTP/1.1\r\nHost: relay\r\n\r\n".encode())
        response = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def health(port: int) -> tuple[int, dict[str, Any]]:
    code, body = await get(port, "/healthz")
    return code, json.loads(body)


async def metrics(port: int) -> dict[str, Any]:
    """``/metrics`` parsed as Prometheus does: family name -> family."""
    code, body = await get(port, "/metrics")
    assert code == 200
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def sample(families: dict[str, Any], name: str, **labels: str) -> float:
    """The value of the one sample called ``name`` with exactly ``labels`` (``le`` included)."""
    family = name.removesuffix("_total").removesuffix("_count").removesuffix("_sum").removesuffix("_bucket")
    found = [s.value for s in families[family].samples if s.name == name and s.labels == labels]
    assert len(found) == 1, f"{name}{labels}: {families[family].samples}"
    return found[0]


async def test_health_metrics_and_status(tmp_path: Path) -> None:
    async with running_relay(tmp_path, status={"listen": "127.0.0.1:0"}) as relay:
        assert relay.status_port
        await devices.tcp_exchange(relay.port, [devices.gps103_login(IMEI)], replies=2)
        code, body = await health(relay.status_port)
        assert code == 200
        assert body["status"] == "ok"
        assert body["checks"]["journal"]["ok"] and body["checks"]["listener"]["ok"]
        assert body["checks"]["sinks"] == {}
        code, status_body = await get(relay.status_port, "/status")
        status = json.loads(status_body)
        assert code == 200 and status["devices"][0]["device_id"] == IMEI
        assert status["statistics"]["connections_total"] == 1
        assert (await get(relay.status_port, "/nope"))[0] == 404
        assert (await get(relay.status_port, "/healthz", "POST"))[0] == 405

        relay.journal.last_commit_error = "database or disk is full"
        code, body = await health(relay.status_port)
        assert code == 503
        assert body["status"] == "unhealthy"
        assert body["checks"]["journal"] == {
            "ok": False,
            "commits": relay.journal.stats.commits,
            "last_seq": 1,
            "reason": "journal cannot commit: database or disk is full",
        }
        assert body["checks"]["listener"]["ok"]
        assert sample(await metrics(relay.status_port), "relay_healthy") == 0


async def test_metrics_after_real_traffic_parse_with_names_types_and_values(
    tmp_path: Path, broker: Mosquitto
) -> None:
    async with running_relay(tmp_path, broker.url, status={"listen": "127.0.0.1:0"}) as relay:
        assert relay.status_port
        await devices.tcp_exchange(relay.port, [devices.gps103_login(IMEI)], replies=2)
        positions = [devices.gps103_position(IMEI, n) for n in range(1, 4)]
        await devices.tcp_exchange(relay.port, positions, replies=1)
        await devices.udp_exchange(relay.port, [devices.gps103_position("359710049094643", 4)])
        garbage = await trio.open_tcp_stream("127.0.0.1", relay.port)
        async with garbage:
            await garbage.send_all(b"\x00\xffnot a tracker\xfe" * 4)
            await garbage.send_eof()
            await garbage.receive_some(10)  # closed by the relay once the bytes are quarantined
        await wait_until(lambda: relay.journal.stats.quarantined == 1, what="the garbage quarantined")
        sink = relay.sinks[0]
        await wait_until(
            lambda: sink.acknowledged == relay.journal.stats.committed_reports, what="everything delivered"
        )
        families = await metrics(relay.status_port)
        _, text = await get(relay.status_port, "/metrics")

    datagrams = relay.listener.stats.datagrams  # a tracker resends when its reply is slow
    tcp_reports = 4  # the login is a report too
    assert datagrams >= 1
    # Names follow the conventions: counters end in _total once; every family has HELP and TYPE.
    lines = text.decode().splitlines()
    for name, family in families.items():
        exposed = f"{name}_total" if family.type == "counter" else name
        assert f"# TYPE {exposed} {family.type}" in lines
        assert any(line.startswith(f"# HELP {exposed} ") and len(line) > len(exposed) + 12 for line in lines)
        if family.type == "counter":
            assert {s.name for s in family.samples} <= {f"{name}_total"}, name
    assert "_total_total" not in text.decode()
    types = {name: family.type for name, family in families.items() if name.startswith("relay_")}
    assert types["relay_connections"] == "counter"
    assert types["relay_connections_open"] == "gauge"
    assert types["relay_ack_latency_seconds"] == "histogram"
    assert types["relay_journal_commit_duration_seconds"] == "histogram"
    assert types["relay_sink_backlog_reports"] == "gauge"
    assert types["relay_sink_delivered_reports"] == "counter"
    assert "process_resident_memory_bytes" in families
    # Every field the statistics objects declare is exposed, named, typed and documented as declared.
    declared = [
        *statistics.metrics(relay.listener.stats, "relay_"),
        *statistics.metrics(relay.journal.stats, "relay_journal_"),
        *statistics.metrics(relay.sinks[0].stats, "relay_sink_"),
    ]
    assert len(declared) >= 30
    for metric in declared:
        assert types[metric.name] == metric.kind and families[metric.name].documentation == metric.doc
    assert sample(families, "relay_journal_last_seq") == relay.journal.last_seq

    assert sample(families, "relay_connections_total") == 3
    assert sample(families, "relay_connections_open") == 0
    assert sample(families, "relay_datagrams_received_total") == datagrams
    assert sample(families, "relay_frames_received_total", protocol="gps103", transport="tcp") == 4
    assert sample(families, "relay_frames_received_total", protocol="gps103", transport="udp") == datagrams
    assert sample(families, "relay_reports_decoded_total", protocol="gps103") == tcp_reports + datagrams
    assert (
        sample(families, "relay_frames_quarantined_total", protocol="unknown", reason="unrecognised") == 1
    )
    assert sample(families, "relay_replies_sent_total") == 4 + datagrams
    assert sample(families, "relay_ack_latency_seconds_count", transport="tcp") == 4
    assert sample(families, "relay_ack_latency_seconds_bucket", transport="tcp", le="+Inf") == 4
    assert sample(families, "relay_ack_latency_seconds_count", transport="udp") == datagrams
    assert 0 < sample(families, "relay_ack_latency_seconds_sum", transport="tcp") < 4 * 10
    buckets = [s for s in families["relay_ack_latency_seconds"].samples if s.name.endswith("_bucket")]
    tcp = [s.value for s in buckets if s.labels["transport"] == "tcp"]
    assert tcp == sorted(tcp)  # cumulative
    committed = relay.journal.stats.committed_reports
    assert committed == tcp_reports + datagrams
    assert sample(families, "relay_journal_reports_total") == committed
    assert sample(families, "relay_journal_quarantined_total") == 1
    assert sample(families, "relay_quarantine_bytes") > 0
    assert sample(families, "relay_quarantine_dropped_frames_total", budget="peer") == 0
    assert sample(families, "relay_buffered_bytes") == 0
    assert types["relay_buffer_overflows"] == "counter" and types["relay_devices_forgotten"] == "counter"
    commits = sample(families, "relay_journal_commits_total")
    assert commits >= 3
    assert sample(families, "relay_journal_commit_duration_seconds_count") == commits
    assert sample(families, "relay_journal_commit_failures_total") == 0
    assert sample(families, "relay_journal_last_seq") == committed
    broker_sink = {"sink": "broker", "type": "mqtt"}
    assert sample(families, "relay_sink_connected", **broker_sink) == 1
    assert sample(families, "relay_sink_backlog_reports", **broker_sink) == 0
    assert sample(families, "relay_sink_delivered_reports_total", **broker_sink) == committed
    assert sample(families, "relay_sink_stalled_seconds", **broker_sink) == 0
    assert sample(families, "relay_healthy") == 1
    (info,) = families["relay_info"].samples
    assert info == Sample("relay_info", {"site": "test-site", "version": version("edge-relay")}, 1.0)


async def test_metrics_cover_every_sink_type(tmp_path: Path) -> None:
    nowhere = "127.0.0.1:9"  # discard port: nothing listens, every sink keeps retrying
    sinks = [
        {"name": "m", "type": "mqtt", "url": f"mqtt://{nowhere}"},
        {"name": "h", "type": "http", "url": f"http://{nowhere}/reports"},
        {"name": "o", "type": "osmand", "url": f"http://{nowhere}"},
        {"name": "p", "type": "passthrough", "host": "127.0.0.1", "port": 9},
    ]
    async with running_relay(tmp_path, status={"listen": "127.0.0.1:0"}, sinks=sinks) as relay:
        await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 1)], replies=1)
        families = await metrics(relay.status_port)
        code_status, body = await get(relay.status_port, "/status")
    assert code_status == 200
    for sink in sinks:
        labels = {"sink": sink["name"], "type": sink["type"]}
        assert sample(families, "relay_sink_connected", **labels) == 0
        assert sample(families, "relay_sink_backlog_reports", **labels) == 1
        assert sample(families, "relay_sink_delivered_reports_total", **labels) == 0
    assert sample(families, "relay_sink_dead_lettered_reports_total", sink="h", type="http") == 0
    assert [sink["pending"] for sink in json.loads(body)["sinks"]] == [1, 1, 1, 1]


async def test_each_relay_has_its_own_metrics(tmp_path: Path) -> None:
    status = {"listen": "127.0.0.1:0"}
    async with (
        running_relay(tmp_path / "a", status=status) as one,
        running_relay(tmp_path / "b", status=status) as two,
    ):
        await devices.tcp_exchange(one.port, [devices.gps103_login(IMEI)], replies=2)
        assert sample(await metrics(one.status_port), "relay_connections_total") == 1
        assert sample(await metrics(two.status_port), "relay_connections_total") == 0


async def test_healthz_is_503_while_the_only_sinks_broker_is_down_past_the_limit(
    tmp_path: Path, broker: Mosquitto
) -> None:
    limit = 1.0
    status = {"listen": "127.0.0.1:0", "sink_stall_s": limit}
    async with running_relay(tmp_path, broker.url, status=status) as relay:
        port = relay.status_port
        sink = relay.sinks[0]
        await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 1)], replies=1)
        await wait_until(lambda: sink.acknowledged == 1, what="the first report delivered")
        assert (await health(port))[0] == 200

        broker.stop()
        stopped = trio.current_time()
        await wait_until(lambda: not sink.connected, what="the sink to notice")
        await devices.tcp_exchange(relay.port, [devices.gps103_position(IMEI, 2)], replies=1)
        with trio.fail_after(20):
            while (answer := await health(port))[0] == 200:
                await trio.sleep(0.1)
        assert trio.current_time() - stopped >= limit
        code, body = answer
        assert code == 503 and body["status"] == "unhealthy"
        check = body["checks"]["sinks"]["broker"]
        assert check["ok"] is False and check["connected"] is False and check["pending"] == 1
        assert check["stalled_s"] >= limit
        assert check["reason"].startswith("disconnected for ")
        assert "with 1 pending: " in check["reason"]
        assert body["checks"]["journal"]["ok"] and body["checks"]["listener"]["ok"]
        assert "disconnected for" in (relay.health_problem() or "")

        broker.start()
        await wait_until(lambda: sink.acknowledged == 2, what="the backlog delivered after the outage")
        code, body = await health(port)
        assert code == 200, body
        assert body["checks"]["sinks"]["broker"] == {
            "ok": True,
            "connected": True,
            "pending": 0,
            "stalled_s": 0.0,
            "last_error": None,
        }


async def test_healthz_is_503_while_new_connections_are_refused(tmp_path: Path) -> None:
    async with running_relay(
        tmp_path, status={"listen": "127.0.0.1:0"}, listen={"max_connections": 1}
    ) as relay:
        device = await trio.open_tcp_stream("127.0.0.1", relay.port)
        await wait_until(lambda: relay.listener.stats.connections_open == 1, what="the connection")
        code, body = await health(relay.status_port)
        assert code == 503
        assert body["checks"]["listener"] == {
            "ok": False,
            "connections_open": 1,
            "max_connections": 1,
            "reason": "at the connection limit (1): new connections are refused",
        }
        await device.aclose()
        await wait_until(lambda: relay.listener.stats.connections_open == 0, what="the connection closed")
        assert (await health(relay.status_port))[0] == 200


class FakeSink:
    def __init__(self) -> None:
        self.acknowledged = 0
        self.pending = 0
        self.connected = False
        self.last_error: str | None = None

    def backlog(self) -> int:
        return self.pending


def test_a_sink_is_stuck_only_while_it_has_work_and_delivers_none_or_is_down_with_an_error() -> None:
    sink, watch = FakeSink(), SinkWatch()
    assert watch.look(sink, 0.0) == 0.0  # an HTTP sink that never sent anything is not down
    assert watch.look(sink, 100.0) == 0.0
    sink.pending = 5
    assert watch.look(sink, 101.0) == 0.0  # from now on
    assert watch.look(sink, 105.0) == 4.0
    sink.acknowledged, sink.pending = 3, 2  # delivering: no longer stuck
    assert watch.look(sink, 106.0) == 0.0
    assert watch.look(sink, 107.0) == 0.0  # no delivery since 106: stuck since 107
    assert watch.look(sink, 110.0) == 3.0
    sink.pending = 0
    assert watch.look(sink, 111.0) == 0.0
    sink.last_error = "connection refused"  # down with an error, even with nothing to send
    assert watch.look(sink, 112.0) == 0.0
    assert watch.look(sink, 120.0) == 8.0
    sink.connected, sink.last_error = True, None
    assert watch.look(sink, 121.0) == 0.0


def test_buckets_count_each_value_in_the_first_bucket_that_holds_it() -> None:
    buckets = Buckets((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 1.0, 3.0):
        buckets.observe(value)
    assert buckets.cumulative() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert buckets.sum == pytest.approx(4.65)


@pytest.mark.slow
async def test_status_pollers_never_starve_the_trackers(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from drivers import Report
    from relay.journal import Entry, Journal

    journal = Journal.open(tmp_path / "journal.sqlite3", site="test-site")
    received = datetime.now(UTC)
    for batch in range(10):  # a journal with history: every /status read has real work to do
        journal.write_now(
            [
                Entry(Report(protocol="gps103", device_id=f"d{n % 300}"), b"x", "tcp", "p", received)
                for n in range(batch * 5000, (batch + 1) * 5000)
            ]
        )
    journal.close()
    latencies: list[float] = []
    answers: list[int] = []
    async with running_relay(tmp_path, status={"listen": "127.0.0.1:0"}) as relay:
        assert relay.status_port is not None
        done = trio.Event()

        async def poll() -> None:
            while not done.is_set():
                answers.append((await get(relay.status_port, "/status"))[0])

        async with trio.open_nursery() as nursery:
            for _ in range(60):
                nursery.start_soon(poll)
            stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
            async with stream:
                for index in range(30):
                    started = trio.current_time()
                    await stream.send_all(devices.gps103_position(IMEI, index))
                    assert await stream.receive_some(10) == b"ON"
                    latencies.append(trio.current_time() - started)
                    await trio.sleep(0.05)
            done.set()
        reads = relay.status_reader.reads
    assert max(latencies) < 1.0, f"ack latencies under /status load: {sorted(latencies)[-5:]}"
    assert set(answers) <= {200, 503} and answers.count(200) > 60
    assert reads <= 5  # 60 pollers for ~2 s share a read every STATUS_MAX_AGE_S


async def test_status_and_metrics_show_each_sinks_uplink_windows(tmp_path: Path, broker: Mosquitto) -> None:
    async with running_relay(tmp_path, broker.url, status={"listen": "127.0.0.1:0"}) as relay:
        assert relay.status_port
        sink = relay.sinks[0]
        await wait_until(lambda: sink.connected, what="connected")
        frames = [devices.gps103_position(IMEI, n) for n in range(3)]
        assert await devices.tcp_exchange(relay.port, frames, replies=1)
        await wait_until(lambda: sink.acknowledged >= 3, what="delivered")
        await trio.sleep(1.2)  # one look at the sinks
        status = json.loads((await get(relay.status_port, "/status"))[1])["sinks"][0]
        assert status["connected"] and status["connected_since"].endswith("Z")
        (window,) = status["uplink_windows"]
        assert window["open"] and window["drained"] == 3
        broker.stop()
        await wait_until(lambda: not sink.connected, what="the broker missed")
        await trio.sleep(1.2)
        status = json.loads((await get(relay.status_port, "/status"))[1])["sinks"][0]
        assert not status["connected"], status
        assert status["disconnected_since"] and status["last_error"]
        (window,) = status["uplink_windows"]
        assert not window["open"] and window["drained"] == 3 and window["lasted_s"] >= 1
        families = await metrics(relay.status_port)
        labels = {"sink": sink.name, "type": "mqtt"}
        assert sample(families, "relay_sink_uplink_windows", **labels) == 1
        assert sample(families, "relay_sink_state_since_timestamp_seconds", **labels) > 1.7e9
