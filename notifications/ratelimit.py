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
from service.config import RedisSettings

logger = logging.getLogger(__name__)

# Atomic refill-and-take with the server's clock, so pods with skewed clocks agree.
_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1]) or burst
local ts = tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local retry = 0
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(retry)}
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
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class PublisherLimiter:
    def __init__(self) -> None:
        self._local: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self._redis: Any = None
        self._script: Any = None

    def check(self, source: str) -> None:
        """Raise RateLimited when ``source`` is over NOTIFY_PUBLISH_RATE."""
        rate, burst = settings.NOTIFY_PUBLISH_RATE
        cfg = redis_clients.configured()
        if cfg is not None:
            retry = self._check_redis(cfg, source, rate, burst)
        else:
            with self._lock:
                bucket = self._local.get(source)
                if bucket is None:
                    bucket = self._local[source] = TokenBucket(rate, burst)
                retry = bucket.take()
        if retry > 0:
            raise RateLimited(retry_after=retry)

    def _check_redis(self, cfg: RedisSettings, source: str, rate: float, burst: float) -> float:
        if self._script is None:
            self._redis = redis_clients.sync_client(cfg)
            self._script = self._redis.register_script(_BUCKET_LUA)
        try:
            allowed, retry = self._script(keys=[f"notify:rate:{source}"], args=[rate, burst])
        except redis.RedisError:
            # Fail open: storage is the truth and it is up; a Redis outage
            # must not turn publishes into errors.
            logger.warning("rate limiter unreachable; allowing", exc_info=True)
            return 0.0
        return 0.0 if int(allowed) else float(retry)


publisher_limiter = PublisherLimiter()
