"""``notify_inspect`` without Redis: presence is not shared, the rest is read
from the database (the live two-process test is tests/production)."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from notifications.models import Notification, UserSequence

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("notify_inspect", *args, stdout=out)
    return out.getvalue()


def test_without_redis_presence_is_reported_as_unknown(settings: Any) -> None:
    settings.NOTIFY_REDIS = None
    now = timezone.now()
    Notification.objects.bulk_create(
        Notification(
            user_id="zoe",
            seq=i,
            type="t",
            title=f"n{i}",
            source="shop",
            created_at=now - timedelta(minutes=20 - i),
            read_at=now if i == 7 else None,
        )
        for i in range(3, 8)
    )
    UserSequence.objects.create(user_id="zoe", last_id=7, purged_through=2)
    report = json.loads(run("zoe", "--json"))
    assert report["presence"] == {"shared": False, "connections": None, "processes": []}
    assert (report["last_id"], report["purged_through"], report["unread"]) == (7, 2, 4)
    assert [n["id"] for n in report["latest"]] == ["7", "6", "5", "4", "3"]
    assert report["latest"][0]["read"] is True and report["latest"][0]["read_at"]
    text = run("zoe")
    assert "last id 7, purged through 2, unread 4" in text
    assert "connected: unknown here (no Redis" in text
    assert "#7 " in text and "read 20" in text  # the read_at timestamp
