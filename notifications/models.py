"""Storage: one row per (recipient, notification), and a counter per user.

``UserSequence`` is the per-user id allocator. Publishing increments it inside
the publishing transaction, which row-locks it until commit: commits for one
user are therefore serialized, and a user's ids increase in commit order with
no holes (a rolled-back publish rolls its increment back too). A consumer that
sees id N live knows every id below N is already committed.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class UserSequence(models.Model):
    user_id = models.CharField(max_length=128, primary_key=True)
    last_id = models.BigIntegerField(default=0)
    # Highest id the retention purge removed: a resume from below it is incomplete.
    purged_through = models.BigIntegerField(default=0)

    class Meta:
        db_table = "notify_user_sequence"

    def __str__(self) -> str:
        return f"{self.user_id}@{self.last_id}"


class Notification(models.Model):
    user_id = models.CharField(max_length=128)
    seq = models.BigIntegerField()  # the public id, per user
    event_id = models.UUIDField(default=uuid.uuid4)
    type = models.CharField(max_length=100)
    title = models.CharField(max_length=200, blank=True, default="")
    body = models.TextField(blank=True, default="")
    data = models.JSONField(default=dict)
    source = models.CharField(max_length=100)
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "notify_notification"
        constraints = [
            models.UniqueConstraint(fields=["user_id", "seq"], name="notify_user_seq_uniq"),
        ]
        indexes = [
            models.Index(
                fields=["user_id", "seq"],
                condition=Q(read_at__isnull=True),
                name="notify_unread_idx",
            ),
            models.Index(fields=["created_at"], name="notify_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}#{self.seq} {self.type}"


class IdempotencyRecord(models.Model):
    """The first answer to (publisher, Idempotency-Key), kept 24 h.

    Written in the publishing transaction, so the record exists exactly when
    the notifications do; its unique key makes concurrent duplicates wait for
    the first and then replay its answer, in any process.
    """

    source = models.CharField(max_length=100)
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    event_id = models.UUIDField()
    recipients = models.IntegerField()
    created_at = models.DateTimeField()

    class Meta:
        db_table = "notify_idempotency"
        constraints = [
            models.UniqueConstraint(fields=["source", "key"], name="notify_idem_uniq"),
        ]
        indexes = [models.Index(fields=["created_at"], name="notify_idem_created_idx")]

    def __str__(self) -> str:
        return f"{self.source}:{self.key}"
