"""The standalone layer's subscriber connection, read the short way.

redis-py's ``PubSub.get_message`` takes one message per call: a timeout
context, its retry wrapper, ``handle_message`` building a dict (and an
observability hook) for every message. ``read_messages`` takes every reply a
socket read brought from hiredis's reader at once and hands each published
message (channel, data) straight on; only the rare other replies
(subscribe and unsubscribe confirmations) go through redis-py's
``handle_message``, which keeps the ``PubSub``'s bookkeeping as it was
(docs/performance.md, "Fan-out path, fourth round").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis._parsers.hiredis import NOT_ENOUGH_DATA, _AsyncHiredisParser

OnMessage = Callable[[bytes, bytes], None]
MESSAGE = b"message"


async def read_messages(pubsub: Any, on_message: OnMessage) -> None:
    """Read ``pubsub``'s connection until nothing is subscribed any more;
    raises what breaks the connection."""
    conn = pubsub.connection
    parser: Any = conn._parser  # redis-py's parser is untyped
    if not _is_hiredis(parser):  # hiredis is pinned; a fallback all the same
        await _read_through_redis_py(pubsub, on_message)
        return
    while pubsub.subscribed:
        # Looked up on every turn: a reconnect (redis-py's retry of a
        # SUBSCRIBE's write) gives the parser a new reader.
        reply = parser._reader.gets()
        if reply is NOT_ENOUGH_DATA:
            await parser.read_from_socket()  # ConnectionError when the server closed it
        elif type(reply) is list and len(reply) == 3 and reply[0] == MESSAGE:
            on_message(reply[1], reply[2])
        elif isinstance(reply, Exception):  # an error reply: as redis-py's reader raises it
            raise reply
        else:
            await pubsub.handle_message(reply, ignore_subscribe_messages=True)


async def _read_through_redis_py(pubsub: Any, on_message: OnMessage) -> None:
    while pubsub.subscribed:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None and message["type"] == "message":
            on_message(message["channel"], message["data"])


def _is_hiredis(parser: object) -> bool:
    return isinstance(parser, _AsyncHiredisParser)
