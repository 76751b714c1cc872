"""The dev commands a newcomer types first: ``issue_token`` and ``devinfo``."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from notifications.tokens import verify_user_token
from tests.support.keys import dev_api_keys_setting


@pytest.mark.parametrize("ttl", ["0", "-5"])
def test_issue_token_refuses_a_token_that_is_expired_when_printed(ttl: str) -> None:
    out = io.StringIO()
    with pytest.raises(
        CommandError, match=f"--ttl must be a positive number of seconds, got {ttl}"
    ):
        call_command("issue_token", "alice", "--ttl", ttl, stdout=out)
    assert out.getvalue() == ""


def test_issue_token_with_a_positive_ttl_is_valid() -> None:
    out = io.StringIO()
    call_command("issue_token", "alice", "--ttl", "60", stdout=out)
    assert verify_user_token(out.getvalue().strip()).user_id == "alice"


def test_devinfo_names_the_demo_first_in_aligned_columns(settings: Any) -> None:
    settings.DEBUG = True
    settings.NOTIFY_DEMO_ENABLED = True
    settings.NOTIFY_API_KEYS = dev_api_keys_setting()
    out = io.StringIO()
    call_command("devinfo", "--port", "8123", stdout=out)
    rows = [line for line in out.getvalue().splitlines() if line.startswith("  ")]
    assert rows[0].split() == ["open", "first:", "http://127.0.0.1:8123/demo"]
    columns = {re.search(r":\s+\S", row).end() - 1 for row in rows}  # type: ignore[union-attr]
    assert len(columns) == 1, out.getvalue()
    assert any("dev-publisher-key" in row for row in rows)
