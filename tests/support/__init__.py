"""Test-support code: real throw-away servers (see :mod:`tests.support.servers`)."""

from tests.support.servers import (
    LiveServer,
    LiveServerFactory,
    PostgresServer,
    RedisServer,
    free_port,
)

__all__ = ["LiveServer", "LiveServerFactory", "PostgresServer", "RedisServer", "free_port"]
