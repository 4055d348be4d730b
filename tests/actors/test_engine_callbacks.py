"""Callback records written by the shard with the commands they ran (migration 0012)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from actors.engine import ShardEngine
from core.wallet import CallbackNote, ResultCode
from storage.callbacks import CallbackStore
from storage.ledger_check import verify_ledger
from tests.helpers import OPERATOR, cmd

OK = ResultCode.OK


def note(request_id: str, endpoint: str = "/transaction/bet", provider: str = "hub88") -> CallbackNote:
    return CallbackNote(provider, endpoint, request_id, hashlib.sha256(request_id.encode()).digest())


@pytest.fixture
async def conn(fresh_database_url: str) -> Any:
    connection = await asyncpg.connect(fresh_database_url)
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        await CallbackStore(pool).register_provider("hub88", "hub88", OPERATOR, {})
    finally:
        await pool.close()
    yield connection
    await connection.close()


async def rows(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch("SELECT * FROM provider_callbacks ORDER BY request_id")


async def test_a_noted_command_commits_its_callback_record_with_it(
    make_engine: Callable[..., Any], conn: asyncpg.Connection
) -> None:
    engine: ShardEngine = await make_engine()
    await engine.submit([cmd("open"), cmd("transfer_in", key="fund", amount=1000)])
    bet, refused, win = await engine.submit(
        [
            cmd("bet", key="b1", amount=300, round_ref="r1", callback=note("rq-1")),
            cmd("bet", key="b2", amount=5000, callback=note("rq-2")),
            cmd("win", key="w1", amount=500, reference="b1", callback=note("rq-3", "/transaction/win")),
        ]
    )
    assert (bet.code, refused.code, win.code) == (OK, ResultCode.INSUFFICIENT_FUNDS, OK)
    assert bet.audited and refused.audited and win.audited
    written = await rows(conn)
    assert [(r["transaction_id"], r["result_code"], r["request_id"]) for r in written] == [
        ("b1", "ok", "rq-1"),
        ("b2", "insufficient_funds", "rq-2"),
        ("w1", "ok", "rq-3"),
    ]
    first = written[0]
    assert first["provider_id"] == "hub88" and first["endpoint"] == "/transaction/bet"
    assert first["player_id"] == "alice" and first["round_ref"] == "r1" and first["reference_id"] is None
    assert bytes(first["body_sha256"]) == hashlib.sha256(b"rq-1").digest()
    assert written[2]["reference_id"] == "b1"
    # the row holds the command's stored answer, its ledger transaction included
    stored = json.loads(first["response"])
    assert stored["code"] == "ok" and stored["tx_id"] == bet.tx_id and stored["balance"] == "700"
    assert json.loads(written[1]["response"])["tx_id"] is None


async def test_what_the_shard_does_not_journal_it_does_not_audit(
    make_engine: Callable[..., Any], conn: asyncpg.Connection
) -> None:
    """Repeats, reuses of a key, reads and commands without a note write no record here:
    the adapter records those callbacks itself."""
    engine: ShardEngine = await make_engine()
    await engine.submit([cmd("open"), cmd("transfer_in", key="fund", amount=1000)])
    (first,) = await engine.submit([cmd("bet", key="b1", amount=300, callback=note("rq-1"))])
    repeat, reuse, read, plain = await engine.submit(
        [
            cmd("bet", key="b1", amount=300, callback=note("rq-1-retry")),
            cmd("bet", key="b1", amount=301, callback=note("rq-1-other")),
            cmd("balance", callback=note("rq-balance", "/user/balance")),
            cmd("bet", key="b2", amount=10),
        ]
    )
    assert first.audited
    assert repeat.code is OK and repeat.replayed and not repeat.audited
    assert reuse.code is ResultCode.DUPLICATE_MISMATCH and not reuse.audited
    assert read.code is OK and not read.audited
    assert plain.code is OK and not plain.audited
    assert [r["request_id"] for r in await rows(conn)] == ["rq-1"]


async def test_a_note_of_an_unregistered_provider_does_not_sink_its_batch(
    make_engine: Callable[..., Any], conn: asyncpg.Connection
) -> None:
    """The batch holds other callers' commands: its money still moves, the row is left out
    and reconciliation reports the transaction as having no recorded callback."""
    engine: ShardEngine = await make_engine()
    await engine.submit([cmd("open"), cmd("open", "bob"), cmd("transfer_in", key="fund", amount=1000)])
    await engine.submit([cmd("transfer_in", "bob", key="fund-bob", amount=1000)])
    stray, other = await engine.submit(
        [
            cmd("bet", key="b1", amount=300, callback=note("rq-stray", provider="nobody")),
            cmd("bet", "bob", key="b9", amount=100, callback=note("rq-bob")),
        ]
    )
    assert stray.code is OK and stray.balance == 700
    assert other.code is OK and other.balance == 900
    assert [r["request_id"] for r in await rows(conn)] == ["rq-bob"]
    assert await verify_ledger(conn) == []
