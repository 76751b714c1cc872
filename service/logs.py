"""Log lines as JSON (production) or text (dev), a request id on each, no secret in any.

``NOTIFY_LOG_FORMAT`` picks the format (service/config.py ``log_format``):
JSON by default in production, readable text in dev mode or at a terminal.
Both formatters scrub the final line, so the format never decides whether a
token is written.

uvicorn configures its own loggers before Django starts, so
``install_uvicorn_scrubbing`` also puts the scrubbing filter on them: its
access and WebSocket lines carry the raw path with the query string, where a
``?token=`` would otherwise land in the log.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from typing import Any
from urllib.parse import unquote

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_SECRET_PATTERNS = [
    # ?token=... / &access_token=... in paths and URLs
    (re.compile(r"(?i)([?&](?:access_)?token=)[^&\s\"']+"), r"\1[scrubbed]"),
    # Authorization: Bearer xxx
    (re.compile(r"(?i)(bearer[ .])[A-Za-z0-9._~+/=-]+"), r"\1[scrubbed]"),
    # a JWT anywhere (three base64url segments, the first a JSON header)
    (re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "[scrubbed-jwt]"),
]

# Set on a record ScrubSecretsFilter has scrubbed.
_SCRUBBED = "notify_scrubbed"

# What ``unquote`` decodes; a line without one decodes to itself.
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _scrub_raw(text: str) -> str:
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _may_hold_secret(text: str) -> bool:
    """False when no pattern above can match ``text``: each needs ``token``,
    ``bearer`` (either case-insensitively) or ``eyJ``. ``str.lower()`` maps
    every character ``(?i)`` matches to those letters to the letter itself
    (tests/service/test_logs_scrub.py checks all of Unicode), so this is a
    superset of the patterns, at a fraction of their cost."""
    low = text.lower()
    return "token" in low or "bearer" in low or "eyj" in low


def scrub(text: str) -> str:
    """``text`` without secrets; when percent-decoding reveals one (``?tok%65n=``,
    ``token=%65yJ...``), the decoded line, scrubbed.

    Most lines (every connect, every access line without a query) hold none of
    the patterns' words and no percent-escape: they cost a ``lower()`` and a
    few substring checks rather than three regex passes and three decodes.
    """
    if _may_hold_secret(text):
        text = _scrub_raw(text)
    decoded = text
    for _ in range(3):  # double and triple encoding too
        if "%" not in decoded or not _ESCAPE.search(decoded):
            # No escape left (a ``%s`` of a log format, a literal ``%``):
            # decoding cannot reveal anything.
            break
        decoded = unquote(decoded)
        if _may_hold_secret(decoded) and _scrub_raw(decoded) != decoded:
            return _scrub_raw(decoded)
    return text


class ScrubSecretsFilter(logging.Filter):
    """Scrubs the message and each string argument in place; never drops a record.

    Arguments stay arguments: uvicorn's access formatter unpacks them. A
    record passes its logger's filter and then its handler's (uvicorn's
    access line passes both): it is scrubbed once, at the first, and the
    formatters scrub the final line again. Scrubbing it at both was a third of
    what an access line cost.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SCRUBBED, False):
            return True
        setattr(record, _SCRUBBED, True)
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(scrub(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: scrub(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


class ClientErrorFilter(logging.Filter):
    """Records about a client's bad request (Django's ``django.security.*``: a
    disallowed or malformed Host, a suspicious path) become one WARNING line
    without a traceback; the request was answered 400 and nothing failed."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("django.security."):
            return True
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = None
        record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        rid = request_id.get()
        if rid:
            entry["request_id"] = rid
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``12:00:01 WARNING  django.request  Unauthorized: /x  [request_id]``, scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{when} {record.levelname:<8} {record.name}  {record.getMessage()}"
        rid = request_id.get()
        if rid:
            line += f"  [{rid}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def lighten_records() -> None:
    """Records without what no line here writes: the calling frame (a walk up
    the stack per record), the thread, the process and its name. The logging
    HOWTO's "Optimization" switches; neither formatter above reads those
    attributes. uvicorn's access log writes a record per request."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None


def install_uvicorn_scrubbing(log_format: str = "json") -> None:
    """Scrub uvicorn's lines and render them in ``log_format`` like every other line
    (with the request id, which uvicorn's own formatters leave out)."""
    scrubber = ScrubSecretsFilter()
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubSecretsFilter) for f in logger.filters):
            logger.addFilter(scrubber)
        for handler in logger.handlers:
            if not any(isinstance(f, ScrubSecretsFilter) for f in handler.filters):
                handler.addFilter(scrubber)
            handler.setFormatter(formatter(log_format))
