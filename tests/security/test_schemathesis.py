"""The service's own OpenAPI document, fuzzed by schemathesis against a live server.

One real uvicorn process (SQLite file, in-memory layer) serves ``/api/schema``;
schemathesis generates requests for every operation from it (the publisher key on
publisher endpoints, a user JWT on ``/me`` endpoints) and checks that no answer is
a 5xx and that every documented answer matches its documented schema. A separate
test records what the document leaves out (statuses the API really answers).
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.servers import LOG_ERROR_MARKERS, LiveServer

pytestmark = pytest.mark.live

SHOP_SECRET = "schemathesis-shop-" + secrets.token_hex(20)
JWT_SECRET = secrets.token_hex(24)  # 48 characters
USER = "alice"
VAPID_KEY = base64.urlsafe_b64encode(
    ec.generate_private_key(ec.SECP256R1()).private_numbers().private_value.to_bytes(32, "big")
).decode()
ERROR_MARKERS = LOG_ERROR_MARKERS


def user_token(user: str = USER) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + 3600}, JWT_SECRET, "HS256")


def auth_for(path: str) -> dict[str, str]:
    """The publisher key on publisher endpoints, a user JWT on /me endpoints."""
    secret = user_token() if path.startswith("/api/v1/me") else SHOP_SECRET
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    db: Path = tmp_path_factory.mktemp("schemathesis") / "db.sqlite3"
    env = {
        "NOTIFY_API_KEYS": f"shop:{SHOP_SECRET}",
        "JWT_SECRET": JWT_SECRET,
        "DATABASE_URL": f"sqlite:///{db.resolve()}",
        "NOTIFY_PUBLISH_RATE": "100000/s",
        "LOG_LEVEL": "INFO",
        # Web Push on, so its operations answer; its only allowed push service
        # is a name that never resolves (nothing may reach the internet).
        "VAPID_PRIVATE_KEY": VAPID_KEY,
        "VAPID_SUBJECT": "mailto:ops@example.invalid",
        "NOTIFY_PUSH_ALLOWED_HOSTS": "push.example.invalid",
    }
    live = LiveServer(env, startup_timeout=30.0)
    try:
        # Some stored rows, so that the user API answers with real notifications
        # (defaults and full fields both).
        with httpx.Client(base_url=live.url, trust_env=False, timeout=30) as http:
            for body in (
                {"recipients": [USER], "type": "t"},
                {
                    "recipients": [USER, "bob"],
                    "type": "order.shipped",
                    "title": "T",
                    "body": "B",
                    "data": {"k": [1, None, "x"]},
                },
            ):
                answer = http.post(
                    "/api/v1/notifications",
                    content=json.dumps(body),
                    headers={
                        **auth_for("/api/v1/notifications"),
                        "Content-Type": "application/json",
                    },
                )
                assert answer.status_code == 202, answer.text
        offset = len(live.log_text())
        yield live
        problems = [
            line
            for line in live.log_text()[offset:].splitlines()
            if any(marker in line for marker in ERROR_MARKERS)
        ]
        assert not problems, "server logged errors:\n" + "\n".join(problems[:30])
    finally:
        print("----- server log (tail) -----")
        print("\n".join(live.log_text().splitlines()[-100:]))
        live.close()


@pytest.fixture(scope="module")
def api_schema(server: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{server.url}/api/schema?format=json")


# schemathesis.pytest.from_fixture() breaks under pytest 9 ('Function' object has no
# attribute '_nodeid'), so each operation gets its own hypothesis run from
# ``operation.as_strategy()``; the list is checked against the document below.
OPERATIONS = [
    ("POST", "/api/v1/notifications"),
    ("GET", "/api/v1/users/{user_id}/presence"),
    ("GET", "/api/v1/me/notifications"),
    ("GET", "/api/v1/me/notifications/{notification_id}"),
    ("GET", "/api/v1/me/notifications/unread-count"),
    ("POST", "/api/v1/me/notifications/read"),
    ("GET", "/api/v1/push/public-key"),
    ("GET", "/api/v1/me/push-subscriptions"),
    ("POST", "/api/v1/me/push-subscriptions"),
    ("DELETE", "/api/v1/me/push-subscriptions/{subscription_id}"),
    ("GET", "/api/v1/me/preferences"),
    ("PUT", "/api/v1/me/preferences"),
]
# Documented, but not fuzzed: the SSE stream (realtime/sse.py) answers 200 with a
# response that never ends, so every accepted case would hang until the
# client times out. Its refusals are checked below (documented statuses), its
# stream by tests/live/test_transports.py.
STREAMING = {("GET", "/api/v1/me/stream")}
# The only operations negative mode may skip, and why; bounded: any other skip
# (an Unsatisfiable included) fails, and a listed one that became negatable
# must leave the list.
NOT_NEGATABLE = {
    ("GET", "/api/v1/me/notifications/unread-count"): "nothing to negate: no parameters, no body",
    ("GET", "/api/v1/push/public-key"): "nothing to negate: no parameters, no body, no auth",
}
FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_the_document_has_exactly_these_operations(api_schema: Any) -> None:
    found = set()
    for result in api_schema.get_all_operations():
        operation = result.ok()
        found.add((operation.method.upper(), operation.path))
    assert found == set(OPERATIONS) | STREAMING


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_operation(
    api_schema: Any, server: LiveServer, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]
    raw = operation.definition.raw
    negatable = bool(raw.get("parameters")) or "requestBody" in raw
    if mode is GenerationMode.NEGATIVE and (method, path) in NOT_NEGATABLE:
        assert not negatable, f"{method} {path} can be negated now: take it off NOT_NEGATABLE"
        pytest.skip(NOT_NEGATABLE[method, path])
    calls: list[int] = []

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        # call() + validate_response() rather than call_and_validate(): the latter
        # rejects (hypothesis.reject) cases answered 404, which is every random id.
        response = case.call(base_url=server.url, headers=auth_for(case.path))
        calls.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    run()  # Unsatisfiable fails the test: it is not on the bounded list above
    print(method, path, mode.value, sorted(set(calls)), len(calls))
    assert calls


SUBSCRIPTION = {
    "endpoint": "https://push.example.invalid/send/abc",
    "keys": {
        # A P-256 point (the generator) and 16 bytes, base64url.
        "p256dh": "BGsX0fLhLEJH-Lzm5WOkQPJ3A32BLeszoPShOUXYmMKW"
        "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU",
        "auth": "AAECAwQFBgcICQoLDA0ODw",
    },
}


def test_success_answers_match_the_document(api_schema: Any, server: LiveServer) -> None:
    """Random bodies rarely pass validation (the document has no ``type`` pattern, no
    one-of for read): each success answer is checked here on a known-good request."""
    cases = [
        (
            "/api/v1/notifications",
            "POST",
            {"body": {"recipients": [USER], "type": "x.y", "data": {"n": 1}}},
        ),
        (
            "/api/v1/notifications",
            "POST",
            {"body": {"recipients": ["b"], "type": "x"}, "headers": {"Idempotency-Key": "k-1"}},
        ),
        ("/api/v1/users/{user_id}/presence", "GET", {"path_parameters": {"user_id": USER}}),
        ("/api/v1/me/notifications", "GET", {"query": {"limit": 1}}),
        ("/api/v1/me/notifications", "GET", {"query": {"unread": True}}),
        (
            "/api/v1/me/notifications/{notification_id}",
            "GET",
            {"path_parameters": {"notification_id": "1"}},
        ),
        ("/api/v1/me/notifications/unread-count", "GET", {}),
        ("/api/v1/me/notifications/read", "POST", {"body": {"ids": ["1"]}}),
        ("/api/v1/me/notifications/read", "POST", {"body": {"all": True}}),
        ("/api/v1/push/public-key", "GET", {}),
        ("/api/v1/me/push-subscriptions", "POST", {"body": SUBSCRIPTION}),
        ("/api/v1/me/push-subscriptions", "POST", {"body": SUBSCRIPTION}),
        ("/api/v1/me/push-subscriptions", "GET", {}),
        ("/api/v1/me/preferences", "PUT", {"body": {"push": {"muted_types": ["a.*"]}}}),
        ("/api/v1/me/preferences", "GET", {}),
    ]
    for path, method, parts in cases:
        operation = api_schema[path][method]
        headers = {**parts.pop("headers", {}), **auth_for(path)}
        case = operation.Case(headers=headers, media_type="application/json", **parts)
        response = case.call(base_url=server.url)
        assert response.status_code in (200, 201, 202), (path, response.status_code, response.text)
        case.validate_response(
            response,
            checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
        )


def _documented(document: dict[str, Any], method: str, path: str) -> set[str]:
    return set(document["paths"][path][method]["responses"])


def test_the_document_lists_every_status_the_api_answers(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as http:
        document = http.get("/api/schema?format=json").json()
        publish = "/api/v1/notifications"
        json_headers = {**auth_for(publish), "Content-Type": "application/json"}
        observed = {
            ("post", publish): {
                http.post(publish, content="{}", headers=json_headers).status_code,
                http.post(publish, content="{}").status_code,
                http.post(publish, content="x=1", headers=auth_for(publish)).status_code,
                http.post(
                    publish, content=b"[" * (2 * 1024 * 1024), headers=json_headers
                ).status_code,
            },
            ("get", "/api/v1/me/notifications/{notification_id}"): {
                http.get(
                    "/api/v1/me/notifications/999999", headers=auth_for("/api/v1/me")
                ).status_code,
            },
            ("get", "/api/v1/me/stream"): {
                http.get("/api/v1/me/stream").status_code,
                http.get("/api/v1/me/stream?since=x", headers=auth_for("/api/v1/me")).status_code,
                http.get(
                    "/api/v1/me/stream",
                    headers={**auth_for("/api/v1/me"), "Origin": "https://evil.example"},
                ).status_code,
            },
            ("get", "/api/v1/me/notifications"): {
                http.get(
                    "/api/v1/me/notifications?limit=0", headers=auth_for("/api/v1/me")
                ).status_code,
                http.get("/api/v1/me/notifications").status_code,
            },
        }
        undocumented = {
            f"{method.upper()} {path}": sorted(
                str(code) for code in codes if str(code) not in _documented(document, method, path)
            )
            for (method, path), codes in observed.items()
        }
        print("statuses answered but not documented:", undocumented)
        # Also what schemathesis's own check says, on one refusal.
        loaded = schemathesis.openapi.from_dict(document)
        operation = loaded["/api/v1/notifications"]["POST"]
        case = operation.Case(body={}, headers={"Authorization": f"Bearer {SHOP_SECRET}"})
        response = case.call(base_url=server.url)
        with contextlib.suppress(Exception):
            case.validate_response(response, checks=[status_code_conformance])
            undocumented["(schemathesis status_code_conformance passed)"] = []
        assert not any(undocumented.values()), undocumented
