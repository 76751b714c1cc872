"""notifications.tokens: user JWT verification and the dev minting helper."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import environ
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from notifications import tokens
from notifications.tokens import (
    InvalidToken,
    JWTSettings,
    NamedKey,
    mint_user_token,
    verify_user_token,
    verify_user_token_async,
)
from service.config_auth import jwt_settings
from tests.support.tokens import user_token

SECRET = "token-tests-hmac-secret-long-enough-for-hs512-0123456789abcdef0123"
OTHER = "token-tests-some-other-secret-long-enough-for-hs512-0123456789abcd"


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


def configure(settings: Any, **changes: Any) -> None:
    values: dict[str, Any] = {
        "algorithms": ("HS256",),
        "secret": SECRET,
        "public_key": None,
        "audience": None,
        "issuer": None,
        "leeway": 0.0,
    }
    values.update(changes)
    settings.NOTIFY_JWT = JWTSettings(**values)


@pytest.fixture(autouse=True)
def hs256(settings: Any) -> None:
    configure(settings)


def token(sub: Any = "alice", *, key: str = SECRET, **options: Any) -> str:
    return user_token(key, sub, **options)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hand_signed(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None) -> str:
    """A JWT assembled by hand (PyJWT refuses to build the malicious ones)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if hmac_key is None:
        return signing_input + "."
    signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def test_valid_hs256() -> None:
    claims = verify_user_token(token("alice"))
    assert claims.user_id == "alice"
    assert abs(claims.expires_at - (time.time() + 3600)) < 5


def test_wrong_secret_refused() -> None:
    with pytest.raises(InvalidToken):
        verify_user_token(token(key=OTHER))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_refused(alg: str) -> None:
    payload = {"sub": "alice", "exp": int(time.time()) + 3600}
    with pytest.raises(InvalidToken):
        verify_user_token(hand_signed({"alg": alg, "typ": "JWT"}, payload, None))


def test_alg_none_with_a_signature_refused() -> None:
    payload = {"sub": "alice", "exp": int(time.time()) + 3600}
    with pytest.raises(InvalidToken):
        verify_user_token(hand_signed({"alg": "none"}, payload, SECRET.encode()))


def test_algorithm_outside_the_allowed_list_refused() -> None:
    with pytest.raises(InvalidToken):
        verify_user_token(token(algorithm="HS512"))


def test_rs256_verifies_with_the_public_key(settings: Any, rsa_keys: tuple[str, str]) -> None:
    private_pem, public_pem = rsa_keys
    configure(settings, algorithms=("RS256",), secret=None, public_key=public_pem)
    assert verify_user_token(token("bob", key=private_pem, algorithm="RS256")).user_id == "bob"


def test_hs_rs_confusion_refused_when_only_rs256(settings: Any, rsa_keys: tuple[str, str]) -> None:
    _private_pem, public_pem = rsa_keys
    configure(settings, algorithms=("RS256",), secret=None, public_key=public_pem)
    payload = {"sub": "mallory", "exp": int(time.time()) + 3600}
    forged = hand_signed({"alg": "HS256", "typ": "JWT"}, payload, public_pem.encode())
    with pytest.raises(InvalidToken):
        verify_user_token(forged)


def test_hs_rs_confusion_refused_when_both_families_allowed(
    settings: Any, rsa_keys: tuple[str, str]
) -> None:
    private_pem, public_pem = rsa_keys
    configure(settings, algorithms=("HS256", "RS256"), secret=SECRET, public_key=public_pem)
    payload = {"sub": "mallory", "exp": int(time.time()) + 3600}
    forged = hand_signed({"alg": "HS256", "typ": "JWT"}, payload, public_pem.encode())
    with pytest.raises(InvalidToken):
        verify_user_token(forged)
    # Both honest kinds still work.
    assert verify_user_token(token("h")).user_id == "h"
    assert verify_user_token(token("r", key=private_pem, algorithm="RS256")).user_id == "r"


def test_rs256_token_refused_when_only_hs256(rsa_keys: tuple[str, str]) -> None:
    private_pem, _public_pem = rsa_keys
    with pytest.raises(InvalidToken):
        verify_user_token(token(key=private_pem, algorithm="RS256"))


def test_audience_and_issuer_not_checked_unless_configured() -> None:
    assert verify_user_token(token(aud="someone-else", iss="whoever")).user_id == "alice"
    assert verify_user_token(token()).user_id == "alice"


def test_audience_enforced_when_configured(settings: Any) -> None:
    configure(settings, audience="notify")
    assert verify_user_token(token(aud="notify")).user_id == "alice"
    assert verify_user_token(token(aud=["other", "notify"])).user_id == "alice"
    for bad in (token(), token(aud="other"), token(aud=["other"])):
        with pytest.raises(InvalidToken):
            verify_user_token(bad)


def test_issuer_enforced_when_configured(settings: Any) -> None:
    configure(settings, issuer="https://shop.example")
    assert verify_user_token(token(iss="https://shop.example")).user_id == "alice"
    for bad in (token(), token(iss="https://evil.example")):
        with pytest.raises(InvalidToken):
            verify_user_token(bad)


def test_leeway_on_exp(settings: Any) -> None:
    expired = token(exp_in=-5)
    with pytest.raises(InvalidToken):
        verify_user_token(expired)
    configure(settings, leeway=30.0)
    assert verify_user_token(expired).user_id == "alice"
    with pytest.raises(InvalidToken):
        verify_user_token(token(exp_in=-60))


def test_leeway_on_nbf(settings: Any) -> None:
    early = token(nbf=int(time.time()) + 5)
    with pytest.raises(InvalidToken):
        verify_user_token(early)
    configure(settings, leeway=30.0)
    assert verify_user_token(early).user_id == "alice"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: token(exp_in=None), id="no-exp"),
        pytest.param(lambda: token(exp_in=None, exp="soon"), id="exp-string"),
        pytest.param(lambda: token(exp_in=-1), id="expired"),
        pytest.param(lambda: token(sub=None), id="no-sub"),
        pytest.param(lambda: token(sub=""), id="sub-empty"),
        pytest.param(lambda: token(sub="x" * 129), id="sub-129"),
        pytest.param(lambda: token(sub=42), id="sub-int"),
        pytest.param(lambda: token(sub={"id": "a"}), id="sub-object"),
        pytest.param(lambda: "", id="empty"),
        pytest.param(lambda: "abc", id="garbage"),
        pytest.param(lambda: "a.b.c", id="three-garbage-parts"),
        pytest.param(lambda: token(pad="x" * 9000), id="too-long"),
    ],
)
def test_invalid_tokens_refused(bad: Any) -> None:
    with pytest.raises(InvalidToken):
        verify_user_token(bad())


def test_sub_of_128_chars_accepted() -> None:
    assert verify_user_token(token(sub="x" * 128)).user_id == "x" * 128


def test_mint_roundtrip() -> None:
    minted = mint_user_token("carol", ttl_seconds=120)
    claims = verify_user_token(minted)
    assert claims.user_id == "carol"
    assert abs(claims.expires_at - (time.time() + 120)) < 5
    decoded = jwt.decode(minted, SECRET, algorithms=["HS256"])
    assert decoded["sub"] == "carol"


def test_minted_token_expires() -> None:
    with pytest.raises(InvalidToken):
        verify_user_token(mint_user_token("carol", ttl_seconds=-10))


def test_mint_includes_configured_audience_and_issuer(settings: Any) -> None:
    configure(settings, audience="notify", issuer="https://shop.example")
    minted = mint_user_token("dave")
    assert verify_user_token(minted).user_id == "dave"
    decoded = jwt.decode(minted, SECRET, algorithms=["HS256"], audience="notify")
    assert decoded["iss"] == "https://shop.example"


def test_mint_needs_an_hmac_configuration(settings: Any, rsa_keys: tuple[str, str]) -> None:
    configure(settings, algorithms=("RS256",), secret=None, public_key=rsa_keys[1])
    with pytest.raises(InvalidToken):
        mint_user_token("erin")


# --------------------------------------------------------------------------- key rotation (kid)

KEY_A = "rotation-key-a-long-enough-for-hs512-0123456789abcdef0123456789abcd"
KEY_B = "rotation-key-b-long-enough-for-hs512-0123456789abcdef0123456789abcd"


def kid_token(kid: str | None, key: Any, algorithm: str = "HS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": "alice", "iat": now, "exp": now + 600, **claims}
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


@pytest.fixture
def rotation(settings: Any) -> None:
    configure(
        settings,
        named_keys={
            "2026a": NamedKey("2026a", "hmac", KEY_A),
            "2026b": NamedKey("2026b", "hmac", KEY_B),
        },
    )


@pytest.mark.usefixtures("rotation")
def test_either_rotated_key_verifies_by_kid() -> None:
    assert verify_user_token(kid_token("2026a", KEY_A)).user_id == "alice"
    assert verify_user_token(kid_token("2026b", KEY_B)).user_id == "alice"


@pytest.mark.usefixtures("rotation")
def test_kid_picks_exactly_one_key() -> None:
    with pytest.raises(InvalidToken):
        verify_user_token(kid_token("2026a", KEY_B))
    with pytest.raises(InvalidToken):
        verify_user_token(kid_token("2026b", SECRET))


@pytest.mark.usefixtures("rotation")
@pytest.mark.parametrize("kid", ["2026c", "", "x" * 300])
def test_unknown_kid_refused(kid: str) -> None:
    with pytest.raises(InvalidToken):
        verify_user_token(kid_token(kid, KEY_A))


@pytest.mark.usefixtures("rotation")
def test_token_without_kid_uses_jwt_secret_only() -> None:
    assert verify_user_token(kid_token(None, SECRET)).user_id == "alice"
    with pytest.raises(InvalidToken):
        verify_user_token(kid_token(None, KEY_A))


@pytest.mark.usefixtures("rotation")
def test_non_string_kid_refused() -> None:
    payload = {"sub": "a", "exp": int(time.time()) + 60}
    forged = hand_signed({"alg": "HS256", "kid": 7}, payload, KEY_A.encode())
    with pytest.raises(InvalidToken):
        verify_user_token(forged)


def test_only_jwt_keys_configured(settings: Any) -> None:
    configure(settings, secret=None, named_keys={"2026a": NamedKey("2026a", "hmac", KEY_A)})
    assert verify_user_token(kid_token("2026a", KEY_A)).user_id == "alice"
    with pytest.raises(InvalidToken):
        verify_user_token(kid_token(None, KEY_A))


# --------------------------------------------------------------------------- JWKS


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks_keys(tmp_path: Any, monkeypatch: Any, jwks: dict[str, Any], algorithms: str) -> Any:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    for name in ("JWT_SECRET", "JWT_KEYS", "JWT_PUBLIC_KEY", "JWT_JWKS_URL", "JWT_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JWT_ALGORITHMS", algorithms)
    monkeypatch.setenv("JWT_JWKS_FILE", str(path))
    if "HS" in algorithms:
        monkeypatch.setenv("JWT_SECRET", SECRET)
    return jwt_settings(environ.Env(), debug=False)


def _public_jwk(private: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private.public_key()))
    return {**jwk, "kid": kid, **extra}


def test_jwks_file_rsa_key_verifies_by_kid(
    settings: Any, tmp_path: Any, monkeypatch: Any, rsa_private: rsa.RSAPrivateKey
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = {"keys": [_public_jwk(rsa_private, "rsa-1"), _public_jwk(other, "rsa-2")]}
    settings.NOTIFY_JWT = _jwks_keys(tmp_path, monkeypatch, jwks, "RS256")
    assert verify_user_token(kid_token("rsa-1", rsa_private, "RS256")).user_id == "alice"
    assert verify_user_token(kid_token("rsa-2", other, "RS256")).user_id == "alice"
    with pytest.raises(InvalidToken):  # signed by the other key
        verify_user_token(kid_token("rsa-2", rsa_private, "RS256"))
    with pytest.raises(InvalidToken):  # no kid and no JWT_PUBLIC_KEY
        verify_user_token(kid_token(None, rsa_private, "RS256"))
    with pytest.raises(InvalidToken):
        verify_user_token(kid_token("rsa-3", rsa_private, "RS256"))


def test_hs_rs_confusion_with_a_jwks_key_refused(
    settings: Any, tmp_path: Any, monkeypatch: Any, rsa_private: rsa.RSAPrivateKey
) -> None:
    """HS256 signed with the published RSA key's bytes, naming its kid: refused."""
    jwks = {"keys": [_public_jwk(rsa_private, "rsa-1")]}
    settings.NOTIFY_JWT = _jwks_keys(tmp_path, monkeypatch, jwks, "HS256,RS256")
    public_pem = rsa_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    payload = {"sub": "mallory", "exp": now + 60}
    for material in (public_pem, json.dumps(jwks["keys"][0]).encode()):
        forged = hand_signed({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, payload, material)
        with pytest.raises(InvalidToken):
            verify_user_token(forged)
    unsigned = hand_signed({"alg": "none", "kid": "rsa-1"}, payload, None)
    with pytest.raises(InvalidToken):
        verify_user_token(unsigned)


def test_rsa_token_naming_an_hmac_kid_refused(
    settings: Any, rsa_private: rsa.RSAPrivateKey
) -> None:
    configure(
        settings,
        algorithms=("HS256", "RS256"),
        named_keys={"2026a": NamedKey("2026a", "hmac", KEY_A)},
    )
    with pytest.raises(InvalidToken):
        verify_user_token(kid_token("2026a", rsa_private, "RS256"))


def test_jwk_alg_pins_the_algorithm(
    settings: Any, tmp_path: Any, monkeypatch: Any, rsa_private: rsa.RSAPrivateKey
) -> None:
    jwks = {"keys": [_public_jwk(rsa_private, "rsa-1", alg="RS256")]}
    monkeypatch.setenv("JWT_ALGORITHMS", "RS256,RS512")
    cfg = _jwks_keys(tmp_path, monkeypatch, jwks, "RS256,RS512")
    settings.NOTIFY_JWT = cfg
    assert verify_user_token(kid_token("rsa-1", rsa_private, "RS256")).user_id == "alice"
    with pytest.raises(InvalidToken):
        verify_user_token(kid_token("rsa-1", rsa_private, "RS512"))


def test_public_key_as_hmac_secret_refused_without_kid(
    settings: Any, rsa_keys: tuple[str, str]
) -> None:
    _, public_pem = rsa_keys
    configure(settings, algorithms=("HS256", "RS256"), public_key=public_pem)
    forged = hand_signed(
        {"alg": "HS256", "typ": "JWT"},
        {"sub": "mallory", "exp": int(time.time()) + 60},
        public_pem.encode(),
    )
    with pytest.raises(InvalidToken):
        verify_user_token(forged)


@pytest.fixture
def jwks_server(tmp_path: Any, monkeypatch: Any) -> Iterator[tuple[Any, str]]:
    """A local HTTP server publishing ``tmp_path/remote.json``."""
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    monkeypatch.setattr(SimpleHTTPRequestHandler, "log_message", lambda *a, **k: None)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path / "remote.json", f"http://127.0.0.1:{server.server_port}/remote.json"
    finally:
        server.shutdown()
        server.server_close()


def test_jwks_url_through_pyjwkclient(
    settings: Any,
    jwks_server: tuple[Any, str],
    monkeypatch: Any,
    rsa_private: rsa.RSAPrivateKey,
) -> None:
    path, url = jwks_server
    oct_jwk = {"kty": "oct", "kid": "shared", "k": _b64(KEY_A.encode())}
    path.write_text(json.dumps({"keys": [_public_jwk(rsa_private, "remote-1"), oct_jwk]}))
    # No cooldown, so that a kid added at the issuer is picked up at once.
    monkeypatch.setattr(tokens, "JWKS_MISS_REFETCH_SECONDS", 0.0)
    monkeypatch.setattr(tokens, "remote_keys", tokens._RemoteKeys())
    configure(
        settings,
        algorithms=("HS256", "RS256"),
        jwks_url=url,
    )
    assert verify_user_token(kid_token("remote-1", rsa_private, "RS256")).user_id == "alice"
    with pytest.raises(InvalidToken):
        verify_user_token(kid_token("remote-2", rsa_private, "RS256"))
    with pytest.raises(InvalidToken):  # a shared secret is never taken from the network
        verify_user_token(kid_token("shared", KEY_A, "HS256"))
    # A key added at the issuer is found by the unknown-kid refetch.
    second = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_text(json.dumps({"keys": [_public_jwk(second, "remote-2")]}))
    assert verify_user_token(kid_token("remote-2", second, "RS256")).user_id == "alice"


async def test_a_slow_jwks_fetch_leaves_the_event_loop_free(
    settings: Any, monkeypatch: Any, rsa_private: rsa.RSAPrivateKey
) -> None:
    """The handshakes verify through verify_user_token_async: a kid that needs
    the issuer's key set is fetched in a worker thread, so the loop (every other
    socket) keeps running while the issuer is slow. Here the issuer holds the
    fetch until this test, on the loop, releases it: a fetch on the loop would
    hold the loop until the issuer gave up waiting instead."""
    body = json.dumps({"keys": [_public_jwk(rsa_private, "remote-1")]}).encode()
    asked, release = threading.Event(), threading.Event()
    released_in_time: list[bool] = []

    class HeldIssuer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.set()
            released_in_time.append(release.wait(timeout=30))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), HeldIssuer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(tokens, "remote_keys", tokens._RemoteKeys())
        url = f"http://127.0.0.1:{server.server_port}/jwks.json"
        configure(settings, algorithms=("RS256",), jwks_url=url)
        token_ = kid_token("remote-1", rsa_private, "RS256")
        assert tokens.may_fetch_keys(token_)
        task = asyncio.ensure_future(verify_user_token_async(token_))
        assert await asyncio.to_thread(asked.wait, 30)
        assert not task.done()  # the loop is back here while the fetch is held
        release.set()
        assert (await task).user_id == "alice"
        assert released_in_time == [True]
        # Cached now: the next one needs no fetch, and runs inline.
        assert not tokens.may_fetch_keys(token_)
        assert (await verify_user_token_async(token_)).user_id == "alice"
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def test_only_remote_kids_may_fetch(settings: Any, rsa_private: rsa.RSAPrivateKey) -> None:
    configure(settings, algorithms=("HS256", "RS256"), jwks_url="http://127.0.0.1:9/jwks.json")
    assert not tokens.may_fetch_keys(kid_token(None, SECRET))  # no kid
    assert not tokens.may_fetch_keys(kid_token("k", KEY_A))  # HMAC: never from the network
    assert not tokens.may_fetch_keys("not a token")
    assert tokens.may_fetch_keys(kid_token("remote-9", rsa_private, "RS256"))
    configure(settings, algorithms=("HS256", "RS256"))  # no JWT_JWKS_URL
    assert not tokens.may_fetch_keys(kid_token("remote-9", rsa_private, "RS256"))


# --------------------------------------------------------------------------- nbf / iat


def test_nbf_in_the_future_refused_and_within_leeway_accepted(settings: Any) -> None:
    future = int(time.time()) + 30
    with pytest.raises(InvalidToken):
        verify_user_token(token(nbf=future))
    configure(settings, leeway=60.0)
    assert verify_user_token(token(nbf=future)).user_id == "alice"


def test_iat_in_the_future_refused_and_within_leeway_accepted(settings: Any) -> None:
    future = int(time.time()) + 30
    with pytest.raises(InvalidToken):
        verify_user_token(token(iat=future))
    configure(settings, leeway=60.0)
    assert verify_user_token(token(iat=future)).user_id == "alice"


@pytest.mark.parametrize("iat", ["yesterday", [1], {"t": 1}])
def test_malformed_iat_refused(iat: Any) -> None:
    with pytest.raises(InvalidToken):
        verify_user_token(token(iat=iat))


def test_iat_is_optional() -> None:
    now = int(time.time())
    assert verify_user_token(jwt.encode({"sub": "a", "exp": now + 60}, SECRET)).user_id == "a"
