"""Ordered SQL migrations, applied at start-up, tracked, and safe to run concurrently.

Migrations are the ``NNNN_name.sql`` files in ``storage/schema/``, applied in number order,
each in its own transaction. A transaction-scoped advisory lock serialises concurrent
runners (two ``rgs up`` or many test workers), so running them twice or at once is safe.
The checksum of each applied file is kept; editing an applied migration is an error.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from storage.errors import MigrationError

__all__ = ["Migration", "apply_migrations", "available_migrations"]

_LOCK_ID = 0x5267_7301  # arbitrary, constant: "Rgs" + 1
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    found = []
    for entry in (resources.files("storage") / "schema").iterdir():
        match = _NAME_RE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number: {versions}")
    return found


async def apply_migrations(conn: asyncpg.Connection) -> list[Migration]:
    """Apply what is missing; return the migrations this call applied."""
    applied_now: list[Migration] = []
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
    except asyncpg.UniqueViolationError:
        # Two first-ever runners raced on CREATE TABLE IF NOT EXISTS; the other won.
        pass
    for migration in available_migrations():
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
            row = await conn.fetchrow(
                "SELECT checksum FROM schema_migrations WHERE version = $1", migration.version
            )
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was edited after it "
                        "was applied; add a new migration instead"
                    )
                continue
            try:
                await conn.execute(migration.sql)
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} failed: {exc}"
                ) from exc
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            applied_now.append(migration)
    return applied_now
