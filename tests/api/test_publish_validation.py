"""The quick check of publish bodies against the serializer it stands in for.

``publish_body_if_valid`` must never accept what ``PublishRequest`` refuses,
and must hand on exactly the data the serializer would; and it must accept
the ordinary bodies, or it saves nothing.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api import serializers as s

pytestmark = pytest.mark.django_db(transaction=True)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
texts = st.text(max_size=220) | st.sampled_from(["", "a", "\x00", "\ud800", "é", " x ", "x" * 201])
type_names = st.from_regex(r"[A-Za-z0-9_.:-]{1,101}", fullmatch=True) | texts
recipients = st.lists(st.text(max_size=130) | st.integers() | st.none(), max_size=5)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "recipients": recipients | json_values,
        "type": type_names | json_values,
        "title": texts | json_values,
        "body": texts | json_values,
        "data": st.dictionaries(st.text(max_size=5), json_values, max_size=4) | json_values,
        "extra": json_values,
    },
)


def serializer_result(raw: Any) -> dict[str, Any] | None:
    body = s.PublishRequest(data=raw)
    return dict(body.validated_data) if body.is_valid() else None


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=bodies | json_values)
@example(raw={"recipients": ["a"], "type": "t", "data": {"k": "\x00"}})
@example(raw={"recipients": ["a"], "type": "t", "data": {"\x00": 1}})
@example(raw={"recipients": ["a"], "type": "t", "title": None})
@example(raw={"recipients": ["a"], "type": "t", "data": {"n": 2**64}})
@example(raw={"recipients": ["a"], "type": "t", "body": "\ud800"})
@example(raw={"recipients": [""], "type": "t"})
@example(raw={"recipients": ["x" * 129], "type": "t"})
@example(raw={"recipients": ["a"], "type": "t" * 101})
@example(raw={"recipients": ["a"], "type": "t", "title": "x" * 201})
@example(raw={"recipients": ["a"], "type": "t", "body": "x" * 2001})
@example(raw={"recipients": ["a"] * (s.MAX_RECIPIENTS + 1), "type": "t"})
@example(raw={"recipients": ["a"], "type": "t\n"})
def test_never_accepts_what_the_serializer_refuses(raw: Any) -> None:
    quick = s.publish_body_if_valid(raw)
    if quick is not None:
        assert quick == serializer_result(raw)


@pytest.mark.parametrize(
    "raw",
    [
        {"recipients": ["42"], "type": "order.shipped"},
        {
            "recipients": ["42", "43", "42"],
            "type": "order.shipped",
            "title": "Ihre Bestellung ist unterwegs 🚚",
            "body": "",
            "data": {"order_id": 1234, "items": [{"sku": "é", "n": 1.5}], "ok": None},
            "unknown_field": "ignored",
        },
        {"recipients": [f"user-{i}" for i in range(s.MAX_RECIPIENTS)], "type": "a:b-c_d"},
        {"recipients": ["x" * 128], "type": "t" * 100, "title": "t" * 200, "body": "b" * 2000},
    ],
)
def test_accepts_ordinary_bodies_as_the_serializer_does(raw: dict[str, Any]) -> None:
    quick = s.publish_body_if_valid(raw)
    assert quick is not None
    assert quick == serializer_result(raw)


def test_data_at_the_size_limit_is_accepted_and_one_byte_over_is_not() -> None:
    # {"k":"xxx..."} is 8 bytes of overhead as compact JSON.
    at_limit = {"recipients": ["a"], "type": "t", "data": {"k": "x" * (s.MAX_DATA_BYTES - 8)}}
    over = {"recipients": ["a"], "type": "t", "data": {"k": "x" * (s.MAX_DATA_BYTES - 7)}}
    assert s.publish_body_if_valid(at_limit) == serializer_result(at_limit)
    assert s.publish_body_if_valid(over) is None
    assert serializer_result(over) is None
