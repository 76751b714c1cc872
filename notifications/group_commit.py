"""Group commit: publish requests that arrive together share one transaction.

Under ASGI every sync request runs in its own thread. Each publishing thread
hands its request to the committer; one of them (the leader) takes every
request waiting at that moment and commits them in one transaction
(``services.notifications_publish_many``), while the others wait for their
outcome. When the leader's own request is done it hands leadership to a
waiting thread, so no request is held hostage by a busy stream.

One commit, one counter upsert, one bulk insert and one pipelined push per
group instead of per request; followers never open a database connection.
A group that fails as a whole is retried one request at a time, so a bad
request cannot fail the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from django.db import connection

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class _Slot(Generic[In, Out]):
    item: In
    size: int
    wake: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    lead: bool = False
    outcome: Out | None = None
    error: BaseException | None = None


class GroupCommitter(Generic[In, Out]):
    def __init__(
        self,
        commit: Callable[[Sequence[In]], Sequence[Out]],
        *,
        size_of: Callable[[In], int],
        max_items: int = 64,
        max_size: int = 10_000,
    ) -> None:
        self._commit = commit
        self._size_of = size_of
        self._max_items = max_items
        self._max_size = max_size
        self._lock = threading.Lock()
        self._pending: list[_Slot[In, Out]] = []
        self._leading = False

    def submit(self, item: In) -> Out:
        if connection.in_atomic_block:
            # The caller's own transaction must not swallow other requests
            # (it may still roll back): commit this one alone, inside it.
            (outcome,) = self._commit([item])
            return outcome
        slot: _Slot[In, Out] = _Slot(item=item, size=self._size_of(item))
        with self._lock:
            self._pending.append(slot)
            if not self._leading:
                self._leading = slot.lead = True
        while not (slot.lead or slot.finished):
            slot.wake.wait()
            slot.wake.clear()
        if slot.lead and not slot.finished:
            self._lead(slot)
        if slot.error is not None:
            raise slot.error
        assert slot.outcome is not None
        return slot.outcome

    def _lead(self, own: _Slot[In, Out]) -> None:
        while True:
            with self._lock:
                if own.finished:
                    # Hand over: the oldest waiter leads next, or nobody.
                    if self._pending:
                        successor = self._pending[0]
                        successor.lead = True
                        successor.wake.set()
                    else:
                        self._leading = False
                    return
                group = self._take()
            self._run(group)

    def _take(self) -> list[_Slot[In, Out]]:
        group: list[_Slot[In, Out]] = []
        size = 0
        while self._pending and len(group) < self._max_items:
            slot = self._pending[0]
            if group and size + slot.size > self._max_size:
                break
            group.append(self._pending.pop(0))
            size += slot.size
        return group

    def _run(self, group: list[_Slot[In, Out]]) -> None:
        try:
            outcomes = self._commit([slot.item for slot in group])
        except Exception as exc:
            if len(group) == 1:
                self._finish(group[0], error=exc)
                return
            for slot in group:
                self._run([slot])
            return
        for slot, outcome in zip(group, outcomes, strict=True):
            self._finish(slot, outcome=outcome)

    @staticmethod
    def _finish(
        slot: _Slot[In, Out], *, outcome: Out | None = None, error: BaseException | None = None
    ) -> None:
        slot.outcome = outcome
        slot.error = error
        slot.finished = True
        slot.wake.set()
