"""``rgs bench ledger``: the account shards against a naive one-transaction-per-command wallet.

Both sides run in the same process run, against the same PostgreSQL database and schema,
with the same command mix (a bet, then its win, on a random funded account) at the same
bounded concurrency:

* **ours**: commands go through a :class:`~actors.router.ShardRouter` to the
  ``AccountShard`` actors, which group-commit them.
* **baseline**: each command is one durable PostgreSQL transaction on a connection pool:
  ``SELECT … FOR UPDATE`` on the player's and the house's account rows, the same wallet
  rules, the same ledger lines with the same hash chain, idempotency record, bet state and
  balances, then COMMIT.

Latency is the time from issuing a command to its acknowledgement. A third figure is the
rate one hot account sustains through the shards with commands sent one after another.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from core.ledger import Line, house_account_for, house_player_id, line_hash
from core.partitioning import partition_of
from core.wallet import (
    AccountStatus,
    AccountView,
    BetState,
    BetView,
    Command,
    CommandKind,
    Result,
    ResultCode,
    decide,
)

__all__ = ["NaiveWallet", "create_accounts", "measure", "run_bench", "summarize"]


def summarize(latencies: list[float], elapsed: float) -> dict[str, float]:
    ordered = sorted(latencies)
    if not ordered:
        return {"per_s": 0.0, "p50_ms": 0.0, "p99_ms": 0.0}
    return {
        "per_s": round(len(ordered) / elapsed, 1),
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
    }


async def measure(
    execute: Callable[[Command], Awaitable[Result]],
    make_pair: Callable[[int], tuple[Command, Command]],
    *,
    concurrency: int,
    duration: float,
) -> tuple[dict[str, float], dict[str, int]]:
    """Run ``concurrency`` workers issuing bet-then-win pairs for ``duration`` seconds."""
    latencies: list[float] = []
    codes: dict[str, int] = {}
    stop_at = time.perf_counter() + duration

    async def worker(worker_id: int) -> None:
        sequence = 0
        while time.perf_counter() < stop_at:
            for command in make_pair(worker_id * 1_000_000 + sequence):
                started = time.perf_counter()
                result = await execute(command)
                latencies.append(time.perf_counter() - started)
                codes[result.code.value] = codes.get(result.code.value, 0) + 1
            sequence += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return summarize(latencies, time.perf_counter() - started), codes


class NaiveWallet:
    """The baseline: one durable PostgreSQL transaction per command, row locks for order."""

    def __init__(self, pool: asyncpg.Pool, partitions: int) -> None:
        self._pool = pool
        self._partitions = partitions

    async def execute(self, command: Command) -> Result:
        async with self._pool.acquire() as conn, conn.transaction():
            return await self._execute(conn, command)

    async def _lock_account(self, conn: asyncpg.Connection, operator_id: str, player_id: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT account_id, currency, status, withdrawable, bonus, version, last_hash, partition_id"
            " FROM accounts WHERE operator_id = $1 AND player_id = $2 FOR UPDATE",
            operator_id,
            player_id,
        )

    async def _execute(self, conn: asyncpg.Connection, command: Command) -> Result:
        player = await self._lock_account(conn, command.operator_id, command.player_id)
        if player is None:
            return Result(ResultCode.UNKNOWN_ACCOUNT)
        record = await conn.fetchrow(
            "SELECT request_hash, response::text AS response FROM idempotency_records"
            " WHERE account_id = $1 AND idempotency_key = $2",
            player["account_id"],
            command.idempotency_key,
        )
        if record is not None:
            if bytes(record["request_hash"]) == command.request_hash():
                return Result.from_record(json.loads(record["response"]))
            return Result(ResultCode.DUPLICATE_MISMATCH, int(player["withdrawable"]), player["currency"])
        bet_key = command.idempotency_key if command.kind is CommandKind.BET else command.reference
        bet_row = await conn.fetchrow(
            "SELECT state, amount FROM wallet_bets WHERE account_id = $1 AND bet_key = $2",
            player["account_id"],
            bet_key,
        )
        bet = None if bet_row is None else BetView(BetState(bet_row["state"]), int(bet_row["amount"]))
        view = AccountView(player["currency"], AccountStatus(player["status"]), int(player["withdrawable"]))
        decision = decide(command, view, bet)
        tx_id = None
        if decision.moves_money:
            house_id = house_player_id(house_account_for(command.kind), player["currency"], player["partition_id"])
            house = await self._lock_account(conn, command.operator_id, house_id)
            assert house is not None, "bench set-up creates the house accounts"
            tx_id = int(await conn.fetchval("SELECT nextval('ledger_tx_id_seq')"))
            await conn.execute(
                "INSERT INTO ledger_transactions (tx_id, kind, account_id, idempotency_key, reference,"
                " round_ref, game_ref, partition_id, epoch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)",
                tx_id,
                command.kind.value,
                player["account_id"],
                command.idempotency_key,
                command.reference,
                command.round_ref,
                command.game_ref,
                player["partition_id"],
            )
            for line_no, (row, delta) in enumerate(((player, decision.delta), (house, -decision.delta))):
                balance = int(row["withdrawable"]) + delta
                seq = int(row["version"]) + 1
                line = Line(tx_id, line_no, row["account_id"], row["currency"], "withdrawable", delta, balance, seq)
                digest = line_hash(bytes(row["last_hash"]), line)
                await conn.execute(
                    "INSERT INTO ledger_lines (tx_id, line_no, account_id, asset, bucket, amount,"
                    " balance_after, account_seq, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    tx_id,
                    line_no,
                    row["account_id"],
                    row["currency"],
                    "withdrawable",
                    delta,
                    balance,
                    seq,
                    bytes(row["last_hash"]),
                    digest,
                )
                await conn.execute(
                    "UPDATE accounts SET withdrawable = $2, version = $3, last_hash = $4 WHERE account_id = $1",
                    row["account_id"],
                    balance,
                    seq,
                    digest,
                )
        if decision.bet_state is not None:
            await conn.execute(
                "INSERT INTO wallet_bets (account_id, bet_key, state, amount, round_ref, game_ref, resolution_key)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_id, bet_key) DO UPDATE"
                " SET state = excluded.state, resolution_key = excluded.resolution_key, updated_at = now()",
                player["account_id"],
                bet_key,
                decision.bet_state.value,
                decision.bet_amount,
                command.round_ref,
                command.game_ref,
                None if command.kind is CommandKind.BET else command.idempotency_key,
            )
        result = decision.result
        response = {**result.to_record(), "tx_id": tx_id}
        await conn.execute(
            "INSERT INTO idempotency_records (account_id, idempotency_key, command_kind, request_hash,"
            " response, tx_id) VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
            player["account_id"],
            command.idempotency_key,
            command.kind.value,
            command.request_hash(),
            json.dumps(response),
            tx_id,
        )
        return Result.from_record(response, replayed=False)


async def create_accounts(url: str, operator: str, players: list[str], partitions: int, funds: int) -> None:
    """Open and fund players directly (with their house accounts), chain-consistent."""
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO operators VALUES ($1, $1) ON CONFLICT DO NOTHING", operator)
            await conn.execute(
                "INSERT INTO ledger_settings (partitions) VALUES ($1) ON CONFLICT DO NOTHING", partitions
            )
            await conn.execute(
                "INSERT INTO partitions (partition_id) SELECT generate_series(0, $1 - 1) ON CONFLICT DO NOTHING",
                partitions,
            )
            houses = sorted({partition_of(operator, p, partitions) for p in players})
            for partition in houses:
                for kind in (CommandKind.BET, CommandKind.TRANSFER_IN):
                    await conn.execute(
                        "INSERT INTO accounts (kind, operator_id, player_id, currency, partition_id)"
                        " VALUES ('system', $1, $2, 'EUR', $3) ON CONFLICT DO NOTHING",
                        operator,
                        house_player_id(house_account_for(kind), "EUR", partition),
                        partition,
                    )
            await conn.executemany(
                "INSERT INTO accounts (kind, operator_id, player_id, currency, partition_id)"
                " VALUES ('player', $1, $2, 'EUR', $3)",
                [(operator, p, partition_of(operator, p, partitions)) for p in players],
            )
    finally:
        await conn.close()
    wallet_pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    try:
        wallet = NaiveWallet(wallet_pool, partitions)
        for player in players:
            await wallet.execute(Command(CommandKind.TRANSFER_IN, operator, player, "EUR", f"fund-{player}", funds))
    finally:
        await wallet_pool.close()


def _pair_maker(operator: str, players: list[str], run: str) -> Callable[[int], tuple[Command, Command]]:
    rng = random.Random(7)

    def make(n: int) -> tuple[Command, Command]:
        player = players[rng.randrange(len(players))]
        bet_key = f"{run}-b{n}"
        bet = Command(CommandKind.BET, operator, player, "EUR", bet_key, 100, round_ref=f"r{n % 97}")
        win = Command(CommandKind.WIN, operator, player, "EUR", f"{run}-w{n}", 150, reference=bet_key)
        return bet, win

    return make


def _progress(message: str) -> None:
    print(f"bench ledger: {message}", file=sys.stderr, flush=True)


def run_bench(args: Any) -> dict[str, Any]:
    from cli.base import load_cli_config  # the CLI passes its args; config comes the same way

    config = load_cli_config(args)
    duration = args.duration or 10.0
    concurrency = args.concurrency or 256
    return asyncio.run(_run(config, duration, concurrency, args.address))


async def _run(config: Any, duration: float, concurrency: int, address: str | None) -> dict[str, Any]:
    import ray

    from actors.router import ShardRouter
    from actors.shard import start_shards, tune_interpreter
    from storage.database import create_scratch_database, drop_scratch_database, resolve_database

    tune_interpreter()
    url, server = resolve_database(config.database_url, config.pg_data_dir)
    bench_url = await create_scratch_database(url, "rgs_bench")
    database = bench_url.rsplit("/", 1)[1]
    players_n = 1000
    shards = None
    try:
        _progress(f"database {database}; funding {2 * players_n} accounts")
        ours_players = [f"s{i}" for i in range(players_n)]
        base_players = [f"n{i}" for i in range(players_n)]
        await create_accounts(bench_url, "bench-ours", ours_players, config.partitions, 10**12)
        await create_accounts(bench_url, "bench-naive", base_players, config.partitions, 10**12)

        if not ray.is_initialized():
            ray.init(address=address or config.ray_address, namespace="rgs", include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        shards = start_shards(config, bench_url, prefix="bench-shard-")
        router = ShardRouter(shards.handles, config.partitions)
        _progress(f"{len(shards)} shards up; warming up")
        await measure(router.execute, _pair_maker("bench-ours", ours_players, "warm"), concurrency=concurrency, duration=2)

        _progress(f"ours: {concurrency} in flight for {duration:.0f} s")
        ours, ours_codes = await measure(
            router.execute, _pair_maker("bench-ours", ours_players, "run"), concurrency=concurrency, duration=duration
        )
        _progress(f"ours: {ours}")

        pool = await asyncpg.create_pool(bench_url, min_size=8, max_size=min(concurrency, 64))
        naive = NaiveWallet(pool, config.partitions)
        _progress(f"baseline: {concurrency} in flight, pool of {min(concurrency, 64)} connections")
        baseline, base_codes = await measure(
            naive.execute, _pair_maker("bench-naive", base_players, "run"), concurrency=concurrency, duration=duration
        )
        await pool.close()
        _progress(f"baseline: {baseline}")

        _progress("one hot account, commands one after another")
        hot = ours_players[0]
        hot_latencies = []
        hot_started = time.perf_counter()
        n = 0
        while time.perf_counter() - hot_started < min(duration, 5.0):
            command = Command(CommandKind.TRANSFER_IN, "bench-ours", hot, "EUR", f"hot-{n}", 1)
            t0 = time.perf_counter()
            result = await router.execute(command)
            hot_latencies.append(time.perf_counter() - t0)
            assert result.ok, result
            n += 1
        hot_figures = summarize(hot_latencies, time.perf_counter() - hot_started)
        stats = ray.get([h.stats.remote() for h in shards.handles])
        _progress(f"shard stats: {stats}")
        batches = sum(s["batches"] for s in stats)
        commands = sum(s["commands"] for s in stats)
        return {
            "name": "ledger",
            "ours": ours,
            "baseline": baseline,
            "ratio": round(ours["per_s"] / baseline["per_s"], 2) if baseline["per_s"] else None,
            "hot_account_sequential": hot_figures,
            "concurrency": concurrency,
            "duration_s": duration,
            "shards": len(shards),
            "accounts": 2 * players_n,
            "mean_commands_per_commit": round(commands / batches, 1) if batches else 0,
            "router_calls": router.calls,
            "result_codes": {"ours": ours_codes, "baseline": base_codes},
            "targets": {"ratio": 5.0, "ours_p99_ms": 25.0, "hot_account_per_s": 500.0},
            "machine": {"cpus": __import__("os").cpu_count()},
        }
    finally:
        if shards is not None:
            shards.stop()
        await drop_scratch_database(url, bench_url)
        if server is not None:
            server.stop()
