"""Web Push endpoints (contract v1.1): the VAPID public key, a user's push
subscriptions and preferences. With Web Push off they all answer 404."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import push_serializers as ps
from api.parsers import require_json
from api.schema import errors, path_example
from api.views import UserView, _user
from notifications.push import selectors, services
from notifications.push.config import PushSettings
from notifications.rendering import timestamp

OFF = "Web Push is not configured on this service."


def _require_push() -> PushSettings:
    cfg: PushSettings | None = settings.NOTIFY_PUSH
    if cfg is None:
        raise NotFound(OFF)
    return cfg


def _subscription(row: Any) -> dict[str, str]:
    return {
        "id": str(row.pk),
        "endpoint": row.endpoint,
        "created_at": timestamp(row.created_at) or "",
    }


class PublicKeyView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        responses={200: ps.PublicKey, **errors(404)},
        summary="The VAPID public key (no auth; 404 when Web Push is off)",
    )
    def get(self, request: Request) -> Response:
        return Response({"public_key": _require_push().public_key})


class PushSubscriptionsView(UserView):
    @extend_schema(
        request=ps.SubscriptionIn,
        examples=[
            OpenApiExample(
                "A browser's PushSubscription.toJSON()",
                value=ps.SUBSCRIPTION_EXAMPLE,
                request_only=True,
            )
        ],
        responses={
            201: ps.SubscriptionOut,
            200: ps.SubscriptionOut,
            **errors(400, 401, 404, 413, 415),
        },
        summary="Register this browser's push subscription (200: already registered)",
    )
    def post(self, request: Request) -> Response:
        _require_push()
        require_json(request)
        body = ps.SubscriptionIn(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        result = services.subscription_register(
            user_id=_user(request),
            endpoint=data["endpoint"],
            p256dh=data["keys"]["p256dh"],
            auth=data["keys"]["auth"],
            expiration_time=data.get("expirationTime"),
        )
        return Response(_subscription(result.subscription), status=201 if result.created else 200)

    @extend_schema(
        responses={200: ps.SubscriptionList, **errors(401, 404)}, summary="My push subscriptions"
    )
    def get(self, request: Request) -> Response:
        _require_push()
        rows = selectors.subscriptions_of(user_id=_user(request))
        return Response({"results": [_subscription(row) for row in rows]})


class PushSubscriptionView(UserView):
    @extend_schema(
        parameters=[path_example("subscription_id", "1")],
        responses={204: None, **errors(401, 404)},
        summary="Remove a push subscription",
    )
    def delete(self, request: Request, subscription_id: str) -> Response:
        _require_push()
        found = subscription_id.isdigit() and len(subscription_id) < 19
        if not found or not services.subscription_delete(
            user_id=_user(request), subscription_id=int(subscription_id)
        ):
            raise NotFound("No such push subscription.")
        return Response(status=204)


class PreferencesView(UserView):
    @extend_schema(responses={200: ps.Preferences, **errors(401, 404)}, summary="My preferences")
    def get(self, request: Request) -> Response:
        _require_push()
        muted = selectors.muted_types(user_id=_user(request))
        return Response({"push": {"muted_types": muted}})

    @extend_schema(
        request=ps.Preferences,
        examples=[
            OpenApiExample(
                "Mute marketing",
                value={"push": {"muted_types": ["marketing.*"]}},
                request_only=True,
            )
        ],
        responses={200: ps.Preferences, **errors(400, 401, 404, 413, 415)},
        summary="Replace my preferences (push.muted_types: types muted for Web Push only)",
    )
    def put(self, request: Request) -> Response:
        _require_push()
        require_json(request)
        body = ps.Preferences(data=request.data)
        body.is_valid(raise_exception=True)
        muted = services.preferences_set(
            user_id=_user(request), muted_types=body.validated_data["push"]["muted_types"]
        )
        return Response({"push": {"muted_types": muted}})
