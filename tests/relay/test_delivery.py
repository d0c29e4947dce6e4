"""A sink's durable position: in order per device, at least once, resumed after rewinds and restarts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import trio

from drivers import Report
from relay.config import HttpSinkSettings, MqttSinkSettings, OsmandSinkSettings, PassthroughSinkSettings
from relay.journal import CursorUpdate, Entry, Journal
from relay.sinks import Sink, make_sink
from relay.sinks._delivery import Delivery

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def fill(journal: Journal, devices: list[str]) -> None:
    journal.write_now(
        [
            Entry(Report(protocol="gps103", device_id=device, event="heartbeat"), b"x", "tcp", "peer", NOW)
            for device in devices
        ]
    )


def seqs(reports: list) -> list[int]:
    return [report.seq for report in reports]


def test_reports_are_handed_out_in_order_within_the_window(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    fill(journal, ["a", "b", "a", "c", "b", "a"])
    delivery = Delivery(journal, "sink", window=4)
    assert seqs(delivery.take()) == [1, 2, 3, 4]
    assert delivery.take() == []  # the window is full
    delivery.acknowledge([1, 2])
    assert seqs(delivery.take()) == [5, 6]
    assert delivery.floor == 2


def test_out_of_order_acks_advance_each_device_only_over_contiguous_deliveries(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    fill(journal, ["a", "a", "b", "a"])
    delivery = Delivery(journal, "sink", window=10)
    delivery.take()
    delivery.acknowledge([2, 3, 4])  # seq 1 of device a is still in flight
    assert delivery.cursors == {"b": 3}
    assert delivery.floor == 0
    delivery.acknowledge([1])
    assert delivery.cursors == {"a": 4, "b": 3} and delivery.floor == 4


def test_rewind_hands_out_everything_unacknowledged_again_in_order(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    fill(journal, ["a", "b", "a", "b"])
    delivery = Delivery(journal, "sink", window=10)
    delivery.take()
    delivery.acknowledge([2, 4])  # device b is done; device a got nothing acknowledged
    delivery.rewind()
    assert seqs(delivery.take()) == [1, 3]
    assert delivery.stats.duplicates_possible == 2


def test_the_position_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal.open(path)
    fill(journal, ["a", "b", "a", "b", "c"])
    delivery = Delivery(journal, "sink", window=10)
    delivery.take()
    delivery.acknowledge([1, 2, 4])
    delivery.save_now()
    journal.close()

    journal = Journal.open(path)
    again = Delivery(journal, "sink", window=10)
    assert again.floor == 2 and again.cursors == {"a": 1, "b": 4}
    assert seqs(again.take()) == [3, 5]
    other = Delivery(journal, "other-sink", window=10)
    assert seqs(other.take()) == [1, 2, 3, 4, 5]  # each sink has its own position


def test_live_first_sends_each_devices_newest_report_then_the_backlog(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    fill(journal, ["a", "b", "a", "b", "a"])
    delivery = Delivery(journal, "sink", window=10, drain="live_first")
    assert seqs(delivery.take()) == [4, 5, 1, 2, 3]
    delivery.acknowledge([4, 5])
    assert delivery.cursors == {} and delivery.floor == 0
    delivery.acknowledge([1, 2, 3])
    assert delivery.cursors == {"a": 5, "b": 4} and delivery.floor == 5
    fill(journal, ["a"])
    assert seqs(delivery.take()) == [6]


async def test_a_save_cut_short_by_shutdown_is_made_on_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal.open(path)  # its writer task is not running: a flush waits for a commit forever
    fill(journal, ["a", "b", "a"])
    delivery = Delivery(journal, "sink", window=10)
    delivery.take()
    delivery.acknowledge([1, 2, 3])
    with trio.move_on_after(0.05):  # the relay is stopped while the periodic save waits for its commit
        await delivery.flush()
    delivery.save_now()  # what every sink does on its way out
    journal.close()

    again = Delivery(Journal.open(path), "sink", window=10)
    assert again.floor == 3 and again.cursors == {"a": 3, "b": 2}
    assert again.take() == []  # nothing delivered is sent again after the restart


def test_every_sink_type_starts_from_its_saved_position_with_its_own_counters(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    settings = [
        MqttSinkSettings(name="m", url="mqtt://127.0.0.1:1", topic_prefix="relay"),
        HttpSinkSettings(name="h", url="http://127.0.0.1:1/"),
        OsmandSinkSettings(name="o", url="http://127.0.0.1:1/"),
        PassthroughSinkSettings(name="p", host="127.0.0.1", port=1),
    ]
    journal.write_now([CursorUpdate(each.name, 7, {}) for each in settings])
    sinks = [make_sink(each, journal) for each in settings]
    for sink, each in zip(sinks, settings, strict=True):
        assert isinstance(sink, Sink) and sink.name == each.name and sink.settings is each
        assert sink.journal is journal and sink.floor == 7 and not sink.connected and sink.last_error is None
        assert sink.delivery.stats is sink.stats and getattr(sink, "poster", sink).stats is sink.stats
        assert sink.acknowledged == 0
    sinks[0].stats.published += 1
    assert [sink.stats.published for sink in sinks] == [1, 0, 0, 0]
    journal.close()


def test_a_long_run_of_passthrough_frames_is_skipped_a_bounded_piece_at_a_time(tmp_path: Path) -> None:
    from relay.journal import FRAME_EVENT
    from relay.sinks._delivery import MAX_SCAN

    journal = Journal.open(tmp_path / "j.sqlite3")
    frame = Report(protocol="pt502", device_id="cam", event=FRAME_EVENT)
    journal.write_now([Entry(frame, b"$PHD", "tcp", "p", NOW) for _ in range(3 * MAX_SCAN)])
    fill(journal, ["cam"])
    delivery = Delivery(journal, "sink", window=10)
    taken: list[int] = []
    calls = 0
    while not taken:
        calls += 1
        taken = seqs(delivery.take())
    assert taken == [3 * MAX_SCAN + 1] and calls >= 3  # each call read at most MAX_SCAN rows
    journal.close()


def test_a_drain_reads_the_journal_a_page_at_a_time_and_never_saves_past_what_is_in_flight(
    tmp_path: Path,
) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    devices = [f"d{index}" for index in range(7)]
    fill(journal, [devices[index % 7] for index in range(3000)])
    queries = 0
    read_after = journal.read_after

    def counted(seq: int, limit: int) -> list:
        nonlocal queries
        queries += 1
        return read_after(seq, limit)

    journal.read_after = counted  # type: ignore[method-assign]
    delivery = Delivery(journal, "sink", window=50)
    delivery.wake_on_part()
    in_flight = seqs(delivery.take())
    handed: list[int] = list(in_flight)
    live = False
    while in_flight:
        delivery.acknowledge([in_flight.pop(0)])  # one PUBACK at a time, oldest first
        if len(handed) >= 1500 and not live:  # live reports keep arriving during the drain
            fill(journal, ["d0", "d1"])
            live = True
        if delivery.work_ready():
            more = seqs(delivery.take())
            in_flight += more
            handed += more
        # Nothing in flight is ever behind the saved position, for the sink or for its device.
        if in_flight:
            assert delivery.floor < in_flight[0]
        for seq in in_flight:
            device = devices[(seq - 1) % 7] if seq <= 3000 else ("d0", "d1")[seq - 3001]
            assert delivery.cursors.get(device, 0) < seq
    assert handed == list(range(1, 3003))  # everything, once, in order
    assert delivery.floor == 3002
    assert queries <= 3002 // 500 + 4, f"{queries} journal queries for 3002 reports"
    journal.close()


def test_a_page_of_large_reports_is_read_shorter(tmp_path: Path) -> None:
    from relay.sinks._delivery import READ_AHEAD_BYTES

    journal = Journal.open(tmp_path / "j.sqlite3")
    photo = b"\xff" * 100_000
    journal.write_now(
        [
            Entry(Report(protocol="gps103", device_id="cam", event="heartbeat"), photo, "tcp", "p", NOW)
            for _ in range(60)
        ]
    )
    delivery = Delivery(journal, "sink", window=4)
    held = 0
    while taken := delivery.take():
        held = max(held, len(delivery._ahead) * len(photo))
        delivery.acknowledge(seqs(taken))
    assert held <= 1.2 * READ_AHEAD_BYTES and delivery.floor == 60
    journal.close()
