"""The Bofan PT-600 camera flow through the relay: announced, requested chunk by chunk, published."""

from __future__ import annotations

import base64
import random
from pathlib import Path

import trio

from tests.broker import Mosquitto, Subscriber
from tests.relay.harness import running_relay

DEVICE = "1156802639"


def chunk_frame(offset: int, data: bytes) -> bytes:
    """``BF FB <xor> <len LE>`` + ``$PHD<offset>,<len>,`` + JPEG bytes + CRLF, as the camera sends it."""
    payload = f"$PHD{offset},{len(data)},".encode() + data + b"\r\n"
    xor = 0
    for byte in payload:
        xor ^= byte
    return b"\xbf\xfb" + bytes([xor]) + (len(payload) + 5).to_bytes(2, "little") + payload


async def test_a_photo_is_requested_in_chunks_and_published_whole(tmp_path: Path, broker: Mosquitto) -> None:
    # JPEG bytes contain CR LF and '$': the chunk length, not the line end, must cut them.
    jpeg = b"\xff\xd8" + bytes(random.Random(7).randrange(256) for _ in range(2500)) + b"\r\n$POS\xff\xd9"
    subscriber = Subscriber(broker, "relay/#")
    try:
        async with running_relay(tmp_path, broker.url) as relay:
            stream = await trio.open_tcp_stream("127.0.0.1", relay.port)
            async with stream:
                await stream.send_all(
                    f"$PHO{len(jpeg)}-1,{DEVICE},022125.000,A,0707.0014,N,07307.3725,W,0.0,0.1,110418,,,"
                    "A/00000,00000/0,0,0,0/500//fd4//\r\n".encode()
                )
                requests = []
                received = 0
                with trio.fail_after(10):
                    while received < len(jpeg):
                        request = await stream.receive_some(100)
                        requests.append(request)
                        offset, length = map(int, request.decode().strip().removeprefix("#PHD").split(","))
                        assert offset == received
                        await stream.send_all(chunk_frame(offset, jpeg[offset : offset + length]))
                        received += length
                messages = await subscriber.wait_for(2)
    finally:
        subscriber.close()
    assert requests == [
        f"#PHD{offset},{min(960, len(jpeg) - offset)}\r\n".encode() for offset in range(0, len(jpeg), 960)
    ]
    topics = [topic for topic, _, _ in subscriber.messages if not topic.endswith("/status")]
    assert topics == [f"relay/test-site/{DEVICE}/position", f"relay/test-site/{DEVICE}/photo"]
    photo = messages[1]
    assert photo["event"] == "photo" and photo["device_id"] == DEVICE
    assert base64.b64decode(photo["media"]["base64"]) == jpeg
    assert photo["media"]["type"] == "image/jpeg" and photo["media"]["bytes"] == len(jpeg)
