"""The schema's backstops hold against direct SQL, on the real embedded PostgreSQL."""

import asyncio
import uuid

import asyncpg
import pytest

from storage import migrations
from storage.database import connection, migrate
from storage.errors import MigrationError


async def _account(conn: asyncpg.Connection, *, kind: str = "player") -> int:
    operator = f"op-{uuid.uuid4().hex[:8]}"
    await conn.execute("INSERT INTO operators (operator_id, name) VALUES ($1, $1)", operator)
    await conn.execute("INSERT INTO partitions (partition_id) VALUES (0) ON CONFLICT DO NOTHING")
    return int(
        await conn.fetchval(
            "INSERT INTO accounts (kind, operator_id, player_id, currency, partition_id)"
            " VALUES ($1, $2, 'p1', 'EUR', 0) RETURNING account_id",
            kind,
            operator,
        )
    )


async def _transaction_with_line(conn: asyncpg.Connection, account_id: int) -> int:
    tx_id = int(await conn.fetchval("SELECT nextval('ledger_tx_id_seq')"))
    await conn.execute(
        "INSERT INTO ledger_transactions (tx_id, kind, account_id, idempotency_key, partition_id, epoch)"
        " VALUES ($1, 'transfer_in', $2, $3, 0, 0)",
        tx_id,
        account_id,
        uuid.uuid4().hex,
    )
    await conn.execute(
        "INSERT INTO ledger_lines (tx_id, line_no, account_id, asset, bucket, amount, balance_after,"
        " account_seq, prev_hash, hash) VALUES ($1, 0, $2, 'EUR', 'withdrawable', 5, 5, 1, '\\x00', '\\x01')",
        tx_id,
        account_id,
    )
    return tx_id


async def test_migrations_are_idempotent_and_concurrent_safe(database_url: str) -> None:
    results = await asyncio.gather(*(migrate(database_url) for _ in range(4)))
    assert results == [[], [], [], []]  # the session fixture applied everything already
    async with connection(database_url) as conn:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m.version for m in migrations.available_migrations()]


async def test_edited_migration_is_refused(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real = migrations.available_migrations()
    edited = [migrations.Migration(real[0].version, real[0].name, real[0].sql + "\n-- edited"), *real[1:]]
    monkeypatch.setattr(migrations, "available_migrations", lambda: edited)
    with pytest.raises(MigrationError, match="was edited after it was applied"):
        await migrate(database_url)


async def test_ledger_lines_are_append_only(database_url: str) -> None:
    async with connection(database_url) as conn:
        account_id = await _account(conn)
        tx_id = await _transaction_with_line(conn, account_id)
        for statement in (
            "UPDATE ledger_lines SET amount = 6 WHERE tx_id = $1",
            "DELETE FROM ledger_lines WHERE tx_id = $1",
            "UPDATE ledger_transactions SET kind = 'x' WHERE tx_id = $1",
            "DELETE FROM ledger_transactions WHERE tx_id = $1",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement, tx_id)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("TRUNCATE ledger_lines CASCADE")
        assert await conn.fetchval("SELECT amount FROM ledger_lines WHERE tx_id = $1", tx_id) == 5


async def test_player_balance_cannot_go_negative(database_url: str) -> None:
    async with connection(database_url) as conn:
        player = await _account(conn)
        with pytest.raises(asyncpg.CheckViolationError, match="player_balance_not_negative"):
            await conn.execute("UPDATE accounts SET withdrawable = -1 WHERE account_id = $1", player)
        house = await _account(conn, kind="system")
        await conn.execute("UPDATE accounts SET withdrawable = -1 WHERE account_id = $1", house)


async def test_idempotency_keys_are_unique_per_account(database_url: str) -> None:
    async with connection(database_url) as conn:
        account_id = await _account(conn)
        insert = (
            "INSERT INTO idempotency_records (account_id, idempotency_key, command_kind, request_hash, response)"
            " VALUES ($1, 'k1', 'bet', '\\x01', '{}')"
        )
        await conn.execute(insert, account_id)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, account_id)
