"""PostgreSQL: plain publish groups committed on the event loop itself.

A publication without an idempotency key, owing no Web Push, of at most
``pg_writes.COMBINED_MAX_ROWS`` recipients (``eligible``) waits for a group
of such publications on its own event loop (group_commit.LoopGroupCommitter,
one per loop). The group's rate limit goes to Redis on the loop's async
client and its one statement on the loop's own PostgreSQL connection
(notifications/db_loop.py, kept between groups), in autocommit: no writer thread, no thread hop
and no GIL handed back and forth per group (docs/performance.md, "Publish
path, fifth round"). Every other publication keeps the writer thread
(notifications/services.py), and SQLite keeps it for all, as do
synchronous callers (``services.notifications_publish``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from notifications import db_loop, pg_writes
from notifications.admission import Admission
from notifications.group_commit import LoopGroupCommitter
from notifications.publishing import PlainGroup, Publication, PublishOutcome
from notifications.push import services as push_services
from notifications.ratelimit import publisher_limiter

logger = logging.getLogger(__name__)


class _LoopWriter:
    """A loop's group committer and the one connection its groups use (one
    group in flight at a time: one connection, kept)."""

    def __init__(self) -> None:
        self.connection = db_loop.KeptConnection()
        self.committer: LoopGroupCommitter[Publication, PublishOutcome] = LoopGroupCommitter(
            lambda group: _commit(self.connection, group),
            size_of=lambda p: max(1, len(p.recipients)),
            key_of=lambda p: p.source,
            # A group's rows fit the one statement.
            max_size=pg_writes.COMBINED_MAX_ROWS,
            # A statement refused fails only its own request; one that got
            # no answer may have committed: its group gets the 503.
            retry_alone=lambda error: not isinstance(error, db_loop.ConnectionLost),
        )


_writers: dict[asyncio.AbstractEventLoop, _LoopWriter] = {}


def eligible(publication: Publication) -> bool:
    """Whether ``publication`` goes in a plain group on the loop."""
    return (
        db_loop.available()
        and publication.idempotency_key is None
        and len(set(publication.recipients)) <= pg_writes.COMBINED_MAX_ROWS
        and not push_services.may_owe([publication.push])
    )


async def submit(publication: Publication) -> PublishOutcome:
    """``publication``'s outcome, committed in a plain group on this loop."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        for old in [lp for lp in _writers if lp.is_closed()]:
            del _writers[old]
        writer = _writers[loop] = _LoopWriter()
    return await writer.committer.submit(publication)


def committer() -> LoopGroupCommitter[Publication, PublishOutcome] | None:
    """This loop's group committer, if it has published."""
    writer = _writers.get(asyncio.get_running_loop())
    return None if writer is None else writer.committer


async def close() -> None:
    """This loop's groups committed (those in flight and those waiting),
    then its connections closed: the ASGI shutdown, after uvicorn has
    finished its requests (a request that went away left its group here)."""
    writer = _writers.pop(asyncio.get_running_loop(), None)
    if writer is not None:
        if writer.committer.busy():
            # Operators see why the exit waits (a commit held by a lock, say).
            logger.info("shutdown: waiting for the publish groups in flight on this loop")
            await writer.committer.idle()
        await writer.connection.close()
    await publisher_limiter.close_async()
    await db_loop.close()


async def _commit(
    connection: db_loop.KeptConnection, publications: Sequence[Publication]
) -> list[PublishOutcome]:
    admission = Admission(publications)
    for source, sizes in admission.calls():
        admission.answer(source, *await publisher_limiter.admit_async(source, sizes))
    group = admission.group()
    if group:
        plain = PlainGroup(group)
        last_ids = await pg_writes.allocate_and_insert_on_loop(
            connection, plain.users, plain.counts, plain.rows
        )
        admission.stored(plain.committed(last_ids))
    return admission.outcomes()
