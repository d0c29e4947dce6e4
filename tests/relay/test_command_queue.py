"""The durable command queue (relay/journal/_commands.py): checked when submitted, kept across a
restart, one in flight per device in order, expired never handed out, rows written by another process
picked up, every change of state a commandResult report."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from drivers import CommandType, Report
from relay.errors import CommandRefused
from relay.journal import (
    CommandState,
    Entry,
    Journal,
    cancel_command,
    insert_command,
    list_commands,
    prepare_command,
)

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
BN407 = "868683020419374"
PROTOCOLS = {BN407: "gps103", "1156802639": "pt502"}


def command(type: str = "positionPeriodic", params: dict | None = None, **fields: object):
    return prepare_command(
        device_id=fields.pop("device_id", BN407),
        type=type,
        params={"frequency": 60} if params is None and type == "positionPeriodic" else params,
        source="test",
        now=fields.pop("now", NOW),
        protocol_of=PROTOCOLS.get,
        **fields,
    )


def result_states(journal: Journal) -> list[tuple[str, str]]:
    return [
        (report.document["attributes"]["command_id"], report.document["attributes"]["command_state"])
        for report in journal.read_after(0, 1000)
        if report.event == "commandResult"
    ]


@asynccontextmanager
async def writing(journal: Journal) -> AsyncIterator[None]:
    """The journal's writer running (it writes the start-up changes first)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(journal.run)
        yield
        nursery.cancel_scope.cancel()


def test_a_command_is_checked_when_submitted_with_the_reason() -> None:
    with pytest.raises(CommandRefused, match="unknown device '123'"):
        command(device_id="123")
    with pytest.raises(CommandRefused, match="unknown command type 'selfDestruct'"):
        command("selfDestruct")
    with pytest.raises(CommandRefused, match="missing parameter 'frequency'"):
        command(params={})
    with pytest.raises(CommandRefused, match="not supported over data"):
        command("setTimezone", {"timezone": 1})  # gps103 takes it by SMS only
    with pytest.raises(CommandRefused, match="no phone number"):
        command(via="sms")
    with pytest.raises(CommandRefused, match="expires_s"):
        command(expires_s=-5)
    ok = command(id="mine-1", expires_s=30)
    assert ok.id == "mine-1" and ok.params == {"frequency": 60}
    assert ok.expires_at == NOW + timedelta(seconds=30)


async def test_the_queue_survives_a_restart_and_keeps_order_and_one_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal.open(path)
    first, second = command(id="a"), command("requestPhoto", id="b")
    async with writing(journal):
        await journal.append(journal.commands.submit(first) + journal.commands.submit(second))
    journal.close()

    journal = Journal.open(path)  # a restart: the rows are the queue
    queue = journal.commands
    assert [c.id for c in queue.pending(BN407)] == ["a", "b"]
    head, expired = queue.next_for(BN407, NOW)
    assert head is not None and head.id == "a" and head.type is CommandType.POSITION_PERIODIC and not expired
    items = queue.sent(head, NOW, answered=False)  # gps103 never answers positionPeriodic
    head, _ = queue.next_for(BN407, NOW)
    assert head is not None and head.id == "b"
    items += queue.sent(head, NOW, answered=True)  # requestPhoto is answered by its vt announcement
    assert queue.next_for(BN407, NOW) == (None, [])  # one in flight
    answer = Report(protocol="gps103", device_id=BN407, event="commandResult", attributes={"result": "vt3"})
    enriched, changes = queue.answered(answer, NOW)
    assert enriched.attributes["command_id"] == "b" and enriched.attributes["result"] == "vt3"
    async with writing(journal):
        await journal.append(items + changes + [Entry(enriched, b"frame", "tcp", "peer", NOW)])
    assert result_states(journal) == [
        ("a", "queued"), ("b", "queued"), ("a", "sent"), ("a", "acknowledged"), ("b", "sent"),
        ("b", "acknowledged"),
    ]  # fmt: skip
    rows = {row["id"]: row for row in list_commands(journal._reader)}
    assert rows["a"]["state"] == "acknowledged" and rows["a"]["sent_at"] and rows["a"]["finished_at"]
    assert rows["b"]["answer"] == {"result": "vt3"}
    assert len(queue) == 0
    journal.close()


async def test_an_expired_command_is_never_handed_out(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    queue = journal.commands
    items = queue.submit(command(id="late", expires_s=10)) + queue.submit(command(id="next"))
    assert queue.next_for(BN407, NOW) == (None, [])  # nothing goes before its row is committed
    async with writing(journal):
        await journal.append(items)
        head, expired = queue.next_for(BN407, NOW + timedelta(seconds=11))
        assert head is not None and head.id == "next"
        await journal.append(expired)
    assert ("late", "expired") in result_states(journal)
    assert {row["id"]: row["state"] for row in list_commands(journal._reader)}["late"] == "expired"
    # The clock alone expires a command whose device never shows up.
    items = queue.submit(command(id="alone", device_id="1156802639", type="rebootDevice", expires_s=5))
    assert queue.due(NOW + timedelta(seconds=6))[0].state is CommandState.EXPIRED
    journal.close()


async def test_rows_from_another_process_are_picked_up_and_a_sent_one_fails_on_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal.open(path)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("PRAGMA busy_timeout=5000")
    insert_command(other, command(id="cli-1"))
    insert_command(other, command(id="cli-2"))
    with pytest.raises(CommandRefused, match="exists already"):
        insert_command(other, command(id="cli-1"))
    woken: list[str] = []
    journal.commands.listeners.append(woken.append)
    items = journal.commands.poll(journal._reader, NOW)
    assert [c.id for c in journal.commands.pending(BN407)] == ["cli-1", "cli-2"] and woken
    async with writing(journal):
        await journal.append(items)
        assert journal.commands.poll(journal._reader, NOW) == []  # reported: not picked up twice
        cancel_command(other, "cli-2", NOW)
        with pytest.raises(CommandRefused, match="only a queued command"):
            cancel_command(other, "cli-2", NOW)
        await journal.append(journal.commands.poll(journal._reader, NOW))
        assert [c.id for c in journal.commands.pending(BN407)] == ["cli-1"]
        head, _ = journal.commands.next_for(BN407, NOW)
        assert head is not None
        await journal.append(journal.commands.sent(head, NOW, answered=True))
    journal.close()
    other.close()

    journal = Journal.open(path)
    async with writing(journal):  # the start-up changes are written by the writer
        pass
    assert result_states(journal)[-1] == ("cli-1", "failed")
    rows = {row["id"]: row for row in list_commands(journal._reader)}
    assert rows["cli-1"]["error"] == "the relay restarted before the device answered"
    assert rows["cli-2"]["state"] == "cancelled"
    assert len(journal.commands) == 0
    journal.close()


async def test_finished_commands_go_after_the_retention(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path / "j.sqlite3")
    queue = journal.commands
    old = command(id="old", now=NOW - timedelta(days=40), expires_s=10)
    async with writing(journal):
        await journal.append(queue.submit(old) + queue.due(NOW - timedelta(days=39)))  # expired then
        await journal.append(queue.submit(command(id="waiting")))
    removed = journal.prune(
        delivered_up_to=0, retention=timedelta(days=30), max_bytes=1 << 30, now=NOW
    )
    assert removed["commands"] == 1
    assert [row["id"] for row in list_commands(journal._reader)] == ["waiting"]
    journal.close()
