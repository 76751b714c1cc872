"""Storage for Web Push: subscriptions, per-user preferences, and the outbox.

``PushOutbox`` is the durable debt: a row is inserted in the publishing
transaction for every recipient who has a subscription, so a committed
notification owes its pushes even if the process dies a moment later. A row
with no ``subscription`` is still to be resolved (presence for ``auto``,
preferences, the user's subscriptions); a row with one is a single message
waiting for a retry. Workers lease rows by moving ``next_attempt_at`` into
the future (notifications/push/outbox.py).
"""

from __future__ import annotations

from django.db import models


class PushSubscription(models.Model):
    user_id = models.CharField(max_length=128, db_index=True)
    # A capability URL: never logged. Unique: a browser profile has one
    # subscription per push service, owned by whoever registered it last.
    endpoint = models.CharField(max_length=2048, unique=True)
    p256dh = models.CharField(max_length=128)
    auth = models.CharField(max_length=64)
    expiration_time = models.BigIntegerField(null=True, blank=True)  # ms since epoch
    created_at = models.DateTimeField()

    class Meta:
        db_table = "notify_push_subscription"

    def __str__(self) -> str:
        return f"push subscription {self.pk} of {self.user_id}"


class PushPreference(models.Model):
    user_id = models.CharField(max_length=128, primary_key=True)
    # Type patterns muted for push: exact types, "prefix.*", or "*".
    muted_types = models.JSONField(default=list)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "notify_push_preference"

    def __str__(self) -> str:
        return f"push preferences of {self.user_id}"


class PushOutbox(models.Model):
    user_id = models.CharField(max_length=128)
    # None: not yet resolved to subscriptions; else one message to retry.
    subscription = models.ForeignKey(
        PushSubscription, null=True, blank=True, on_delete=models.CASCADE
    )
    mode = models.CharField(max_length=8)  # "auto" or "always"
    payload = models.TextField()  # the notification as compact JSON
    committed_at = models.DateTimeField()
    expires_at = models.DateTimeField()  # committed_at + TTL: no attempt after it
    next_attempt_at = models.DateTimeField()
    attempts = models.IntegerField(default=0)

    class Meta:
        db_table = "notify_push_outbox"
        indexes = [models.Index(fields=["next_attempt_at"], name="notify_push_due_idx")]

    def __str__(self) -> str:
        return f"owed push {self.pk} to {self.user_id}"
