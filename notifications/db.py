"""ORM calls from async code: the one way this service leaves the event loop.

``off_loop(func)`` is channels' ``database_sync_to_async`` (connections past
their age are closed before and after) plus one more step: the thread's
query log is cleared. ``with_fresh_connections(func)`` does the same around
a plain function, for threads that are not started by ``off_loop`` (the
publish writer, notifications/group_commit.py).

Why the query log: with ``DEBUG`` on, Django logs every query of a
connection (up to 9,000 of them) and clears the log only in the thread that
handles a request; the writer and reader threads here never see that signal,
so without this the dev server held every recent SQL string, bodies included
(about 60 MiB per 300 publishes of 21 x 8 KiB, measured in
tests/endurance/test_endurance.py).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, ParamSpec, TypeVar

from channels.db import DatabaseSyncToAsync
from django.db import close_old_connections, reset_queries

P = ParamSpec("P")
R = TypeVar("R")


class _OffLoop(DatabaseSyncToAsync):  # type: ignore[misc]
    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        reset_queries()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            reset_queries()


def off_loop(func: Callable[P, R], *, executor: Executor | None = None) -> Callable[P, Any]:
    """``func`` as a coroutine function run in a worker thread (not thread-sensitive)."""
    return _OffLoop(func, thread_sensitive=False, executor=executor)


def with_fresh_connections(func: Callable[P, R]) -> Callable[P, R]:
    """``func`` between connection and query-log cleanups, as ``off_loop`` runs it."""

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        close_old_connections()
        reset_queries()
        try:
            return func(*args, **kwargs)
        finally:
            close_old_connections()
            reset_queries()

    return run
