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

from notifications import services
from notifications.errors import RateLimited
from notifications.models import Notification
from notifications.ratelimit import PublisherLimiter, TokenBucket
from service.config import RedisSettings
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
    yield PublisherLimiter()


def test_shared_bucket_grants_a_group_in_one_call(shared_limiter: PublisherLimiter) -> None:
    source = f"shop-{uuid.uuid4().hex[:8]}"
    granted, retry = shared_limiter.take(source, 4)
    assert (granted, retry) == (4, 0.0)
    granted, retry = shared_limiter.take(source, 4)
    assert granted == 2  # 6 in the burst
    assert 0 < retry <= 1 / SLOW


def test_shared_bucket_is_shared_between_limiters(shared_limiter: PublisherLimiter) -> None:
    source = f"shop-{uuid.uuid4().hex[:8]}"
    other_process = PublisherLimiter()
    assert shared_limiter.take(source, 5)[0] == 5
    assert other_process.take(source, 5)[0] == 1
    with pytest.raises(RateLimited):
        other_process.check(source)


def test_shared_bucket_fails_open_when_redis_is_away(settings: Any) -> None:
    settings.NOTIFY_REDIS = RedisSettings(urls=("redis://127.0.0.1:1/0",))
    settings.NOTIFY_PUBLISH_RATE = (1.0, 1.0)
    assert PublisherLimiter().take("shop", 3) == (3, 0.0)


@pytest.mark.django_db
def test_a_group_over_the_rate_stores_only_what_the_bucket_allowed(settings: Any) -> None:
    settings.NOTIFY_REDIS = None
    settings.NOTIFY_PUBLISH_RATE = (SLOW, 2.0)
    services.publisher_limiter._local.clear()
    publications = [
        services.Publication(source="shop", recipients=[f"u{i}"], type="t") for i in range(4)
    ] + [services.Publication(source="billing", recipients=["b"], type="t")]
    outcomes = services.notifications_publish_rated(publications=publications)
    assert [type(o).__name__ for o in outcomes] == [
        "PublishResult",
        "PublishResult",
        "RateLimited",
        "RateLimited",
        "PublishResult",
    ]
    assert sorted(Notification.objects.values_list("user_id", flat=True)) == ["b", "u0", "u1"]
    services.publisher_limiter._local.clear()
