"""The plain ASGI publish endpoint in front of Django: what it does instead of
Django's handler (Host check, request id, security headers, 405, JSON 500).

Requests go to ``service.asgi.application`` over httpx's ASGI transport (what
uvicorn runs); there is no other publish transport. tests/api/test_publish.py
holds the publish's rules, through the same application.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import httpx
import orjson
import pytest
from asgiref.sync import sync_to_async

from notifications import publish_loop, services
from notifications.runtime import state
from service.asgi import application
from service.middleware import SECURITY_HEADERS
from tests.api.conftest import PUBLISH_URL, SHOP_SECRET, counts
from tests.push.liveload import until

pytestmark = pytest.mark.django_db(transaction=True)

VALID = {"recipients": ["42", "43", "42"], "type": "order.shipped", "data": {"n": 1}}


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


EXPECTED_STATUS = {
    "accepted": 202,
    "no credentials": 401,
    "unknown key": 401,
    "basic scheme": 401,
    "form body": 415,
    "no content type": 415,
    "broken json": 400,
    "not an object": 400,
    "invalid fields": 400,
    "long idempotency key": 400,
}


@pytest.mark.parametrize(("name", "raw", "headers"), CASES, ids=[c[0] for c in CASES])
async def test_each_answer_is_json_with_the_security_headers(
    asgi: httpx.AsyncClient, name: str, raw: bytes, headers: dict[str, str]
) -> None:
    response = await asgi.post(PUBLISH_URL, content=raw, headers=headers)
    assert response.status_code == EXPECTED_STATUS[name], response.content
    assert response.headers["content-type"] == "application/json"
    for header in SECURITY_HEADERS:
        assert header.lower() in response.headers
    stored = await sync_to_async(counts)()
    if response.status_code == 202:
        assert response.json()["recipients"] == 2
        assert stored[0] == 2
    else:
        assert isinstance(response.json(), dict) and response.json()
        assert stored == (0, 0, 0)
    if response.status_code == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="publisher"'


async def test_idempotent_replay(asgi: httpx.AsyncClient) -> None:
    headers = {**_bearer(SHOP_SECRET), **JSON, "Idempotency-Key": "order-1234"}
    first = await asgi.post(PUBLISH_URL, content=orjson.dumps(VALID), headers=headers)
    again = await asgi.post(PUBLISH_URL, content=orjson.dumps(VALID), headers=headers)
    assert first.status_code == again.status_code == 202
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert first.json() == again.json()
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
    # A made id is a random UUID's hex, as uuid.uuid4().hex: version 4, RFC 4122.
    made_id = uuid.UUID(hex=made.headers["x-request-id"])
    assert made_id.version == 4 and made_id.variant == uuid.RFC_4122
    assert made_id.hex == made.headers["x-request-id"]
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


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405_allow_post(asgi: httpx.AsyncClient, method: str) -> None:
    response = await asgi.request(method, PUBLISH_URL, headers=_bearer(SHOP_SECRET))
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json() == {"detail": f'Method "{method}" not allowed.'}
    assert response.headers["x-content-type-options"] == "nosniff"


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

    async def broken_on_loop(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    # A bug in the work of whichever stores this publish: the writer thread
    # or (PostgreSQL, a plain group) the event loop.
    monkeypatch.setattr(services, "notifications_publish_rated", broken)
    monkeypatch.setattr(publish_loop, "_commit", broken_on_loop)
    with caplog.at_level(logging.ERROR, logger="api.publish_asgi"):
        response = await asgi.post(
            PUBLISH_URL, content=orjson.dumps(VALID), headers={**_bearer(SHOP_SECRET), **JSON}
        )
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error."}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert any("publish failed" in r.getMessage() for r in caplog.records)
    assert await sync_to_async(counts)() == (0, 0, 0)


class _Upload:
    """An ASGI request whose body arrives when the test says so: the
    application is called the way uvicorn calls it."""

    def __init__(self, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> None:
        self.scope = {
            "type": "http",
            "method": "POST",
            "path": PUBLISH_URL,
            "headers": [(b"host", b"testserver"), *headers],
            "server": ("testserver", 80),
        }
        self.chunks = chunks
        self.go = asyncio.Event()
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        await self.go.wait()
        chunk = self.chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


async def test_a_publish_in_progress_counts_as_a_live_request() -> None:
    """The push worker's "live traffic first" rule sees a publish while it
    is served (the endpoint counts it itself: no LiveRequests layer)."""
    before = state.live_requests
    upload = _Upload(
        [(b"authorization", f"Bearer {SHOP_SECRET}".encode()), *_JSON_RAW], [orjson.dumps(VALID)]
    )
    served = asyncio.ensure_future(application(upload.scope, upload.receive, upload.send))
    await until(lambda: state.live_requests == before + 1, "the publish to be counted")
    upload.go.set()
    await served
    await publish_loop.close()  # the ASGI shutdown's: this test's loop closes next
    assert state.live_requests == before
    assert upload.sent[0]["status"] == 202


async def test_a_chunked_body_over_the_limit_is_413_and_stores_nothing(settings: Any) -> None:
    """No Content-Length: the endpoint stops reading past the limit."""
    settings.NOTIFY_MAX_BODY_BYTES = 100
    raw = orjson.dumps({**VALID, "title": "x" * 200})
    upload = _Upload(
        [(b"authorization", f"Bearer {SHOP_SECRET}".encode()), *_JSON_RAW],
        [raw[:60], raw[60:120], raw[120:]],
    )
    upload.go.set()
    await application(upload.scope, upload.receive, upload.send)
    assert upload.sent[0]["status"] == 413
    assert orjson.loads(upload.sent[1]["body"]) == {
        "detail": "Request body is over the 100 byte limit."
    }
    assert len(upload.chunks) == 1, "read on past the limit"
    assert await sync_to_async(counts)() == (0, 0, 0)


_JSON_RAW = [(b"content-type", b"application/json")]
