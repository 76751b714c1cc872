"""HTTP transport: authenticate, parse, call one service or selector, render."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlencode

from asgiref.sync import async_to_sync
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers as drf_serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api import serializers as s
from api.authentication import PublisherKeyAuthentication, User, UserTokenAuthentication
from api.parsers import LimitedJSONParser, require_json
from api.schema import errors, path_example
from notifications import presence, selectors, services
from notifications.credentials import Publisher
from notifications.errors import NotificationNotFound
from notifications.ids import parse_id


def _publisher(request: Request) -> str:
    user = request.user
    assert isinstance(user, Publisher)  # guaranteed by PublisherKeyAuthentication
    return user.name


def _user(request: Request) -> str:
    user = request.user
    assert isinstance(user, User)  # guaranteed by UserTokenAuthentication
    return user.user_id


class PublisherView(APIView):
    authentication_classes = [PublisherKeyAuthentication]
    parser_classes = [LimitedJSONParser]


class UserView(APIView):
    authentication_classes = [UserTokenAuthentication]
    parser_classes = [LimitedJSONParser]


class PresenceView(PublisherView):
    @extend_schema(
        responses={200: s.Presence, **errors(401)},
        parameters=[path_example("user_id", "alice")],
        summary="Open sockets of a user, all processes",
    )
    def get(self, request: Request, user_id: str) -> Response:
        count = async_to_sync(presence.backend().count)(user_id)
        return Response({"user_id": user_id, "online": count > 0, "connections": count})


def _decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = text.partition(":")
        before = parse_id(value)
        if prefix != "v1" or before is None:
            raise ValueError(cursor)
        return before
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise drf_serializers.ValidationError({"cursor": ["Invalid cursor."]}) from exc


def _encode_cursor(before: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{before}".encode()).decode().rstrip("=")


class MyNotificationsView(UserView):
    @extend_schema(
        parameters=[s.ListQuery],
        responses={200: s.NotificationPage, **errors(400, 401)},
        summary="My notifications",
    )
    def get(self, request: Request) -> Response:
        query = s.ListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        args = query.validated_data
        before = _decode_cursor(args["cursor"]) if "cursor" in args else None
        page = selectors.notifications_page(
            user_id=_user(request), unread=args["unread"], limit=args["limit"], before=before
        )
        next_url = None
        if page.next_before is not None:
            params = {"limit": args["limit"], "cursor": _encode_cursor(page.next_before)}
            if args["unread"]:
                params["unread"] = "true"
            next_url = request.build_absolute_uri(f"{request.path}?{urlencode(params)}")
        return Response({"results": page.results, "next": next_url})


class MyNotificationView(UserView):
    @extend_schema(
        responses={200: s.NotificationOut, **errors(401, 404)},
        parameters=[path_example("notification_id", "1")],
        summary="One of my notifications",
        operation_id="me_notification_retrieve",
    )
    def get(self, request: Request, notification_id: str) -> Response:
        seq = parse_id(notification_id)
        found = None
        if seq is not None:
            found = selectors.notification_get(user_id=_user(request), seq=seq)
        if found is None:
            raise NotificationNotFound(seq or 0)
        return Response(found)


class UnreadCountView(UserView):
    @extend_schema(responses={200: s.UnreadCount, **errors(401)}, summary="How many are unread")
    def get(self, request: Request) -> Response:
        return Response({"unread": selectors.unread_count(user_id=_user(request))})


class MarkReadView(UserView):
    @extend_schema(
        request=s.MarkReadRequest,
        responses={200: s.MarkReadResponse, **errors(400, 401, 404, 413, 415)},
        examples=[
            OpenApiExample("Everything", value={"all": True}, request_only=True),
            OpenApiExample("Some", value={"ids": ["1"]}, request_only=True),
        ],
        summary="Mark read",
    )
    def post(self, request: Request) -> Response:
        require_json(request)
        body = s.MarkReadRequest(data=request.data)
        body.is_valid(raise_exception=True)
        changed = services.notifications_mark_read(
            user_id=_user(request), ids=body.validated_data.get("ids")
        )
        return Response({"updated": len(changed)})
