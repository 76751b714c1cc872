"""The plain ASGI publish endpoint answers exactly as the Django view does.

Every request goes to both transports: ``service.asgi.application`` over
httpx's ASGI transport (what uvicorn runs), and Django's AsyncClient (the
Django view, which the rest of tests/api exercises rule by rule). Status,
JSON body (but for the fresh event id) and headers must agree.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import environ
import httpx
import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from api import publish as publish_module
from service import config
from service.asgi import application
from service.middleware import SECURITY_HEADERS
from tests.api.conftest import BILLING_SECRET, PUBLISH_URL, SHOP_SECRET, counts

pytestmark = pytest.mark.django_db(transaction=True)

VALID = {"recipients": ["42", "43", "42"], "type": "order.shipped", "data": {"n": 1}}
COMPARED_HEADERS = [
    *(name.lower() for name in SECURITY_HEADERS),
    "content-security-policy",
    "cache-control",
    "content-type",
    "www-authenticate",
    "retry-after",
    "idempotent-replayed",
    "allow",
]


@pytest.fixture
async def asgi() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


JSON = {"Content-Type": "application/json"}

CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("accepted", orjson.dumps(VALID), {**_bearer(SHOP_SECRET), **JSON}),
    ("no credentials", orjson.dumps(VALID), JSON),
    ("unknown key", orjson.dumps(VALID), {**_bearer("nope"), **JSON}),
    ("basic scheme", orjson.dumps(VALID), {"Authorization": "Basic eDp5", **JSON}),
    ("form body", b"recipients=1", {**_bearer(SHOP_SECRET), "Content-Type": "text/plain"}),
    ("no content type", orjson.dumps(VALID), _bearer(SHOP_SECRET)),
    ("broken json", b'{"recipients": [', {**_bearer(SHOP_SECRET), **JSON}),
    ("not an object", b"[1, 2]", {**_bearer(SHOP_SECRET), **JSON}),
    (
        "invalid fields",
        orjson.dumps({"recipients": [], "type": "bad type!", "title": 5}),
        {**_bearer(SHOP_SECRET), **JSON},
    ),
    (
        "long idempotency key",
        orjson.dumps(VALID),
        {**_bearer(SHOP_SECRET), **JSON, "Idempotency-Key": "k" * 256},
    ),
]


def _comparable(status: int, body: bytes, headers: Any) -> tuple[int, Any, dict[str, str]]:
    parsed = orjson.loads(body) if body else None
    if isinstance(parsed, dict) and "event_id" in parsed:
        parsed["event_id"] = "<fresh>"
    picked = {name: headers[name] for name in COMPARED_HEADERS if name in headers}
    return status, parsed, picked


async def _both(
    asgi: httpx.AsyncClient, raw: bytes, headers: dict[str, str]
) -> tuple[tuple[int, Any, dict[str, str]], tuple[int, Any, dict[str, str]]]:
    fast = await asgi.post(PUBLISH_URL, content=raw, headers=headers)
    django = await AsyncClient().post(
        PUBLISH_URL,
        data=raw,
        content_type=headers.get("Content-Type", ""),
        headers={k: v for k, v in headers.items() if k != "Content-Type"},
    )
    return (
        _comparable(fast.status_code, fast.content, fast.headers),
        _comparable(django.status_code, django.content, django),
    )


@pytest.mark.parametrize(("name", "raw", "headers"), CASES, ids=[c[0] for c in CASES])
async def test_same_answer_as_the_django_view(
    asgi: httpx.AsyncClient, name: str, raw: bytes, headers: dict[str, str]
) -> None:
    fast, django = await _both(asgi, raw, headers)
    assert fast == django
    stored = await sync_to_async(counts)()
    if fast[0] == 202:
        assert fast[1]["recipients"] == 2
        assert stored[0] == 4  # two notifications per transport
    else:
        assert stored == (0, 0, 0)


async def test_type_scope_refusal_is_the_same(
    asgi: httpx.AsyncClient, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_API_KEYS", f"shop:{SHOP_SECRET}:billing.*,billing:{BILLING_SECRET}")
    settings.NOTIFY_API_KEYS = config.api_keys(environ.Env(), debug=False)
    fast, django = await _both(asgi, orjson.dumps(VALID), {**_bearer(SHOP_SECRET), **JSON})
    assert fast == django
    assert fast[0] == 403
    assert await sync_to_async(counts)() == (0, 0, 0)


async def test_idempotent_replay_is_the_same(asgi: httpx.AsyncClient) -> None:
    headers = {**_bearer(SHOP_SECRET), **JSON, "Idempotency-Key": "order-1234"}
    first = await asgi.post(PUBLISH_URL, content=orjson.dumps(VALID), headers=headers)
    again = await asgi.post(PUBLISH_URL, content=orjson.dumps(VALID), headers=headers)
    through_django = await AsyncClient().post(
        PUBLISH_URL,
        data=orjson.dumps(VALID),
        content_type="application/json",
        headers={k: v for k, v in headers.items() if k != "Content-Type"},
    )
    assert first.status_code == again.status_code == through_django.status_code == 202
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert through_django["Idempotent-Replayed"] == "true"
    assert first.json() == again.json() == orjson.loads(through_django.content)
    assert (await sync_to_async(counts)())[0] == 2


async def test_empty_json_body_is_the_missing_fields_400(asgi: httpx.AsyncClient) -> None:
    # (Django's test client drops the Content-Type of an empty body, so this one
    # is not compared.)
    response = await asgi.post(PUBLISH_URL, content=b"", headers={**_bearer(SHOP_SECRET), **JSON})
    assert response.status_code == 400
    assert set(response.json()) == {"recipients", "type"}
    assert await sync_to_async(counts)() == (0, 0, 0)


async def test_request_id_is_echoed_or_made(asgi: httpx.AsyncClient) -> None:
    headers = {**_bearer(SHOP_SECRET), **JSON}
    given = await asgi.post(
        PUBLISH_URL, content=b"[]", headers={**headers, "X-Request-ID": "abc-123"}
    )
    made = await asgi.post(PUBLISH_URL, content=b"[]", headers=headers)
    unsafe = await asgi.post(
        PUBLISH_URL, content=b"[]", headers={**headers, "X-Request-ID": "<script>"}
    )
    assert given.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    assert unsafe.headers["x-request-id"] != "<script>"


async def test_host_outside_allowed_hosts_is_400_and_stores_nothing(
    asgi: httpx.AsyncClient,
) -> None:
    response = await asgi.post(
        PUBLISH_URL,
        content=orjson.dumps(VALID),
        headers={**_bearer(SHOP_SECRET), **JSON, "Host": "evil.example"},
    )
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid Host header."}
    assert await sync_to_async(counts)() == (0, 0, 0)


async def test_other_methods_go_to_django(asgi: httpx.AsyncClient) -> None:
    response = await asgi.get(PUBLISH_URL, headers=_bearer(SHOP_SECRET))
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_body_over_the_limit_is_413(asgi: httpx.AsyncClient, settings: Any) -> None:
    settings.NOTIFY_MAX_BODY_BYTES = 100
    raw = orjson.dumps({**VALID, "title": "x" * 200})
    response = await asgi.post(PUBLISH_URL, content=raw, headers={**_bearer(SHOP_SECRET), **JSON})
    assert response.status_code == 413
    assert await sync_to_async(counts)() == (0, 0, 0)


async def test_a_bug_is_a_logged_json_500_and_stores_nothing(
    asgi: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(publish_module, "_store", broken)
    with caplog.at_level(logging.ERROR, logger="api.publish_asgi"):
        response = await asgi.post(
            PUBLISH_URL, content=orjson.dumps(VALID), headers={**_bearer(SHOP_SECRET), **JSON}
        )
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error."}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert any("publish failed" in r.getMessage() for r in caplog.records)
    assert await sync_to_async(counts)() == (0, 0, 0)
