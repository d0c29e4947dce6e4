"""The drain after an outage, against its peer: a local mosquitto bridge (issue 18). Alone:
``python -m bench.peer --outages 15,60`` (both sides of each outage in one run, and their ratios).

Both sides hold the same backlog while the uplink is down, then the uplink comes back:

- **relay**: ``relay run`` with an MQTT sink (QoS 1, in-flight 50) to the central broker through
  the proxy. Connected first; the uplink goes down; the bench's load generator then sends
  ``backlog`` gps103 frames (each stored and acknowledged by the relay).
- **mosquitto bridge**: a second mosquitto with a ``connection`` to the central broker through the
  same proxy (``topic bench/# out 1``, ``cleansession false``, mosquitto's default
  ``restart_timeout``). Connected first; the uplink goes down; a paho client then publishes the
  very topics and payloads the relay's journal holds, at QoS 1, to it.

The uplink is :mod:`bench.proxy`, switched down for ``outage`` seconds (counted from the moment it
went down; the backlog is filled inside that time). One paho subscriber on the central broker
(QoS 1) counts distinct payloads. Per side: seconds from the uplink coming back to the first
message and to the last, and the flowing rate in between. The sender (relay or local mosquitto)
is pinned to CPU 0; the central broker, the proxy, the subscriber and the load generator to CPU 1.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from . import limits
from .proc import ROOT, Broker, Relay, free_tcp_udp_port, write_config

SENDER_CPU = 0
OTHER_CPU = 1
PROBE_TOPIC = "bench/probe"
#: The relay's own online/offline topic (its last will arrives when the uplink drops): not a report.
STATUS_TOPIC = "bench/status"
#: How long a side may take to deliver its backlog once the uplink is back.
DELIVERY_TIMEOUT_S = 600


class Subscriber:
    """A paho client on the central broker counting distinct payloads under ``bench/#`` (reports
    only: not the bridge probes, not the relay's status)."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.seen: set[bytes] = set()
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.duplicates = 0
        self.probes = 0
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-count-{time.monotonic_ns()}")
        self.client.on_message = self._message
        connected = threading.Event()
        self.client.on_connect = lambda *_: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError("subscriber could not connect to the central broker")
        self.client.subscribe("bench/#", qos=1)

    def _message(self, _client: object, _userdata: object, message: paho.MQTTMessage) -> None:
        now = time.monotonic()
        if message.topic == PROBE_TOPIC:
            self.probes += 1
            return
        if message.topic == STATUS_TOPIC:
            return
        digest = hashlib.blake2b(message.payload, digest_size=16).digest()
        with self.lock:
            if digest in self.seen:
                self.duplicates += 1
                return
            self.seen.add(digest)
            if self.first_at is None:
                self.first_at = now
            self.last_at = now

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()
            self.first_at = self.last_at = None
            self.duplicates = 0
            self.probes = 0

    def wait(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.seen) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"subscriber: {len(self.seen)} of {count} messages arrived")
            time.sleep(0.01)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Uplink:
    """:mod:`bench.proxy` as a subprocess: ``down()`` and ``up()`` return once done."""

    def __init__(self, target: int) -> None:
        self.port = free_tcp_udp_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.proxy", "--listen", str(self.port), "--to", str(target)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: os.sched_setaffinity(0, {OTHER_CPU}),
        )
        self._expect("listening")

    def _expect(self, word: str) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != word:
            raise RuntimeError(f"proxy said {line!r}, not {word!r}")

    def _command(self, command: str) -> float:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        self._expect("ok")
        return time.monotonic()

    def down(self) -> float:
        return self._command("down")

    def up(self) -> float:
        return self._command("up")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _outcome(subscriber: Subscriber, up_at: float, backlog: int) -> dict[str, Any]:
    subscriber.wait(backlog, DELIVERY_TIMEOUT_S)
    assert subscriber.first_at is not None and subscriber.last_at is not None
    flowing = subscriber.last_at - subscriber.first_at
    return {
        "messages": backlog,
        "first_message_s": subscriber.first_at - up_at,
        "all_delivered_s": subscriber.last_at - up_at,
        "flowing_per_s": backlog / flowing if flowing > 0 else None,
        "duplicates": subscriber.duplicates,
    }


def _relay_side(
    directory: Path, uplink: Uplink, subscriber: Subscriber, backlog: int, outage: float
) -> tuple[dict[str, Any], Path]:
    port = free_tcp_udp_port()
    config = write_config(directory, port, mqtt_url=f"mqtt://127.0.0.1:{uplink.port}", inflight=50)
    with Relay(config, port, cpu=SENDER_CPU) as relay:
        relay.start()
        relay.wait_log("mqtt_connected")
        subscriber.reset()
        down_at = uplink.down()
        load = subprocess.run(
            [
                sys.executable, "-m", "bench.load", "--port", str(port), "--cpu", str(OTHER_CPU),
                "--tcp", "200", "--only", "gps103", "--frames", str(backlog),
                "--warmup", "0", "--duration", str(DELIVERY_TIMEOUT_S),
            ],
            cwd=ROOT, stdout=subprocess.DEVNULL, check=True,
        )  # fmt: skip
        del load
        filled_s = time.monotonic() - down_at
        time.sleep(max(0.0, down_at + outage - time.monotonic()))
        up_at = uplink.up()
        figures = _outcome(subscriber, up_at, backlog)
    figures["fill_s"] = filled_s
    return figures, directory / "data" / "journal.sqlite3"


def _bridge_side(
    directory: Path,
    central: int,
    uplink: Uplink,
    subscriber: Subscriber,
    messages: list[tuple[str, bytes]],
    outage: float,
) -> dict[str, Any]:
    bridge = (
        "max_inflight_messages 50\n"
        "connection central\n"
        f"address 127.0.0.1:{uplink.port}\n"
        "topic bench/# out 1\n"
        "cleansession false\n"
        f"clientid bench-bridge-{time.monotonic_ns()}\n"
        "bridge_protocol_version mqttv311\n"
    )
    with Broker(directory, cpu=SENDER_CPU, name="bridge", extra=bridge) as local:
        _wait_bridged(local.port, subscriber)
        subscriber.reset()
        down_at = uplink.down()
        limits.bare_paho(local.port, messages, inflight=50)
        filled_s = time.monotonic() - down_at
        time.sleep(max(0.0, down_at + outage - time.monotonic()))
        up_at = uplink.up()
        figures = _outcome(subscriber, up_at, len(messages))
    figures["fill_s"] = filled_s
    return figures


def _wait_bridged(port: int, subscriber: Subscriber, timeout: float = 30.0) -> None:
    """Publish probes to the local broker until one reaches the central broker through the bridge."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{time.monotonic_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while subscriber.probes == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the mosquitto bridge never reached the central broker")
            client.publish(PROBE_TOPIC, b"probe", qos=1)
            time.sleep(0.2)
    finally:
        client.loop_stop()
        client.disconnect()


def peer_drain(
    work: Path, backlog: int, outages: tuple[float, ...], say: Callable[[str], None]
) -> dict[str, Any]:
    """Relay and mosquitto bridge, each through every outage; figures by outage length."""
    directory = work / "peer"
    directory.mkdir()
    results: dict[str, Any] = {"backlog": backlog, "outages": {}}
    everything = set(range(os.cpu_count() or 1))
    os.sched_setaffinity(0, {OTHER_CPU})  # the subscriber's thread
    central = Broker(directory, cpu=OTHER_CPU, name="central")
    try:
        uplink = Uplink(central.port)
        subscriber = Subscriber(central.port)
        try:
            for outage in outages:
                say(f"drain after a {outage:g} s outage ({backlog} messages): relay")
                side = directory / f"relay-{outage:g}"
                side.mkdir()
                relay, journal = _relay_side(side, uplink, subscriber, backlog, outage)
                messages = limits_messages(journal)
                say(f"drain after a {outage:g} s outage ({backlog} messages): mosquitto bridge")
                bridge = _bridge_side(side, central.port, uplink, subscriber, messages, outage)
                results["outages"][f"{outage:g}"] = {"outage_s": outage, "relay": relay, "bridge": bridge}
        finally:
            subscriber.close()
            uplink.close()
    finally:
        central.stop()
        os.sched_setaffinity(0, everything)
    return results


def limits_messages(journal: Path) -> list[tuple[str, bytes]]:
    """The topics and payloads the relay published from ``journal`` (what the bridge is given)."""
    from .run import _messages

    return _messages(journal, "bench")


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.peer``: only the drain against the bridge, each outage's two sides in one run."""
    import argparse
    import json
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=main.__doc__)
    parser.add_argument("--backlog", type=int, default=30_000, help="messages held by each side")
    parser.add_argument("--outages", default="15,60", help="uplink outages, seconds, comma-separated")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    outages = tuple(float(x) for x in args.outages.split(","))
    with tempfile.TemporaryDirectory(prefix="relay-peer-") as name:
        results = peer_drain(Path(name), args.backlog, outages, lambda line: print(line, file=sys.stderr))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'outage':>7} {'side':<8} {'first msg s':>11} {'all s':>8} {'msgs/s':>8} {'dups':>5}")
    for outage in results["outages"].values():
        for side in ("relay", "bridge"):
            f = outage[side]
            rate = f"{f['flowing_per_s']:8,.0f}" if f["flowing_per_s"] else "       -"
            print(
                f"{outage['outage_s']:>6g}s {side:<8} {f['first_message_s']:>11.2f} "
                f"{f['all_delivered_s']:>8.2f} {rate} {f['duplicates']:>5}"
            )
        ours, theirs = outage["relay"], outage["bridge"]
        if ours["flowing_per_s"] and theirs["flowing_per_s"]:
            rate = ours["flowing_per_s"] / theirs["flowing_per_s"]
            delivered = ours["all_delivered_s"] / theirs["all_delivered_s"]
            print(f"{'':>8} relay/bridge, same run: flowing rate {rate:.0%}, all delivered {delivered:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
