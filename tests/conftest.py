"""Session-wide fixtures: one Ray, one embedded PostgreSQL for the whole test run.

Starting Ray costs seconds and PostgreSQL a second, so both start once per session and
are shared; tests isolate themselves with their own ids (operators, players, rounds).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray for the whole session (2 CPUs, namespace ``rgs``)."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address=os.environ.get("RGS_TEST_RAY_ADDRESS") or None,
            num_cpus=None if os.environ.get("RGS_TEST_RAY_ADDRESS") else 2,
            namespace="rgs",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def embedded_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The embedded PostgreSQL for this session (None when RGS_TEST_DATABASE_URL is set)."""
    if os.environ.get("RGS_TEST_DATABASE_URL"):
        yield None
        return
    from storage.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    server.start()
    yield server
    server.stop(mode="fast")


@pytest.fixture(scope="session")
def database_url(embedded_pg: object) -> str:
    """A migrated database: the session's embedded server, or RGS_TEST_DATABASE_URL."""
    import asyncio

    from storage.database import migrate

    url = os.environ.get("RGS_TEST_DATABASE_URL") or embedded_pg.url  # type: ignore[attr-defined]
    asyncio.run(migrate(url))
    return url


@pytest.fixture
def fresh_database_url(database_url: str) -> Iterator[str]:
    """A new, migrated database on the session's server, dropped afterwards."""
    import asyncio
    import uuid

    import asyncpg

    from storage.database import migrate

    name = f"rgs_t_{uuid.uuid4().hex[:12]}"
    base, _, _ = database_url.rpartition("/")

    async def create() -> None:
        conn = await asyncpg.connect(database_url)
        await conn.execute(f"CREATE DATABASE {name}")
        await conn.close()
        await migrate(f"{base}/{name}")

    async def drop() -> None:
        conn = await asyncpg.connect(database_url)
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await conn.close()

    asyncio.run(create())
    yield f"{base}/{name}"
    asyncio.run(drop())


ENGINE_PARTITIONS = 8


@pytest.fixture
async def make_engine(fresh_database_url: str):  # type: ignore[no-untyped-def]
    """Start shard engines (plain asyncio, no Ray) owning every partition of a fresh database."""
    from actors.engine import EngineSettings, ShardEngine
    from storage.journal import Journal

    engines: list[ShardEngine] = []

    async def make(owner: str = "test", **overrides: object) -> ShardEngine:
        settings = EngineSettings(
            partitions=ENGINE_PARTITIONS, owned=frozenset(range(ENGINE_PARTITIONS)), **overrides  # type: ignore[arg-type]
        )
        engine = ShardEngine(Journal(fresh_database_url, owner), settings)
        await engine.start()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        await engine.stop(drain=False)
