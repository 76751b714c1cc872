"""The user API: /api/v1/me/notifications, unread-count, read, and user authentication."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from notifications import services
from tests.api.conftest import (
    ME_URL,
    OTHER_JWT_SECRET,
    PUBLISH_URL,
    READ_URL,
    SHOP_SECRET,
    UNREAD_URL,
    make_token,
    unsigned_token,
)
from tests.support import rows as stored_rows
from tests.support.asgi import AsgiClient

pytestmark = pytest.mark.django_db(transaction=True)

NOTIFICATION_KEYS = {"id", "type", "title", "body", "data", "source", "created_at", "read_at"}
TIMESTAMP = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)\Z")

UserClient = Callable[[str], AsgiClient]


def seed(user: str, count: int, *, type: str = "t") -> None:
    """``count`` notifications for ``user``, titled n1, n2, ... in id order."""
    start = stored_rows.count(user)
    for i in range(start + 1, start + count + 1):
        services.notifications_publish(
            source="shop", recipients=[user], type=type, title=f"n{i}", data={"i": i}
        )


def ids(results: list[dict[str, Any]]) -> list[int]:
    return [int(item["id"]) for item in results]


def read_state(user: str) -> dict[int, bool]:
    return stored_rows.read_state(user)


def walk(client: AsgiClient, url: str) -> tuple[list[list[int]], list[str]]:
    """Follow ``next`` to the end; returns the ids of each page and every next URL."""
    pages: list[list[int]] = []
    nexts: list[str] = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.content
        payload = response.json()
        assert set(payload) == {"results", "next"}
        pages.append(ids(payload["results"]))
        url = payload["next"]
        if url:
            nexts.append(url)
        assert len(pages) < 100, "pagination does not end"
    return pages, nexts


# --------------------------------------------------------------------------- list


def test_list_newest_first_with_notification_shape(user_client: UserClient) -> None:
    seed("alice", 3)
    response = user_client("alice").get(ME_URL)
    assert response.status_code == 200
    payload = response.json()
    assert payload["next"] is None
    assert ids(payload["results"]) == [3, 2, 1]
    for item in payload["results"]:
        assert set(item) == NOTIFICATION_KEYS
        assert isinstance(item["id"], str) and item["id"].isdigit()
        assert TIMESTAMP.match(item["created_at"]), item["created_at"]
        assert item["read_at"] is None
        assert item["source"] == "shop"
    newest = payload["results"][0]
    assert (newest["title"], newest["data"], newest["body"]) == ("n3", {"i": 3}, "")


def test_list_empty(user_client: UserClient) -> None:
    response = user_client("nobody").get(ME_URL)
    assert response.status_code == 200
    assert response.json() == {"results": [], "next": None}


def test_limit_caps_the_page(user_client: UserClient) -> None:
    seed("alice", 5)
    payload = user_client("alice").get(ME_URL, {"limit": 2}).json()
    assert ids(payload["results"]) == [5, 4]
    assert payload["next"]


def test_default_limit_is_50(user_client: UserClient) -> None:
    seed("alice", 51)
    payload = user_client("alice").get(ME_URL).json()
    assert ids(payload["results"]) == list(range(51, 1, -1))
    assert payload["next"]


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 10])
def test_cursor_walk_has_no_duplicates_and_no_gaps(user_client: UserClient, limit: int) -> None:
    seed("alice", 7)
    seed("bob", 4)
    client = user_client("alice")
    pages, nexts = walk(client, f"{ME_URL}?limit={limit}")

    flat = [i for page in pages for i in page]
    assert flat == [7, 6, 5, 4, 3, 2, 1]
    assert all(1 <= len(page) <= limit for page in pages)
    assert len(pages) == -(-7 // limit)  # no trailing empty page
    for url in nexts:
        parts = urlsplit(url)
        assert parts.scheme == "http" and parts.netloc == "testserver", url
        assert parts.path == ME_URL
        assert parse_qs(parts.query)["limit"] == [str(limit)]


def test_cursor_walk_is_stable_while_new_notifications_arrive(user_client: UserClient) -> None:
    seed("alice", 6)
    client = user_client("alice")
    first = client.get(ME_URL, {"limit": 2}).json()
    assert ids(first["results"]) == [6, 5]
    seed("alice", 3)  # ids 7..9 arrive while the client pages back
    pages, _ = walk(client, first["next"])
    assert [i for page in pages for i in page] == [4, 3, 2, 1]


def test_unread_filter(user_client: UserClient) -> None:
    seed("alice", 6)
    services.notifications_mark_read(user_id="alice", ids=[2, 5])
    client = user_client("alice")

    payload = client.get(ME_URL, {"unread": "true"}).json()
    assert ids(payload["results"]) == [6, 4, 3, 1]
    assert all(item["read_at"] is None for item in payload["results"])

    everything = client.get(ME_URL).json()["results"]
    assert ids(everything) == [6, 5, 4, 3, 2, 1]
    read = {item["id"]: item["read_at"] for item in everything}
    assert read["5"] is not None and TIMESTAMP.match(read["5"])
    assert read["2"] is not None

    assert ids(client.get(ME_URL, {"unread": "false"}).json()["results"]) == [6, 5, 4, 3, 2, 1]


def test_unread_filter_is_kept_across_pages(user_client: UserClient) -> None:
    seed("alice", 9)
    services.notifications_mark_read(user_id="alice", ids=[1, 4, 5, 8])
    pages, nexts = walk(user_client("alice"), f"{ME_URL}?unread=true&limit=2")
    assert [i for page in pages for i in page] == [9, 7, 6, 3, 2]
    assert nexts and all(parse_qs(urlsplit(u).query).get("unread") == ["true"] for u in nexts)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("abc", id="garbage"),
        pytest.param("!!!!", id="not-base64"),
        pytest.param(_b64("v2:5"), id="unknown-version"),
        pytest.param(_b64("v1:abc"), id="not-a-number"),
        pytest.param(_b64("v1:-3"), id="negative"),
        pytest.param(_b64("v1:"), id="empty-value"),
        pytest.param("A" * 500, id="too-long"),
        pytest.param(base64.urlsafe_b64encode(b"\xff\xfe").decode(), id="not-utf8"),
    ],
)
def test_invalid_cursor_is_400(user_client: UserClient, cursor: str) -> None:
    seed("alice", 2)
    response = user_client("alice").get(ME_URL, {"cursor": cursor})
    assert response.status_code == 400, response.content
    assert isinstance(response.json(), dict) and response.json()


@pytest.mark.parametrize("limit", ["0", "201", "-1", "abc", "1.5"])
def test_invalid_limit_is_400(user_client: UserClient, limit: str) -> None:
    response = user_client("alice").get(ME_URL, {"limit": limit})
    assert response.status_code == 400, response.content
    assert "limit" in response.json()


@pytest.mark.parametrize("limit", [1, 200])
def test_limit_bounds_are_accepted(user_client: UserClient, limit: int) -> None:
    seed("alice", 2)
    response = user_client("alice").get(ME_URL, {"limit": limit})
    assert response.status_code == 200
    assert len(response.json()["results"]) == min(limit, 2)


# --------------------------------------------------------------------------- unread-count


def test_unread_count(user_client: UserClient) -> None:
    client = user_client("alice")
    assert client.get(UNREAD_URL).json() == {"unread": 0}
    seed("alice", 4)
    seed("bob", 2)
    assert client.get(UNREAD_URL).json() == {"unread": 4}
    services.notifications_mark_read(user_id="alice", ids=[1, 3])
    assert client.get(UNREAD_URL).json() == {"unread": 2}
    assert user_client("bob").get(UNREAD_URL).json() == {"unread": 2}


# --------------------------------------------------------------------------- mark read


def test_mark_read_by_ids(user_client: UserClient) -> None:
    seed("alice", 4)
    client = user_client("alice")
    response = client.post(READ_URL, {"ids": ["1", "3"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"updated": 2}
    assert read_state("alice") == {1: True, 2: False, 3: True, 4: False}
    assert client.get(UNREAD_URL).json() == {"unread": 2}

    again = client.post(READ_URL, {"ids": ["1", "3"]}, format="json")
    assert again.status_code == 200
    assert again.json() == {"updated": 0}


def test_mark_read_counts_only_changed(user_client: UserClient) -> None:
    seed("alice", 3)
    client = user_client("alice")
    client.post(READ_URL, {"ids": ["2"]}, format="json")
    [first] = stored_rows.stored("alice", seqs=[2])
    response = client.post(READ_URL, {"ids": ["1", "2", "2", "1"]}, format="json")
    assert response.json() == {"updated": 1}
    # Re-marking does not move the first read time.
    assert stored_rows.stored("alice", seqs=[2]) == [first]


def test_mark_all_read(user_client: UserClient) -> None:
    seed("alice", 5)
    seed("bob", 3)
    services.notifications_mark_read(user_id="alice", ids=[2])
    client = user_client("alice")

    response = client.post(READ_URL, {"all": True}, format="json")
    assert response.status_code == 200
    assert response.json() == {"updated": 4}
    assert all(read_state("alice").values())
    assert not any(read_state("bob").values())
    assert client.post(READ_URL, {"all": True}, format="json").json() == {"updated": 0}


def test_mark_read_unknown_id_is_404_and_changes_nothing(user_client: UserClient) -> None:
    seed("alice", 2)
    seed("bob", 5)
    client = user_client("alice")

    for bad in (["1", "5"], ["5"], ["999"], ["2", "1", "3"]):
        response = client.post(READ_URL, {"ids": bad}, format="json")
        assert response.status_code == 404, (bad, response.content)
        assert set(response.json()) == {"detail"}
        assert read_state("alice") == {1: False, 2: False}
        assert not any(read_state("bob").values())


def test_other_users_id_answers_exactly_like_a_missing_one(user_client: UserClient) -> None:
    seed("alice", 1)
    seed("bob", 5)
    client = user_client("alice")
    other = client.post(READ_URL, {"ids": ["5"]}, format="json")
    missing = client.post(READ_URL, {"ids": ["6"]}, format="json")
    assert other.status_code == missing.status_code == 404
    assert other.json().keys() == missing.json().keys() == {"detail"}
    assert other.json()["detail"].replace("5", "N") == missing.json()["detail"].replace("6", "N")


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({}, id="empty-object"),
        pytest.param({"ids": ["1"], "all": True}, id="both-ids-and-all"),
        pytest.param({"all": False}, id="all-false"),
        pytest.param({"all": "yes-please"}, id="all-not-bool"),
        pytest.param({"all": "true"}, id="all-a-string"),
        pytest.param({"all": 1}, id="all-a-number"),
        pytest.param({"ids": [1]}, id="ids-numbers"),
        pytest.param({"ids": ["1", 2]}, id="ids-mixed"),
        pytest.param({"ids": [None]}, id="ids-null"),
        pytest.param({"ids": ["abc"]}, id="ids-abc"),
        pytest.param({"ids": ["-1"]}, id="ids-negative"),
        pytest.param({"ids": ["1.0"]}, id="ids-decimal"),
        pytest.param({"ids": "1"}, id="ids-a-string"),
        pytest.param({"ids": None}, id="ids-null-list"),
        pytest.param(["1"], id="a-list"),
    ],
)
def test_mark_read_bad_body_is_400(user_client: UserClient, payload: Any) -> None:
    seed("alice", 2)
    response = user_client("alice").post(READ_URL, payload, format="json")
    assert response.status_code == 400, response.content
    assert isinstance(response.json(), dict) and response.json()
    assert read_state("alice") == {1: False, 2: False}


@pytest.mark.parametrize("raw", ["abc", '{"ids": ["1"]', ""])
def test_mark_read_invalid_json_is_400(user_client: UserClient, raw: str) -> None:
    seed("alice", 1)
    response = user_client("alice").generic("POST", READ_URL, raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert read_state("alice") == {1: False}


# --------------------------------------------------------------------------- one notification


def test_get_own_notification(user_client: UserClient) -> None:
    seed("alice", 3)
    response = user_client("alice").get(f"{ME_URL}/2")
    assert response.status_code == 200, response.content
    item = response.json()
    assert set(item) == NOTIFICATION_KEYS
    assert (item["id"], item["title"], item["data"]) == ("2", "n2", {"i": 2})


@pytest.mark.parametrize("notification_id", ["4", "5", "0", "999999999999", "abc", "-1"])
def test_get_other_or_missing_notification_is_404(
    user_client: UserClient, notification_id: str
) -> None:
    seed("alice", 3)
    seed("bob", 5)
    response = user_client("alice").get(f"{ME_URL}/{notification_id}")
    assert response.status_code == 404, response.content
    assert set(response.json()) == {"detail"}


def test_get_after_mark_read_shows_read_at(user_client: UserClient) -> None:
    seed("alice", 1)
    client = user_client("alice")
    client.post(READ_URL, {"ids": ["1"]}, format="json")
    item = client.get(f"{ME_URL}/1").json()
    assert item["read_at"] is not None and TIMESTAMP.match(item["read_at"])


# --------------------------------------------------------------------------- isolation


def test_users_see_only_their_own(user_client: UserClient) -> None:
    seed("alice", 2, type="for.alice")
    seed("bob", 3, type="for.bob")
    alice = user_client("alice").get(ME_URL).json()["results"]
    bob = user_client("bob").get(ME_URL).json()["results"]
    assert ids(alice) == [2, 1]
    assert {item["type"] for item in alice} == {"for.alice"}
    assert ids(bob) == [3, 2, 1]
    assert {item["type"] for item in bob} == {"for.bob"}


def test_mark_all_by_one_user_leaves_the_other(user_client: UserClient) -> None:
    seed("alice", 2)
    seed("bob", 2)
    user_client("bob").post(READ_URL, {"all": True}, format="json")
    assert user_client("alice").get(UNREAD_URL).json() == {"unread": 2}


def test_similar_user_ids_do_not_mix(user_client: UserClient) -> None:
    seed("1", 1)
    seed("01", 2)
    seed("1 ", 3)
    assert ids(user_client("1").get(ME_URL).json()["results"]) == [1]
    assert ids(user_client("01").get(ME_URL).json()["results"]) == [2, 1]
    assert ids(user_client("1 ").get(ME_URL).json()["results"]) == [3, 2, 1]


# --------------------------------------------------------------------------- auth

USER_ENDPOINTS = [
    pytest.param("get", ME_URL, None, id="list"),
    pytest.param("get", UNREAD_URL, None, id="unread-count"),
    pytest.param("post", READ_URL, {"all": True}, id="mark-read"),
    pytest.param("get", f"{ME_URL}/1", None, id="one"),
]

BAD_USER_CREDENTIALS = [
    pytest.param(None, id="no-token"),
    pytest.param(f"Bearer {make_token('alice', exp_in=-10)}", id="expired"),
    pytest.param(f"Bearer {make_token('alice', secret=OTHER_JWT_SECRET)}", id="wrong-signature"),
    pytest.param(f"Bearer {unsigned_token('alice')}", id="alg-none"),
    pytest.param(f"Bearer {make_token('alice', algorithm='HS512')}", id="alg-not-allowed"),
    pytest.param(f"Bearer {make_token('alice', exp_in=None)}", id="no-exp"),
    pytest.param(f"Bearer {make_token('a' * 129)}", id="sub-129-chars"),
    pytest.param(f"Bearer {make_token(42)}", id="sub-number"),
    pytest.param(f"Bearer {make_token('')}", id="sub-empty"),
    pytest.param(f"Bearer {make_token(None)}", id="sub-missing"),
    pytest.param(f"Bearer {make_token(['alice'])}", id="sub-list"),
    pytest.param(f"Bearer {make_token('alice', exp='tomorrow')}", id="exp-not-a-number"),
    pytest.param(f"Bearer {make_token('alice', nbf=9_999_999_999)}", id="not-yet-valid"),
    pytest.param(f"Bearer {SHOP_SECRET}", id="publisher-key"),
    pytest.param(f"Basic {make_token('alice')}", id="basic-scheme"),
    pytest.param("Bearer not.a.jwt", id="malformed"),
    pytest.param(f"Bearer {make_token('alice')[:-2]}", id="truncated-signature"),
]


@pytest.mark.parametrize(("method", "url", "payload"), USER_ENDPOINTS)
@pytest.mark.parametrize("authorization", BAD_USER_CREDENTIALS)
def test_user_endpoints_refuse_bad_credentials(
    client_factory: Any, method: str, url: str, payload: Any, authorization: str | None
) -> None:
    seed("alice", 1)
    client = client_factory()
    if authorization is not None:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = getattr(client, method)(url, payload, format="json")
    assert response.status_code == 401, response.content
    assert set(response.json()) == {"detail"}
    assert read_state("alice") == {1: False}


@pytest.mark.parametrize(("method", "url", "payload"), USER_ENDPOINTS)
def test_user_endpoints_accept_a_valid_token(
    client_factory: Any, method: str, url: str, payload: Any
) -> None:
    seed("alice", 1)
    client = client_factory()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token('alice')}")
    response = getattr(client, method)(url, payload, format="json")
    assert response.status_code == 200, response.content


def test_sub_of_128_chars_is_accepted(
    client_factory: Any,
) -> None:
    user = "u" * 128
    seed(user, 1)
    client = client_factory()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(user)}")
    assert ids(client.get(ME_URL).json()["results"]) == [1]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        pytest.param("post", PUBLISH_URL, id="publish"),
        pytest.param("get", "/api/v1/users/alice/presence", id="presence"),
    ],
)
def test_user_token_never_works_on_publisher_endpoints(
    client_factory: Any, method: str, url: str
) -> None:
    client = client_factory()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token('alice')}")
    response = getattr(client, method)(
        url, {"recipients": ["alice"], "type": "x"} if method == "post" else None, format="json"
    )
    assert response.status_code == 401, response.content
    assert set(response.json()) == {"detail"}
    assert stored_rows.count() == 0
