"""The publish body's JSON refusals (api/parsers.py): nesting deeper than
MAX_JSON_DEPTH and integers outside 64 bits, the same whichever way the
checks walk the parsed value.

``reference_parse`` is the walk as it was before the level-by-level scan
(a stack of (value, depth) pairs and a predicate per scalar); the scan must
accept and refuse exactly what it did, with the same messages.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError

from api.parsers import MAX_JSON_DEPTH, parse_json_body

_INT64 = 2**63
_UINT64 = 2**64


def _reference_walk(value: Any, suspect: Any) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    found = False
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif suspect(item):
            found = True
    return found


def reference_parse(raw: bytes) -> Any:
    value = orjson.loads(raw)
    if _reference_walk(
        value, lambda v: isinstance(v, float) and v.is_integer() and abs(v) >= _INT64
    ) and _reference_walk(json.loads(raw), lambda v: type(v) is int and not -_INT64 <= v < _UINT64):
        raise ParseError("Integers must fit in 64 bits (-2**63 .. 2**64-1).")
    return value


def outcome(parse: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "ok", parse(raw)
    except ParseError as exc:
        return "refused", str(exc.detail)


def nested(depth: int, leaf: str = "1", kinds: str = "[{") -> bytes:
    """``depth`` containers around ``leaf``, alternating lists and objects."""
    opening = closing = ""
    for level in range(depth):
        if kinds[level % len(kinds)] == "[":
            opening, closing = opening + "[", "]" + closing
        else:
            opening, closing = opening + '{"k":', "}" + closing
    return (opening + leaf + closing).encode()


numbers = (
    st.integers(min_value=-(2**70), max_value=2**70).map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.sampled_from(
        [
            "1e19",
            "-1e19",
            "1E+19",
            "9.3e18",
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551615",
            "18446744073709551616",
            "1" + "0" * 30,
            "1.5",
            "0",
            "-0",
        ]
    )
)
leaves = numbers | st.sampled_from(['"x"', "true", "null", '"1e19"', '"[[["'])


@st.composite
def json_texts(draw: st.DrawFn) -> bytes:
    """JSON text with numbers written as the wire may carry them (integers past
    64 bits included), nested up to a little past the limit."""
    items = draw(st.lists(leaves, min_size=0, max_size=5))
    depth = draw(st.integers(min_value=0, max_value=MAX_JSON_DEPTH + 3))
    inner = "[" + ",".join(items) + "]"
    wrapped = nested(depth, inner, draw(st.sampled_from(["[", "{", "[{", "{["])))
    return b'{"recipients": ["a"], "type": "t", "data": {"v": ' + wrapped + b"}}"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=json_texts())
@example(raw=nested(MAX_JSON_DEPTH))
@example(raw=nested(MAX_JSON_DEPTH + 1))
@example(raw=nested(MAX_JSON_DEPTH + 1, "[]"))
@example(raw=nested(MAX_JSON_DEPTH, "18446744073709551616"))
@example(raw=b'{"data": {"n": 18446744073709551616}}')
@example(raw=b'{"data": {"n": 18446744073709551615, "m": 1e19}}')
@example(raw=b"[[1e19, -9223372036854775809]]")
def test_refuses_exactly_what_the_walk_refused(raw: bytes) -> None:
    assert outcome(parse_json_body, raw) == outcome(reference_parse, raw)


@pytest.mark.parametrize(
    ("raw", "refused"),
    [
        (nested(MAX_JSON_DEPTH), None),
        (nested(MAX_JSON_DEPTH + 1), f"JSON nested deeper than {MAX_JSON_DEPTH} levels."),
        (
            nested(MAX_JSON_DEPTH + 1, "[]", "["),
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels.",
        ),
        (b'{"n": 18446744073709551616}', "Integers must fit in 64 bits (-2**63 .. 2**64-1)."),
        (b'{"n": [-9223372036854775809]}', "Integers must fit in 64 bits (-2**63 .. 2**64-1)."),
        (b'{"n": 18446744073709551615, "m": -9223372036854775808, "f": 1e19}', None),
    ],
)
def test_the_limits_at_their_edges(raw: bytes, refused: str | None) -> None:
    assert outcome(parse_json_body, raw) == (
        ("refused", refused) if refused else ("ok", orjson.loads(raw))
    )
