"""notifications.group_commit: requests from concurrent threads share commits."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest

from notifications.group_commit import GroupCommitter

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
