"""Migrating the test database to a given state and back (the migration tests)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate(target: list[tuple[str, str]]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


def latest() -> list[tuple[str, str]]:
    """The newest migration of the notifications app (where the tests leave it)."""
    return MigrationExecutor(connection).loader.graph.leaf_nodes("notifications")


@contextlib.contextmanager
def migrated_to(target: list[tuple[str, str]]) -> Iterator[None]:
    """The database at ``target`` inside, at :func:`latest` again after (even
    when the test fails: the next test expects the newest schema)."""
    migrate(target)
    try:
        yield
    finally:
        migrate(latest())
