"""notifications.ratelimit: token buckets, taken one at a time or a group at once.

The shared bucket runs its Lua script on a real redis-server. Exact token
counts hold on a loaded machine because the buckets refill slowly (SLOW: one
token per 1,000 s), so no pause between two calls can add a token.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from notifications import publishing
from notifications.errors import RateLimited
from notifications.ratelimit import PublisherLimiter, TokenBucket
from notifications.redis_clients import RedisSettings
from tests.support import rows as stored_rows
from tests.support.servers import RedisServer

SLOW = 0.001  # tokens per second


def test_local_bucket_grants_up_to_its_burst_then_says_when() -> None:
    bucket = TokenBucket(rate=SLOW, burst=5.0)
    granted, retry = bucket.take_many(8)
    assert granted == 5
    assert 0 < retry <= 1 / SLOW  # at most one token's refill time
    assert bucket.take() > 0
    assert bucket.take_many(0) == (0, 0.0)


def test_local_bucket_take_is_take_many_of_one() -> None:
    bucket = TokenBucket(rate=SLOW, burst=2.0)
    assert bucket.take() == 0.0
    assert bucket.take() == 0.0
    assert bucket.take() > 0


@pytest.fixture
def shared_limiter(redis_server: RedisServer, settings: Any) -> Iterator[PublisherLimiter]:
    settings.NOTIFY_REDIS = RedisSettings(urls=(redis_server.url,))
    settings.NOTIFY_PUBLISH_RATE = (SLOW, 6.0)
    settings.NOTIFY_PUBLISH_RECIPIENT_RATE = (5000.0, 10000.0)
    yield PublisherLimiter()


def test_shared_bucket_admits_a_group_in_one_call(shared_limiter: PublisherLimiter) -> None:
    source = f"shop-{uuid.uuid4().hex[:8]}"
    assert shared_limiter.admit(source, [1, 1, 1, 1]) == ([True] * 4, 0.0)
    admitted, retry = shared_limiter.admit(source, [1, 1, 1, 1])
    assert admitted == [True, True, False, False]  # 6 requests in the burst
    assert 0 < retry <= 1 / SLOW


def test_recipients_are_charged_too(shared_limiter: PublisherLimiter) -> None:
    """Two publishes of 10,000 recipients: the first fits the recipient burst
    (10,001), the second is refused (with a retry of about 10,000 / 5,000 per
    s), and a one-recipient publish behind it still fits what is left."""
    source = f"shop-{uuid.uuid4().hex[:8]}"
    with override_settings(NOTIFY_PUBLISH_RECIPIENT_RATE=(5000.0, 10_001.0)):
        admitted, retry = shared_limiter.admit(source, [10_000, 10_000, 1])
    assert admitted == [True, False, True]
    assert 1.5 < retry <= 2.0


def test_local_buckets_charge_recipients(settings: Any) -> None:
    settings.NOTIFY_REDIS = None
    settings.NOTIFY_PUBLISH_RATE = (1000.0, 2000.0)
    settings.NOTIFY_PUBLISH_RECIPIENT_RATE = (SLOW, 10000.0)
    limiter = PublisherLimiter()
    admitted, retry = limiter.admit("shop", [6000, 6000, 4000])
    assert admitted == [True, False, True]
    assert retry > 0
    with pytest.raises(RateLimited):
        limiter.check("shop", 10_000)


def test_shared_bucket_is_shared_between_limiters(shared_limiter: PublisherLimiter) -> None:
    source = f"shop-{uuid.uuid4().hex[:8]}"
    other_process = PublisherLimiter()
    assert shared_limiter.admit(source, [1] * 5)[0] == [True] * 5
    assert other_process.admit(source, [1] * 5)[0] == [True] + [False] * 4
    with pytest.raises(RateLimited):
        other_process.check(source)


def test_shared_bucket_fails_open_when_redis_is_away(settings: Any) -> None:
    settings.NOTIFY_REDIS = RedisSettings(urls=("redis://127.0.0.1:1/0",))
    settings.NOTIFY_PUBLISH_RATE = (1.0, 1.0)
    assert PublisherLimiter().admit("shop", [1, 1, 1]) == ([True] * 3, 0.0)


@pytest.mark.django_db
def test_a_group_over_the_rate_stores_only_what_the_bucket_allowed(settings: Any) -> None:
    settings.NOTIFY_REDIS = None
    settings.NOTIFY_PUBLISH_RATE = (SLOW, 2.0)
    publishing.publisher_limiter._local.clear()
    publications = [
        publishing.Publication(source="shop", recipients=[f"u{i}"], type="t") for i in range(4)
    ] + [publishing.Publication(source="billing", recipients=["b"], type="t")]
    outcomes = publishing.notifications_publish_rated(publications=publications)
    assert [type(o).__name__ for o in outcomes] == [
        "PublishResult",
        "PublishResult",
        "RateLimited",
        "RateLimited",
        "PublishResult",
    ]
    assert [r.user_id for r in stored_rows.stored()] == ["b", "u0", "u1"]
    publishing.publisher_limiter._local.clear()
