"""Web Push in the admin: subscriptions (never their endpoint or keys) and the
outbox, staff only, read-only, lists whose query count does not grow with the
page. In-process (Django's test client) on the suite's database."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

import orjson
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from notifications.push.models import PushOutbox, PushSubscription
from tests.admin.test_admin import queries_for, rows

pytestmark = pytest.mark.django_db

MODELS = ("pushsubscription", "pushoutbox")


def changelist(model: str) -> str:
    return reverse(f"admin:push_{model}_changelist")


def change(model: str, pk: int) -> str:
    return reverse(f"admin:push_{model}_change", args=[pk])


def subscribe(user: str) -> PushSubscription:
    return PushSubscription.objects.create(
        user_id=user,
        endpoint=f"https://fcm.googleapis.com/fcm/send/{secrets.token_urlsafe(32)}",
        p256dh=secrets.token_urlsafe(65),
        auth=secrets.token_urlsafe(16),
        created_at=timezone.now(),
    )


def owe(user: str, count: int, *, subscription: PushSubscription | None = None) -> None:
    now = timezone.now()
    PushOutbox.objects.bulk_create(
        PushOutbox(
            user_id=user,
            subscription=subscription,
            mode="auto",
            payload=orjson.dumps({"id": str(i + 1), "type": "order.shipped"}).decode(),
            committed_at=now - timedelta(minutes=i),
            expires_at=now + timedelta(days=1),
            next_attempt_at=now + timedelta(seconds=i),
            attempts=i,
        )
        for i in range(count)
    )


@pytest.fixture
def staff(client: Client) -> Client:
    user = User.objects.create_user("support", password="pw-support-1", is_staff=True)
    user.is_superuser = True
    user.save()
    client.force_login(user)
    return client


@pytest.mark.parametrize("model", MODELS)
def test_anonymous_and_non_staff_users_are_refused(client: Client, model: str) -> None:
    response = client.get(changelist(model))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    client.force_login(User.objects.create_user("alice", password="pw-alice-1"))
    response = client.get(changelist(model))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_subscriptions_list_search_and_detail_never_show_endpoint_or_keys(staff: Client) -> None:
    mine = [subscribe("alice"), subscribe("alice")]
    other = subscribe("bob")
    page = staff.get(changelist("pushsubscription")).content.decode()
    assert rows(page) == 3
    assert "fcm.googleapis.com …" + mine[0].endpoint[-4:] in page
    by_user = staff.get(changelist("pushsubscription"), {"q": "alice"}).content.decode()
    assert rows(by_user) == 2 and "bob" not in by_user
    detail = staff.get(change("pushsubscription", mine[0].pk))
    assert detail.status_code == 200
    html = detail.content.decode()
    assert "alice" in html and "?user_id=alice" in html
    assert 'name="_save"' not in html  # read-only
    for sub in [*mine, other]:
        secret_part = sub.endpoint.rsplit("/", 1)[1]
        for page_html in (page, by_user, html):
            assert secret_part not in page_html
            assert secret_part[:-4] not in page_html
            assert sub.p256dh not in page_html and sub.auth not in page_html


def test_outbox_list_search_and_detail(staff: Client) -> None:
    sub = subscribe("carol")
    owe("carol", 3)
    owe("carol", 1, subscription=sub)
    owe("dave", 2)
    page = staff.get(changelist("pushoutbox")).content.decode()
    assert rows(page) == 6
    by_user = staff.get(changelist("pushoutbox"), {"q": "carol"}).content.decode()
    assert rows(by_user) == 4 and "dave" not in by_user
    assert "#1 order.shipped" in by_user
    assert "all of the user&#x27;s" in by_user and f">{sub.pk}<" in by_user
    retry = PushOutbox.objects.get(subscription=sub)
    html = staff.get(change("pushoutbox", retry.pk)).content.decode()
    for label in ("Attempts", "Next attempt at", "Committed at", "Expires at"):
        assert label in html, label
    assert "?user_id=carol" in html
    assert sub.endpoint.rsplit("/", 1)[1] not in html
    assert 'name="_save"' not in html


@pytest.mark.parametrize("model", MODELS)
def test_push_tables_cannot_be_changed(staff: Client, model: str) -> None:
    sub = subscribe("erin")
    owe("erin", 1)
    pk = sub.pk if model == "pushsubscription" else PushOutbox.objects.get().pk
    assert staff.get(reverse(f"admin:push_{model}_add")).status_code == 403
    assert staff.post(change(model, pk), {}).status_code == 403
    delete = reverse(f"admin:push_{model}_delete", args=[pk])
    assert staff.post(delete, {"post": "yes"}).status_code == 403
    assert PushSubscription.objects.count() == 1 and PushOutbox.objects.count() == 1


def _fill(model: str, count: int) -> None:
    for _ in range(count):
        user = f"q-{uuid.uuid4().hex[:6]}"
        if model == "pushsubscription":
            subscribe(user)
        else:
            owe(user, 1, subscription=subscribe(user))


@pytest.mark.parametrize("model", MODELS)
def test_list_queries_do_not_grow_with_the_page(staff: Client, model: str) -> None:
    _fill(model, 3)
    small = queries_for(staff, changelist(model))
    _fill(model, 40)
    assert rows(staff.get(changelist(model)).content.decode()) == 43
    assert queries_for(staff, changelist(model)) == small
