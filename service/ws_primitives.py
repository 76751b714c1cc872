"""Small stand-ins for ``asyncio.Queue`` and ``asyncio.Event`` that allocate
nothing while idle: what an open socket of ``LeanWebSocketProtocol``
(service/ws_protocol.py) holds instead of uvicorn's own (about 4 KiB less per
connection)."""

from __future__ import annotations

import asyncio
from typing import Any


class SlimQueue:
    """The part of ``asyncio.Queue`` (unbounded) that uvicorn uses: ``put_nowait``,
    ``get``, ``empty``. Holds a list only while messages wait, and a future only
    while a reader does."""

    __slots__ = ("_getters", "_items")

    def __init__(self) -> None:
        self._items: list[Any] | None = None
        self._getters: list[asyncio.Future[None]] | None = None

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        self._wake_next()

    async def get(self) -> Any:
        while not self._items:
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = [getter]
            else:
                self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                self._forget(getter)
                if self._items and not getter.cancelled():
                    self._wake_next()  # it was woken: hand the item on
                raise
            self._forget(getter)
        items = self._items
        item = items.pop(0)
        if not items:
            self._items = None
        return item

    def _forget(self, getter: asyncio.Future[None]) -> None:
        getters = self._getters
        if getters is not None:
            if getter in getters:
                getters.remove(getter)
            if not getters:
                self._getters = None

    def _wake_next(self) -> None:
        for getter in self._getters or ():
            if not getter.done():
                getter.set_result(None)
                return


class SlimEvent:
    """``asyncio.Event`` without its deque: a list of waiters only while someone waits."""

    __slots__ = ("_is_set", "_waiters")

    def __init__(self) -> None:
        self._is_set = False
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._is_set

    def set(self) -> None:
        if self._is_set:
            return
        self._is_set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._is_set = False

    async def wait(self) -> bool:
        if self._is_set:
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
                if not self._waiters:
                    self._waiters = None
