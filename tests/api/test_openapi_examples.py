"""Swagger's "Try it out" works as served: every example in /api/schema is accepted.

The examples are read from the OpenAPI document itself and sent, as they are,
to the in-process API with the dev publisher key (dev mode) or a user token.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import make_token
from tests.api.test_push_api import push_settings
from tests.support.keys import dev_api_keys_setting

pytestmark = pytest.mark.django_db(transaction=True)

DEV_KEY = "dev-publisher-key"


@pytest.fixture
def schema(client_factory: Any, settings: Any) -> dict[str, Any]:
    settings.DEBUG = True
    settings.NOTIFY_API_KEYS = dev_api_keys_setting()
    settings.NOTIFY_PUSH = push_settings()  # Web Push on: its examples answer too
    response = client_factory().get("/api/schema", {"format": "json"})
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def body_examples(operation: dict[str, Any]) -> list[Any]:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    return [example["value"] for example in content.get("examples", {}).values()]


def test_the_publish_example_is_the_readme_body_and_is_accepted(
    client_factory: Any, schema: dict[str, Any]
) -> None:
    operation = schema["paths"]["/api/v1/notifications"]["post"]
    [example] = body_examples(operation)
    assert example["recipients"] == ["alice"] and example["type"] == "order.shipped"
    client = client_factory()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {DEV_KEY}")
    answer = client.post("/api/v1/notifications", example, format="json")
    assert answer.status_code == 202, answer.content
    assert answer.json()["recipients"] == 1


def test_every_body_and_path_example_is_accepted(
    client_factory: Any, schema: dict[str, Any]
) -> None:
    publisher = client_factory()
    publisher.credentials(HTTP_AUTHORIZATION=f"Bearer {DEV_KEY}")
    publish = schema["paths"]["/api/v1/notifications"]["post"]
    assert publisher.post("/api/v1/notifications", body_examples(publish)[0], format="json")
    user = client_factory()
    user.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token('alice')}")
    tried = 0
    created: dict[str, str] = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if path == "/api/v1/notifications":
                continue
            if "text/event-stream" in str(operation["responses"].get("200", {})):
                # The SSE stream never ends and is served in front of Django:
                # tests/live/test_transports.py opens it over a real socket.
                continue
            url = path
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    [example] = parameter["examples"].values()
                    # What the example created before (a push subscription's id),
                    # as someone trying it out would use.
                    value = created.get(path.rpartition("/")[0], example["value"])
                    url = url.replace("{" + parameter["name"] + "}", value)
            client = publisher if "publisherKey" in str(operation.get("security")) else user
            for body in body_examples(operation) or [None]:
                answer = getattr(client, method)(url, body, format="json")
                assert answer.status_code < 300, (method, url, body, answer.content)
                if answer.status_code == 201 and "id" in answer.json():
                    created[path] = answer.json()["id"]
                tried += 1
    assert tried >= 6


def test_no_internal_notes_and_the_dev_key_is_named(schema: dict[str, Any]) -> None:
    text = str(schema)
    assert "Documentation only" not in text and "api.publish" not in text
    scheme = schema["components"]["securitySchemes"]["publisherKey"]
    assert "dev-publisher-key" in scheme["description"]


def test_production_does_not_name_the_dev_key(client_factory: Any, settings: Any) -> None:
    settings.DEBUG = False
    document = client_factory().get("/api/schema", {"format": "json"}).json()
    assert "dev-publisher-key" not in str(document)
