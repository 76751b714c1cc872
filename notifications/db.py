"""ORM calls from async code: the one way this service leaves the event loop.

``with_fresh_connections(func)`` closes connections past their age before
and after ``func`` (what channels' ``database_sync_to_async`` does) and also
clears the thread's query log. ``off_loop(func)`` runs that in a worker
thread. The publish writer (notifications/group_commit.py), alone in its
thread, keeps its connection between groups instead
(``with_kept_connection``).

Why the query log: with ``DEBUG`` on, Django logs every query of a
connection (up to 9,000 of them) and clears the log only in the thread that
handles a request; the writer and reader threads here never see that signal,
so without this the dev server held every recent SQL string, bodies included
(about 60 MiB per 300 publishes of 21 x 8 KiB, measured in
tests/endurance/test_endurance.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections, reset_queries

P = ParamSpec("P")
R = TypeVar("R")

# How long a kept connection (with_kept_connection) outlives Django's
# CONN_MAX_AGE: long enough to serve thousands of groups, short enough that
# the pool's own lifetime and a server's replacement are followed.
KEPT_CONNECTION_AGE = 60.0


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


def off_loop(func: Callable[P, R]) -> Callable[P, Any]:
    """``func`` as a coroutine function run in a worker thread (not thread-sensitive),
    between the same cleanups as ``with_fresh_connections``."""
    return sync_to_async(with_fresh_connections(func), thread_sensitive=False)


def with_kept_connection(func: Callable[P, R]) -> Callable[P, R]:
    """``with_fresh_connections`` for a thread that runs nothing else (the
    publish writer): the connection is kept between calls instead of going back
    to the pool after each (a checkout and a return per commit, measured in
    docs/performance.md), and dropped after an error, a changed autocommit, or
    ``KEPT_CONNECTION_AGE`` seconds past Django's own age."""

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        _drop_spent()
        reset_queries()
        try:
            return func(*args, **kwargs)
        finally:
            reset_queries()
            _drop_spent()

    return run


def _drop_spent() -> None:
    for conn in connections.all(initialized_only=True):
        if conn.connection is None:
            continue
        aged = conn.close_at is not None and time.monotonic() >= conn.close_at + KEPT_CONNECTION_AGE
        if (
            aged
            or conn.errors_occurred
            or conn.get_autocommit() != conn.settings_dict["AUTOCOMMIT"]
        ):
            conn.close()
