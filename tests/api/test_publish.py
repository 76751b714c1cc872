"""POST /api/v1/notifications: the publisher contract, rule by rule."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
from typing import Any

import environ
import orjson
import pytest
from django.utils import timezone

from notifications import credentials
from notifications.models import IdempotencyRecord
from service import config_auth
from tests.api.conftest import (
    BILLING_SECRET,
    PUBLISH_URL,
    SHOP_SECRET,
    counts,
    make_token,
    sequences,
)
from tests.support import rows as stored_rows
from tests.support.asgi import AsgiClient

pytestmark = pytest.mark.django_db(transaction=True)

VALID: dict[str, Any] = {
    "recipients": ["42", "43"],
    "type": "order.shipped",
    "title": "Your order is on its way",
    "body": "Order #1234 left the warehouse.",
    "data": {"order_id": 1234},
}


def body(**changes: Any) -> dict[str, Any]:
    """The valid example body with some fields replaced (``...`` removes a field)."""
    result = dict(VALID)
    for key, value in changes.items():
        if value is ...:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def post_raw(
    client: AsgiClient,
    raw: bytes | str,
    content_type: str | None = "application/json",
    **headers: str,
) -> Any:
    """POST exact bytes; ``content_type=None`` sends no Content-Type header at all."""
    data = raw.encode() if isinstance(raw, str) else raw
    return client.generic("POST", PUBLISH_URL, data, content_type, headers)


def assert_nothing_stored() -> None:
    assert counts() == (0, 0, 0)


# --------------------------------------------------------------------------- 202


def test_accepted_body_shape_and_rows(publish: Any) -> None:
    response = publish(VALID)

    assert response.status_code == 202, response.content
    payload = response.json()
    assert set(payload) == {"event_id", "recipients"}
    assert payload["recipients"] == 2
    event_id = uuid.UUID(payload["event_id"])

    rows = stored_rows.stored()
    assert [(r.user_id, r.seq) for r in rows] == [("42", 1), ("43", 1)]
    for row in rows:
        assert row.event_id == event_id
        assert row.type == "order.shipped"
        assert row.title == "Your order is on its way"
        assert row.body == "Order #1234 left the warehouse."
        assert row.data == {"order_id": 1234}
        assert row.source == "shop"
        assert row.read_at is None
    assert sequences() == {"42": 1, "43": 1}


def test_source_is_the_key_name(publish: Any, billing_client: AsgiClient) -> None:
    assert publish(body(recipients=["a"])).status_code == 202
    response = billing_client.post(PUBLISH_URL, body(recipients=["a"]), format="json")
    assert response.status_code == 202
    assert [(r.seq, r.source) for r in stored_rows.stored()] == [
        (1, "shop"),
        (2, "billing"),
    ]


def test_optional_fields_default(publish: Any) -> None:
    response = publish({"recipients": ["u1"], "type": "ping"})
    assert response.status_code == 202, response.content
    [row] = stored_rows.stored()
    assert (row.title, row.body, row.data) == ("", "", {})


def test_ids_increase_per_user(publish: Any) -> None:
    for recipients in (["a", "b"], ["a"], ["b", "c"], ["a"]):
        assert publish(body(recipients=recipients)).status_code == 202
    by_user: dict[str, list[int]] = {}
    for row in stored_rows.stored():
        by_user.setdefault(row.user_id, []).append(row.seq)
    assert by_user == {"a": [1, 2, 3], "b": [1, 2], "c": [1]}
    assert sequences() == {"a": 3, "b": 2, "c": 1}


def test_duplicate_recipients_count_once(publish: Any) -> None:
    response = publish(body(recipients=["x", "y", "x", "x", "y"]))
    assert response.status_code == 202
    assert response.json()["recipients"] == 2
    assert [(r.user_id, r.seq) for r in stored_rows.stored()] == [("x", 1), ("y", 1)]


def test_recipient_ids_are_kept_exactly(publish: Any) -> None:
    odd = [" padded ", "é-ü", "a/b?c", "emoji-😀", "1" * 128]
    response = publish(body(recipients=odd))
    assert response.status_code == 202, response.content
    assert sorted(r.user_id for r in stored_rows.stored()) == sorted(odd)


def test_event_ids_differ_between_publishes(publish: Any) -> None:
    first = publish(VALID).json()["event_id"]
    second = publish(VALID).json()["event_id"]
    assert first != second


def test_content_type_with_charset_is_json(publisher_client: AsgiClient) -> None:
    response = post_raw(
        publisher_client, json.dumps(VALID), content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 202, response.content


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"recipients": ["r" * 128]}, id="recipient-128-chars"),
        pytest.param({"recipients": ["😀" * 128]}, id="recipient-128-astral-chars"),
        pytest.param({"type": "t" * 100}, id="type-100-chars"),
        pytest.param({"type": "Az09_.:-"}, id="type-all-allowed-chars"),
        pytest.param({"title": "t" * 200}, id="title-200-chars"),
        pytest.param({"body": "b" * 2000}, id="body-2000-chars"),
        pytest.param({"title": "é" * 200, "body": "ü" * 2000}, id="non-ascii-counted-as-chars"),
        pytest.param({"title": "", "body": ""}, id="blank-title-body"),
        pytest.param({"data": {}}, id="data-empty-object"),
        pytest.param({"data": {"nested": {"list": [1, None, True, "x"]}}}, id="data-nested"),
        pytest.param({"data": {"path": "C:\\u0000dir"}}, id="data-literal-backslash-u0000"),
        pytest.param({"title": "😀 \\n"}, id="title-astral-and-backslash"),
    ],
)
def test_boundary_values_are_accepted(publish: Any, changes: dict[str, Any]) -> None:
    sent = body(**changes)
    response = publish(sent)
    assert response.status_code == 202, response.content
    rows = stored_rows.stored()
    assert sorted(r.user_id for r in rows) == sorted(set(sent["recipients"]))
    for row in rows:
        assert (row.type, row.title, row.body, row.data) == (
            sent["type"],
            sent["title"],
            sent["body"],
            sent["data"],
        )


def _data_of_compact_size(size: int, char: str = "x") -> dict[str, str]:
    """A data object whose compact UTF-8 JSON is exactly ``size`` bytes."""
    overhead = len(b'{"k":""}')
    per_char = len(char.encode())
    assert (size - overhead) % per_char == 0
    data = {"k": char * ((size - overhead) // per_char)}
    assert len(orjson.dumps(data)) == size
    return data


def test_data_exactly_64_kib_is_accepted(publish: Any) -> None:
    response = publish(body(data=_data_of_compact_size(64 * 1024)))
    assert response.status_code == 202, response.content
    assert {len(orjson.dumps(r.data)) for r in stored_rows.stored()} == {64 * 1024}


def test_data_size_is_measured_compact_not_as_sent(publisher_client: AsgiClient) -> None:
    # Sent with lots of whitespace (well over 64 KiB on the wire) but compact it fits.
    data = _data_of_compact_size(64 * 1024)
    raw = json.dumps(body(data=data), indent=40).replace('"k":', '"k":' + " " * 1000)
    assert len(raw) > 64 * 1024 + 1000
    response = post_raw(publisher_client, raw)
    assert response.status_code == 202, response.content


# --------------------------------------------------------------------------- 400 per field rule

FIELD_CASES = [
    pytest.param("recipients", {"recipients": ...}, id="recipients-missing"),
    pytest.param("recipients", {"recipients": []}, id="recipients-empty-list"),
    pytest.param(
        "recipients", {"recipients": [f"u{i}" for i in range(10_001)]}, id="recipients-10001"
    ),
    pytest.param("recipients", {"recipients": [42]}, id="recipient-number"),
    pytest.param("recipients", {"recipients": ["ok", 42]}, id="recipient-number-among-strings"),
    pytest.param("recipients", {"recipients": [None]}, id="recipient-null"),
    pytest.param("recipients", {"recipients": [{"id": "42"}]}, id="recipient-object"),
    pytest.param("recipients", {"recipients": [["42"]]}, id="recipient-list"),
    pytest.param("recipients", {"recipients": [True]}, id="recipient-bool"),
    pytest.param("recipients", {"recipients": [""]}, id="recipient-empty-string"),
    pytest.param("recipients", {"recipients": ["r" * 129]}, id="recipient-129-chars"),
    pytest.param("recipients", {"recipients": "42"}, id="recipients-a-string"),
    pytest.param("recipients", {"recipients": 42}, id="recipients-a-number"),
    pytest.param("recipients", {"recipients": None}, id="recipients-null"),
    pytest.param("recipients", {"recipients": {"42": True}}, id="recipients-an-object"),
    pytest.param("recipients", {"recipients": ["a\x00b"]}, id="recipient-nul"),
    pytest.param("type", {"type": ...}, id="type-missing"),
    pytest.param("type", {"type": ""}, id="type-empty"),
    pytest.param("type", {"type": "t" * 101}, id="type-101-chars"),
    pytest.param("type", {"type": "a b"}, id="type-space"),
    pytest.param("type", {"type": "é"}, id="type-non-ascii"),
    pytest.param("type", {"type": "x/y"}, id="type-slash"),
    pytest.param("type", {"type": "a\n"}, id="type-trailing-newline"),
    pytest.param("type", {"type": "\na"}, id="type-leading-newline"),
    pytest.param("type", {"type": "a\x00"}, id="type-nul"),
    pytest.param("type", {"type": 5}, id="type-number"),
    pytest.param("type", {"type": None}, id="type-null"),
    pytest.param("title", {"title": "t" * 201}, id="title-201-chars"),
    pytest.param("title", {"title": "a\x00b"}, id="title-nul"),
    pytest.param("title", {"title": 7}, id="title-number"),
    pytest.param("title", {"title": ["x"]}, id="title-list"),
    pytest.param("body", {"body": "b" * 2001}, id="body-2001-chars"),
    pytest.param("body", {"body": "a\x00b"}, id="body-nul"),
    pytest.param("body", {"body": {"x": 1}}, id="body-object"),
    pytest.param("data", {"data": [1, 2]}, id="data-list"),
    pytest.param("data", {"data": "text"}, id="data-string"),
    pytest.param("data", {"data": 12}, id="data-number"),
    pytest.param("data", {"data": None}, id="data-null"),
    pytest.param("data", {"data": True}, id="data-bool"),
    pytest.param("data", {"data": {"k": "a\x00b"}}, id="data-nul-in-value"),
    pytest.param("data", {"data": {"a\x00": 1}}, id="data-nul-in-key"),
    pytest.param("data", {"data": _data_of_compact_size(64 * 1024 + 1)}, id="data-64KiB-plus-1"),
    pytest.param(
        "data",
        # 32765 two-byte chars: 32773 characters, but 65538 UTF-8 bytes.
        {"data": _data_of_compact_size(64 * 1024 + 2, "é")},
        id="data-over-64KiB-in-utf8-bytes",
    ),
]


@pytest.mark.parametrize(("field", "changes"), FIELD_CASES)
def test_invalid_field_is_400_naming_it_and_stores_nothing(
    publish: Any, field: str, changes: dict[str, Any]
) -> None:
    response = publish(body(**changes))

    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors, errors
    assert isinstance(errors[field], list | dict) and errors[field]
    assert_nothing_stored()


def test_invalid_field_with_existing_rows_changes_nothing(publish: Any) -> None:
    assert publish(body(recipients=["a"])).status_code == 202
    before = (counts(), sequences())
    response = publish(body(recipients=["a", "b"], title="t" * 201))
    assert response.status_code == 400
    assert (counts(), sequences()) == before


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            '{"recipients": ["\\ud800"], "type": "t"}', id="lone-high-surrogate-recipient"
        ),
        pytest.param('{"recipients": ["a"], "type": "t", "title": "\\udc00"}', id="lone-low-title"),
        pytest.param('{"recipients": ["a"], "type": "t", "body": "x\\ud800y"}', id="lone-body"),
        pytest.param('{"recipients": ["a"], "type": "t", "data": {"k": "\\ud800"}}', id="in-data"),
        pytest.param('{"recipients": ["a"], "type": "t", "data": {"\\ud800": 1}}', id="data-key"),
    ],
)
def test_lone_surrogates_are_400_and_store_nothing(publisher_client: AsgiClient, raw: str) -> None:
    response = post_raw(publisher_client, raw)
    assert response.status_code == 400, response.content
    assert isinstance(response.json(), dict) and response.json()
    assert_nothing_stored()


def test_escaped_surrogate_pair_is_fine(publisher_client: AsgiClient) -> None:
    raw = '{"recipients": ["a"], "type": "t", "title": "\\ud83d\\ude00"}'
    response = post_raw(publisher_client, raw)
    assert response.status_code == 202, response.content
    assert [r.title for r in stored_rows.stored()] == ["😀"]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(json.dumps([VALID]), id="list"),
        pytest.param('"just a string"', id="string"),
        pytest.param("42", id="number"),
        pytest.param("null", id="null"),
    ],
)
def test_body_not_an_object_is_400(publisher_client: AsgiClient, raw: str) -> None:
    response = post_raw(publisher_client, raw)
    assert response.status_code == 400, response.content
    assert isinstance(response.json(), dict) and response.json()
    assert_nothing_stored()


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("{", id="truncated"),
        pytest.param('{"recipients": ["a"], "type": "t",}', id="trailing-comma"),
        pytest.param(json.dumps(VALID) + " {}", id="trailing-data"),
        pytest.param('{"recipients": ["a"], "type": "t", "data": {"x": NaN}}', id="nan"),
        pytest.param("recipients=a&type=t", id="form-encoded-as-json"),
        pytest.param(b'{"recipients": ["\xff"], "type": "t"}', id="invalid-utf8"),
        pytest.param("", id="empty-body"),
    ],
)
def test_invalid_json_is_400(publisher_client: AsgiClient, raw: str | bytes) -> None:
    response = post_raw(publisher_client, raw)
    assert response.status_code == 400, response.content
    assert isinstance(response.json(), dict) and response.json()
    assert_nothing_stored()


# --------------------------------------------------------------------------- 401


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="no-header"),
        pytest.param("Bearer wrong-key", id="wrong-key"),
        pytest.param(f"Bearer {SHOP_SECRET}x", id="key-with-extra-char"),
        pytest.param(f"Bearer {SHOP_SECRET[:-1]}", id="key-prefix"),
        pytest.param(f"Basic {SHOP_SECRET}", id="basic-scheme"),
        pytest.param(SHOP_SECRET, id="no-scheme"),
        pytest.param("Bearer", id="bearer-without-key"),
        pytest.param("Bearer dev-publisher-key", id="dev-key-not-configured"),
        pytest.param("Bearer shop", id="key-name-not-secret"),
        pytest.param(f"Bearer {make_token('42')}", id="user-jwt"),
    ],
)
def test_unauthenticated_is_401_and_stores_nothing(
    client_factory: Any, authorization: str | None
) -> None:
    client = client_factory()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.post(PUBLISH_URL, VALID, format="json")

    assert response.status_code == 401, response.content
    assert set(response.json()) == {"detail"}
    assert isinstance(response.json()["detail"], str)
    assert_nothing_stored()


def test_unauthenticated_invalid_body_is_still_401(
    client_factory: Any,
) -> None:
    response = client_factory().post(PUBLISH_URL, {"nonsense": True}, format="json")
    assert response.status_code == 401
    assert set(response.json()) == {"detail"}


def test_lowercase_bearer_scheme_works(
    client_factory: Any,
) -> None:
    client = client_factory()
    client.credentials(HTTP_AUTHORIZATION=f"bearer {BILLING_SECRET}")
    assert client.post(PUBLISH_URL, VALID, format="json").status_code == 202
    assert {r.source for r in stored_rows.stored()} == {"billing"}


# --------------------------------------------------------------------------- 413


def test_body_over_configured_limit_is_413(settings: Any, publisher_client: AsgiClient) -> None:
    settings.NOTIFY_MAX_BODY_BYTES = 2000
    raw = json.dumps(body(body="b" * 1900))
    assert len(raw.encode()) > 2000
    response = post_raw(publisher_client, raw)
    assert response.status_code == 413, response.content
    assert set(response.json()) == {"detail"}
    assert_nothing_stored()


def test_body_at_configured_limit_is_accepted(settings: Any, publisher_client: AsgiClient) -> None:
    settings.NOTIFY_MAX_BODY_BYTES = 2000
    raw = json.dumps(body(body=""))
    raw = raw[:-1] + " " * (2000 - len(raw)) + "}"
    assert len(raw.encode()) == 2000
    response = post_raw(publisher_client, raw)
    assert response.status_code == 202, response.content


def test_body_over_a_1_mib_limit_is_413(publisher_client: AsgiClient) -> None:
    raw = json.dumps(body(data={"blob": "x" * (1100 * 1024)}))
    assert len(raw) > 1024 * 1024
    response = post_raw(publisher_client, raw)
    assert response.status_code == 413, response.content
    assert set(response.json()) == {"detail"}
    assert_nothing_stored()


# --------------------------------------------------------------------------- 415


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        pytest.param(
            "recipients=42&type=order.shipped",
            "application/x-www-form-urlencoded",
            id="urlencoded-form",
        ),
        pytest.param(
            '--B\r\nContent-Disposition: form-data; name="type"\r\n\r\nx\r\n--B--\r\n',
            "multipart/form-data; boundary=B",
            id="multipart-form",
        ),
        pytest.param("<notification><type>x</type></notification>", "application/xml", id="xml"),
        pytest.param("<notification/>", "text/xml", id="text-xml"),
        pytest.param(json.dumps(VALID), "text/plain", id="json-as-text-plain"),
        pytest.param(json.dumps(VALID), "application/x-json", id="json-wrong-type"),
        pytest.param(json.dumps(VALID), None, id="no-content-type"),
        pytest.param(json.dumps(VALID), "", id="empty-content-type"),
    ],
)
def test_non_json_content_type_is_415(
    publisher_client: AsgiClient, raw: str, content_type: str | None
) -> None:
    response = post_raw(publisher_client, raw, content_type=content_type)
    assert response.status_code == 415, response.content
    assert set(response.json()) == {"detail"}
    assert_nothing_stored()


def test_form_post_through_client_is_415(publisher_client: AsgiClient) -> None:
    response = publisher_client.post(PUBLISH_URL, {"recipients": "42", "type": "x"})
    assert response.status_code == 415
    assert_nothing_stored()


# --------------------------------------------------------------------------- Idempotency-Key


def test_idempotent_replay_returns_first_answer(publish: Any) -> None:
    first = publish(VALID, **{"Idempotency-Key": "order-1234-shipped"})
    assert first.status_code == 202
    assert first.headers.get("Idempotent-Replayed") != "true"
    stored = (counts(), sequences())

    second = publish(VALID, **{"Idempotency-Key": "order-1234-shipped"})
    assert second.status_code == 202
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert (counts(), sequences()) == stored
    assert stored_rows.count() == 2


def test_idempotent_replay_ignores_key_order_and_whitespace(
    publish: Any, publisher_client: AsgiClient
) -> None:
    first = publish(VALID, **{"Idempotency-Key": "k1"})
    reordered = json.dumps(dict(reversed(list(VALID.items()))), indent=2)
    second = post_raw(publisher_client, reordered, **{"Idempotency-Key": "k1"})
    assert second.status_code == 202
    assert second.json() == first.json()
    assert stored_rows.count() == 2


def test_idempotency_key_reused_with_other_body_is_422(publish: Any) -> None:
    first = publish(VALID, **{"Idempotency-Key": "k"})
    assert first.status_code == 202
    stored = (counts(), sequences())

    response = publish(body(title="something else"), **{"Idempotency-Key": "k"})
    assert response.status_code == 422, response.content
    assert set(response.json()) == {"detail"}
    assert (counts(), sequences()) == stored

    # ...and the key still replays the first answer afterwards.
    again = publish(VALID, **{"Idempotency-Key": "k"})
    assert again.status_code == 202
    assert again.json() == first.json()


def test_idempotency_keys_of_publishers_are_independent(
    publish: Any, billing_client: AsgiClient
) -> None:
    shop = publish(VALID, **{"Idempotency-Key": "shared"})
    billing = billing_client.post(
        PUBLISH_URL, body(title="other"), format="json", headers={"Idempotency-Key": "shared"}
    )
    assert shop.status_code == 202
    assert billing.status_code == 202, billing.content
    assert billing.headers.get("Idempotent-Replayed") != "true"
    assert billing.json()["event_id"] != shop.json()["event_id"]
    assert stored_rows.count() == 4
    assert sorted({r.source for r in stored_rows.stored()}) == [
        "billing",
        "shop",
    ]


def test_different_keys_store_separately(publish: Any) -> None:
    first = publish(VALID, **{"Idempotency-Key": "a"})
    second = publish(VALID, **{"Idempotency-Key": "b"})
    assert first.json()["event_id"] != second.json()["event_id"]
    assert stored_rows.count() == 4


def test_without_key_identical_bodies_both_store(publish: Any) -> None:
    publish(VALID)
    publish(VALID)
    assert stored_rows.count() == 4
    assert sequences() == {"42": 2, "43": 2}


def test_idempotency_key_255_chars_is_accepted(publish: Any) -> None:
    response = publish(VALID, **{"Idempotency-Key": "k" * 255})
    assert response.status_code == 202, response.content
    assert IdempotencyRecord.objects.get().key == "k" * 255


def test_idempotency_key_256_chars_is_400(publish: Any) -> None:
    response = publish(VALID, **{"Idempotency-Key": "k" * 256})
    assert response.status_code == 400, response.content
    assert "Idempotency-Key" in response.json()
    assert_nothing_stored()


def test_idempotency_key_empty_is_400(publisher_client: AsgiClient) -> None:
    response = post_raw(publisher_client, json.dumps(VALID), **{"Idempotency-Key": ""})
    assert response.status_code == 400, response.content
    assert_nothing_stored()


def test_expired_idempotency_key_is_treated_as_new(publish: Any) -> None:
    first = publish(VALID, **{"Idempotency-Key": "old"})
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=24, minutes=1))

    second = publish(VALID, **{"Idempotency-Key": "old"})
    assert second.status_code == 202
    assert second.headers.get("Idempotent-Replayed") != "true"
    assert second.json()["event_id"] != first.json()["event_id"]
    assert stored_rows.count() == 4
    assert sequences() == {"42": 2, "43": 2}

    # The key's new life replays the second answer.
    third = publish(VALID, **{"Idempotency-Key": "old"})
    assert third.json() == second.json()
    assert third.headers["Idempotent-Replayed"] == "true"


def test_expired_idempotency_key_with_other_body_is_new_not_422(publish: Any) -> None:
    publish(VALID, **{"Idempotency-Key": "old"})
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    response = publish(body(title="new"), **{"Idempotency-Key": "old"})
    assert response.status_code == 202, response.content
    assert len([r for r in stored_rows.stored() if r.title == "new"]) == 2


def test_idempotency_key_within_24h_still_replays(publish: Any) -> None:
    first = publish(VALID, **{"Idempotency-Key": "recent"})
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=23, minutes=59))
    second = publish(VALID, **{"Idempotency-Key": "recent"})
    assert second.json() == first.json()
    assert stored_rows.count() == 2


def test_invalid_body_with_idempotency_key_does_not_burn_the_key(publish: Any) -> None:
    bad = publish(body(type="bad type"), **{"Idempotency-Key": "k"})
    assert bad.status_code == 400
    good = publish(VALID, **{"Idempotency-Key": "k"})
    assert good.status_code == 202
    assert good.headers.get("Idempotent-Replayed") != "true"
    assert stored_rows.count() == 2


# --------------------------------------------------------------------------- 429


def test_rate_limit_answers_429_with_retry_after(settings: Any, publish: Any) -> None:
    settings.NOTIFY_PUBLISH_RATE = (1.0, 2.0)
    assert publish(body(recipients=["a"])).status_code == 202
    assert publish(body(recipients=["a"])).status_code == 202
    stored = (counts(), sequences())

    refused = publish(body(recipients=["a", "b"]))
    assert refused.status_code == 429, refused.content
    assert set(refused.json()) == {"detail"}
    retry_after = refused.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert (counts(), sequences()) == stored


def test_rate_limit_is_per_publisher_key(
    settings: Any, publish: Any, billing_client: AsgiClient
) -> None:
    settings.NOTIFY_PUBLISH_RATE = (1.0, 2.0)
    publish(VALID)
    publish(VALID)
    assert publish(VALID).status_code == 429
    response = billing_client.post(PUBLISH_URL, VALID, format="json")
    assert response.status_code == 202


# 503 when storage is unreachable: tests/production/test_storage_outage.py stops
# a real PostgreSQL under a live server.


# --------------------------------------------------------------------------- end to end


def test_published_notification_shape_in_user_api(client_factory: Any, publish: Any) -> None:
    response = publish(body(recipients=["42"]))
    assert response.status_code == 202
    client = client_factory()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token('42')}")
    listed = client.get("/api/v1/me/notifications").json()["results"]
    assert len(listed) == 1
    item = listed[0]
    assert item == {
        "id": "1",
        "type": "order.shipped",
        "title": "Your order is on its way",
        "body": "Order #1234 left the warehouse.",
        "data": {"order_id": 1234},
        "source": "shop",
        "created_at": item["created_at"],
        "read_at": None,
    }


def test_get_is_not_allowed_on_publish(publisher_client: AsgiClient) -> None:
    response = publisher_client.get(PUBLISH_URL)
    assert response.status_code == 405
    assert "detail" in response.json()


def test_recipients_10000_is_accepted(publish: Any) -> None:
    recipients = [f"user-{i}" for i in range(10_000)]
    response = publish(body(recipients=recipients))
    assert response.status_code == 202, response.content
    assert response.json()["recipients"] == 10_000
    assert stored_rows.count() == 10_000
    assert {r.seq for r in stored_rows.stored()} == {1}
    assert orjson.loads(response.content)["event_id"]


# --------------------------------------------------------------------------- hardening: keys

OLD_SECRET = "shop-rotation-old-secret-0123456789abcdef0123456789"
NEW_SECRET = "shop-rotation-new-secret-0123456789abcdef0123456789"
SCOPED_SECRET = "shop-scoped-secret-0123456789abcdef0123456789abcdef"


def configured_keys(monkeypatch: pytest.MonkeyPatch, raw: str) -> Any:
    """What settings hold after start-up for ``NOTIFY_API_KEYS=raw``."""
    monkeypatch.setenv("NOTIFY_API_KEYS", raw)
    return config_auth.api_keys(environ.Env(), debug=False)


def client_for(client_factory: Any, secret: str) -> AsgiClient:
    client = client_factory()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def test_rotation_both_secrets_of_one_name_publish_as_that_name(
    client_factory: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NOTIFY_API_KEYS = configured_keys(
        monkeypatch, f"shop:{OLD_SECRET},shop:{NEW_SECRET},billing:{BILLING_SECRET}"
    )
    for secret in (OLD_SECRET, NEW_SECRET):
        response = client_for(client_factory, secret).post(PUBLISH_URL, body(), format="json")
        assert response.status_code == 202, response.content
    assert {r.source for r in stored_rows.stored()} == {"shop"}
    assert (
        client_for(client_factory, SHOP_SECRET).post(PUBLISH_URL, body(), format="json").status_code
        == 401
    )


def test_type_scoped_key_refuses_other_types_and_stores_nothing(
    client_factory: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NOTIFY_API_KEYS = configured_keys(
        monkeypatch, f"shop:{SCOPED_SECRET}:order.*|shipping.late"
    )
    client = client_for(client_factory, SCOPED_SECRET)
    before = counts()
    for refused in ("billing.invoice", "orders", "ORDER.shipped", "shipping.later"):
        response = client.post(PUBLISH_URL, body(type=refused), format="json")
        assert response.status_code == 403, response.content
        assert set(response.json()) == {"detail"}
        assert refused in response.json()["detail"]
    assert counts() == before
    for allowed in ("order.shipped", "order.", "shipping.late"):
        response = client.post(PUBLISH_URL, body(type=allowed), format="json")
        assert response.status_code == 202, response.content
    # A missing or invalid type is still the serializer's 400, not a 403.
    assert client.post(PUBLISH_URL, body(type=...), format="json").status_code == 400
    assert client.post(PUBLISH_URL, body(type=7), format="json").status_code == 400


def test_type_scoped_key_still_reads_presence(
    client_factory: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.NOTIFY_API_KEYS = configured_keys(monkeypatch, f"shop:{SCOPED_SECRET}:order.*")
    response = client_for(client_factory, SCOPED_SECRET).get("/api/v1/users/42/presence")
    assert response.status_code == 200, response.content


def test_settings_hold_no_raw_publisher_secret(
    client_factory: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.conf import settings as django_settings

    settings.NOTIFY_API_KEYS = configured_keys(
        monkeypatch, f"shop:{OLD_SECRET},shop:{NEW_SECRET}:order.*"
    )
    assert (
        client_for(client_factory, NEW_SECRET).post(PUBLISH_URL, body(), format="json").status_code
        == 202
    )
    dumped = "\n".join(
        repr(getattr(django_settings, name)) for name in dir(django_settings) if name.isupper()
    )
    for secret in (OLD_SECRET, NEW_SECRET):
        assert secret not in dumped
        assert secret.encode().hex() not in dumped
    assert hashlib.sha256(OLD_SECRET.encode()).digest() in {
        key.digest for key in django_settings.NOTIFY_API_KEYS["shop"]
    }


@pytest.mark.parametrize("presented", ["first", "last", "wrong"])
def test_key_comparison_runs_over_every_key(
    settings: Any, monkeypatch: pytest.MonkeyPatch, presented: str
) -> None:
    """No early exit: compare_digest is called once per configured key, match or not."""
    settings.NOTIFY_API_KEYS = configured_keys(
        monkeypatch, f"a:{OLD_SECRET},b:{NEW_SECRET},c:{SCOPED_SECRET},d:{BILLING_SECRET}"
    )
    calls: list[int] = []
    real = credentials.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(credentials.hmac, "compare_digest", counting)
    secret = {"first": OLD_SECRET, "last": BILLING_SECRET, "wrong": "not-a-key"}[presented]
    found = credentials.publisher_for_secret(secret)
    assert len(calls) == 4
    assert (found.name if found else None) == {"first": "a", "last": "d", "wrong": None}[presented]


def test_a_raw_secret_in_settings_is_refused_not_hashed(settings: Any) -> None:
    """Settings hold only start-up's parsed digests; no branch accepts a raw secret."""
    settings.NOTIFY_API_KEYS = {"shop": (SHOP_SECRET,)}
    with pytest.raises(TypeError, match="not PublisherKey"):
        credentials.publisher_for_secret(SHOP_SECRET)


def test_the_keys_follow_each_settings_change(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keys are kept between requests (credentials._configured_keys), but a
    changed setting takes effect on the next request: a removed secret no longer
    authenticates, a new one does, and a key's type scope moves with it."""
    settings.NOTIFY_API_KEYS = configured_keys(monkeypatch, f"shop:{OLD_SECRET}")
    found = credentials.publisher_for_secret(OLD_SECRET)
    assert found is not None and found.name == "shop" and found.allows("billing.invoice")
    settings.NOTIFY_API_KEYS = configured_keys(monkeypatch, f"ops:{NEW_SECRET}:order.*")
    assert credentials.publisher_for_secret(OLD_SECRET) is None
    found = credentials.publisher_for_secret(NEW_SECRET)
    assert found is not None and found.name == "ops"
    assert found.allows("order.shipped") and not found.allows("billing.invoice")
