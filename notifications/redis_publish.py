"""Many PUBLISHes in one write, their replies read in one go.

redis-py's pipeline builds a ``Command`` per PUBLISH, packs each in pure
Python through its encoder, and awaits each reply through its own
``parse_response`` chain (a coroutine, a timeout, the response callbacks):
about as much CPU per recipient as the layer's own work. Here the RESP bytes
of a whole batch are built by ``pack_publish`` (one ``%``-format per
message) and written at once on one of the shard's pooled connections, and
the replies are taken from hiredis's reader as they come (docs/performance.md,
"Fan-out path, fourth round"). The connection (kept by its shard: a checkout
from the pool probes the socket each time), its reconnects and Sentinel's
master lookup stay redis-py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

PUBLISH = b"PUBLISH"


def pack_publish(channel: bytes, data: bytes, command: bytes = PUBLISH) -> bytes:
    """One ``PUBLISH channel data`` (or ``SPUBLISH``) in RESP."""
    return b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(command),
        command,
        len(channel),
        channel,
        len(data),
        data,
    )


def pack_publishes(items: Iterable[tuple[str, bytes]], command: bytes = PUBLISH) -> bytes:
    return b"".join(pack_publish(channel.encode(), data, command) for channel, data in items)


async def publish_packed(conn: Any, payload: bytes, count: int) -> None:
    """Send ``count`` packed PUBLISHes on ``conn`` and read their replies;
    raises the first error reply (after reading them all, so the connection
    stays in step) or the connection's error.

    A connection that breaks is connected again and the batch sent once
    more: a kept connection may have been closed by a Redis restart since the
    last batch. A message may then reach Redis twice, which the stream engine
    drops as a duplicate id (and a ``read`` frame repeated changes nothing).
    """
    reader = conn._reader
    if reader is not None and (reader.at_eof() or reader.exception() is not None):
        # Seen closed while idle: connect again first, as a checkout from
        # the pool would.
        await conn.disconnect()
    try:
        error = await _send_and_read(conn, payload, count)
    except (RedisConnectionError, OSError):
        await conn.disconnect()
        error = await _send_and_read(conn, payload, count)
    if error is not None:
        raise error


async def _send_and_read(conn: Any, payload: bytes, count: int) -> ResponseError | None:
    await conn.send_packed_command(payload, check_health=False)
    try:
        async with asyncio.timeout(conn.socket_timeout):
            return await read_replies(conn, count)
    except BaseException:
        # Replies left unread would answer the next command on this connection.
        await conn.disconnect(nowait=True)
        raise


async def read_replies(conn: Any, count: int) -> ResponseError | None:
    """Read ``count`` replies; the first error reply among them, if any."""
    parser: Any = conn._parser  # redis-py's parser is untyped
    if not _is_hiredis(parser):  # hiredis is pinned; a fallback all the same
        first: ResponseError | None = None
        for _ in range(count):
            try:
                await conn.read_response()
            except ResponseError as exc:
                first = first or exc
        return first
    reader = parser._reader
    error: ResponseError | None = None
    left = count
    while left:
        reply = reader.gets()
        if reply is NOT_ENOUGH_DATA:
            try:
                await parser.read_from_socket()
            except OSError as exc:
                raise RedisConnectionError(f"Error while reading from Redis: {exc!r}") from exc
            continue
        left -= 1
        if isinstance(reply, ResponseError) and error is None:
            error = reply
        elif isinstance(reply, RedisConnectionError):
            raise reply
    return error


def _is_hiredis(parser: object) -> bool:
    return isinstance(parser, _AsyncHiredisParser)
