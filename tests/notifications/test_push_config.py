"""Web Push settings: off without a key, validated at start-up (notifications/push/config.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import environ
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ImproperlyConfigured

from notifications.push import config as push_config
from notifications.push.config import HostRule, b64url

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY = ec.generate_private_key(ec.SECP256R1())
RAW = b64url(KEY.private_numbers().private_value.to_bytes(32, "big"))
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
PUBLIC = b64url(
    KEY.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
)


def settings_from(
    monkeypatch: pytest.MonkeyPatch, **values: str
) -> push_config.PushSettings | None:
    for name in list(os.environ):
        if name.startswith(("VAPID_", "NOTIFY_PUSH_")):
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return push_config.push_settings(environ.Env())


def test_off_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from(monkeypatch) is None
    assert settings_from(monkeypatch, VAPID_SUBJECT="mailto:a@b.c") is None


@pytest.mark.parametrize("key", [RAW, PEM])
def test_raw_and_pem_keys_give_the_same_public_key(
    monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    cfg = settings_from(monkeypatch, VAPID_PRIVATE_KEY=key, VAPID_SUBJECT="mailto:ops@example.com")
    assert cfg is not None
    assert cfg.public_key == PUBLIC
    assert (cfg.ttl, cfg.urgency, cfg.ca_bundle) == (86400, "normal", None)
    assert HostRule("fcm.googleapis.com") in cfg.allowed_hosts
    assert HostRule("push.apple.com", 443, subdomains=True) in cfg.allowed_hosts


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"VAPID_PRIVATE_KEY": RAW}, "VAPID_SUBJECT"),
        ({"VAPID_PRIVATE_KEY": RAW, "VAPID_SUBJECT": "ops@example.com"}, "VAPID_SUBJECT"),
        ({"VAPID_PRIVATE_KEY": RAW, "VAPID_SUBJECT": "http://example.com"}, "VAPID_SUBJECT"),
        ({"VAPID_PRIVATE_KEY": "not-a-key", "VAPID_SUBJECT": "mailto:a@b.c"}, "VAPID_PRIVATE_KEY"),
        ({"VAPID_PRIVATE_KEY": RAW[:-4], "VAPID_SUBJECT": "mailto:a@b.c"}, "VAPID_PRIVATE_KEY"),
        ({"NOTIFY_PUSH_ALLOWED_HOSTS": "https://fcm.googleapis.com"}, "NOTIFY_PUSH_ALLOWED_HOSTS"),
        ({"NOTIFY_PUSH_ALLOWED_HOSTS": "*.*.example.com"}, "NOTIFY_PUSH_ALLOWED_HOSTS"),
        ({"NOTIFY_PUSH_ALLOWED_HOSTS": "push.example.com:99999"}, "NOTIFY_PUSH_ALLOWED_HOSTS"),
        ({"NOTIFY_PUSH_CA_BUNDLE": "/nonexistent/ca.pem"}, "NOTIFY_PUSH_CA_BUNDLE"),
        ({"NOTIFY_PUSH_TTL": "-1"}, "NOTIFY_PUSH_TTL"),
        ({"NOTIFY_PUSH_URGENCY": "urgent"}, "NOTIFY_PUSH_URGENCY"),
    ],
)
def test_bad_values_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, str], named: str
) -> None:
    base = {"VAPID_PRIVATE_KEY": RAW, "VAPID_SUBJECT": "mailto:ops@example.com"}
    with pytest.raises(ImproperlyConfigured, match=named):
        settings_from(monkeypatch, **{**base, **values} if named.startswith("NOTIFY") else values)


def test_rsa_or_other_curve_keys_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ImproperlyConfigured, match="P-256"):
        settings_from(monkeypatch, VAPID_PRIVATE_KEY=p384.decode(), VAPID_SUBJECT="mailto:a@b.c")


def test_allowed_hosts_rules() -> None:
    rules = push_config.allowed_hosts("push.example.com, *.push.example.net:8443,LOCALHOST:9000")
    assert rules == (
        HostRule("push.example.com", 443),
        HostRule("push.example.net", 8443, subdomains=True),
        HostRule("localhost", 9000),
    )
    assert rules[1].matches("a.push.example.net", 8443)
    assert not rules[1].matches("push.example.net", 8443)  # subdomains only
    assert not rules[1].matches("a.push.example.net", 443)
    assert not rules[0].matches("push.example.com", 8443)


def test_vapid_keys_command_prints_a_usable_key(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAPID_", "NOTIFY_PUSH_"))}
    out = subprocess.run(
        [sys.executable, "manage.py", "vapid_keys"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("VAPID_PRIVATE_KEY="))
    cfg = settings_from(
        monkeypatch, VAPID_PRIVATE_KEY=line.partition("=")[2], VAPID_SUBJECT="mailto:a@b.c"
    )
    assert cfg is not None and cfg.public_key in out


def test_service_refuses_to_start_with_a_key_and_no_subject() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAPID_", "NOTIFY_PUSH_"))}
    env["VAPID_PRIVATE_KEY"] = RAW
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE',"
            "'service.settings'); django.setup()",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "VAPID_SUBJECT" in result.stderr
