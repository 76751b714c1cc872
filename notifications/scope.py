"""What a transport reads from an ASGI scope: its query parameters.

One parser for every transport (the socket's ``?token=`` and ``?since=``,
and any stream that takes them), so that they all read a query the same way:
the first parameter whose name is literally ``name``, its value not
percent-decoded. Tokens and ids need no encoding, and a decoded name or value
(``tok%65n=``, ``token=%65yJ``) would authenticate in a form the log
scrubber (service/logs.py) does not recognise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def query_param(scope: Mapping[str, Any], name: str) -> str | None:
    """The first non-empty literal ``name=`` value of the scope's query string, or None."""
    wanted = name.encode("latin-1")
    query: bytes = scope.get("query_string", b"")
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == wanted and value:
            return value.decode("latin-1")
    return None
