"""The command API on the status endpoint, over real HTTP: a PT-600 requestPhoto POSTed ends with the
photo on MQTT (the relay's photo flow, started by the command); bad input gets its status and reason; a
token, when set, must come as a Bearer header."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import trio

from tests.broker import Mosquitto, Subscriber
from tests.relay.harness import running_relay, wait_until
from tests.relay.test_pt600_photo import chunk_frame

PT600 = "1156802639"
POSITION = (
    f"$POS,{PT600},022125.000,A,0707.0014,N,07307.3725,W,0.0,0.1,110418,,,A/00000,00000/0,0,0,0/500//fd4//\r\n"
)
PREFIX = "relay/test-site"


async def http(port: int, method: str, path: str, body: Any = None, headers: str = "") -> tuple[int, Any]:
    payload = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        head = f"{method} {path} HTTP/1.1\r\nHost: relay\r\nContent-Length: {len(payload)}\r\n{headers}\r\n"
        await stream.send_all(head.encode() + payload)
        response = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                response += chunk
    head, _, content = response.partition(b"\r\n\r\n")
    code = int(head.split()[1])
    try:
        return code, json.loads(content)
    except ValueError:
        return code, content


async def test_a_pt600_photo_requested_over_http_is_published_on_mqtt(
    tmp_path: Path, broker: Mosquitto
) -> None:
    jpeg = b"\xff\xd8" + bytes(random.Random(3).randrange(256) for _ in range(2000)) + b"\xff\xd9"
    subscriber = Subscriber(broker, f"{PREFIX}/#")
    try:
        async with running_relay(tmp_path, broker.url, status={"listen": "127.0.0.1:0"}) as relay:
            port = relay.status_port
            async with await trio.open_tcp_stream("127.0.0.1", relay.port) as camera:
                await camera.send_all(POSITION.encode())  # the camera reports: the relay knows it
                await wait_until(lambda: relay.journal.devices.get(PT600) is not None, 5, "the camera known")
                code, queued = await http(port, "POST", f"/api/devices/{PT600}/commands",
                                          {"type": "requestPhoto", "id": "photo-1"})  # fmt: skip
                assert code == 202 and queued["id"] == "photo-1" and queued["state"] == "queued"
                with trio.fail_after(5):
                    assert await camera.receive_some(100) == b"#PHO\r\n"  # the Bofan photo code
                # The camera answers with its $PHO<size> announcement; the relay fetches the chunks.
                await camera.send_all(POSITION.replace("$POS", f"$PHO{len(jpeg)}-1").encode())
                received = 0
                with trio.fail_after(10):
                    while received < len(jpeg):
                        request = await camera.receive_some(100)
                        offset, length = map(int, request.decode().strip().removeprefix("#PHD").split(","))
                        await camera.send_all(chunk_frame(offset, jpeg[offset : offset + length]))
                        received += length
                photos = f"{PREFIX}/{PT600}/photo"
                await wait_until(lambda: any(t == photos for t, _, _ in list(subscriber.messages)), 10)
            code, listed = await http(port, "GET", f"/api/devices/{PT600}/commands")
        photo = next(json.loads(p) for t, p, _ in subscriber.messages if t == f"{PREFIX}/{PT600}/photo")
        assert base64.b64decode(photo["media"]["base64"]) == jpeg
        states = [json.loads(p)["attributes"]["command_state"] for t, p, _ in subscriber.messages
                  if t == f"{PREFIX}/{PT600}/command/result"]  # fmt: skip
        assert states == ["queued", "sent", "acknowledged"]
        assert code == 200 and listed["commands"][0]["state"] == "acknowledged"
        assert listed["commands"][0]["answer"]["photo_size"] == len(jpeg)
    finally:
        subscriber.close()


async def test_bad_http_commands_get_their_status_and_reason(tmp_path: Path) -> None:
    devices = [{"id": PT600, "protocol": "pt502"}]
    async with running_relay(tmp_path, status={"listen": "127.0.0.1:0"}, devices=devices) as relay:
        port, path = relay.status_port, f"/api/devices/{PT600}/commands"
        code, body = await http(port, "POST", path, b"{nope")
        assert code == 400 and "not JSON" in body["error"]
        code, body = await http(port, "POST", path, {"type": "engineStop"})
        assert code == 400 and "'engineStop' is not supported over data" in body["error"]
        code, body = await http(port, "POST", path, {"type": "positionPeriodic", "params": {"frequency": 0}})
        assert code == 400 and "frequency 0 is outside" in body["error"]
        code, body = await http(port, "POST", "/api/devices/999/commands", {"type": "rebootDevice"})
        assert code == 404 and "unknown device '999'" in body["error"]
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:  # a body too large is refused from its Content-Length, before it is read
            await stream.send_all(f"POST {path} HTTP/1.1\r\nContent-Length: 20000\r\n\r\n".encode())
            with trio.fail_after(5):
                assert (await stream.receive_some(100)).startswith(b"HTTP/1.1 413 ")
        code, body = await http(port, "PUT", path, {"type": "rebootDevice"})
        assert code == 405
        assert relay.journal.commands.pending() == []


async def test_with_a_token_a_post_needs_it_as_a_bearer_header(tmp_path: Path) -> None:
    token = "s3cret-token-for-tests"
    devices = [{"id": PT600, "protocol": "pt502"}]
    status = {"listen": "127.0.0.1:0", "token": token}
    async with running_relay(tmp_path, status=status, devices=devices) as relay:
        port, path = relay.status_port, f"/api/devices/{PT600}/commands"
        command = {"type": "rebootDevice"}
        assert (await http(port, "POST", path, command))[0] == 401
        assert (await http(port, "POST", f"{path}?token={token}", command))[0] == 401  # no link may
        code, body = await http(port, "POST", path, command, f"Authorization: Bearer {token}\r\n")
        assert code == 202 and body["type"] == "rebootDevice"
        assert (await http(port, "GET", path))[0] == 401
        code, body = await http(port, "GET", f"{path}?token={token}")
        assert code == 200 and [c["type"] for c in body["commands"]] == ["rebootDevice"]
