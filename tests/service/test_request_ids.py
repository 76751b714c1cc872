"""Request ids made for requests that bring none (service/middleware.py)."""

from __future__ import annotations

import uuid

from service.middleware import fresh_request_id, new_request_id


def test_a_made_id_is_a_random_uuid4_hex() -> None:
    made = [fresh_request_id() for _ in range(2000)]
    assert len(set(made)) == len(made)
    for value in made:
        parsed = uuid.UUID(hex=value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert parsed.hex == value  # 32 lower-case hex digits, no dashes
    # Every other bit varies: each hex digit but the version's takes many values.
    for position in range(32):
        seen = {value[position] for value in made}
        if position == 12:
            assert seen == {"4"}
        elif position == 16:
            assert seen == set("89ab")
        else:
            assert len(seen) == 16


def test_a_sane_incoming_id_is_kept_and_any_other_replaced() -> None:
    assert new_request_id("abc-123") == "abc-123"
    for unsafe in ("", "<script>", "a" * 65, "a b"):
        made = new_request_id(unsafe)
        assert made != unsafe and uuid.UUID(hex=made).version == 4
