"""The Django admin's middleware, run for ``/admin/`` only.

The admin needs sessions, an authenticated user and messages. Put in
``MIDDLEWARE`` they would run for every request; here they wrap the handler
for paths under ``ADMIN_PREFIX`` and every other request passes with one
prefix check. Publishing and sockets do not pass through Django's handler at
all (service/asgi.py), so they never see it.

CSRF needs no middleware: the admin's views and its login are wrapped in
``csrf_protect`` by ``AdminSite`` itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

ADMIN_PREFIX = "/admin/"
ADMIN_MIDDLEWARE = (
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
)

Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


def admin_only_middleware(get_response: Handler) -> Handler:
    if not iscoroutinefunction(get_response):
        raise TypeError("admin_only_middleware needs an async handler chain")
    admin: Any = get_response
    for path in reversed(ADMIN_MIDDLEWARE):
        admin = import_string(path)(admin)  # async, since the handler it wraps is

    async def middleware(request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(ADMIN_PREFIX):
            response: HttpResponse = await admin(request)
            return response
        return await get_response(request)

    markcoroutinefunction(middleware)
    return middleware


admin_only_middleware.async_capable = True  # type: ignore[attr-defined]
admin_only_middleware.sync_capable = False  # type: ignore[attr-defined]
