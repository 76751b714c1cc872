"""Writes for Web Push: subscriptions and preferences (user API), and the
outbox rows the publishing transaction owes (``record_owed``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications.push import outbox
from notifications.push.models import PushOutbox, PushPreference, PushSubscription
from notifications.rendering import NotificationDict

PUSH_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class Subscribed:
    subscription: PushSubscription
    created: bool


@transaction.atomic
def subscription_register(
    *, user_id: str, endpoint: str, p256dh: str, auth: str, expiration_time: int | None
) -> Subscribed:
    """Store the browser's subscription for ``user_id``. The same endpoint again
    keeps its id (with fresh keys); one registered by another user moves here."""
    existing = PushSubscription.objects.select_for_update().filter(endpoint=endpoint).first()
    if existing is None:
        created = PushSubscription.objects.create(
            user_id=user_id,
            endpoint=endpoint,
            p256dh=p256dh,
            auth=auth,
            expiration_time=expiration_time,
            created_at=timezone.now(),
        )
        return Subscribed(created, created=True)
    moved = existing.user_id != user_id
    if moved:
        # Pushes still owed to the previous owner must not reach the new one.
        PushOutbox.objects.filter(subscription=existing).delete()
    existing.user_id = user_id
    existing.p256dh = p256dh
    existing.auth = auth
    existing.expiration_time = expiration_time
    existing.save(update_fields=["user_id", "p256dh", "auth", "expiration_time"])
    return Subscribed(existing, created=moved)


def subscription_delete(*, user_id: str, subscription_id: int) -> bool:
    deleted, _ = PushSubscription.objects.filter(user_id=user_id, pk=subscription_id).delete()
    return deleted > 0


def user_push_data_delete(*, user_id: str) -> None:
    """Everything Web Push holds about a user (subscriptions, owed pushes,
    preferences): for deleting a user's data (docs/push.md)."""
    with transaction.atomic():
        PushOutbox.objects.filter(user_id=user_id).delete()
        PushSubscription.objects.filter(user_id=user_id).delete()
        PushPreference.objects.filter(user_id=user_id).delete()


def preferences_set(*, user_id: str, muted_types: Sequence[str]) -> list[str]:
    muted = list(dict.fromkeys(muted_types))
    PushPreference.objects.update_or_create(
        user_id=user_id, defaults={"muted_types": muted, "updated_at": timezone.now()}
    )
    return muted


def may_owe(modes: Iterable[str]) -> bool:
    """Whether publications with these push modes can owe Web Pushes: Web
    Push is on and one of them is not ``never`` (``record_owed`` then looks
    for the recipients' subscriptions in the publishing transaction)."""
    return settings.NOTIFY_PUSH is not None and any(mode != "never" for mode in modes)


def record_owed(
    notifications: Sequence[tuple[str, NotificationDict, str]], *, committed_at: datetime
) -> int:
    """Inside the publishing transaction: one outbox row per (recipient,
    notification) whose push mode is not ``never`` and whose recipient has a
    subscription. Returns the rows written. Does nothing with Web Push off."""
    cfg = settings.NOTIFY_PUSH
    if cfg is None:
        return 0
    wanted = [(user, n, mode) for user, n, mode in notifications if mode != "never"]
    if not wanted:
        return 0
    users = sorted({user for user, _n, _m in wanted})
    subscribed: set[str] = set()
    for start in range(0, len(users), 1000):
        chunk = users[start : start + 1000]
        subscribed.update(
            PushSubscription.objects.filter(user_id__in=chunk).values_list("user_id", flat=True)
        )
    expires = committed_at + timedelta(seconds=cfg.ttl)
    rows = [
        outbox.NewRow(
            user_id=user,
            mode=mode,
            payload=orjson.dumps(_payload(notification)).decode(),
            committed_at=committed_at,
            expires_at=expires,
        )
        for user, notification, mode in wanted
        if user in subscribed
    ]
    outbox.insert(rows)
    if rows:
        from notifications.push import runtime

        transaction.on_commit(runtime.wake)
    return len(rows)


def _payload(notification: NotificationDict) -> dict[str, object]:
    keys = ("id", "type", "title", "body", "data", "created_at")
    return {key: notification[key] for key in keys}
