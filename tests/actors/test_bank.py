"""The bank test: concurrent mixed traffic through the shard actors with faults injected.

Several hundred accounts take tens of thousands of commands (bets, wins, rollbacks,
transfers, exact repeats and conflicting reuses of keys) from many concurrent clients,
while shard actors are killed at random and PostgreSQL is stopped immediately once. A
client whose answer is "unavailable" retries with the same key, as real callers do.
At the end the ledger must equal a single-threaded model replayed over the acknowledged
commands, no command may have been applied twice, and ``verify_ledger`` must pass.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from pathlib import Path

import asyncpg
import pytest
import ray

from actors.router import ShardRouter
from actors.shard import start_shards
from core.config import load_config
from core.wallet import (
    AccountStatus,
    AccountView,
    BetView,
    Command,
    CommandKind,
    Result,
    ResultCode,
    decide,
)
from storage.database import migrate
from storage.embedded import EmbeddedPostgres
from storage.ledger_check import verify_ledger

SEED = 20261122
ACCOUNTS = 300
COMMANDS = 20_000
CONCURRENCY = 64
OPERATOR = "bank"


def _workload(rng: random.Random) -> list[Command]:
    """A deterministic stream of commands, with repeats and conflicting key reuses."""
    players = [f"p{i:03d}" for i in range(ACCOUNTS)]
    commands: list[Command] = []
    open_bets: dict[str, list[tuple[str, int]]] = defaultdict(list)
    early_rollbacks: dict[str, list[str]] = defaultdict(list)
    serial = 0
    while len(commands) < COMMANDS:
        player = rng.choice(players)
        serial += 1
        roll = rng.random()
        if roll < 0.35:
            key = f"b{serial}"
            if early_rollbacks[player] and rng.random() < 0.3:
                key = early_rollbacks[player].pop()  # the late bet after its rollback
            amount = rng.choice((0, 1, 5, 20, 100, 400))
            commands.append(Command(CommandKind.BET, OPERATOR, player, "EUR", key, amount, round_ref=f"r{serial % 50}"))
            open_bets[player].append((key, amount))
        elif roll < 0.60 and open_bets[player]:
            key, _ = open_bets[player].pop(rng.randrange(len(open_bets[player])))
            amount = rng.choice((0, 0, 10, 50, 300))
            commands.append(Command(CommandKind.WIN, OPERATOR, player, "EUR", f"w{serial}", amount, reference=key))
        elif roll < 0.70:
            if open_bets[player] and rng.random() < 0.7:
                key, _ = open_bets[player].pop(rng.randrange(len(open_bets[player])))
            else:
                key = f"b-late{serial}"
                early_rollbacks[player].append(key)
            commands.append(Command(CommandKind.ROLLBACK, OPERATOR, player, "EUR", f"rb{serial}", reference=key))
        elif roll < 0.78:
            amount = rng.choice((10, 100, 1000))
            commands.append(Command(CommandKind.TRANSFER_IN, OPERATOR, player, "EUR", f"in{serial}", amount))
        elif roll < 0.84:
            amount = rng.choice((10, 100, 2000))
            commands.append(Command(CommandKind.TRANSFER_OUT, OPERATOR, player, "EUR", f"out{serial}", amount))
        elif roll < 0.94 and commands:
            commands.append(rng.choice(commands[-500:]))  # an exact repeat, soon after
        elif commands:
            original = rng.choice(commands[-500:])
            if original.kind in (CommandKind.BET, CommandKind.TRANSFER_IN, CommandKind.TRANSFER_OUT):
                commands.append(  # same key, different content
                    Command(original.kind, original.operator_id, original.player_id, "EUR",
                            original.idempotency_key, original.amount + 1, round_ref=original.round_ref)
                )
    return commands


async def _faults(
    shards: list[object], server: EmbeddedPostgres, rng: random.Random, progress: asyncio.Condition,
    answered: list[int], total: int,
) -> dict[str, int]:
    # Faults follow the workload's progress, not the clock: on a fast day the commands
    # would otherwise be done before the last fault and the run would test less.
    injected = {"shard_kills": 0, "postgres_stops": 0}
    plan = [(0.10, "kill"), (0.30, "kill"), (0.50, "postgres"), (0.75, "kill")]
    for share, fault in plan:
        due = share * total
        async with progress:
            await progress.wait_for(lambda: answered[0] >= due)  # noqa: B023 (awaited here, in this iteration)
        if fault == "kill":
            ray.kill(rng.choice(shards), no_restart=False)
            injected["shard_kills"] += 1
        else:
            await asyncio.to_thread(server.stop, mode="immediate")
            injected["postgres_stops"] += 1
            await asyncio.sleep(1.5)
            await asyncio.to_thread(server.start)
    return injected


def _replay(acked: list[tuple[Command, Result]]) -> tuple[dict[str, int], list[str]]:
    """Single-threaded model over the acknowledged money movements, in ledger order."""
    problems: list[str] = []
    by_player: dict[str, list[tuple[Command, Result]]] = defaultdict(list)
    for command, result in acked:
        if result.ok and result.tx_id is not None:
            by_player[command.player_id].append((command, result))
    balances: dict[str, int] = {}
    for player, events in by_player.items():
        balance = 0
        bets: dict[str, BetView] = {}
        seen: set[int] = set()
        for command, result in sorted(events, key=lambda e: e[1].tx_id or 0):
            if result.tx_id in seen:
                continue  # a repeat's acknowledgement of the same transaction
            seen.add(result.tx_id or 0)
            bet_key = command.idempotency_key if command.kind is CommandKind.BET else command.reference
            decision = decide(command, AccountView("EUR", AccountStatus.ACTIVE, balance), bets.get(bet_key or ""))
            if decision.result.code is not ResultCode.OK or balance + decision.delta != result.balance:
                problems.append(f"{player}: {command} acked {result} but the model says {decision.result}")
            balance += decision.delta
            if decision.bet_state is not None and bet_key:
                bets[bet_key] = BetView(decision.bet_state, decision.bet_amount)
        balances[player] = balance
    return balances, problems


@pytest.mark.slow
def test_bank(ray_session: None, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    server = EmbeddedPostgres(tmp_path / "bank-db")
    url = server.start()
    asyncio.run(migrate(url))
    config = load_config({}, overrides={"shards": 2, "partitions": 16})
    shards = start_shards(config, url, prefix="bank-shard-")
    try:
        outcome = asyncio.run(_run(shards.handles, config.partitions, server, url, rng))
    finally:
        shards.stop()
        server.stop()
    assert outcome["injected"] == {"shard_kills": 3, "postgres_stops": 1}, outcome
    assert outcome["problems"] == [], outcome["problems"][:10]


async def _run(handles: list[object], partitions: int, server: EmbeddedPostgres, url: str, rng: random.Random) -> dict[str, object]:
    router = ShardRouter(handles, partitions, retry_for_s=30)
    players = [f"p{i:03d}" for i in range(ACCOUNTS)]
    opened = await router.execute_many([Command(CommandKind.OPEN, OPERATOR, p, "EUR") for p in players])
    assert {r.code for r in opened} == {ResultCode.OK}
    funding = [
        Command(CommandKind.TRANSFER_IN, OPERATOR, p, "EUR", f"seed-{p}", rng.choice((50, 500, 5000)))
        for p in players
    ]
    commands = funding + _workload(rng)
    results: list[Result | None] = [None] * len(commands)
    queue = iter(range(len(commands)))
    answered = [0]
    progress = asyncio.Condition()

    transient: list[str] = []

    async def client() -> None:
        for index in queue:
            while True:  # a caller retries an unknown outcome with the same key
                result = await router.execute(commands[index])
                if result.code not in (ResultCode.UNAVAILABLE, ResultCode.BUSY):
                    break
                transient.append(result.message)
                await asyncio.sleep(0.2)
            results[index] = result
            answered[0] += 1
            async with progress:
                progress.notify_all()

    started = time.monotonic()
    faults = asyncio.ensure_future(_faults(handles, server, rng, progress, answered, len(commands)))
    try:
        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(CONCURRENCY))), timeout=240)
    except TimeoutError:
        stats = await asyncio.gather(*(h.stats.remote() for h in handles), return_exceptions=True)  # type: ignore[attr-defined]
        pytest.fail(
            f"clients stuck: {sum(r is None for r in results)} unanswered; shards {stats}; "
            f"last transient answers {transient[-5:]}"
        )
    injected = await asyncio.wait_for(faults, timeout=30)
    elapsed = time.monotonic() - started

    acked = [(c, r) for c, r in zip(commands, results, strict=True) if r is not None]
    problems: list[str] = []
    if len(acked) != len(commands):
        problems.append(f"{len(commands) - len(acked)} commands never acknowledged")

    # Every acknowledgement under one key agrees with the first for the same content,
    # and a key is applied for at most one content.
    by_key: dict[tuple[str, str], dict[bytes, set[tuple[str, int | None, int | None]]]] = defaultdict(lambda: defaultdict(set))
    for command, result in acked:
        if result.code is ResultCode.DUPLICATE_MISMATCH:
            continue
        by_key[(command.player_id, command.idempotency_key)][command.request_hash()].add(
            (result.code.value, result.tx_id, result.balance)
        )
    for key, variants in by_key.items():
        for answers in variants.values():
            if len(answers) != 1:
                problems.append(f"{key}: one request answered differently: {answers}")
        if len(variants) > 1:
            problems.append(f"{key}: two different requests both took effect: {dict(variants)}")

    model, replay_problems = _replay(acked)
    problems += replay_problems
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT player_id, withdrawable FROM accounts WHERE operator_id = $1 AND kind = 'player'", OPERATOR
        )
        for row in rows:
            if int(row["withdrawable"]) != model.get(row["player_id"], 0):
                problems.append(f"{row['player_id']}: ledger {row['withdrawable']} != model {model.get(row['player_id'], 0)}")
        applied_twice = await conn.fetch(
            "SELECT account_id, idempotency_key, count(*) FROM ledger_transactions GROUP BY 1, 2 HAVING count(*) > 1"
        )
        problems += [f"applied twice: {dict(r)}" for r in applied_twice]
        acked_tx = {r.tx_id for _, r in acked if r.tx_id is not None}
        ledger_tx = {int(r[0]) for r in await conn.fetch("SELECT tx_id FROM ledger_transactions")}
        if acked_tx != ledger_tx:
            problems.append(f"transactions not acknowledged: {sorted(ledger_tx - acked_tx)[:5]}, "
                            f"acknowledged but missing: {sorted(acked_tx - ledger_tx)[:5]}")
        problems += [str(v) for v in await verify_ledger(conn)]
    finally:
        await conn.close()
    codes: dict[str, int] = defaultdict(int)
    for _, result in acked:
        codes[result.code.value] += 1
    print(f"bank: {len(commands)} commands in {elapsed:.1f} s, {router.retries} retried calls, codes {dict(codes)}")
    for required in ("ok", "insufficient_funds", "duplicate_mismatch", "rolled_back"):
        if codes.get(required, 0) == 0:
            problems.append(f"the workload never produced {required!r}: the test lost its teeth")
    return {"injected": injected, "problems": problems, "codes": dict(codes)}
