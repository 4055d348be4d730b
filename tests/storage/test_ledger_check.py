"""``rgs ledger verify`` passes on a ledger written by the shards and catches tampering."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from cli.main import main
from storage.ledger_check import verify_ledger
from tests.helpers import cmd


async def _traffic(make_engine: Callable[..., object]) -> None:
    engine = await make_engine()  # type: ignore[misc]
    for player in ("alice", "bob"):
        await engine.submit([cmd("open", player), cmd("transfer_in", player, f"f-{player}", 1000)])
        await engine.submit(
            [
                cmd("bet", player, "b1", 100),
                cmd("win", player, "w1", 250, reference="b1"),
                cmd("bet", player, "b2", 50),
                cmd("rollback", player, "r2", reference="b2"),
            ]
        )


async def _violations(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [str(v) for v in await verify_ledger(conn)]
    finally:
        await conn.close()


async def _tamper(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ALTER TABLE ledger_lines DISABLE TRIGGER ledger_lines_append_only")
        await conn.execute(statement)
        await conn.execute("ALTER TABLE ledger_lines ENABLE TRIGGER ledger_lines_append_only")
    finally:
        await conn.close()


async def test_clean_ledger_verifies(make_engine: Callable[..., object], fresh_database_url: str) -> None:
    await _traffic(make_engine)
    assert await _violations(fresh_database_url) == []


async def test_an_edited_amount_is_caught(make_engine: Callable[..., object], fresh_database_url: str) -> None:
    await _traffic(make_engine)
    await _tamper(
        fresh_database_url,
        "UPDATE ledger_lines SET amount = amount + 1 WHERE (tx_id, line_no) ="
        " (SELECT tx_id, line_no FROM ledger_lines ORDER BY tx_id DESC LIMIT 1)",
    )
    found = await _violations(fresh_database_url)
    checks = {v.split("]")[0].strip("[") for v in found}
    assert {"balanced", "cached balance", "running balance", "hash chain"} <= checks


async def test_a_deleted_line_is_caught(make_engine: Callable[..., object], fresh_database_url: str) -> None:
    await _traffic(make_engine)
    await _tamper(fresh_database_url, "DELETE FROM ledger_lines WHERE tx_id = (SELECT min(tx_id) FROM ledger_lines)")
    found = await _violations(fresh_database_url)
    assert any(v.startswith("[hash chain]") for v in found)
    assert any(v.startswith("[cached balance]") for v in found)
    assert any(v.startswith("[references]") for v in found)  # the transaction lost its lines


async def test_a_negative_player_balance_is_caught(make_engine: Callable[..., object], fresh_database_url: str) -> None:
    await _traffic(make_engine)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute("ALTER TABLE accounts DROP CONSTRAINT player_balance_not_negative")
        await conn.execute("UPDATE accounts SET withdrawable = -5 WHERE player_id = 'alice'")
    finally:
        await conn.close()
    found = await _violations(fresh_database_url)
    assert any(v.startswith("[negative balance]") for v in found)


async def test_cli_exit_codes(
    make_engine: Callable[..., object], fresh_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _traffic(make_engine)
    # the CLI runs its own event loop: give it a thread of its own
    assert await asyncio.to_thread(main, ["ledger", "verify", "--database-url", fresh_database_url]) == 0
    assert "ledger OK" in capsys.readouterr().out
    await _tamper(fresh_database_url, "UPDATE ledger_lines SET hash = '\\x00' WHERE tx_id = (SELECT max(tx_id) FROM ledger_lines)")
    assert await asyncio.to_thread(main, ["ledger", "verify", "--database-url", fresh_database_url, "--json"]) == 1
    out = capsys.readouterr().out
    assert '"ok": false' in out and "hash chain" in out
