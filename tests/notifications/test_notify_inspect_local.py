"""``notify_inspect`` without Redis: presence is not shared, the rest is read
from the database (the live two-process test is tests/production)."""

from __future__ import annotations

import io
import json
import secrets
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from notifications.models import UserSequence
from notifications.push.models import PushOutbox, PushSubscription
from tests.support.rows import store

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("notify_inspect", *args, stdout=out)
    return out.getvalue()


def test_without_redis_presence_is_reported_as_unknown(settings: Any) -> None:
    settings.NOTIFY_REDIS = None
    now = timezone.now()
    store(
        {
            "user_id": "zoe",
            "seq": i,
            "type": "t",
            "title": f"n{i}",
            "created_at": now - timedelta(minutes=20 - i),
            "read_at": now if i == 7 else None,
        }
        for i in range(3, 8)
    )
    UserSequence.objects.update_or_create(
        user_id="zoe", defaults={"last_id": 7, "purged_through": 2}
    )
    report = json.loads(run("zoe", "--json"))
    assert report["presence"] == {"shared": False, "connections": None, "processes": []}
    assert (report["last_id"], report["purged_through"], report["unread"]) == (7, 2, 4)
    assert [n["id"] for n in report["latest"]] == ["7", "6", "5", "4", "3"]
    assert report["latest"][0]["read"] is True and report["latest"][0]["read_at"]
    text = run("zoe")
    assert "last id 7, purged through 2, unread 4" in text
    assert "connected: unknown here (no Redis" in text
    assert "#7 " in text and "read 20" in text  # the read_at timestamp


def test_push_subscriptions_are_masked_and_owed_pushes_counted(settings: Any) -> None:
    settings.NOTIFY_REDIS = None
    now = timezone.now()
    tokens = [secrets.token_urlsafe(32) for _ in range(2)]
    subs = [
        PushSubscription.objects.create(
            user_id="yuri",
            endpoint=f"https://updates.push.services.mozilla.com/wpush/v2/{token}",
            p256dh=secrets.token_urlsafe(65),
            auth=secrets.token_urlsafe(16),
            created_at=now,
        )
        for token in tokens
    ]
    PushSubscription.objects.create(
        user_id="other",
        endpoint="https://fcm.googleapis.com/x/" + "a" * 40,
        p256dh="p",
        auth="a",
        created_at=now,
    )
    PushOutbox.objects.bulk_create(
        PushOutbox(
            user_id="yuri",
            subscription=subs[0] if i == 2 else None,
            mode="auto",
            payload="{}",
            committed_at=now - timedelta(minutes=10 * i),
            expires_at=now + timedelta(days=1),
            next_attempt_at=now + timedelta(seconds=30 - i),
            attempts=i,
        )
        for i in range(3)
    )
    report = json.loads(run("yuri", "--json"))
    push = report["push"]
    assert [s["id"] for s in push["subscriptions"]] == [s.pk for s in subs]
    masked = [s["endpoint"] for s in push["subscriptions"]]
    assert masked == [f"updates.push.services.mozilla.com …{t[-4:]}" for t in tokens]
    owed = push["owed"]
    assert owed["count"] == 3 and owed["most_attempts"] == 2
    assert owed["oldest_committed_at"] == (now - timedelta(minutes=20)).isoformat()
    assert owed["next_attempt_at"] == (now + timedelta(seconds=28)).isoformat()
    text = run("yuri")
    assert "push subscriptions: 2" in text
    assert f"#{subs[0].pk}  updates.push.services.mozilla.com …{tokens[0][-4:]}" in text
    assert "owed pushes: 3, oldest committed" in text and "most attempts 2" in text
    for out in (text, json.dumps(report)):
        for sub in subs:
            assert sub.endpoint.rsplit("/", 1)[1][:-4] not in out
            assert sub.p256dh not in out and sub.auth not in out


def test_push_state_of_a_user_without_any(settings: Any) -> None:
    settings.NOTIFY_REDIS = None
    settings.NOTIFY_PUSH = None
    report = json.loads(run("nobody-push", "--json"))
    assert report["push"] == {
        "enabled": False,
        "subscriptions": [],
        "owed": {
            "count": 0,
            "oldest_committed_at": None,
            "next_attempt_at": None,
            "most_attempts": 0,
        },
    }
    text = run("nobody-push")
    assert "push subscriptions: 0 (Web Push is off here" in text
    assert "owed pushes: none" in text
