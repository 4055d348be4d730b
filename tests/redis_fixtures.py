"""An embedded Redis for tests: start it in a test's folder, stop it when the test is done.

Usage in a test module (start-up takes a few tens of milliseconds)::

    @pytest.fixture(scope="module")
    def redis_server(tmp_path_factory):
        server = start_test_redis(tmp_path_factory.mktemp("redis"))
        yield server
        server.stop()

Connect with ``await storage.redis_store.connect_redis(server.url)``. Tests sharing one
server isolate themselves with their own keys (a unique rate-limit prefix, a unique feed
channel) rather than FLUSHALL, which would disturb other tests' subscriptions.
"""

from __future__ import annotations

from pathlib import Path

from storage.redis_store import EmbeddedRedis

__all__ = ["start_test_redis"]


def start_test_redis(tmp_path: Path) -> EmbeddedRedis:
    """A started embedded Redis under ``tmp_path/redis``; the caller stops it."""
    server = EmbeddedRedis(Path(tmp_path) / "redis")
    server.start()
    return server
