"""Group commit: publish requests that arrive together share one transaction.

Requests wait on the event loop; one writer thread takes every request
queued at that moment and commits them together
(``publishing.notifications_publish_rated``), then goes on with what queued
meanwhile. One commit, one counter upsert, one insert and one pipelined
push per group instead of per request, and no thread per waiting request.
A group that fails as a whole is retried one request at a time, so a bad
request cannot fail the others.

Groups are formed fairly: requests wait in one line per key (the publisher),
and a group takes one request from each line in turn, within its bounds
(items, recipients), and the line served last goes to the back. One key's
flood of large requests therefore delays another key's request by a group
or two, not by the whole flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class AsyncGroupCommitter(Generic[In, Out]):
    """Group commit for requests on an event loop, with one writer thread.

    ``await submit(item)`` queues the item and returns its outcome. One
    thread (``executor`` should have a single worker) takes everything queued
    at that moment, commits it with ``commit``, hands each outcome back to
    its waiting coroutine, and goes on while more is queued; requests that
    arrive during a commit form the next group. A waiting request costs no
    thread, and a request costs no thread hop of its own.

    ``commit`` returns one outcome per item; it raises only when the whole
    group failed, and then each item is retried alone, so that a bad request
    cannot fail the others.
    """

    def __init__(
        self,
        commit: Callable[[Sequence[In]], Sequence[Out]],
        *,
        executor: Executor,
        size_of: Callable[[In], int],
        key_of: Callable[[In], Hashable] = lambda _item: None,
        max_items: int = 256,
        max_size: int = 10_000,
    ) -> None:
        self._commit = commit
        self._executor = executor
        self._size_of = size_of
        self._key_of = key_of
        self._max_items = max_items
        self._max_size = max_size
        self._lock = threading.Lock()
        # One line per key; dict order is the round-robin order.
        self._pending: dict[Hashable, deque[tuple[In, asyncio.Future[Out]]]] = {}
        self._running = False

    async def submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        with self._lock:
            line = self._pending.get(self._key_of(item))
            if line is None:
                line = self._pending[self._key_of(item)] = deque()
            line.append((item, future))
            start, self._running = not self._running, True
        if start:
            loop.run_in_executor(self._executor, self._drain)
        return await future

    def waiting(self) -> int:
        """Requests queued and not yet taken into a group."""
        with self._lock:
            return sum(len(line) for line in self._pending.values())

    def _drain(self) -> None:
        try:
            while True:
                with self._lock:
                    group = self._take()
                    if not group:
                        self._running = False
                        return
                self._run(group)
        except BaseException as exc:
            # Not a commit error (those are outcomes): nobody may wait forever.
            with self._lock:
                stranded = [entry for line in self._pending.values() for entry in line]
                self._running = False
                self._pending.clear()
            for _item, future in stranded:
                _hand_back(future, None, exc)
            raise

    def _take(self) -> list[tuple[In, asyncio.Future[Out]]]:
        group: list[tuple[In, asyncio.Future[Out]]] = []
        size = 0
        progressed = True
        while progressed and self._pending and len(group) < self._max_items:
            progressed = False
            for key in list(self._pending):
                line = self._pending[key]
                item_size = self._size_of(line[0][0])
                if group and size + item_size > self._max_size:
                    continue
                group.append(line.popleft())
                size += item_size
                progressed = True
                del self._pending[key]  # served: to the back of the line
                if line:
                    self._pending[key] = line
                if len(group) >= self._max_items:
                    break
        return group

    def _run(self, group: list[tuple[In, asyncio.Future[Out]]]) -> None:
        try:
            outcomes = self._commit([item for item, _future in group])
        except Exception as exc:
            if len(group) == 1:
                _hand_back(group[0][1], None, exc)
                return
            for one in group:
                self._run([one])
            return
        for (_item, future), outcome in zip(group, outcomes, strict=True):
            _hand_back(future, outcome, None)


def _hand_back(future: asyncio.Future[Any], outcome: Any, error: BaseException | None) -> None:
    """Settle ``future`` on its own loop: requests may come from several loops
    (a synchronous caller runs one per call), and one drain serves them all."""
    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
        future.get_loop().call_soon_threadsafe(_settle, future, outcome, error)


def _settle(future: asyncio.Future[Any], outcome: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the client went away; the commit stands
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(outcome)
