"""Operations endpoints: /healthz, /readyz, /metrics, /api/schema, /api/docs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from notifications.publishing import Publication, notifications_publish_many
from notifications.runtime import state
from realtime import sse
from tests.support.asgi import AsgiClient
from tests.support.keys import api_keys_setting

CONTRACT_METRICS = {
    "notify_sockets_open": "gauge",
    "notify_notifications_accepted_total": "counter",
    "notify_notifications_delivered_total": "counter",
    "notify_notifications_dropped_total": "counter",
    "notify_publish_seconds": "histogram",
    "notify_delivery_seconds": "histogram",
}


@pytest.fixture
def client(client_factory: Any) -> AsgiClient:
    return client_factory(None)


@pytest.fixture
def shutting_down() -> Iterator[None]:
    previous = state.shutting_down
    state.shutting_down = True
    try:
        yield
    finally:
        state.shutting_down = previous


def test_healthz(client: AsgiClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200


def test_healthz_while_shutting_down_still_live(client: AsgiClient, shutting_down: None) -> None:
    assert client.get("/healthz").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_readyz_ok(client: AsgiClient) -> None:
    assert state.shutting_down is False
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert {"database", "channel_layer", "shutting_down"} <= set(body)
    assert body["database"] == "ok"
    assert body["channel_layer"] == "ok"
    assert body["shutting_down"] is False


@pytest.mark.django_db(transaction=True)
def test_readyz_503_when_shutting_down(client: AsgiClient, shutting_down: None) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["shutting_down"] is True
    assert body["database"] == "ok"


@pytest.mark.django_db(transaction=True)
def test_readyz_back_to_200_after_restore(client: AsgiClient) -> None:
    state.shutting_down = True
    try:
        assert client.get("/readyz").status_code == 503
    finally:
        state.shutting_down = False
    assert client.get("/readyz").status_code == 200


def _families(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE))


def test_metrics_is_prometheus_text_with_contract_names(client: AsgiClient) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    families = _families(text)
    for name, kind in CONTRACT_METRICS.items():
        # prometheus-client names a counter family with or without "_total".
        found = families.get(name) or families.get(name.removesuffix("_total"))
        assert found == kind, (name, found)
    assert re.search(r"^notify_sockets_open(\{[^}]*\})? ", text, re.MULTILINE)
    for name in (
        "notify_notifications_accepted_total",
        "notify_notifications_delivered_total",
        "notify_notifications_dropped_total",
    ):
        assert re.search(rf"^{name} ", text, re.MULTILINE), name
    for name in ("notify_publish_seconds", "notify_delivery_seconds"):
        assert re.search(rf'^{name}_bucket\{{le="\+Inf"\}} ', text, re.MULTILINE), name
        assert re.search(rf"^{name}_count ", text, re.MULTILINE), name
        assert re.search(rf"^{name}_sum ", text, re.MULTILINE), name


def _sample(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    return 0.0 if value is None else value


def _scraped(client: AsgiClient, name: str) -> float:
    text = client.get("/metrics").content.decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


@pytest.mark.django_db(transaction=True)
def test_metrics_count_accepted_notifications_and_publish_time(
    client: AsgiClient, settings: Any
) -> None:
    settings.NOTIFY_API_KEYS = api_keys_setting("shop:shop-metrics-test-secret-0123456789abcdef")
    accepted = _scraped(client, "notify_notifications_accepted_total")
    publishes = _scraped(client, "notify_publish_seconds_count")

    response = client.post(
        "/api/v1/notifications",
        json.dumps({"recipients": ["m1", "m2", "m3"], "type": "metrics.test"}),
        content_type="application/json",
        headers={"Authorization": "Bearer shop-metrics-test-secret-0123456789abcdef"},
    )
    assert response.status_code == 202, response.content
    assert _scraped(client, "notify_notifications_accepted_total") == accepted + 3
    assert _scraped(client, "notify_publish_seconds_count") == publishes + 1


@pytest.mark.django_db
def test_accepted_counts_only_after_commit(django_capture_on_commit_callbacks: Any) -> None:
    before = _sample("notify_notifications_accepted_total")
    publication = Publication(source="shop", recipients=["a", "b"], type="x")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        # The transaction the group committer runs, in this test's thread.
        notifications_publish_many(publications=[publication])
    assert _sample("notify_notifications_accepted_total") == before
    for callback in callbacks:
        callback()
    assert _sample("notify_notifications_accepted_total") == before + 2


def _check_schema(doc: dict[str, Any]) -> None:
    assert str(doc["openapi"]).startswith("3.")
    paths = doc["paths"]
    assert "post" in paths["/api/v1/notifications"]
    assert "get" in paths["/api/v1/me/notifications"]
    assert "get" in paths["/api/v1/me/notifications/unread-count"]
    assert "post" in paths["/api/v1/me/notifications/read"]
    assert any(p.startswith("/api/v1/users/") and p.endswith("/presence") for p in paths)
    # The publish operation, served in front of Django, is documented in full.
    publish = paths["/api/v1/notifications"]["post"]
    assert set(paths["/api/v1/notifications"]) == {"post"}
    assert set(publish["responses"]) == {
        "202",
        "400",
        "401",
        "403",
        "413",
        "415",
        "422",
        "429",
        "503",
    }
    body = publish["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert body.endswith("/PublishRequest")
    assert doc["components"]["schemas"]["PublishRequest"]["required"] == ["recipients", "type"]
    assert [p["name"] for p in publish["parameters"]] == ["Idempotency-Key"]
    assert publish["security"] == [{"publisherKey": []}]
    assert "schema only" not in publish.get("description", "").lower()
    # So is the event stream, served by realtime/sse.py in front of Django too.
    assert set(paths[sse.PATH]) == {"get"}
    stream = paths[sse.PATH]["get"]
    assert stream["security"] == [{"userToken": []}]
    assert {(p["in"], p["name"]) for p in stream["parameters"]} == {
        ("query", "token"),
        ("query", "since"),
        ("header", "Last-Event-ID"),
    }
    assert set(stream["responses"]) == {"200", "400", "401", "403", "503"}
    assert set(stream["responses"]["200"]["content"]) == {"text/event-stream"}
    for event in ("notification", "read", "ready", "close"):
        assert f"`{event}`" in stream["description"], event
    for code in ("401", "403"):
        error = stream["responses"][code]["content"]["application/json"]["schema"]
        assert error["$ref"].endswith("/ErrorDetail")


def test_schema_as_json(client: AsgiClient) -> None:
    response = client.get("/api/schema", {"format": "json"})
    assert response.status_code == 200, response.content
    _check_schema(json.loads(response.content))


def test_schema_default_is_yaml_openapi(client: AsgiClient) -> None:
    response = client.get("/api/schema")
    assert response.status_code == 200
    _check_schema(yaml.safe_load(response.content))


def test_schema_needs_no_auth(client: AsgiClient) -> None:
    response = client.get("/api/schema", {"format": "json"}, headers={"Authorization": "Bearer x"})
    assert response.status_code == 200


def test_docs_is_html(client: AsgiClient) -> None:
    response = client.get("/api/docs")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "<html" in html.lower()
    assert "/api/schema" in html
