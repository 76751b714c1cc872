"""The scrubbing fast path (service/logs.py): the same answer as the full scrub
on every line, at a fraction of the cost for lines that cannot hold a secret.

Every log line passes ``scrub`` (a connect's "[accepted]" line, each access
line), so it skips the regexes and the percent-decoding when none of the
patterns' words and no percent-escape is in the line; these tests hold it to
the full scrub's answer on lines built to reach every pattern, encoded, in
other cases and Unicode look-alikes.
"""

from __future__ import annotations

import itertools
import re
import sys
from urllib.parse import quote, unquote

import pytest

from service import logs

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA"


def full_scrub(text: str) -> str:
    """The scrub before the fast path: every pattern, then up to three decodes."""
    text = logs._scrub_raw(text)
    decoded = text
    for _ in range(3):
        if "%" not in decoded:
            break
        decoded = unquote(decoded)
        if logs._scrub_raw(decoded) != decoded:
            return logs._scrub_raw(decoded)
    return text


SECRETS = [
    f"?token={JWT}",
    "&token=opaque-secret-123",
    "?access_token=other-secret",
    "?ToKeN=mixed-case-secret",
    "?to\u212aen=kelvin-sign-secret",  # KELVIN SIGN: (?i) matches it to k
    "Authorization: Bearer shop-secret-0123",
    "protocols: bearer.subprotocol-secret",
    "BEARER upper-secret",
    f"body {JWT} end",
    "?tok%65n=encoded-name-secret",
    "%3Ftoken%3Dencoded-separator-secret",
    "?token%3Dencoded-equals-secret",
    "%253Ftoken%253Ddouble-encoded-secret",
    "%25253Ftoken%25253Dtriple-encoded-secret",
    f"token=%65{JWT[1:]}",
    "b%65arer encoded-bearer-secret",
    "B%2545ARER double-encoded-bearer-secret",
    quote(f"?token={JWT}", safe=""),
]
HARMLESS = [
    "",
    "connection open",
    '%s - "WebSocket %s" [accepted]',
    '127.0.0.1:40000 - "WebSocket /ws/notifications?since=0" [accepted]',
    '127.0.0.1:40000 - "GET /healthz HTTP/1.1" 200',
    "100% of 3 sockets",
    "a%20b%zz%",
    "published event 5d2c for 3 recipients (type order.shipped)",
    "tokens: 3 in the bucket",
    "no eyj here, nor e y J",
]


@pytest.mark.parametrize("line", SECRETS + HARMLESS)
def test_the_fast_path_answers_as_the_full_scrub(line: str) -> None:
    for prefix, suffix in itertools.product(["", "GET /ws", "x%20"], ["", " 101", "&since=3"]):
        text = prefix + line + suffix
        assert logs.scrub(text) == full_scrub(text), text


@pytest.mark.parametrize("line", SECRETS)
def test_every_secret_is_scrubbed(line: str) -> None:
    scrubbed = logs.scrub(line)
    assert "secret" not in scrubbed.lower() and JWT not in scrubbed, scrubbed


@pytest.mark.parametrize("line", HARMLESS)
def test_lines_without_a_secret_are_left_alone(line: str) -> None:
    assert logs.scrub(line) == line


@pytest.mark.parametrize("letter", sorted(set("token" + "bearer")))
def test_lower_maps_every_case_insensitive_match_to_the_letter(letter: str) -> None:
    # What the fast path's ``lower()`` check relies on: whatever character the
    # patterns' (?i) matches to a letter of "token" or "bearer" lowers to it.
    pattern = re.compile("(?i)" + letter)
    odd = [
        hex(code)
        for code in range(sys.maxunicode + 1)
        if pattern.fullmatch(chr(code)) and chr(code).lower() != letter
    ]
    assert odd == []
