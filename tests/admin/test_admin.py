"""The Django admin at /admin/: staff only, read-only views of the service's
tables, searches and filters, and lists whose query count does not grow with
the page. In-process (Django's test client) on the suite's database."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from notifications.models import IdempotencyRecord, NotificationRow, UserSequence
from tests.support import rows as stored_rows
from tests.support.rows import store

pytestmark = pytest.mark.django_db

MODELS = ("notificationrow", "usersequence", "idempotencyrecord")


def changelist(model: str) -> str:
    return reverse(f"admin:notifications_{model}_changelist")


def change(model: str, pk: Any) -> str:
    return reverse(f"admin:notifications_{model}_change", args=[pk])


def make_notifications(
    user: str, count: int, *, source: str = "shop", read: int = 0, spread: bool = False
) -> None:
    """``count`` rows of one publish, or with ``spread`` one a day back from today."""
    now = timezone.now()
    event = uuid.uuid4()
    last = UserSequence.objects.filter(user_id=user).values_list("last_id", flat=True).first()
    start = last or 0
    store(
        {
            "user_id": user,
            "seq": start + i + 1,
            "event_id": uuid.uuid4() if spread else event,
            "type": "order.shipped",
            "title": f"t{i}",
            "source": source,
            "created_at": now - timedelta(days=i if spread else 0),
            "read_at": now if i < read else None,
        }
        for i in range(count)
    )
    UserSequence.objects.update_or_create(user_id=user, defaults={"last_id": start + count})


def make_records(count: int) -> None:
    now = timezone.now()
    IdempotencyRecord.objects.bulk_create(
        IdempotencyRecord(
            source="shop",
            key=f"k-{uuid.uuid4().hex}",
            request_hash="0" * 64,
            event_id=uuid.uuid4(),
            recipients=1,
            created_at=now,
        )
        for _ in range(count)
    )


@pytest.fixture
def staff(client: Client) -> Client:
    user = User.objects.create_user("support", password="pw-support-1", is_staff=True)
    user.is_superuser = True  # view permissions on every model
    user.save()
    client.force_login(user)
    return client


def rows(html: str) -> int:
    """Result rows of a change list (each starts with its link cell)."""
    return html.count('<tr><th class="field-')


# --------------------------------------------------------------------------- access


@pytest.mark.parametrize("model", MODELS)
def test_anonymous_users_are_sent_to_the_login(client: Client, model: str) -> None:
    response = client.get(changelist(model))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("model", MODELS)
def test_non_staff_users_are_refused(client: Client, model: str) -> None:
    user = User.objects.create_user("alice", password="pw-alice-1")
    client.force_login(user)
    response = client.get(changelist(model))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    # Logging in as a non-staff user does not work either.
    client.logout()
    login = client.post(
        reverse("admin:login"), {"username": "alice", "password": "pw-alice-1"}, follow=False
    )
    assert login.status_code == 200  # the form again, with an error
    assert client.get(changelist(model)).status_code == 302


def test_staff_log_in_with_a_password(client: Client) -> None:
    User.objects.create_user("support", password="pw-support-1", is_staff=True)
    response = client.post(
        reverse("admin:login"), {"username": "support", "password": "pw-support-1"}
    )
    assert response.status_code == 302
    assert client.get(reverse("admin:index")).status_code == 200


# --------------------------------------------------------------------------- lists


def test_notifications_list_search_and_detail(staff: Client) -> None:
    make_notifications("alice", 3, read=1)
    make_notifications("bob", 2, source="billing")
    page = staff.get(changelist("notificationrow")).content.decode()
    assert rows(page) == 5
    by_user = staff.get(changelist("notificationrow"), {"q": "alice"}).content.decode()
    assert rows(by_user) == 3 and "bob" not in by_user
    by_source = staff.get(changelist("notificationrow"), {"q": "source:billing"}).content.decode()
    assert rows(by_source) == 2
    by_type = staff.get(changelist("notificationrow"), {"q": "type:order.shipped"}).content.decode()
    assert rows(by_type) == 5
    assert rows(staff.get(changelist("notificationrow"), {"q": "type:other"}).content.decode()) == 0
    # A plain term is a user id only (no scan of type and source).
    assert rows(staff.get(changelist("notificationrow"), {"q": "billing"}).content.decode()) == 0
    assert rows(staff.get(changelist("notificationrow"), {"q": "user:bob"}).content.decode()) == 2
    event = stored_rows.stored("bob")[0]
    by_event = staff.get(changelist("notificationrow"), {"q": str(event.event_id)}).content.decode()
    assert rows(by_event) == 2
    linked = staff.get(changelist("notificationrow"), {"user_id": "bob"}).content.decode()
    assert rows(linked) == 2
    detail = staff.get(change("notificationrow", f"bob:{event.seq}"))
    assert detail.status_code == 200
    assert str(event.event_id) in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()  # read-only


def test_a_notifications_object_id_is_user_and_id(staff: Client) -> None:
    # user_id:seq, split at the last colon: a user id may hold colons.
    make_notifications("tenant:7:ann", 2)
    make_notifications("tenant:7", 3)
    page = staff.get(change("notificationrow", "tenant:7:ann:2")).content.decode()
    assert ">tenant:7:ann<" in page and ">2<" in page
    assert staff.get(change("notificationrow", "tenant:7:3")).status_code == 200
    for missing in ("tenant:7:ann:3", "tenant:7:ann", "nobody:1", "tenant:7:ann:x"):
        # The admin sends an unknown object back to the list with a message.
        assert staff.get(change("notificationrow", missing)).status_code == 302, missing


def test_notifications_filter_by_read_state_and_date(staff: Client) -> None:
    make_notifications("carol", 4, read=1, spread=True)  # created today, -1, -2, -3 days; #1 read
    unread = staff.get(changelist("notificationrow"), {"read": "no"}).content.decode()
    assert rows(unread) == 3
    read = staff.get(changelist("notificationrow"), {"read": "yes"}).content.decode()
    assert rows(read) == 1
    # The date filter's own "Today" link.
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    today = {"day__gte": str(midnight.date()), "day__lt": str(midnight.date() + timedelta(1))}
    page = staff.get(changelist("notificationrow"), today).content.decode()
    assert rows(page) == 1
    assert "?day__gte=" in page  # the filter offers the date links


def test_sequence_state_list_search_and_detail(staff: Client) -> None:
    make_notifications("dave", 5, read=2)
    make_notifications("erin", 1)
    UserSequence.objects.filter(user_id="dave").update(purged_through=1)
    page = staff.get(changelist("usersequence"), {"q": "dave"}).content.decode()
    assert rows(page) == 1
    detail = staff.get(change("usersequence", "dave")).content.decode()
    for label, value in (("Last id", "5"), ("Purged through", "1"), ("Unread", "3")):
        assert label in detail
        assert f">{value}<" in detail, (label, value)
    assert "?user_id=dave" in detail


def test_idempotency_records_list_search_and_detail(staff: Client) -> None:
    make_records(3)
    record = IdempotencyRecord.objects.first()
    assert record is not None
    assert rows(staff.get(changelist("idempotencyrecord")).content.decode()) == 3
    by_key = staff.get(changelist("idempotencyrecord"), {"q": record.key}).content.decode()
    assert rows(by_key) == 1
    by_event = staff.get(changelist("idempotencyrecord"), {"q": str(record.event_id)})
    assert rows(by_event.content.decode()) == 1
    detail = staff.get(change("idempotencyrecord", record.pk)).content.decode()
    assert record.key in detail and f"?event__event_id={record.event_id}" in detail


# --------------------------------------------------------------------------- writes


@pytest.mark.parametrize("model", MODELS)
def test_the_service_tables_cannot_be_changed(staff: Client, model: str) -> None:
    make_notifications("frank", 1)
    make_records(1)
    assert staff.get(reverse(f"admin:notifications_{model}_add")).status_code == 403
    pk = {"notificationrow": NotificationRow, "usersequence": UserSequence}.get(
        model, IdempotencyRecord
    ).objects.values_list("pk", flat=True)[0]
    assert staff.post(change(model, pk), {}).status_code == 403
    delete = reverse(f"admin:notifications_{model}_delete", args=[pk])
    assert staff.post(delete, {"post": "yes"}).status_code == 403
    assert stored_rows.count() == 1 and IdempotencyRecord.objects.count() == 1


def test_admin_writes_are_logged(staff: Client, caplog: pytest.LogCaptureFixture) -> None:
    response = staff.post(
        reverse("admin:auth_user_add"),
        {"username": "newstaff", "password1": "A-long-pw-123!", "password2": "A-long-pw-123!"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert LogEntry.objects.filter(object_repr="newstaff").exists()
    lines = [r.getMessage() for r in caplog.records if r.name == "notifications.admin"]
    assert any("admin write: added user newstaff" in line for line in lines), lines


# --------------------------------------------------------------------------- queries


QUERY_PAGES: dict[str, Callable[[int], None]] = {
    "notificationrow": lambda n: make_notifications(f"q-{uuid.uuid4().hex[:6]}", n),
    "usersequence": lambda n: (
        [make_notifications(f"s-{uuid.uuid4().hex[:6]}", 2) for _ in range(n)] and None
    ),
    "idempotencyrecord": make_records,
}


def queries_for(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


@pytest.mark.parametrize("model", MODELS)
def test_list_queries_do_not_grow_with_the_page(staff: Client, model: str) -> None:
    QUERY_PAGES[model](3)
    small = queries_for(staff, changelist(model))
    QUERY_PAGES[model](40)
    full = staff.get(changelist(model)).content.decode()
    assert rows(full) == 43
    assert queries_for(staff, changelist(model)) == small
