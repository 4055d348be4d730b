"""Keno rounds end to end on a short period: real PostgreSQL, real shard engine, the real
chain notary on the embedded dev chain. The runner is plain asyncio, so a "crash" here is
its tasks cancelled at a chosen phase and a new runner started on the same database: all
it has is what Postgres and the chain hold, exactly as after a process kill (the Ray
actor kills are in test_round_scheduler.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest

from actors.round_scheduler import RayNotary
from actors.table_runner import TableRunner, now_ms
from core.errors import LifecycleError
from core.keno import PaytableSet
from core.rounds import RoundPhase
from core.seeds import SeedVault, generate_key_hex, parse_key
from core.settlement import TicketBook, settle_slow
from core.tables import TableConfig
from core.verification import verify_round
from core.wallet import Command, CommandKind, ResultCode
from storage.games import load_paytable_documents, paytable_sets
from storage.ledger_check import verify_ledger
from storage.rounds import RoundStore

pytestmark = pytest.mark.usefixtures("ray_session")

PLAYERS = [f"p{i}" for i in range(6)]
FUNDS = 1_000_000
OPERATOR = "op-rounds"


@pytest.fixture(scope="module")
def paytables() -> PaytableSet:
    return paytable_sets(load_paytable_documents())["standard"]


@pytest.fixture(scope="module")
def notary(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayNotary]:
    from actors.chain_notary import start_notary
    from storage.embedded_chain import EmbeddedChain

    chain = EmbeddedChain(tmp_path_factory.mktemp("chain"), block_time_s=0.5)
    chain.start()
    name = f"chain-notary-{uuid.uuid4().hex[:6]}"
    handle = start_notary(chain.url, chain.private_key, name=name, batch_window_s=0.05)
    notary = RayNotary(name)
    notary.rpc_url = chain.url  # type: ignore[attr-defined]
    yield notary
    import ray

    ray.kill(handle, no_restart=True)
    chain.stop()


def _table(**overrides: Any) -> TableConfig:
    values: dict[str, Any] = {
        "table_id": f"t{uuid.uuid4().hex[:8]}",
        "paytable_set": "standard",
        "currencies": ["EUR"],
        "max_stake_minor": 10_000,
        "period_ms": 1000,
        "close_offset_ms": 300,
        "commit_lead_ms": 2500,
    }
    values.update(overrides)
    return TableConfig.from_mapping(values)


class Harness:
    def __init__(self, url: str, engine: Any, notary: Any, paytables: PaytableSet, table: TableConfig, key: str) -> None:
        self.url = url
        self.engine = engine
        self.notary = notary
        self.paytables = paytables
        self.table = table
        self.key = key
        self.store: RoundStore | None = None
        self.events: list[dict[str, Any]] = []
        self.commands: list[Command] = []

    async def execute(self, commands: list[Command]) -> list[Any]:
        self.commands.extend(commands)
        return list(await self.engine.submit(commands))

    async def runner(self, *, key: str | None = None, notary: Any = None, execute: Any = None) -> TableRunner:
        if self.store is None:
            self.store = await RoundStore.connect(self.url)
        runner = TableRunner(
            self.table, self.paytables, self.store, notary or self.notary, execute or self.execute,
            SeedVault(parse_key(key or self.key)), salt_wait_s=15,
        )
        runner.subscribe(self.events.append)
        await runner.start(run_schedule=False)
        return runner

    async def fund(self) -> None:
        for player in PLAYERS:
            await self.engine.submit([Command(CommandKind.OPEN, OPERATOR, player, "EUR")])
            [r] = await self.engine.submit(
                [Command(CommandKind.TRANSFER_IN, OPERATOR, player, "EUR", idempotency_key=f"fund-{player}", amount=FUNDS)]
            )
            assert r.ok

    async def balance(self, player: str) -> int:
        [r] = await self.engine.submit([Command(CommandKind.BALANCE, OPERATOR, player, "EUR")])
        assert r.balance is not None
        return r.balance

    async def wait_phase(self, rid: str, phases: set[str], within: float = 20.0) -> str:
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            for event in reversed(self.events):
                if event["round_id"] == rid and event["phase"] in phases:
                    return str(event["phase"])
            await asyncio.sleep(0.01)
        raise AssertionError(f"round {rid} did not reach {phases}; events {[e for e in self.events if e['round_id'] == rid]}")

    async def wait_open(self, runner: TableRunner, rid: str) -> None:
        await self.wait_phase(rid, {"open"})
        # the runner takes bets a moment after announcing the phase; nothing to await on
        while runner.current_round() is None:  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@pytest.fixture
async def harness(fresh_database_url: str, make_engine: Any, notary: RayNotary, paytables: PaytableSet) -> AsyncIterator[Harness]:
    engine = await make_engine()
    h = Harness(fresh_database_url, engine, notary, paytables, _table(), generate_key_hex())
    await h.fund()
    yield h
    if h.store is not None:
        await h.store.close()


def _bets(rid: str | None = None) -> list[dict[str, Any]]:
    spots_cycle = [1, 2, 3, 5, 8, 10]
    bets = []
    for i, player in enumerate(PLAYERS):
        for j in range(3):
            spots = spots_cycle[(i + j) % len(spots_cycle)]
            picks = [((i * 7 + j * 13 + k * 11) % 80) + 1 for k in range(spots)]
            picks = list(dict.fromkeys(picks))
            bet = {"operator_id": OPERATOR, "player_id": player, "currency": "EUR", "picks": picks, "stake": 100 + 10 * j}
            if rid is not None:
                bet["round_id"] = rid
            bets.append(bet)
    return bets


async def _ledger_ok(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        violations = await verify_ledger(conn)
        assert violations == []
        open_keno = await conn.fetchval("SELECT count(*) FROM wallet_bets WHERE state = 'open' AND bet_key LIKE 'keno:%'")
        assert open_keno == 0, "a Keno bet was left open"
    finally:
        await conn.close()


class _ChainView:
    def __init__(self, rpc_url: str) -> None:
        from cli.verify import ChainReader

        self.reader = ChainReader(rpc_url)

    def batch_root(self, tx: str) -> tuple[int, bytes, int, str]:
        return self.reader.batch_root(tx)

    def block_times(self, number: int) -> tuple[str, int, int | None]:
        return self.reader.block_times(number)


async def _expect_paid_exactly(h: Harness, rid: str, paytables: PaytableSet) -> None:
    """Every placed ticket paid exactly its paytable amount, balances add up."""
    assert h.store is not None
    record = await h.store.get_round(rid)
    assert record is not None and record.numbers is not None
    tickets = await h.store.tickets(rid, ["settled"])
    book = TicketBook.from_picks([t.picks for t in tickets], [t.stake for t in tickets])
    expected = settle_slow(book, record.numbers, paytables, max_win_minor=h.table.max_win_minor,
                           round_cap_minor=h.table.round_liability_cap_minor)
    for index, ticket in enumerate(tickets):
        stored = await h.store.ticket(ticket.ticket_id)
        assert stored is not None
        assert stored["payout"] == expected.payout(index)
        assert stored["hits"] == int(expected.hits[index])


async def test_full_round_cycle_with_bets_verifies(harness: Harness, paytables: PaytableSet) -> None:
    runner = await harness.runner()
    rid = await runner.create_next()
    assert rid is not None
    await harness.wait_open(runner, rid)
    answers = await runner.place(_bets())
    assert all(a["status"] == "placed" for a in answers), answers
    staked = {p: 0 for p in PLAYERS}
    for bet in _bets():
        staked[bet["player_id"]] += bet["stake"]
    assert await harness.wait_phase(rid, {"revealed", "voided"}) == "revealed"
    await runner.wait_idle()
    assert harness.store is not None
    assert [t for _, t in await harness.store.transitions(rid)] == [
        "created", "open", "closed", "drawn", "settled", "published", "revealed"
    ]
    await _expect_paid_exactly(harness, rid, paytables)
    paid: dict[str, int] = dict.fromkeys(PLAYERS, 0)
    for answer in answers:
        stored = await harness.store.ticket(answer["ticket_id"])
        assert stored is not None and stored["state"] == "settled"
        paid[stored["player_id"]] += stored["payout"]
        # recall: everything needed to re-present the bet
        recall = await harness.store.recall(answer["ticket_id"])
        assert recall is not None
        assert recall["balance_before"] - recall["balance_after"] == recall["stake"]
        assert recall["round"]["numbers"] and recall["round"]["revealed_seed"]
        assert recall["win_balance_after"] is not None
    for player in PLAYERS:
        assert await harness.balance(player) == FUNDS - staked[player] + paid[player]
    record = await harness.store.published(rid)
    assert record is not None
    checks = verify_round(record, _ChainView(harness.notary.rpc_url))  # type: ignore[attr-defined]
    assert all(c.ok for c in checks), checks
    assert {c.name for c in checks} >= {"seed_matches_commitment", "commitment_on_chain", "salt_from_chain", "draw_replays"}
    await runner.stop()
    await _ledger_ok(harness.url)


async def test_tampered_records_fail_the_named_check(harness: Harness) -> None:
    runner = await harness.runner()
    rid = await runner.create_next()
    assert rid is not None
    assert await harness.wait_phase(rid, {"revealed", "voided"}) == "revealed"
    await runner.stop()
    assert harness.store is not None
    record = await harness.store.published(rid)
    assert record is not None
    view = _ChainView(harness.notary.rpc_url)  # type: ignore[attr-defined]
    assert all(c.ok for c in verify_round(record, view))

    def failed(changed: dict[str, Any]) -> set[str]:
        return {c.name for c in verify_round({**record, **changed}, view) if not c.ok}

    numbers = list(record["numbers"])
    numbers[0], numbers[1] = numbers[1], numbers[0]
    assert failed({"numbers": numbers}) == {"draw_replays"}
    assert "seed_matches_commitment" in failed({"revealed_seed": "ab" * 32})
    other = "0x" + "11" * 32
    assert "salt_from_chain" in failed({"salt": other})
    assert "salt_from_chain" in failed({"salt_block": record["salt_block"] + 1})
    assert "commitment_on_chain" in failed({"commitment": "00" * 32})
    bad_proof = {**record["commit_proof"], "proof": [["L", "00" * 32]]}
    assert "commitment_on_chain" in failed({"commit_proof": bad_proof})
    assert "reveal_on_chain" in failed({"reveal_tx": record["commit_tx"]})
    assert failed({"phase": "settled"}) == {"revealed"}
    # a root anybody could have sent does not count: only the notary's transactions do, and
    # without a proven commitment nobody can tell it came before the bets
    assert {c.name for c in verify_round(record, view, expected_notary="0x" + "12" * 20) if not c.ok} == {
        "commitment_on_chain", "committed_before_open", "reveal_on_chain"
    }
    # the commit block is read from the chain when the record does not carry it
    without_block = {k: v for k, v in record["commit_proof"].items() if k != "block"}
    assert failed({"commit_proof": without_block}) == set()
    assert "committed_before_open" in {c.name for c in verify_round({**record, "commit_proof": without_block}, view)}
    mined_at = view.block_times(record["commit_proof"]["block"])[1]
    assert failed({"commit_proof": without_block, "opens_at": (mined_at - 1) * 1000}) == {"committed_before_open"}


async def test_illegal_transition_is_an_error_and_writes_nothing(harness: Harness) -> None:
    runner = await harness.runner()
    record = await runner.create_round(runner.table.schedule.slot_at(now_ms()) + 100)
    assert harness.store is not None
    with pytest.raises(LifecycleError):
        await harness.store.transition(record.round_id, RoundPhase.CREATED, RoundPhase.DRAWN)
    with pytest.raises(LifecycleError):  # the stored phase is not 'open'
        await harness.store.transition(record.round_id, RoundPhase.OPEN, RoundPhase.CLOSED)
    assert [t for _, t in await harness.store.transitions(record.round_id)] == ["created"]
    stored = await harness.store.get_round(record.round_id)
    assert stored is not None and stored.phase is RoundPhase.CREATED
    await runner.stop()


async def test_bad_bets_are_refused_with_codes_and_cost_nothing(harness: Harness) -> None:
    runner = await harness.runner()
    refused = await runner.place([{"operator_id": OPERATOR, "player_id": "p0", "currency": "EUR", "picks": [1], "stake": 1}])
    assert refused[0]["code"] == "no_open_round"
    rid = await runner.create_next()
    assert rid is not None
    await harness.wait_open(runner, rid)
    base = {"operator_id": OPERATOR, "player_id": "p0", "currency": "EUR", "picks": [1, 2, 3], "stake": 100}
    cases = {
        "bad_picks": [{**base, "picks": [0, 5]}, {**base, "picks": [5, 5]}, {**base, "picks": list(range(1, 12))}, {**base, "picks": "1,2"}],
        "bad_stake": [{**base, "stake": 1.5}, {**base, "stake": -3}, {**base, "stake": "100"}],
        "stake_too_low": [{**base, "stake": 0}],
        "stake_too_high": [{**base, "stake": 10_001}],
        "currency_not_offered": [{**base, "currency": "USD"}],
        "round_closed": [{**base, "round_id": f"{harness.table.table_id}-1"}],
        "insufficient_funds": [{**base, "stake": 10_000, "player_id": "broke"}],
    }
    await harness.engine.submit([Command(CommandKind.OPEN, OPERATOR, "broke", "EUR")])
    before = await harness.balance("p0")
    for code, requests in cases.items():
        for answer in await runner.place(requests):
            assert answer["status"] == "rejected" and answer["code"] == code, (code, answer)
    assert await harness.balance("p0") == before
    # a bet and its rollback while open; the rollback refuses once betting closed
    [placed] = await runner.place([base])
    rolled = await runner.rollback(placed["ticket_id"])
    assert rolled["status"] == "rolled_back" and await harness.balance("p0") == before
    [late] = await runner.place([base])
    await harness.wait_phase(rid, {"closed", "drawn", "settled", "published", "revealed"})
    from actors.errors import BetRefusedError

    with pytest.raises(BetRefusedError):
        await runner.rollback(late["ticket_id"])
    assert await harness.wait_phase(rid, {"revealed", "voided"}) == "revealed"
    await runner.stop()
    assert harness.store is not None
    assert (await harness.store.ticket(placed["ticket_id"]) or {})["state"] == "rolled_back"
    assert (await harness.store.ticket(late["ticket_id"]) or {})["state"] == "settled"
    await _ledger_ok(harness.url)


@pytest.mark.parametrize("phase", ["created", "open", "closed", "drawn", "settled", "published"])
async def test_scheduler_killed_at_every_phase_resumes_and_pays_once(harness: Harness, phase: str, paytables: PaytableSet) -> None:
    runner = await harness.runner()
    rid = await runner.create_next()
    assert rid is not None
    placed: list[dict[str, Any]] = []
    if phase != "created":
        await harness.wait_open(runner, rid)
        placed = await runner.place(_bets())
        assert all(a["status"] == "placed" for a in placed)
    await harness.wait_phase(rid, {phase})
    await runner.stop()  # the crash: every task of this incarnation is gone
    assert harness.store is not None
    stored = await harness.store.get_round(rid)
    assert stored is not None
    numbers_before = stored.numbers

    revived = await harness.runner()
    final = await harness.wait_phase(rid, {"revealed", "voided"}, within=30)
    await revived.wait_idle()
    await revived.stop()
    record = await harness.store.get_round(rid)
    assert record is not None
    if phase in ("created", "open"):
        assert final in ("revealed", "voided")
    else:
        assert final == "revealed", "a round killed after close must be drawn and settled"
    if numbers_before is not None:
        assert record.numbers == numbers_before, "the outcome is fixed by the committed seed and salt"
    states = {(await harness.store.ticket(a["ticket_id"]) or {})["state"] for a in placed}
    assert states <= ({"settled"} if final == "revealed" else {"refunded"})
    if final == "revealed" and placed:
        await _expect_paid_exactly(harness, rid, paytables)
    wins = [c for c in harness.commands if c.kind is CommandKind.SETTLE]
    # retried settlement commands are identical (same key, same content): answered, not re-paid
    assert len({(c.player_id, c.idempotency_key, c.request_hash()) for c in wins}) == len({(c.player_id, c.idempotency_key) for c in wins})
    await _ledger_ok(harness.url)


async def test_crash_midway_through_settlement_pays_each_ticket_once(harness: Harness, paytables: PaytableSet) -> None:
    crashed = asyncio.Event()

    async def dies_halfway(commands: list[Command]) -> list[Any]:
        if commands and commands[0].kind is CommandKind.SETTLE and not crashed.is_set():
            half = commands[: len(commands) // 2]
            await harness.execute(half)  # these accounts are paid ...
            crashed.set()
            raise asyncio.CancelledError  # ... and the process dies before the rest
        return await harness.execute(commands)

    runner = await harness.runner(execute=dies_halfway)
    rid = await runner.create_next()
    assert rid is not None
    await harness.wait_open(runner, rid)
    placed = await runner.place(_bets())
    await asyncio.wait_for(crashed.wait(), 20)
    await runner.stop()
    revived = await harness.runner()
    assert await harness.wait_phase(rid, {"revealed", "voided"}, within=30) == "revealed"
    await revived.stop()
    await _expect_paid_exactly(harness, rid, paytables)
    assert harness.store is not None
    paid = {p: 0 for p in PLAYERS}
    staked = {p: 0 for p in PLAYERS}
    for answer in placed:
        stored = await harness.store.ticket(answer["ticket_id"])
        assert stored is not None
        paid[stored["player_id"]] += stored["payout"]
        staked[stored["player_id"]] += stored["stake"]
    for player in PLAYERS:
        assert await harness.balance(player) == FUNDS - staked[player] + paid[player]
    await _ledger_ok(harness.url)


async def test_ticket_cut_off_between_row_and_debit_is_refunded_once(harness: Harness) -> None:
    runner = await harness.runner()
    rid = await runner.create_next()
    assert rid is not None
    await harness.wait_open(runner, rid)
    assert harness.store is not None
    from storage.rounds import TicketRow

    debited = TicketRow("cut-debited-" + uuid.uuid4().hex[:6], rid, OPERATOR, "p1", "EUR", (1, 2), 500, "pending")
    never = TicketRow("cut-never-" + uuid.uuid4().hex[:6], rid, OPERATOR, "p2", "EUR", (3, 4), 700, "pending")
    await harness.store.insert_pending(harness.table.table_id, [debited, never], "standard")
    p1, p2 = await harness.balance("p1"), await harness.balance("p2")
    [bet] = await harness.engine.submit(
        [Command(CommandKind.BET, OPERATOR, "p1", "EUR", idempotency_key=debited.bet_key, amount=500, round_ref=rid)]
    )
    assert bet.ok and await harness.balance("p1") == p1 - 500
    assert await harness.wait_phase(rid, {"revealed", "voided"}) == "revealed"
    await runner.stop()
    assert await harness.balance("p1") == p1 and await harness.balance("p2") == p2
    assert (await harness.store.ticket(debited.ticket_id) or {})["state"] == "refunded"
    assert (await harness.store.ticket(never.ticket_id) or {})["state"] == "refunded"
    # the bet that never arrived was tombstoned: arriving now, it is refused, not debited
    [late] = await harness.engine.submit(
        [Command(CommandKind.BET, OPERATOR, "p2", "EUR", idempotency_key=never.bet_key, amount=700, round_ref=rid)]
    )
    assert late.code is ResultCode.ROLLED_BACK and await harness.balance("p2") == p2
    await _ledger_ok(harness.url)


async def test_unreadable_seed_voids_refunds_and_disables_the_table(harness: Harness) -> None:
    runner = await harness.runner()
    rid = await runner.create_next()
    assert rid is not None
    await harness.wait_open(runner, rid)
    placed = await runner.place(_bets())
    before = {p: await harness.balance(p) for p in PLAYERS}
    await runner.stop()
    # the seed key is lost: this incarnation cannot open the sealed seed
    revived = await harness.runner(key=generate_key_hex())
    assert await harness.wait_phase(rid, {"revealed", "voided"}, within=30) == "voided"
    await revived.wait_idle()
    assert not revived.enabled
    assert (await revived.place(_bets()))[0]["code"] == "table_disabled"
    await revived.stop()
    assert harness.store is not None
    for answer in placed:
        assert (await harness.store.ticket(answer["ticket_id"]) or {})["state"] == "refunded"
    staked = {p: sum(b["stake"] for b in _bets() if b["player_id"] == p) for p in PLAYERS}
    for player in PLAYERS:
        assert await harness.balance(player) == before[player] + staked[player]
    kinds = {e["kind"] for e in await harness.store.events(harness.table.table_id)} | {
        e["kind"] for e in await harness.store.events(rid)
    }
    assert {"table_disabled", "round_voided"} <= kinds
    enabled, reason = await harness.store.ensure_table(harness.table.table_id, harness.table.to_mapping())
    assert not enabled and reason and "could not complete" in reason
    await _ledger_ok(harness.url)


class _RevealNeverAnswers:
    """The notary, except that a reveal never comes back: its round stays published."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def commit(self, round_id: str, commitment_hex: str) -> dict[str, Any]:
        return await self.inner.commit(round_id, commitment_hex)

    async def reveal(self, round_id: str, seed_hex: str) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def salt_after(self, unix_seconds: float, wait_s: float) -> dict[str, Any]:
        return await self.inner.salt_after(unix_seconds, wait_s)

    async def chain_id(self) -> int | None:
        return await self.inner.chain_id()


async def test_unreadable_seed_after_settlement_disables_the_table_without_voiding(harness: Harness) -> None:
    runner = await harness.runner(notary=_RevealNeverAnswers(harness.notary))
    rid = await runner.create_next()
    assert rid is not None
    await harness.wait_open(runner, rid)
    placed = await runner.place(_bets())
    assert all(a["status"] == "placed" for a in placed), placed
    await harness.wait_phase(rid, {"published"}, within=30)
    await runner.stop()
    assert harness.store is not None
    balances = {p: await harness.balance(p) for p in PLAYERS}
    sent_before = len(harness.commands)

    # the seed key is lost after the wins were paid: the reveal cannot happen
    revived = await harness.runner(key=generate_key_hex())
    resumed = list(revived._rounds.values())
    assert len(resumed) == 1
    # the round's task ends by itself and without an error (gather re-raises one)
    await asyncio.wait_for(asyncio.gather(*resumed), 30)
    assert not revived.enabled
    assert rid in (revived.status()["disabled_reason"] or "")
    assert (await revived.place(_bets()))[0]["code"] == "table_disabled"
    await revived.stop()

    record = await harness.store.get_round(rid)
    assert record is not None
    assert record.phase is RoundPhase.PUBLISHED and record.void_reason is None
    assert [t for _, t in await harness.store.transitions(rid)][-1] == "published"
    for answer in placed:
        assert (await harness.store.ticket(answer["ticket_id"]) or {})["state"] == "settled"
    assert [c for c in harness.commands[sent_before:] if c.kind is CommandKind.ROLLBACK] == []
    for player in PLAYERS:
        assert await harness.balance(player) == balances[player]
    table_events = await harness.store.events(harness.table.table_id)
    disabled = [e for e in table_events if e["kind"] == "table_disabled"]
    assert disabled and rid in disabled[0]["detail"]["reason"]
    assert "round_voided" not in {e["kind"] for e in table_events}
    [unrevealable] = [e for e in table_events if e["kind"] == "round_unrevealable"]
    assert unrevealable["subject"] == rid and unrevealable["detail"]["phase"] == "published"
    enabled, reason = await harness.store.ensure_table(harness.table.table_id, harness.table.to_mapping())
    assert not enabled and reason and rid in reason
    await _ledger_ok(harness.url)


async def test_round_without_commitment_in_time_never_opens(harness: Harness) -> None:
    class StuckNotary:
        async def commit(self, round_id: str, commitment_hex: str) -> dict[str, Any]:
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        async def reveal(self, round_id: str, seed_hex: str) -> dict[str, Any]:
            raise AssertionError("a skipped round reveals nothing")

        async def salt_after(self, unix_seconds: float, wait_s: float) -> dict[str, Any]:
            raise AssertionError("a skipped round draws nothing")

        async def chain_id(self) -> int | None:
            return None

    runner = await harness.runner(notary=StuckNotary())
    rid = await runner.create_next()
    assert rid is not None
    assert await harness.wait_phase(rid, {"open", "voided"}) == "voided"
    await runner.stop()
    assert harness.store is not None
    assert [t for _, t in await harness.store.transitions(rid)] == ["created", "voided"]
    assert "round_skipped" in {e["kind"] for e in await harness.store.events(rid)}
    assert runner.stats.rounds_skipped == 1


async def test_round_cap_pro_rates_winners(harness: Harness, paytables: PaytableSet) -> None:
    harness.table = _table(round_liability_cap_minor=50)
    runner = await harness.runner()
    rid = await runner.create_next()
    assert rid is not None
    await harness.wait_open(runner, rid)
    # one-spot tickets on every number: 20 of them hit and each would win 3.8x
    requests = [
        {"operator_id": OPERATOR, "player_id": PLAYERS[n % len(PLAYERS)], "currency": "EUR", "picks": [n], "stake": 100}
        for n in range(1, 81)
    ]
    assert all(a["status"] == "placed" for a in await runner.place(requests))
    assert await harness.wait_phase(rid, {"revealed", "voided"}) == "revealed"
    await runner.stop()
    assert harness.store is not None
    record = await harness.store.get_round(rid)
    assert record is not None and record.settlement is not None
    assert record.settlement["capped"] is True
    assert int(record.settlement["gross"]) == 20 * 380
    assert int(record.settlement["paid"]) <= 50
    await _expect_paid_exactly(harness, rid, paytables)
    await _ledger_ok(harness.url)


def test_shipped_paytables_offer_1_to_10_spots(paytables: PaytableSet) -> None:
    assert paytables.spots == tuple(range(1, 11))
    for spots in paytables.spots:
        assert 0.90 <= float(paytables.for_spots(spots).rtp()) <= 0.96




class _FlakyNotary:
    """The notary as a scheduler sees it while the actor is dead and being restarted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down_until = 0.0
        self.refused = 0

    def _check(self) -> None:
        from actors.errors import NotaryUnavailableError

        if asyncio.get_running_loop().time() < self.down_until:
            self.refused += 1
            raise NotaryUnavailableError("notary restarting")

    async def commit(self, round_id: str, commitment_hex: str) -> dict[str, Any]:
        self._check()
        return await self.inner.commit(round_id, commitment_hex)

    async def reveal(self, round_id: str, seed_hex: str) -> dict[str, Any]:
        self._check()
        return await self.inner.reveal(round_id, seed_hex)

    async def salt_after(self, unix_seconds: float, wait_s: float) -> dict[str, Any]:
        self._check()
        return await self.inner.salt_after(unix_seconds, wait_s)

    async def chain_id(self) -> int | None:
        return await self.inner.chain_id()


@pytest.mark.parametrize("phase", ["created", "open", "closed", "drawn", "settled", "published"])
@pytest.mark.parametrize("target", ["notary", "shard"])
async def test_notary_or_shard_lost_at_every_phase(
    harness: Harness, phase: str, target: str, make_engine: Any, paytables: PaytableSet
) -> None:
    notary = _FlakyNotary(harness.notary)
    runner = await harness.runner(notary=notary)
    rid = await runner.create_next()
    assert rid is not None
    placed: list[dict[str, Any]] = []
    if phase != "created":
        await harness.wait_open(runner, rid)
        placed = await runner.place(_bets())
    await harness.wait_phase(rid, {phase})
    if target == "notary":
        notary.down_until = asyncio.get_running_loop().time() + 1.5
    else:
        # The shard dies: what it had in flight is answered "unavailable"; a new
        # incarnation claims the partitions (bumping their epochs) a moment later.
        await harness.engine.stop(drain=False)
        await asyncio.sleep(0.5)
        harness.engine = await make_engine(owner="restarted")
    final = await harness.wait_phase(rid, {"revealed", "voided"}, within=30)
    await runner.wait_idle()
    await runner.stop()
    if phase not in ("created", "open"):
        assert final == "revealed"
    assert harness.store is not None
    for answer in placed:
        if answer["status"] == "placed":
            state = (await harness.store.ticket(answer["ticket_id"]) or {})["state"]
            assert state == ("settled" if final == "revealed" else "refunded")
    if final == "revealed":
        await _expect_paid_exactly(harness, rid, paytables)
    await _ledger_ok(harness.url)


@pytest.mark.parametrize(
    ("sizes", "target", "expected"),
    [
        ([], 10, []),
        ([3], 10, [(0, 1)]),
        ([5, 5, 5, 5], 10, [(0, 2), (2, 4)]),
        ([5, 5, 5], 10, [(0, 2), (2, 3)]),
        ([12, 1, 1], 10, [(0, 1), (1, 3)]),
    ],
)
def test_settlement_waves_cover_every_group_once_in_order(
    sizes: list[int], target: int, expected: list[tuple[int, int]]
) -> None:
    from actors.table_runner import _waves

    waves = _waves(sizes, target)
    assert waves == expected
    covered = [i for first, last in waves for i in range(first, last)]
    assert covered == list(range(len(sizes)))
