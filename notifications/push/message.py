"""One Web Push message: the payload (with the 4 KiB rule), its encryption
(RFC 8291 ``aes128gcm`` by http-ece) and the VAPID header (RFC 8292 by py-vapid).

Nothing here is hand-rolled cryptography: the ECDH key of each message comes
from ``cryptography`` and the record encryption from ``http_ece``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import threading
import time
from typing import Any

import http_ece
import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02

from notifications.push.config import PushSettings, b64url_decode

MAX_ENCRYPTED = 4096
# aes128gcm header (16 salt + 4 record size + 1 key id length + 65 key id),
# then one record: the plaintext, a 1-byte delimiter and a 16-byte tag.
MAX_PLAINTEXT = MAX_ENCRYPTED - 86 - 17
VAPID_LIFETIME = 12 * 3600  # RFC 8292: at most 24 h


def payload_bytes(notification: dict[str, Any]) -> bytes:
    """The notification as JSON, fitted into one 4096-byte encrypted message:
    ``data`` dropped first, then ``body`` (then ``title``) shortened, with
    ``"truncated": true`` so the page can fetch the whole notification by id."""
    encoded = orjson.dumps(notification)
    if len(encoded) <= MAX_PLAINTEXT:
        return encoded
    fitted = {**notification, "data": {}, "truncated": True}
    for field in ("body", "title"):
        encoded = orjson.dumps(fitted)
        if len(encoded) <= MAX_PLAINTEXT:
            return encoded
        fitted[field] = _shorten(fitted, field)
    return orjson.dumps(fitted)


def _shorten(fitted: dict[str, Any], field: str) -> str:
    """The longest prefix of ``fitted[field]`` (whole characters, plus "…")
    with which the JSON fits; "" when even that does not."""
    text: str = fitted[field]
    low, high = 0, len(text)
    while low < high:  # the largest length that fits
        mid = (low + high + 1) // 2
        candidate = {**fitted, field: text[:mid] + "…"}
        if len(orjson.dumps(candidate)) <= MAX_PLAINTEXT:
            low = mid
        else:
            high = mid - 1
    return text[:low] + "…" if low else ""


def encrypt(plaintext: bytes, *, p256dh: str, auth: str) -> bytes:
    """RFC 8291: a fresh ECDH key and salt per message, one aes128gcm record."""
    sender_key = ec.generate_private_key(ec.SECP256R1())
    body: bytes = http_ece.encrypt(
        plaintext,
        salt=os.urandom(16),
        private_key=sender_key,
        dh=b64url_decode(p256dh),
        auth_secret=b64url_decode(auth),
        version="aes128gcm",
    )
    return body


@functools.lru_cache(maxsize=1024)
def topic(notification_type: str) -> str:
    """The ``Topic`` header (at most 32 base64url characters): one per type, so
    a push service holding undelivered messages for a device keeps only the
    latest of each type (a flood collapses)."""
    digest = hashlib.blake2b(notification_type.encode(), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class VapidSigner:
    """``Authorization: vapid t=<JWT>,k=<key>`` per push service origin,
    signed once and reused until an hour before it expires."""

    def __init__(self, cfg: PushSettings) -> None:
        self._vapid = Vapid02(private_key=cfg.private_key)
        self._subject = cfg.subject
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def header(self, audience: str) -> str:
        now = time.time()
        with self._lock:
            cached = self._cache.get(audience)
            if cached is not None and cached[0] - 3600 > now:
                return cached[1]
        expires = int(now) + VAPID_LIFETIME
        claims = {"aud": audience, "exp": expires, "sub": self._subject}
        value: str = self._vapid.sign(claims)["Authorization"]
        with self._lock:
            self._cache[audience] = (expires, value)
        return value
