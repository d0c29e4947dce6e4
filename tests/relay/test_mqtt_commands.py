"""Commands by MQTT, against the real mosquitto: published on <prefix>/<device>/command, queued
durably across a relay restart, delivered byte for byte after the device's login, each change of state
published on <prefix>/<device>/command/result; an expired one never sent; bad input refused there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import trio
from paho.mqtt.enums import CallbackAPIVersion

from tests.broker import Mosquitto, Subscriber
from tests.relay.harness import receive_exactly, running_relay, wait_until

BN407 = "868683020419374"
PREFIX = "relay/test-site"
LOGIN = f"##,imei:{BN407},A;".encode()
POSITION = f"imei:{BN407},tracker,261120100000,,F,080000.000,A,5101.1234,N,00007.0001,W,1,2;".encode()
DEVICES = [{"id": BN407, "protocol": "gps103"}]


def publish(broker: Mosquitto, topic: str, payload: Any) -> None:
    """Publish at QoS 1 and wait for the broker's PUBACK (a fleet manager's client)."""
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    client.publish(topic, body, qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()


def results(subscriber: Subscriber, device: str = BN407) -> list[dict[str, Any]]:
    topic = f"{PREFIX}/{device}/command/result"
    return [json.loads(payload) for t, payload, _ in list(subscriber.messages) if t == topic]


def states(subscriber: Subscriber, command_id: str) -> list[str]:
    seen: list[str] = []
    for result in results(subscriber):
        state = result["attributes"]["command_state"]
        if result["attributes"]["command_id"] == command_id and state not in seen:
            seen.append(state)  # at least once: a state may come twice
    return seen


async def subscribed(relay: Any) -> None:
    await wait_until(lambda: relay.sinks[0].connected, 10, "the mqtt sink connected")
    await trio.sleep(0.3)  # its SUBSCRIBE right after CONNACK


async def test_an_offline_bn407_gets_a_published_command_after_a_relay_restart(
    tmp_path: Path, broker: Mosquitto
) -> None:
    subscriber = Subscriber(broker, f"{PREFIX}/#")
    try:
        async with running_relay(tmp_path, broker.url, devices=DEVICES) as relay:
            await subscribed(relay)
            command = {"id": "interval-1", "type": "positionPeriodic", "params": {"frequency": 60}}
            await trio.to_thread.run_sync(publish, broker, f"{PREFIX}/{BN407}/command", command)
            late = {"id": "stop-1", "type": "engineStop", "expires_s": 1}
            await trio.to_thread.run_sync(publish, broker, f"{PREFIX}/{BN407}/command", late)
            await wait_until(lambda: states(subscriber, "stop-1") == ["queued"], 10, "queued published")
            assert states(subscriber, "interval-1") == ["queued"]
        await trio.sleep(1.2)  # the engineStop expires while the relay is down

        async with running_relay(tmp_path, broker.url, devices=DEVICES) as relay:
            async with await trio.open_tcp_stream("127.0.0.1", relay.port) as device:
                await device.send_all(LOGIN)
                expected = b"LOAD" + f"**,imei:{BN407},C,60s".encode()
                assert await receive_exactly(device, expected) == expected
                assert await receive_exactly(device, b"x", timeout=0.5) == b""  # the expired one never
                await device.send_all(POSITION)  # the device goes on with its new interval
                await wait_until(
                    lambda: states(subscriber, "interval-1") == ["queued", "sent", "acknowledged"],
                    10,
                    "acknowledged published",
                )
            await wait_until(lambda: "expired" in states(subscriber, "stop-1"), 10, "expired published")
        acknowledged = next(
            r for r in results(subscriber) if r["attributes"]["command_state"] == "acknowledged"
        )
        assert acknowledged["event"] == "commandResult" and acknowledged["device_id"] == BN407
        assert acknowledged["attributes"]["command_type"] == "positionPeriodic"
        assert acknowledged["attributes"]["command_source"] == "mqtt:broker"
        assert states(subscriber, "stop-1") == ["queued", "expired"]
    finally:
        subscriber.close()


async def test_a_command_published_while_the_relay_is_down_is_taken_when_it_is_back(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """The sink's session is persistent: the broker keeps the QoS 1 commands that come while the
    relay is stopped (or its uplink is down) and hands them over at its next connection."""
    subscriber = Subscriber(broker, f"{PREFIX}/#")
    try:
        async with running_relay(tmp_path, broker.url, devices=DEVICES) as relay:
            await subscribed(relay)  # the broker now knows the relay's session and subscription
        command = {"id": "while-away", "type": "positionPeriodic", "params": {"frequency": 30}}
        await trio.to_thread.run_sync(publish, broker, f"{PREFIX}/{BN407}/command", command)
        async with running_relay(tmp_path, broker.url, devices=DEVICES) as relay:
            await wait_until(lambda: states(subscriber, "while-away") == ["queued"], 10, "queued published")
            async with await trio.open_tcp_stream("127.0.0.1", relay.port) as device:
                await device.send_all(LOGIN)
                expected = b"LOAD" + f"**,imei:{BN407},C,30s".encode()
                assert await receive_exactly(device, expected) == expected
    finally:
        subscriber.close()


async def test_bad_commands_get_their_error_on_the_result_topic_and_the_sink_goes_on(
    tmp_path: Path, broker: Mosquitto
) -> None:
    subscriber = Subscriber(broker, f"{PREFIX}/#")
    try:
        async with running_relay(tmp_path, broker.url, devices=DEVICES) as relay:
            await subscribed(relay)
            topic = f"{PREFIX}/{BN407}/command"
            bad = [
                (topic, b"{not json", "not JSON"),
                (topic, {"type": "selfDestruct"}, "unknown command type 'selfDestruct'"),
                (topic, {"type": "positionPeriodic", "params": {"frequency": "often"}}, "frequency"),
                (topic, {"type": "positionPeriodic", "param": {}}, "unknown key 'param'"),
                (topic, {"type": "setTimezone", "params": {"timezone": 2}}, "not supported over data"),
                (f"{PREFIX}/999/command", {"type": "rebootDevice"}, "unknown device '999'"),
            ]
            for where, payload, _ in bad:
                await trio.to_thread.run_sync(publish, broker, where, payload)
            good = {"id": "ok-1", "type": "positionSingle"}
            await trio.to_thread.run_sync(publish, broker, topic, good)
            await trio.to_thread.run_sync(publish, broker, topic, good)  # the same id again
            await wait_until(lambda: len(results(subscriber)) + len(results(subscriber, "999")) >= 8, 10,
                             "every answer")  # fmt: skip
        errors = [r["attributes"]["command_error"] for r in results(subscriber) + results(subscriber, "999")
                  if r["attributes"]["command_state"] == "refused"]  # fmt: skip
        assert len(errors) == len(bad) + 1
        for _, _, reason in bad:
            assert any(reason in error for error in errors), (reason, errors)
        assert any("was used already" in error for error in errors)
        # The sink went on after the bad ones; the same id again is refused, never queued twice.
        assert states(subscriber, "ok-1") == ["queued", "refused"]
    finally:
        subscriber.close()
