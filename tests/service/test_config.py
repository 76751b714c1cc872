"""Configuration: a misconfiguration stops start-up with a message naming what to change."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import environ
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ImproperlyConfigured
from jwt.algorithms import RSAAlgorithm

from notifications import credentials, origins
from service import config, config_auth, logs

REPO_ROOT = Path(__file__).resolve().parents[2]
STRIPPED_PREFIXES = ("NOTIFY_", "JWT_")
STRIPPED = {
    "DATABASE_URL",
    "REDIS_URL",
    "DEBUG",
    "DJANGO_SECRET_KEY",
    "WEB_CONCURRENCY",
    "ALLOWED_HOSTS",
    "ALLOWED_ORIGINS",
    "PROMETHEUS_MULTIPROC_DIR",
}
SETUP = (
    "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE','service.settings'); "
    "django.setup()"
)
REPORT = (
    "; from django.conf import settings as s; import json; print(json.dumps({"
    "'debug': s.DEBUG, 'algorithms': list(s.NOTIFY_JWT.algorithms), "
    "'keys': {n: [k.digest.hex() for k in v] for n, v in s.NOTIFY_API_KEYS.items()}, "
    "'origins': s.NOTIFY_ALLOWED_ORIGINS, 'rate': list(s.NOTIFY_PUBLISH_RATE), "
    "'hosts': s.ALLOWED_HOSTS, 'layer': s.CHANNEL_LAYERS['default']['BACKEND']}))"
)

PROD = {
    "DEBUG": "false",
    "DJANGO_SECRET_KEY": "prod-secret-key-9f8e7d6c5b4a39281706f5e4d3c2b1a0-long-enough",
    "JWT_SECRET": "prod-jwt-secret-0123456789abcdef0123456789abcdef0123456789abcdef",
    "NOTIFY_API_KEYS": "shop:shop-prod-secret-0123456789abcdef,billing:billing-prod-secret-abcdef",
    "ALLOWED_HOSTS": "notify.example.com",
    "ALLOWED_ORIGINS": "https://app.example.com",
}


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _public_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def start(env: dict[str, str], *, report: bool = False) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in STRIPPED and not k.startswith(STRIPPED_PREFIXES)
    }
    base["DJANGO_SETTINGS_MODULE"] = "service.settings"
    base.update(env)
    return subprocess.run(
        [sys.executable, "-c", SETUP + (REPORT if report else "")],
        env=base,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def without(env: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in names}


MISCONFIGURED = [
    pytest.param(without(PROD, "DJANGO_SECRET_KEY"), "DJANGO_SECRET_KEY", id="prod-no-secret-key"),
    pytest.param(
        {**PROD, "DJANGO_SECRET_KEY": config.DEV_SECRET_KEY},
        "DJANGO_SECRET_KEY",
        id="prod-dev-secret-key",
    ),
    pytest.param(without(PROD, "JWT_SECRET"), "JWT_SECRET", id="prod-no-jwt-key"),
    pytest.param(
        {**PROD, "JWT_SECRET": config_auth.DEV_JWT_SECRET}, "JWT_SECRET", id="prod-dev-jwt-secret"
    ),
    pytest.param(
        {**PROD, "NOTIFY_API_KEYS": "dev:dev-publisher-key"},
        "NOTIFY_API_KEYS",
        id="prod-dev-publisher-key",
    ),
    pytest.param(
        {**PROD, "NOTIFY_API_KEYS": "shop:real-secret-0123456789,other:dev-publisher-key"},
        "NOTIFY_API_KEYS",
        id="prod-dev-publisher-key-under-another-name",
    ),
    pytest.param({"NOTIFY_API_KEYS": "nocolon"}, "NOTIFY_API_KEYS", id="api-keys-nocolon"),
    pytest.param({"NOTIFY_API_KEYS": "shop:"}, "NOTIFY_API_KEYS", id="api-keys-no-secret"),
    pytest.param({"NOTIFY_API_KEYS": ":secret"}, "NOTIFY_API_KEYS", id="api-keys-no-name"),
    pytest.param(
        # A name may repeat (rotation), but one secret may not be listed twice.
        {"NOTIFY_API_KEYS": "shop:a-secret-1,shop:a-secret-1"},
        "NOTIFY_API_KEYS",
        id="api-keys-duplicate-secret",
    ),
    pytest.param({"JWT_ALGORITHMS": "none"}, "JWT_ALGORITHMS", id="jwt-alg-none"),
    pytest.param({"JWT_ALGORITHMS": "HS256,none"}, "JWT_ALGORITHMS", id="jwt-alg-none-in-list"),
    pytest.param({"JWT_ALGORITHMS": "XS999"}, "JWT_ALGORITHMS", id="jwt-alg-unknown"),
    pytest.param({"JWT_ALGORITHMS": "RS256"}, "JWT_PUBLIC_KEY", id="rs256-no-public-key"),
    pytest.param(
        {**PROD, "JWT_ALGORITHMS": "RS256"}, "JWT_PUBLIC_KEY", id="prod-rs256-no-public-key"
    ),
    pytest.param({"WEB_CONCURRENCY": "4"}, "REDIS_URL", id="in-memory-layer-4-workers"),
    pytest.param({"NOTIFY_PUBLISH_RATE": "fast"}, "NOTIFY_PUBLISH_RATE", id="rate-word"),
    pytest.param({"NOTIFY_PUBLISH_RATE": "0/s"}, "NOTIFY_PUBLISH_RATE", id="rate-zero"),
    pytest.param({"NOTIFY_PUBLISH_RATE": "10/day"}, "NOTIFY_PUBLISH_RATE", id="rate-bad-unit"),
    pytest.param(
        {"ALLOWED_ORIGINS": "app.example.com"}, "ALLOWED_ORIGINS", id="origin-without-scheme"
    ),
    pytest.param(
        {"ALLOWED_ORIGINS": "https://ok.example,https://app.example.com/path"},
        "ALLOWED_ORIGINS",
        id="origin-with-path",
    ),
    pytest.param({"ALLOWED_ORIGINS": "ftp://x.example"}, "ALLOWED_ORIGINS", id="origin-ftp"),
    pytest.param({"REDIS_URL": "http://redis:6379"}, "REDIS_URL", id="redis-url-scheme"),
]


@pytest.mark.parametrize(("env", "names"), MISCONFIGURED)
def test_misconfiguration_fails_at_start_naming_the_variable(
    env: dict[str, str], names: str
) -> None:
    result = start(env)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "ImproperlyConfigured" in result.stderr, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert names in last_line, last_line


def test_dev_mode_starts_with_no_configuration() -> None:
    result = start({}, report=True)
    assert result.returncode == 0, result.stderr[-2000:]
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["debug"] is True
    # Settings hold only digests, never the secret itself.
    assert values["keys"] == {"dev": [_sha256(credentials.DEV_API_KEY)]}
    assert values["algorithms"] == ["HS256"]
    assert values["origins"] is None
    assert values["rate"] == [1000.0, 2000.0]
    assert "InMemory" in values["layer"]


def test_good_production_config_starts() -> None:
    result = start({**PROD, "NOTIFY_PUBLISH_RATE": "50/s"}, report=True)
    assert result.returncode == 0, result.stderr[-2000:]
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["debug"] is False
    assert values["keys"] == {
        "shop": [_sha256("shop-prod-secret-0123456789abcdef")],
        "billing": [_sha256("billing-prod-secret-abcdef")],
    }
    assert "prod-secret" not in result.stdout
    assert values["origins"] == ["https://app.example.com:443"]
    assert values["rate"] == [50.0, 100.0]
    assert values["hosts"] == ["notify.example.com"]


def test_production_without_publisher_keys_starts_and_accepts_none() -> None:
    result = start(without(PROD, "NOTIFY_API_KEYS"), report=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["keys"] == {}


def test_production_rs256_with_public_key_starts() -> None:
    env = {
        **without(PROD, "JWT_SECRET"),
        "JWT_ALGORITHMS": "RS256",
        "JWT_PUBLIC_KEY": _public_pem(),
    }
    result = start(env, report=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["algorithms"] == ["RS256"]


def test_several_workers_with_redis_start() -> None:
    result = start({"WEB_CONCURRENCY": "4", "REDIS_URL": "redis://127.0.0.1:1/0"}, report=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Redis" in json.loads(result.stdout.strip().splitlines()[-1])["layer"]


# --------------------------------------------------------------------------- normalize_origin


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://app.example.com", "https://app.example.com:443"),
        ("https://App.Example.COM:443", "https://app.example.com:443"),
        ("https://app.example.com/", "https://app.example.com:443"),
        ("http://localhost", "http://localhost:80"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("  https://app.example.com  ", "https://app.example.com:443"),
    ],
)
def test_normalize_origin(value: str, expected: str) -> None:
    assert origins.normalize_origin(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "null",
        "app.example.com",
        "//app.example.com",
        "ftp://app.example.com",
        "ws://app.example.com",
        "https://",
        "https://app.example.com/path",
        "https://app.example.com?x=1",
        "https://app.example.com#frag",
        "https://user:pw@app.example.com",
        "https://app.example.com:99999",
        "https://app.example.com:port",
    ],
)
def test_normalize_origin_refuses_non_origins(value: str) -> None:
    assert origins.normalize_origin(value) is None


def test_default_ports_make_equal_origins() -> None:
    assert origins.normalize_origin("https://a.example") == origins.normalize_origin(
        "https://a.example:443"
    )
    assert origins.normalize_origin("http://a.example") != origins.normalize_origin(
        "https://a.example"
    )
    assert origins.normalize_origin("http://a.example:8080") != origins.normalize_origin(
        "http://a.example"
    )


# --------------------------------------------------------------------------- rate


@pytest.mark.parametrize(
    ("value", "per_second"),
    [
        ("1000/s", 1000.0),
        ("20/sec", 20.0),
        ("5/second", 5.0),
        ("60/m", 1.0),
        ("120/min", 2.0),
        ("30/minute", 0.5),
        ("3600/h", 1.0),
        ("7200/hour", 2.0),
        (" 10 / s ", 10.0),
        ("0.5/s", 0.5),
    ],
)
def test_rate_parses(value: str, per_second: float) -> None:
    rate, burst = config.rate(value, "NOTIFY_PUBLISH_RATE")
    assert rate == pytest.approx(per_second)
    assert burst >= 1.0


def test_rate_burst_is_twice_the_rate() -> None:
    assert config.rate("1000/s", "X") == (1000.0, 2000.0)
    assert config.rate("20/s", "X") == (20.0, 40.0)


@pytest.mark.parametrize("value", ["", "fast", "10", "/s", "0/s", "-1/s", "10/day", "10/s/s"])
def test_rate_refuses_nonsense_naming_the_variable(value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="NOTIFY_WS_FRAME_RATE"):
        config.rate(value, "NOTIFY_WS_FRAME_RATE")


# --------------------------------------------------------------------------- log scrubbing

JWT_LIKE = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0."
    "c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
)


def test_scrub_token_query_param() -> None:
    line = f'"GET /ws/notifications?token={JWT_LIKE}&since=3 HTTP/1.1" 101'
    scrubbed = logs.scrub(line)
    assert JWT_LIKE not in scrubbed
    assert "eyJ" not in scrubbed
    assert "since=3" in scrubbed
    assert "/ws/notifications?" in scrubbed


def test_scrub_opaque_token_and_access_token_params() -> None:
    scrubbed = logs.scrub("/ws?since=1&token=opaque-secret-123&x=2 /a?access_token=other-secret")
    assert "opaque-secret-123" not in scrubbed
    assert "other-secret" not in scrubbed
    assert "since=1" in scrubbed and "x=2" in scrubbed


def test_scrub_bearer_header() -> None:
    publisher_key = "shop-prod-secret-0123456789abcdef"
    scrubbed = logs.scrub(f"headers: Authorization: Bearer {publisher_key}")
    assert publisher_key not in scrubbed
    assert "Authorization" in scrubbed
    assert "bearer.secret-subprotocol" not in logs.scrub("protocols: bearer.secret-subprotocol")


def test_scrub_bare_jwt() -> None:
    scrubbed = logs.scrub(f"token was {JWT_LIKE} in the body")
    assert JWT_LIKE not in scrubbed
    assert scrubbed.startswith("token was ") and scrubbed.endswith(" in the body")


def test_scrub_leaves_ordinary_text_alone() -> None:
    text = "published event 5d2c for 3 recipients in 4.2 ms (type order.shipped)"
    assert logs.scrub(text) == text


def test_scrub_filter_on_a_log_record() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/ws/notifications?token={JWT_LIKE}", "1.1", 101),
        None,
    )
    assert logs.ScrubSecretsFilter().filter(record) is True
    message = record.getMessage()
    assert JWT_LIKE not in message
    assert message.endswith(" 101")
    entry = json.loads(logs.JsonFormatter().format(record))
    assert JWT_LIKE not in entry["message"] and "[scrubbed" in entry["message"]


# --------------------------------------------------------------------------- hardening


def _env(monkeypatch: pytest.MonkeyPatch, **values: str) -> environ.Env:
    for name in list(os.environ):
        if name.startswith(STRIPPED_PREFIXES) or name in STRIPPED:
            monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return environ.Env()


def _rsa_jwk(kid: str | None = "k1", **extra: Any) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    if kid is not None:
        jwk["kid"] = kid
    jwk.update(extra)
    return jwk


HARDENING_MISCONFIGURED = [
    pytest.param(
        {"DEBUG": "true", "ALLOWED_HOSTS": "notify.example.com"}, "DEBUG", id="debug-public-host"
    ),
    # Django's test-client host is no local host: production code knows no test names.
    pytest.param(
        {"DEBUG": "true", "ALLOWED_HOSTS": "testserver"}, "DEBUG", id="debug-testserver-host"
    ),
    pytest.param({"JWT_KEYS": "nocolon"}, "JWT_KEYS", id="jwt-keys-no-colon"),
    pytest.param({"JWT_KEYS": "a:s-1,a:s-2"}, "JWT_KEYS", id="jwt-keys-duplicate-kid"),
    pytest.param({"JWT_KEYS": '{"a": ""}'}, "JWT_KEYS", id="jwt-keys-empty-secret"),
    pytest.param({"JWT_KEYS": "[1, 2"}, "JWT_KEYS", id="jwt-keys-not-pairs"),
    pytest.param({"JWT_KEYS": '{"a": 1'}, "JWT_KEYS", id="jwt-keys-bad-json"),
    pytest.param(
        {"JWT_KEYS": json.dumps({"a": _public_pem()})}, "JWT_KEYS", id="jwt-keys-public-key"
    ),
    pytest.param({"JWT_SECRET": _public_pem()}, "JWT_SECRET", id="jwt-secret-is-public-key"),
    pytest.param(
        {"JWT_ALGORITHMS": "RS256", "JWT_PUBLIC_KEY": _public_pem(), "JWT_KEYS": "a:s-1"},
        "JWT_KEYS",
        id="jwt-keys-without-hs-algorithm",
    ),
    pytest.param(
        {"JWT_ALGORITHMS": "RS256", "JWT_JWKS_FILE": "/nonexistent/jwks.json"},
        "JWT_JWKS_FILE",
        id="jwks-file-missing",
    ),
    pytest.param(
        {**PROD, "JWT_ALGORITHMS": "RS256", "JWT_JWKS_URL": "http://issuer.example/jwks"},
        "JWT_JWKS_URL",
        id="prod-jwks-url-not-https",
    ),
    pytest.param({"JWT_LEEWAY": "-5"}, "JWT_LEEWAY", id="jwt-leeway-negative"),
    pytest.param({"NOTIFY_API_KEYS": "shop:s-1:"}, "NOTIFY_API_KEYS", id="api-key-empty-types"),
    pytest.param(
        {"NOTIFY_API_KEYS": "shop:s-1:order shipped"}, "NOTIFY_API_KEYS", id="api-key-bad-type"
    ),
    pytest.param(
        {"NOTIFY_API_KEYS": "shop:s-1,billing:s-1"}, "NOTIFY_API_KEYS", id="api-key-shared-secret"
    ),
]


@pytest.mark.parametrize(("env", "names"), HARDENING_MISCONFIGURED)
def test_hardening_misconfiguration_fails_at_start(env: dict[str, str], names: str) -> None:
    result = start(env)
    assert result.returncode != 0, result.stdout + result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert "ImproperlyConfigured" in last_line, result.stderr[-2000:]
    assert names in last_line, last_line


def test_debug_refusal_message_names_the_hosts() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"DEBUG must be off.*notify\.example\.com"):
        config.check_debug_hosts(debug=True, hosts=["localhost", "notify.example.com"])
    config.check_debug_hosts(debug=True, hosts=["localhost", "127.0.0.1", "[::1]"])
    config.check_debug_hosts(debug=False, hosts=["*"])
    # "*" alone (throwaway containers, harnesses) is warned about, not refused.
    config.check_debug_hosts(debug=True, hosts=["*"])


def test_dev_mode_with_local_redis_and_postgres_urls_still_starts() -> None:
    env = {
        "DEBUG": "true",
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "DATABASE_URL": "postgres://u:p@127.0.0.1:5432/db",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
    }
    result = start(env, report=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_rotation_keeps_every_secret_of_a_name_as_digests() -> None:
    env = {**PROD, "NOTIFY_API_KEYS": "shop:old-secret-0123456789,shop:new-secret-0123456789"}
    result = start(env, report=True)
    assert result.returncode == 0, result.stderr[-2000:]
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["keys"] == {
        "shop": [_sha256("old-secret-0123456789"), _sha256("new-secret-0123456789")]
    }


def test_type_scoped_key_syntax(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _env(monkeypatch, NOTIFY_API_KEYS="shop:s-1:order.*|billing.invoice,ops:s-2")
    keys = config_auth.api_keys(env, debug=False)
    (shop,) = keys["shop"]
    assert shop.types == ("order.*", "billing.invoice")
    assert shop.digest == hashlib.sha256(b"s-1").digest()
    assert shop.allows("order.shipped") and shop.allows("billing.invoice")
    assert not shop.allows("billing.refund") and not shop.allows("orders")
    assert keys["ops"][0].types == () and keys["ops"][0].allows("anything")


def test_jwt_keys_list_and_json_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = config_auth.jwt_settings(
        _env(monkeypatch, JWT_KEYS="2026a:secret-a,2026b:secret-b"), debug=False
    )
    assert {k: v.key for k, v in listed.named_keys.items()} == {
        "2026a": "secret-a",
        "2026b": "secret-b",
    }
    assert listed.secret is None  # no JWT_SECRET needed when JWT_KEYS is set
    as_json = config_auth.jwt_settings(
        _env(monkeypatch, JWT_KEYS='{"2026a": "secret:with:colons"}'), debug=False
    )
    assert as_json.named_keys["2026a"].key == "secret:with:colons"
    assert as_json.named_keys["2026a"].family == "hmac"


def test_jwks_file_is_loaded_and_validated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_rsa_jwk("rsa-1", alg="RS256")]}))
    cfg = config_auth.jwt_settings(
        _env(monkeypatch, JWT_ALGORITHMS="RS256", JWT_JWKS_FILE=str(path)), debug=False
    )
    assert cfg.named_keys["rsa-1"].family == "RSA"
    assert cfg.named_keys["rsa-1"].algorithm == "RS256"

    path.write_text(json.dumps({"keys": [_rsa_jwk(None)]}))
    with pytest.raises(ImproperlyConfigured, match=r"JWT_JWKS_FILE.*kid"):
        config_auth.jwt_settings(
            _env(monkeypatch, JWT_ALGORITHMS="RS256", JWT_JWKS_FILE=str(path)), debug=False
        )
    path.write_text(json.dumps({"keys": []}))
    with pytest.raises(ImproperlyConfigured, match="JWT_JWKS_FILE"):
        config_auth.jwt_settings(
            _env(monkeypatch, JWT_ALGORITHMS="RS256", JWT_JWKS_FILE=str(path)), debug=False
        )
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaked = {**json.loads(RSAAlgorithm.to_jwk(private)), "kid": "oops"}
    path.write_text(json.dumps({"keys": [leaked]}))
    with pytest.raises(ImproperlyConfigured, match="private key"):
        config_auth.jwt_settings(
            _env(monkeypatch, JWT_ALGORITHMS="RS256", JWT_JWKS_FILE=str(path)), debug=False
        )
    path.write_text(json.dumps({"keys": [_rsa_jwk("same")]}))
    with pytest.raises(ImproperlyConfigured, match="both JWT_KEYS and JWT_JWKS_FILE"):
        config_auth.jwt_settings(
            _env(
                monkeypatch,
                JWT_ALGORITHMS="HS256,RS256",
                JWT_KEYS="same:s-1",
                JWT_JWKS_FILE=str(path),
            ),
            debug=False,
        )


def test_production_with_jwks_file_starts(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_rsa_jwk("rsa-1")]}))
    env = {**without(PROD, "JWT_SECRET"), "JWT_ALGORITHMS": "RS256", "JWT_JWKS_FILE": str(path)}
    result = start(env, report=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_raw_publisher_secret_reachable_in_settings_after_start() -> None:
    dump = (
        "; from django.conf import settings as s; "
        "print('\\n'.join(repr(getattr(s, n)) for n in dir(s) if n.isupper()))"
    )
    env = {**PROD, "NOTIFY_API_KEYS": "shop:rot-old-0123456789abc,shop:rot-new-0123456789abc:a.*"}
    base = {k: v for k, v in os.environ.items() if k not in STRIPPED}
    base = {k: v for k, v in base.items() if not k.startswith(STRIPPED_PREFIXES)}
    result = subprocess.run(
        [sys.executable, "-c", SETUP + dump],
        env={**base, "DJANGO_SETTINGS_MODULE": "service.settings", **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "PublisherKey(name='shop'" in result.stdout
    assert "rot-old-0123456789abc" not in result.stdout
    assert "rot-new-0123456789abc" not in result.stdout
