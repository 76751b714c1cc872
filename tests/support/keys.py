"""Publisher keys configured the way production configures them.

Start-up parses ``NOTIFY_API_KEYS`` (``name:secret[:types],...``) into
``settings.NOTIFY_API_KEYS`` (digests only). In-process tests put the result
of that same parser into settings, never a raw secret.
"""

from __future__ import annotations

from collections.abc import Mapping

import environ

from notifications.credentials import PublisherKey
from service import config_auth


def api_keys_setting(spec: str) -> dict[str, tuple[PublisherKey, ...]]:
    """``settings.NOTIFY_API_KEYS`` as start-up builds it from ``NOTIFY_API_KEYS=spec``."""
    env = environ.Env()
    env.ENVIRON = {"NOTIFY_API_KEYS": spec}
    return config_auth.api_keys(env, debug=False)


def api_keys_spec(secrets: Mapping[str, str]) -> str:
    """``{name: secret}`` -> the ``NOTIFY_API_KEYS`` value (``name:secret,...``)."""
    return ",".join(f"{name}:{secret}" for name, secret in secrets.items())


def dev_api_keys_setting() -> dict[str, tuple[PublisherKey, ...]]:
    """``settings.NOTIFY_API_KEYS`` of dev mode without NOTIFY_API_KEYS: the dev key."""
    env = environ.Env()
    env.ENVIRON = {}
    return config_auth.api_keys(env, debug=True)
