"""Browser hardening headers on every HTTP response (service.middleware)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from tests.api.conftest import PUBLISH_URL, SHOP_SECRET
from tests.support.asgi import AsgiClient

pytestmark = pytest.mark.django_db(transaction=True)

# The policies as docs/configuration.md states them, written out here: a change
# to the production constants must show up as a failing test, not follow along.
STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"
RELAXED_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

COMMON = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def assert_common(response: Any) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))


def test_api_json_responses_get_strict_csp_and_no_store(
    publish: Any, user_client: Any, anon_client: AsgiClient
) -> None:
    responses = [
        publish({"recipients": ["42"], "type": "order.shipped"}),  # 202
        publish({"recipients": [], "type": "x"}),  # 400
        anon_client.post(PUBLISH_URL, {}, format="json"),  # 401
        user_client("42").get("/api/v1/me/notifications"),  # 200
        user_client("42").get("/api/v1/me/notifications/999"),  # 404
    ]
    assert [r.status_code for r in responses] == [202, 400, 401, 200, 404]
    for response in responses:
        assert_common(response)
        assert response.headers["Content-Security-Policy"] == STRICT_CSP
        assert response.headers["Cache-Control"] == "no-store"


def test_publish_403_and_429_carry_the_headers(client_factory: Any, settings: Any) -> None:
    settings.NOTIFY_PUBLISH_RATE = (0.001, 1.0)
    client = client_factory()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {SHOP_SECRET}")
    body = {"recipients": ["42"], "type": "order.shipped"}
    client.post(PUBLISH_URL, body, format="json")
    limited = client.post(PUBLISH_URL, body, format="json")
    assert limited.status_code == 429
    assert_common(limited)
    assert limited.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/api/schema", "/nowhere"])
def test_other_endpoints_get_strict_csp(path: str) -> None:
    response = Client().get(path, HTTP_HOST="localhost")
    assert_common(response)
    assert response.headers["Content-Security-Policy"] == STRICT_CSP


def test_django_own_errors_get_the_headers() -> None:
    response = Client().get("/healthz", HTTP_HOST="evil.example")  # DisallowedHost: 400
    assert response.status_code == 400
    assert_common(response)
    assert response.headers["Content-Security-Policy"] == STRICT_CSP


def _same_origin_only(html: str) -> list[str]:
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    return [r for r in refs if re.match(r"^(?:[a-z]+:)?//", r, re.IGNORECASE)]


def test_api_docs_get_the_relaxed_csp_and_load_only_same_origin_assets() -> None:
    response = Client().get("/api/docs", HTTP_HOST="localhost")
    assert response.status_code == 200
    assert_common(response)
    assert response.headers["Content-Security-Policy"] == RELAXED_CSP
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    assert _same_origin_only(html) == []


def test_demo_gets_the_relaxed_csp_and_loads_only_same_origin_assets(settings: Any) -> None:
    settings.NOTIFY_DEMO_ENABLED = True
    response = Client().get("/demo", HTTP_HOST="localhost")
    assert response.status_code == 200
    assert_common(response)
    assert response.headers["Content-Security-Policy"] == RELAXED_CSP
    assert _same_origin_only(response.content.decode()) == []


def test_relaxed_csp_still_forbids_framing_and_foreign_origins() -> None:
    assert "frame-ancestors 'none'" in RELAXED_CSP
    assert "default-src 'self'" in RELAXED_CSP
    assert "http" not in RELAXED_CSP.replace("'self'", "")
