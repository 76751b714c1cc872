"""Django set up in the benchmark's own process, on a given database, as
production runs it (the storage benchmarks read through the service's own
modules)."""

from __future__ import annotations

import os
import secrets


def setup_django(database_url: str) -> None:
    """Point the settings at ``database_url`` and ``django.setup()``.

    Secrets are random unless the environment names them (nothing here signs
    anything a client keeps).
    """
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")
    # DEBUG off whatever the environment says (make exports DEBUG=1): with it on,
    # Django would keep every query it runs, and the reads would be a dev server's.
    os.environ["DEBUG"] = "false"
    for name in ("DJANGO_SECRET_KEY", "JWT_SECRET"):
        os.environ.setdefault(name, secrets.token_urlsafe(48))
    os.environ.setdefault("NOTIFY_API_KEYS", "bench:" + secrets.token_urlsafe(32))
    import django

    django.setup()
