"""``notify_wire_page``: replays, pages and single notifications read
through a PL/pgSQL function on PostgreSQL, so that each server connection
plans the statement once and keeps the plan (notifications/wire_sql.py).

At 20 M rows the inline statement spent 1.0-1.7 ms of every execution in
planning (the 17-40 recipient and event partitions), as Django binds
parameters client-side and so prepares nothing; PL/pgSQL caches the plan of
each statement in the function per connection, which also holds behind
PgBouncer in transaction mode (no protocol-level prepared statements).
docs/scaling.md, "The replay at 20 M rows".

The function only reads: creating it takes no lock on any table, so it is
safe on a large live table (docs/migrations.md, "0007"). The text is frozen
here; the service's inline copy of the same statement
(``wire_sql.statement``, used by the openings' aggregate and the plan
benchmarks) is compared with it by tests/notifications/test_wire_function.py.
SQLite gets nothing (its reads stay in Python).
"""

from typing import Any

from django.db import migrations

# The page's rows and their events, as in wire_sql._FROM; {where} and
# {order} per branch. ``#variable_conflict use_column``: the result
# columns' names are also PL/pgSQL variables, and the names in the
# statements mean the tables' columns.
_QUERY = """
        SELECT r.seq, e.type::text, e.title::text, e.body, e.data::text, e.source::text,
            to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            to_char(r.read_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        FROM (SELECT seq, event_ref, day, read_at FROM notify_recipient
            WHERE user_key = (SELECT key FROM notify_user_sequence WHERE user_id = p_user)
            {where} ORDER BY seq {order} LIMIT p_limit) r
        CROSS JOIN LATERAL (SELECT type, title, body, data, source, created_at
            FROM notify_event e WHERE e.id = r.event_ref
            AND e.created_at >= (r.day::timestamp AT TIME ZONE 'UTC')
            AND e.created_at < ((r.day + 1)::timestamp AT TIME ZONE 'UTC') LIMIT 1) e
        ORDER BY r.seq {order};"""

# Ascending: after < seq <= up_to (a replay; a single id is after = id - 1,
# up_to = id). Descending: seq < before, optionally unread only (a page of
# the list; the literal ``read_at IS NULL`` lets the plan use the unread
# partial index). Each RETURN QUERY has a plan of its own.
CREATE = (
    """
CREATE OR REPLACE FUNCTION notify_wire_page(
    p_user text, p_after bigint, p_up_to bigint, p_before bigint,
    p_unread boolean, p_descending boolean, p_limit integer)
RETURNS TABLE (seq bigint, type text, title text, body text, data text,
    source text, created_at text, read_at text)
LANGUAGE plpgsql STABLE AS $function$
#variable_conflict use_column
BEGIN
    IF NOT p_descending THEN
        RETURN QUERY"""
    + _QUERY.format(where="AND seq > p_after AND seq <= p_up_to", order="ASC")
    + """
    ELSIF p_unread THEN
        RETURN QUERY"""
    + _QUERY.format(where="AND seq < p_before AND read_at IS NULL", order="DESC")
    + """
    ELSE
        RETURN QUERY"""
    + _QUERY.format(where="AND seq < p_before", order="DESC")
    + """
    END IF;
END
$function$
"""
)
DROP = (
    "DROP FUNCTION IF EXISTS "
    "notify_wire_page(text, bigint, bigint, bigint, boolean, boolean, integer)"
)


def forwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0006_compact_recipients")]

    operations = [migrations.RunPython(forwards, backwards)]
