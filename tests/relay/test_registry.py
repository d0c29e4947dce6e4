"""The registry at work: the unknown-device policy on a real port, calibrated sensors on the real
broker, a devices file (TOML and CSV) and its reload on SIGHUP."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest
import trio

from relay.calibration import Calibration
from relay.config import load, parse
from relay.errors import ConfigError
from relay.journal import Journal
from tests import devices
from tests.broker import Mosquitto, Subscriber
from tests.relay.harness import running_relay, wait_until
from tests.relay.test_crash import RelayProcess

KNOWN, STRANGER = "868683020419374", "868683020419999"
TWO = [{"id": KNOWN, "name": "bike 1"}, {"id": "868683020410000", "name": "bike 2"}]


async def closed_without_answer(port: int, frame: bytes) -> bool:
    """Send ``frame``; True when the relay closes the connection without a byte of answer."""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(frame)
            return await stream.receive_some(64) == b""


def stored_devices(data: Path) -> list[str]:
    journal = Journal.open(data / "journal.sqlite3")
    try:
        return [report.document["device_id"] for report in journal.read_after(0, 1000)]
    finally:
        journal.close()


async def test_reject_answers_the_known_device_and_refuses_and_counts_the_unknown(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_relay(data, relay={"unknown_devices": "reject"}, devices=TWO) as relay:
        known = await devices.tcp_exchange(relay.port, [devices.gps103_position(KNOWN, 1)], replies=1)
        assert known == [b"ON"]
        assert await closed_without_answer(relay.port, devices.gps103_login(STRANGER))
        assert await closed_without_answer(relay.port, devices.gps103_position(STRANGER, 2))
        stats = relay.listener.stats
        assert stats.unknown_devices["reject"] == 2
        # UDP: no connection to close; nothing is answered or stored.
        udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
        with udp:
            await udp.sendto(devices.gps103_position(STRANGER, 3), ("127.0.0.1", relay.port))
            await wait_until(lambda: stats.unknown_devices["reject"] == 3, what="the datagram counted")
            with trio.move_on_after(0.3) as silence:
                await udp.recvfrom(64)
            assert silence.cancelled_caught
    assert stored_devices(data) == [KNOWN]


async def test_quarantine_keeps_the_unknown_frames_with_the_reason_and_answers_nothing(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    async with running_relay(data, relay={"unknown_devices": "quarantine"}, devices=TWO) as relay:
        stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
        async with stream:
            await stream.send_all(devices.gps103_position(STRANGER, 1))
            with trio.move_on_after(0.5) as silence:
                await stream.receive_some(64)
            assert silence.cancelled_caught  # no ON: the device will send it again
        assert await devices.tcp_exchange(relay.port, [devices.gps103_position(KNOWN, 2)], replies=1) == [
            b"ON"
        ]
    assert stored_devices(data) == [KNOWN]
    with sqlite3.connect(data / "journal.sqlite3") as db:
        rows = db.execute("SELECT reason, raw FROM quarantine").fetchall()
    assert rows == [
        (
            f"unknown device {STRANGER} ([relay] unknown_devices = quarantine)",
            devices.gps103_position(STRANGER, 1),
        )
    ]


async def test_a_pt600_fuel_reading_arrives_on_mqtt_in_litres(tmp_path: Path, broker: Mosquitto) -> None:
    tank = [[0, 0], [20, 10], [40, 50]]  # adc1 26 (0x1a): 10 + 40 * 6 / 20 = 22 l
    truck = {"id": "7002345", "calibration": [{"input": "adc1", "output": "fuel_l", "points": tank},
                                              {"input": "adc2", "output": "temperature_c",
                                               "points": [[10, -5], [100, 40]]}]}  # fmt: skip
    subscriber = Subscriber(broker, "relay/#")
    try:
        async with running_relay(tmp_path / "data", broker.url, devices=[truck]) as relay:
            answer = await devices.tcp_exchange(relay.port, [devices.pt502_position("7002345", 1)], replies=0)
            assert answer == [b""]
            (report,) = await subscriber.wait_for(1)
    finally:
        subscriber.close()
    attributes = report["attributes"]
    assert attributes["adc1"] == 26 and attributes["fuel_l"] == 22.0  # the raw value is kept beside it
    assert attributes["temperature_c"] == -5.0  # adc2 0 is below the table: its end, and marked
    assert attributes["calibration_clamped"] == ["temperature_c"]


def test_interpolation_clamps_at_both_ends() -> None:
    table = Calibration("adc1", "fuel_l", ((0.5, 0.0), (1.0, 10.0), (4.5, 80.0)))
    assert table.value(0.75) == (5.0, False)
    assert table.value(2.75) == (45.0, False)
    assert table.value(4.5) == (80.0, False)
    assert table.value(0.1) == (0.0, True)
    assert table.value(9.0) == (80.0, True)


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ({"input": "adc1", "output": "fuel_l", "points": [[0, 0]]}, "points must be a list of 2 to"),
        ({"input": "adc1", "output": "fuel_l", "points": [[0, 0], [5, 1], [3, 2]]}, "(5 then 3)"),
        ({"input": "adc1", "output": "fuel_l", "points": [[0, 0], ["a", 1]]}, "point 2 must be [raw, value]"),
        ({"input": "adc1", "output": "litres", "points": [[0, 0], [1, 1]]}, "output must be a name of"),
        ({"input": "speed?", "output": "fuel_l", "points": [[0, 0], [1, 1]]}, "input must be an attribute"),
    ],
)  # fmt: skip
def test_a_bad_calibration_table_is_a_config_error_naming_the_device_and_table(
    table: dict, said: str
) -> None:
    with pytest.raises(ConfigError) as error:
        parse({"devices": [{"id": KNOWN, "calibration": [table]}]}, source="relay.toml")
    text = str(error.value)
    assert "devices[0].calibration" in text and "table 1" in text and said in text


def test_a_devices_file_in_csv_or_toml_adds_to_the_registry(tmp_path: Path) -> None:
    (tmp_path / "fleet.csv").write_text(
        "\ufeffid,name,phone,offline_after_s,tags\r\n"
        f"{STRANGER},bike 9,+15550009,600,bike yard-2\r\n"
        "868683020410001,bike 10,,,\r\n",
        encoding="utf-8",
    )
    (tmp_path / "relay.toml").write_text(
        f'[relay]\ndevices_file = "fleet.csv"\n[[devices]]\nid = "{KNOWN}"\n', encoding="utf-8"
    )
    config = load(tmp_path / "relay.toml")
    assert [(d.id, d.name, d.phone, d.offline_after_s, d.tags) for d in config.devices] == [
        (KNOWN, "", None, None, ()),
        (STRANGER, "bike 9", "+15550009", 600.0, ("bike", "yard-2")),
        ("868683020410001", "bike 10", None, None, ()),
    ]
    (tmp_path / "fleet.toml").write_text(f'[[devices]]\nid = "{KNOWN}"\n', encoding="utf-8")
    (tmp_path / "relay.toml").write_text(
        f'[relay]\ndevices_file = "fleet.toml"\n[[devices]]\nid = "{KNOWN}"\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match=f"fleet.toml: device {KNOWN}"):
        load(tmp_path / "relay.toml")
    (tmp_path / "fleet.csv").write_text("id,colour\n1,red\n", encoding="utf-8")
    (tmp_path / "relay.toml").write_text('[relay]\ndevices_file = "fleet.csv"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="line 1"):
        load(tmp_path / "relay.toml")


async def test_sighup_reloads_the_devices_file_and_a_bad_one_changes_nothing(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.csv"
    fleet.write_text(f"id\n{KNOWN}\n", encoding="utf-8")
    relay = RelayProcess(tmp_path, relay=f'unknown_devices = "reject"\ndevices_file = "{fleet}"')
    relay.start()

    async def logged(event: str) -> None:
        await wait_until(lambda: f"event={event}" in relay.log.read_text(), what=event)

    try:
        assert await devices.tcp_exchange(relay.port, [devices.gps103_position(KNOWN, 1)], replies=1) == [
            b"ON"
        ]
        assert await closed_without_answer(relay.port, devices.gps103_position(STRANGER, 2))
        fleet.write_text(f"id\n{KNOWN}\n{STRANGER}\n", encoding="utf-8")
        assert relay.process is not None
        relay.process.send_signal(signal.SIGHUP)
        await logged("devices_reloaded")
        assert await devices.tcp_exchange(relay.port, [devices.gps103_position(STRANGER, 3)], replies=1) == [
            b"ON"
        ]
        fleet.write_text("id,colour\n1,red\n", encoding="utf-8")
        relay.process.send_signal(signal.SIGHUP)
        await logged("reload_failed")
        assert await devices.tcp_exchange(relay.port, [devices.gps103_position(STRANGER, 4)], replies=1) == [
            b"ON"
        ]
        assert relay.process.poll() is None
    finally:
        relay.stop()
