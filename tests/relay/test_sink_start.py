"""A sink's ``start``: a new sink sends the whole retained journal (``oldest``) or only what comes
after it was added (``now``); a sink that saved a position keeps it either way."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers import Report
from relay.journal._journal import Entry, Journal
from relay.sinks._delivery import Delivery
from tests import devices
from tests.broker import Mosquitto, Subscriber
from tests.relay.harness import running_relay, wait_until

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BN407 = "868683020419374"


def fill(journal: Journal, count: int) -> None:
    report = Report(protocol="gps103", device_id="a", event="heartbeat")
    journal.write_now([Entry(report, b"x", "tcp", "peer", NOW) for _ in range(count)])


def test_a_new_sink_starting_now_skips_what_the_journal_holds_and_saves_that_at_once(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    fill(journal, 3)
    late = Delivery(journal, "late", window=10, start="now")
    everything = Delivery(journal, "everything", window=10)
    assert late.take() == [] and late.backlog() == 0
    assert [report.seq for report in everything.take()] == [1, 2, 3]
    fill(journal, 1)
    assert [report.seq for report in late.take()] == [4]
    # Not acknowledged, and the process goes away: the next start resumes at 3, not at a later "now".
    journal.close()
    journal = Journal.open(tmp_path / "j.sqlite3")
    fill(journal, 1)
    again = Delivery(journal, "late", window=10, start="now")
    assert [report.seq for report in again.take()] == [4, 5]
    journal.close()


def mqtt_sink(broker: Mosquitto, name: str, **keys: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "mqtt",
        "url": broker.url,
        "topic_prefix": f"relay/{name}",
        "retry_min_s": 0.2,
        "retry_max_s": 1.0,
        **keys,
    }


def positions(subscriber: Subscriber) -> list[str]:
    return sorted(report["time"] for report in subscriber.reports() if report["lat"] is not None)


async def send_positions(port: int, *indexes: int) -> None:
    frames = [devices.gps103_login(BN407), *(devices.gps103_position(BN407, index) for index in indexes)]
    await devices.tcp_exchange(port, frames, replies=1)


async def test_a_sink_added_with_start_now_publishes_only_later_reports(
    tmp_path: Path, broker: Mosquitto
) -> None:
    async with running_relay(tmp_path) as relay:  # no sinks yet: stored only
        await send_positions(relay.port, 1, 2)

    late = Subscriber(broker, "relay/late/#")
    oldest = Subscriber(broker, "relay/oldest/#")
    try:
        sinks = [mqtt_sink(broker, "late", start="now"), mqtt_sink(broker, "oldest")]
        async with running_relay(tmp_path, sinks=sinks) as relay:
            await send_positions(relay.port, 3)
            await wait_until(lambda: len(positions(oldest)) == 3, what="the oldest sink's three positions")
            await wait_until(lambda: len(positions(late)) == 1, what="the late sink's position")
        assert positions(oldest) == [devices.iso(1), devices.iso(2), devices.iso(3)]
        assert positions(late) == [devices.iso(3)]

        async with running_relay(tmp_path) as relay:  # the sink is away while a report comes in
            await send_positions(relay.port, 4)
        async with running_relay(tmp_path, sinks=[mqtt_sink(broker, "late", start="now")]) as relay:
            # Its saved position is kept: what came in while it was away is sent, not skipped.
            await wait_until(lambda: len(positions(late)) == 2, what="the report sent while away")
        assert positions(late) == [devices.iso(3), devices.iso(4)]
    finally:
        late.close()
        oldest.close()
