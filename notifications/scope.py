"""What a transport reads from an ASGI scope: its query parameters.

One parser for every transport (the socket's ``?token=`` and ``?since=``,
and any stream that takes them), so that they all read a query the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs


def query_param(scope: Mapping[str, Any], name: str) -> str | None:
    """The first value of ``name`` in the scope's query string, or None."""
    values = parse_qs(scope.get("query_string", b"").decode("latin1")).get(name)
    return values[0] if values else None
