"""notifications.services: publish, mark read, purge (real database)."""

from __future__ import annotations

import uuid
from datetime import UTC, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from notifications import delivery, publishing, selectors, services
from notifications.errors import IdempotencyConflict, NotificationNotFound
from notifications.models import IdempotencyRecord, NotificationEvent, UserSequence
from tests.support import rows as stored_rows

pytestmark = pytest.mark.django_db(transaction=True)


def publish(recipients: list[str], **kwargs: Any) -> services.PublishResult:
    kwargs.setdefault("source", "shop")
    kwargs.setdefault("type", "t")
    return services.notifications_publish(recipients=recipients, **kwargs)


def commit(recipients: list[str], **kwargs: Any) -> publishing.PublishResult:
    """The publish transaction itself, in this test's thread and transaction
    (what the writer thread runs for each group), for on-commit checks."""
    kwargs.setdefault("source", "shop")
    kwargs.setdefault("type", "t")
    publication = publishing.Publication(recipients=recipients, **kwargs)
    (outcome,) = publishing.notifications_publish_many(publications=[publication])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def seqs(user: str) -> list[int]:
    return stored_rows.seqs_of(user)


def last_ids() -> dict[str, int]:
    return dict(UserSequence.objects.values_list("user_id", "last_id"))


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(delivery, "push_notifications", recorder)
    return recorder


@pytest.fixture
def read_pushed(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(delivery, "push_read", recorder)
    return recorder


# --------------------------------------------------------------------------- publish


def test_publish_stores_one_row_per_recipient() -> None:
    result = publish(["a", "b", "c"], title="hi", body="there", data={"k": [1]})
    assert isinstance(result.event_id, uuid.UUID)
    assert result.recipients == 3
    assert result.replayed is False
    rows = stored_rows.stored()
    assert [r.user_id for r in rows] == ["a", "b", "c"]
    assert {r.event_id for r in rows} == {result.event_id}
    assert all(
        (r.title, r.body, r.data, r.source) == ("hi", "there", {"k": [1]}, "shop") for r in rows
    )
    assert len({r.created_at for r in rows}) == 1


def test_ids_start_at_one_and_increase_per_user() -> None:
    publish(["a"])
    publish(["a", "b"])
    publish(["c", "a"])
    publish(["b"])
    assert seqs("a") == [1, 2, 3]
    assert seqs("b") == [1, 2]
    assert seqs("c") == [1]
    assert last_ids() == {"a": 3, "b": 2, "c": 1}


def test_counters_are_independent_across_many_users() -> None:
    users = [f"user-{i}" for i in range(1200)]  # more than one allocation chunk
    publish(users)
    publish(users[::2])
    state = last_ids()
    assert all(state[u] == (2 if i % 2 == 0 else 1) for i, u in enumerate(users))
    assert len([r for r in stored_rows.stored() if r.seq == 2]) == 600


def test_duplicates_count_once() -> None:
    result = publish(["a", "b", "a", "a"])
    assert result.recipients == 2
    assert seqs("a") == [1]
    assert last_ids() == {"a": 1, "b": 1}


def test_defaults() -> None:
    publish(["a"])
    [row] = stored_rows.stored()
    assert (row.title, row.body, row.data, row.read_at) == ("", "", {}, None)


@pytest.mark.django_db  # on-commit callbacks are captured inside the test transaction
def test_push_is_scheduled_only_after_commit(
    pushed: Recorder, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        commit(["b", "a"], title="hello", data={"x": 1})
        assert pushed.calls == []
    assert pushed.calls == []
    assert len(callbacks) == 1

    callbacks[0]()
    assert len(pushed.calls) == 1
    (pushes,), kwargs = pushed.calls[0]
    assert isinstance(kwargs["committed_at"], float)
    by_user = dict(pushes)
    assert set(by_user) == {"a", "b"}
    for user in ("a", "b"):
        # The pushed frame is exactly what the user API shows for that id.
        assert by_user[user] == selectors.notification_get(user_id=user, seq=1)


@pytest.mark.django_db  # on-commit callbacks are captured inside the test transaction
def test_nothing_pushed_when_the_transaction_rolls_back(
    pushed: Recorder, django_capture_on_commit_callbacks: Any
) -> None:
    class Abort(Exception):
        pass

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(Abort),
        transaction.atomic(),
    ):
        commit(["a"])
        raise Abort
    assert callbacks == []
    assert pushed.calls == []
    assert stored_rows.count() == 0
    assert UserSequence.objects.count() == 0


@pytest.mark.django_db  # on-commit callbacks are captured inside the test transaction
def test_failure_mid_publish_stores_nothing_and_keeps_counters(
    monkeypatch: pytest.MonkeyPatch, pushed: Recorder, django_capture_on_commit_callbacks: Any
) -> None:
    commit(["a"])
    before_rows = stored_rows.count()
    before_ids = last_ids()

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(publishing, "_store", explode)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError, match="disk on fire"),
    ):
        commit(["a", "b"], idempotency_key="k1", request_hash="h")
    monkeypatch.undo()

    assert callbacks == []
    assert stored_rows.count() == before_rows
    assert last_ids() == before_ids  # "b" not created, "a" not bumped
    assert not IdempotencyRecord.objects.exists()

    # The next publish continues without a hole.
    commit(["a", "b"])
    assert seqs("a") == [1, 2]
    assert seqs("b") == [1]


@pytest.mark.django_db  # on-commit callbacks are captured inside the test transaction
def test_idempotent_replay_stores_and_pushes_nothing(
    pushed: Recorder, django_capture_on_commit_callbacks: Any
) -> None:
    first = commit(["a"], idempotency_key="k", request_hash="h1")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = commit(["a"], idempotency_key="k", request_hash="h1")
    assert callbacks == []
    assert again.replayed is True
    assert (again.event_id, again.recipients) == (first.event_id, first.recipients)
    assert seqs("a") == [1]


def test_idempotency_conflict_and_source_scoping() -> None:
    publish(["a"], idempotency_key="k", request_hash="h1")
    with pytest.raises(IdempotencyConflict):
        publish(["a"], idempotency_key="k", request_hash="h2")
    assert seqs("a") == [1]
    other = publish(["a"], source="billing", idempotency_key="k", request_hash="h2")
    assert other.replayed is False
    assert seqs("a") == [1, 2]


def test_expired_idempotency_record_starts_anew() -> None:
    first = publish(["a"], idempotency_key="k", request_hash="h1")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    second = publish(["a"], idempotency_key="k", request_hash="h2")
    assert second.replayed is False
    assert second.event_id != first.event_id
    record = IdempotencyRecord.objects.get()
    assert (record.event_id, record.request_hash) == (second.event_id, "h2")
    assert seqs("a") == [1, 2]


# --------------------------------------------------------------------------- mark read


def _read(user: str) -> dict[int, bool]:
    return stored_rows.read_state(user)


def test_mark_read_returns_changed_ids_sorted(read_pushed: Recorder) -> None:
    for _ in range(4):
        publish(["a"])
    assert services.notifications_mark_read(user_id="a", ids=[3, 1, 3]) == [1, 3]
    assert _read("a") == {1: True, 2: False, 3: True, 4: False}
    assert services.notifications_mark_read(user_id="a", ids=[1, 2]) == [2]


def test_mark_read_all(read_pushed: Recorder) -> None:
    for _ in range(3):
        publish(["a", "b"])
    services.notifications_mark_read(user_id="a", ids=[2])
    assert services.notifications_mark_read(user_id="a", ids=None) == [1, 3]
    assert all(_read("a").values())
    assert not any(_read("b").values())
    assert services.notifications_mark_read(user_id="a") == []


def test_mark_read_strict_missing_id_changes_nothing() -> None:
    publish(["a"])
    publish(["b"])
    publish(["b"])
    with pytest.raises(NotificationNotFound) as info:
        services.notifications_mark_read(user_id="a", ids=[1, 2])
    assert info.value.notification_id == 2
    assert _read("a") == {1: False}
    assert _read("b") == {1: False, 2: False}


def test_mark_read_non_strict_ignores_missing(read_pushed: Recorder) -> None:
    publish(["a"])
    publish(["b"])
    publish(["b"])
    changed = services.notifications_mark_read(user_id="a", ids=[1, 2, 99], strict=False)
    assert changed == [1]
    assert _read("a") == {1: True}
    assert _read("b") == {1: False, 2: False}


@pytest.mark.django_db  # on-commit callbacks are captured inside the test transaction
def test_mark_read_pushes_changed_ids_after_commit(
    read_pushed: Recorder, django_capture_on_commit_callbacks: Any
) -> None:
    commit(["a"])
    commit(["a"])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.notifications_mark_read(user_id="a", ids=[2], origin_channel="chan-x")
    assert read_pushed.calls == []
    for callback in callbacks:
        callback()
    assert read_pushed.calls == [(("a", [2]), {"exclude_channel": "chan-x"})]


@pytest.mark.django_db  # on-commit callbacks are captured inside the test transaction
def test_mark_read_with_nothing_to_change_pushes_nothing(
    read_pushed: Recorder, django_capture_on_commit_callbacks: Any
) -> None:
    commit(["a"])
    services.notifications_mark_read(user_id="a", ids=[1])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert services.notifications_mark_read(user_id="a", ids=[1]) == []
    assert callbacks == []


# --------------------------------------------------------------------------- purge


def _age(user: str, seq_list: list[int], days: float) -> None:
    stored_rows.age(user, seq_list, timezone.now() - timedelta(days=days))


def test_purge_deletes_old_rows_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(4):
        publish(["a", "b"])
    _age("a", [1, 2, 3], days=31)
    _age("b", [1, 2], days=40)

    batches: list[int] = []
    real_batch = services._purge_batch

    def spy(**kwargs: Any) -> int:
        deleted = real_batch(**kwargs)
        batches.append(deleted)
        return deleted

    monkeypatch.setattr(services, "_purge_batch", spy)
    assert services.notifications_purge(older_than_days=30, batch_size=2) == 5
    if connection.vendor == "sqlite":
        assert batches == [2, 2, 1]
    # On PostgreSQL a row whose day has a partition goes with the whole day
    # instead (which days have one depends on the tests before: the day
    # partitions' purge is tested in test_partitions.py).
    assert seqs("a") == [4]
    assert seqs("b") == [3, 4]
    state = dict(UserSequence.objects.values_list("user_id", "purged_through"))
    assert state == {"a": 3, "b": 2}
    assert last_ids() == {"a": 4, "b": 4}  # ids are never reused
    assert selectors.sequence_state(user_id="a").purged_through == 3


def test_purge_keeps_recent_rows_and_is_idempotent() -> None:
    for _ in range(3):
        publish(["a"])
    _age("a", [1], days=29)
    assert services.notifications_purge(older_than_days=30) == 0
    assert seqs("a") == [1, 2, 3]
    assert UserSequence.objects.get(user_id="a").purged_through == 0
    _age("a", [1], days=31)
    assert services.notifications_purge(older_than_days=30) == 1
    assert services.notifications_purge(older_than_days=30) == 0
    assert seqs("a") == [2, 3]


def test_purge_never_lowers_purged_through() -> None:
    for _ in range(3):
        publish(["a"])
    UserSequence.objects.filter(user_id="a").update(purged_through=10)
    _age("a", [1, 2], days=60)
    services.notifications_purge(older_than_days=30)
    assert UserSequence.objects.get(user_id="a").purged_through == 10


def test_purge_exact_multiple_of_batch_size() -> None:
    for _ in range(4):
        publish(["a"])
    _age("a", [1, 2, 3, 4], days=31)
    assert services.notifications_purge(older_than_days=30, batch_size=2) == 4
    assert seqs("a") == []
    assert UserSequence.objects.get(user_id="a").purged_through == 4


def test_purge_removes_expired_idempotency_records() -> None:
    publish(["a"], idempotency_key="old", request_hash="h")
    publish(["a"], idempotency_key="new", request_hash="h")
    IdempotencyRecord.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    services.notifications_purge(older_than_days=30)
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["new"]
    assert seqs("a") == [1, 2]


TRICKY = "tab\there, newline\nthere, back\\slash, \\N, quote \" ' , é 🚚, \r, {br,ace} NULL, end\\"


def test_rows_keep_every_character_through_the_bulk_insert() -> None:
    # Several rows take the bulk path (executemany, or on PostgreSQL text
    # arrays bound as parameters, whose literal form escapes quotes, commas,
    # braces and backslashes).
    data = {"k\tey": TRICKY, "nested": [TRICKY, {"\\": None, "n": 1.5, "big": 2**53}]}
    users = ["a", "b\tc", "d\\e", "NULL", '{"x",y}']
    result = publish(users, title=TRICKY, body=TRICKY, data=data)
    rows = stored_rows.stored(event_id=result.event_id)
    assert sorted(r.user_id for r in rows) == sorted(users)
    for row in rows:
        assert (row.title, row.body, row.data) == (TRICKY, TRICKY, data)
        assert row.source == "shop" and row.type == "t" and row.read_at is None


def test_the_group_statement_keeps_values_and_instants_exact(pushed: Recorder) -> None:
    # On PostgreSQL a small group goes as JSON documents (pg_writes._PUBLISH):
    # numbers at the edges of 64 bits, floats, control and non-BMP characters,
    # and the commit instant to the microsecond come back as they went in, in
    # the row and in the push alike.
    data = {
        "max": 2**64 - 1,
        "min": -(2**63),
        "big": 1e19,
        "tenth": 0.1,
        "text": '\x01\x1f\u2028 \U0001f69a \\ "',
        "nested": [{"": None, "t": True}],
    }
    title = "\x1f\u2028\U0001f69a"
    users = ["a\x1f", "\U0001f69a", "b"]
    result = commit(users, title=title, body=TRICKY, data=data)
    rows = stored_rows.stored(event_id=result.event_id)
    assert sorted(row.user_id for row in rows) == sorted(users)
    (pushes,), _kwargs = pushed.calls[-1]
    sent = dict(pushes)
    for row in rows:
        assert (row.title, row.body, row.data) == (title, TRICKY, data)
        assert row.day == row.created_at.astimezone(UTC).date()
        assert selectors.notification_get(user_id=row.user_id, seq=row.seq) == sent[row.user_id]


def test_a_group_stores_each_publication_with_its_own_content_and_ids(pushed: Recorder) -> None:
    # One transaction, several publications sharing recipients: each row points
    # at its own event (PostgreSQL joins them by event id in one statement),
    # and a user's ids follow the publications' order.
    publications = [
        publishing.Publication(
            source="shop", recipients=users, type=f"t{n}", title=f"title {n}", data={"n": n}
        )
        for n, users in enumerate([["a", "b"], ["b"], [], ["c", "a", "b"]])
    ]
    with transaction.atomic():
        outcomes = publishing.notifications_publish_many(publications=publications)
    assert [o.recipients for o in outcomes if isinstance(o, publishing.PublishResult)] == [
        2,
        1,
        0,
        3,
    ]
    stored = {
        (row.user_id, row.seq): (row.type, row.title, row.data, row.event_id)
        for row in stored_rows.stored()
    }
    ids = [o.event_id for o in outcomes if isinstance(o, publishing.PublishResult)]
    assert stored == {
        ("a", 1): ("t0", "title 0", {"n": 0}, ids[0]),
        ("b", 1): ("t0", "title 0", {"n": 0}, ids[0]),
        ("b", 2): ("t1", "title 1", {"n": 1}, ids[1]),
        ("c", 1): ("t3", "title 3", {"n": 3}, ids[3]),
        ("a", 2): ("t3", "title 3", {"n": 3}, ids[3]),
        ("b", 3): ("t3", "title 3", {"n": 3}, ids[3]),
    }
    # The publication without recipients still has its event.
    assert NotificationEvent.objects.filter(event_id=ids[2], type="t2").exists()


@pytest.mark.django_db  # on-commit callbacks are captured inside the test transaction
def test_a_groups_pushes_carry_the_ids_stored_in_arrival_order(
    pushed: Recorder, django_capture_on_commit_callbacks: Any
) -> None:
    # Users with earlier rows and repeats within the group: on PostgreSQL the
    # counters and rows are one statement, each row's seq derived from its
    # user's new last id; the pushes must name exactly the rows stored.
    commit(["a"])
    commit(["b", "a"])
    publications = [
        publishing.Publication(source="shop", recipients=users, type=f"t{n}")
        for n, users in enumerate([["a", "c"], ["a"], ["c", "b", "a"]])
    ]
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        publishing.notifications_publish_many(publications=publications)
    (pushes,), _kwargs = pushed.calls[-1]
    assert [(user, n["id"], n["type"]) for user, n in pushes] == [
        ("a", "3", "t0"),
        ("c", "1", "t0"),
        ("a", "4", "t1"),
        ("c", "2", "t2"),
        ("b", "2", "t2"),
        ("a", "5", "t2"),
    ]
    for user, notification in pushes:
        stored = selectors.notification_get(user_id=user, seq=int(notification["id"]))
        assert stored == notification
    assert last_ids() == {"a": 5, "b": 2, "c": 2}


def test_a_large_group_stores_each_row_with_its_own_event(pushed: Recorder) -> None:
    # More rows than one statement takes (pg_writes.COMBINED_MAX_ROWS): on
    # PostgreSQL the events' statement, then the rows by COPY.
    first = [f"u{n}" for n in range(50)]
    second = [f"u{n}" for n in range(30, 90)]
    publications = [
        publishing.Publication(source="shop", recipients=users, type=f"t{n}", body=TRICKY)
        for n, users in enumerate([first, second])
    ]
    with transaction.atomic():
        outcomes = publishing.notifications_publish_many(publications=publications)
    ids = [o.event_id for o in outcomes if isinstance(o, publishing.PublishResult)]
    rows = stored_rows.stored()
    assert len(rows) == 110
    for row in rows:
        n = 0 if row.user_id in first and row.seq == 1 else 1
        assert (row.event_id, row.type, row.body) == (ids[n], f"t{n}", TRICKY)
        assert row.day == row.created_at.astimezone(UTC).date()
