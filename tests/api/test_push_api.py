"""The Web Push user API in-process: validation, the SSRF rule, ownership,
preferences, and 404 everywhere when Web Push is off. Delivery itself is
covered by tests/push (live processes and a local push service)."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

import environ
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rest_framework.test import APIClient

from notifications.push import config as push_config
from notifications.push.models import PushPreference, PushSubscription

pytestmark = pytest.mark.django_db(transaction=True)

SUBS = "/api/v1/me/push-subscriptions"
PREFS = "/api/v1/me/preferences"
KEY = "/api/v1/push/public-key"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def browser_subscription(endpoint: str) -> dict[str, Any]:
    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {
        "endpoint": endpoint,
        "expirationTime": None,
        "keys": {"p256dh": b64(point), "auth": b64(os.urandom(16))},
    }


FCM = "https://fcm.googleapis.com/fcm/send/abc:APA91b-token"


def push_settings() -> push_config.PushSettings:
    """Web Push on, with a fresh key and the default (public) push services."""
    key = ec.generate_private_key(ec.SECP256R1())
    raw = b64(key.private_numbers().private_value.to_bytes(32, "big"))
    env = environ.Env()
    os.environ["VAPID_PRIVATE_KEY"] = raw
    os.environ["VAPID_SUBJECT"] = "https://ops.example.com/contact"
    try:
        cfg = push_config.push_settings(env)
    finally:
        del os.environ["VAPID_PRIVATE_KEY"], os.environ["VAPID_SUBJECT"]
    assert cfg is not None
    return cfg


@pytest.fixture
def push_on(settings: Any) -> push_config.PushSettings:
    cfg = push_settings()
    settings.NOTIFY_PUSH = cfg
    return cfg


def test_everything_is_404_when_web_push_is_off(
    settings: Any, anon_client: APIClient, user_client: Callable[[str], APIClient]
) -> None:
    settings.NOTIFY_PUSH = None
    alice = user_client("alice")
    assert anon_client.get(KEY).status_code == 404
    assert alice.get(SUBS).status_code == 404
    assert alice.post(SUBS, browser_subscription(FCM), format="json").status_code == 404
    assert alice.delete(f"{SUBS}/1").status_code == 404
    assert alice.get(PREFS).status_code == 404
    assert PushSubscription.objects.count() == 0


def test_public_key_needs_no_auth(
    push_on: push_config.PushSettings, anon_client: APIClient
) -> None:
    response = anon_client.get(KEY)
    assert response.status_code == 200
    assert response.json() == {"public_key": push_on.public_key}
    assert len(base64.urlsafe_b64decode(push_on.public_key + "=")) == 65


def test_register_twice_same_id_list_and_delete(
    push_on: push_config.PushSettings, user_client: Callable[[str], APIClient]
) -> None:
    alice, bob = user_client("alice"), user_client("bob")
    body = browser_subscription(FCM)
    first = alice.post(SUBS, body, format="json")
    assert first.status_code == 201, first.content
    again = alice.post(SUBS, body, format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    listed = alice.get(SUBS).json()["results"]
    assert [(s["id"], s["endpoint"]) for s in listed] == [(first.json()["id"], FCM)]
    assert set(listed[0]) == {"id", "endpoint", "created_at"}
    assert bob.get(SUBS).json() == {"results": []}
    assert bob.delete(f"{SUBS}/{first.json()['id']}").status_code == 404  # not bob's
    assert alice.delete(f"{SUBS}/{first.json()['id']}").status_code == 204
    assert alice.delete(f"{SUBS}/{first.json()['id']}").status_code == 404
    assert alice.delete(f"{SUBS}/not-a-number").status_code == 404


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://fcm.googleapis.com/fcm/send/x",  # not https
        "https://evil.example.com/push",  # not a push service
        "https://127.0.0.1/push",
        "https://169.254.169.254/latest/meta-data",
        "https://fcm.googleapis.com:8443/fcm/send/x",  # another port
        "https://user:pw@fcm.googleapis.com/fcm/send/x",  # credentials
        "https://fcm.googleapis.com.evil.example/x",
        "https://push.apple.com/x",  # *.push.apple.com is subdomains only
        "ftp://fcm.googleapis.com/x",
        "not a url",
    ],
)
def test_endpoints_that_are_not_allowed_push_services_are_refused(
    push_on: push_config.PushSettings, user_client: Callable[[str], APIClient], endpoint: str
) -> None:
    response = user_client("alice").post(SUBS, browser_subscription(endpoint), format="json")
    assert response.status_code == 400
    assert "endpoint" in response.json()
    assert PushSubscription.objects.count() == 0


@pytest.mark.parametrize(
    "endpoint",
    [
        FCM,
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAA",
        "https://web.push.apple.com/QGuQyavXutnMgfRpW",
        "https://wns2-par02p.notify.windows.com/w/?token=BQYAAA",
    ],
)
def test_the_public_push_services_are_allowed_by_default(
    push_on: push_config.PushSettings, user_client: Callable[[str], APIClient], endpoint: str
) -> None:
    response = user_client("alice").post(SUBS, browser_subscription(endpoint), format="json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    "change",
    [
        {"keys": {"p256dh": "AAAA", "auth": b64(os.urandom(16))}},
        {"keys": {"p256dh": b64(b"\x04" + os.urandom(64)), "auth": "short"}},
        {"keys": None},
        {"endpoint": None},
        {"expirationTime": "soon"},
    ],
)
def test_malformed_subscriptions_are_refused(
    push_on: push_config.PushSettings, user_client: Callable[[str], APIClient], change: Any
) -> None:
    body = {**browser_subscription(FCM), **change}
    response = user_client("alice").post(SUBS, body, format="json")
    assert response.status_code == 400
    assert PushSubscription.objects.count() == 0


def test_user_api_needs_a_user_token(
    push_on: push_config.PushSettings, anon_client: APIClient, publisher_client: APIClient
) -> None:
    for client in (anon_client, publisher_client):
        assert client.get(SUBS).status_code == 401
        assert client.post(SUBS, browser_subscription(FCM), format="json").status_code == 401
        assert client.get(PREFS).status_code == 401
    assert PushSubscription.objects.count() == 0


def test_preferences_round_trip_and_validation(
    push_on: push_config.PushSettings, user_client: Callable[[str], APIClient]
) -> None:
    alice = user_client("alice")
    assert alice.get(PREFS).json() == {"push": {"muted_types": []}}
    wanted = {"push": {"muted_types": ["marketing.*", "chat.typing", "marketing.*"]}}
    response = alice.put(PREFS, wanted, format="json")
    assert response.status_code == 200
    assert response.json() == {"push": {"muted_types": ["marketing.*", "chat.typing"]}}
    assert alice.get(PREFS).json() == response.json()
    assert user_client("bob").get(PREFS).json() == {"push": {"muted_types": []}}
    for bad in (["marketing*"], ["a b"], [""], "marketing.*", [1], ["x"] * 101):
        answer = alice.put(PREFS, {"push": {"muted_types": bad}}, format="json")
        assert answer.status_code == 400, bad
    assert PushPreference.objects.get(user_id="alice").muted_types == [
        "marketing.*",
        "chat.typing",
    ]


def test_publish_refuses_an_unknown_push_mode(publish: Callable[..., Any]) -> None:
    response = publish({"recipients": ["a"], "type": "t", "push": "sometimes"})
    assert response.status_code == 400
    assert "push" in response.json()


def test_deleting_a_users_push_data_removes_subscriptions_owed_pushes_and_preferences(
    push_on: push_config.PushSettings, user_client: Callable[[str], APIClient]
) -> None:
    from django.db import transaction
    from django.utils import timezone

    from notifications.push import services
    from notifications.push.models import PushOutbox

    for user in ("alice", "bob"):
        client = user_client(user)
        endpoint = f"{FCM}-{user}"
        assert client.post(SUBS, browser_subscription(endpoint), format="json").status_code == 201
        assert (
            client.put(PREFS, {"push": {"muted_types": ["x.*"]}}, format="json").status_code == 200
        )
    notification = {"id": "1", "type": "t", "title": "", "body": "", "data": {},
                    "created_at": "2026-11-27T00:00:00.000000Z"}  # fmt: skip
    with transaction.atomic():
        owed = services.record_owed(
            [("alice", notification, "auto"), ("bob", notification, "always")],
            committed_at=timezone.now(),
        )
    assert owed == 2
    services.user_push_data_delete(user_id="alice")
    assert list(PushSubscription.objects.values_list("user_id", flat=True)) == ["bob"]
    assert list(PushOutbox.objects.values_list("user_id", flat=True)) == ["bob"]
    assert list(PushPreference.objects.values_list("user_id", flat=True)) == ["bob"]


def test_owed_pushes_are_stored_as_published_and_claimed_once(
    push_on: push_config.PushSettings, user_client: Callable[[str], APIClient]
) -> None:
    """The outbox rows the publish writes (``COPY`` on PostgreSQL,
    ``bulk_create`` elsewhere) come back from a claim exactly as published,
    and a claimed row is leased: a second claim gets nothing."""
    import datetime

    import orjson
    from django.db import transaction
    from django.utils import timezone

    from notifications.push import outbox, services

    bob = user_client("bob")
    assert bob.post(SUBS, browser_subscription(FCM), format="json").status_code == 201
    notification = {"id": "7", "type": "order.shipped", "title": "Tab\t«quoted»\\",
                    "body": "line\nnext, \"quotes\"", "data": {"k": [1, None]},
                    "created_at": "2026-11-27T00:00:00.000000Z", "extra": "not pushed"}  # fmt: skip
    # Due (in the past), with microseconds that must survive the round trip.
    committed = timezone.now().replace(microsecond=123456) - datetime.timedelta(minutes=1)
    with transaction.atomic():
        owed = services.record_owed(
            [("bob", notification, "always"), ("carol", notification, "auto"),
             ("bob", {**notification, "id": "8"}, "never")],
            committed_at=committed,
        )  # fmt: skip
    assert owed == 1  # carol has no subscription; "never" owes nothing
    (row,) = outbox.claim(10)
    assert (row.user_id, row.mode, row.subscription_id, row.attempts) == ("bob", "always", None, 0)
    assert row.committed_at == committed
    assert row.expires_at == committed + datetime.timedelta(seconds=push_on.ttl)
    assert orjson.loads(row.payload) == {k: v for k, v in notification.items() if k != "extra"}
    assert outbox.claim(10) == []
