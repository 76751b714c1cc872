"""Idempotency keys: a publish request's key claimed inside its transaction.

A key belongs to one request body (its hash) for ``IDEMPOTENCY_TTL``; the same
body again gets the first request's answer, another body a conflict.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction

from notifications.errors import IdempotencyConflict
from notifications.models import IdempotencyRecord

IDEMPOTENCY_TTL = timedelta(hours=24)


def claim(
    *,
    source: str,
    key: str,
    request_hash: str,
    event_id: uuid.UUID,
    recipients: int,
    now: datetime,
) -> tuple[uuid.UUID, int] | None:
    """Claim the key for this request (None), or return the first request's
    (event id, recipients); raise IdempotencyConflict for another body.

    The insert takes the unique index entry; a concurrent duplicate blocks on
    it until the first commits (then sees its record) or rolls back (then wins).
    """
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                source=source,
                key=key,
                request_hash=request_hash,
                event_id=event_id,
                recipients=recipients,
                created_at=now,
            )
        return None
    except IntegrityError:
        record = IdempotencyRecord.objects.select_for_update().get(source=source, key=key)
    if record.created_at < now - IDEMPOTENCY_TTL:
        # Expired: the key starts a new life with this request.
        record.request_hash = request_hash
        record.event_id = event_id
        record.recipients = recipients
        record.created_at = now
        record.save()
        return None
    if record.request_hash != request_hash:
        raise IdempotencyConflict()
    return record.event_id, record.recipients
