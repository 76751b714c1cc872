"""Which push endpoints the server may POST to (the SSRF rule).

A subscription endpoint is a URL chosen by the browser, i.e. by whoever
holds a user token: only ``https`` URLs on ``NOTIFY_PUSH_ALLOWED_HOSTS``
(no credentials in the URL) are accepted, when subscribing and again before
every send (the list may have shrunk since).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from notifications.push.config import PushSettings


def endpoint_error(endpoint: str, cfg: PushSettings) -> str | None:
    """Why ``endpoint`` may not be used, or None when it may."""
    try:
        parts = urlsplit(endpoint)
        port = parts.port or 443
    except ValueError:
        return "Must be a URL."
    if parts.scheme != "https":
        return "Must be an https URL."
    host = (parts.hostname or "").rstrip(".")
    if not host or parts.username is not None or parts.password is not None:
        return "Must be an https URL with a host and no credentials."
    if not any(rule.matches(host, port) for rule in cfg.allowed_hosts):
        return "The push service host is not allowed (NOTIFY_PUSH_ALLOWED_HOSTS)."
    return None


def origin(endpoint: str) -> str:
    """``scheme://host[:port]``: the VAPID ``aud`` and the connection pool key."""
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def masked(endpoint: str) -> str:
    """The endpoint as support may see it: its host and the last 4 characters.

    An endpoint is a capability URL (whoever has it can push to the browser,
    with the keys), so the admin and ``notify_inspect`` show this
    instead: enough to tell a user's subscriptions apart, not to use one.
    """
    try:
        host = urlsplit(endpoint).hostname or "?"
    except ValueError:
        host = "?"
    return f"{host} …{endpoint[-4:]}" if len(endpoint) > 24 else f"{host} …"
