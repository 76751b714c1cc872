"""The Django admin for support (docs/operations.md, "Admin"): read-only views
of notifications, users' sequences and idempotency records (Web Push:
notifications/push/admin.py).

Nothing here writes: change data through the API, so that sockets and streams
hear of it. Writes the admin does make (staff accounts in ``auth``) are
logged by ``log_admin_write``. Every list is one query for its rows whatever
the page size (no per-row lookups), and searches are exact matches; a plain
term is a user id, which the per-user index serves.

Notifications are read through ``notify_recipient_view`` (models.
NotificationRow): on PostgreSQL the recipient table has neither an id nor
the user id (the compact layout), and the admin refuses composite primary
keys. A notification's object id is ``user_id:seq``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from notifications.models import IdempotencyRecord, NotificationRow, UserSequence

logger = logging.getLogger(__name__)


@receiver(post_save, sender=LogEntry, dispatch_uid="notify-admin-write-log")
def log_admin_write(sender: type[LogEntry], instance: LogEntry, created: bool, **kw: Any) -> None:
    """Every write through the admin, in the service's log as well as the admin's."""
    if created:
        action = {1: "added", 2: "changed", 3: "deleted"}.get(instance.action_flag, "?")
        content_type: Any = instance.content_type
        logger.warning(
            "admin write: %s %s %s (id %s) by staff user id %s",
            action,
            content_type.model if content_type is not None else "?",
            instance.object_repr,
            instance.object_id,
            instance.user_id,
        )


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    show_full_result_count = False  # no second COUNT over the whole table
    show_facets = admin.ShowFacets.NEVER  # no COUNT per filter choice
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


class ReadFilter(admin.SimpleListFilter):
    title = "read state"
    parameter_name = "read"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Unread"), ("yes", "Read")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in ("yes", "no"):
            return queryset.filter(read_at__isnull=self.value() == "no")
        return queryset


@admin.register(NotificationRow)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("user_id", "seq", "type", "source", "title", "created", "is_read")
    list_filter = (ReadFilter, "day")
    # Custom terms (get_search_results): a plain term is a user id, served by
    # the (user_id, seq) index; an OR over several columns would scan the table.
    search_fields = ("=user_id",)
    search_help_text = (
        "A user id, an event id (UUID), type:<type> or source:<publisher> (exact matches)."
    )
    ordering = ("-day", "-seq")
    list_select_related = ("event",)  # the content, in the list's one query
    fields = (
        "user_id",
        "seq",
        "event_uuid",
        "type",
        "source",
        "title",
        "body",
        "data",
        "created",
        "read_at",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        rows: QuerySet[Any] = super().get_queryset(request)
        return rows.select_related("event")

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> NotificationRow | None:
        """``user_id:seq`` (a user id may hold colons: the id is after the
        last), looked up by user and id: the per-user index, not a scan of
        the view's computed id."""
        user_id, _colon, seq = object_id.rpartition(":")
        if not seq.isdigit() or not seq.isascii():
            return None
        found: NotificationRow | None = (
            self.get_queryset(request).filter(user_id=user_id, seq=int(seq)).first()
        )
        return found

    @admin.display(description="event id")
    def event_uuid(self, obj: NotificationRow) -> str:
        return str(obj.event.event_id)

    @admin.display(description="created at", ordering="day")
    def created(self, obj: NotificationRow) -> Any:
        return obj.event.created_at

    @admin.display(boolean=True, description="read", ordering="read_at")
    def is_read(self, obj: NotificationRow) -> bool:
        return obj.read_at is not None

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        event_id = _as_uuid(term)
        if event_id is not None:
            return queryset.filter(event__event_id=event_id), False
        field, colon, value = term.partition(":")
        if colon and field in ("type", "source", "user"):
            column = "user_id" if field == "user" else f"event__{field}"
            return queryset.filter(**{column: value.strip()}), False
        return super().get_search_results(request, queryset, search_term)

    def lookup_allowed(self, lookup: str, value: str, request: Any = None) -> bool:
        # Links from the other pages: ?user_id=... and ?event__event_id=...
        return lookup in ("user_id", "event__event_id") or super().lookup_allowed(
            lookup, value, request
        )


def _unread_count() -> Subquery:
    unread = (
        NotificationRow.objects.filter(user_id=OuterRef("user_id"), read_at__isnull=True)
        .order_by()
        .values("user_id")
        .annotate(count=Count("seq"))
        .values("count")
    )
    return Subquery(unread, output_field=IntegerField())


@admin.register(UserSequence)
class UserSequenceAdmin(ReadOnlyAdmin):
    """A user's sequence state: last id given, ids purged, unread count."""

    list_display = ("user_id", "last_id", "purged_through", "unread", "notifications")
    search_fields = ("=user_id",)
    search_help_text = "A user id (exact)."
    ordering = ("user_id",)
    fields = ("user_id", "last_id", "purged_through", "unread", "notifications")
    readonly_fields = ("unread", "notifications")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        rows: QuerySet[Any] = super().get_queryset(request)
        annotated: QuerySet[Any] = rows.annotate(unread_count=_unread_count())
        return annotated

    @admin.display(description="unread")
    def unread(self, obj: Any) -> int:
        return int(obj.unread_count or 0)

    @admin.display(description="notifications")
    def notifications(self, obj: UserSequence) -> str:
        url = reverse("admin:notifications_notificationrow_changelist")
        return format_html(
            '<a href="{}?{}">notifications of {}</a>',
            url,
            urlencode({"user_id": obj.user_id}),
            obj.user_id,
        )


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ("source", "key", "event_id", "recipients", "created_at", "notifications")
    list_filter = ("created_at",)
    search_fields = ("=source", "=key")
    search_help_text = "A publisher (source) or an Idempotency-Key (exact), or an event id."
    ordering = ("-id",)
    fields = (
        "source",
        "key",
        "request_hash",
        "event_id",
        "recipients",
        "created_at",
        "notifications",
    )
    readonly_fields = ("notifications",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        event_id = _as_uuid(search_term)
        if event_id is not None:
            return queryset.filter(event_id=event_id), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="notifications")
    def notifications(self, obj: IdempotencyRecord) -> str:
        url = reverse("admin:notifications_notificationrow_changelist")
        return format_html(
            '<a href="{}?{}">the notifications of this publish</a>',
            url,
            urlencode({"event__event_id": str(obj.event_id)}),
        )
