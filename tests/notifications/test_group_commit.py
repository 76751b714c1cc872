"""notifications.group_commit: requests waiting on the loop share commits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from notifications.group_commit import AsyncGroupCommitter, LoopGroupCommitter

# --------------------------------------------------------------------------- async


class GatedCommit:
    """A commit whose first group waits until the test opens the gate, so that
    the requests queued meanwhile must share the following groups."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()  # the writer holds the first group

    def __call__(self, items: Sequence[int]) -> list[str]:
        if not self.groups:
            self.entered.set()
            assert self.gate.wait(30)
        self.groups.append(list(items))
        if any(item < 0 for item in items):
            raise ValueError("bad item")
        return [f"ok{item}" for item in items]


def async_committer(commit: GatedCommit, **kwargs: Any) -> AsyncGroupCommitter[int, str]:
    executor = ThreadPoolExecutor(max_workers=1)
    return AsyncGroupCommitter(commit, executor=executor, size_of=lambda _: 1, **kwargs)


async def first_alone_then(
    committer: AsyncGroupCommitter[int, str], commit: GatedCommit, items: list[int]
) -> list[asyncio.Future[str]]:
    """Submit ``items``: the first is in the writer (held at the gate) before the
    others queue, so they wait behind it. Submitted together, a writer thread
    slow to start (a loaded machine) could take them all into its first group."""
    tasks: list[asyncio.Future[str]] = [asyncio.ensure_future(committer.submit(items[0]))]
    assert await asyncio.to_thread(commit.entered.wait, 30), "the writer never took the first"
    tasks += [asyncio.ensure_future(committer.submit(item)) for item in items[1:]]
    async with asyncio.timeout(30):
        while committer.waiting() < len(items) - 1:
            await asyncio.sleep(0.01)
    return tasks


async def submit_all(
    committer: AsyncGroupCommitter[int, str], commit: GatedCommit, items: list[int]
) -> list[str | BaseException]:
    tasks = await first_alone_then(committer, commit, items)
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
    # The futures resolve before the drain loops round and finds nothing left:
    # wait until the one writer thread has finished its drain (FIFO executor).
    await asyncio.get_running_loop().run_in_executor(committer._executor, lambda: None)
    assert not committer._running


async def test_async_group_size_is_bounded() -> None:
    commit = GatedCommit()
    committer = async_committer(commit, max_items=8)
    results = await submit_all(committer, commit, list(range(1, 30)))
    assert all(isinstance(r, str) for r in results)
    assert max(len(group) for group in commit.groups) == 8


async def test_a_flood_of_one_key_does_not_starve_another() -> None:
    """Round robin between keys: key 1 queues 20 requests that each fill a group,
    key 2 one small request behind them; it is committed within two groups, not
    after the whole flood (before: the 21st group)."""
    commit = GatedCommit()
    executor = ThreadPoolExecutor(max_workers=1)
    committer: AsyncGroupCommitter[int, str] = AsyncGroupCommitter(
        commit,
        executor=executor,
        size_of=lambda item: 10_000 if item < 100 else 1,
        key_of=lambda item: "flood" if item < 100 else "small",
        max_size=10_000,
    )
    results = await submit_all(committer, commit, [*range(1, 21), 100])
    assert all(isinstance(r, str) for r in results)
    small_group = next(i for i, group in enumerate(commit.groups) if 100 in group)
    assert small_group <= 2, commit.groups
    flood = [i for group in commit.groups for i in group if i < 100]
    assert flood == list(range(1, 21))  # one key's requests keep their order


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
    first, gone, third = await first_alone_then(committer, commit, [1, 2, 3])
    gone.cancel()
    commit.gate.set()
    assert await asyncio.wait_for(first, 30) == "ok1"
    assert await asyncio.wait_for(third, 30) == "ok3"
    assert [2] in commit.groups or any(2 in group for group in commit.groups)  # still committed


# --------------------------------------------------------------------------- on the loop


class LoopCommit:
    """A coroutine commit on the loop whose first group waits for the test."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def __call__(self, items: Sequence[int]) -> list[str]:
        if not self.groups:
            self.entered.set()
            await self.gate.wait()
        self.groups.append(list(items))
        if any(item < 0 for item in items):
            raise ValueError("bad item") if min(items) > -100 else ConnectionError("no answer")
        return [f"ok{item}" for item in items]


def loop_committer(commit: LoopCommit) -> LoopGroupCommitter[int, str]:
    return LoopGroupCommitter(
        commit,
        size_of=lambda _: 1,
        retry_alone=lambda error: not isinstance(error, ConnectionError),
    )


async def queued_behind_the_first(
    commit: LoopCommit, committer: LoopGroupCommitter[int, str], items: list[int]
) -> list[asyncio.Future[str]]:
    first = asyncio.ensure_future(committer.submit(0))
    await commit.entered.wait()
    rest = [asyncio.ensure_future(committer.submit(item)) for item in items]
    while committer.waiting() < len(items):
        await asyncio.sleep(0)
    return [first, *rest]


async def test_on_the_loop_a_refused_group_is_retried_one_request_at_a_time() -> None:
    commit = LoopCommit()
    committer = loop_committer(commit)
    waiting = await queued_behind_the_first(commit, committer, [1, -2, 3])
    commit.gate.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert outcomes[:2] == ["ok0", "ok1"] and outcomes[3] == "ok3"
    assert isinstance(outcomes[2], ValueError)
    assert commit.groups == [[0], [1, -2, 3], [1], [-2], [3]]


async def test_on_the_loop_a_group_without_an_answer_fails_whole_and_is_not_retried() -> None:
    # It may have committed: sending its requests again could store them twice.
    commit = LoopCommit()
    committer = loop_committer(commit)
    waiting = await queued_behind_the_first(commit, committer, [1, -200, 3])
    commit.gate.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert outcomes[0] == "ok0"
    assert all(isinstance(o, ConnectionError) for o in outcomes[1:])
    assert commit.groups == [[0], [1, -200, 3]]
    assert await committer.submit(4) == "ok4"  # the next group goes on


async def test_on_the_loop_a_cancelled_request_leaves_its_group_committing() -> None:
    commit = LoopCommit()
    committer = loop_committer(commit)
    first, queued = await queued_behind_the_first(commit, committer, [1])
    first.cancel()
    queued.cancel()
    assert committer.busy()
    commit.gate.set()
    await committer.idle()
    assert commit.groups == [[0], [1]]  # both committed, nobody waiting for them
    assert not committer.busy()
