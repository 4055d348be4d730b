"""Connecting to PostgreSQL: the embedded default or ``DATABASE_URL``.

Foreign connection errors become :class:`~storage.errors.DatabaseUnavailableError`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import asyncpg

from storage.embedded import EmbeddedPostgres
from storage.errors import DatabaseUnavailableError, StorageError
from storage.migrations import apply_migrations

__all__ = [
    "CONNECTION_ERRORS",
    "connect",
    "connection",
    "create_pool",
    "create_scratch_database",
    "drop_scratch_database",
    "migrate",
    "resolve_database",
    "run_on_pool",
]

T = TypeVar("T")

# What a lost or refused connection looks like from asyncpg and the OS.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.ConnectionFailureError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncio.TimeoutError,
)


def resolve_database(
    database_url: str | None, data_dir: Path
) -> tuple[str, EmbeddedPostgres | None]:
    """The URL to use, and the embedded server this call started (None when it was
    already running or the database is external: then it is not ours to stop)."""
    if database_url:
        return database_url, None
    server = EmbeddedPostgres(data_dir)
    already_running = server.pgdata.joinpath("PG_VERSION").exists() and server.is_running()
    url = server.start()
    return url, None if already_running else server


async def connect(url: str, *, connect_timeout: float = 10.0) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=connect_timeout)
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailableError(
            f"cannot connect to PostgreSQL at {_redact(url)}: {exc}"
        ) from exc


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Release without asyncpg's reset query (see :func:`create_pool`)."""


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections go back without asyncpg's session reset.

    Nothing of ours leaves session state on a pooled connection (no LISTEN, no cursors,
    no SET, advisory locks only transaction-scoped), and the reset query (unlock all,
    CLOSE ALL, UNLISTEN, RESET ALL) is a round trip and a server-side statement on every
    release: on the wallet's hot path, one per recorded batch of callbacks. An open
    transaction is still rolled back on release (asyncpg does that whatever ``reset`` is).
    """
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, timeout=10, reset=_keep_session
        )
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailableError(
            f"cannot connect to PostgreSQL at {_redact(url)}: {exc}"
        ) from exc
    assert pool is not None
    return pool


async def run_on_pool(
    pool: asyncpg.Pool, fn: Callable[[asyncpg.Connection], Awaitable[T]], what: str
) -> T:
    """``fn`` on a pooled connection, with asyncpg's errors as ours: a lost server is
    :class:`DatabaseUnavailableError` (retry), a refused statement :class:`StorageError`."""
    try:
        async with pool.acquire() as conn:
            return await fn(conn)
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailableError(f"lost PostgreSQL: {exc}") from exc
    except asyncpg.PostgresError as exc:
        raise StorageError(f"the database refused {what}: {exc}") from exc


async def create_scratch_database(url: str, prefix: str = "rgs_scratch") -> str:
    """A fresh, migrated database on ``url``'s server (benchmarks); returns its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = await connect(url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    scratch = f"{url.rsplit('/', 1)[0]}/{name}"
    await migrate(scratch)
    return scratch


async def drop_scratch_database(url: str, scratch_url: str) -> None:
    """Drop a database made by :func:`create_scratch_database` from ``url``'s, cutting
    its clients off."""
    name = scratch_url.rsplit("/", 1)[1]
    admin = await connect(url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


async def migrate(url: str) -> list[str]:
    """Apply pending migrations; return the names applied by this call."""
    conn = await connect(url)
    try:
        applied = await apply_migrations(conn)
    finally:
        await conn.close()
    return [f"{m.version:04d}_{m.name}" for m in applied]


@asynccontextmanager
async def connection(url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(url)
    try:
        yield conn
    finally:
        await conn.close()


def _redact(url: str) -> str:
    # postgresql://user:secret@host/db -> postgresql://user:***@host/db
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in creds else ''}@{host}"
