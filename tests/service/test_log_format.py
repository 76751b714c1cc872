"""NOTIFY_LOG_FORMAT: text for a person, JSON for collectors, and both scrubbed."""

from __future__ import annotations

import json
import logging

import environ
import pytest
from django.core.exceptions import ImproperlyConfigured

from service import config, logs

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA"


@pytest.mark.parametrize(
    ("debug", "at_terminal", "expected"),
    [(True, False, "text"), (False, True, "text"), (False, False, "json")],
)
def test_the_default_follows_who_reads(
    monkeypatch: pytest.MonkeyPatch, debug: bool, at_terminal: bool, expected: str
) -> None:
    monkeypatch.delenv("NOTIFY_LOG_FORMAT", raising=False)
    monkeypatch.delenv("NOTIFY_JSON_LOGS", raising=False)
    assert config.log_format(environ.Env(), debug=debug, at_terminal=at_terminal) == expected


@pytest.mark.parametrize(("value", "expected"), [("json", "json"), ("TEXT", "text"), ("", "text")])
def test_the_switch_wins(monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("NOTIFY_LOG_FORMAT", value)
    assert config.log_format(environ.Env(), debug=True, at_terminal=False) == expected


def test_bad_values_and_the_old_switch_stop_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_LOG_FORMAT", "yaml")
    with pytest.raises(ImproperlyConfigured, match="NOTIFY_LOG_FORMAT must be json or text"):
        config.log_format(environ.Env(), debug=False, at_terminal=False)
    monkeypatch.delenv("NOTIFY_LOG_FORMAT")
    monkeypatch.setenv("NOTIFY_JSON_LOGS", "true")
    with pytest.raises(ImproperlyConfigured, match="set NOTIFY_LOG_FORMAT=json"):
        config.log_format(environ.Env(), debug=False, at_terminal=False)


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_both_formats_scrub_tokens_and_carry_the_request_id(log_format: str) -> None:
    record = logging.LogRecord(
        "notifications.ws_auth", logging.WARNING, __file__, 1, "GET /x?token=%s", (JWT,), None
    )
    token = logs.request_id.set("req-1")
    try:
        line = logs.formatter(log_format).format(record)
    finally:
        logs.request_id.reset(token)
    assert JWT not in line and "c2lnbmF0dXJlLXNlY3JldA" not in line
    assert "token=[scrubbed]" in line
    if log_format == "json":
        assert json.loads(line)["request_id"] == "req-1"
    else:
        assert line.endswith("[req-1]") and " WARNING  notifications.ws_auth  GET /x" in line


@pytest.mark.parametrize(("level", "expected"), [("INFO", "WARNING"), ("DEBUG", "DEBUG")])
def test_the_websockets_library_logs_warnings_unless_debugging(
    monkeypatch: pytest.MonkeyPatch, level: str, expected: str
) -> None:
    # Its INFO lines are a "connection open" and a "connection closed" per
    # socket, which uvicorn's "[accepted]" line already says (with the client
    # and the path); LOG_LEVEL=DEBUG brings them back with its debug lines.
    monkeypatch.setenv("LOG_LEVEL", level)
    settings = config.logging_config(environ.Env(), log_format="json")
    assert settings["loggers"]["websockets"]["level"] == expected
    assert settings["root"]["level"] == level
