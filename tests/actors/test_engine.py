"""The account shard's engine on the real database: rules, order, restarts, fencing, bounds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest

from actors.engine import ShardEngine
from core.wallet import AccountStatus, ResultCode
from storage.ledger_check import verify_ledger
from tests.helpers import cmd

OK = ResultCode.OK


async def funded(engine: ShardEngine, player: str = "alice", amount: int = 1000) -> None:
    results = await engine.submit([cmd("open", player), cmd("transfer_in", player, f"fund-{player}", amount)])
    assert [r.code for r in results] == [OK, OK]


async def test_wallet_rules_end_to_end(make_engine: Callable[..., object]) -> None:
    engine = await make_engine()  # type: ignore[misc]
    await funded(engine)
    results = await engine.submit(
        [
            cmd("bet", key="b1", amount=300),
            cmd("bet", key="b1", amount=300),  # exact repeat
            cmd("bet", key="b1", amount=301),  # same key, other content
            cmd("win", key="w1", amount=500, reference="b1"),
            cmd("win", key="w2", amount=500, reference="b1"),  # second resolution
            cmd("rollback", key="r1", reference="b1"),  # rollback after win
            cmd("win", key="w3", amount=1, reference="nope"),  # unknown bet
            cmd("rollback", key="r2", reference="late"),  # rollback before its bet
            cmd("bet", key="late", amount=10),  # ... the late bet is refused
            cmd("bet", key="b2", amount=10_000),  # too much
            cmd("bet", key="b3", amount=0),  # zero bet opens a bet
            cmd("win", key="w4", amount=0, reference="b3"),  # zero win closes it
            cmd("bet", key="b4", amount=100, currency="USD"),
            cmd("balance"),
        ]
    )
    codes = [r.code for r in results]
    assert codes == [
        OK,
        OK,
        ResultCode.DUPLICATE_MISMATCH,
        OK,
        ResultCode.ALREADY_RESOLVED,
        ResultCode.ALREADY_RESOLVED,
        ResultCode.UNKNOWN_REFERENCE,
        OK,
        ResultCode.ROLLED_BACK,
        ResultCode.INSUFFICIENT_FUNDS,
        OK,
        OK,
        ResultCode.CURRENCY_MISMATCH,
        OK,
    ]
    assert results[1].replayed and results[1].tx_id == results[0].tx_id
    assert [r.balance for r in results[:4]] == [700, 700, 700, 1200]
    assert results[-1].balance == 1200


async def test_refusals_are_stored_and_replayed(make_engine: Callable[..., object]) -> None:
    engine = await make_engine()  # type: ignore[misc]
    await funded(engine, amount=50)
    first = await engine.submit([cmd("bet", key="big", amount=80)])
    await engine.submit([cmd("transfer_in", key="more", amount=100)])
    again = await engine.submit([cmd("bet", key="big", amount=80)])
    assert first[0].code is again[0].code is ResultCode.INSUFFICIENT_FUNDS
    assert again[0].replayed and again[0].balance == 50  # the original answer, not today's


async def test_locked_account_cannot_bet_but_wins_and_rollbacks_arrive(make_engine: Callable[..., object]) -> None:
    engine = await make_engine()  # type: ignore[misc]
    await funded(engine)
    results = await engine.submit(
        [
            cmd("bet", key="b1", amount=100),
            cmd("set_status", status=AccountStatus.LOCKED),
            cmd("bet", key="b2", amount=100),
            cmd("win", key="w1", amount=40, reference="b1"),
        ]
    )
    assert [r.code for r in results] == [OK, OK, ResultCode.ACCOUNT_LOCKED, OK]
    assert results[-1].balance == 940


async def test_unknown_account_and_open_in_other_currency(make_engine: Callable[..., object]) -> None:
    engine = await make_engine()  # type: ignore[misc]
    results = await engine.submit(
        [cmd("bet", "ghost", "g1", 1), cmd("open", "bob"), cmd("open", "bob", currency="USD")]
    )
    assert [r.code for r in results] == [ResultCode.UNKNOWN_ACCOUNT, OK, ResultCode.CURRENCY_MISMATCH]


async def test_one_accounts_commands_apply_in_arrival_order(make_engine: Callable[..., object]) -> None:
    engine = await make_engine()  # type: ignore[misc]
    await funded(engine, amount=0)
    commands = []
    for i in range(200):
        commands.append(cmd("transfer_in", key=f"in{i}", amount=1))
        commands.append(cmd("transfer_out", key=f"out{i}", amount=1))
    results = await engine.submit(commands)
    assert all(r.code is OK for r in results)  # out never precedes its in: never insufficient
    assert [r.balance for r in results] == [1, 0] * 200


async def test_concurrent_identical_bets_debit_once(make_engine: Callable[..., object]) -> None:
    engine = await make_engine()  # type: ignore[misc]
    await funded(engine)
    results = await asyncio.gather(*(engine.submit([cmd("bet", key="same", amount=100)]) for _ in range(50)))
    flat = [r[0] for r in results]
    assert {r.code for r in flat} == {OK}
    assert {r.tx_id for r in flat} == {flat[0].tx_id}
    assert (await engine.submit([cmd("balance")]))[0].balance == 900


async def test_restart_remembers_keys_and_bets(make_engine: Callable[..., object], fresh_database_url: str) -> None:
    first = await make_engine("first")  # type: ignore[misc]
    await funded(first)
    original = await first.submit([cmd("bet", key="b1", amount=300), cmd("rollback", key="r0", reference="early")])
    await first.stop()
    second = await make_engine("second")  # type: ignore[misc]
    results = await second.submit(
        [
            cmd("bet", key="b1", amount=300),  # repeat across incarnations
            cmd("bet", key="early", amount=5),  # tombstone written by the first
            cmd("win", key="w1", amount=50, reference="b1"),  # bet opened by the first
        ]
    )
    assert results[0].replayed and results[0].tx_id == original[0].tx_id
    assert results[1].code is ResultCode.ROLLED_BACK
    assert results[2].code is OK and results[2].balance == 750
    conn = await asyncpg.connect(fresh_database_url)
    try:
        assert await verify_ledger(conn) == []
    finally:
        await conn.close()


async def test_a_stale_owner_is_fenced_out(make_engine: Callable[..., object], fresh_database_url: str) -> None:
    zombie = await make_engine("zombie")  # type: ignore[misc]
    await funded(zombie)
    owner = await make_engine("owner")  # type: ignore[misc]  # claims the same partitions
    stale = await zombie.submit([cmd("transfer_in", key="z1", amount=5)])
    assert stale[0].code is ResultCode.UNAVAILABLE
    assert zombie.snapshot()["fenced"]
    fresh = await owner.submit([cmd("transfer_in", key="z1", amount=5)])
    assert fresh[0].code is OK and fresh[0].balance == 1005
    conn = await asyncpg.connect(fresh_database_url)
    try:
        assert await verify_ledger(conn) == []
    finally:
        await conn.close()


async def test_full_mailbox_answers_busy_at_once(make_engine: Callable[..., object]) -> None:
    engine = await make_engine(mailbox_capacity=5)  # type: ignore[misc]
    await funded(engine)
    futures = engine.submit_nowait([cmd("transfer_in", key=f"k{i}", amount=1) for i in range(50)])
    busy = [f.result() for f in futures if f.done()]
    assert len(busy) >= 40 and {r.code for r in busy} == {ResultCode.BUSY}
    settled = await asyncio.gather(*futures)
    assert sum(r.code is OK for r in settled) <= 10


async def test_idle_accounts_are_passivated_and_come_back(make_engine: Callable[..., object]) -> None:
    engine = await make_engine(max_active_accounts=10)  # type: ignore[misc]
    players = [f"p{i}" for i in range(40)]
    await engine.submit([c for p in players for c in (cmd("open", p), cmd("transfer_in", p, f"f-{p}", 10))])
    await asyncio.sleep(0)
    assert engine.snapshot()["active_accounts"] <= 10
    assert engine.snapshot()["passivated"] >= 30
    results = await engine.submit([cmd("bet", p, f"b-{p}", 4) for p in players])
    assert [r.balance for r in results] == [6] * 40


async def test_a_commit_lost_in_flight_is_resolved_by_retrying(
    make_engine: Callable[..., object], fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection dies after PostgreSQL committed: the caller hears 'unavailable', the
    retry under the same key gets the original answer, and nothing is written twice."""
    engine = await make_engine()  # type: ignore[misc]
    await funded(engine)
    journal = engine._journal
    real_connection = journal._connection
    lost = False

    class LosesTheAnswer:
        """Lets the journal call run to COMMIT once, then drops the reply on the floor."""

        def __init__(self, conn: asyncpg.Connection) -> None:
            self._conn = conn

        def __getattr__(self, name: str) -> object:
            return getattr(self._conn, name)

        async def fetchval(self, query: str, *args: object) -> object:
            nonlocal lost
            value = await self._conn.fetchval(query, *args)
            if "rgs_journal_batch" in query and not lost:
                lost = True
                raise ConnectionResetError("connection reset after COMMIT")
            return value

    async def connection() -> object:
        return LosesTheAnswer(await real_connection())

    monkeypatch.setattr(journal, "_connection", connection)
    monkeypatch.setattr(journal, "_lost", lambda: None)
    first = await engine.submit([cmd("bet", key="b1", amount=100)])
    assert first[0].code is ResultCode.UNAVAILABLE
    retry = await engine.submit([cmd("bet", key="b1", amount=100), cmd("bet", key="b2", amount=50)])
    assert retry[0].code is OK and retry[0].replayed and retry[0].balance == 900
    assert retry[1].code is OK and retry[1].balance == 850  # fresh ids: no collision
    conn = await asyncpg.connect(fresh_database_url)
    try:
        assert await verify_ledger(conn) == []
    finally:
        await conn.close()


async def test_metrics_snapshot_reports_the_mailbox_peak_since_the_last_one(
    make_engine: Callable[..., object],
) -> None:
    """A burst queued and drained between two metric samples still shows in the next one."""
    engine = await make_engine()  # type: ignore[misc]
    await funded(engine)
    assert engine.metrics_snapshot()["mailbox_peak"] >= 1  # type: ignore[attr-defined]
    assert engine.metrics_snapshot()["mailbox_peak"] == 0  # type: ignore[attr-defined]
    burst = [cmd("bet", key=f"peak-{n}", amount=1) for n in range(25)]
    results = await engine.submit(burst)  # type: ignore[attr-defined]
    assert {r.code for r in results} == {OK}
    sample = engine.metrics_snapshot()  # type: ignore[attr-defined]
    assert sample["mailbox_depth"] == 0 and sample["mailbox_peak"] == 25
