"""NOTIFY_LOG_FORMAT: text for a person, JSON for collectors, and both scrubbed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

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


@pytest.fixture
def uvicorn_access(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """uvicorn's access logger with a handler of its own (as uvicorn's logging
    config gives it), installed as the service installs it (both filters, JSON
    lines, records lightened), writing to a buffer. Every logger, handler and
    switch touched is put back afterwards."""
    for name in ("logThreads", "logProcesses", "logMultiprocessing", "_srcfile"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", [])
        monkeypatch.setattr(logger, "filters", [])
    logger = logging.getLogger("uvicorn.access")
    monkeypatch.setattr(logger, "propagate", False)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel: also the loggers' cached answers
    out = io.StringIO()
    logger.addHandler(logging.StreamHandler(out))
    logs.install_uvicorn_scrubbing("json")
    logs.lighten_records()
    yield logger, out
    logger.setLevel(level)


def test_an_access_line_is_scrubbed_once_and_written_whole(
    uvicorn_access: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, out = uvicorn_access
    token = logs.request_id.set("req-7")
    try:
        for path in (f"/ws/notifications?token={JWT}", "/api/v1/notifications"):
            logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", path, "1.1", 101)
    finally:
        logs.request_id.reset(token)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert JWT not in first["message"] and "c2lnbmF0dXJlLXNlY3JldA" not in first["message"]
    assert first["message"] == (
        '127.0.0.1:5000 - "GET /ws/notifications?token=[scrubbed] HTTP/1.1" 101'
    )
    assert second["message"] == '127.0.0.1:5000 - "GET /api/v1/notifications HTTP/1.1" 101'
    assert first["request_id"] == second["request_id"] == "req-7"
    assert first["logger"] == "uvicorn.access" and first["level"] == "INFO"


def test_a_record_passing_a_second_filter_stays_scrubbed() -> None:
    """The second filter (a handler's, after the logger's) leaves the record as
    the first left it; what it would have scrubbed is already gone."""
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, "%s %s", ("GET", f"/x?token={JWT}"), None
    )
    first, second = logs.ScrubSecretsFilter(), logs.ScrubSecretsFilter()
    assert first.filter(record) and record.args == ("GET", "/x?token=[scrubbed]")
    assert second.filter(record) and record.args == ("GET", "/x?token=[scrubbed]")
    fresh = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, "%s", (f"Bearer {JWT}",), None
    )
    assert second.filter(fresh) and fresh.args == ("Bearer [scrubbed]",)
