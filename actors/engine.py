"""The inside of an account shard: virtual account actors with mailboxes and group commit.

A shard hosts many logical account actors. Each account has a mailbox; its commands are
evaluated strictly one at a time in arrival order. One flusher loop takes the waiting
commands of many accounts, evaluates them against the committed state (each account
seeing the effects of its own earlier commands in the batch), writes the whole batch to
PostgreSQL in one transaction and only then answers. Memory changes only after COMMIT:
if the write fails, every account touched is dropped and reloaded from the database on
its next command, so memory can never run ahead of the journal.

Batching is natural rather than timed: while one batch commits, the next one fills. An
idle shard commits a lone command at once (lowest latency); a busy one commits up to
``group_commit_max`` commands per transaction (highest throughput).

This module is plain asyncio, so it is tested without Ray; ``actors.shard`` wraps it in a
Ray actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from core.ledger import house_account_for, house_player_id
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
from storage.errors import JournalRejectedError, StaleWriterError, StorageError
from storage.journal import (
    AccountRow,
    BetDraft,
    CommitReceipt,
    Conflicts,
    Journal,
    JournalBatch,
    RecordDraft,
    TxDraft,
)

__all__ = ["EngineSettings", "ShardEngine"]

log = logging.getLogger("rgs.shard")

_CACHE_PER_ACCOUNT = 256  # recent idempotency records / bets kept per active account
_NO_BET = ("", 0)  # cached knowledge that the database holds no bet under a key


@dataclass(frozen=True)
class EngineSettings:
    partitions: int
    owned: frozenset[int]
    group_commit_max: int = 500
    mailbox_capacity: int = 1000
    max_queued: int = 200_000
    max_active_accounts: int = 100_000
    idle_passivate_s: float = 300.0


@dataclass(slots=True)
class _Pending:
    command: Command
    future: asyncio.Future[Result]


@dataclass(slots=True, eq=False)
class _Account:
    """One virtual account actor: its mailbox and what it remembers between commands."""

    key: tuple[str, str]
    partition: int
    mailbox: deque[_Pending] = field(default_factory=deque)
    row: AccountRow | None = None
    loaded: bool = False  # row is None and loaded: the account does not exist (yet)
    records: OrderedDict[str, tuple[bytes, dict[str, Any]]] = field(default_factory=OrderedDict)
    bets: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)
    last_used: float = 0.0
    in_flight: int = 0

    def forget(self) -> None:
        self.row, self.loaded = None, False
        self.records.clear()
        self.bets.clear()


def _bet_key(command: Command) -> str | None:
    """The bet a command opens or resolves (None for transfers and reads)."""
    if command.kind is CommandKind.BET:
        return command.idempotency_key
    if command.kind in (CommandKind.WIN, CommandKind.ROLLBACK):
        return command.reference
    return None


def _remember(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHE_PER_ACCOUNT:
        cache.popitem(last=False)


class ShardEngine:
    def __init__(self, journal: Journal, settings: EngineSettings) -> None:
        self._journal = journal
        self.settings = settings
        self._epochs: dict[int, int] = {}
        self._accounts: dict[tuple[str, str], _Account] = {}
        self._house: dict[tuple[str, str], AccountRow] = {}
        self._runnable: OrderedDict[tuple[str, str], _Account] = OrderedDict()
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._current: list[tuple[_Account, _Pending]] = []
        self._fenced: str | None = None
        self._stopping = False
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

    async def start(self) -> None:
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
                self._answer(account.mailbox.popleft(), Result(ResultCode.UNAVAILABLE, message="shard stopped"))
        await self._journal.close()

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
                account = _Account(command.account_key, partition)
                self._accounts[command.account_key] = account
            if len(account.mailbox) >= self.settings.mailbox_capacity:
                self.stats["busy_rejections"] += 1
                future.set_result(Result(ResultCode.BUSY, message="account mailbox full, retry"))
                continue
            account.mailbox.append(_Pending(command, future))
            account.last_used = now
            self._queued += 1
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

    async def _flush_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._runnable:
                batch = self._current = self._take(self.settings.group_commit_max)
                try:
                    await self._process(batch)
                except asyncio.CancelledError:
                    self._fail(batch, ResultCode.UNAVAILABLE, "shard stopped mid-batch; retry")
                    raise
                except Exception:  # a bug must not kill the shard silently
                    log.exception("batch failed unexpectedly")
                    self._fail(batch, ResultCode.UNAVAILABLE, "internal error; retry")
                finally:
                    self._current = []
            self._passivate()

    def _take(self, limit: int) -> list[tuple[_Account, _Pending]]:
        taken: list[tuple[_Account, _Pending]] = []
        while self._runnable and len(taken) < limit:
            key, account = next(iter(self._runnable.items()))
            while account.mailbox and len(taken) < limit:
                taken.append((account, account.mailbox.popleft()))
                account.in_flight += 1
            if not account.mailbox:
                del self._runnable[key]
        self._queued -= len(taken)
        return taken

    def _fail(self, batch: list[tuple[_Account, _Pending]], code: ResultCode, message: str) -> None:
        for account, pending in batch:
            account.in_flight -= 1
            account.forget()
            self._answer(pending, Result(code, message=message))
        self._house.clear()
        self.stats["failed_batches"] += 1

    @staticmethod
    def _answer(pending: _Pending, result: Result) -> None:
        if not pending.future.done():
            pending.future.set_result(result)

    async def _process(self, batch: list[tuple[_Account, _Pending]]) -> None:
        began = time.perf_counter()
        try:
            await self._load(batch)
            for _attempt in range(4):
                plan = _Plan(self)
                for account, pending in batch:
                    plan.evaluate(account, pending)
                started = time.perf_counter()
                self.stats["evaluate_seconds"] += started - began
                outcome = await self._journal.commit(plan.journal, self._epochs) if len(plan.journal) else None
                if not isinstance(outcome, Conflicts):
                    break
                # Keys we took for new were known to the database (an earlier owner or
                # incarnation wrote them): learn them and decide the batch again.
                await self._learn(batch, outcome)
            else:
                raise JournalRejectedError("batch kept conflicting with stored keys")
        except StaleWriterError as exc:
            self._fenced = str(exc)
            log.error("shard fenced, stops writing: %s", exc)
            self._fail(batch, ResultCode.UNAVAILABLE, "shard lost ownership; retry")
            return
        except StorageError as exc:
            self._fail(batch, ResultCode.UNAVAILABLE, f"storage unavailable, retry: {exc}")
            return
        self.stats["commit_seconds"] += time.perf_counter() - started
        self.stats["batches"] += 1
        self.stats["commands"] += len(batch)
        applied = time.perf_counter()
        plan.apply(outcome)
        for account, _ in batch:
            account.in_flight -= 1
        self.stats["apply_seconds"] += time.perf_counter() - applied

    async def _load(self, batch: list[tuple[_Account, _Pending]]) -> None:
        """Activate accounts and fetch the bets this batch resolves that are not cached.

        Idempotency records and new bet keys are not fetched: the write checks them and
        reports conflicts (rare: only a repeat from before this incarnation).
        """
        unloaded = {account.key: account for account, _ in batch if not account.loaded}
        if unloaded:
            rows = await self._journal.load_accounts(list(unloaded))
            for key, account in unloaded.items():
                account.row, account.loaded = rows.get(key), True
        houses: set[tuple[str, str]] = set()
        bet_keys: set[tuple[int, str]] = set()
        for account, pending in batch:
            command = pending.command
            row = account.row
            cur = row.currency if row is not None else command.currency
            if command.kind.keyed:
                house = house_player_id(house_account_for(command.kind), cur, account.partition)
                if (command.operator_id, house) not in self._house:
                    houses.add((command.operator_id, house))
            if row is None or row.account_id is None:
                continue
            if command.kind in (CommandKind.WIN, CommandKind.ROLLBACK):
                bet_key = _bet_key(command)
                if bet_key is not None and bet_key not in account.bets:
                    bet_keys.add((row.account_id, bet_key))
        if houses:
            self._house.update(await self._journal.load_accounts(sorted(houses)))
        if bet_keys:
            await self._learn(batch, Conflicts(records=set(), bets=bet_keys))

    async def _learn(self, batch: list[tuple[_Account, _Pending]], keys: Conflicts) -> None:
        by_id = {a.row.account_id: a for a, _ in batch if a.row is not None and a.row.account_id is not None}
        for (account_id, key), value in (await self._journal.load_records(sorted(keys.records))).items():
            _remember(by_id[account_id].records, key, value)
        found = await self._journal.load_bets(sorted(keys.bets))
        for account_id, key in keys.bets:
            # Remember absence too, so a resolution of an unknown bet is not re-fetched.
            _remember(by_id[account_id].bets, key, found.get((account_id, key), _NO_BET))

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


class _Plan:
    """One batch being evaluated: tentative state on top of the committed state."""

    def __init__(self, engine: ShardEngine) -> None:
        self.engine = engine
        self.journal = JournalBatch()
        self.balance: dict[int, int] = {}  # id(row) -> tentative withdrawable
        self.status: dict[int, str] = {}
        self.records: dict[tuple[int, str], tuple[bytes, dict[str, Any]]] = {}
        self.bets: dict[tuple[int, str], tuple[str, int]] = {}
        self.created: dict[tuple[str, str], AccountRow] = {}
        self.owner_of: dict[int, _Account] = {}  # id(row) -> the virtual account holding it
        # (pending, result, response dict whose tx_id the writer fills, or None)
        self.answers: list[tuple[_Account, _Pending, Result, dict[str, Any] | None]] = []

    def _row(self, account: _Account) -> AccountRow | None:
        return self.created.get(account.key) or account.row

    def _balance(self, row: AccountRow) -> int:
        return self.balance.get(id(row), row.withdrawable)

    def _view(self, row: AccountRow | None) -> AccountView | None:
        if row is None:
            return None
        status = AccountStatus(self.status.get(id(row), row.status))
        return AccountView(row.currency, status, self._balance(row))

    def _touch(self, row: AccountRow, balance: int, status: str | None = None) -> None:
        self.balance[id(row)] = balance
        if status is not None:
            self.status[id(row)] = status
        self.journal.balances[id(row)] = (row, balance, row.bonus, self.status.get(id(row), row.status))
        self.journal.partitions.add(row.partition_id)

    def _house(self, command: Command, row: AccountRow) -> AccountRow:
        house_id = house_player_id(house_account_for(command.kind), row.currency, row.partition_id)
        key = (command.operator_id, house_id)
        house = self.engine._house.get(key) or self.created.get(key)
        if house is None:
            house = AccountRow("system", command.operator_id, house_id, row.currency, row.partition_id)
            self.created[key] = house
            self.journal.new_accounts.append(house)
        return house

    def evaluate(self, account: _Account, pending: _Pending) -> None:
        command = pending.command
        row = self._row(account)
        if command.kind is CommandKind.OPEN and row is None:
            row = AccountRow("player", command.operator_id, command.player_id, command.currency, account.partition)
            self.created[account.key] = row
            self.journal.new_accounts.append(row)
            self.journal.partitions.add(account.partition)
        if row is not None:
            self.owner_of[id(row)] = account
        if not command.kind.keyed or row is None:
            decision = decide(command, self._view(row), None)
            if decision.status is not None and row is not None:
                self._touch(row, self._balance(row), decision.status.value)
            self.answers.append((account, pending, decision.result, None))
            return
        record_key = (id(row), command.idempotency_key)
        stored = self.records.get(record_key) or account.records.get(command.idempotency_key)
        if stored is not None:
            request_hash, response = stored
            if request_hash == command.request_hash():
                self.answers.append((account, pending, Result.from_record(response), response))
            else:
                view = self._view(row)
                assert view is not None
                result = Result(
                    ResultCode.DUPLICATE_MISMATCH,
                    view.balance,
                    view.currency,
                    message="this idempotency key was used for a different request",
                )
                self.answers.append((account, pending, result, None))
            return
        bet_key = _bet_key(command)
        bet_state = None
        if bet_key is not None:
            bet_state = self.bets.get((id(row), bet_key)) or account.bets.get(bet_key)
        if bet_state == _NO_BET:
            bet_state = None
        bet = None if bet_state is None else BetView(BetState(bet_state[0]), bet_state[1])
        decision = decide(command, self._view(row), bet)
        tx_index = None
        if decision.moves_money:
            house = self._house(command, row)
            balance = self._balance(row) + decision.delta
            house_balance = self._balance(house) - decision.delta
            self._touch(row, balance)
            self._touch(house, house_balance)
            tx_index = len(self.journal.transactions)
            self.journal.transactions.append(
                TxDraft(
                    command.kind.value,
                    row,
                    command.idempotency_key,
                    command.reference,
                    command.round_ref,
                    command.game_ref,
                    row.partition_id,
                    [(row, "withdrawable", decision.delta, balance), (house, "withdrawable", -decision.delta, house_balance)],
                )
            )
        if decision.bet_state is not None and bet_key is not None:
            self.bets[(id(row), bet_key)] = (decision.bet_state.value, decision.bet_amount)
            previous = self.journal.bets.get((id(row), bet_key))
            self.journal.bets[(id(row), bet_key)] = BetDraft(
                row,
                bet_key,
                decision.bet_state.value,
                decision.bet_amount,
                command.round_ref,
                command.game_ref,
                None if command.kind is CommandKind.BET else command.idempotency_key,
                is_new=bet is None or (previous is not None and previous.is_new),
            )
        response = decision.result.to_record()
        self.records[record_key] = (command.request_hash(), response)
        self.journal.records.append(
            RecordDraft(row, command.idempotency_key, command.kind.value, command.request_hash(), response, tx_index)
        )
        self.journal.partitions.add(row.partition_id)
        self.answers.append((account, pending, decision.result, response))

    def apply(self, receipt: CommitReceipt | None) -> None:
        """The batch is committed: make it the new committed state, then answer."""
        heads = receipt.heads if receipt is not None else {}
        for row, balance, _bonus, status in self.journal.balances.values():
            row.withdrawable, row.status = balance, status
        for row in [*self.created.values(), *(r for r, *_ in self.journal.balances.values())]:
            if id(row) in heads:
                row.account_id, row.version, row.last_hash = heads[id(row)]
        for key, row in self.created.items():
            if row.kind == "system":
                self.engine._house[key] = row
            elif key in self.engine._accounts:
                self.engine._accounts[key].row = row
        for account, pending, result, response in self.answers:
            if response is not None:
                command = pending.command
                _remember(account.records, command.idempotency_key, (command.request_hash(), response))
                result = Result.from_record(response, replayed=result.replayed)
            ShardEngine._answer(pending, result)
        for (row_id, bet_key), value in self.bets.items():
            _remember(self.owner_of[row_id].bets, bet_key, value)
