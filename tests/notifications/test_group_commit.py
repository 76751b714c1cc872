"""notifications.group_commit: requests from concurrent threads share commits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from notifications.group_commit import AsyncGroupCommitter, GroupCommitter

THREADS = 12


class Recorder:
    """A commit that blocks its first group until every thread has queued,
    so that the following groups are certain to hold several requests."""

    def __init__(self, queued: threading.Event) -> None:
        self.groups: list[list[int]] = []
        self.queued = queued
        self.lock = threading.Lock()

    def __call__(self, items: Sequence[int]) -> list[str]:
        if not self.groups:
            assert self.queued.wait(30)
        with self.lock:
            self.groups.append(list(items))
        if any(item < 0 for item in items):
            raise ValueError("bad item")
        return [f"ok{item}" for item in items]


def run_threads(
    committer: GroupCommitter[int, str],
    items: list[int],
    queued: threading.Event,
    count_pending: Callable[[], int],
) -> dict[int, str | BaseException]:
    results: dict[int, str | BaseException] = {}

    def work(item: int) -> None:
        try:
            results[item] = committer.submit(item)
        except BaseException as exc:  # recorded for the assertions
            results[item] = exc

    threads = [threading.Thread(target=work, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    # Release the first commit once everyone else is waiting in the queue.
    for _ in range(3000):
        if count_pending() >= len(items) - 1:
            break
        threading.Event().wait(0.01)
    queued.set()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive()
    return results


def test_concurrent_requests_share_groups_and_each_gets_its_own_outcome() -> None:
    queued = threading.Event()
    commit = Recorder(queued)
    committer: GroupCommitter[int, str] = GroupCommitter(commit, size_of=lambda _: 1)
    items = list(range(1, THREADS + 1))
    results = run_threads(committer, items, queued, lambda: len(committer._pending))
    assert results == {item: f"ok{item}" for item in items}
    assert sorted(i for group in commit.groups for i in group) == items  # each once
    assert len(commit.groups) < THREADS  # some requests shared a commit
    assert max(len(group) for group in commit.groups) > 1


def test_a_failing_request_does_not_fail_its_group() -> None:
    queued = threading.Event()
    commit = Recorder(queued)
    committer: GroupCommitter[int, str] = GroupCommitter(commit, size_of=lambda _: 1)
    items = [*range(1, THREADS), -7]
    results = run_threads(committer, items, queued, lambda: len(committer._pending))
    assert isinstance(results[-7], ValueError)
    assert {item: results[item] for item in items if item > 0} == {
        item: f"ok{item}" for item in items if item > 0
    }


def test_groups_respect_the_size_limit() -> None:
    queued = threading.Event()
    commit = Recorder(queued)
    committer: GroupCommitter[int, str] = GroupCommitter(
        commit, size_of=lambda item: item, max_size=10
    )
    results = run_threads(committer, list(range(1, 7)), queued, lambda: len(committer._pending))
    assert all(not isinstance(r, BaseException) for r in results.values())
    assert all(sum(group) <= 10 or len(group) == 1 for group in commit.groups)


@pytest.mark.django_db
def test_inside_a_transaction_a_request_is_committed_alone() -> None:
    calls: list[list[int]] = []

    def commit(items: Sequence[int]) -> list[str]:
        calls.append(list(items))
        return ["done"] * len(items)

    committer: GroupCommitter[int, str] = GroupCommitter(commit, size_of=lambda _: 1)
    assert committer.submit(5) == "done"  # pytest-django's test transaction is open
    assert calls == [[5]]
    assert committer._pending == []


# --------------------------------------------------------------------------- async


class GatedCommit:
    """A commit whose first group waits until the test opens the gate, so that
    the requests queued meanwhile must share the following groups."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.gate = threading.Event()

    def __call__(self, items: Sequence[int]) -> list[str]:
        if not self.groups:
            assert self.gate.wait(30)
        self.groups.append(list(items))
        if any(item < 0 for item in items):
            raise ValueError("bad item")
        return [f"ok{item}" for item in items]


def async_committer(commit: GatedCommit, **kwargs: Any) -> AsyncGroupCommitter[int, str]:
    executor = ThreadPoolExecutor(max_workers=1)
    return AsyncGroupCommitter(commit, executor=executor, size_of=lambda _: 1, **kwargs)


async def submit_all(
    committer: AsyncGroupCommitter[int, str], commit: GatedCommit, items: list[int]
) -> list[str | BaseException]:
    tasks = [asyncio.ensure_future(committer.submit(item)) for item in items]
    while len(committer._pending) < len(items) - 1:  # the first is in the writer
        await asyncio.sleep(0.01)
    commit.gate.set()
    return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


async def test_async_requests_share_groups_and_each_gets_its_own_outcome() -> None:
    commit = GatedCommit()
    committer = async_committer(commit)
    items = list(range(1, 41))
    results = await submit_all(committer, commit, items)
    assert results == [f"ok{item}" for item in items]
    assert [i for group in commit.groups for i in group] == items  # each once, in order
    assert len(commit.groups) == 2  # the first alone, then everyone who queued behind it
    assert not committer._running


async def test_async_group_size_is_bounded() -> None:
    commit = GatedCommit()
    committer = async_committer(commit, max_items=8)
    results = await submit_all(committer, commit, list(range(1, 30)))
    assert all(isinstance(r, str) for r in results)
    assert max(len(group) for group in commit.groups) == 8


async def test_async_failing_request_does_not_fail_its_group() -> None:
    commit = GatedCommit()
    committer = async_committer(commit)
    items = [1, 2, 3, -4, 5, 6]
    results = await submit_all(committer, commit, items)
    assert isinstance(results[3], ValueError)
    assert [r for i, r in enumerate(results) if i != 3] == ["ok1", "ok2", "ok3", "ok5", "ok6"]


async def test_async_writer_failure_reaches_every_waiter_and_the_next_request_works() -> None:
    commit = GatedCommit()
    commit.gate.set()
    sizes = {"broken": True}

    def size_of(item: int) -> int:
        if sizes["broken"]:
            raise RuntimeError("size_of is broken")
        return 1

    committer = AsyncGroupCommitter(
        commit, executor=ThreadPoolExecutor(max_workers=1), size_of=size_of
    )
    results = await asyncio.wait_for(
        asyncio.gather(*(committer.submit(i) for i in range(3)), return_exceptions=True), 30
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    sizes["broken"] = False
    assert await asyncio.wait_for(committer.submit(9), 30) == "ok9"


async def test_async_cancelled_waiter_leaves_the_others_alone() -> None:
    commit = GatedCommit()
    committer = async_committer(commit)
    first = asyncio.ensure_future(committer.submit(1))
    gone = asyncio.ensure_future(committer.submit(2))
    third = asyncio.ensure_future(committer.submit(3))
    while len(committer._pending) < 2:
        await asyncio.sleep(0.01)
    gone.cancel()
    commit.gate.set()
    assert await asyncio.wait_for(first, 30) == "ok1"
    assert await asyncio.wait_for(third, 30) == "ok3"
    assert [2] in commit.groups or any(2 in group for group in commit.groups)  # still committed
