"""Token buckets: per publisher (shared through Redis when there is one) and per socket."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from django.conf import settings

from notifications import redis_clients
from notifications.errors import RateLimited
from notifications.redis_clients import RedisSettings

logger = logging.getLogger(__name__)

# Atomic refill-and-take of up to ARGV[3] tokens (a writer's whole group at
# once), with the server's clock, so pods with skewed clocks agree.
_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3]) or 1
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1]) or burst
local ts = tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local granted = math.max(0, math.min(wanted, math.floor(tokens)))
tokens = tokens - granted
local retry = 0
if granted < wanted then
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {granted, tostring(retry)}
"""


class TokenBucket:
    """A local bucket: one socket's frames, or a publisher in one-process mode."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 when a token was taken, else seconds until one is available."""
        granted, retry = self.take_many(1)
        return 0.0 if granted else retry

    def take_many(self, wanted: int) -> tuple[int, float]:
        """Tokens taken (at most ``wanted``), and seconds until the next one if short."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        granted = max(0, min(wanted, int(self.tokens)))
        self.tokens -= granted
        return granted, 0.0 if granted == wanted else (1 - self.tokens) / self.rate


class PublisherLimiter:
    def __init__(self) -> None:
        self._local: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self._redis: Any = None
        self._script: Any = None

    def check(self, source: str) -> None:
        """Raise RateLimited when ``source`` is over NOTIFY_PUBLISH_RATE."""
        granted, retry = self.take(source, 1)
        if not granted:
            raise RateLimited(retry_after=retry)

    def take(self, source: str, wanted: int) -> tuple[int, float]:
        """Up to ``wanted`` publishes of ``source`` allowed now: (how many, and
        seconds until the next one when that is fewer than wanted)."""
        rate, burst = settings.NOTIFY_PUBLISH_RATE
        cfg = redis_clients.configured()
        if cfg is not None:
            return self._take_redis(cfg, source, rate, burst, wanted)
        with self._lock:
            bucket = self._local.get(source)
            if bucket is None:
                bucket = self._local[source] = TokenBucket(rate, burst)
            return bucket.take_many(wanted)

    def _take_redis(
        self, cfg: RedisSettings, source: str, rate: float, burst: float, wanted: int
    ) -> tuple[int, float]:
        if self._script is None:
            self._redis = redis_clients.sync_client(cfg)
            self._script = self._redis.register_script(_BUCKET_LUA)
        try:
            granted, retry = self._script(
                keys=[f"notify:rate:{source}"], args=[rate, burst, wanted]
            )
        except redis.RedisError:
            # Fail open: storage is the truth and it is up; a Redis outage
            # must not turn publishes into errors.
            logger.warning("rate limiter unreachable; allowing", exc_info=True)
            return wanted, 0.0
        return int(granted), float(retry)


publisher_limiter = PublisherLimiter()
