"""Browser origins: their one normal form, and which ones may connect.

``ALLOWED_ORIGINS`` (service/config.py) is parsed with ``normalize_origin``;
every transport that checks an ``Origin`` header asks ``origin_allowed``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

# Without ALLOWED_ORIGINS (dev mode), pages on these hosts, any port, may connect.
DEV_ORIGIN_HOSTS = ("localhost", "127.0.0.1", "[::1]")


def normalize_origin(value: str) -> str | None:
    """``https://Example.com:443`` -> ``https://example.com:443``; None if not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    port = port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}"


def origin_allowed(origin: str) -> bool:
    normalized = normalize_origin(origin)
    if normalized is None:
        return False
    allowed: list[str] | None = settings.NOTIFY_ALLOWED_ORIGINS
    if allowed is not None:
        return normalized in allowed
    host = normalized.split("://", 1)[1].rsplit(":", 1)[0]
    return host in DEV_ORIGIN_HOSTS
