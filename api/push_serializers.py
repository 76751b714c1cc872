"""Request and response shapes of the Web Push endpoints (contract v1.1)."""

from __future__ import annotations

import binascii
from typing import Any

from django.conf import settings
from rest_framework import serializers

from api.serializers import StrictCharField
from notifications.push.config import b64url_decode
from notifications.push.endpoints import endpoint_error
from notifications.push.preferences import MAX_PATTERNS, valid_pattern


def _b64url_key(value: str, size: int, name: str) -> str:
    try:
        raw = b64url_decode(value)
    except (ValueError, binascii.Error) as exc:
        raise serializers.ValidationError(f"{name} must be base64url.") from exc
    if len(raw) != size or (name == "p256dh" and raw[0] != 4):
        raise serializers.ValidationError(
            f"{name} must be {'an uncompressed P-256 point' if size == 65 else f'{size} bytes'}."
        )
    return value.rstrip("=")


# What Chrome's PushSubscription.toJSON() looks like (the key is the P-256
# generator point, a valid public key; auth is 16 bytes).
SUBSCRIPTION_EXAMPLE: dict[str, Any] = {
    "endpoint": "https://fcm.googleapis.com/fcm/send/dQw4w9WgXcQ:APA91bExample",
    "expirationTime": None,
    "keys": {
        "p256dh": "BGsX0fLhLEJH-Lzm5WOkQPJ3A32BLeszoPShOUXYmMKW"
        "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU",
        "auth": "AAECAwQFBgcICQoLDA0ODw",
    },
}


class SubscriptionKeys(serializers.Serializer[dict[str, Any]]):
    p256dh = StrictCharField(max_length=128, help_text="The browser's P-256 key, base64url.")
    auth = StrictCharField(max_length=64, help_text="The 16-byte auth secret, base64url.")

    def validate_p256dh(self, value: str) -> str:
        return _b64url_key(value, 65, "p256dh")

    def validate_auth(self, value: str) -> str:
        return _b64url_key(value, 16, "auth")


class SubscriptionIn(serializers.Serializer[dict[str, Any]]):
    """``PushSubscription.toJSON()`` as the browser gives it."""

    endpoint = StrictCharField(
        max_length=2048,
        help_text="The push service URL: https, on a host in NOTIFY_PUSH_ALLOWED_HOSTS.",
    )
    keys = SubscriptionKeys()
    expirationTime = serializers.IntegerField(required=False, allow_null=True, min_value=0)

    def validate_endpoint(self, value: str) -> str:
        cfg = settings.NOTIFY_PUSH
        error = "Web Push is not configured." if cfg is None else endpoint_error(value, cfg)
        if error is not None:
            raise serializers.ValidationError(error)
        return value


class SubscriptionOut(serializers.Serializer[dict[str, Any]]):
    id = serializers.CharField()
    endpoint = serializers.CharField()
    created_at = serializers.CharField()


class SubscriptionList(serializers.Serializer[dict[str, Any]]):
    results = SubscriptionOut(many=True)


class PublicKey(serializers.Serializer[dict[str, Any]]):
    public_key = serializers.CharField(
        help_text="The VAPID public key (uncompressed P-256 point, base64url): "
        "PushManager.subscribe's applicationServerKey."
    )


class MutedPattern(StrictCharField):
    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        if not valid_pattern(value):
            raise serializers.ValidationError(
                "Must be a notification type, a prefix ending in '.*' (e.g. marketing.*), or '*'."
            )
        return value


class PushPreferences(serializers.Serializer[dict[str, Any]]):
    muted_types = serializers.ListField(
        child=MutedPattern(max_length=100),
        max_length=MAX_PATTERNS,
        help_text="Types that never reach this user by Web Push: exact types, "
        "prefixes such as marketing.* (marketing and everything under it), or *. "
        "The in-app feed and live frames are never muted.",
    )


class Preferences(serializers.Serializer[dict[str, Any]]):
    push = PushPreferences()
