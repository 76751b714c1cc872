"""The push worker: claims owed pushes, decides who gets one, sends, settles.

Runs on an event loop (inside a service process, or alone under
``manage.py push_worker``). Database work runs on the worker's own threads;
each message is encrypted on the loop right before it is sent (see
``_send``).

The ``auto`` rule: a recipient gets pushes when presence (counted across
every process, notifications/presence.py) shows no open socket or stream
for them at the moment the worker resolves the row, which is right after
the commit. The race, by design: a user who connects between that check
and the push gets both the live frame and the push; the page tells the
service worker which ids it showed, and the service worker drops those.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.utils import timezone

from notifications import metrics, presence
from notifications.db import with_fresh_connections
from notifications.push import message, outbox
from notifications.push.config import PushSettings
from notifications.push.endpoints import endpoint_error, origin
from notifications.push.outbox import Owed, Settlement, Target
from notifications.push.preferences import is_muted
from notifications.push.sender import Outcome, Sender, retry_delay
from notifications.push.throttle import Throttle

logger = logging.getLogger(__name__)

BATCH = 200
LANES = 4  # batches in flight at once (claim, send and settle overlap)
IN_FLIGHT = 64  # messages being encrypted or sent at once, all hosts together
POLL = 1.0  # seconds between looks at the outbox when nobody wakes us
GAUGE_EVERY = 5.0
HELD_POLL = 0.1  # seconds between looks, while held back, for a lane to claim again
HELD_BATCH = 20  # rows a lane claims while live traffic runs (throttle.py)
RESOLVE_SLICE = 25  # rows resolved between turns of the loop
RENEW_EVERY = outbox.LEASE.total_seconds() / 3  # a batch still sending keeps its lease


@dataclass(frozen=True)
class Job:
    row: Owed
    target: Target
    notification: dict[str, Any]


class PushWorker:
    def __init__(self, cfg: PushSettings, *, lanes: int = LANES, batch: int = BATCH) -> None:
        self.cfg = cfg
        self.lanes = lanes
        self.batch = batch
        self.sender = Sender(cfg)
        self.signer = message.VapidSigner(cfg)
        self.db = ThreadPoolExecutor(max_workers=2, thread_name_prefix="push-db")
        self._wake = asyncio.Event()
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)
        self.throttle = Throttle()
        self._batches = 0  # lanes with a batch claimed
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [asyncio.ensure_future(self._lane()) for _ in range(self.lanes)]
        self._tasks.append(asyncio.ensure_future(self._gauges()))
        self.throttle.start()

    def wake(self) -> None:
        """Thread-safe: owed pushes were just committed."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def stop(self, grace: float) -> None:
        """Stop claiming; batches in flight finish (or are released) within ``grace`` s."""
        self._stopping = True
        self._wake.set()
        self.throttle.open()  # what is claimed goes out within the grace
        if self._tasks:
            self._tasks[-1].cancel()  # the gauges
            lanes = self._tasks[:-1]
            _done, pending = await asyncio.wait(lanes, timeout=grace)
            for task in pending:
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.throttle.stop()
        await self.sender.close()
        self.db.shutdown(wait=False)

    async def _db(self, func: Any, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.db, with_fresh_connections(func), *args)

    async def _lane(self) -> None:
        while not self._stopping:
            # Live traffic first (throttle.py): one small batch at a time, so
            # few rows sit leased and each batch's work on the loop is short.
            held = self.throttle.limited
            if held and self._batches:
                await asyncio.sleep(HELD_POLL)
                continue
            self._batches += 1
            try:
                worked = await self.run_once(HELD_BATCH if held else self.batch)
            except Exception:
                logger.exception("push worker batch failed; retrying after %.0fs", POLL)
                worked = 0
            finally:
                self._batches -= 1
            if not worked and not self._stopping:  # idle: wait for a commit or the poll
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL)

    async def run_once(self, batch: int | None = None) -> int:
        """One batch: claim, resolve, send, settle. Returns the rows claimed."""
        rows: list[Owed] = await self._db(outbox.claim, batch or self.batch)
        if not rows:
            return 0
        settlement = Settlement()
        jobs = await self._resolve(rows, settlement)
        if self._stopping:
            settlement.release.extend(outbox.ids(rows))
            await self._db(outbox.settle, settlement)
            return len(rows)
        now = timezone.now()
        sends = asyncio.gather(*(self._send(job, now) for job in jobs))
        outcomes = await self._keeping_lease(rows, sends)
        self._record(jobs, outcomes, settlement)
        await self._db(outbox.settle, settlement)
        return len(rows)

    async def _keeping_lease(
        self, rows: list[Owed], sends: asyncio.Future[list[Outcome]]
    ) -> list[Outcome]:
        """The outcomes of ``sends``, renewing the rows' lease while they
        take long (held back for live traffic): another worker must not
        claim rows this one is still sending."""
        try:
            while True:
                done, _ = await asyncio.wait((sends,), timeout=RENEW_EVERY)
                if done:
                    return await sends
                await self._db(outbox.renew, outbox.ids(rows))
        except asyncio.CancelledError:
            sends.cancel()
            raise

    async def _send(self, job: Job, now: datetime) -> Outcome:
        # Encrypted here, on the loop, one message per step: the crypto
        # holds the GIL (measured, docs/performance.md), so a thread adds no
        # capacity and would hold the loop off for up to CPython's 5 ms
        # switch interval at a time. Encrypting only once a send slot is
        # free spreads the work instead of one long run per batch.
        async with self._in_flight:
            await self.throttle.admit()  # live traffic first (throttle.py)
            body, headers = self._message(job, now)
            return await self.sender.send(
                job.target.endpoint, body, headers, subscription_id=job.target.id
            )

    async def _resolve(self, rows: list[Owed], settlement: Settlement) -> list[Job]:
        """The messages these rows owe now (presence, preferences, subscriptions)."""
        fresh = [r for r in rows if r.subscription_id is None]
        auto_users = sorted({r.user_id for r in fresh if r.mode == "auto"})
        counts = await asyncio.gather(*(presence.backend().count(u) for u in auto_users))
        online = {user for user, n in zip(auto_users, counts, strict=True) if n > 0}
        by_user, by_id, muted = await self._db(
            outbox.targets,
            [r.user_id for r in fresh],
            [r.subscription_id for r in rows if r.subscription_id is not None],
        )
        now = timezone.now()
        jobs: list[Job] = []
        for n, row in enumerate(rows, 1):
            if n % RESOLVE_SLICE == 0:
                await asyncio.sleep(0)  # a turn of the loop for live traffic
            notification = orjson.loads(row.payload)
            chosen = self._targets_of(row, notification, online, by_user, by_id, muted, now)
            if not chosen:
                settlement.done.append(row.id)
            jobs.extend(Job(row, target, notification) for target in chosen)
        return jobs

    def _targets_of(
        self,
        row: Owed,
        notification: dict[str, Any],
        online: set[str],
        by_user: dict[str, list[Target]],
        by_id: dict[int, tuple[str, Target]],
        muted: dict[str, list[str]],
        now: datetime,
    ) -> list[Target]:
        if row.expires_at <= now:
            metrics.PUSH_SENT.labels("expired").inc()
            return []
        if row.subscription_id is not None:  # a retry: only if still this user's
            owner, target = by_id.get(row.subscription_id, ("", None))
            return [target] if target is not None and owner == row.user_id else []
        if row.user_id in online and row.mode == "auto":
            metrics.PUSH_SENT.labels("online").inc()
            return []
        if is_muted(str(notification.get("type", "")), muted.get(row.user_id, ())):
            metrics.PUSH_SENT.labels("muted").inc()
            return []
        return [
            t for t in by_user.get(row.user_id, []) if endpoint_error(t.endpoint, self.cfg) is None
        ]

    def _message(self, job: Job, now: datetime) -> tuple[bytes, list[tuple[str, str]]]:
        """The encrypted body (RFC 8291) and headers of one push."""
        row, target, notification = job.row, job.target, job.notification
        ttl = max(0, int((row.expires_at - now).total_seconds()))
        headers = [
            ("TTL", str(ttl)),
            ("Urgency", self.cfg.urgency),
            ("Topic", message.topic(str(notification.get("type", "")))),
            ("Content-Encoding", "aes128gcm"),
            ("Content-Type", "application/octet-stream"),
            ("Authorization", self.signer.header(origin(target.endpoint))),
        ]
        plaintext = message.payload_bytes(notification)
        return message.encrypt(plaintext, p256dh=target.p256dh, auth=target.auth), headers

    def _record(self, jobs: list[Job], outcomes: list[Outcome], settlement: Settlement) -> None:
        now = timezone.now()
        finished: dict[int, bool] = {}
        for job, outcome in zip(jobs, outcomes, strict=True):
            row = job.row
            # A row still to resolve is always finished: per-subscription
            # retry rows replace it.
            finished.setdefault(row.id, True)
            if outcome.result == "retry":
                at = now + timedelta(seconds=retry_delay(row.attempts, outcome.retry_after))
                if at < row.expires_at:
                    settlement.retry.append((row, job.target.id, at, row.attempts + 1))
                    finished[row.id] = row.subscription_id is None
                    metrics.PUSH_SENT.labels("retry").inc()
                    continue
                outcome = Outcome("dropped", outcome.status)
                metrics.PUSH_SENT.labels("expired").inc()
            elif outcome.result == "gone":
                settlement.gone.append(job.target.id)
            elif outcome.result == "delivered":
                metrics.PUSH_LATENCY.observe(max(0.0, time.time() - row.committed_at.timestamp()))
            metrics.PUSH_SENT.labels(outcome.result).inc()
        settlement.done.extend(row_id for row_id, done in finished.items() if done)

    async def _gauges(self) -> None:
        while True:
            try:
                count, age = await self._db(outbox.depth)
                metrics.PUSH_OUTBOX_DEPTH.set(count)
                metrics.PUSH_OLDEST_OWED.set(age)
            except Exception:
                logger.warning("push outbox depth query failed", exc_info=True)
            await asyncio.sleep(GAUGE_EVERY)
