"""Publisher credentials, and the one parser of bearer tokens.

Publisher secrets are kept only as SHA-256 digests after start-up
(``settings.NOTIFY_API_KEYS`` maps a name to its ``PublisherKey`` entries)
and every comparison is constant-time: ``hmac.compare_digest`` runs once per
configured key, with no early exit, so neither the secret nor which key
matched leaks through timing. A name may hold several secrets at once
(rotation), and a key may be limited to some notification types.

Every transport takes its bearer credential (a publisher secret or a user
token) out of an ``Authorization`` header with ``bearer_credential``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from django.conf import settings

# The well-known dev key (dev mode only: refused at start when DEBUG is off).
DEV_API_KEY_NAME = "dev"
DEV_API_KEY = "dev-publisher-key"
DEV_API_KEYS = {DEV_API_KEY_NAME: DEV_API_KEY}  # the env form; settings hold only digests


@dataclass(frozen=True)
class PublisherKey:
    """One publisher secret, kept only as its SHA-256 digest after start-up.

    ``types`` are fnmatch patterns (``order.*``) limiting the notification
    types the key may publish; empty means any type.
    """

    name: str
    digest: bytes
    types: tuple[str, ...] = ()

    def allows(self, notification_type: str) -> bool:
        return not self.types or any(fnmatchcase(notification_type, p) for p in self.types)


def secret_digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True)
class Publisher:
    name: str
    is_authenticated: bool = True
    # fnmatch patterns of the notification types this key may publish; () = any.
    types: tuple[str, ...] = ()

    def allows(self, notification_type: str) -> bool:
        return not self.types or any(fnmatchcase(notification_type, p) for p in self.types)


# The configured keys as (digest, the Publisher a match authenticates), built
# once per settings value: rebuilding them (a sort, a tuple per name, hashing
# every entry for a cache lookup, a Publisher per match) was a tenth of a
# publish's own work. Keyed by the identity of ``settings.NOTIFY_API_KEYS``
# (the cache holds it, so the identity cannot be reused): settings are
# replaced, never edited in place (start-up, override_settings).
_keyring: tuple[object, tuple[tuple[bytes, Publisher], ...]] = (object(), ())


def _flatten(configured: Mapping[str, Iterable[Any]]) -> tuple[tuple[bytes, Publisher], ...]:
    flat: list[tuple[bytes, Publisher]] = []
    for _name, entries in sorted(configured.items()):
        for entry in entries:
            # Settings hold only what start-up parsed (service.config_auth.api_keys):
            # digests, never a raw secret.
            if not isinstance(entry, PublisherKey):
                raise TypeError(f"NOTIFY_API_KEYS holds {type(entry).__name__}, not PublisherKey")
            flat.append((entry.digest, Publisher(name=entry.name, types=entry.types)))
    return tuple(flat)


def _configured_keys() -> tuple[tuple[bytes, Publisher], ...]:
    global _keyring
    configured: Mapping[str, Iterable[Any]] = settings.NOTIFY_API_KEYS
    source, keys = _keyring
    if source is not configured:
        keys = _flatten(configured)
        _keyring = (configured, keys)
    return keys


def publisher_for_secret(secret: str) -> Publisher | None:
    presented = secret_digest(secret)
    found: Publisher | None = None
    for digest, publisher in _configured_keys():
        # Every key is compared, whether or not an earlier one matched.
        if hmac.compare_digest(presented, digest):
            found = publisher
    return found


def bearer_credential(header: bytes) -> str | None:
    """The credential of an ``Authorization: Bearer ...`` header, or None."""
    scheme, _, credential = header.partition(b" ")
    if scheme.lower() != b"bearer" or not credential.strip():
        return None
    try:
        return credential.strip().decode("utf-8")
    except UnicodeDecodeError:
        return None
