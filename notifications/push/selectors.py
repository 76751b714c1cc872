"""Reads for the Web Push user API."""

from __future__ import annotations

from notifications.push.models import PushPreference, PushSubscription


def subscriptions_of(*, user_id: str) -> list[PushSubscription]:
    return list(PushSubscription.objects.filter(user_id=user_id).order_by("pk"))


def muted_types(*, user_id: str) -> list[str]:
    found = PushPreference.objects.filter(user_id=user_id).values_list("muted_types", flat=True)
    return list(found.first() or [])
