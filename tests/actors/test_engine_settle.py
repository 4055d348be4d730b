"""Settling many bets with one command, on the real database: money, bet states, replays."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from actors.engine import ShardEngine
from core.wallet import AccountStatus, Command, CommandKind, Result, ResultCode, split_skipped
from storage.ledger_check import verify_ledger
from tests.helpers import OPERATOR, cmd

OK = ResultCode.OK


def settle(
    payouts: Any, player: str = "alice", key: str = "settle:r1", round_ref: str = "r1", currency: str = "EUR"
) -> Command:
    return Command(
        CommandKind.SETTLE,
        OPERATOR,
        player,
        currency,
        key,
        sum(p for _, p in payouts),
        round_ref=round_ref,
        game_ref="keno:t1",
        payouts=tuple(payouts),
    )


async def placed(engine: ShardEngine, player: str = "alice", bets: int = 4, funds: int = 1000, **kw: Any) -> None:
    """Open and fund ``player`` and place ``bets`` bets of 10 (keys b0, b1, ...)."""
    results = await engine.submit(
        [
            cmd("open", player, **kw),
            cmd("transfer_in", player, f"fund-{player}", funds, **kw),
            *(cmd("bet", player, f"b{i}", 10, round_ref="r1", **kw) for i in range(bets)),
        ]
    )
    assert [r.code for r in results] == [OK] * (2 + bets), results


async def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def bets_of(url: str, player: str = "alice") -> dict[str, tuple[str, int | None, str | None]]:
    rows = await fetch(
        url,
        "SELECT b.bet_key, b.state, b.payout, b.resolution_key FROM wallet_bets b"
        " JOIN accounts a USING (account_id) WHERE a.player_id = $1",
        player,
    )
    return {r["bet_key"]: (r["state"], None if r["payout"] is None else int(r["payout"]), r["resolution_key"]) for r in rows}


async def assert_sound(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        assert await verify_ledger(conn) == []
    finally:
        await conn.close()


def spy_speculation(engine: ShardEngine) -> list[bool]:
    """Record, for each batch taken while another was being written, whether it was
    evaluated ahead (True) or had to wait for a database read (False)."""
    seen: list[bool] = []
    real = engine._speculate

    def spy(*args: Any) -> Any:
        plan = real(*args)
        seen.append(plan is not None)
        return plan

    engine._speculate = spy  # type: ignore[method-assign]
    return seen


async def test_open_bets_are_won_and_paid_in_one_transaction(
    make_engine: Callable[..., Any], fresh_database_url: str
) -> None:
    engine = await make_engine()
    await placed(engine)
    [result] = await engine.submit([settle([("b0", 25), ("b1", 0), ("b2", 100), ("b3", 0)])])
    assert result.code is OK and result.skipped == ()
    assert result.balance == 1000 - 40 + 125 and result.tx_id is not None
    assert await bets_of(fresh_database_url) == {
        "b0": ("won", 25, "settle:r1"),
        "b1": ("won", 0, "settle:r1"),
        "b2": ("won", 100, "settle:r1"),
        "b3": ("won", 0, "settle:r1"),
    }
    txs = await fetch(
        fresh_database_url,
        "SELECT kind, reference, round_ref, game_ref, idempotency_key FROM ledger_transactions WHERE tx_id = $1",
        result.tx_id,
    )
    assert [tuple(t) for t in txs] == [("settle", None, "r1", "keno:t1", "settle:r1")]
    lines = await fetch(
        fresh_database_url,
        "SELECT a.player_id, l.amount, l.balance_after FROM ledger_lines l JOIN accounts a USING (account_id)"
        " WHERE l.tx_id = $1 ORDER BY l.line_no",
        result.tx_id,
    )
    assert [(r["player_id"], int(r["amount"]), int(r["balance_after"])) for r in lines] == [
        ("alice", 125, 1085),
        (lines[1]["player_id"], -125, int(lines[1]["balance_after"])),
    ]
    assert lines[1]["player_id"].startswith("~game:EUR:")  # the house account a win uses
    assert (await engine.submit([cmd("balance")]))[0].balance == 1085
    await assert_sound(fresh_database_url)


async def test_zero_total_writes_no_transaction_but_closes_the_bets(
    make_engine: Callable[..., Any], fresh_database_url: str
) -> None:
    engine = await make_engine()
    await placed(engine, bets=2)
    before = await fetch(fresh_database_url, "SELECT count(*) AS n FROM ledger_transactions")
    [result] = await engine.submit([settle([("b0", 0), ("b1", 0)])])
    assert result.code is OK and result.tx_id is None and result.balance == 980
    after = await fetch(fresh_database_url, "SELECT count(*) AS n FROM ledger_transactions")
    assert after[0]["n"] == before[0]["n"]
    assert {k: v[0] for k, v in (await bets_of(fresh_database_url)).items()} == {"b0": "won", "b1": "won"}
    records = await fetch(
        fresh_database_url, "SELECT tx_id FROM idempotency_records WHERE idempotency_key = 'settle:r1'"
    )
    assert [r["tx_id"] for r in records] == [None]
    [late_win] = await engine.submit([cmd("win", key="w0", amount=5, reference="b0")])
    assert late_win.code is ResultCode.ALREADY_RESOLVED
    await assert_sound(fresh_database_url)


async def test_resolved_and_unknown_bets_are_skipped_not_paid(
    make_engine: Callable[..., Any], fresh_database_url: str
) -> None:
    engine = await make_engine()
    await placed(engine, bets=3)
    results = await engine.submit(
        [
            cmd("win", key="w1", amount=7, reference="b1"),
            cmd("rollback", key="r2", reference="b2"),
            settle([("b0", 5), ("b1", 50), ("b2", 60), ("ghost", 70)]),
            cmd("bet", key="ghost", amount=10),  # the late bet is refused, not debited
        ]
    )
    win, rollback, settled, late = results
    assert win.code is rollback.code is settled.code is OK
    assert settled.balance == 1000 - 30 + 7 + 10 + 5
    assert sorted(split_skipped(s) for s in settled.skipped) == [
        ("b1", ResultCode.ALREADY_RESOLVED),
        ("b2", ResultCode.ROLLED_BACK),
        ("ghost", ResultCode.UNKNOWN_REFERENCE),
    ]
    assert late.code is ResultCode.ROLLED_BACK and late.balance == settled.balance
    bets = await bets_of(fresh_database_url)
    assert bets["b0"] == ("won", 5, "settle:r1")
    assert bets["b1"] == ("won", 7, "w1")
    assert bets["b2"] == ("rolled_back", None, "r2")
    assert bets["ghost"] == ("tombstone", None, "settle:r1")
    # After a restart the tombstone still refuses the late bet.
    await engine.stop()
    second = await make_engine("second")
    [again] = await second.submit([cmd("bet", key="ghost", amount=10)])
    assert again.code is ResultCode.ROLLED_BACK
    await assert_sound(fresh_database_url)


async def test_a_repeat_returns_the_stored_result_and_pays_nothing_more(
    make_engine: Callable[..., Any], fresh_database_url: str
) -> None:
    engine = await make_engine()
    await placed(engine, bets=2)
    command = settle([("b0", 30), ("b1", 0), ("nope", 1)])
    [first] = await engine.submit([command])
    [same, reordered, other] = await engine.submit(
        [
            command,
            settle([("nope", 1), ("b1", 0), ("b0", 30)]),  # the same settlement, listed in another order
            settle([("b0", 31), ("b1", 0)]),  # same key, different payouts
        ]
    )
    assert first.code is OK and first.balance == 1010 and not first.replayed
    for repeat in (same, reordered):
        assert repeat.replayed and repeat.code is OK
        assert (repeat.balance, repeat.tx_id, repeat.skipped) == (first.balance, first.tx_id, first.skipped)
    assert other.code is ResultCode.DUPLICATE_MISMATCH and other.balance == 1010
    # A new incarnation answers the repeat from the database.
    await engine.stop()
    second = await make_engine("second")
    [replayed, balance] = await second.submit([command, cmd("balance")])
    assert replayed.replayed and replayed.tx_id == first.tx_id and replayed.skipped == first.skipped
    assert balance.balance == 1010
    rows = await fetch(fresh_database_url, "SELECT count(*) AS n FROM ledger_transactions WHERE kind = 'settle'")
    assert rows[0]["n"] == 1
    await assert_sound(fresh_database_url)


async def test_bets_not_in_the_cache_are_loaded(make_engine: Callable[..., Any], fresh_database_url: str) -> None:
    """A new engine (nothing cached) settles more bets than the per-account cache holds."""
    first = await make_engine("first")
    await placed(first, bets=600, funds=10_000)
    await first.stop()
    second = await make_engine("second")
    payouts = [(f"b{i}", i % 3) for i in range(600)]
    [result] = await second.submit([settle(payouts)])
    assert result.code is OK and result.skipped == ()
    assert result.balance == 10_000 - 6000 + sum(p for _, p in payouts)
    bets = await bets_of(fresh_database_url)
    assert all(bets[k] == ("won", p, "settle:r1") for k, p in payouts)
    await assert_sound(fresh_database_url)


async def test_a_locked_account_still_gets_paid(make_engine: Callable[..., Any], fresh_database_url: str) -> None:
    engine = await make_engine()
    await placed(engine, bets=1)
    results = await engine.submit([cmd("set_status", status=AccountStatus.LOCKED), settle([("b0", 40)])])
    assert [r.code for r in results] == [OK, OK]
    assert results[1].balance == 1030
    await assert_sound(fresh_database_url)


async def test_eth_sized_amounts(make_engine: Callable[..., Any], fresh_database_url: str) -> None:
    wei = 10**18
    engine = await make_engine()
    results = await engine.submit(
        [
            cmd("open", currency="ETH"),
            cmd("transfer_in", key="fund", amount=100 * wei, currency="ETH"),
            cmd("bet", key="b0", amount=20 * wei, currency="ETH"),
            cmd("bet", key="b1", amount=30 * wei, currency="ETH"),
        ]
    )
    assert all(r.ok for r in results)
    payouts = [("b0", 40 * wei + 1), ("b1", 25 * wei)]
    assert sum(p for _, p in payouts) > 2**63
    command = Command.from_wire(settle(payouts, currency="ETH").to_wire())  # as a shard receives it
    [result] = await engine.submit([command])
    assert result.code is OK
    assert Result.from_wire(result.to_wire()).balance == 50 * wei + 65 * wei + 1
    bets = await bets_of(fresh_database_url)
    assert bets["b0"] == ("won", 40 * wei + 1, "settle:r1")
    await assert_sound(fresh_database_url)


async def test_a_bet_placed_and_settled_in_one_batch(make_engine: Callable[..., Any], fresh_database_url: str) -> None:
    engine = await make_engine()
    await placed(engine, bets=0)
    results = await engine.submit(
        [
            cmd("bet", key="fresh", amount=10, round_ref="r1", game_ref="keno:t1"),
            settle([("fresh", 15)]),
            cmd("win", key="w", amount=1, reference="fresh"),
        ]
    )
    assert [r.code for r in results] == [OK, OK, ResultCode.ALREADY_RESOLVED]
    assert results[1].balance == 1005
    rows = await fetch(fresh_database_url, "SELECT state, payout, round_ref, game_ref FROM wallet_bets")
    assert [(r["state"], int(r["payout"]), r["round_ref"], r["game_ref"]) for r in rows] == [
        ("won", 15, "r1", "keno:t1")  # inserted settled, keeping the bet's own round and game
    ]
    await assert_sound(fresh_database_url)


async def test_a_bet_closed_behind_the_engines_back_is_caught_and_relearned(
    make_engine: Callable[..., Any], fresh_database_url: str
) -> None:
    """The write checks every resolved bet was still open; if not, nothing is written and
    the engine reloads, so the retry sees the truth."""
    engine = await make_engine()
    await placed(engine, bets=2)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute("UPDATE wallet_bets SET state = 'rolled_back' WHERE bet_key = 'b1'")
    finally:
        await conn.close()
    [refused] = await engine.submit([settle([("b0", 5), ("b1", 5)])])
    assert refused.code is ResultCode.UNAVAILABLE
    [retry] = await engine.submit([settle([("b0", 5), ("b1", 5)])])
    assert retry.code is OK and retry.balance == 985
    assert [split_skipped(s) for s in retry.skipped] == [("b1", ResultCode.ROLLED_BACK)]


async def test_unknown_account_and_wrong_currency(make_engine: Callable[..., Any]) -> None:
    engine = await make_engine()
    await placed(engine, bets=1)
    ghost, usd = await engine.submit([settle([("b0", 1)], player="ghost"), settle([("b0", 1)], currency="USD")])
    assert ghost.code is ResultCode.UNKNOWN_ACCOUNT
    assert usd.code is ResultCode.CURRENCY_MISMATCH and usd.balance == 990


@pytest.mark.parametrize("bets_per_batch", [50, 20_000])
async def test_a_round_settles_across_accounts_and_batches(
    make_engine: Callable[..., Any], fresh_database_url: str, bets_per_batch: int
) -> None:
    """The benchmark's shape at small size: many accounts, one settle each, at once."""
    engine = await make_engine(group_commit_max_bets=bets_per_batch)
    players = [f"p{i}" for i in range(40)]
    await engine.submit([c for p in players for c in (cmd("open", p), cmd("transfer_in", p, f"f-{p}", 1000))])
    placed_bets = await engine.submit([cmd("bet", p, f"keno:{p}-{j}", 10, round_ref="r9") for p in players for j in range(20)])
    assert all(r.ok for r in placed_bets)
    rng = random.Random(3)
    commands = [
        settle([(f"keno:{p}-{j}", rng.choice((0, 0, 0, rng.randrange(1, 500)))) for j in range(20)], p, "settle:r9", "r9")
        for p in players
    ]
    batches_before = engine.stats["batches"]
    results = await engine.submit(commands)
    for command, result in zip(commands, results, strict=True):
        assert result.code is OK and result.skipped == ()
        assert result.balance == 1000 - 200 + command.amount
    batches = engine.stats["batches"] - batches_before
    # A settle of 20 bets weighs 21: three fill a batch of 50 bets, all 40 fit in one of 20,000.
    assert batches == (14 if bets_per_batch == 50 else 1)
    states = await fetch(fresh_database_url, "SELECT state, count(*) AS n FROM wallet_bets GROUP BY state")
    assert {r["state"]: r["n"] for r in states} == {"won": 800}
    await assert_sound(fresh_database_url)


async def test_pipelined_batches_keep_every_account_exact(
    make_engine: Callable[..., Any], fresh_database_url: str
) -> None:
    """Small batches, so one is written while the next is evaluated: accounts recur in
    consecutive batches (they wait their turn), house accounts are shared by all of them
    (rebased onto each landed batch), and every balance comes out exact."""
    engine = await make_engine(group_commit_max=7)
    players = [f"q{i}" for i in range(12)]
    commands: list[Command] = []
    expected: dict[str, int] = {}
    for p in players:
        commands += [cmd("open", p, currency="USD"), cmd("transfer_in", p, f"in-{p}", 500, currency="USD")]
        expected[p] = 500
    rng = random.Random(11)
    for r in range(3):
        for p in players:
            stakes = [rng.randrange(1, 20) for _ in range(4)]
            commands += [cmd("bet", p, f"{p}-{r}-{i}", s, round_ref=f"r{r}", currency="USD") for i, s in enumerate(stakes)]
            payouts = [(f"{p}-{r}-{i}", rng.choice((0, 0, 7, 30))) for i in range(4)]
            commands.append(settle(payouts, p, f"settle:r{r}", f"r{r}", "USD"))
            commands.append(cmd("transfer_out", p, f"out-{p}-{r}", 3, currency="USD"))
            expected[p] += sum(p_ for _, p_ in payouts) - sum(stakes) - 3
    speculated = spy_speculation(engine)
    results = await engine.submit(commands)
    assert {r.code for r in results} == {OK}
    balances = await engine.submit([cmd("balance", p, currency="USD") for p in expected])
    assert {p: b.balance for p, b in zip(expected, balances, strict=True)} == expected
    assert speculated and any(speculated)  # some batch was evaluated while another was written
    await assert_sound(fresh_database_url)


async def test_a_failed_write_drops_the_batch_evaluated_behind_it(
    make_engine: Callable[..., Any], fresh_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first write fails while the next batch is already evaluated on top of it: that
    one is evaluated again (after reloading), so nothing it wrote assumes the failed one."""
    from storage.errors import DatabaseUnavailableError

    engine = await make_engine(group_commit_max=3)
    players = [f"f{i}" for i in range(6)]
    await engine.submit([c for p in players for c in (cmd("open", p), cmd("transfer_in", p, f"in-{p}", 100))])
    await engine.submit([cmd("bet", p, f"{p}-b", 10) for p in players])
    journal = engine._journal
    real_send = journal.send
    calls = 0

    async def failing_once(prepared: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise DatabaseUnavailableError("injected")
        return await real_send(prepared)

    monkeypatch.setattr(journal, "send", failing_once)
    speculated = spy_speculation(engine)
    results = await engine.submit([settle([(f"{p}-b", 25)], p) for p in players])
    assert speculated == [True]  # the second batch was evaluated behind the failing first
    codes = [r.code for r in results]
    assert codes[:3] == [ResultCode.UNAVAILABLE] * 3 and codes[3:] == [OK] * 3
    retry = await engine.submit([settle([(f"{p}-b", 25)], p) for p in players])
    assert [r.code for r in retry] == [OK] * 6
    assert [r.balance for r in retry] == [115] * 6
    await assert_sound(fresh_database_url)


async def _bet_table_reads(url: str, updates_at_least: int, timeout_s: float = 10.0) -> int:
    """Rows of wallet_bets read by sequential scans so far, once the statistics show at
    least ``updates_at_least`` bet updates (they arrive from other backends with a delay)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        (row,) = await fetch(url, "SELECT seq_tup_read, n_tup_upd FROM pg_stat_user_tables WHERE relname = 'wallet_bets'")
        if row["n_tup_upd"] >= updates_at_least or asyncio.get_running_loop().time() > deadline:
            assert row["n_tup_upd"] >= updates_at_least, "the statistics never caught up"
            return int(row["seq_tup_read"])
        await asyncio.sleep(0.2)


async def test_resolving_a_bet_probes_its_key_instead_of_scanning_every_bet(
    make_engine: Callable[..., object], fresh_database_url: str
) -> None:
    # A wallet resolves each bet soon after placing it, so nearly every row is resolved and
    # "state = 'open'" looks like no rows to the planner. Migration 0011: resolving must
    # stay a key lookup, not a scan of the whole table per batch.
    engine = await make_engine()  # type: ignore[misc]
    await placed(engine, bets=1, funds=10_000)
    history = 20_000
    conn = await asyncpg.connect(fresh_database_url)
    try:
        # Resolved bets of the past, written directly: only the table's size and shape matter.
        await conn.execute(
            "INSERT INTO wallet_bets (account_id, bet_key, state, amount, resolution_key, payout)"
            " SELECT a.account_id, 'old' || n, 'won', 10, 'old-win' || n, 5"
            " FROM accounts a, generate_series(1, $1) AS n WHERE a.player_id = 'alice' AND a.kind = 'player'",
            history,
        )
        await conn.execute("ANALYZE wallet_bets")
    finally:
        await conn.close()
    before = await _bet_table_reads(fresh_database_url, updates_at_least=0)
    for i in range(5):  # one batch each: the bet, then its win
        (bet,) = await engine.submit([cmd("bet", key=f"late{i}", amount=1, round_ref="r2")])
        (win,) = await engine.submit([cmd("win", key=f"late-win{i}", amount=1, reference=f"late{i}")])
        assert bet.code is OK and win.code is OK
    # A busy backend reports its statistics at most once a second, an idle one after ten:
    # one more commit a second later makes the shard's connection report the batches above.
    await asyncio.sleep(1.1)
    assert (await engine.submit([cmd("bet", key="report", amount=1, round_ref="r2")]))[0].code is OK
    after = await _bet_table_reads(fresh_database_url, updates_at_least=5)
    assert after - before < history, f"{after - before} bet rows read by scans to resolve 5 bets"
    assert (await bets_of(fresh_database_url))["late4"][0] == "won"


async def test_wins_for_more_open_bets_than_a_cache_holds_all_find_their_bet(
    make_engine: Callable[..., object],
) -> None:
    # 400 open bets: the oldest are no longer cached. One batch resolving all of them
    # fetches the uncached ones; that must not push the cached ones out from under it.
    engine = await make_engine()  # type: ignore[misc]
    await placed(engine, bets=400, funds=10_000)
    won = await engine.submit([cmd("win", key=f"w{i}", amount=1, reference=f"b{i}") for i in range(400)])
    assert [i for i, r in enumerate(won) if r.code is not OK] == []
    assert won[-1].balance == 10_000 - 400 * 10 + 400


async def test_a_settle_of_more_bets_than_a_cache_holds_pays_every_one(
    make_engine: Callable[..., object], fresh_database_url: str
) -> None:
    engine = await make_engine()  # type: ignore[misc]
    await placed(engine, bets=400, funds=10_000)
    (result,) = await engine.submit([settle([(f"b{i}", 2) for i in range(400)])])
    assert result.code is OK and not result.skipped, result
    assert result.balance == 10_000 - 400 * 10 + 400 * 2
    assert {state for state, _, _ in (await bets_of(fresh_database_url)).values()} == {"won"}
