"""Fixtures for tests/security: the API tests' settings (known keys, JWT secret), reused."""

from __future__ import annotations

from tests.api.conftest import api_settings, reset_rate_limiter  # noqa: F401  (fixtures)
from tests.live.conftest import http, sockets  # noqa: F401  (fixtures of the live suites)
