"""Attributes that uvicorn's WebSocket protocol sets on every connection but
that are the same for every connection of a server, kept once per server
(``LeanWebSocketProtocol``, service/ws_protocol.py).

uvicorn's protocol object holds about 40 attributes. Past 30, CPython 3.11
stops sharing the attribute names between instances and gives each object a
dictionary of its own (1.6 KiB); under 30 each holds only its values (about
0.35 KiB). The constants of the server (its config, app, logger, sets of
connections and tasks, ping settings) move to one object per server, and the
per-connection keepalive state uvicorn no longer uses (service/ws_keepalive.py
replaced it) is not stored at all.
"""

from __future__ import annotations

import weakref
from types import SimpleNamespace
from typing import Any

from uvicorn.server import ServerState

# One namespace per uvicorn server (its ServerState), forgotten with it.
PER_SERVER: weakref.WeakKeyDictionary[ServerState, SimpleNamespace] = weakref.WeakKeyDictionary()


def per_server(server_state: ServerState) -> SimpleNamespace:
    shared = PER_SERVER.get(server_state)
    if shared is None:
        shared = PER_SERVER[server_state] = SimpleNamespace()
    return shared


class PerServer:
    """An attribute stored on the connection's ``per_server`` namespace: every
    connection of a server writes the same value to it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj.per_server, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj.per_server, self.name, value)


class Unused:
    """An attribute uvicorn writes but that this protocol never needs: it reads
    as its default and writes are dropped."""

    def __init__(self, default: Any) -> None:
        self.default = default

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        return self.default

    def __set__(self, obj: Any, value: Any) -> None:
        pass


# uvicorn's (0.54) per-server attributes, and its keepalive state.
PER_SERVER_ATTRIBUTES = (
    "config",
    "app",
    "loop",
    "logger",
    "root_path",
    "asgi_version",
    "app_state",
    "connections",
    "tasks",
    "default_headers",
    "close_timeout",
    "ping_interval",
    "ping_timeout",
)
UNUSED_ATTRIBUTES = {
    "ping_timer": None,
    "pong_timer": None,
    "pending_ping_payload": None,
    "ping_sent_at": 0.0,
    "last_ping_rtt": 0.0,
}


def install(cls: type) -> None:
    """Put the descriptors on ``cls`` (uvicorn's attributes are plain ones to
    mypy; they are not redeclared in the class body)."""
    for name in PER_SERVER_ATTRIBUTES:
        setattr(cls, name, PerServer(name))
    for name, default in UNUSED_ATTRIBUTES.items():
        setattr(cls, name, Unused(default))
