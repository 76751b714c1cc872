"""Errors a newcomer can act on: the Bearer scheme and the JSON Content-Type, named.

Both transports of the publish route (the plain ASGI endpoint uvicorn runs, and
the Django view) and the user API say the same.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from asgiref.sync import sync_to_async

from service.asgi import application
from tests.api.conftest import (
    PUBLISH_URL,
    READ_URL,
    SHOP_SECRET,
    UNREAD_URL,
    counts,
    make_token,
)

pytestmark = pytest.mark.django_db(transaction=True)

BODY = {"recipients": ["alice"], "type": "order.shipped", "title": "Hi"}
BEARER_HINT = 'must use the Bearer scheme: "Authorization: Bearer <publisher key>"'
JSON_HINT = '"Content-Type: application/json"'


async def asgi_post(headers: dict[str, str], body: bytes) -> httpx.Response:
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.post(PUBLISH_URL, content=body, headers=headers)


@pytest.mark.parametrize("authorization", [SHOP_SECRET, f"Token {SHOP_SECRET}", "Bearer "])
async def test_publish_without_the_bearer_scheme_says_so(authorization: str) -> None:
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    response = await asgi_post(headers, orjson.dumps(BODY))
    assert response.status_code == 401
    assert BEARER_HINT in response.json()["detail"]
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="publisher"'
    assert SHOP_SECRET not in response.text


def test_the_publish_endpoint_and_the_user_api_say_it_too(
    client_factory: Any,
) -> None:
    client = client_factory()
    client.credentials(HTTP_AUTHORIZATION=SHOP_SECRET)
    answer = client.post(PUBLISH_URL, BODY, format="json")
    assert answer.status_code == 401
    assert BEARER_HINT in answer.json()["detail"]

    client.credentials(HTTP_AUTHORIZATION=make_token("alice"))
    answer = client.get(UNREAD_URL)
    assert answer.status_code == 401
    assert '"Authorization: Bearer <user token>"' in answer.json()["detail"]
    assert counts() == (0, 0, 0)


def test_no_authorization_header_is_still_not_provided(
    client_factory: Any,
) -> None:
    answer = client_factory().post(PUBLISH_URL, BODY, format="json")
    assert answer.status_code == 401
    assert answer.json() == {"detail": "Authentication credentials were not provided."}


async def test_publish_without_content_type_says_to_send_json() -> None:
    response = await asgi_post({"Authorization": f"Bearer {SHOP_SECRET}"}, orjson.dumps(BODY))
    assert response.status_code == 415
    detail = response.json()["detail"]
    assert detail.startswith("No Content-Type") and JSON_HINT in detail, detail
    assert "(none)" not in detail


async def test_publish_with_another_content_type_names_it() -> None:
    headers = {"Authorization": f"Bearer {SHOP_SECRET}", "Content-Type": "text/plain"}
    response = await asgi_post(headers, orjson.dumps(BODY))
    assert response.status_code == 415
    detail = response.json()["detail"]
    assert '"text/plain"' in detail and JSON_HINT in detail, detail
    assert await sync_to_async(counts)() == (0, 0, 0)


def test_mark_read_without_content_type_says_to_send_json(
    client_factory: Any,
) -> None:
    client = client_factory()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token('alice')}")
    answer = client.generic("POST", READ_URL, b'{"all": true}', content_type="")
    assert answer.status_code == 415
    assert JSON_HINT in answer.json()["detail"]
