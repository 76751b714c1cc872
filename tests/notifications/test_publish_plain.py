"""publishing: a plain group (no idempotency key, no Web Push owed) is one
statement in autocommit on PostgreSQL; any other group keeps its transaction.
Both store and push the same rows, and a failing group still fails one
request at a time (real database; the wire to PostgreSQL read from libpq's
trace)."""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import DatabaseError, connection, transaction

from notifications import delivery, publish_loop, publishing, selectors, services
from notifications.models import NotificationEvent, UserSequence
from notifications.push import services as push_services
from notifications.push.config import PushSettings
from notifications.push.models import PushOutbox
from tests.support import rows as stored_rows

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    def __init__(self) -> None:
        self.pushes: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, pushes: Any, **_kwargs: Any) -> None:
        self.pushes += list(pushes)


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(delivery, "push_notifications", recorder)
    return recorder


@pytest.fixture
def web_push_on(settings: Any) -> PushSettings:
    cfg = PushSettings(
        private_key=ec.generate_private_key(ec.SECP256R1()),
        public_key="unused",
        subject="mailto:ops@example.com",
        allowed_hosts=(),
        ca_bundle=None,
        ttl=3600,
        urgency="normal",
    )
    settings.NOTIFY_PUSH = cfg
    return cfg


class Wire:
    """What this thread's connection sends to the server, from libpq's trace."""

    def __init__(self, pgconn: Any, path: Path) -> None:
        self._pgconn = pgconn
        self._path = path
        self._tracing = False

    def start(self) -> None:
        from psycopg import pq

        self._out = self._path.open("w")
        self._pgconn.trace(self._out.fileno())
        self._pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
        self._tracing = True

    def stop(self) -> None:
        if self._tracing:
            self._pgconn.untrace()  # flushes libpq's stream
            self._out.close()
            self._tracing = False

    def sent(self) -> str:
        """The frontend's messages so far (libpq marks them ``F``)."""
        self.stop()
        text = self._path.read_text()
        return "\n".join(line for line in text.splitlines() if line.startswith("F"))


@pytest.fixture
def wire() -> Iterator[Wire | None]:
    """The wire of this thread's connection on PostgreSQL (traced from
    ``watch``), else None."""
    if connection.vendor != "postgresql":
        yield None
        return
    connection.ensure_connection()
    with tempfile.TemporaryDirectory() as folder:
        traced = Wire(connection.connection.pgconn, Path(folder) / "trace")
        try:
            yield traced
        finally:
            traced.stop()


def watch(wire: Wire | None) -> None:
    if wire is not None:
        wire.start()


def publish_rated(*publications: publishing.Publication) -> list[publishing.PublishResult]:
    """What the writer thread runs for a group, in this test's thread."""
    outcomes = publishing.notifications_publish_rated(publications=publications)
    assert all(isinstance(o, publishing.PublishResult) for o in outcomes), outcomes
    return outcomes  # type: ignore[return-value]


def assert_pushed_as_stored(recorder: Recorder, expected: list[tuple[str, int, str]]) -> None:
    assert [(user, int(n["id"]), n["type"]) for user, n in recorder.pushes] == expected
    for user, notification in recorder.pushes:
        assert selectors.notification_get(user_id=user, seq=int(notification["id"])) == notification


def subscribe(user: str) -> None:
    push_services.subscription_register(
        user_id=user,
        endpoint=f"https://push.example/{user}",
        p256dh="p",
        auth="a",
        expiration_time=None,
    )


def group(*recipients: list[str], **kwargs: Any) -> list[publishing.Publication]:
    return [
        publishing.Publication(source="shop", recipients=users, type=f"t{n}", **kwargs)
        for n, users in enumerate(recipients)
    ]


def test_a_plain_group_is_one_statement_without_a_transaction(
    pushed: Recorder, wire: Wire | None
) -> None:
    watch(wire)
    publish_rated(*group(["a"]))
    outcomes = publish_rated(*group(["a", "b"], ["b"], []))
    assert [o.recipients for o in outcomes] == [2, 1, 0]
    assert_pushed_as_stored(
        pushed, [("a", 1, "t0"), ("a", 2, "t0"), ("b", 1, "t0"), ("b", 2, "t1")]
    )
    assert NotificationEvent.objects.filter(event_id=outcomes[2].event_id).exists()
    if wire is not None:
        frontend = wire.sent()
        assert frontend.count("WITH a AS (") == 2  # pg_writes' statement, once per group
        assert '"BEGIN"' not in frontend and '"COMMIT"' not in frontend


@pytest.mark.parametrize("kind", ["idempotency key", "Web Push owed", "over 64 rows"])
def test_other_groups_keep_their_transaction(
    kind: str, request: pytest.FixtureRequest, pushed: Recorder, wire: Wire | None
) -> None:
    users = ["a", "b"]
    extra: dict[str, Any] = {}
    if kind == "idempotency key":
        extra = {"idempotency_key": "k", "request_hash": "h"}
    elif kind == "Web Push owed":
        request.getfixturevalue("web_push_on")
        subscribe("b")
    else:
        users = [f"u{n:03}" for n in range(65)]
    watch(wire)
    publish_rated(*group(users, **extra))
    assert_pushed_as_stored(pushed, [(user, 1, "t0") for user in users])
    if kind == "Web Push owed":
        assert list(PushOutbox.objects.values_list("user_id", flat=True)) == ["b"]
    if wire is not None:
        frontend = wire.sent()
        assert '"BEGIN"' in frontend and '"COMMIT"' in frontend


def test_push_mode_never_is_plain_with_web_push_on(
    web_push_on: PushSettings, pushed: Recorder, wire: Wire | None
) -> None:
    subscribe("a")
    watch(wire)
    publish_rated(*group(["a"], push="never"))
    assert_pushed_as_stored(pushed, [("a", 1, "t0")])
    assert not PushOutbox.objects.exists()
    if wire is not None:
        assert '"BEGIN"' not in wire.sent()


def test_inside_a_callers_transaction_the_rows_wait_for_its_commit(
    pushed: Recorder, django_capture_on_commit_callbacks: Any
) -> None:
    # The statement alone would be committed by the caller's COMMIT, not by
    # itself: the push must wait for that commit, as on_commit does.
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        publish_rated(*group(["a"]))
        assert pushed.pushes == []
    assert_pushed_as_stored(pushed, [("a", 1, "t0")])


# ----------------------------------------------------------- the writer, failing


@pytest.fixture
def postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the plain group is PostgreSQL's; a NUL fails only there")


class RowLock:
    """A transaction of another connection holding ``user``'s counter row, so
    that the writer's next group waits on it."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.locked = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        try:
            with transaction.atomic():
                UserSequence.objects.select_for_update().get(user_id=self.user)
                self.locked.set()
                assert self.release.wait(60)
        finally:
            connection.close()

    def __enter__(self) -> RowLock:
        self.thread.start()
        assert self.locked.wait(30)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release.set()
        self.thread.join(30)


async def until(condition: Any) -> None:
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)


def waiting(path: str) -> int:
    """Requests queued on ``path``'s committer, not yet in a group."""
    if path == "writer":
        return services._writer.waiting()
    committer = publish_loop.committer()
    return 0 if committer is None else committer.waiting()


def publisher(path: str) -> Any:
    """The writer thread's way in (the synchronous callers'), or the event
    loop's (the publish API's)."""
    if path == "writer":
        return services._through_writer
    return lambda p: services.notifications_publish_async(publication=p)


@pytest.mark.usefixtures("postgres_only")
@pytest.mark.parametrize("path", ["writer", "loop"])
def test_a_failing_plain_group_fails_one_request_alone(pushed: Recorder, path: str) -> None:
    # "gate" is held by another transaction, so the two requests queue behind
    # its group and go together in the next one; PostgreSQL refuses the NUL
    # of the second, which fails that group's one statement: nothing of it
    # stays, and each request is retried alone.
    services.notifications_publish(source="shop", recipients=["gate"], type="open")
    pushed.pushes.clear()
    good = publishing.Publication(source="shop", recipients=["good", "gate"], type="good")
    bad = publishing.Publication(source="shop", recipients=["bad", "good"], type="bad\x00")
    publish = publisher(path)

    async def scenario() -> list[Any]:
        first = asyncio.ensure_future(
            publish(publishing.Publication(source="shop", recipients=["gate"], type="g"))
        )
        await asyncio.sleep(0)  # its task's first step: queued
        await until(lambda: waiting(path) == 0)  # its group holds it, waiting on the lock
        rest = [asyncio.ensure_future(publish(p)) for p in (good, bad)]
        await until(lambda: waiting(path) == 2)
        lock.release.set()
        try:
            return await asyncio.gather(first, *rest, return_exceptions=True)
        finally:
            await publish_loop.close()

    with RowLock("gate") as lock:
        outcomes = asyncio.run(scenario())
    assert isinstance(outcomes[0], publishing.PublishResult)
    assert isinstance(outcomes[1], publishing.PublishResult)
    assert isinstance(outcomes[2], DatabaseError)
    assert not NotificationEvent.objects.filter(type__startswith="bad").exists()
    assert not UserSequence.objects.filter(user_id="bad").exists()
    assert dict(UserSequence.objects.values_list("user_id", "last_id")) == {"gate": 3, "good": 1}
    assert sorted((r.user_id, r.seq, r.type) for r in stored_rows.stored()) == [
        ("gate", 1, "open"),
        ("gate", 2, "g"),
        ("gate", 3, "good"),
        ("good", 1, "good"),
    ]
    assert_pushed_as_stored(pushed, [("gate", 2, "g"), ("good", 1, "good"), ("gate", 3, "good")])
