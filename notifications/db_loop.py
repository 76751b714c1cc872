"""PostgreSQL on the event loop itself (psycopg's async connections): the
streams' opening reads, and the plain publish groups' one statement.

A reconnect storm reads each socket's opening (its sequence, unread count
and first replay page) once per handshake. Run in a worker thread
(``db.off_loop``), that read cost about as much CPU as everything else the
handshake does on the loop: the thread hop, Django's connection cleanups and
the GIL handed back and forth (docs/performance.md, "Handshakes, third
round"). Here the statement goes out on a pooled async connection of this
loop's own and the loop waits for the answer like any other socket.

The connections are built from Django's own settings for the database
(``get_connection_params``: host, credentials, TLS options, prepared
statements off as Django keeps them for PgBouncer), with client-side
binding as Django binds. The pool is small (``pool_size``), opened at the
first read of each event loop and closed at shutdown (``close``).

A loop's plain publish groups (notifications/publish_loop.py), one in
flight at a time, keep one connection of their own instead
(``KeptConnection``, server-side binding as the writer thread's
pg_writes): no pool checkout per group.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import psycopg
from django.conf import settings
from django.db import OperationalError, connections
from psycopg import AsyncClientCursor, AsyncConnection, AsyncCursor
from psycopg_pool import AsyncConnectionPool

# Reads on the loop are one short statement each: a few connections serve
# a storm of thousands of handshakes.
LOOP_POOL_MAX = 4
POSTGRESQL = "django.db.backends.postgresql"
# How long a KeptConnection serves before it is reopened: as the writer
# thread's kept connection (notifications/db.py, KEPT_CONNECTION_AGE).
KEPT_CONNECTION_AGE = 60.0


class ConnectionLost(OperationalError):
    """No answer from the server for a statement: its connection broke while
    it ran (whether it committed is unknown, so it must not be sent again as
    if it had not), or none could be opened.
    Django's ``OperationalError``: the API answers 503 (api/errors.py)."""


_pools: dict[asyncio.AbstractEventLoop, AsyncConnectionPool[AsyncConnection[Any]]] = {}


# Settings only, never ``connections["default"]`` here: on the event loop
# that makes a DatabaseWrapper per task (asgiref's Local is per context),
# which the socket's task would then hold for its whole life.


def available() -> bool:
    """Whether the database is PostgreSQL (SQLite reads stay in threads)."""
    return bool(settings.DATABASES["default"]["ENGINE"] == POSTGRESQL)


def _pool_options() -> dict[str, Any]:
    options = settings.DATABASES["default"].get("OPTIONS", {}).get("pool") or {}
    return options if isinstance(options, dict) else {}


def pool_size() -> tuple[int, int]:
    """(min, max) connections of a loop's pool: at most a quarter of
    ``DATABASE_POOL_MAX`` and ``LOOP_POOL_MAX``, at least one."""
    configured = int(_pool_options().get("max_size", 16))
    return 1, max(1, min(LOOP_POOL_MAX, configured // 4))


def _connect_kwargs() -> dict[str, Any]:
    # A wrapper of its own (not stored in ``connections``), for its settings.
    wrapper = connections.create_connection("default")
    params: dict[str, Any] = wrapper.get_connection_params()
    params.pop("cursor_factory", None)  # Django's sync cursor class
    params["cursor_factory"] = AsyncClientCursor
    params["autocommit"] = True
    return params


def _timeout() -> float:
    return float(_pool_options().get("timeout", 10.0))


async def _pool() -> AsyncConnectionPool[AsyncConnection[Any]]:
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None:
        smallest, largest = pool_size()
        for old in [lp for lp in _pools if lp.is_closed()]:
            del _pools[old]
        pool = _pools[loop] = AsyncConnectionPool(
            kwargs=_connect_kwargs(),
            min_size=smallest,
            max_size=largest,
            timeout=_timeout(),
            # As Django's own pool: a connection checked before use only
            # with CONN_HEALTH_CHECKS.
            check=(
                AsyncConnectionPool.check_connection
                if settings.DATABASES["default"].get("CONN_HEALTH_CHECKS")
                else None
            ),
            open=False,
            name="notify-loop-reads",
        )
    if pool.closed:
        # Also for the reads that arrive while the first one opens it: a
        # second open() waits for the first and returns.
        await pool.open()
    return pool


async def fetch_all(sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (``%s`` placeholders, values in ``params``)."""
    pool = await _pool()
    async with pool.connection() as conn, conn.cursor() as cursor:
        await cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = await cursor.fetchall()
    return rows


class KeptConnection:
    """One connection of this loop's own, kept between statements, for a
    caller with one statement in flight at a time (the loop's publish
    groups): no pool checkout and return per statement, as the writer
    thread keeps its connection (notifications/db.py). Reopened after it
    broke and after ``KEPT_CONNECTION_AGE`` seconds (to follow a replaced
    server or a PgBouncer's pool). Statements are bound on the server (a
    plain psycopg cursor, as notifications/pg_writes.py binds in the writer
    thread) and unnamed, so PgBouncer in transaction mode takes them; the
    connection is in autocommit: a statement commits by itself."""

    def __init__(self) -> None:
        self._conn: AsyncConnection[Any] | None = None
        self._opened = 0.0

    async def fetch_all(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` (``%(name)s`` placeholders). Raises psycopg's
        error if the server refused the statement, ``ConnectionLost`` if it
        never answered or no connection could be opened."""
        conn = await self._connection()
        try:
            async with AsyncCursor(conn) as cursor:
                await cursor.execute(sql, params, prepare=False)
                rows: list[tuple[Any, ...]] = await cursor.fetchall()
        except psycopg.Error as exc:
            if conn.broken:  # the next statement opens a new connection
                await self.close()
                raise ConnectionLost(f"connection lost: {type(exc).__name__}") from exc
            raise
        return rows

    async def _connection(self) -> AsyncConnection[Any]:
        conn = self._conn
        if conn is not None and (
            conn.closed or time.monotonic() > self._opened + KEPT_CONNECTION_AGE
        ):
            await self.close()
            conn = None
        if conn is None:
            try:
                conn = await AsyncConnection.connect(**_connect_kwargs())
            except psycopg.OperationalError as exc:
                raise ConnectionLost(f"cannot connect: {type(exc).__name__}") from exc
            self._conn, self._opened = conn, time.monotonic()
        return conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


async def close() -> None:
    """Close this loop's pool (the ASGI shutdown)."""
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.close()
