"""Request and response shapes. Validation only; no business rule lives here."""

from __future__ import annotations

import re
from typing import Any

import orjson
from django.core.validators import RegexValidator
from rest_framework import serializers

from notifications.ids import parse_id

MAX_RECIPIENTS = 10_000
MAX_DATA_BYTES = 64 * 1024
MAX_READ_IDS = 10_000
PUSH_MODES = ("auto", "always", "never")
_TYPE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}\Z")


def check_text(value: str) -> str:
    """Text that every database stores: no NUL, no lone surrogate."""
    if "\x00" in value:
        raise serializers.ValidationError("NUL characters are not allowed.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise serializers.ValidationError("Text must be valid Unicode.") from exc
    return value


def _has_nul(value: Any) -> bool:
    """A NUL in any key or string of a JSON value (PostgreSQL's jsonb refuses them)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class StrictCharField(serializers.CharField):
    """A JSON string only (no number coercion), kept exactly as sent (no trimming)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.")
        return check_text(super().to_internal_value(data))


class PublishRequest(serializers.Serializer[dict[str, Any]]):
    recipients = serializers.ListField(
        child=StrictCharField(min_length=1, max_length=128),
        min_length=1,
        max_length=MAX_RECIPIENTS,
        help_text="User ids, 1..10000 strings of 1..128 characters; duplicates count once.",
    )
    type = StrictCharField(
        max_length=100,
        help_text="1..100 characters of [A-Za-z0-9_.:-], e.g. order.shipped",
        # A validator (not a validate_type method) so the OpenAPI document
        # carries the pattern too.
        validators=[
            RegexValidator(
                _TYPE,
                message="Must be 1..100 characters of letters, digits, '_', '.', ':' or '-'.",
            )
        ],
    )
    title = StrictCharField(max_length=200, required=False, allow_blank=True, default="")
    body = StrictCharField(max_length=2000, required=False, allow_blank=True, default="")
    data = serializers.JSONField(  # type: ignore[assignment]
        required=False, default=dict, help_text="A JSON object, at most 64 KiB as compact JSON."
    )
    push = serializers.ChoiceField(
        choices=PUSH_MODES,
        required=False,
        default="auto",
        help_text="Web Push to the recipients' browsers: auto (those with no open socket "
        "or stream when the notification is committed), always, or never.",
    )

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["The body must be a JSON object."]}
            )
        if "recipients" in data and not isinstance(data["recipients"], list):
            raise serializers.ValidationError({"recipients": ["Must be a list of user ids."]})
        result: dict[str, Any] = super().to_internal_value(data)
        return result

    def validate_data(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        try:
            encoded = orjson.dumps(value)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise serializers.ValidationError("Must be JSON-serializable text.") from exc
        if len(encoded) > MAX_DATA_BYTES:
            raise serializers.ValidationError(
                f"Must be at most {MAX_DATA_BYTES} bytes as compact JSON (is {len(encoded)})."
            )
        if _has_nul(value):
            raise serializers.ValidationError("NUL characters are not allowed.")
        return value


def _clean_text(value: str) -> bool:
    """``check_text`` as a yes/no, without building an error."""
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _short_clean(value: Any, low: int, high: int) -> bool:
    return type(value) is str and low <= len(value) <= high and _clean_text(value)


def publish_body_if_valid(raw: Any) -> dict[str, Any] | None:
    """``PublishRequest``'s validated data for a body it accepts, else None.

    The serializer costs about as much as the rest of a publish (fields
    deep-copied per instance, a field object per recipient); a well-formed
    body passes these plain checks instead, and anything else goes through
    the serializer for its exact errors. Property-tested against it
    (tests/api/test_publish_validation.py): whenever this returns data, the
    serializer returns the same data.
    """
    if type(raw) is not dict:
        return None
    recipients = raw.get("recipients")
    if type(recipients) is not list or not 1 <= len(recipients) <= MAX_RECIPIENTS:
        return None
    for recipient in recipients:
        if not _short_clean(recipient, 1, 128):
            return None
    kind = raw.get("type")
    if type(kind) is not str or not _TYPE.match(kind):
        return None
    title = raw.get("title", "")
    body = raw.get("body", "")
    if not (_short_clean(title, 0, 200) and _short_clean(body, 0, 2000)):
        return None
    data = raw.get("data", {})
    if type(data) is not dict or _has_nul(data):
        return None
    try:
        if len(orjson.dumps(data)) > MAX_DATA_BYTES:
            return None
    except (TypeError, orjson.JSONEncodeError):
        return None
    push = raw.get("push", "auto")
    if type(push) is not str or push not in PUSH_MODES:
        return None
    return {
        "recipients": recipients,
        "type": kind,
        "title": title,
        "body": body,
        "data": data,
        "push": push,
    }


class ErrorDetail(serializers.Serializer[dict[str, Any]]):
    detail = serializers.CharField()


class PublishResponse(serializers.Serializer[dict[str, Any]]):
    event_id = serializers.UUIDField()
    recipients = serializers.IntegerField()


class NotificationOut(serializers.Serializer[dict[str, Any]]):
    id = serializers.CharField(help_text="Decimal digits; increasing per user.")
    type = serializers.CharField()
    title = serializers.CharField()
    body = serializers.CharField()
    data = serializers.DictField()  # type: ignore[assignment]
    source = serializers.CharField()  # type: ignore[assignment]
    created_at = serializers.CharField()
    read_at = serializers.CharField(allow_null=True)


class NotificationPage(serializers.Serializer[dict[str, Any]]):
    results = NotificationOut(many=True)
    next = serializers.CharField(allow_null=True)


class UnreadCount(serializers.Serializer[dict[str, Any]]):
    unread = serializers.IntegerField()


class ListQuery(serializers.Serializer[dict[str, Any]]):
    unread = serializers.BooleanField(required=False, default=False)
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=200)
    cursor = serializers.CharField(required=False, max_length=40)


class NotificationId(serializers.CharField):
    def to_internal_value(self, data: Any) -> int:  # type: ignore[override]
        parsed = parse_id(data)
        if parsed is None:
            raise serializers.ValidationError("Must be a notification id string of digits.")
        return parsed


class JsonBoolean(serializers.BooleanField):
    """A JSON body's ``true``/``false`` only: DRF's BooleanField also takes
    ``"true"``, ``1``, ``"yes"``..., which a JSON API should refuse."""

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)
        raise AssertionError("unreachable")  # fail() raises


class MarkReadRequest(serializers.Serializer[dict[str, Any]]):
    ids = serializers.ListField(
        child=NotificationId(), required=False, min_length=1, max_length=MAX_READ_IDS
    )
    all = JsonBoolean(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        has_ids = "ids" in attrs
        wants_all = attrs.get("all") is True
        if has_ids == wants_all:
            raise serializers.ValidationError('Send either "ids": [...] or "all": true.')
        return attrs


class MarkReadResponse(serializers.Serializer[dict[str, Any]]):
    updated = serializers.IntegerField()


class Presence(serializers.Serializer[dict[str, Any]]):
    user_id = serializers.CharField()
    online = serializers.BooleanField()
    connections = serializers.IntegerField()
