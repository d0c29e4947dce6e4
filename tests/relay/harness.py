"""Run a whole relay inside the test's trio loop, on real sockets, with a real journal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from relay.config import parse
from relay.service import Running, serve


def relay_config(data_dir: Path, broker_url: str | None = None, **sections: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "relay": {"site": "test-site", "data_dir": str(data_dir)},
        "listen": {"host": "127.0.0.1", "port": 0},
        # Tests exchange thousands of acknowledged reports one by one: keep commits prompt.
        "journal": {"commit_interval_ms": 5},
    }
    if broker_url:
        document["sinks"] = [
            {
                "name": "broker",
                "type": "mqtt",
                "url": broker_url,
                "topic_prefix": "relay/test-site",
                "retry_min_s": 0.2,
                "retry_max_s": 1.0,
                "inflight": 20,
            }
        ]
    for name, values in sections.items():
        if isinstance(values, list):  # arrays of tables ([[serial]], [[sinks]]) are appended
            document.setdefault(name, []).extend(values)
        else:
            document.setdefault(name, {}).update(values)
    return document


@asynccontextmanager
async def running_relay(
    data_dir: Path, broker_url: str | None = None, **sections: Any
) -> AsyncIterator[Running]:
    config = parse(relay_config(data_dir, broker_url, **sections), source="<test>")
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(serve, config)
        try:
            yield running
        finally:
            running.cancel_scope.cancel()
            nursery.cancel_scope.cancel()


async def wait_until(predicate: Any, timeout: float = 20, what: str = "condition") -> None:
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}")


async def receive_exactly(stream: trio.SocketStream, expected: bytes, timeout: float = 5) -> bytes:
    """What ``stream`` sends until it has sent as many bytes as ``expected`` (or ``timeout`` passes,
    or it ends): compare the result with ``expected``."""
    data = b""
    with trio.move_on_after(timeout):
        while len(data) < len(expected):
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
    return data
