"""``GET /`` in dev mode: a small index instead of Django's debug 404; nothing in production."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.support.keys import dev_api_keys_setting


@pytest.fixture
def dev(settings: Any) -> Any:
    settings.DEBUG = True
    settings.NOTIFY_DEMO_ENABLED = True
    settings.NOTIFY_API_KEYS = dev_api_keys_setting()
    return settings


def test_dev_index_links_the_demo_the_docs_and_the_example(dev: Any) -> None:
    response = Client().get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for link in ('href="/demo"', 'href="/api/docs"', 'href="/api/schema"'):
        assert link in html
    assert "curl -s -X POST http://testserver/api/v1/notifications" in html
    assert "Authorization: Bearer dev-publisher-key" in html
    assert "TOKEN=$(.venv/bin/python manage.py issue_token alice)" in html
    assert "ws://testserver/ws/notifications?token=$TOKEN" in html
    assert "Page not found" not in html


def test_the_index_leaves_out_a_disabled_demo(dev: Any) -> None:
    dev.NOTIFY_DEMO_ENABLED = False
    html = Client().get("/").content.decode()
    assert 'href="/demo"' not in html and 'href="/api/docs"' in html


def test_no_index_in_production(settings: Any) -> None:
    settings.DEBUG = False
    assert Client().get("/").status_code == 404
