"""What a developer reads in the server's output: readable lines in dev mode, JSON on
request, the request id on every HTTP line, and why each WebSocket was refused.

Real uvicorn processes (``live_server_factory``); the lines are read from their output.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.live.conftest import (
    JWT_SECRET,
    ME_PATH,
    OTHER_JWT_SECRET,
    WS_PATH,
    eventually,
    make_token,
    server_env,
)
from tests.support.servers import LiveServer, LiveServerFactory

pytestmark = pytest.mark.live


def served_lines(server: LiveServer) -> list[str]:
    """The uvicorn process's lines (after ``--- uvicorn start``)."""
    text = server.log_text()
    return [line for line in text.split("--- uvicorn start", 1)[-1].splitlines() if line.strip()]


async def lines_with(server: LiveServer, *needles: str) -> list[str]:
    """Wait until some line holds each needle; return the served lines then."""

    async def fetch() -> list[str]:
        return served_lines(server)

    def has_all(lines: list[str]) -> bool:
        return all(any(n in line for line in lines) for n in needles)

    found: list[str] = await eventually(fetch, has_all, what=f"log lines with {needles}")
    return found


@pytest.fixture
def dev_server(live_server_factory: LiveServerFactory, tmp_path: Path) -> LiveServer:
    """Dev mode as ``make run`` has it, no NOTIFY_LOG_FORMAT: the default format."""
    return live_server_factory(server_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", DEBUG="1"))


@pytest.fixture
def json_server(live_server_factory: LiveServerFactory, tmp_path: Path) -> LiveServer:
    env = server_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", NOTIFY_LOG_FORMAT="json")
    return live_server_factory(env)


async def refused(server: LiveServer, path: str, **headers: str) -> int:
    with pytest.raises(InvalidStatus) as refusal:
        async with connect(server.ws_url + path, additional_headers=headers, open_timeout=10):
            pass
    status: int = refusal.value.response.status_code
    assert refusal.value.response.body in (b"", None)
    return status


async def test_each_refused_handshake_is_one_line_with_its_reason(dev_server: LiveServer) -> None:
    expired = make_token("alice", exp_in=-60)
    forged = make_token("alice", secret=OTHER_JWT_SECRET)
    valid = make_token("alice")
    cases: list[tuple[str, dict[str, str], str]] = [
        (WS_PATH, {}, "no token"),
        (f"{WS_PATH}?token={quote(expired)}", {}, "token expired"),
        (f"{WS_PATH}?token={quote(forged)}", {}, "bad signature"),
        (f"{WS_PATH}?token=not-a-jwt", {}, "malformed token"),
        (
            f"{WS_PATH}?token={quote(valid)}",
            {"Origin": "https://evil.example"},
            "origin not allowed: 'https://evil.example'",
        ),
        (f"/ws/elsewhere?token={quote(valid)}", {}, "no socket at '/ws/elsewhere'"),
    ]
    for path, headers, _reason in cases:
        assert await refused(dev_server, path, **headers) == 403

    reasons = [reason for _path, _headers, reason in cases]
    lines = await lines_with(dev_server, *reasons)
    refusals = [line for line in lines if "websocket refused (403)" in line]
    for reason in reasons:
        assert sum(line.endswith(f": {reason}") for line in refusals) == 1, (reason, refusals)
    text = "\n".join(lines)
    for token in (expired, forged, valid, JWT_SECRET):
        assert token not in text
        assert token.rsplit(".", 1)[-1] not in text


async def test_dev_mode_logs_readable_lines_with_the_request_id(dev_server: LiveServer) -> None:
    rid = f"req-{uuid.uuid4().hex[:12]}"
    token = make_token("alice")
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(
            dev_server.url + f"{ME_PATH}?token={quote(token)}",
            headers={"X-Request-ID": rid, "Authorization": "Bearer nope"},
        )
    assert answer.status_code == 401
    assert answer.headers["X-Request-ID"] == rid

    lines = await lines_with(dev_server, f"Unauthorized: {ME_PATH}", f"GET {ME_PATH}")
    mine = [line for line in lines if ME_PATH in line]
    assert len(mine) >= 2, mine
    for line in mine:
        assert not line.startswith("{"), line
        assert line.endswith(f"[{rid}]"), line
        assert token.rsplit(".", 1)[-1] not in line
    assert any("token=[scrubbed]" in line for line in mine), mine


async def test_json_lines_carry_the_request_id_on_every_http_line(json_server: LiveServer) -> None:
    rid = f"req-{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(json_server.url + ME_PATH, headers={"X-Request-ID": rid})
    assert answer.status_code == 401

    lines = await lines_with(json_server, f"Unauthorized: {ME_PATH}", f"GET {ME_PATH}")
    entries = [json.loads(line) for line in lines if ME_PATH in line]
    loggers = {entry["logger"] for entry in entries}
    assert {"django.request", "uvicorn.access"} <= loggers, entries
    assert all(entry.get("request_id") == rid for entry in entries), entries
