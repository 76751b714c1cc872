"""``/demo``: the page a new user opens after ``make run`` (dev mode, or ``DEMO_ENABLED``).

``GET /`` in dev mode (``DEBUG``) is a small index linking here, to the API
docs, and showing the README's example; 404 in production.

Live notifications with the browser client, an unread badge, mark read, and a
form that sends a test notification. Everything answers 404 unless
``settings.NOTIFY_DEMO_ENABLED`` (default: ``DEBUG``), so production never has it
unless asked.

Two demo-only endpoints, thin on purpose (the rules live in the services):

* ``POST /demo/token`` ``{"user": "alice"}`` -> ``{"token": ..., "user": ..., "expires_in": s}``
  (``notifications.tokens.mint_user_token``; in production the host app mints tokens);
* ``POST /demo/send`` with the publish API's body -> ``202 {"event_id", "recipients"}``
  (``notifications.services.notifications_publish_async``, the publish API's
  own path, source ``demo``).

Both take same-origin JSON only: the ``Origin`` header must be this site's own
origin (and ``Sec-Fetch-Site``, when sent, ``same-origin``), and the body
``application/json``, which no cross-site form can send without a CORS
preflight that this service never grants. No cookies are involved.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import path
from django.views.decorators.http import require_GET, require_POST

from api.serializers import PublishRequest
from notifications import services
from notifications.credentials import DEV_API_KEYS, publisher_for_secret
from notifications.errors import RateLimited
from notifications.origins import normalize_origin
from notifications.publishing import Publication
from notifications.tokens import MAX_USER_ID_LENGTH, InvalidToken, mint_user_token

DEMO_SOURCE = "demo"
TOKEN_TTL_SECONDS = 3600
DEFAULT_USER = "alice"


def _enabled() -> None:
    if not settings.NOTIFY_DEMO_ENABLED:
        raise Http404("The demo is disabled (set DEMO_ENABLED=true to enable it).")


def _error(detail: str, status: int) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def _same_origin_json(request: HttpRequest) -> dict[str, Any] | JsonResponse:
    """The JSON object body of a same-origin request, or the error to answer."""
    origin = request.headers.get("Origin")
    own = normalize_origin(f"{request.scheme}://{request.get_host()}")
    if origin is None or normalize_origin(origin) != own:
        return _error("Same-origin requests only (the Origin header must be this site).", 403)
    if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
        return _error("Same-origin requests only.", 403)
    media = (request.content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        return _error("Send application/json.", 415)
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return _error("The body is not valid JSON.", 400)
    if not isinstance(body, dict):
        return _error("The body must be a JSON object.", 400)
    return body


def _publisher_key() -> str:
    # Only ever the well-known dev key: a real secret never goes into a page.
    dev = DEV_API_KEYS["dev"]
    return dev if publisher_for_secret(dev) is not None else "$NOTIFY_API_KEY"


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """``GET /`` in dev mode: where to go next, instead of Django's debug 404."""
    if not settings.DEBUG:
        raise Http404("Nothing here.")
    origin = f"{request.scheme}://{request.get_host()}"
    context = {
        "demo": settings.NOTIFY_DEMO_ENABLED,
        "origin": origin,
        "ws_origin": "ws" + origin.removeprefix("http"),
        "publisher_key": _publisher_key(),
    }
    return render(request, "notify/index.html", context)


@require_GET
def page(request: HttpRequest) -> HttpResponse:
    _enabled()
    user = request.GET.get("user", "").strip()[:MAX_USER_ID_LENGTH] or DEFAULT_USER
    context = {
        "user": user,
        "origin": f"{request.scheme}://{request.get_host()}",
        "publisher_key": _publisher_key(),
    }
    return render(request, "notify/demo.html", context)


@require_POST
def token(request: HttpRequest) -> JsonResponse:
    _enabled()
    body = _same_origin_json(request)
    if isinstance(body, JsonResponse):
        return body
    user = body.get("user")
    if not isinstance(user, str) or not 1 <= len(user) <= MAX_USER_ID_LENGTH:
        return JsonResponse(
            {"user": [f"A string of 1..{MAX_USER_ID_LENGTH} characters."]}, status=400
        )
    try:
        jwt = mint_user_token(user, ttl_seconds=TOKEN_TTL_SECONDS)
    except InvalidToken as exc:
        return _error(f"Cannot mint demo tokens: {exc}.", 409)
    return JsonResponse({"token": jwt, "user": user, "expires_in": TOKEN_TTL_SECONDS})


@require_POST
async def send(request: HttpRequest) -> JsonResponse:
    """The publish API's validation, then its one entry (the group committer,
    with the rate limit of the ``demo`` source)."""
    _enabled()
    body = _same_origin_json(request)
    if isinstance(body, JsonResponse):
        return body
    serializer = PublishRequest(data=body)
    if not serializer.is_valid():
        return JsonResponse(serializer.errors, status=400)
    data = serializer.validated_data
    publication = Publication(
        source=DEMO_SOURCE,
        recipients=data["recipients"],
        type=data["type"],
        title=data["title"],
        body=data["body"],
        data=data["data"],
    )
    try:
        result = await services.notifications_publish_async(publication=publication)
    except RateLimited as exc:
        return JsonResponse(
            {"detail": "Too many demo notifications; try again shortly."},
            status=429,
            headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
        )
    return JsonResponse(
        {"event_id": str(result.event_id), "recipients": result.recipients}, status=202
    )


urlpatterns = [
    path("", index, name="index"),
    path("demo", page, name="demo"),
    path("demo/token", token, name="demo-token"),
    path("demo/send", send, name="demo-send"),
]
