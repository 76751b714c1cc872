"""Muted type patterns: an exact type, ``prefix.*`` (the prefix and every type
under it), or ``*`` (everything). Muting is for push only; the feed keeps all."""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_PATTERNS = 100
_PATTERN = re.compile(r"\A(\*|[A-Za-z0-9_.:-]{1,100}|[A-Za-z0-9_.:-]{1,98}\.\*)\Z")


def valid_pattern(pattern: str) -> bool:
    return bool(_PATTERN.match(pattern))


def is_muted(notification_type: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == notification_type:
            return True
        if pattern.endswith(".*"):
            prefix = pattern[:-2]
            if notification_type == prefix or notification_type.startswith(prefix + "."):
                return True
    return False
