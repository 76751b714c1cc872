"""A local Web Push service for tests: real HTTPS (a private CA), real
decryption (RFC 8291 by http_ece, with keys made as a browser makes them)
and real VAPID checks (RFC 8292: ES256 signature, ``aud``, ``exp``, ``sub``).

It runs an aiohttp server on its own thread and event loop. Each
``subscription()`` is a browser's subscription: an endpoint on this service
plus the ``p256dh``/``auth`` keys, whose private half only the test holds.
``answer(sub, 500, 201)`` scripts the next answers for that subscription
(default 201). Every request is recorded as a ``Received``; one that fails
decryption or the VAPID checks is answered 400 and recorded with its
``error`` (tests assert there are none).
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import os
import secrets
import ssl
import tempfile
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import http_ece
import jwt
import orjson
import uvloop
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.servers import free_port


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscription:
    """What ``PushSubscription.toJSON()`` gives a page, plus its private key."""

    token: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    def to_json(self) -> dict[str, Any]:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(point), "auth": b64url(self.auth)},
        }


@dataclass
class Received:
    token: str
    status: int
    headers: dict[str, str]
    body_length: int
    payload: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None
    error: str | None = None
    at: float = field(default_factory=time.monotonic)


class CertificateAuthority:
    """A throw-away CA and a server certificate for localhost / 127.0.0.1."""

    def __init__(self, directory: Path) -> None:
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notify-push test CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_path = directory / "ca.pem"
        self.ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        self.cert_path = directory / "server.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_path = directory / "server.key"
        self.key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


class PushService:
    def __init__(
        self, vapid_public_key: str, *, subject: str | None = None, check_every: int = 1
    ) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="test-push-"))
        self.ca = CertificateAuthority(self.directory)
        self.port = free_port()
        self.host = f"localhost:{self.port}"
        self.origin = f"https://{self.host}"
        self.vapid_public_key = vapid_public_key
        self.subject = subject
        # Decrypt and verify every n-th message (the benchmark's lighter load);
        # the others are only counted. Tests check them all.
        self.check_every = check_every
        self.checked = 0
        self._seen = 0
        self._counts: dict[int, int] = defaultdict(int)
        self._last_at = 0.0
        self.subscriptions: dict[str, Subscription] = {}
        self.received: list[Received] = []
        self._answers: dict[str, deque[tuple[int, dict[str, str]]]] = defaultdict(deque)
        self._lock = threading.RLock()  # predicates of wait_for read under it
        self._changed = threading.Condition(self._lock)
        # uvloop, as the service runs: TLS in C keeps the push service from
        # being the bottleneck of the benchmark that shares its cores.
        self._loop = uvloop.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="push-service", daemon=True)
        self._runner: web.AppRunner | None = None
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the local push service did not start")

    # ------------------------------------------------------------ test-side API

    def subscription(self) -> Subscription:
        token = secrets.token_urlsafe(24)
        sub = Subscription(
            token=token,
            endpoint=f"{self.origin}/push/{token}",
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth=os.urandom(16),
        )
        with self._lock:
            self.subscriptions[token] = sub
        return sub

    def answer(
        self,
        sub: Subscription,
        *statuses: int,
        retry_after: str | None = None,
        location: str | None = None,
    ) -> None:
        """The next answers for ``sub``, in order (then 201 again)."""
        headers = {"Retry-After": retry_after} if retry_after else {}
        if location:
            headers["Location"] = location
        with self._lock:
            self._answers[sub.token].extend((status, headers) for status in statuses)

    def messages(self, sub: Subscription) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.token == sub.token]

    def delivered(self, sub: Subscription) -> list[dict[str, Any]]:
        """Payloads answered 201, in arrival order."""
        return [r.payload for r in self.messages(sub) if r.status == 201 and r.payload]

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"push service: condition not met in {timeout}s")
                self._changed.wait(left)

    def count(self, status: int) -> int:
        with self._lock:
            return self._counts[status]

    def last_at(self) -> float:
        """When the latest answer was given (time.monotonic())."""
        with self._lock:
            return self._last_at

    async def until(self, predicate: Any, timeout: float = 30.0) -> None:
        """``wait_for`` without blocking the test's event loop."""
        await asyncio.to_thread(self.wait_for, predicate, timeout)

    def drop_connections(self) -> int:
        """Close every connection the push service holds (as a push service
        does with idle keep-alive connections); returns how many."""

        async def drop() -> int:
            assert self._runner is not None and self._runner.server is not None
            handlers = self._runner.server.connections
            await asyncio.gather(*(handler.shutdown(1.0) for handler in handlers))
            return len(handlers)

        return asyncio.run_coroutine_threadsafe(drop(), self._loop).result(10)

    def errors(self) -> list[str]:
        with self._lock:
            return [r.error for r in self.received if r.error]

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # ------------------------------------------------------------ server side

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_post("/push/{token}", self._handle)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca.cert_path, self.ca.key_path)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context)
        self._loop.run_until_complete(site.start())
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        body = await request.read()
        headers = {k: v for k, v in request.headers.items()}
        record = Received(token=token, status=0, headers=headers, body_length=len(body))
        with self._lock:
            sub = self.subscriptions.get(token)
            scripted = self._answers[token].popleft() if self._answers[token] else (201, {})
            self._seen += 1
            check = self._seen % self.check_every == 0
        status, extra = scripted
        if sub is None:
            status, extra = 404, {}
        elif not check:
            if len(body) > 4096 or headers.get("Content-Encoding") != "aes128gcm":
                record.error = "bad size or encoding"
                status, extra = 400, {}
            return self._answer(record, status, extra, keep=False)
        else:
            self.checked += 1
            try:
                record.claims = self._check_vapid(headers)
                record.payload = self._decrypt(sub, headers, body)
            except Exception as exc:
                record.error = f"{type(exc).__name__}: {exc}"
                status, extra = 400, {}
        return self._answer(record, status, extra, keep=True)

    def _answer(
        self, record: Received, status: int, extra: dict[str, str], *, keep: bool
    ) -> web.Response:
        record.status = status
        with self._changed:
            if keep or record.error:
                self.received.append(record)
            self._counts[status] += 1
            self._last_at = time.monotonic()
            self._changed.notify_all()
        return web.Response(status=status, headers=extra)

    def _decrypt(self, sub: Subscription, headers: dict[str, str], body: bytes) -> dict[str, Any]:
        if headers.get("Content-Encoding") != "aes128gcm":
            raise ValueError("Content-Encoding is not aes128gcm")
        if len(body) > 4096:
            raise ValueError(f"encrypted body of {len(body)} bytes is over 4096")
        for name in ("TTL", "Urgency", "Topic"):
            if name not in headers:
                raise ValueError(f"no {name} header")
        plaintext = http_ece.decrypt(
            body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm"
        )
        payload: dict[str, Any] = orjson.loads(plaintext)
        return payload

    def _check_vapid(self, headers: dict[str, str]) -> dict[str, Any]:
        scheme, _, params = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "vapid":
            raise ValueError("Authorization is not vapid")
        parts = dict(p.strip().split("=", 1) for p in params.split(","))
        if parts.get("k") != self.vapid_public_key:
            raise ValueError("k is not the service's VAPID public key")
        key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b64url_decode(parts["k"])
        )
        claims: dict[str, Any] = jwt.decode(
            parts["t"],
            key,
            algorithms=["ES256"],
            audience=self.origin,
            options={"require": ["exp", "aud", "sub"]},
        )
        if claims["exp"] > time.time() + 24 * 3600:
            raise ValueError("exp is more than 24 h ahead")
        sub = str(claims["sub"])
        if not (sub.startswith("mailto:") or sub.startswith("https:")):
            raise ValueError("sub is not mailto: or https:")
        if self.subject is not None and sub != self.subject:
            raise ValueError("sub is not the configured subject")
        return claims
