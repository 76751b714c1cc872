"""Notification ids as they travel: strings of ASCII decimal digits.

``str.isdigit`` is not enough: it accepts superscripts ("²") and other
scripts' digits, which ``int()`` then refuses or reads differently.
"""

from __future__ import annotations

import re

MAX_ID_DIGITS = 18  # fits a signed 64-bit integer
_ID = re.compile(r"\A[0-9]{1,18}\Z")


def parse_id(value: object) -> int | None:
    """The id as an int, or None when ``value`` is not 1..18 ASCII digits."""
    if isinstance(value, str) and _ID.match(value):
        return int(value)
    return None
