"""Fixtures of the storage tests that talk to Redis: one embedded server per test module
(``server``) and a client of it per test (``client``). Tests sharing the server isolate
themselves with keys of their own, never FLUSHALL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio

from storage.redis_store import EmbeddedRedis, connect_redis
from tests.redis_fixtures import start_test_redis


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = start_test_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
async def client(server: EmbeddedRedis) -> AsyncIterator[redis.asyncio.Redis]:
    client = await connect_redis(server.url)
    yield client
    await client.aclose()
