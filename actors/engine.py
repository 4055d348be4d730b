"""The inside of an account shard: virtual account actors with mailboxes and group commit.

A shard hosts many logical account actors. Each account has a mailbox; its commands are
evaluated strictly one at a time in arrival order. One flusher loop takes the waiting
commands of many accounts, evaluates them against the committed state (each account
seeing the effects of its own earlier commands in the batch), writes the whole batch to
PostgreSQL in one transaction and only then answers. Memory changes only after COMMIT:
if the write fails, every account touched is dropped and reloaded from the database on
its next command, so memory can never run ahead of the journal.

Batching is natural rather than timed: while one batch commits, the next one fills, and
is evaluated too when that needs nothing from the batch in flight (see "the flusher"). An
idle shard commits a lone command at once (lowest latency); a busy one commits up to
``group_commit_max`` commands per transaction (highest throughput), and fewer when they
carry many bets: a settle command closes up to thousands of bets, so a batch also stops at
``group_commit_max_bets`` (every command weighs one plus its payouts), which keeps one
PostgreSQL call, and the latency of everything queued behind it, bounded.

Ownership moves while traffic flows (a live rebalance, ``actors.rebalance``): the shard
giving partitions away stops accepting commands for them at once, answers everything it
had queued or in flight for them (committed or failed, never left in doubt), forgets what
it cached about their accounts, and only then lets go; the new owner claims them, which
bumps their fencing epochs. Callers meanwhile get "not owned here" (UNAVAILABLE), a
retryable answer, and resend under the same keys to wherever the routing map points.

This module is plain asyncio, so it is tested without Ray; ``actors.shard`` wraps it in a
Ray actor. What one batch decides, and how its rows advance after COMMIT, is
``actors.batch_plan``: this module owns the loop, the database and the order of batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from actors.batch_plan import (
    NO_BET,
    BatchPlan,
    Pending,
    VirtualAccount,
    answer,
    bet_key_of,
    cache_entry,
    remember,
)
from actors.errors import RebalanceError
from core.ledger import house_account_for, house_player_id
from core.partitioning import partition_of
from core.wallet import Command, CommandKind, Result, ResultCode
from storage.errors import JournalRejectedError, StaleWriterError, StorageError
from storage.journal import AccountRow, CommitReceipt, Conflicts, Journal, ShardLayout

__all__ = ["EngineSettings", "ShardEngine"]

log = logging.getLogger("rgs.shard")


@dataclass(frozen=True)
class EngineSettings:
    partitions: int
    owned: frozenset[int]  # what the engine owns now: replaced (never mutated) as partitions move
    group_commit_max: int = 500
    # Bets per batch: each command weighs 1 + its payouts (a settle closing 20 tickets
    # weighs 21). Settling 100,000 tickets here, batches of 5,000 to 20,000 bets cost the
    # same in total (~50-100 ms of PostgreSQL each); at 40,000 and more the write's working
    # set outgrows work_mem and every bet gets dearer (one batch of 100,000: 2.5 s).
    group_commit_max_bets: int = 20_000
    mailbox_capacity: int = 1000
    max_queued: int = 200_000
    max_active_accounts: int = 100_000
    idle_passivate_s: float = 300.0


@dataclass(slots=True)
class _Flight:
    """A batch whose write has been sent (``task`` None: nothing to write)."""

    batch: list[tuple[VirtualAccount, Pending]]
    plan: BatchPlan
    task: asyncio.Future[CommitReceipt | Conflicts] | None


class ShardEngine:
    def __init__(self, journal: Journal, settings: EngineSettings) -> None:
        self._journal = journal
        self.settings = settings
        self._epochs: dict[int, int] = {}
        self._accounts: dict[tuple[str, str], VirtualAccount] = {}
        self._house: dict[tuple[str, str], AccountRow] = {}
        self._runnable: OrderedDict[tuple[str, str], VirtualAccount] = OrderedDict()
        self._queued = 0
        self._queued_peak = 0  # most queued at once since the last metrics_snapshot()
        self._wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        # accounts with commands in flight and more waiting, set aside by _take
        self._held: dict[tuple[str, str], VirtualAccount] = {}
        self._fenced: str | None = None
        self._stopping = False
        # Ownership changes and layout reads: their own connection, one at a time, so the
        # flusher's connection only ever carries the hot path.
        self._control: Journal | None = None
        self._control_lock = asyncio.Lock()
        self.stats: dict[str, float] = {
            "batches": 0,
            "commands": 0,
            "commit_seconds": 0.0,
            "evaluate_seconds": 0.0,
            "apply_seconds": 0.0,
            "failed_batches": 0,
            "busy_rejections": 0,
            "passivated": 0,
        }

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, owned: Iterable[int] | None = None) -> None:
        """Claim ``owned`` (default: ``settings.owned``) and start committing."""
        if owned is not None:
            self.settings = replace(self.settings, owned=frozenset(owned))
        await self._journal.setup(self.settings.partitions)
        self._epochs = await self._journal.claim(sorted(self.settings.owned))
        self._flusher = asyncio.create_task(self._flush_forever(), name="shard-flusher")

    async def stop(self, *, drain: bool = True, grace_s: float = 10.0) -> None:
        """Stop accepting; with ``drain`` answer what is queued first (journal flushed)."""
        self._stopping = True
        if drain:
            deadline = time.monotonic() + grace_s
            while (self._queued or any(a.in_flight for a in self._accounts.values())) and (
                time.monotonic() < deadline
            ):
                self._wakeup.set()
                await asyncio.sleep(0.01)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        for account in self._accounts.values():
            while account.mailbox:
                answer(account.mailbox.popleft(), Result(ResultCode.UNAVAILABLE, message="shard stopped"))
        await self._journal.close()
        if self._control is not None:
            await self._control.close()

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- ownership moves ------------------------------------------------------------------

    async def release(self, partitions: Iterable[int], *, grace_s: float = 10.0) -> dict[int, int]:
        """Give partitions away: refuse new commands for them, answer everything queued or
        in flight for them, forget their accounts. Returns the epochs we held them under.

        Queued commands are committed rather than failed (the shard is healthy; failing
        them would only make callers resend). In-flight writes must land before we return:
        the new owner's claim would fence a write still on its way, and a fenced shard stops
        writing for *all* its partitions. If that takes longer than ``grace_s`` the release
        is undone (we own the partitions again) and :class:`RebalanceError` is raised.
        """
        leaving = frozenset(partitions) & self.settings.owned
        if not leaving:
            return {}
        # First, before any await: from now on admission answers "not owned here".
        self.settings = replace(self.settings, owned=self.settings.owned - leaving)
        accounts = [a for a in self._accounts.values() if a.partition in leaving]
        deadline = time.monotonic() + grace_s
        while any(a.mailbox or a.in_flight for a in accounts):
            flusher_gone = self._flusher is None or self._flusher.done()
            if time.monotonic() >= deadline or flusher_gone or self._fenced is not None:
                self.settings = replace(self.settings, owned=self.settings.owned | leaving)
                busy = sum(len(a.mailbox) + a.in_flight for a in accounts)
                raise RebalanceError(
                    f"partitions {sorted(leaving)} still had {busy} command(s) queued or in flight"
                    f" after {grace_s:g} s; kept them"
                )
            self._wakeup.set()
            await asyncio.sleep(0.002)
        # Whatever we remember about them goes stale the moment another shard writes.
        for account in accounts:
            if self._accounts.get(account.key) is account:
                del self._accounts[account.key]
            self._held.pop(account.key, None)
            self._runnable.pop(account.key, None)
        for key in [k for k, row in self._house.items() if row.partition_id in leaving]:
            del self._house[key]
        return {p: self._epochs.pop(p) for p in sorted(leaving) if p in self._epochs}

    async def adopt(self, partitions: Iterable[int]) -> dict[int, int]:
        """Claim partitions (bumping their epochs, which fences any earlier owner) and start
        accepting commands for them. Returns the epochs of the partitions newly claimed."""
        if self._stopping:
            raise RebalanceError("shard is stopping; it cannot take partitions")
        arriving = frozenset(partitions) - self.settings.owned
        if not arriving:
            return {}
        async with self._control_lock:
            epochs = await self._control_journal().claim(sorted(arriving))
        # Nothing should be cached for them (release forgot it), but a row cached from an
        # earlier ownership would be stale: drop it rather than trust it.
        for key in [k for k, a in self._accounts.items() if a.partition in arriving and not a.mailbox]:
            del self._accounts[key]
        for key in [k for k, row in self._house.items() if row.partition_id in arriving]:
            del self._house[key]
        self._epochs.update(epochs)
        self.settings = replace(self.settings, owned=self.settings.owned | arriving)
        return epochs

    async def load_layout(self, shard_set: str) -> ShardLayout | None:
        """The stored routing map of ``shard_set`` (None if none is stored)."""
        async with self._control_lock:
            return await self._control_journal().load_layout(shard_set, self.settings.partitions)

    def _control_journal(self) -> Journal:
        if self._control is None:
            self._control = self._journal.sibling()
        return self._control

    @property
    def epochs(self) -> dict[int, int]:
        return dict(self._epochs)

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.stats,
            "active_accounts": sum(1 for a in self._accounts.values() if a.loaded),
            "mailbox_depth": self._queued,
            "partitions": len(self.settings.owned),
            "fenced": self._fenced,
        }

    def metrics_snapshot(self) -> dict[str, Any]:
        """``snapshot()`` plus ``mailbox_peak``, the most commands queued at once since the
        previous call (which this resets): the metrics sampler's view."""
        snapshot = self.snapshot()
        snapshot["mailbox_peak"] = self._queued_peak
        self._queued_peak = self._queued
        return snapshot

    # -- intake -------------------------------------------------------------------------

    def submit_nowait(self, commands: list[Command]) -> list[asyncio.Future[Result]]:
        """Queue commands (synchronously, so one caller's order is arrival order)."""
        loop = asyncio.get_running_loop()
        futures = []
        now = time.monotonic()
        for command in commands:
            future: asyncio.Future[Result] = loop.create_future()
            futures.append(future)
            refusal = self._admission(command)
            if refusal is not None:
                future.set_result(refusal)
                continue
            account = self._accounts.get(command.account_key)
            if account is None:
                partition = partition_of(command.operator_id, command.player_id, self.settings.partitions)
                account = VirtualAccount(command.account_key, partition)
                self._accounts[command.account_key] = account
            if len(account.mailbox) >= self.settings.mailbox_capacity:
                self.stats["busy_rejections"] += 1
                future.set_result(Result(ResultCode.BUSY, message="account mailbox full, retry"))
                continue
            account.mailbox.append(Pending(command, future))
            account.last_used = now
            self._queued += 1
            if self._queued > self._queued_peak:
                self._queued_peak = self._queued
            self._runnable[account.key] = account
        self._wakeup.set()
        return futures

    async def submit(self, commands: list[Command]) -> list[Result]:
        return list(await asyncio.gather(*self.submit_nowait(commands)))

    def _admission(self, command: Command) -> Result | None:
        if self._fenced is not None:
            return Result(ResultCode.UNAVAILABLE, message=f"shard fenced: {self._fenced}")
        if self._stopping:
            return Result(ResultCode.UNAVAILABLE, message="shard stopping")
        partition = partition_of(command.operator_id, command.player_id, self.settings.partitions)
        if partition not in self.settings.owned:
            return Result(ResultCode.UNAVAILABLE, message=f"partition {partition} is not owned here")
        if self._queued >= self.settings.max_queued:
            self.stats["busy_rejections"] += 1
            return Result(ResultCode.BUSY, message="shard overloaded, retry")
        return None

    # -- the flusher --------------------------------------------------------------------
    #
    # Batches are pipelined: while one batch's write runs in PostgreSQL, the next batch is
    # taken and evaluated in Python, so the two halves of the work overlap instead of
    # taking turns. The next batch is evaluated ahead only when that is safe without the
    # first one's outcome:
    #
    # * it holds no account of the batch in flight (_take skips accounts with commands in
    #   flight; they wait in _held), so every player state it reads is committed state;
    # * it needs no database read (the connection is busy): every account loaded, every
    #   bet it resolves cached, every house account known (or being created in flight);
    # * house accounts are shared, but no decision reads a house balance: the plan notes
    #   the balance it started from and is rebased onto the committed one before it is
    #   written (BatchPlan.rebase), after the batch in flight has landed.
    #
    # If the batch in flight fails or had to be decided again (conflicts), the batch
    # evaluated ahead is thrown away and evaluated again. Nothing is answered before its
    # own COMMIT returned.

    async def _flush_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._runnable:
                await self._drain()
            self._passivate()

    def _next_batch(self) -> list[tuple[VirtualAccount, Pending]]:
        return self._take(self.settings.group_commit_max, self.settings.group_commit_max_bets)

    async def _drain(self) -> None:
        """Write batches until nothing is runnable, one in flight while the next is evaluated."""
        flight: _Flight | None = None  # sent, not landed
        batch: list[tuple[VirtualAccount, Pending]] = []  # taken, not sent
        landed: tuple[list[tuple[VirtualAccount, Pending]], BatchPlan] | None = None  # committed, not answered
        try:
            while True:
                batch = self._next_batch() if self._runnable else []
                plan = self._speculate(batch, flight) if batch and flight is not None else None
                if flight is not None:
                    outcome = await self._land(flight)
                    if outcome is not None:
                        landed = (flight.batch, outcome[0])
                    if outcome is None or not outcome[1]:
                        plan = None  # evaluated on top of a write that did not go as planned
                    flight = None
                if batch:
                    flight = await self._launch(batch, plan)
                    batch = []
                if landed is not None:
                    # Answered while the next batch is in PostgreSQL's hands.
                    done, landed = landed, None
                    self._finish(*done)
                self._release()
                if flight is None and not self._runnable:
                    return
        except asyncio.CancelledError:
            self._abandon(landed, flight, batch, "shard stopped mid-batch; retry")
            raise
        except Exception:  # a bug must not kill the shard silently
            log.exception("batch failed unexpectedly")
            self._abandon(landed, flight, batch, "internal error; retry")
            self._release()

    def _abandon(
        self,
        landed: tuple[list[tuple[VirtualAccount, Pending]], BatchPlan] | None,
        flight: _Flight | None,
        batch: list[tuple[VirtualAccount, Pending]],
        message: str,
    ) -> None:
        """Stop mid-pipeline: answer what committed, fail what may not have."""
        if landed is not None:
            try:
                self._finish(*landed)
            except Exception:
                log.exception("answering a committed batch failed")
                self._fail([item for item in landed[0] if not item[1].future.done()], ResultCode.UNAVAILABLE, message)
        if flight is not None:
            if flight.task is not None:
                flight.task.cancel()
            self._fail(flight.batch, ResultCode.UNAVAILABLE, message)
        if batch:
            self._fail(batch, ResultCode.UNAVAILABLE, message)

    def _take(self, limit: int, weight_limit: int) -> list[tuple[VirtualAccount, Pending]]:
        """Up to ``limit`` commands weighing up to ``weight_limit`` (at least one command),
        from accounts with nothing in flight."""
        taken: list[tuple[VirtualAccount, Pending]] = []
        weight = 0
        while self._runnable and len(taken) < limit and weight < weight_limit:
            key, account = next(iter(self._runnable.items()))
            if account.in_flight:  # its earlier commands are being written: later
                del self._runnable[key]
                self._held[key] = account
                continue
            while account.mailbox and len(taken) < limit and weight < weight_limit:
                pending = account.mailbox.popleft()
                weight += 1 + len(pending.command.payouts)
                taken.append((account, pending))
            if not account.mailbox:
                del self._runnable[key]
        for account, _ in taken:
            account.in_flight += 1
        self._queued -= len(taken)
        return taken

    def _release(self) -> None:
        """Accounts set aside by _take become runnable again once nothing of theirs is in flight."""
        if not self._held:
            return
        ready = [a for a in self._held.values() if not a.in_flight]
        for account in reversed(ready):  # ahead of newer work, in their original order
            del self._held[account.key]
            if account.mailbox:
                self._runnable[account.key] = account
                self._runnable.move_to_end(account.key, last=False)

    def _fail(self, batch: list[tuple[VirtualAccount, Pending]], code: ResultCode, message: str) -> None:
        for account, pending in batch:
            account.in_flight -= 1
            account.forget()
            answer(pending, Result(code, message=message))
        self._house.clear()
        self.stats["failed_batches"] += 1

    def _evaluate(
        self,
        batch: list[tuple[VirtualAccount, Pending]],
        fetched: dict[tuple[int, str], tuple[str, int]],
        borrowed: dict[tuple[str, str], AccountRow] | None = None,
    ) -> BatchPlan:
        began = time.perf_counter()
        plan = BatchPlan(self._house, self._accounts, fetched, borrowed or {})
        for account, pending in batch:
            plan.evaluate(account, pending)
        self.stats["evaluate_seconds"] += time.perf_counter() - began
        return plan

    def _speculate(self, batch: list[tuple[VirtualAccount, Pending]], flight: _Flight) -> BatchPlan | None:
        """Evaluate ``batch`` while ``flight`` is written, if it needs nothing from the database."""
        began = time.perf_counter()
        unloaded, houses, bet_keys = self._missing(batch, flight.plan.created)
        self.stats["evaluate_seconds"] += time.perf_counter() - began
        if unloaded or houses or bet_keys:
            return None
        return self._evaluate(batch, {}, flight.plan.created)

    async def _launch(self, batch: list[tuple[VirtualAccount, Pending]], plan: BatchPlan | None) -> _Flight | None:
        """Start writing ``batch`` (evaluating it first if needed); None if it failed at once."""
        try:
            if self._fenced is not None:
                raise StaleWriterError(self._fenced)
            if plan is not None and not plan.rebase():
                plan = None  # a player's committed state moved under it (never expected)
            if plan is None:
                plan = self._evaluate(batch, await self._load(batch))
            if not len(plan.journal):
                return _Flight(batch, plan, None)
            began = time.perf_counter()
            prepared = await self._journal.prepare(plan.journal, self._epochs)
            task = asyncio.ensure_future(self._journal.send(prepared))
            try:
                # Let the write reach the socket before this coroutine evaluates the next batch.
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                task.cancel()
                raise
            self.stats["commit_seconds"] += time.perf_counter() - began
            return _Flight(batch, plan, task)
        except StaleWriterError as exc:
            self._fence(exc)
            self._fail(batch, ResultCode.UNAVAILABLE, "shard lost ownership; retry")
        except StorageError as exc:
            self._fail(batch, ResultCode.UNAVAILABLE, f"storage unavailable, retry: {exc}")
        return None

    async def _land(self, flight: _Flight) -> tuple[BatchPlan, bool] | None:
        """Wait for ``flight``'s write (deciding it again after conflicts) and make it the
        committed state of its rows. Returns the plan written and whether it is the plan
        first sent; None if the batch failed (it has been answered)."""
        plan, batch = flight.plan, flight.batch
        began = time.perf_counter()
        try:
            outcome = await flight.task if flight.task is not None else None
            clean = True
            for _attempt in range(3):
                if not isinstance(outcome, Conflicts):
                    break
                # Keys we took for new were known to the database (an earlier owner or
                # incarnation wrote them): learn them and decide the batch again.
                clean = False
                await self._learn(batch, outcome, plan.fetched)
                plan = self._evaluate(batch, plan.fetched)
                outcome = await self._journal.commit(plan.journal, self._epochs) if len(plan.journal) else None
            if isinstance(outcome, Conflicts):
                raise JournalRejectedError("batch kept conflicting with stored keys")
        except StaleWriterError as exc:
            self._fence(exc)
            self._fail(batch, ResultCode.UNAVAILABLE, "shard lost ownership; retry")
            return None
        except StorageError as exc:
            self._fail(batch, ResultCode.UNAVAILABLE, f"storage unavailable, retry: {exc}")
            return None
        finally:
            self.stats["commit_seconds"] += time.perf_counter() - began
        applied = time.perf_counter()
        plan.advance(outcome)
        self.stats["apply_seconds"] += time.perf_counter() - applied
        return plan, clean

    def _finish(self, batch: list[tuple[VirtualAccount, Pending]], plan: BatchPlan) -> None:
        """The batch is committed and its rows advanced: answer, remember, let its accounts go."""
        applied = time.perf_counter()
        plan.answer()
        for account, _ in batch:
            account.in_flight -= 1
        self.stats["batches"] += 1
        self.stats["commands"] += len(batch)
        self.stats["apply_seconds"] += time.perf_counter() - applied

    def _fence(self, exc: Exception) -> None:
        if self._fenced is None:
            log.error("shard fenced, stops writing: %s", exc)
        self._fenced = str(exc)

    def _missing(
        self, batch: list[tuple[VirtualAccount, Pending]], borrowed: dict[tuple[str, str], AccountRow]
    ) -> tuple[dict[tuple[str, str], VirtualAccount], set[tuple[str, str]], set[tuple[int, str]]]:
        """What evaluating ``batch`` needs from the database: accounts to activate, house
        accounts, and bets it resolves that are not cached (every bet a settle lists)."""
        unloaded = {account.key: account for account, _ in batch if not account.loaded}
        houses: set[tuple[str, str]] = set()
        bet_keys: set[tuple[int, str]] = set()
        for account, pending in batch:
            command = pending.command
            row = account.row
            cur = row.currency if row is not None else command.currency
            if command.kind.keyed:
                house = (command.operator_id, house_player_id(house_account_for(command.kind), cur, account.partition))
                if house not in self._house and house not in borrowed:
                    houses.add(house)
            if row is None or row.account_id is None:
                continue
            if command.kind in (CommandKind.WIN, CommandKind.ROLLBACK):
                bet_key = bet_key_of(command)
                if bet_key is not None and bet_key not in account.bets:
                    bet_keys.add((row.account_id, bet_key))
            elif command.kind is CommandKind.SETTLE:
                cached, account_id = account.bets, row.account_id
                bet_keys.update((account_id, key) for key, _ in command.payouts if key not in cached)
        return unloaded, houses, bet_keys

    async def _load(self, batch: list[tuple[VirtualAccount, Pending]]) -> dict[tuple[int, str], tuple[str, int]]:
        """Activate accounts and fetch what _missing lists, one query per kind. Returns the
        bets fetched, which the plan reads: the per-account caches are bounded, and a
        settle may name more bets than they hold.

        Idempotency records and new bet keys are not fetched: the write checks them and
        reports conflicts (rare: only a repeat from before this incarnation).
        """
        fetched: dict[tuple[int, str], tuple[str, int]] = {}
        unloaded = {account.key: account for account, _ in batch if not account.loaded}
        if unloaded:
            rows = await self._journal.load_accounts(list(unloaded))
            for key, account in unloaded.items():
                account.row, account.loaded = rows.get(key), True
        _, houses, bet_keys = self._missing(batch, {})
        if houses:
            self._house.update(await self._journal.load_accounts(sorted(houses)))
        if bet_keys:
            await self._learn(batch, Conflicts(records=set(), bets=bet_keys), fetched)
        return fetched

    async def _learn(
        self,
        batch: list[tuple[VirtualAccount, Pending]],
        keys: Conflicts,
        fetched: dict[tuple[int, str], tuple[str, int]],
    ) -> None:
        by_id = {a.row.account_id: a for a, _ in batch if a.row is not None and a.row.account_id is not None}
        for (account_id, key), (request_hash, response) in (
            await self._journal.load_records(sorted(keys.records))
        ).items():
            remember(by_id[account_id].records, key, cache_entry(request_hash, response))
        found = await self._journal.load_bets(list(keys.bets))
        # Into the plan's ``fetched`` only, absence included. Not into the accounts' bounded
        # caches: a fetched bet going in there could evict one that ``_missing`` left out
        # because it was cached, and the plan would then find neither (a win for an open
        # bet answered "no such bet"). The bets the batch resolves are cached once it
        # commits (``BatchPlan.answer``).
        for pair in keys.bets:
            fetched[pair] = found.get(pair, NO_BET)

    def _passivate(self) -> None:
        now = time.monotonic()
        idle_before = now - self.settings.idle_passivate_s
        over = len(self._accounts) - self.settings.max_active_accounts
        candidates = sorted(
            (a for a in self._accounts.values() if not a.mailbox and not a.in_flight),
            key=lambda a: a.last_used,
        )
        for account in candidates:
            if account.last_used >= idle_before and over <= 0:
                break
            del self._accounts[account.key]
            over -= 1
            self.stats["passivated"] += 1
