"""Web Push settings (contract v1.1), read from the environment and validated at start-up.

Web Push is off unless ``VAPID_PRIVATE_KEY`` is set; everything else then
has a default except ``VAPID_SUBJECT``, which the push services require.
A bad value raises ``ImproperlyConfigured`` naming the variable, as
service/config.py does for the rest of the settings.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import environ
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ImproperlyConfigured

# The public browser push services (docs/push.md lists which browser uses which).
DEFAULT_ALLOWED_HOSTS = (
    "fcm.googleapis.com",  # Chrome, Edge on Android, Opera, Samsung Internet
    "android.googleapis.com",  # older Chrome subscriptions
    "updates.push.services.mozilla.com",  # Firefox
    "*.push.apple.com",  # Safari (web.push.apple.com)
    "*.notify.windows.com",  # Edge on Windows (WNS)
)
URGENCIES = ("very-low", "low", "normal", "high")
_HOST = re.compile(r"\A(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\Z")


@dataclass(frozen=True)
class HostRule:
    """One ``NOTIFY_PUSH_ALLOWED_HOSTS`` entry: a host (or ``*.`` suffix) and a port."""

    host: str
    port: int = 443
    subdomains: bool = False

    def matches(self, host: str, port: int) -> bool:
        if port != self.port:
            return False
        if self.subdomains:
            return host.endswith("." + self.host)
        return host == self.host


@dataclass(frozen=True)
class PushSettings:
    private_key: ec.EllipticCurvePrivateKey
    public_key: str  # base64url of the uncompressed point, as browsers want it
    subject: str
    allowed_hosts: tuple[HostRule, ...]
    ca_bundle: str | None
    ttl: int
    urgency: str


def push_settings(env: environ.Env) -> PushSettings | None:
    """The Web Push settings, or None when Web Push is off (no ``VAPID_PRIVATE_KEY``)."""
    raw: str = env.str("VAPID_PRIVATE_KEY", default="", multiline=True).strip()
    if not raw:
        return None
    key = _private_key(raw)
    subject: str = env.str("VAPID_SUBJECT", default="").strip()
    parts = urlsplit(subject)
    if not (
        (parts.scheme == "mailto" and "@" in parts.path)
        or (parts.scheme == "https" and parts.hostname)
    ):
        raise ImproperlyConfigured(
            "VAPID_SUBJECT must be a mailto: or https: URL naming who runs this service "
            f"(required with VAPID_PRIVATE_KEY), got {subject!r}."
        )
    ttl = env.int("NOTIFY_PUSH_TTL", default=86400)
    if not 0 <= ttl <= 28 * 86400:
        raise ImproperlyConfigured("NOTIFY_PUSH_TTL must be 0..2419200 seconds (28 days).")
    urgency: str = env.str("NOTIFY_PUSH_URGENCY", default="normal")
    if urgency not in URGENCIES:
        raise ImproperlyConfigured(f"NOTIFY_PUSH_URGENCY must be one of {', '.join(URGENCIES)}.")
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return PushSettings(
        private_key=key,
        public_key=b64url(point),
        subject=subject,
        allowed_hosts=allowed_hosts(env.str("NOTIFY_PUSH_ALLOWED_HOSTS", default="")),
        ca_bundle=_ca_bundle(env.str("NOTIFY_PUSH_CA_BUNDLE", default="")),
        ttl=ttl,
        urgency=urgency,
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _private_key(raw: str) -> ec.EllipticCurvePrivateKey:
    """PEM (PKCS#8 or SEC1) or the base64url 32-byte scalar ``manage.py vapid_keys`` prints."""
    message = (
        "VAPID_PRIVATE_KEY must be a P-256 private key, PEM or base64url raw "
        "(generate one with `python manage.py vapid_keys`)."
    )
    try:
        if raw.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(raw.encode(), password=None)
        else:
            scalar = b64url_decode(raw)
            if len(scalar) != 32:
                raise ValueError("not 32 bytes")
            key = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ImproperlyConfigured(message) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise ImproperlyConfigured(message)
    return key


def allowed_hosts(raw: str) -> tuple[HostRule, ...]:
    """``host``, ``host:port`` or ``*.suffix[:port]``, comma-separated; empty: the defaults."""
    items = [item.strip().lower() for item in raw.split(",") if item.strip()]
    rules = []
    for item in items or DEFAULT_ALLOWED_HOSTS:
        host, _sep, port = item.rpartition(":") if ":" in item else (item, "", "443")
        if not _HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(
                f"NOTIFY_PUSH_ALLOWED_HOSTS entry {item!r} must be host, host:port or "
                "*.domain (comma-separated), e.g. fcm.googleapis.com,*.push.apple.com"
            )
        wildcard = host.startswith("*.")
        rules.append(HostRule(host[2:] if wildcard else host, int(port), wildcard))
    return tuple(rules)


def _ca_bundle(path: str) -> str | None:
    if not path:
        return None
    if not os.path.isfile(path):
        raise ImproperlyConfigured(f"NOTIFY_PUSH_CA_BUNDLE {path!r} is not a readable PEM file.")
    return path
