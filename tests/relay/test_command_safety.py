"""A command runs on a device once, and only once it is in the journal: on a slow SD card, after a
lost PUBACK, with a retained message, and on a stream whose login is read while an earlier frame
still waits for its commit. (The slow card and the lost PUBACK are injected: no real part can make
them on demand.)"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import trio
from paho.mqtt.enums import CallbackAPIVersion

from relay.journal import Journal, prepare_command
from relay.sinks._mqtt import MqttSink
from tests.broker import Mosquitto, Subscriber
from tests.relay.harness import receive_exactly, running_relay
from tests.relay.test_command_delivery import BN407, DEVICES, LOGIN, queue
from tests.relay.test_mqtt_commands import PREFIX, publish, results, subscribed

INTERVAL = {"type": "positionPeriodic", "params": {"frequency": 60}}


def slow_card(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Every commit takes ``seconds`` longer, as on a worn SD card."""
    write = Journal._write

    def slow_write(self: Journal, items: Sequence[Any]) -> tuple[int, int, int]:
        time.sleep(seconds)
        return write(self, items)

    monkeypatch.setattr(Journal, "_write", slow_write)


def queued_ids(subscriber: Subscriber) -> set[str]:
    found = [r["attributes"] for r in results(subscriber)]
    return {result["command_id"] for result in found if result["command_state"] == "queued"}


async def test_a_command_reaches_a_live_device_only_once_its_row_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        running_relay(tmp_path, devices=DEVICES) as relay,
        await trio.open_tcp_stream("127.0.0.1", relay.port) as stream,
    ):
        await stream.send_all(LOGIN)
        assert await receive_exactly(stream, b"LOAD") == b"LOAD"
        slow_card(monkeypatch, 0.5)
        journal = relay.journal
        command = prepare_command(
                device_id=BN407, type="positionPeriodic", params={"frequency": 60}, source="test",
                now=datetime.now(UTC), protocol_of=journal.commands.protocol_of,
            )  # fmt: skip
        async with trio.open_nursery() as nursery:
            nursery.start_soon(journal.append, journal.queue_command(command))
            expected = f"**,imei:{BN407},C,60s".encode()
            assert await receive_exactly(stream, expected) == expected
            database = sqlite3.connect(f"file:{relay.config.database}?mode=ro", uri=True)
            rows = database.execute("SELECT count(*) FROM commands WHERE id = ?", (command.id,))
            assert rows.fetchone()[0] == 1, "the device got the command before it was stored"
            database.close()


async def test_a_command_goes_after_the_login_reply_though_the_login_was_read_during_a_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_card(monkeypatch, 0.2)
    async with running_relay(tmp_path, devices=DEVICES) as relay:
        await queue(relay, "positionPeriodic", {"frequency": 60})
        async with await trio.open_tcp_stream("127.0.0.1", relay.port) as stream:
            await stream.send_all(b"##,imei:,A;")  # gps103 without a device: quarantined, a commit
            await trio.sleep(0.1)  # the login is a read of its own, while that commit runs
            await stream.send_all(LOGIN)
            expected = b"LOAD" + f"**,imei:{BN407},C,60s".encode()
            assert await receive_exactly(stream, expected) == expected


async def test_a_command_without_an_id_whose_puback_was_lost_is_queued_once(
    tmp_path: Path, broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    lost: list[object] = []
    ack = MqttSink._ack

    def first_puback_lost(self: MqttSink, message: Any) -> None:
        if not lost:
            lost.append(message)  # committed, then the power went before the PUBACK
            return
        ack(self, message)

    monkeypatch.setattr(MqttSink, "_ack", first_puback_lost)
    subscriber = Subscriber(broker, f"{PREFIX}/#")
    try:
        async with running_relay(tmp_path, broker.url, devices=DEVICES) as relay:
            await subscribed(relay)
            await trio.to_thread.run_sync(publish, broker, f"{PREFIX}/{BN407}/command", INTERVAL)
            await trio.sleep(1.0)
        async with running_relay(tmp_path, broker.url, devices=DEVICES) as relay:
            await subscribed(relay)  # the broker hands the command over again, marked DUP
            await trio.sleep(1.0)
        assert lost and len(queued_ids(subscriber)) == 1
    finally:
        subscriber.close()


def publish_retained(broker: Mosquitto, topic: str, payload: dict[str, Any]) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.publish(topic, json.dumps(payload).encode(), qos=1, retain=True).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


async def test_a_retained_command_is_queued_once_and_refused_when_it_comes_again(
    tmp_path: Path, broker: Mosquitto
) -> None:
    subscriber = Subscriber(broker, f"{PREFIX}/#")
    try:
        for run in range(3):
            async with running_relay(tmp_path, broker.url, devices=DEVICES) as relay:
                await subscribed(relay)
                if run == 0:  # live, it comes without the retain flag: an ordinary command
                    topic = f"{PREFIX}/{BN407}/command"
                    await trio.to_thread.run_sync(publish_retained, broker, topic, INTERVAL)
                await trio.sleep(1.0)
        assert len(queued_ids(subscriber)) == 1
        errors = [r["attributes"].get("command_error") or "" for r in results(subscriber)]
        assert any("retained command" in error for error in errors), errors
    finally:
        subscriber.close()
