"""A TCP proxy that can be switched off and on: the bench's uplink.

    python -m bench.proxy --listen P --to Q [--cpu N]

It forwards every connection to 127.0.0.1:P to 127.0.0.1:Q. Commands on stdin, one a line, each
answered ``ok`` on stdout once done: ``down`` closes every forwarded connection and the listening
socket (new connections are refused, as by a dead uplink); ``up`` listens again. It starts up and
prints ``listening``.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial

import trio

RECEIVE_SIZE = 65536


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    try:
        while data := await source.receive_some(RECEIVE_SIZE):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


class Proxy:
    def __init__(self, listen: int, target: int) -> None:
        self.listen = listen
        self.target = target
        self.scope: trio.CancelScope | None = None

    async def _forward(self, client: trio.SocketStream) -> None:
        async with client:
            try:
                upstream = await trio.open_tcp_stream("127.0.0.1", self.target)
            except OSError:
                return
            async with upstream, trio.open_nursery() as nursery:
                nursery.start_soon(_pipe, client, upstream)
                await _pipe(upstream, client)
                nursery.cancel_scope.cancel()

    async def _serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self.scope:
            await trio.serve_tcp(self._forward, self.listen, host="127.0.0.1", task_status=task_status)

    async def up(self, nursery: trio.Nursery) -> None:
        if self.scope is None:
            await nursery.start(self._serve)

    def down(self) -> None:
        """Cancelling the scope closes the listener and every forwarded connection (their handlers
        run inside serve_tcp's nursery)."""
        if self.scope is not None:
            self.scope.cancel()
            self.scope = None


async def main_async(listen: int, target: int) -> None:
    proxy = Proxy(listen, target)
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with trio.open_nursery() as nursery:
        await proxy.up(nursery)
        print("listening", flush=True)
        buffer = b""
        while data := await stdin.receive_some(1024):
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                command = line.strip()
                if command == b"down":
                    proxy.down()
                    await trio.sleep(0.05)  # let the cancelled handlers close their sockets
                elif command == b"up":
                    await proxy.up(nursery)
                print("ok", flush=True)
        proxy.down()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--to", type=int, required=True)
    parser.add_argument("--cpu", type=int, help="pin to this CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    trio.run(partial(main_async, args.listen, args.to))


if __name__ == "__main__":
    main()
