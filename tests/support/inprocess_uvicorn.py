"""A real uvicorn server on an ephemeral loopback port, in the test's own
event loop (for tests that need the protocol objects in reach)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import uvicorn


@contextlib.asynccontextmanager
async def started(config: uvicorn.Config) -> AsyncIterator[tuple[uvicorn.Server, int]]:
    """``config``'s server, serving until the block ends; yields it and its port."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        yield server, server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def small_buffer_socket(port: int) -> socket.socket:
    """A non-blocking socket connected to ``port`` with a 4 KiB receive
    buffer: a client whose reads fill up at once, so the server's writes
    back up (a slow or paused reader)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock
