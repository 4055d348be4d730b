"""The embedded PostgreSQL starts, survives an immediate stop and keeps its URL."""

from pathlib import Path

import asyncpg
import pytest

from storage.database import connect, resolve_database
from storage.embedded import EmbeddedPostgres
from storage.errors import DatabaseUnavailableError


async def test_start_crash_restart_keeps_data_and_url(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "db")
    url = server.start()
    try:
        conn = await asyncpg.connect(url)
        await conn.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        await conn.close()
        server.stop(mode="immediate")
        assert not server.is_running()
        with pytest.raises(DatabaseUnavailableError, match="cannot connect"):
            await connect(url, connect_timeout=2)
        assert EmbeddedPostgres(tmp_path / "db").start() == url  # a new handle finds the port
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT x FROM kept") == 42
        await conn.close()
    finally:
        server.stop()
    assert not server.is_running()


def test_external_url_is_used_as_is(tmp_path: Path) -> None:
    url, server = resolve_database("postgresql://someone@db.example/rgs", tmp_path)
    assert (url, server) == ("postgresql://someone@db.example/rgs", None)
    assert not (tmp_path / "postgres").exists()
