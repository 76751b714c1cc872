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

``LoopGroupCommitter`` forms groups the same way and commits each with a
coroutine on the requests' own event loop (PostgreSQL's plain groups,
notifications/publish_loop.py): no thread, one group in flight at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from concurrent.futures import Executor
from typing import Any, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class _Lines(Generic[In, Out]):
    """The requests waiting: one line per key, taken in fair groups."""

    def __init__(
        self,
        size_of: Callable[[In], int],
        key_of: Callable[[In], Hashable],
        max_items: int,
        max_size: int,
    ) -> None:
        self._size_of = size_of
        self._key_of = key_of
        self._max_items = max_items
        self._max_size = max_size
        # One line per key; dict order is the round-robin order.
        self._pending: dict[Hashable, deque[tuple[In, asyncio.Future[Out]]]] = {}

    def add(self, item: In, future: asyncio.Future[Out]) -> None:
        line = self._pending.get(self._key_of(item))
        if line is None:
            line = self._pending[self._key_of(item)] = deque()
        line.append((item, future))

    def waiting(self) -> int:
        return sum(len(line) for line in self._pending.values())

    def strand(self) -> list[tuple[In, asyncio.Future[Out]]]:
        """Every request still waiting, taken out."""
        stranded = [entry for line in self._pending.values() for entry in line]
        self._pending.clear()
        return stranded

    def take(self) -> list[tuple[In, asyncio.Future[Out]]]:
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
        self._lines: _Lines[In, Out] = _Lines(size_of, key_of, max_items, max_size)
        self._lock = threading.Lock()
        self._running = False

    async def submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Out] = loop.create_future()
        with self._lock:
            self._lines.add(item, future)
            start, self._running = not self._running, True
        if start:
            loop.run_in_executor(self._executor, self._drain)
        return await future

    def waiting(self) -> int:
        """Requests queued and not yet taken into a group."""
        with self._lock:
            return self._lines.waiting()

    def _drain(self) -> None:
        try:
            while True:
                with self._lock:
                    group = self._lines.take()
                    if not group:
                        self._running = False
                        return
                self._run(group)
        except BaseException as exc:
            # Not a commit error (those are outcomes): nobody may wait forever.
            with self._lock:
                stranded = self._lines.strand()
                self._running = False
            for _item, future in stranded:
                _hand_back(future, None, exc)
            raise

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


class LoopGroupCommitter(Generic[In, Out]):
    """``AsyncGroupCommitter``'s groups, each committed by ``commit``, a
    coroutine, on the event loop the requests wait on (one committer per
    loop). One group is in flight at a time: the next is formed from what
    queued meanwhile, so a user's ids reach the pushes in commit order. A
    group that fails as a whole is retried one request at a time, unless
    ``retry_alone`` says no for its error (one whose outcome is unknown: the
    whole group gets it). The commit is a task of its own: a request that
    goes away (cancelled) leaves its group committing."""

    def __init__(
        self,
        commit: Callable[[Sequence[In]], Awaitable[Sequence[Out]]],
        *,
        size_of: Callable[[In], int],
        key_of: Callable[[In], Hashable] = lambda _item: None,
        max_items: int = 256,
        max_size: int = 10_000,
        retry_alone: Callable[[Exception], bool] = lambda _error: True,
    ) -> None:
        self._commit = commit
        self._retry_alone = retry_alone
        self._lines: _Lines[In, Out] = _Lines(size_of, key_of, max_items, max_size)
        self._drain_task: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._lines.add(item, future)
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain())
        return await future

    def waiting(self) -> int:
        """Requests queued and not yet taken into a group."""
        return self._lines.waiting()

    def busy(self) -> bool:
        """Whether a group is in flight or waiting."""
        return self._drain_task is not None

    async def idle(self) -> None:
        """Return once no group is in flight or waiting (a shutdown's wait)."""
        while self._drain_task is not None:
            await asyncio.wait((self._drain_task,))

    async def _drain(self) -> None:
        try:
            while group := self._lines.take():
                await self._run(group)
        except BaseException as exc:
            # Not a commit error (those are outcomes; this is the loop
            # shutting down): nobody may wait forever.
            for _item, future in self._lines.strand():
                _settle(future, None, exc)
            raise
        finally:
            self._drain_task = None

    async def _run(self, group: list[tuple[In, asyncio.Future[Out]]]) -> None:
        try:
            outcomes = await self._commit([item for item, _future in group])
        except Exception as exc:
            if len(group) == 1 or not self._retry_alone(exc):
                for _item, future in group:
                    _settle(future, None, exc)
                return
            for one in group:
                await self._run([one])
            return
        for (_item, future), outcome in zip(group, outcomes, strict=True):
            _settle(future, outcome, None)


def _hand_back(future: asyncio.Future[Any], outcome: Any, error: BaseException | None) -> None:
    """Settle ``future`` on its own loop: requests may come from several loops
    (a synchronous caller runs one per call), and one drain serves them all."""
    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
        future.get_loop().call_soon_threadsafe(_settle, future, outcome, error)


def _settle(future: asyncio.Future[Any], outcome: Any, error: BaseException | None) -> None:
    if future.done():  # the client went away (cancelled); the commit stands
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(outcome)
