"""Every frame of the stream, defined once, and the close codes.

The stream engine (realtime/engine.py) produces these frames; each transport
only encodes them: the WebSocket as one JSON text frame each
(``ws_text``), Server-Sent Events as one event each (``sse_event``). Client
frames (WebSocket only) are decoded here too, into a frame or an error.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal, TypedDict

import orjson

from notifications.ids import parse_id
from notifications.rendering import NotificationDict


class CloseCode(IntEnum):
    """Close codes of the contract (WebSocket close codes; SSE's ``close`` event)."""

    EXPIRED = 4401  # the token expired: reconnect with a fresh one and since
    SLOW = 4008  # the client read too slowly: reconnect and resume
    ABUSE = 1008  # frames too fast (or a refused handshake)
    TOO_BIG = 1009  # a frame over the size limit
    INTERNAL = 1011
    RESTART = 1012  # the process shuts down: reconnect elsewhere after a random delay
    TRY_AGAIN = 1013  # the channel layer is unavailable


CLOSE_DETAIL = {
    CloseCode.EXPIRED: "The token expired; reconnect with a fresh one.",
    CloseCode.SLOW: "The client read too slowly; reconnect and resume.",
    CloseCode.ABUSE: "Too many frames.",
    CloseCode.TOO_BIG: "Frame too large.",
    CloseCode.INTERNAL: "Internal error; reconnect and resume.",
    CloseCode.RESTART: "The server is restarting; reconnect after a random delay.",
    CloseCode.TRY_AGAIN: "Try again later.",
}


# -- server to client ---------------------------------------------------------


class NotificationFrame(TypedDict):
    type: Literal["notification"]
    notification: NotificationDict


class ReadFrame(TypedDict):
    type: Literal["read"]
    ids: list[str]


class ReadyFrame(TypedDict):
    type: Literal["ready"]
    user: str
    replayed: int
    complete: bool
    unread: int
    last_id: str


class PongFrame(TypedDict):
    type: Literal["pong"]


class ErrorFrame(TypedDict):
    type: Literal["error"]
    code: str
    detail: str


class KeepaliveFrame(TypedDict):
    """Nothing for the client: SSE writes it as a ``: ping`` comment."""

    type: Literal["keepalive"]


ServerFrame = NotificationFrame | ReadFrame | ReadyFrame | PongFrame | ErrorFrame | KeepaliveFrame

PONG: PongFrame = {"type": "pong"}
KEEPALIVE: KeepaliveFrame = {"type": "keepalive"}


def notification(n: NotificationDict) -> NotificationFrame:
    return {"type": "notification", "notification": n}


def read(ids: list[str]) -> ReadFrame:
    return {"type": "read", "ids": ids}


def error(code: str, detail: str) -> ErrorFrame:
    return {"type": "error", "code": code, "detail": detail}


def ws_text(frame: ServerFrame) -> str:
    """The WebSocket encoding: the frame itself, as JSON text."""
    return orjson.dumps(frame).decode()


# The last notification encoded, and its frame: a user's sockets of this
# process get the same notification object from the layer one after the
# other, so the JSON is built once for all of them.
_last_encoded: tuple[NotificationDict, bytes] | None = None


def ws_bytes(frame: ServerFrame) -> bytes:
    """``ws_text`` as UTF-8 bytes, once per notification for all its sockets."""
    global _last_encoded
    if frame["type"] != "notification":
        return orjson.dumps(frame)
    notification = frame["notification"]
    last = _last_encoded
    if last is not None and last[0] is notification:
        return last[1]
    data = orjson.dumps(frame)
    _last_encoded = (notification, data)
    return data


def sse_event(frame: ServerFrame) -> bytes:
    """The SSE encoding: the frame's type as the event, the rest as one line
    of JSON data; a notification carries its id (Last-Event-ID)."""
    if frame["type"] == "notification":
        n = frame["notification"]
        return b"id: %s\nevent: notification\ndata: %s\n\n" % (n["id"].encode(), orjson.dumps(n))
    if frame["type"] == "keepalive":
        return b": ping\n\n"
    data = {k: v for k, v in frame.items() if k != "type"}
    return b"event: %s\ndata: %s\n\n" % (frame["type"].encode(), orjson.dumps(data))


def sse_close(code: CloseCode, *, retry_ms: int | None = None) -> bytes:
    """The last event of a stream; ``retry_ms`` sets EventSource's reconnect delay."""
    data = orjson.dumps({"code": int(code), "detail": CLOSE_DETAIL[code]})
    retry = b"" if retry_ms is None else b"retry: %d\n" % retry_ms
    return retry + b"event: close\ndata: %s\n\n" % data


# -- client to server (WebSocket) -----------------------------------------------


class PingFrame(TypedDict):
    type: Literal["ping"]


class ClientReadFrame(TypedDict):
    type: Literal["read"]
    ids: list[str]


ClientFrame = PingFrame | ClientReadFrame


def decode_client(text: str, *, max_read_ids: int) -> ClientFrame | ErrorFrame:
    """A client frame, or the error frame that answers it."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return error("invalid_json", "The frame is not valid JSON.")
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        return error("invalid_frame", 'A frame is a JSON object with a string "type".')
    if frame["type"] == "ping":
        return {"type": "ping"}
    if frame["type"] == "read":
        ids = frame.get("ids")
        if (
            isinstance(ids, list)
            and 1 <= len(ids) <= max_read_ids
            and all(parse_id(i) is not None for i in ids)
        ):
            return {"type": "read", "ids": ids}
        return error("invalid_read", f"ids must be 1..{max_read_ids} notification id strings.")
    return error("unknown_type", f"Unknown frame type {frame['type'][:50]!r}.")
