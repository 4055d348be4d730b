"""Scaling the shards live: wallet traffic flows through a rebalance from 2 to 4 shards
and back, and not one command fails, runs twice, or is lost.

Every player runs its own script (bets, each resolved once by a win or a rollback, late
rollbacks of resolved bets, exact repeats, and the same new command sent twice at once)
from its own concurrent client. The script is written with the wallet model
(``core.wallet.decide``) alongside, so every answer is known in advance: the test asserts
each answer equals the model's, which is the replay of the acknowledged commands, and
that the ledger holds exactly the acknowledged transactions and passes ``verify_ledger``.
Clients never retry: anything transient must be absorbed by the router.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import ray

from actors.rebalance import RebalanceReport, rebalance
from actors.router import ShardRouter
from actors.shard import NAMESPACE, live_shards, start_shards
from core.config import Config, load_config
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
from storage.ledger_check import verify_ledger
from tests.helpers import kill_and_wait_for_restart

SEED = 20261122
PARTITIONS = 16
PLAYERS = 160
STEPS = 400  # per player; clients stop when the rebalances are done
OPERATOR = "rebal"
PREFIX = "rebal-shard-"
FUNDING = 1_000_000


@dataclass
class _Step:
    command: Command
    expected: ResultCode
    balance: int  # the model's balance after the step
    moves_money: bool
    twin: bool = False  # sent twice at once
    repeat_of: int | None = None  # index of the step it repeats exactly


def _script(player: str, rng: random.Random) -> list[_Step]:
    """One player's commands and what the wallet model says each must answer."""
    balance = 0
    bets: dict[str, BetView] = {}
    open_bets: list[str] = []
    resolved: list[str] = []
    steps: list[_Step] = []

    def add(command: Command, *, twin: bool = False) -> None:
        nonlocal balance
        key = command.idempotency_key if command.kind is CommandKind.BET else command.reference
        decision = decide(
            command, AccountView("EUR", AccountStatus.ACTIVE, balance), bets.get(key or "")
        )
        balance += decision.delta
        if decision.bet_state is not None and key:
            bets[key] = BetView(decision.bet_state, decision.bet_amount)
        steps.append(_Step(command, decision.result.code, balance, decision.moves_money, twin))

    add(Command(CommandKind.TRANSFER_IN, OPERATOR, player, "EUR", f"{player}-fund", FUNDING))
    serial = 0
    while len(steps) < STEPS:
        serial += 1
        roll = rng.random()
        if roll < 0.40 or not open_bets:
            key = f"{player}-b{serial}"
            add(
                Command(CommandKind.BET, OPERATOR, player, "EUR", key, rng.choice((1, 5, 20, 100))),
                twin=rng.random() < 0.1,
            )
            open_bets.append(key)
        elif roll < 0.65:
            key = open_bets.pop(rng.randrange(len(open_bets)))
            add(
                Command(
                    CommandKind.WIN,
                    OPERATOR,
                    player,
                    "EUR",
                    f"{player}-w{serial}",
                    rng.choice((0, 10, 300)),
                    reference=key,
                )
            )
            resolved.append(key)
        elif roll < 0.80:
            key = open_bets.pop(rng.randrange(len(open_bets)))
            add(
                Command(
                    CommandKind.ROLLBACK,
                    OPERATOR,
                    player,
                    "EUR",
                    f"{player}-rb{serial}",
                    reference=key,
                ),
                twin=rng.random() < 0.1,
            )
            resolved.append(key)
        elif roll < 0.85 and resolved:  # a late event on a resolved bet: refused, nothing moves
            add(
                Command(
                    CommandKind.ROLLBACK,
                    OPERATOR,
                    player,
                    "EUR",
                    f"{player}-late{serial}",
                    reference=rng.choice(resolved),
                )
            )
        elif len(steps) > 1:  # an exact repeat of one of this player's keyed commands
            index = rng.randrange(len(steps))
            original = steps[index]
            steps.append(
                _Step(original.command, original.expected, balance, False, repeat_of=index)
            )
    return steps


@dataclass
class _Traffic:
    phase: int = 0  # 0 before the first rebalance, 1 during, 2 between, 3 during, 4 after
    stop: bool = False
    phases: list[int] = field(default_factory=list)  # the phase each answer arrived in
    target: int = 0
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def answered(self) -> None:
        self.phases.append(self.phase)
        if len(self.phases) >= self.target:
            self.reached.set()

    async def until(self, more: int) -> None:
        """Let ``more`` answers arrive."""
        self.target = len(self.phases) + more
        self.reached.clear()
        await asyncio.wait_for(self.reached.wait(), timeout=120)


@dataclass
class _Outcome:
    reports: tuple[RebalanceReport, RebalanceReport]
    problems: list[str]
    phases: list[int]
    reloads: int
    owned_between: dict[str, list[int]]
    owned_after: dict[str, list[int]]
    stale_router_codes: set[ResultCode]


async def _player(
    router: ShardRouter,
    steps: list[_Step],
    traffic: _Traffic,
    answers: list[Result],
    problems: list[str],
) -> None:
    for step in steps:
        if traffic.stop:
            return
        if step.twin:  # the same new command twice at once: one effect, one answer
            first, second = await asyncio.gather(
                router.execute(step.command), router.execute(step.command)
            )
            if (first.code, first.tx_id, first.balance) != (
                second.code,
                second.tx_id,
                second.balance,
            ):
                problems.append(
                    f"{step.command.idempotency_key}: twins answered {first} and {second}"
                )
            result = first
        else:
            result = await router.execute(step.command)
        answers.append(result)
        traffic.answered()
        if result.code is not step.expected:
            problems.append(
                f"{step.command.idempotency_key} ({step.command.kind.value}): {result.code.value} {result.message!r}, model says {step.expected.value}"
            )
            return
        if step.repeat_of is not None:
            original = answers[step.repeat_of]
            if (result.code, result.tx_id, result.balance) != (
                original.code,
                original.tx_id,
                original.balance,
            ):
                problems.append(
                    f"{step.command.idempotency_key}: repeat answered {result}, first answer {original}"
                )
        elif result.balance != step.balance:
            problems.append(
                f"{step.command.idempotency_key}: balance {result.balance}, model {step.balance}"
            )


def _owned_now(names: list[str]) -> dict[str, list[int]]:
    infos: list[dict[str, Any]] = ray.get(
        [ray.get_actor(n, namespace=NAMESPACE).ready.remote() for n in names], timeout=60
    )
    return {info["name"]: sorted(int(p) for p in info["epochs"]) for info in infos}


def _epochs(names: list[str]) -> dict[int, int]:
    infos: list[dict[str, Any]] = ray.get(
        [ray.get_actor(n, namespace=NAMESPACE).ready.remote() for n in names], timeout=60
    )
    return {int(p): int(e) for info in infos for p, e in info["epochs"].items()}


def test_rebalance_2_to_4_and_back_under_traffic(
    ray_session: None, fresh_database_url: str
) -> None:
    url = fresh_database_url
    rng = random.Random(SEED)
    config = load_config({}, overrides={"shards": 2, "partitions": PARTITIONS})
    shards = start_shards(config, url, prefix=PREFIX)
    try:
        before = _owned_now([f"{PREFIX}0", f"{PREFIX}1"])
        assert before == {
            f"{PREFIX}{i}": [p for p in range(PARTITIONS) if p % 2 == i] for i in range(2)
        }
        epochs_before = _epochs(live_shards(PREFIX))
        outcome = asyncio.run(_run(config, url, shards.handles, rng))
        epochs_after = _epochs(live_shards(PREFIX))
    finally:
        shards.stop()

    first, second = outcome.reports
    assert first.ok and second.ok, (first.errors, second.errors)
    moved = {p for p in range(PARTITIONS) if p % 4 >= 2}  # p mod 2 != p mod 4
    assert set(first.moved) == moved and set(second.moved) == moved
    assert first.added == [f"{PREFIX}2", f"{PREFIX}3"] and second.removed == [
        f"{PREFIX}2",
        f"{PREFIX}3",
    ]
    assert outcome.owned_between == {
        f"{PREFIX}{i}": [p for p in range(PARTITIONS) if p % 4 == i] for i in range(4)
    }
    assert outcome.owned_after == before
    # Each move claimed the partition again: whatever the old owner still held is fenced.
    assert all(epochs_after[p] >= epochs_before[p] + 2 for p in moved), (
        epochs_before,
        epochs_after,
    )
    assert all(epochs_after[p] == epochs_before[p] for p in set(range(PARTITIONS)) - moved)

    assert outcome.problems == [], outcome.problems[:10]
    phases = outcome.phases
    # The traffic really spanned both rebalances: answers kept arriving while each ran
    # (phases 1 and 3), and the router followed the moves (after 2 -> 4 it must learn of
    # the new shards, after 4 -> 2 of their removal).
    assert all(phases.count(phase) > 0 for phase in range(5)), {
        p: phases.count(p) for p in range(5)
    }
    assert outcome.reloads >= 2
    assert outcome.stale_router_codes == {ResultCode.OK}


async def _run(config: Config, url: str, handles: list[Any], rng: random.Random) -> _Outcome:
    router = ShardRouter(handles, PARTITIONS, retry_for_s=60)
    players = [f"r{i:03d}" for i in range(PLAYERS)]
    opened = await router.execute_many(
        [Command(CommandKind.OPEN, OPERATOR, p, "EUR") for p in players]
    )
    assert {r.code for r in opened} == {ResultCode.OK}
    scripts = {p: _script(p, rng) for p in players}
    traffic = _Traffic()
    answers: dict[str, list[Result]] = {p: [] for p in players}
    problems: list[str] = []
    clients = [
        asyncio.ensure_future(_player(router, scripts[p], traffic, answers[p], problems))
        for p in players
    ]

    progress: list[str] = []
    await traffic.until(2_000)
    traffic.phase = 1
    first = await rebalance(config, url, 4, prefix=PREFIX, progress=progress.append)
    traffic.phase = 2
    owned_between = await asyncio.to_thread(_owned_now, [f"{PREFIX}{i}" for i in range(4)])
    # A router made from the two original handles (a replica started before the move):
    # its first guess is wrong for half the partitions; it must find the new owners.
    stale = ShardRouter(handles, PARTITIONS, retry_for_s=60)
    reads = await stale.execute_many(
        [Command(CommandKind.BALANCE, OPERATOR, p, "EUR") for p in players]
    )
    stale.close()
    await traffic.until(2_000)
    traffic.phase = 3
    second = await rebalance(config, url, 2, prefix=PREFIX, progress=progress.append)
    traffic.phase = 4
    owned_after = await asyncio.to_thread(_owned_now, [f"{PREFIX}0", f"{PREFIX}1"])
    await traffic.until(2_000)
    traffic.stop = True
    await asyncio.wait_for(asyncio.gather(*clients), timeout=120)
    router.close()

    # The ledger against the model: every player's balance is its script's balance after
    # the last answered step, and the ledger holds exactly the acknowledged transactions.
    expected_balance = {p: scripts[p][len(answers[p]) - 1].balance for p in players if answers[p]}
    acked_tx = {r.tx_id for rs in answers.values() for r in rs if r.tx_id is not None}
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT player_id, withdrawable FROM accounts WHERE operator_id = $1 AND kind = 'player'",
            OPERATOR,
        )
        for row in rows:
            if int(row["withdrawable"]) != expected_balance.get(row["player_id"], 0):
                problems.append(
                    f"{row['player_id']}: ledger {row['withdrawable']} != model {expected_balance.get(row['player_id'], 0)}"
                )
        applied_twice = await conn.fetch(
            "SELECT account_id, idempotency_key, count(*) FROM ledger_transactions GROUP BY 1, 2 HAVING count(*) > 1"
        )
        problems += [f"applied twice: {dict(r)}" for r in applied_twice]
        ledger_tx = {
            int(r[0])
            for r in await conn.fetch(
                "SELECT t.tx_id FROM ledger_transactions t JOIN accounts a ON a.account_id = t.account_id WHERE a.operator_id = $1",
                OPERATOR,
            )
        }
        if acked_tx != ledger_tx:
            problems.append(
                f"in the ledger, never acknowledged: {sorted(ledger_tx - acked_tx)[:5]}; "
                f"acknowledged, not in the ledger: {sorted(acked_tx - ledger_tx)[:5]}"
            )
        problems += [f"verify_ledger: {v}" for v in await verify_ledger(conn)]
    finally:
        await conn.close()
    moving = sum(1 for s in scripts.values() for step in s if step.moves_money)
    print(
        f"rebalance: {len(traffic.phases)} commands answered ({moving} money moves scripted), {router.retries} retried calls, "
        f"{router.reloads} map reloads; moves took {first.move_seconds:.3f} s and {second.move_seconds:.3f} s; {progress}"
    )
    return _Outcome(
        (first, second),
        problems,
        traffic.phases,
        router.reloads,
        owned_between,
        owned_after,
        {r.code for r in reads},
    )


def test_a_restarted_shard_claims_its_current_share(
    ray_session: None, fresh_database_url: str
) -> None:
    """Ray restarts a shard with the arguments it was created with; after a rebalance
    those name the wrong partitions. It must claim what the stored layout gives it."""
    prefix = "restart-shard-"
    config = load_config({}, overrides={"shards": 2, "partitions": 6})
    shards = start_shards(config, fresh_database_url, prefix=prefix)
    try:
        report = asyncio.run(rebalance(config, fresh_database_url, 3, prefix=prefix))
        assert report.ownership[f"{prefix}0"] == [0, 3]  # created owning [0, 2, 4]
        first, again = kill_and_wait_for_restart(shards.handles[0])
        assert sorted(int(p) for p in again["epochs"]) == [0, 3]
        assert all(again["epochs"][p] > first["epochs"][p] for p in first["epochs"])
        # Nobody else was fenced: the shard that took partition 2 still serves it.
        router = ShardRouter(shards.handles, 6)
        players = [f"x{i}" for i in range(30)]
        results = asyncio.run(
            router.execute_many([Command(CommandKind.OPEN, OPERATOR, p, "EUR") for p in players])
        )
        assert {r.code for r in results} == {ResultCode.OK}
    finally:
        shards.stop()


def test_a_stack_restarting_while_its_shards_run_adopts_the_rebalanced_layout(
    ray_session: None, fresh_database_url: str
) -> None:
    """A backend keeper that restarts after a rebalance (its shards still running) must
    not declare its configured 2-shard layout over the live 3-shard one: that would give
    partitions two owners. A cold start does declare the configured layout."""
    prefix = "adopt-shard-"
    config = load_config({}, overrides={"shards": 2, "partitions": 6})
    shards = start_shards(config, fresh_database_url, prefix=prefix)
    try:
        report = asyncio.run(rebalance(config, fresh_database_url, 3, prefix=prefix))
        again = start_shards(config, fresh_database_url, prefix=prefix)
        assert len(again) == 3
        owned = {
            ready["name"]: sorted(int(p) for p in ready["epochs"])
            for ready in ray.get([h.ready.remote() for h in again.handles])
        }
        assert owned == report.ownership
        results = asyncio.run(
            ShardRouter(again.handles, 6).execute_many(
                [Command(CommandKind.OPEN, OPERATOR, f"adopt{i}", "EUR") for i in range(30)]
            )
        )
        assert {r.code for r in results} == {ResultCode.OK}
    finally:
        shards.stop()
    deadline = time.monotonic() + 30
    while live_shards(prefix):  # ray.kill returns before the actors are gone
        assert time.monotonic() < deadline, "the shards did not stop"
        time.sleep(0.2)
    cold = start_shards(config, fresh_database_url, prefix=prefix)
    try:
        assert len(cold) == 2
        names = {ready["name"] for ready in ray.get([h.ready.remote() for h in cold.handles])}
        assert names == {f"{prefix}0", f"{prefix}1"}
    finally:
        cold.stop()
