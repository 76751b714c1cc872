"""A real uvicorn server on an ephemeral loopback port, in the test's own
event loop (for tests that need the protocol objects in reach)."""

from __future__ import annotations

import asyncio
import contextlib
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
