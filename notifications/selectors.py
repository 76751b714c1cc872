"""Reads. Sync functions; async callers wrap them (database_sync_to_async)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model, QuerySet

from notifications import recipients_pg, wire_sql
from notifications.models import Notification, NotificationEvent, UserSequence
from notifications.rendering import NotificationDict, wire_fields, with_id


@dataclass(frozen=True)
class SequenceState:
    last_id: int  # highest committed id of the user (0: none yet)
    purged_through: int  # ids at or below this may have been purged


def sequence_state(*, user_id: str) -> SequenceState:
    """The user's counter row, in SQL of its own: the queryset's building
    and compiling cost about ten times the statement's 0.1 ms of server
    time (docs/scaling.md, "The replay at 20 M rows")."""
    with connection.cursor() as cursor:
        cursor.execute(_sequence_sql(connection.vendor), [user_id])
        found = cursor.fetchone()
    if found is None:
        return SequenceState(last_id=0, purged_through=0)
    return SequenceState(last_id=found[0], purged_through=found[1])


@cache
def _sequence_sql(vendor: str) -> str:
    """``sequence_state``'s statement, with the model's names quoted for
    ``vendor`` (cached per vendor)."""
    m = UserSequence._meta
    return (
        f"SELECT {_q(m, 'last_id')}, {_q(m, 'purged_through')} "  # noqa: S608 - fixed names
        f"FROM {_table(m)} WHERE {_q(m, 'user_id')} = %s"
    )


def notifications_after(
    *, user_id: str, after: int, up_to: int | None = None, limit: int = 500
) -> list[NotificationDict]:
    """Stored notifications with ``after < id <= up_to``, oldest first.

    Every socket back after a deploy reads its replay page here. On
    PostgreSQL one call of the migration's function (0007) returns the
    page's rows with their wire timestamps (wire_sql); elsewhere in SQL of its own
    (``_select``), as building and compiling querysets cost more CPU than
    the statements."""
    if connection.vendor == "postgresql":
        return wire_sql.wire_page(
            user_id=user_id, after=after, up_to=up_to, descending=False, limit=limit
        )
    where, params = "AND seq > %s", [after]
    if up_to is not None:
        where += " AND seq <= %s"
        params.append(up_to)
    n = Notification._meta
    sql = f"{_q(n, 'user_id')} = %s {where} ORDER BY {_q(n, 'seq')} LIMIT %s"
    return _wire(_select(Notification, _ROW_FIELDS, sql, [user_id, *params, limit]))


@dataclass(frozen=True)
class Page:
    results: list[NotificationDict]
    next_before: int | None  # cursor for the next page, None on the last


def notifications_page(
    *, user_id: str, unread: bool = False, limit: int = 50, before: int | None = None
) -> Page:
    """Newest first; ``before`` is the id the next page starts below."""
    if connection.vendor == "postgresql":
        rows = wire_sql.wire_page(
            user_id=user_id, before=before, unread=unread, descending=True, limit=limit + 1
        )
    else:
        qs = _rows().filter(user_id=user_id)
        if unread:
            qs = qs.filter(read_at__isnull=True)
        if before is not None:
            qs = qs.filter(seq__lt=before)
        rows = _dicts(qs.order_by("-seq")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(results=rows, next_before=int(rows[-1]["id"]) if more and rows else None)


def notification_get(*, user_id: str, seq: int) -> NotificationDict | None:
    if connection.vendor == "postgresql":
        found = wire_sql.wire_page(
            user_id=user_id, after=seq - 1, up_to=seq, descending=False, limit=1
        )
        return found[0] if found else None
    found = _dicts(_rows().filter(user_id=user_id, seq=seq)[:1])
    return found[0] if found else None


def unread_count(*, user_id: str) -> int:
    if connection.vendor == "postgresql":
        return recipients_pg.unread_count(user_id)
    return Notification.objects.filter(user_id=user_id, read_at__isnull=True).count()


def _rows() -> QuerySet[Notification]:
    return Notification.objects.all()


_ROW_FIELDS = ("seq", "event", "created_at", "read_at")
_EVENT_FIELDS = ("id", "type", "title", "body", "data", "source")


def _dicts(rows: QuerySet[Notification]) -> list[NotificationDict]:
    """Wire dicts for the selected recipient rows (``_wire``)."""
    return _wire(list(rows.values_list("seq", "event_id", "created_at", "read_at")))


def _wire(found: list[tuple[Any, ...]]) -> list[NotificationDict]:
    """Wire dicts for (seq, event ref, created_at, read_at) recipient rows
    (SQLite's path; PostgreSQL reads through wire_sql): the rows, then their
    events in a second query by (id, created_at), one arm per day of the
    rows. No model instances: a 500-row replay spent most of its time
    building them."""
    if not found:
        return []
    events = {pk: content for pk, *content in _events(found)}
    result: list[NotificationDict] = []
    for seq, ref, created, read in found:
        type_, title, body, data, source = events[int(ref)]
        fields = wire_fields(
            type=type_,
            title=title,
            body=body,
            data=data,
            source=source,
            created_at=created,
            read_at=read,
        )
        result.append(with_id(seq, fields))
    return result


def _events(found: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The events of (seq, event_ref, created_at, read_at) rows, one UNION
    ALL arm per UTC day, so each arm looks up its ids in one partition."""
    by_day: dict[date, set[int]] = {}
    for _seq, ref, created, _read in found:
        by_day.setdefault(created.astimezone(UTC).date(), set()).add(int(ref))
    e = NotificationEvent._meta
    adapt = connection.ops.adapt_datetimefield_value
    arms: list[str] = []
    params: list[Any] = []
    for day, refs in sorted(by_day.items()):
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        arms.append(
            f"{_q(e, 'id')} IN ({', '.join(['%s'] * len(refs))}) "
            f"AND {_q(e, 'created_at')} >= %s AND {_q(e, 'created_at')} < %s"
        )
        params += [*sorted(refs), adapt(start), adapt(start + timedelta(days=1))]
    return _select(NotificationEvent, _EVENT_FIELDS, arms, params)


def _select(
    model: type[Model], fields: tuple[str, ...], where: str | list[str], params: list[Any]
) -> list[tuple[Any, ...]]:
    """``SELECT fields FROM model's table WHERE ...`` (one arm per ``where``
    of a list, joined by UNION ALL), each value converted as the ORM does
    (the backend's and the field's converters: text to aware datetimes on
    SQLite, JSON text to objects)."""
    meta = model._meta
    # Only model metadata and placeholders go into the text; values are params.
    head = f"SELECT {', '.join(_q(meta, f) for f in fields)} FROM {_table(meta)} WHERE "  # noqa: S608
    arms = [where] if isinstance(where, str) else where
    sql = " UNION ALL ".join(head + arm for arm in arms)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    converters = _converters(connection.vendor, model, fields)
    if not any(converters):
        return [tuple(row) for row in rows]
    return [
        tuple(_convert(value, column) for value, column in zip(row, converters, strict=True))
        for row in rows
    ]


def _convert(value: Any, column: list[tuple[Any, Any]]) -> Any:
    for converter, expression in column:
        value = converter(value, expression, connection)
    return value


@cache
def _converters(vendor: str, model: type[Model], fields: tuple[str, ...]) -> list[list[Any]]:
    """Per field, the (converter, column) pairs the ORM's compiler applies to
    its values on ``vendor`` (cached: they depend on the field and backend,
    and read settings, never a connection's session, so any thread may use
    them)."""
    meta = model._meta
    result: list[list[Any]] = []
    for name in fields:
        field = meta.get_field(name)
        column = field.get_col(meta.db_table)  # type: ignore[union-attr]
        found = connection.ops.get_db_converters(column) + field.get_db_converters(connection)  # type: ignore[union-attr]
        result.append([(converter, column) for converter in found])
    return result


def _q(meta: Any, field: str) -> str:
    return connection.ops.quote_name(meta.get_field(field).column)


def _table(meta: Any) -> str:
    return connection.ops.quote_name(meta.db_table)


@dataclass(frozen=True)
class StreamStart:
    sequence: SequenceState
    replay: list[NotificationDict]  # the first page after ``after`` (empty without since)
    unread: int


def stream_start(*, user_id: str, since: int | None, limit: int = 500) -> StreamStart:
    """What a new stream reads before ``ready``, in one call (one thread hop
    and one pooled connection per handshake instead of three): the user's
    sequence and unread count in one statement, then the first replay page
    after ``min(since, last_id)`` when ``since`` is given."""
    sequence, unread = _opening(user_id)
    replay: list[NotificationDict] = []
    if since is not None and sequence.last_id > since:
        replay = notifications_after(user_id=user_id, after=since, limit=limit)
    return StreamStart(sequence, replay, unread)


def _opening(user_id: str) -> tuple[SequenceState, int]:
    """``sequence_state`` and ``unread_count`` in one round trip, in SQL of
    its own: a reconnect storm runs this once per socket, and building and
    compiling the two querysets cost about four times the CPU of the
    statement itself (docs/performance.md, "Handshakes")."""
    with connection.cursor() as cursor:
        params = [user_id] if connection.vendor == "postgresql" else [user_id, user_id]
        cursor.execute(_opening_sql(connection.vendor), params)
        last_id, purged_through, unread = cursor.fetchone()
    return SequenceState(last_id=last_id or 0, purged_through=purged_through or 0), int(unread)


@cache
def _opening_sql(vendor: str) -> str:
    """The statement, with the models' table and column names (quoted for
    ``vendor``; cached per vendor, as the names are fixed). PostgreSQL's
    rows are the user key's (recipients_pg)."""
    if vendor == "postgresql":
        return recipients_pg.OPENING
    seq, rows = UserSequence._meta, Notification._meta
    return (
        f"SELECT s.{_q(seq, 'last_id')}, s.{_q(seq, 'purged_through')}, "  # noqa: S608
        f"(SELECT COUNT(*) FROM {_table(rows)} r WHERE r.{_q(rows, 'user_id')} = %s "
        f"AND r.{_q(rows, 'read_at')} IS NULL) "
        f"FROM (SELECT 1) o LEFT JOIN {_table(seq)} s ON s.{_q(seq, 'user_id')} = %s"
    )
