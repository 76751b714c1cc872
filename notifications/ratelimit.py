"""Token buckets: per publisher (shared through Redis when there is one) and per socket."""

from __future__ import annotations

import asyncio
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

# Atomic admission of a writer's whole group of one publisher, with the
# server's clock (pods with skewed clocks agree). Two buckets: requests
# (KEYS[1]) and recipients (KEYS[2]). Each publish, in order, is admitted only
# when one request and all its recipients fit (ARGV[5..]: recipients each).
_ADMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function refill(key, rate, burst)
  local v = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(v[1]) or burst
  local ts = tonumber(v[2]) or now
  return math.min(burst, tokens + math.max(0, now - ts) * rate)
end
local rate1, burst1 = tonumber(ARGV[1]), tonumber(ARGV[2])
local rate2, burst2 = tonumber(ARGV[3]), tonumber(ARGV[4])
local requests = refill(KEYS[1], rate1, burst1)
local recipients = refill(KEYS[2], rate2, burst2)
local answer = {}
local retry = 0
for i = 5, #ARGV do
  local n = tonumber(ARGV[i])
  if requests >= 1 and recipients >= n then
    requests = requests - 1
    recipients = recipients - n
    answer[#answer + 1] = 1
  else
    answer[#answer + 1] = 0
    retry = math.max(retry, (1 - requests) / rate1, (n - recipients) / rate2)
  end
end
for i, key in ipairs(KEYS) do
  local tokens = requests
  local rate, burst = rate1, burst1
  if i == 2 then tokens, rate, burst = recipients, rate2, burst2 end
  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
answer[#answer + 1] = tostring(retry)
return answer
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
        self.refill()
        granted = max(0, min(wanted, int(self.tokens)))
        self.tokens -= granted
        return granted, 0.0 if granted == wanted else (1 - self.tokens) / self.rate

    def refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, wanted: float) -> float:
        """Seconds until ``wanted`` tokens are in the bucket (after ``refill``)."""
        return max(0.0, (wanted - self.tokens) / self.rate)


def _admit_local(
    requests: TokenBucket, recipients: TokenBucket, sizes: list[int]
) -> tuple[list[bool], float]:
    """What ``_ADMIT_LUA`` does, on two local buckets."""
    requests.refill()
    recipients.refill()
    admitted: list[bool] = []
    retry = 0.0
    for n in sizes:
        if requests.tokens >= 1 and recipients.tokens >= n:
            requests.tokens -= 1
            recipients.tokens -= n
            admitted.append(True)
        else:
            admitted.append(False)
            retry = max(retry, requests.wait_for(1), recipients.wait_for(n))
    return admitted, retry


class PublisherLimiter:
    """Per publisher key: ``NOTIFY_PUBLISH_RATE`` requests and
    ``NOTIFY_PUBLISH_RECIPIENT_RATE`` recipients; a publish needs both."""

    def __init__(self) -> None:
        self._local: dict[str, tuple[TokenBucket, TokenBucket]] = {}
        self._lock = threading.Lock()
        self._redis: Any = None
        self._script: Any = None
        self._loop_scripts: dict[asyncio.AbstractEventLoop, Any] = {}

    def check(self, source: str, recipients: int = 1) -> None:
        """Raise RateLimited when one publish of ``recipients`` is over the limits."""
        (admitted,), retry = self.admit(source, [recipients])
        if not admitted:
            raise RateLimited(retry_after=retry)

    def admit(self, source: str, sizes: list[int]) -> tuple[list[bool], float]:
        """For publishes of ``source`` with these recipient counts, in order:
        which are admitted now, and seconds until a refused one could be."""
        rates = (settings.NOTIFY_PUBLISH_RATE, settings.NOTIFY_PUBLISH_RECIPIENT_RATE)
        cfg = redis_clients.configured()
        if cfg is not None:
            return self._admit_redis(cfg, source, sizes)
        with self._lock:
            buckets = self._local.get(source)
            if buckets is None:
                buckets = self._local[source] = (TokenBucket(*rates[0]), TokenBucket(*rates[1]))
            return _admit_local(*buckets, sizes)

    async def admit_async(self, source: str, sizes: list[int]) -> tuple[list[bool], float]:
        """``admit`` from the event loop: the shared bucket's script on this
        loop's own async client (the same script, the same keys), one
        connection: a loop's publish groups call it one at a time."""
        cfg = redis_clients.configured()
        if cfg is None:
            return self.admit(source, sizes)  # local buckets: no I/O
        loop = asyncio.get_running_loop()
        script = self._loop_scripts.get(loop)
        if script is None:
            for closed in [lp for lp in self._loop_scripts if lp.is_closed()]:
                del self._loop_scripts[closed]
            client = redis_clients.async_single_client(cfg)
            script = self._loop_scripts[loop] = client.register_script(_ADMIT_LUA)
        keys, args = _script_call(source, sizes)
        try:
            answer = await script(keys=keys, args=args)
        except redis.RedisError:
            logger.warning("rate limiter unreachable; allowing", exc_info=True)
            return [True] * len(sizes), 0.0
        return [int(flag) == 1 for flag in answer[:-1]], float(answer[-1])

    async def close_async(self) -> None:
        """Close this loop's client (the ASGI shutdown)."""
        script = self._loop_scripts.pop(asyncio.get_running_loop(), None)
        if script is not None:
            await script.registered_client.aclose()

    def _admit_redis(
        self, cfg: RedisSettings, source: str, sizes: list[int]
    ) -> tuple[list[bool], float]:
        if self._script is None:
            self._redis = redis_clients.sync_client(cfg)
            self._script = self._redis.register_script(_ADMIT_LUA)
        keys, args = _script_call(source, sizes)
        try:
            answer = self._script(keys=keys, args=args)
        except redis.RedisError:
            # Fail open: storage is the truth and it is up; a Redis outage
            # must not turn publishes into errors.
            logger.warning("rate limiter unreachable; allowing", exc_info=True)
            return [True] * len(sizes), 0.0
        return [int(flag) == 1 for flag in answer[:-1]], float(answer[-1])


def _script_call(source: str, sizes: list[int]) -> tuple[list[str], list[float]]:
    """``_ADMIT_LUA``'s keys and arguments for ``source``'s publishes."""
    (rate, burst), (recipient_rate, recipient_burst) = (
        settings.NOTIFY_PUBLISH_RATE,
        settings.NOTIFY_PUBLISH_RECIPIENT_RATE,
    )
    # One hash slot for both keys (Redis Cluster): the {source} tag.
    keys = [f"notify:rate:{{{source}}}", f"notify:rate:{{{source}}}:recipients"]
    return keys, [rate, burst, recipient_rate, recipient_burst, *sizes]


publisher_limiter = PublisherLimiter()
