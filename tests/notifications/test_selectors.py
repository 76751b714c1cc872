"""notifications.selectors: reads, against a real database."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest

from notifications import db_loop, openings, selectors, services
from notifications.models import UserSequence
from notifications.rendering import timestamp, wire_fields
from tests.support import rows as stored_rows

pytestmark = pytest.mark.django_db(transaction=True)


def seed(user: str, count: int) -> None:
    for _ in range(count):
        services.notifications_publish(source="shop", recipients=[user], type="t")


def ids(items: list[dict[str, object]]) -> list[int]:
    return [int(str(item["id"])) for item in items]


def test_sequence_state_of_unknown_user() -> None:
    assert selectors.sequence_state(user_id="ghost") == selectors.SequenceState(0, 0)


def test_sequence_state_follows_publishes_and_purges() -> None:
    seed("a", 3)
    assert selectors.sequence_state(user_id="a") == selectors.SequenceState(3, 0)
    UserSequence.objects.filter(user_id="a").update(purged_through=2)
    assert selectors.sequence_state(user_id="a") == selectors.SequenceState(3, 2)


def test_notifications_after_oldest_first() -> None:
    seed("a", 6)
    seed("b", 2)
    assert ids(selectors.notifications_after(user_id="a", after=0)) == [1, 2, 3, 4, 5, 6]
    assert ids(selectors.notifications_after(user_id="a", after=4)) == [5, 6]
    assert ids(selectors.notifications_after(user_id="a", after=6)) == []
    assert ids(selectors.notifications_after(user_id="a", after=1, up_to=3)) == [2, 3]
    assert ids(selectors.notifications_after(user_id="a", after=0, limit=2)) == [1, 2]
    assert ids(selectors.notifications_after(user_id="b", after=0)) == [1, 2]


def test_notifications_page_newest_first_with_cursor() -> None:
    seed("a", 5)
    first = selectors.notifications_page(user_id="a", limit=2)
    assert ids(first.results) == [5, 4]
    assert first.next_before == 4
    second = selectors.notifications_page(user_id="a", limit=2, before=first.next_before)
    assert ids(second.results) == [3, 2]
    third = selectors.notifications_page(user_id="a", limit=2, before=second.next_before)
    assert ids(third.results) == [1]
    assert third.next_before is None


def test_notifications_page_exact_fit_has_no_next() -> None:
    seed("a", 4)
    page = selectors.notifications_page(user_id="a", limit=4)
    assert ids(page.results) == [4, 3, 2, 1]
    assert page.next_before is None


def test_notifications_page_unread_only() -> None:
    seed("a", 5)
    services.notifications_mark_read(user_id="a", ids=[5, 3])
    page = selectors.notifications_page(user_id="a", unread=True, limit=2)
    assert ids(page.results) == [4, 2]
    rest = selectors.notifications_page(user_id="a", unread=True, limit=2, before=page.next_before)
    assert ids(rest.results) == [1]
    assert rest.next_before is None


def test_notification_get_is_per_user() -> None:
    seed("a", 1)
    seed("b", 2)
    assert selectors.notification_get(user_id="a", seq=1) is not None
    assert selectors.notification_get(user_id="a", seq=2) is None
    found = selectors.notification_get(user_id="b", seq=2)
    assert found is not None and found["id"] == "2"


def test_unread_count() -> None:
    assert selectors.unread_count(user_id="a") == 0
    seed("a", 3)
    seed("b", 1)
    services.notifications_mark_read(user_id="a", ids=[2])
    assert selectors.unread_count(user_id="a") == 2
    assert selectors.unread_count(user_id="b") == 1


def test_rendered_shape() -> None:
    services.notifications_publish(
        source="billing", recipients=["a"], type="invoice.due", title="T", body="B", data={"n": 1}
    )
    item = selectors.notification_get(user_id="a", seq=1)
    assert item is not None
    assert item == {
        "id": "1",
        "type": "invoice.due",
        "title": "T",
        "body": "B",
        "data": {"n": 1},
        "source": "billing",
        "created_at": item["created_at"],
        "read_at": None,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", str(item["created_at"]))


def test_timestamp_is_utc_with_z() -> None:
    assert timestamp(None) is None
    value = datetime(2026, 11, 23, 20, 1, 2, 123456, tzinfo=UTC)
    assert timestamp(value) == "2026-11-23T20:01:02.123456Z"


def test_stream_start_reads_sequence_first_page_and_unread_together() -> None:
    seed("a", 6)
    seed("b", 2)
    stored_rows.set_read_at("a", [1, 2], datetime.now(UTC))
    opening = selectors.stream_start(user_id="a", since=1, limit=3)
    assert opening.sequence == selectors.SequenceState(6, 0)
    assert ids(opening.replay) == [2, 3, 4]  # the first page; the engine reads on
    assert opening.unread == 4
    # No since: nothing replayed. A since at or beyond the last id: nothing either.
    assert selectors.stream_start(user_id="a", since=None).replay == []
    assert selectors.stream_start(user_id="a", since=6).replay == []
    assert selectors.stream_start(user_id="a", since=99).replay == []
    assert selectors.stream_start(user_id="ghost", since=0) == selectors.StreamStart(
        selectors.SequenceState(0, 0), [], 0
    )


def test_stream_start_reads_what_sequence_state_and_unread_count_read() -> None:
    # The opening's own statement (one round trip, no querysets) answers as
    # the two selectors do: a purge's mark, other users' rows and read rows
    # left out, a user of ours whose id looks like SQL taken as a value.
    odd = "o'brien\"; --"
    for user, count in (("a", 4), ("b", 3), (odd, 2)):
        seed(user, count)
    UserSequence.objects.filter(user_id="a").update(purged_through=2)
    stored_rows.set_read_at("a", [4], datetime.now(UTC))
    for user in ("a", "b", odd, "ghost"):
        opening = selectors.stream_start(user_id=user, since=None)
        assert opening.sequence == selectors.sequence_state(user_id=user), user
        assert opening.unread == selectors.unread_count(user_id=user), user
    assert selectors.stream_start(user_id="a", since=None).sequence == selectors.SequenceState(4, 2)
    assert selectors.stream_start(user_id="a", since=None).unread == 3


def test_stream_start_on_the_loop_answers_as_stream_start() -> None:
    # The engine's read (stream_start_async: on PostgreSQL one statement on
    # the event loop, elsewhere stream_start in a thread) reads what the
    # thread's two statements read, for every kind of since.
    odd, wide = "o'brien\"; --", "ünï \\ 😀 {a,b}"  # ids are values in the JSON batch
    for user, count in (("a", 6), ("b", 3), (odd, 2), (wide, 4)):
        seed(user, count)
    UserSequence.objects.filter(user_id="a").update(purged_through=1)
    stored_rows.set_read_at("a", [3, 5], datetime.now(UTC))
    cases = [(u, s) for u in ("a", "b", odd, wide, "ghost") for s in (None, 0, 1, 4, 6, 99)]

    async def on_the_loop() -> tuple[list[selectors.StreamStart], list[selectors.StreamStart]]:
        try:
            one_by_one = [
                await openings.stream_start_async(user_id=u, since=s, limit=3) for u, s in cases
            ]
            # Asked for together: read together (one statement), each its own answer.
            together = await asyncio.gather(
                *(openings.stream_start_async(user_id=u, since=s, limit=3) for u, s in cases)
            )
            return one_by_one, list(together)
        finally:
            await db_loop.close()

    found, together = asyncio.run(on_the_loop())
    assert together == found
    for (user, since), opening in zip(cases, found, strict=True):
        assert opening == selectors.stream_start(user_id=user, since=since, limit=3), (user, since)
    assert ids(found[cases.index(("a", 1))].replay) == [2, 3, 4]
    assert found[cases.index(("a", 1))].unread == 4


def test_a_replay_across_days_reads_each_days_events_with_their_content() -> None:
    # Rows of three UTC days: one UNION ALL arm per day, each row with its
    # own event's content; JSON data and timestamps as the querysets gave them.
    for n in range(3):
        services.notifications_publish(
            source="shop",
            recipients=["a", "b"],
            type="t",
            title=f"title {n}",
            data={"n": n, "nested": {"list": [n, "x"]}, "none": None},
        )
    for seq, days in ((1, 2), (2, 1)):
        when = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        when -= timedelta(days=days)
        [row] = stored_rows.stored("a", seqs=[seq])
        stored_rows.move_event(row.event_ref, when)
    replay = selectors.notifications_after(user_id="a", after=0)
    assert ids(replay) == [1, 2, 3]
    assert [item["title"] for item in replay] == ["title 0", "title 1", "title 2"]
    assert [item["data"] for item in replay] == [
        {"n": n, "nested": {"list": [n, "x"]}, "none": None} for n in range(3)
    ]
    assert replay[0]["created_at"].endswith("T12:00:00.000000Z")
    assert replay[2]["read_at"] is None
    assert replay == [selectors.notification_get(user_id="a", seq=seq) for seq in (1, 2, 3)]
    assert ids(selectors.notifications_after(user_id="a", after=1, up_to=2)) == [2]


def test_stored_wire_dicts_match_the_python_rendering_field_for_field() -> None:
    # PostgreSQL builds the wire JSON itself (notifications/wire_sql.py): its
    # strings, numbers, nested data, timestamps and nulls must come out as
    # rendering.wire_fields renders the same row, on every read path.
    tricky = {
        "quote": 'a "b" \\ c\n\t\u2028',
        "emoji": "😀 ü",
        "float": 1.5,
        "big": 2**53 + 1,
        "neg": -3,
        "list": [None, True, False, {"k": []}],
    }
    services.notifications_publish(
        source="shop", recipients=["a"], type="t.x", title='ti"tle', body="b\\ody", data=tricky
    )
    services.notifications_publish(source="shop", recipients=["a"], type="t.y")
    read_when = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)  # 6 µs: zero-padded
    stored_rows.set_read_at("a", [2], read_when)
    expected = {row.seq: {"id": str(row.seq), **render(row)} for row in stored_rows.stored("a")}
    assert expected[1]["data"] == tricky
    assert expected[2]["read_at"] == "2026-01-02T03:04:05.000006Z"
    assert selectors.notifications_after(user_id="a", after=0) == [expected[1], expected[2]]
    assert selectors.notifications_page(user_id="a").results == [expected[2], expected[1]]
    assert selectors.notifications_page(user_id="a", unread=True).results == [expected[1]]
    assert selectors.notification_get(user_id="a", seq=2) == expected[2]
    # Key order too: clients may print the JSON as given.
    assert list(selectors.notification_get(user_id="a", seq=1) or {}) == list(expected[1])


def render(row: stored_rows.Stored) -> dict[str, object]:
    return wire_fields(
        type=row.type,
        title=row.title,
        body=row.body,
        data=row.data,
        source=row.source,
        created_at=row.created_at,
        read_at=row.read_at,
    )
