"""PostgreSQL: plain publish groups committed on the event loop itself.

A publication without an idempotency key, owing no Web Push, of at most
``pg_writes.COMBINED_MAX_ROWS`` recipients (``eligible``) waits for a group
of such publications on its own event loop (group_commit.LoopGroupCommitter,
one per loop). The group's rate limit goes to Redis on the loop's async
client and its one statement on the loop's own PostgreSQL connection
(notifications/db_loop.py), in autocommit: no writer thread, no thread hop
and no GIL handed back and forth per group (docs/performance.md, "Publish
path, fifth round"). Every other publication keeps the writer thread
(notifications/services.py), and SQLite keeps it for all, as do
synchronous callers (``services.notifications_publish``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from notifications import db_loop, pg_writes
from notifications.group_commit import LoopGroupCommitter
from notifications.publishing import Admission, PlainGroup, Publication, PublishOutcome
from notifications.push import services as push_services
from notifications.ratelimit import publisher_limiter

_committers: dict[asyncio.AbstractEventLoop, LoopGroupCommitter[Publication, PublishOutcome]] = {}


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
    committer = _committers.get(loop)
    if committer is None:
        for old in [lp for lp in _committers if lp.is_closed()]:
            del _committers[old]
        committer = _committers[loop] = LoopGroupCommitter(
            _commit,
            size_of=lambda p: max(1, len(p.recipients)),
            key_of=lambda p: p.source,
            # A group's rows fit the one statement.
            max_size=pg_writes.COMBINED_MAX_ROWS,
            # A statement refused fails only its own request; one that got
            # no answer may have committed: its group gets the 503.
            retry_alone=lambda error: not isinstance(error, db_loop.ConnectionLost),
        )
    return await committer.submit(publication)


async def close() -> None:
    """This loop's groups committed (those in flight and those waiting),
    then its connections closed: the ASGI shutdown, after uvicorn has
    finished its requests (a request that went away left its group here)."""
    committer = _committers.pop(asyncio.get_running_loop(), None)
    if committer is not None:
        await committer.idle()
    await db_loop.close()


async def _commit(publications: Sequence[Publication]) -> list[PublishOutcome]:
    admission = Admission(publications)
    for source, sizes in admission.calls():
        admission.answer(source, *await publisher_limiter.admit_async(source, sizes))
    group = admission.group()
    if group:
        plain = PlainGroup(group)
        last_ids = await pg_writes.allocate_and_insert_on_loop(
            plain.users, plain.counts, plain.rows
        )
        admission.stored(plain.committed(last_ids))
    return admission.outcomes()
