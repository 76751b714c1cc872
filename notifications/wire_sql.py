"""PostgreSQL: stored notifications read as wire JSON built by the server.

One statement per page: the user's rows (the ``(user_key, seq)`` index,
in id order; the user's key from ``notify_user_sequence``), each row's
event by ``(id, created_at)`` in a ``LATERAL`` subquery, and ``json_agg``
of the wire shape (rendering.py) with the timestamps already formatted.
Python then parses one JSON text (orjson) instead of converting and
re-formatting every value: a 500-row replay spent most of its time there
(docs/scaling.md, "Replays and pages in one statement").

The ``LATERAL`` subquery (``LIMIT 1`` keeps the planner from flattening it
into a join) is a nested loop whose inner ``Append`` over the event
partitions is pruned at run time to the row's ``day`` (its event's UTC
day, bounds written as UTC midnights so that the session's time zone does
not matter): each row costs one index probe in one partition, where a
plain join had the planner price every day's partition per row and pick a
scan of all events.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.db import connection

from notifications.rendering import NotificationDict

# The wire timestamp (rendering.timestamp): UTC, microseconds, "Z".
_TS = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

_SQL = (
    "SELECT coalesce(json_agg(json_build_object("  # noqa: S608 - fixed text only
    "'id', r.seq::text, 'type', e.type, 'title', e.title, 'body', e.body, "
    "'data', e.data, 'source', e.source, "
    f"'created_at', {_TS.format('e.created_at')}, 'read_at', {_TS.format('r.read_at')}"
    ") ORDER BY r.seq {order}), '[]')::text "
    "FROM (SELECT seq, event_ref, day, read_at FROM notify_recipient "
    "WHERE user_key = (SELECT key FROM notify_user_sequence WHERE user_id = {user}) "
    "{where} ORDER BY seq {order} LIMIT {limit}) r "
    "CROSS JOIN LATERAL (SELECT type, title, body, data, source, created_at "
    "FROM notify_event e WHERE e.id = r.event_ref "
    "AND e.created_at >= (r.day::timestamp AT TIME ZONE 'UTC') "
    "AND e.created_at < ((r.day + 1)::timestamp AT TIME ZONE 'UTC') LIMIT 1) e"
)


def statement(*, where: str, descending: bool) -> str:
    """The SQL for ``wire_page`` (only fixed text from the selectors goes
    in; values are parameters)."""
    return _SQL.format(order="DESC" if descending else "ASC", where=where, user="%s", limit="%s")


def correlated(*, user: str, where: str, limit: str) -> str:
    """The ascending page as a subquery of a statement that names the user,
    the conditions and the limit in its own columns (``user``, ``limit``:
    fixed SQL expressions, no values)."""
    return _SQL.format(order="ASC", where=where, user=user, limit=limit)


def wire_page(
    *, user_id: str, where: str, params: list[Any], descending: bool, limit: int
) -> list[NotificationDict]:
    """The user's rows matching ``where`` (fixed SQL conditions on ``seq``
    and ``read_at`` with ``%s`` placeholders, ``AND``-prefixed; values in
    ``params``), ordered by id, at most ``limit``, as wire dicts."""
    with connection.cursor() as cursor:
        cursor.execute(statement(where=where, descending=descending), [user_id, *params, limit])
        row = cursor.fetchone()
    found: list[NotificationDict] = orjson.loads(row[0]) if row else []
    return found
