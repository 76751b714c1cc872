"""Web Push in the Django admin (docs/operations.md, "Admin"): subscriptions
and the outbox, read-only like the rest of notifications/admin.py.

Endpoints are capability URLs and ``p256dh``/``auth`` the encryption keys:
no page shows them, only the endpoint's host and a masked tail. Lists are one
query for their rows whatever the page size (no per-row lookups).
"""

from __future__ import annotations

from typing import Any

import orjson
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from notifications.admin import ReadOnlyAdmin
from notifications.push.endpoints import masked
from notifications.push.models import PushOutbox, PushSubscription


def _notifications_link(user_id: str) -> str:
    url = reverse("admin:notifications_notificationrow_changelist")
    return format_html(
        '<a href="{}?{}">notifications of {}</a>', url, urlencode({"user_id": user_id}), user_id
    )


@admin.register(PushSubscription)
class PushSubscriptionAdmin(ReadOnlyAdmin):
    list_display = ("user_id", "endpoint_masked", "created_at", "expiration_time")
    search_fields = ("=user_id",)
    search_help_text = "A user id (exact)."
    ordering = ("-id",)
    # Never "endpoint", "p256dh" or "auth": a read-only detail page shows
    # every listed field's value.
    fields = ("user_id", "endpoint_masked", "created_at", "expiration_time", "notifications")
    readonly_fields = ("endpoint_masked", "notifications")

    @admin.display(description="endpoint (host, masked)")
    def endpoint_masked(self, obj: PushSubscription) -> str:
        return masked(obj.endpoint)

    @admin.display(description="notifications")
    def notifications(self, obj: PushSubscription) -> str:
        return _notifications_link(obj.user_id)


def _notification(obj: PushOutbox) -> dict[str, Any]:
    try:
        found = orjson.loads(obj.payload)
    except orjson.JSONDecodeError:
        return {}
    return found if isinstance(found, dict) else {}


@admin.register(PushOutbox)
class PushOutboxAdmin(ReadOnlyAdmin):
    """Owed pushes: one row per recipient still to resolve, or one message to
    one subscription waiting for its retry."""

    list_display = (
        "user_id",
        "notification",
        "mode",
        "target",
        "attempts",
        "next_attempt_at",
        "committed_at",
    )
    list_filter = ("mode",)
    search_fields = ("=user_id",)
    search_help_text = "A user id (exact)."
    ordering = ("next_attempt_at",)  # the due index: the next to be tried first
    fields = (
        "user_id",
        "notification",
        "mode",
        "target",
        "attempts",
        "next_attempt_at",
        "committed_at",
        "expires_at",
        "notifications",
    )
    readonly_fields = ("notification", "target", "notifications")

    @admin.display(description="notification")
    def notification(self, obj: PushOutbox) -> str:
        found = _notification(obj)
        return f"#{found.get('id', '?')} {found.get('type', '')}".strip()

    @admin.display(description="subscription")
    def target(self, obj: PushOutbox) -> str:
        # The id, not the row: no per-row query, and no endpoint.
        return "all of the user's" if obj.subscription_id is None else str(obj.subscription_id)

    @admin.display(description="notifications")
    def notifications(self, obj: PushOutbox) -> str:
        return _notifications_link(obj.user_id)
