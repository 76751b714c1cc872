"""Live traffic first, end to end in one process: the real push worker
(notifications/push/worker.py) on the test database sends to the local HTTPS
push service while live frames keep the event loop busy. It holds its sends
(the held metric grows, only the floor's few go out) and, once the live
traffic ends, delivers every owed push exactly once.

The worker runs on the test's own event loop, as it runs on a service
process's; the loop is kept busy by a callback that blocks it while writing
live frames through the real connection outbox (tests/push/liveload.py).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator

import environ
import pytest
from django.db import connection, transaction
from django.utils import timezone

from notifications.push import config as push_config
from notifications.push import outbox, services
from notifications.push.models import PushOutbox
from notifications.push.throttle import CREDIT_CAP, FLOOR_RATE
from notifications.push.worker import PushWorker
from tests.push.conftest import SUBJECT, Vapid
from tests.push.liveload import Load, held_seconds, until
from tests.support.push_service import PushService, Subscription

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

OWED = 200  # pushes owed; the floor (10/s) alone would take 20 s


@pytest.fixture
def push_settings(
    vapid: Vapid, push_service: PushService, settings: object
) -> Iterator[push_config.PushSettings]:
    values = {
        "VAPID_PRIVATE_KEY": vapid.private,
        "VAPID_SUBJECT": SUBJECT,
        "NOTIFY_PUSH_ALLOWED_HOSTS": push_service.host,
        "NOTIFY_PUSH_CA_BUNDLE": str(push_service.ca.ca_path),
    }
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        cfg = push_config.push_settings(environ.Env())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert cfg is not None
    settings.NOTIFY_PUSH = cfg  # type: ignore[attr-defined]
    yield cfg


def owe_pushes(service: PushService) -> list[Subscription]:
    """``OWED`` users with one subscription each, and one push owed to each."""
    subs: list[Subscription] = []
    owed = []
    for n in range(OWED):
        user, sub = f"live-first-{uuid.uuid4().hex[:8]}", service.subscription()
        keys = sub.to_json()["keys"]
        services.subscription_register(
            user_id=user,
            endpoint=sub.endpoint,
            p256dh=keys["p256dh"],
            auth=keys["auth"],
            expiration_time=None,
        )
        notification = {"id": str(uuid.uuid4()), "type": "t", "title": f"n{n}", "body": "",
                        "data": {}, "created_at": None}  # fmt: skip
        owed.append((user, notification, "always"))
        subs.append(sub)
    with transaction.atomic():
        assert services.record_owed(owed, committed_at=timezone.now()) == OWED
    return subs


async def test_pushes_wait_while_live_traffic_keeps_the_loop_busy_then_all_go_once(
    push_settings: push_config.PushSettings, push_service: PushService
) -> None:
    from asgiref.sync import sync_to_async

    if connection.vendor == "sqlite":
        # The SQLite pass's database is in memory with a shared cache, whose
        # table locks fail at once ("database table is locked") where a file
        # would wait; the worker's two database threads meet them. The
        # PostgreSQL and PgBouncer passes of `make test` run this test.
        pytest.skip("needs a database the worker's threads can share (the PostgreSQL passes)")
    subs = await sync_to_async(owe_pushes)(push_service)
    before_201 = push_service.count(201)
    held_before = held_seconds()
    load = Load(live=True)
    worker = PushWorker(push_settings)
    started = time.monotonic()
    worker.start()
    try:
        worker.wake()
        await until(lambda: held_seconds() > held_before + 1.0, "a second of held sends")
        sent = push_service.count(201) - before_201
        # At most the floor's pace (plus what one tick may have granted
        # before the loop was seen behind): a slower machine only sends less.
        bound = FLOOR_RATE * (time.monotonic() - started) + CREDIT_CAP + 1
        assert sent <= bound, "pushes went beyond the floor while the loop was busy"
        assert sent < OWED
        assert worker.throttle.limited and worker.throttle.held

        load.running = False
        await until(lambda: push_service.count(201) - before_201 >= OWED, "every owed push")
        assert [len(push_service.delivered(sub)) for sub in subs] == [1] * OWED
        await until(lambda: not worker.throttle.limited, "the limit lifted")
    finally:
        load.running = False
        await worker.stop(grace=10)
    assert await sync_to_async(PushOutbox.objects.count)() == 0


def test_renewing_a_lease_keeps_other_workers_off_the_rows(
    push_settings: push_config.PushSettings, push_service: PushService
) -> None:
    """A batch held back past part of its lease renews it (worker.py), so
    another worker's claim skips rows this one is still sending."""
    owe_pushes(push_service)
    claimed = outbox.claim(OWED)
    assert len(claimed) == OWED
    leased = {row.id: row.next_attempt_at for row in PushOutbox.objects.all()}
    outbox.renew(outbox.ids(claimed))
    renewed = {row.id: row.next_attempt_at for row in PushOutbox.objects.all()}
    assert all(renewed[i] > leased[i] for i in leased)
    assert outbox.claim(OWED) == []
