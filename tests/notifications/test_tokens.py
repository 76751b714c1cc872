"""notifications.tokens: user JWT verification and the dev minting helper."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from notifications.tokens import InvalidToken, mint_user_token, verify_user_token
from service.config import JWTSettings

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


def token(
    sub: Any = "alice",
    *,
    exp_in: int | None = 3600,
    key: str = SECRET,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"sub": sub, "iat": now, **claims}
    if sub is None:
        del payload["sub"]
    if exp_in is not None:
        payload["exp"] = now + exp_in
    return jwt.encode(payload, key, algorithm=algorithm)


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
