"""Each new stream's opening read (``selectors.stream_start``) from the event loop.

On PostgreSQL the openings requested together are read together: one
statement on the loop's own connections (notifications/db_loop.py) answers
every handshake waiting for its opening, each user's sequence, unread count
and, with ``since``, first replay page as wire JSON (wire_sql). In a
reconnect storm that replaces, per handshake, a worker thread's hop (and the
GIL handed back and forth), Django's connection cleanups and two round trips
(docs/performance.md, "Handshakes, third round").

Batching adds no wait: the first opening of a loop turn starts a reader
that takes every opening asked for by then; while ``db_loop.pool_size()``
readers are busy, further openings queue for the next statement. The
answers are the same as ``stream_start``'s (tests/notifications/
test_selectors.py compares them). Elsewhere (SQLite) ``stream_start`` runs
in a worker thread as before.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from typing import Any

import orjson

from notifications import db_loop, wire_sql
from notifications.db import off_loop
from notifications.selectors import SequenceState, StreamStart, stream_start

# Openings per statement: a storm's queue is read in a few statements of
# this size rather than one huge one (the answer is held in memory once).
MAX_BATCH = 200

# q: the batch (index, user, since, page limit) as one JSON parameter, so
# that any user id is a value, never SQL. A user's page is read only with a
# since; rows after it exist only up to last_id (ids are committed in order),
# so the page is what stream_start reads when last_id > since.
_SQL = (
    "SELECT q.i, s.last_id, s.purged_through, "  # noqa: S608 - fixed text only
    "(SELECT COUNT(*) FROM notify_recipient r WHERE r.user_key = s.key AND r.read_at IS NULL), "
    "CASE WHEN q.since IS NOT NULL THEN ("
    + wire_sql.correlated(user="q.u", where="AND seq > q.since", limit="q.lim")
    + ") END "
    "FROM json_to_recordset(%s::json) AS q(i int, u text, since bigint, lim int) "
    "LEFT JOIN notify_user_sequence s ON s.user_id = q.u"
)

_Request = tuple[str, int | None, int, "asyncio.Future[StreamStart]"]


async def stream_start_async(*, user_id: str, since: int | None, limit: int = 500) -> StreamStart:
    """What ``stream_start`` answers, read from the event loop."""
    if not db_loop.available():
        opening: StreamStart = await off_loop(stream_start)(
            user_id=user_id, since=since, limit=limit
        )
        return opening
    return await _reader().read(user_id, since, limit)


class _Reader:
    """One event loop's openings waiting for a statement, and its readers."""

    def __init__(self, readers: int) -> None:
        self.pending: deque[_Request] = deque()
        self.readers = readers
        self.running: set[asyncio.Task[None]] = set()

    async def read(self, user_id: str, since: int | None, limit: int) -> StreamStart:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StreamStart] = loop.create_future()
        self.pending.append((user_id, since, limit, future))
        if len(self.running) < self.readers:
            # A context of its own: not the first handshake's (its log ids).
            reader = loop.create_task(self._read_pending(), context=contextvars.Context())
            self.running.add(reader)
            reader.add_done_callback(self.running.discard)
        return await future

    async def _read_pending(self) -> None:
        await asyncio.sleep(0)  # the openings asked for in this loop turn join
        while self.pending:
            count = min(MAX_BATCH, len(self.pending))
            batch = [self.pending.popleft() for _ in range(count)]
            batch = [request for request in batch if not request[3].done()]  # gone
            if batch:
                await _answer(batch)


async def _answer(batch: list[_Request]) -> None:
    """Read ``batch`` in one statement and answer each waiting opening (or
    hand each the error: the handshake fails as a thread's read would)."""
    asked = [{"i": i, "u": u, "since": s, "lim": n} for i, (u, s, n, _) in enumerate(batch)]
    try:
        rows = await db_loop.fetch_all(_SQL, [orjson.dumps(asked).decode()])
        for row in rows:
            future = batch[row[0]][3]
            if not future.done():
                future.set_result(_opening(row))
    except Exception as exc:
        for *_, future in batch:
            if not future.done():
                future.set_exception(exc)
        return
    except BaseException:  # cancelled (shutdown): nothing waits forever
        for *_, future in batch:
            future.cancel()
        raise
    for *_, future in batch:
        if not future.done():  # never: one row per opening asked for
            future.set_exception(RuntimeError("no answer for this opening"))


def _opening(row: tuple[Any, ...]) -> StreamStart:
    _, last_id, purged_through, unread, page = row
    sequence = SequenceState(last_id=last_id or 0, purged_through=purged_through or 0)
    return StreamStart(sequence, orjson.loads(page) if page else [], int(unread))


_readers: dict[asyncio.AbstractEventLoop, _Reader] = {}


def _reader() -> _Reader:
    loop = asyncio.get_running_loop()
    reader = _readers.get(loop)
    if reader is None:
        for old in [lp for lp in _readers if lp.is_closed()]:
            del _readers[old]
        reader = _readers[loop] = _Reader(db_loop.pool_size()[1])
    return reader
