"""``relay sms send`` and ``relay provision`` while a relay holds the modem (the pty emulator): they go
through the relay's control socket and its modem task, the texts leave exactly, the tracker's replies
reach the command, and TCP trackers keep being answered. A dead modem is a clear error, never a hang;
with no relay (or a dead one's socket left behind) the commands open the port themselves."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import trio

from tests.modem_emulator import ModemEmulator
from tests.relay.harness import running_relay, wait_until
from tests.relay.test_provision import COBAN_ACKS, TRACKER
from tests.relay.test_status_http import metrics, sample

BN407 = "868683020419374"
LOGIN = f"##,imei:{BN407},A;".encode()


def modem_settings(emulator: ModemEmulator) -> dict:
    return {"port": str(emulator.link), "command_timeout_s": 0.5, "reopen_delay_s": 0.1}


async def relay_cli(*args: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    result = await trio.run_process(
        [sys.executable, "-m", "relay", *args], capture_stdout=True, capture_stderr=True, check=False
    )
    took = time.monotonic() - started
    return result.returncode, result.stdout.decode(), result.stderr.decode(), took


async def keep_answering(port: int, answered: list[float]) -> None:
    """A BN-407 on TCP sending a heartbeat every 0.2 s; each answer (``ON``) within 2 s is counted."""
    async with await trio.open_tcp_stream("127.0.0.1", port) as device:
        await device.send_all(LOGIN)
        assert await device.receive_some(100) == b"LOAD"
        while True:
            await device.send_all(f"{BN407};".encode())
            with trio.fail_after(2):
                assert await device.receive_some(100) == b"ON"
            answered.append(trio.current_time())
            await trio.sleep(0.2)


async def test_sms_send_and_provision_go_through_the_running_relays_modem(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    emulator = ModemEmulator(link=tmp_path / "ttyUSB2", replies=COBAN_ACKS)
    await nursery.start(emulator.run)
    data = tmp_path / "relay"
    status = {"listen": "127.0.0.1:0"}
    async with running_relay(data, modem=modem_settings(emulator), status=status) as relay:
        assert relay.control_socket == data / "control.sock" and relay.status_port
        await wait_until(lambda: "AT+CMGL=4" in emulator.commands, what="the modem's first scan")
        answered: list[float] = []
        async with trio.open_nursery() as device:
            device.start_soon(keep_answering, relay.port, answered)

            code, out, err, _ = await relay_cli("sms", "send", "--data-dir", str(data), "--to", TRACKER, "hi")
            assert code == 0, err
            assert out.strip() == f"sent to {TRACKER} by the running relay's modem (1 part(s))"
            assert [(s.destination, s.text) for s in emulator.sent] == [(TRACKER, "hi")]

            before = len(answered)
            code, out, err, _ = await relay_cli(
                "provision", "coban", "--data-dir", str(data), "--to", TRACKER, "--server", "203.0.113.7",
                "--apn", "internet.globe.com.ph", "--wait", "10", "--modem", str(emulator.link),
            )  # fmt: skip
            assert code == 0, out + err
            assert f"through the running relay's modem {emulator.link}" in out
            assert out.count("-> acknowledged") == len(COBAN_ACKS)
            assert out.strip().endswith(f"{TRACKER}: 8 acknowledged of 8 steps")
            assert [s.text for s in emulator.sent] == ["hi", *COBAN_ACKS]
            assert len(answered) - before >= 3  # the trackers were answered all along
            device.cancel_scope.cancel()
        families = await metrics(relay.status_port)
        assert sample(families, "relay_cli_sms_total", op="sms_send", result="sent") == 1
        assert sample(families, "relay_cli_sms_total", op="provision", result="sent") == 8
        # The replies were shown, then deleted from the modem; none was kept as quarantine.
        await wait_until(lambda: emulator.stored() == {}, 5, "the replies deleted")
        assert relay.journal.stats.quarantined == 0


async def test_a_dead_modem_under_the_relay_is_a_clear_error(tmp_path: Path, nursery: trio.Nursery) -> None:
    emulator = ModemEmulator(link=tmp_path / "ttyUSB2")
    await nursery.start(emulator.run)
    data = tmp_path / "relay"
    async with running_relay(data, modem=modem_settings(emulator)) as relay:
        await wait_until(lambda: "AT+CMGL=4" in emulator.commands, what="the modem's first scan")
        emulator.silent = True  # it stops answering: the send times out
        code, _, err, took = await relay_cli(
            "sms", "send", "--data-dir", str(data), "--to", TRACKER, "x", "--deadline", "8"
        )
        assert code == 1
        # Refused by the modem task, or by the relay once it saw the modem down: the reason either way.
        assert err.startswith("error: not sent: "), err
        assert f"the SMS to {TRACKER} was not sent" in err or "is down" in err, err
        assert took < 12  # the prompt timeout (5 s), not the deadline

        await emulator.unplug()  # the device is gone: the relay says so at once
        assert relay.modem_status is not None
        await wait_until(lambda: relay.modem_status.state == "down", 10, "the modem down")
        code, _, err, took = await relay_cli(
            "provision", "bofan", "--data-dir", str(data), "--to", TRACKER, "--server", "203.0.113.7",
            "--apn", "internet",
        )  # fmt: skip
        assert code == 1
        assert f"cannot provision through the running relay: the relay's modem {emulator.link} is down" in err
        assert took < 15
        assert not [s for s in emulator.sent if s.text == "x"]


async def test_without_a_running_relay_the_command_takes_the_port(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    emulator = ModemEmulator(link=tmp_path / "modem")
    await nursery.start(emulator.run)
    data = tmp_path / "relay"
    data.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a relay killed left its socket
    stale.bind(str(data / "control.sock"))
    stale.close()
    code, out, err, _ = await relay_cli(
        "sms", "send", "--data-dir", str(data), "--to", TRACKER, "--modem", str(emulator.link), "direct"
    )
    assert code == 0, err
    assert out.strip() == f"sent to {TRACKER}"
    assert [s.text for s in emulator.sent] == ["direct"]



async def test_a_provisioning_left_by_its_command_stops(tmp_path: Path, nursery: trio.Nursery) -> None:
    emulator = ModemEmulator(link=tmp_path / "ttyUSB2")  # the tracker never answers
    await nursery.start(emulator.run)
    data = tmp_path / "relay"
    async with running_relay(data, modem=modem_settings(emulator)):
        await wait_until(lambda: "AT+CMGL=4" in emulator.commands, what="the modem's first scan")
        command = [sys.executable, "-m", "relay", "provision", "bofan", "--data-dir", str(data), "--to"]
        command += [TRACKER, "--server", "203.0.113.7", "--apn", "internet", "--wait", "30"]
        quiet = subprocess.DEVNULL
        process = await trio.lowlevel.open_process(command, stdout=quiet, stderr=quiet)
        await wait_until(lambda: emulator.sent, 20, "the first step sent")
        process.kill()  # Ctrl-C, a closed ssh session
        await process.wait()
        await trio.sleep(1.0)
        assert [s.text for s in emulator.sent] == ["000000APNinternet"]  # no step after it
        # The number is free again: a new provisioning of it is taken.
        emulator.replies = {"000000APNinternet": ["APN ok"], "000000SVR203.0.113.7,8888": ["SVR ok"],
                            "000000GTI30": ["GTI ok"]}  # fmt: skip
        code, out, err, _ = await relay_cli(
            "provision", "bofan", "--data-dir", str(data), "--to", TRACKER, "--server", "203.0.113.7",
            "--apn", "internet", "--wait", "10",
        )  # fmt: skip
        assert code == 0, out + err
        assert out.strip().endswith(f"{TRACKER}: 3 acknowledged of 3 steps")


async def test_a_relay_process_holding_the_modem_sends_for_the_cli(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    """The relay as the service runs it (``relay run --config``), the commands with its config: through
    the relay while it runs; on the port itself once it stopped (and removed its socket)."""
    from tests.relay.test_crash import RelayProcess

    emulator = ModemEmulator(link=tmp_path / "ttyUSB2", replies={"000000APNinternet": ["APN ok"]})
    await nursery.start(emulator.run)
    modem = f'[modem]\nport = "{emulator.link}"\ncommand_timeout_s = 0.5\nreopen_delay_s = 0.1\n'
    relay = RelayProcess(tmp_path, extra=modem)
    await trio.to_thread.run_sync(relay.start)
    try:
        await wait_until(lambda: "AT+CMGL=4" in emulator.commands, what="the modem's first scan")
        answered: list[float] = []
        async with trio.open_nursery() as device:
            device.start_soon(keep_answering, relay.port, answered)
            config = str(relay.config)
            code, out, err, _ = await relay_cli("sms", "send", "--config", config, "--to", TRACKER, "hello")
            assert code == 0, err + relay.log.read_text()
            assert "by the running relay's modem" in out
            code, out, err, _ = await relay_cli(
                "provision", "bofan", "--config", config, "--to", TRACKER, "--server", "203.0.113.7",
                "--apn", "internet", "--wait", "1",
            )  # fmt: skip
            assert code == 1  # SVR and GTI get no reply from this tracker
            assert "'APN ok' -> acknowledged" in out and out.count("no reply in time (1 s)") == 2
            assert answered
            device.cancel_scope.cancel()
        assert [s.text for s in emulator.sent] == [
            "hello", "000000APNinternet", "000000SVR203.0.113.7,8888", "000000GTI30"
        ]
    finally:
        await trio.to_thread.run_sync(relay.stop)
    assert not (relay.data / "control.sock").exists()
    config = str(relay.config)
    code, out, err, _ = await relay_cli("sms", "send", "--config", config, "--to", TRACKER, "again")
    assert code == 0, err
    assert out.strip() == f"sent to {TRACKER}"
    assert emulator.sent[-1].text == "again"


async def ask(path: Path, request: bytes) -> dict:
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        await stream.send_all(request)
        answer = b""
        with trio.fail_after(10):
            while not answer.endswith(b"\n"):
                answer += await stream.receive_some(4096)
    return json.loads(answer)


async def test_bad_requests_on_the_control_socket_get_their_reason(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    emulator = ModemEmulator(link=tmp_path / "ttyUSB2")
    await nursery.start(emulator.run)
    data = tmp_path / "relay"
    async with running_relay(data, modem=modem_settings(emulator)) as relay:
        path = relay.control_socket
        assert path is not None and oct(path.stat().st_mode & 0o777) == "0o600"
        assert "not JSON" in (await ask(path, b"{nope\n"))["error"]
        assert "unknown op 'reboot'" in (await ask(path, b'{"op": "reboot"}\n'))["error"]
        empty = {"op": "sms_send", "to": TRACKER, "text": ""}
        assert "text '' is not a text" in (await ask(path, json.dumps(empty).encode() + b"\n"))["error"]
        family = {"op": "provision", "to": TRACKER, "family": "tk103", "server": "h", "port": 1, "apn": "a"}
        assert "unknown tracker family" in (await ask(path, json.dumps(family).encode() + b"\n"))["error"]
        other = {"op": "sms_send", "to": TRACKER, "text": "x", "modem": str(tmp_path / "ttyUSB9")}
        assert await ask(path, json.dumps(other).encode() + b"\n") == {"other_modem": str(emulator.link)}
        # The CLI naming another modem uses that one itself (here: none there, a clear error).
        code, _, err, _ = await relay_cli(
            "sms", "send", "--data-dir", str(data), "--modem", str(tmp_path / "ttyUSB9"), "--to", TRACKER, "x"
        )
        assert code == 1 and "cannot open modem port" in err
        assert not emulator.sent



async def test_a_second_relay_on_the_same_data_directory_leaves_the_first_ones_socket(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    emulator = ModemEmulator(link=tmp_path / "ttyUSB2")
    await nursery.start(emulator.run)
    data = tmp_path / "relay"
    async with running_relay(data, modem=modem_settings(emulator)) as first:
        assert first.control_socket is not None
        other = {"port": str(tmp_path / "ttyUSB9"), "command_timeout_s": 0.5, "reopen_delay_s": 0.1}
        async with running_relay(data, modem=other) as second:
            assert second.control_socket is None  # logged: control_socket_off
            answer = await ask(first.control_socket, b'{"op": "nope"}\n')
            assert answer == {"error": "unknown op 'nope' (sms_send or provision)"}
        assert await ask(first.control_socket, b'{"op": "nope"}\n') == answer  # still there once it stopped
