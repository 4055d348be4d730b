"""The inside of a round scheduler: one Keno table's rounds, phase by phase.

Every round runs as its own task through the lifecycle (``core.rounds.RoundPhase``)::

    created ──commitment on chain──▶ open ──close time──▶ closed ──salt from chain──▶ drawn
       │                               │                   │                           │
       └──────────── voided ◀──────────┴───────────────────┘      settled ◀───────────┘
                                                                    │
                                          revealed ◀── published ◀──┘

Each move is persisted before it takes effect (``storage.rounds``), and every step is
written so that doing it again gives the same result: the draw depends only on the
committed seed, the public salt (the first block at or after the close) and the nonce;
settlement commands carry per-round idempotency keys and are rebuilt from the stored
tickets. A restarted runner therefore just drives every unfinished round from the phase
Postgres says it is in.

A round whose sealed server seed cannot be opened (the seed key is lost) is voided and
refunded, and the table disabled, while it still can be; once settled its wins are paid,
so it is left in its phase and only the table is disabled (once an operator restores the
key, a restarted runner reveals it).

Tickets are taken and cancelled by the table's ``actors.ticket_desk.TicketDesk``, which
sees the rounds this runner holds open. This module is plain asyncio: the notary and the
wallet are injected, so it is tested without Ray; ``actors.round_scheduler`` wraps it in
a Ray actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from actors.errors import NotaryUnavailableError
from actors.metrics import observe_settlement, record_round_phase
from actors.ticket_desk import OpenRound, TicketDesk
from core.errors import LifecycleError, RgsError, SeedUnreadableError
from core.fairness import commitment, draw
from core.keno import PaytableSet
from core.rounds import RoundPhase, round_id
from core.seeds import SeedVault, new_server_seed
from core.settlement import TicketBook, settle
from core.tables import TableConfig
from core.wallet import Command, CommandKind, Result, ResultCode, split_skipped
from storage.errors import StorageError
from storage.rounds import RoundRecord, RoundStore, TicketRow

__all__ = ["Notary", "RunnerStats", "TableRunner", "now_ms"]

log = logging.getLogger("rgs.rounds")

Execute = Callable[[list[Command]], Awaitable[list[Result]]]
Listener = Callable[[dict[str, Any]], None]

_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)
_MAX_TICKETS_PER_CALL = 10_000
_WAVE_TICKETS = 20_000  # settlement: tickets credited before their rows are written


def _waves(sizes: Sequence[int], target: int) -> list[tuple[int, int]]:
    """Cut consecutive groups into [first, last) runs of about ``target`` items each."""
    waves = []
    first = total = 0
    for index, size in enumerate(sizes):
        total += size
        if total >= target:
            waves.append((first, index + 1))
            first, total = index + 1, 0
    if first < len(sizes):
        waves.append((first, len(sizes)))
    return waves


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Notary(Protocol):
    """What a runner needs from the chain notary (``actors.chain_notary``)."""

    async def commit(self, round_id: str, commitment_hex: str) -> dict[str, Any]: ...

    async def reveal(self, round_id: str, seed_hex: str) -> dict[str, Any]: ...

    async def salt_after(self, unix_seconds: float, wait_s: float) -> dict[str, Any]: ...

    async def chain_id(self) -> int | None: ...


@dataclass
class RunnerStats:
    rounds_created: int = 0
    rounds_revealed: int = 0
    rounds_voided: int = 0
    rounds_skipped: int = 0
    tickets_placed: int = 0
    tickets_rejected: int = 0
    last_settle_ms: float = 0.0
    last_settle_tickets: int = 0
    phase_errors: int = 0


@dataclass(frozen=True, slots=True)
class _PreparedTickets:
    """A closed round's final ticket set, made ready for settlement while the salt block
    is awaited, so that once the numbers are drawn only the payouts remain to compute.

    ``groups[k]`` are the indexes of the tickets that the SETTLE command of account
    ``accounts[k]`` (operator, player, currency, idempotency-key suffix) pays, split past
    ``_MAX_TICKETS_PER_CALL``; ``bet_keys[k]`` are those tickets' bet keys.
    """

    tickets: list[TicketRow]
    book: TicketBook | None
    accounts: list[tuple[str, str, str, str]]
    groups: list[list[int]]
    bet_keys: list[tuple[str, ...]]

    @classmethod
    def of(cls, tickets: list[TicketRow]) -> _PreparedTickets:
        book = (
            TicketBook.from_picks([t.picks for t in tickets], [t.stake for t in tickets])
            if tickets
            else None
        )
        by_account: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for index, ticket in enumerate(tickets):
            by_account[(ticket.operator_id, ticket.player_id, ticket.currency)].append(index)
        accounts, groups, bet_keys = [], [], []
        for (operator_id, player_id, currency), indexes in by_account.items():
            for start in range(0, len(indexes), _MAX_TICKETS_PER_CALL):
                part = indexes[start : start + _MAX_TICKETS_PER_CALL]
                suffix = "" if start == 0 else f":{start // _MAX_TICKETS_PER_CALL}"
                accounts.append((operator_id, player_id, currency, suffix))
                groups.append(part)
                bet_keys.append(tuple(tickets[i].bet_key for i in part))
        return cls(tickets, book, accounts, groups, bet_keys)


class TableRunner:
    def __init__(
        self,
        table: TableConfig,
        paytables: PaytableSet,
        store: RoundStore,
        notary: Notary,
        execute: Execute,
        vault: SeedVault,
        *,
        salt_wait_s: float = 30.0,
    ) -> None:
        self.table = table
        self.paytables = paytables
        self._store = store
        self._notary = notary
        self._execute = execute
        self._vault = vault
        self._salt_wait_s = salt_wait_s
        self._schedule = table.schedule
        self._open: dict[str, OpenRound] = {}
        self._prefetched: dict[str, asyncio.Future[_PreparedTickets]] = {}
        self._rounds: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._last_slot = -1
        self._draining = False
        self._enabled = True
        self._disabled_reason: str | None = None
        self._listeners: list[Listener] = []
        self._chain_id: int | None = None
        self.stats = RunnerStats()
        self.phases: dict[str, str] = {}  # round id -> phase, for status
        self._desk = TicketDesk(
            table, paytables, store, execute, self._open, lambda: (self._enabled, self._disabled_reason),
            self.stats, now_ms,
        )

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, *, run_schedule: bool = True) -> None:
        self._enabled, self._disabled_reason = await self._store.ensure_table(
            self.table.table_id, self.table.to_mapping()
        )
        for record in await self._store.unfinished_rounds(self.table.table_id):
            self._last_slot = max(self._last_slot, record.nonce)
            self._spawn(record.round_id, self._drive(record))
        if run_schedule:
            self._loop_task = asyncio.create_task(
                self._schedule_forever(), name=f"schedule-{self.table.table_id}"
            )

    async def stop(self) -> None:
        tasks = [
            t for t in (self._loop_task, self._desk.placer, *self._rounds.values()) if t is not None
        ]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def drain(self) -> None:
        """Create no more rounds; return once every round started so far has finished."""
        self._draining = True
        await self.wait_idle()

    async def wait_idle(self) -> None:
        """Wait for every round task started so far (tests, shutdown)."""
        while self._rounds:
            await asyncio.gather(*list(self._rounds.values()), return_exceptions=True)

    def subscribe(self, listener: Listener) -> None:
        """Called with a small event dict on every phase change (feeds, metrics)."""
        self._listeners.append(listener)

    @property
    def enabled(self) -> bool:
        return self._enabled

    def status(self) -> dict[str, Any]:
        return {
            "table_id": self.table.table_id,
            "enabled": self._enabled,
            "disabled_reason": self._disabled_reason,
            "rounds": dict(sorted(self.phases.items())),
            "open_round": next(iter(self._open), None),
            "stats": vars(self.stats).copy(),
        }

    def _spawn(self, rid: str, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._rounds[rid] = task

        def done(t: asyncio.Task[None], rid: str = rid) -> None:
            self._rounds.pop(rid, None)
            if not t.cancelled() and t.exception() is not None:
                log.error("round %s task failed", rid, exc_info=t.exception())

        task.add_done_callback(done)

    # -- the schedule ---------------------------------------------------------------------

    async def _schedule_forever(self) -> None:
        tick = min(self.table.period_ms / 4000, 0.25)
        while True:
            if self._enabled and not self._draining:
                try:
                    await self.create_next()
                except (StorageError, RgsError) as exc:
                    log.warning(
                        "table %s: cannot create the next round yet: %s", self.table.table_id, exc
                    )
            await asyncio.sleep(tick)

    async def create_next(self, now: int | None = None) -> str | None:
        """Create the next round due (if not created yet) and start driving it."""
        now = now_ms() if now is None else now
        slot = self._schedule.next_slot(now, self.table.commit_lead_ms)
        if slot <= self._last_slot or round_id(self.table.table_id, slot) in self._rounds:
            return None
        self._last_slot = slot
        record = await self.create_round(slot)
        self._spawn(record.round_id, self._drive(record))
        return record.round_id

    async def create_round(self, slot: int) -> RoundRecord:
        times = self._schedule.times(slot)
        rid = round_id(self.table.table_id, slot)
        seed = new_server_seed()
        record = await self._store.create_round(
            round_id=rid,
            table_id=self.table.table_id,
            nonce=slot,
            opens_at=times.opens_at,
            closes_at=times.closes_at,
            draws_at=times.draws_at,
            derivation=self.table.derivation,
            paytable_set=self.table.paytable_set,
            seed_ciphertext=self._vault.seal(seed, rid),
            commitment=commitment(seed),
        )
        self.stats.rounds_created += 1
        self._changed(record.round_id, RoundPhase.CREATED)
        return record

    # -- driving one round ----------------------------------------------------------------

    async def _drive(self, record: RoundRecord) -> None:
        rid = record.round_id
        attempt = 0
        current: RoundRecord | None = record
        while current is not None and not current.phase.terminal:
            self.phases[rid] = current.phase.value
            try:
                if not await self._step_unless_seed_lost(current):
                    break
                attempt = 0
            except asyncio.CancelledError:
                raise
            except (StorageError, NotaryUnavailableError, _Retry, LifecycleError) as exc:
                # Transient: Postgres, the chain or the shards are away. The round keeps
                # its phase and is driven again; its deadlines decide what happens then.
                self.stats.phase_errors += 1
                delay = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
                attempt += 1
                log.warning(
                    "round %s (%s): %s; retrying in %.1fs", rid, current.phase.value, exc, delay
                )
                await asyncio.sleep(delay)
            current = await self._reload(rid)
        self._drop_prefetch(rid)
        if current is not None:
            self.phases[rid] = current.phase.value
            self._forget_later(rid)

    def _drop_prefetch(self, rid: str) -> None:
        task = self._prefetched.pop(rid, None)
        if task is not None and not task.cancel() and not task.cancelled():
            task.exception()  # retrieved, so a failed read is not reported as lost

    def _forget_later(self, rid: str) -> None:
        # keep the last few finished rounds visible in status
        finished = [r for r, p in self.phases.items() if p in ("revealed", "voided")]
        for old in finished[:-5]:
            self.phases.pop(old, None)

    async def _reload(self, rid: str) -> RoundRecord | None:
        for delay in _RETRY_S:
            try:
                return await self._store.get_round(rid)
            except StorageError as exc:
                log.warning("round %s: cannot read its state: %s", rid, exc)
                await asyncio.sleep(delay)
        return await self._store.get_round(rid)

    async def _step_unless_seed_lost(self, record: RoundRecord) -> bool:
        """One step; False when this runner must stop driving the round (its seed is lost
        and it can no longer be voided). Errors while voiding or disabling propagate, so
        the caller retries them like any other step."""
        try:
            await self._step(record)
        except SeedUnreadableError as exc:
            reason = f"server seed unreadable: {exc}"
            if record.phase.can_go(RoundPhase.VOIDED):
                await self._cannot_complete(record, reason)
            else:
                # Left in its phase: a runner that can read the seed again resumes it.
                await self._cannot_reveal(record, reason)
                return False
        return True

    async def _step(self, record: RoundRecord) -> None:
        phase = record.phase
        if phase is RoundPhase.CREATED:
            await self._commit_and_open(record)
        elif phase is RoundPhase.OPEN:
            await self._take_bets_then_close(record)
        elif phase is RoundPhase.CLOSED:
            await self._draw(record)
        elif phase is RoundPhase.DRAWN:
            await self._settle(record)
        elif phase is RoundPhase.SETTLED:
            await self._transition(record, RoundPhase.PUBLISHED)
        elif phase is RoundPhase.PUBLISHED:
            await self._reveal(record)

    async def _transition(
        self,
        record: RoundRecord,
        to: RoundPhase,
        detail: dict[str, Any] | None = None,
        **columns: Any,
    ) -> None:
        await self._store.transition(record.round_id, record.phase, to, detail, **columns)
        public = {k: v for k, v in columns.items() if k in _PUBLIC_EVENT_COLUMNS}
        if to is RoundPhase.OPEN:
            public.update(
                opens_at=record.opens_at, closes_at=record.closes_at, commitment=record.commitment
            )
        self._changed(record.round_id, to, public)

    def _changed(self, rid: str, phase: RoundPhase, extra: dict[str, Any] | None = None) -> None:
        self.phases[rid] = phase.value
        record_round_phase(self.table.table_id, phase.value)
        if phase is RoundPhase.REVEALED:
            self.stats.rounds_revealed += 1
        elif phase is RoundPhase.VOIDED:
            self.stats.rounds_voided += 1
        event = {
            "table_id": self.table.table_id,
            "round_id": rid,
            "phase": phase.value,
            "at": now_ms(),
            **(extra or {}),
        }
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a feed must not stop a round
                log.exception("round listener failed")

    async def _commit_and_open(self, record: RoundRecord) -> None:
        rid = record.round_id
        if record.commit_tx is None:
            remaining_s = (record.opens_at - now_ms()) / 1000
            if remaining_s <= 0:
                await self._skip(
                    record, "its commitment was not on chain before it was due to open"
                )
                return
            try:
                proof = await asyncio.wait_for(
                    self._notary.commit(rid, record.commitment), remaining_s
                )
                if self._chain_id is None:
                    self._chain_id = await self._notary.chain_id()
            except (TimeoutError, NotaryUnavailableError) as exc:
                await self._skip(
                    record, f"its commitment was not on chain in time ({type(exc).__name__})"
                )
                return
            await self._store.record_commitment(rid, proof, self._chain_id)
        # Never open a round whose betting window is (nearly) over: void it instead.
        if now_ms() >= record.closes_at - min(500, self.table.period_ms // 10):
            await self._void(record, "interrupted before betting opened; its window passed")
            return
        await _sleep_until(record.opens_at)
        await self._transition(record, RoundPhase.OPEN)

    async def _skip(self, record: RoundRecord, why: str) -> None:
        self.stats.rounds_skipped += 1
        log.warning("round %s skipped: %s", record.round_id, why)
        await self._store.log_event("round_skipped", record.round_id, {"reason": why})
        await self._void(record, f"skipped: {why}")

    async def _take_bets_then_close(self, record: RoundRecord) -> None:
        state = self._open.setdefault(record.round_id, OpenRound(record))
        await _sleep_until(record.closes_at)
        state.accepting = False
        if state.in_flight:
            state.idle.clear()
            await state.idle.wait()
        await self._transition(record, RoundPhase.CLOSED)
        self._open.pop(record.round_id, None)

    async def _draw(self, record: RoundRecord) -> None:
        # A ticket still pending was cut off between its row and its debit by a crash:
        # nobody was told it was placed, so it is refunded (or tombstoned) exactly once.
        pending = await self._store.tickets(record.round_id, ["pending"])
        if pending:
            await self._refund(record, pending, "placement interrupted")
        # The ticket set is final from here on: read it while the salt block is awaited,
        # so settlement starts the moment the numbers are drawn.
        self._drop_prefetch(record.round_id)
        self._prefetched[record.round_id] = asyncio.ensure_future(self._prepare(record.round_id))
        seed = self._vault.open(record.seed_ciphertext, record.round_id)
        try:
            salt = await self._notary.salt_after(record.closes_at / 1000, self._salt_wait_s)
        except TimeoutError as exc:
            raise NotaryUnavailableError(f"no block after the close yet: {exc}") from exc
        numbers = draw(seed, salt["hash"], record.nonce, derivation=record.derivation)
        await self._transition(
            record,
            RoundPhase.DRAWN,
            {"salt_block": salt["block"]},
            client_seed=salt["hash"],
            salt_block=salt["block"],
            numbers=list(numbers),
        )

    async def prefetch_tickets(self, record: RoundRecord) -> int:
        """Read a closed round's tickets ahead of settlement, as the schedule does while it
        waits for the salt block; returns how many (benchmarks and tools)."""
        if record.phase not in (RoundPhase.CLOSED, RoundPhase.DRAWN):
            raise LifecycleError(
                f"round {record.round_id} is {record.phase.value}, not closed or drawn"
            )
        self._drop_prefetch(record.round_id)
        task = asyncio.ensure_future(self._prepare(record.round_id))
        self._prefetched[record.round_id] = task
        return len((await task).tickets)

    async def settle_round(self, record: RoundRecord) -> None:
        """Settle a drawn round now (benchmarks and tools; the schedule does this itself)."""
        if record.phase is not RoundPhase.DRAWN:
            raise LifecycleError(f"round {record.round_id} is {record.phase.value}, not drawn")
        await self._settle(record)

    async def _prepare(self, round_id: str) -> _PreparedTickets:
        # 'settled' rows are included so a replay after a crash rebuilds identical commands
        return _PreparedTickets.of(await self._store.tickets(round_id, ["placed", "settled"]))

    async def _round_tickets(self, round_id: str) -> _PreparedTickets:
        prefetched = self._prefetched.pop(round_id, None)
        if prefetched is not None:
            try:
                return await prefetched
            except StorageError:
                pass  # read again below: the error, if it persists, surfaces from there
        return await self._prepare(round_id)

    async def _settle(self, record: RoundRecord) -> None:
        began = time.perf_counter()
        assert record.numbers is not None
        prepared = await self._round_tickets(record.round_id)
        tickets = prepared.tickets
        summary: dict[str, Any] = {
            "tickets": len(tickets),
            "gross": "0",
            "paid": "0",
            "factor": "1",
            "capped": False,
        }
        if prepared.book is not None:
            result = settle(
                prepared.book,
                record.numbers,
                self.paytables,
                max_win_minor=self.table.max_win_minor,
                round_cap_minor=self.table.round_liability_cap_minor,
            )
            payouts = [int(p) for p in result.payouts]
            hits = [int(h) for h in result.hits]
            await self._pay(record, prepared, payouts, hits)
            summary = {
                "tickets": len(tickets),
                "winners": sum(1 for p in payouts if p > 0),
                "gross": str(result.gross_total),
                "paid": str(result.paid_total),
                "factor": f"{result.factor.numerator}/{result.factor.denominator}",
                "capped": bool(result.capped),
            }
        await self._transition(record, RoundPhase.SETTLED, summary, settlement=summary)
        self.stats.last_settle_ms = (time.perf_counter() - began) * 1000
        observe_settlement(self.table.table_id, self.stats.last_settle_ms / 1000)
        self.stats.last_settle_tickets = len(tickets)

    async def _pay(
        self,
        record: RoundRecord,
        prepared: _PreparedTickets,
        payouts: Sequence[int],
        hits: Sequence[int],
    ) -> None:
        """Credit the wins, then write each ticket's outcome; both idempotent per round.

        Accounts go in waves: while one wave's ticket rows are written, the next wave is
        being journaled by the shards, so PostgreSQL's two kinds of work overlap instead of
        adding up (a round of 100,000 tickets has a two-second budget).
        """
        tickets = prepared.tickets
        commands = self._settlement_commands(record, prepared, payouts)
        groups = prepared.groups
        waves = _waves([len(g) for g in groups], _WAVE_TICKETS)
        # Every wave is sent at once (the shards keep their pipelines full); the router
        # answers them in order, and each wave's rows are written as soon as it is paid.
        credits = [asyncio.ensure_future(self._execute(commands[a:b])) for a, b in waves]
        writes: list[asyncio.Future[None]] = []
        failed = True
        try:
            for (first, last), credit in zip(waves, credits, strict=True):
                results = await credit
                writes.append(
                    asyncio.ensure_future(
                        self._record_wave(tickets, hits, payouts, groups[first:last], results)
                    )
                )
            failed = False
        finally:
            # Whatever happened, nothing is left running: credits and writes are idempotent
            # and a failed round is settled again from the start.
            await asyncio.gather(*credits, return_exceptions=True)
            outcomes = await asyncio.gather(*writes, return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        if errors and not failed:
            raise errors[0]

    def _settlement_commands(
        self, record: RoundRecord, prepared: _PreparedTickets, payouts: Sequence[int]
    ) -> list[Command]:
        """One SETTLE command per group of :attr:`_PreparedTickets.groups`."""
        commands = []
        game_ref = f"keno:{self.table.table_id}"
        for (operator_id, player_id, currency, suffix), part, keys in zip(
            prepared.accounts, prepared.groups, prepared.bet_keys, strict=True
        ):
            amounts = [payouts[i] for i in part]
            commands.append(
                Command(
                    CommandKind.SETTLE,
                    operator_id,
                    player_id,
                    currency,
                    idempotency_key=f"settle:{record.round_id}{suffix}",
                    amount=sum(amounts),
                    round_ref=record.round_id,
                    game_ref=game_ref,
                    payouts=tuple(zip(keys, amounts, strict=True)),
                )
            )
        return commands

    async def _record_wave(
        self,
        tickets: Sequence[TicketRow],
        hits: Sequence[int],
        payouts: Sequence[int],
        groups: Sequence[list[int]],
        results: Sequence[Result],
    ) -> None:
        failed = [r for r in results if r.code in (ResultCode.BUSY, ResultCode.UNAVAILABLE)]
        if failed:
            raise _Retry(
                f"{len(failed)} settlement command(s) not applied yet: {failed[0].message}"
            )
        paid: list[tuple[int, Result]] = []
        unpaid_tickets: list[str] = []
        for part, result in zip(groups, results, strict=True):
            if not result.ok:
                # The account refused as a whole (unknown account, currency): its tickets
                # cannot be paid; leave them for an operator and say so loudly.
                raise _Retry(
                    f"settlement refused for an account: {result.code.value} {result.message}"
                )
            # A bet already won was paid by an earlier settlement of this round: it counts
            # as settled. Only bets rolled back (or never placed) are left unpaid.
            unpaid = {
                key
                for key, code in map(split_skipped, result.skipped)
                if code is not ResultCode.ALREADY_RESOLVED
            }
            for i in part:
                if tickets[i].bet_key in unpaid:
                    unpaid_tickets.append(tickets[i].ticket_id)
                else:
                    paid.append((i, result))
        await self._store.record_results(
            [tickets[i].ticket_id for i, _ in paid],
            [hits[i] for i, _ in paid],
            [payouts[i] for i, _ in paid],
            [r.balance for _, r in paid],
            [r.tx_id for _, r in paid],
        )
        if unpaid_tickets:
            await self._store.mark_refunded(sorted(unpaid_tickets), state="rolled_back")

    async def _reveal(self, record: RoundRecord) -> None:
        seed = self._vault.open(record.seed_ciphertext, record.round_id)
        proof = await self._notary.reveal(record.round_id, seed)
        await self._transition(
            record,
            RoundPhase.REVEALED,
            None,
            revealed_seed=seed,
            reveal_tx=proof["tx"],
            reveal_block=proof["block"],
            reveal_root=proof["root"],
            reveal_proof=proof,
        )

    # -- voiding --------------------------------------------------------------------------

    async def _void(self, record: RoundRecord, reason: str) -> None:
        self._open.pop(record.round_id, None)
        tickets = await self._store.tickets(record.round_id, ["pending", "placed"])
        if tickets:
            await self._refund(record, tickets, reason)
        await self._transition(record, RoundPhase.VOIDED, {"reason": reason}, void_reason=reason)

    async def _cannot_complete(self, record: RoundRecord, reason: str) -> None:
        """GLI-19 interrupted game that cannot finish: void, refund, disable the table."""
        log.error(
            "round %s cannot complete: %s; voiding and disabling table %s",
            record.round_id,
            reason,
            self.table.table_id,
        )
        await self._void(record, reason)
        await self._disable(f"round {record.round_id} could not complete: {reason}")

    async def _cannot_reveal(self, record: RoundRecord, reason: str) -> None:
        """A settled round whose seed cannot be revealed: its wins are paid, so voiding it
        (refunding the stakes on top) is not allowed; stop the table until an operator
        restores the seed key, after which a restarted runner reveals the round."""
        log.error(
            "round %s (%s) cannot be revealed: %s; disabling table %s, the round is not voided",
            record.round_id,
            record.phase.value,
            reason,
            self.table.table_id,
        )
        await self._store.log_event(
            "round_unrevealable", record.round_id, {"phase": record.phase.value, "reason": reason}
        )
        await self._disable(
            f"round {record.round_id} was settled but cannot be revealed: {reason}"
        )

    async def _disable(self, reason: str) -> None:
        self._enabled = False
        self._disabled_reason = reason
        await self._store.set_table_enabled(self.table.table_id, False, reason)

    async def _refund(self, record: RoundRecord, tickets: Sequence[TicketRow], reason: str) -> None:
        commands = [
            Command(
                CommandKind.ROLLBACK,
                t.operator_id,
                t.player_id,
                t.currency,
                idempotency_key=f"refund:{t.ticket_id}",
                reference=t.bet_key,
                round_ref=record.round_id,
                game_ref=f"keno:{self.table.table_id}",
            )
            for t in tickets
        ]
        results = await self._execute(commands)
        done = [
            t.ticket_id
            for t, r in zip(tickets, results, strict=True)
            if r.ok or r.code is ResultCode.ROLLED_BACK or r.code is ResultCode.UNKNOWN_ACCOUNT
        ]
        if len(done) < len(tickets):
            codes = {r.code.value for r in results if not r.ok}
            raise _Retry(
                f"{len(tickets) - len(done)} refund(s) not applied yet ({', '.join(sorted(codes))})"
            )
        await self._store.mark_refunded(done)
        log.info("round %s: %d ticket(s) refunded (%s)", record.round_id, len(done), reason)

    # -- bets -----------------------------------------------------------------------------

    def current_round(self) -> dict[str, Any] | None:
        return self._desk.current_round()

    async def place(self, requests: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Place Keno tickets in the open round (``actors.ticket_desk``). One answer per
        request, in order."""
        return await self._desk.place(requests)

    async def rollback(self, ticket_id: str) -> dict[str, Any]:
        """Cancel a ticket while its round still takes bets (refund the stake)."""
        return await self._desk.rollback(ticket_id)


# What a phase event may tell the world (the seed only once revealed, which is when it is set).
_PUBLIC_EVENT_COLUMNS = frozenset(
    {"numbers", "client_seed", "salt_block", "settlement", "revealed_seed", "void_reason"}
)


class _Retry(RgsError):
    """A step could not finish yet (shards busy or away); the round is driven again."""


async def _sleep_until(at_ms: int) -> None:
    delay = (at_ms - now_ms()) / 1000
    if delay > 0:
        await asyncio.sleep(delay)
