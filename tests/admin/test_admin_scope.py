"""The admin's middleware runs for /admin/ only; in production the admin is off
unless NOTIFY_ADMIN_ENABLED, and its static files are served like the rest."""

from __future__ import annotations

import secrets

import httpx
import pytest
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from service.admin_middleware import admin_only_middleware
from tests.support.servers import LiveServer


async def test_sessions_and_users_exist_only_under_admin() -> None:
    seen: dict[str, set[str]] = {}

    async def handler(request: HttpRequest) -> HttpResponse:
        seen[request.path] = {a for a in ("session", "user", "_messages") if hasattr(request, a)}
        return HttpResponse("ok")

    middleware = admin_only_middleware(handler)
    factory = RequestFactory()
    for path in ("/admin/", "/admin/notifications/", "/api/v1/me/notifications", "/readyz"):
        await middleware(factory.get(path))
    assert seen["/admin/"] == {"session", "user", "_messages"}
    assert seen["/admin/notifications/"] == {"session", "user", "_messages"}
    assert seen["/api/v1/me/notifications"] == set()
    assert seen["/readyz"] == set()


def production_env(sqlite_url: str, **extra: str) -> dict[str, str]:
    return {
        "DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "NOTIFY_API_KEYS": "shop:" + secrets.token_hex(24),
        "JWT_SECRET": secrets.token_hex(24),
        "DATABASE_URL": sqlite_url,
        "ALLOWED_HOSTS": "127.0.0.1",
        "ALLOWED_ORIGINS": "https://app.example.com",
        "NOTIFY_TEST_DATABASE": "",
        **extra,
    }


@pytest.mark.live
def test_production_serves_the_admin_only_when_enabled(sqlite_url: str) -> None:
    with LiveServer(production_env(sqlite_url), startup_timeout=60.0) as off:
        assert httpx.get(off.url + "/admin/login/").status_code == 404
        assert httpx.get(off.url + "/admin/").status_code == 404
    env = production_env(sqlite_url, NOTIFY_ADMIN_ENABLED="true")
    with LiveServer(env, migrate=False, startup_timeout=60.0) as on:
        index = httpx.get(on.url + "/admin/")
        assert index.status_code == 302
        assert index.headers["location"].startswith("/admin/login/")
        login = httpx.get(on.url + "/admin/login/")
        assert login.status_code == 200
        assert 'name="csrfmiddlewaretoken"' in login.text
        cookie = login.headers["set-cookie"]
        # Cookies for the admin only, over HTTPS only, never cross-site.
        assert "Path=/admin/" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie
        css = httpx.get(on.url + "/static/admin/css/base.css")
        assert css.status_code == 200 and "text/css" in css.headers["content-type"]
        # The pages may load their own styles and scripts, nothing else.
        assert "default-src 'self'" in login.headers["content-security-policy"]
        # Other paths stay cookie-free.
        assert "set-cookie" not in httpx.get(on.url + "/readyz").headers
