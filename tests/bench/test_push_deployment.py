"""bench/push.py's deployment (``bench push`` and ``bench push-ws``) runs the
service as production does: DEBUG off, whatever the bench's own environment
says (``make`` exports ``DEBUG=1``, and the server inherits the environment)."""

from __future__ import annotations

import httpx
import pytest

from bench.push import deployment

# Real benchmarks in small sizes, a few minutes in all: `make test-slow`.
pytestmark = pytest.mark.bench


@pytest.mark.live
def test_push_bench_service_runs_with_debug_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEBUG", "1")  # as under `make bench`
    with deployment(check_every=1) as (server, _service):
        assert server.env["DEBUG"] == "false"
        with httpx.Client(base_url=server.url, trust_env=False, timeout=30) as http:
            # DEBUG on serves the demo page (NOTIFY_DEMO_ENABLED defaults to
            # DEBUG) and answers an unknown path with Django's technical 404.
            assert http.get("/demo").status_code == 404
            missing = http.get("/no-such-page")
            assert missing.status_code == 404
            assert "URLconf" not in missing.text
