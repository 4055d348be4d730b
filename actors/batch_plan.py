"""What one batch of an account shard decides, before and after its commit.

:class:`BatchPlan` evaluates a batch of commands against the committed state of their
accounts (each account seeing the effects of its own earlier commands in the batch),
collects the rows to write into a :class:`~storage.journal.JournalBatch`, and after
COMMIT advances the committed rows and answers. :class:`VirtualAccount` is one account
actor's mailbox and its bounded memory of recent idempotency records and bets.

Pure evaluation and bookkeeping: no I/O and no event loop of its own; the engine
(``actors.engine``) owns the loop, the database and the order of batches.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from core.ledger import house_account_for, house_player_id
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
    decide_settlement,
)
from storage.journal import (
    AccountRow,
    BetDraft,
    CallbackDraft,
    CommitReceipt,
    JournalBatch,
    RecordDraft,
    ResolutionDraft,
    TxDraft,
)

__all__ = [
    "NO_BET",
    "BatchPlan",
    "Pending",
    "VirtualAccount",
    "answer",
    "bet_key_of",
    "cache_entry",
    "remember",
    "remember_all",
]


_CACHE_PER_ACCOUNT = 256  # recent idempotency records / bets kept per active account
NO_BET = ("", 0)  # cached knowledge that the database holds no bet under a key
_STATES: dict[str, BetState] = {s.value: s for s in BetState}  # faster than BetState(value)
_WON = (BetState.WON.value, 0)  # cached state of a bet won by a settle (amount unused once resolved)
_TOMBSTONE = (BetState.TOMBSTONE.value, 0)


@dataclass(slots=True)
class Pending:
    command: Command
    future: asyncio.Future[Result]


def answer(pending: Pending, result: Result) -> None:
    """Answer a command once (a caller may have given up and cancelled its future)."""
    if not pending.future.done():
        pending.future.set_result(result)


@dataclass(slots=True, eq=False)
class VirtualAccount:
    """One virtual account actor: its mailbox and what it remembers between commands."""

    key: tuple[str, str]
    partition: int
    mailbox: deque[Pending] = field(default_factory=deque)
    row: AccountRow | None = None
    loaded: bool = False  # row is None and loaded: the account does not exist (yet)
    records: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)  # see cache_entry
    bets: OrderedDict[str, tuple[str, int]] = field(default_factory=OrderedDict)
    last_used: float = 0.0
    in_flight: int = 0

    def forget(self) -> None:
        self.row, self.loaded = None, False
        self.records.clear()
        self.bets.clear()


def bet_key_of(command: Command) -> str | None:
    """The bet a command opens or resolves (None for transfers and reads)."""
    if command.kind is CommandKind.BET:
        return command.idempotency_key
    if command.kind in (CommandKind.WIN, CommandKind.ROLLBACK):
        return command.reference
    return None  # a settle names many bets: see BatchPlan._settle


_HASH = "\x00request_hash"  # where a cached record keeps its request hash (no response field is named so)


def cache_entry(request_hash: bytes, response: dict[str, Any]) -> dict[str, Any]:
    """A stored record as an account's cache keeps it: one dict of atomic values, the
    request hash included and skipped keys as a tuple.

    CPython never tracks such a dict for garbage collection, while a ``(hash, response)``
    tuple stays tracked for good (a tuple holding a dict is never untracked). With 256
    records cached per active account those tuples were most of a warm shard's tracked
    objects: full collections of 0.5-1 s in the middle of a round's settlement (measured,
    5,000 accounts).
    """
    entry = dict(response)
    skipped = entry.get("skipped")
    if skipped is not None:
        entry["skipped"] = tuple(skipped)
    entry[_HASH] = request_hash
    return entry


def remember(cache: OrderedDict[str, Any], key: str, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > _CACHE_PER_ACCOUNT:
        cache.popitem(last=False)


def remember_all(cache: OrderedDict[str, Any], items: dict[str, Any]) -> None:
    """Many bets at once (a settle hands over thousands), in one C-level update: new keys
    go to the recent end, known ones are updated in place. Not moving a resolved bet to
    the recent end is deliberate: it will hardly be asked about again, open bets will."""
    cache.update(items)
    while len(cache) > _CACHE_PER_ACCOUNT:
        cache.popitem(last=False)


class BatchPlan:
    """One batch being evaluated: tentative state on top of the committed state."""

    def __init__(
        self,
        houses: dict[tuple[str, str], AccountRow],
        accounts: dict[tuple[str, str], VirtualAccount],
        fetched: dict[tuple[int, str], tuple[str, int]],
        borrowed: dict[tuple[str, str], AccountRow],
    ) -> None:
        self.houses = houses  # the shard's committed house accounts: advance() adds the new ones
        self.accounts = accounts  # the shard's virtual accounts, by (operator, player)
        self.fetched = fetched  # bets loaded for this batch, by (account_id, key)
        self.borrowed = borrowed  # house accounts being created by the batch in flight
        self.journal = JournalBatch()
        self.balance: dict[int, int] = {}  # id(row) -> tentative withdrawable
        self.base: dict[int, int] = {}  # id(row) -> committed withdrawable the plan started from
        self.status: dict[int, str] = {}
        self.records: dict[tuple[int, str], tuple[bytes, dict[str, Any]]] = {}
        self.bets: dict[int, dict[str, tuple[str, int]]] = {}  # id(row) -> bet key -> (state, amount)
        self.created: dict[tuple[str, str], AccountRow] = {}
        self.owner_of: dict[int, VirtualAccount] = {}  # id(row) -> the virtual account holding it
        # (pending, result, response dict whose tx_id the writer fills, or None)
        self.answers: list[tuple[VirtualAccount, Pending, Result, dict[str, Any] | None]] = []
        self.audited: set[int] = set()  # id(pending) whose callback record the batch writes

    def _row(self, account: VirtualAccount) -> AccountRow | None:
        return self.created.get(account.key) or account.row

    def _balance(self, row: AccountRow) -> int:
        return self.balance.get(id(row), row.withdrawable)

    def _view(self, row: AccountRow | None) -> AccountView | None:
        if row is None:
            return None
        status = AccountStatus(self.status.get(id(row), row.status))
        return AccountView(row.currency, status, self._balance(row))

    def _touch(self, row: AccountRow, balance: int, status: str | None = None) -> None:
        self.base.setdefault(id(row), row.withdrawable)
        self.balance[id(row)] = balance
        if status is not None:
            self.status[id(row)] = status
        self.journal.balances[id(row)] = (row, balance, row.bonus, self.status.get(id(row), row.status))
        self.journal.partitions.add(row.partition_id)

    def _house(self, command: Command, row: AccountRow) -> AccountRow:
        house_id = house_player_id(house_account_for(command.kind), row.currency, row.partition_id)
        key = (command.operator_id, house_id)
        house = self.houses.get(key) or self.created.get(key) or self.borrowed.get(key)
        if house is None:
            house = AccountRow("system", command.operator_id, house_id, row.currency, row.partition_id)
            self.created[key] = house
            self.journal.new_accounts.append(house)
        return house

    def evaluate(self, account: VirtualAccount, pending: Pending) -> None:
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
        stored = self.records.get(record_key)
        if stored is None and (entry := account.records.get(command.idempotency_key)) is not None:
            stored = (entry[_HASH], entry)
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
        if command.kind is CommandKind.SETTLE:
            result, tx_index = self._settle(account, command, row)
        else:
            result, tx_index = self._resolve(account, command, row)
        response = result.to_record()
        self.records[record_key] = (command.request_hash(), response)
        record = RecordDraft(row, command.idempotency_key, command.kind.value, command.request_hash(), response, tx_index)
        self.journal.records.append(record)
        self.journal.partitions.add(row.partition_id)
        if (note := command.callback) is not None:
            self.journal.callbacks.append(
                CallbackDraft(
                    record, note.provider_id, note.endpoint, note.request_id, command.reference,
                    command.player_id, command.round_ref, note.body_sha256,
                )
            )
            self.audited.add(id(pending))
        self.answers.append((account, pending, result, response))

    def _bet(self, account: VirtualAccount, row: AccountRow, key: str) -> tuple[str, int] | None:
        """A bet's state as of this point of the batch, None if there is no such bet."""
        value = self.bets.get(id(row), {}).get(key) or account.bets.get(key)
        if value is None and row.account_id is not None:
            value = self.fetched.get((row.account_id, key))
        return None if value is None or value == NO_BET else value

    def _post(self, command: Command, row: AccountRow, delta: int, reference: str | None) -> int:
        """Journal one ledger transaction: ``delta`` to the player, its mirror to the house."""
        house = self._house(command, row)
        balance = self._balance(row) + delta
        house_balance = self._balance(house) - delta
        self._touch(row, balance)
        self._touch(house, house_balance)
        self.journal.transactions.append(
            TxDraft(
                command.kind.value,
                row,
                command.idempotency_key,
                reference,
                command.round_ref,
                command.game_ref,
                row.partition_id,
                [(row, "withdrawable", delta, balance), (house, "withdrawable", -delta, house_balance)],
            )
        )
        return len(self.journal.transactions) - 1

    def _resolve(self, account: VirtualAccount, command: Command, row: AccountRow) -> tuple[Result, int | None]:
        """A command about at most one bet: a bet, a win, a rollback, a transfer."""
        bet_key = bet_key_of(command)
        bet_state = None if bet_key is None else self._bet(account, row, bet_key)
        bet = None if bet_state is None else BetView(BetState(bet_state[0]), bet_state[1])
        decision = decide(command, self._view(row), bet)
        tx_index = self._post(command, row, decision.delta, command.reference) if decision.moves_money else None
        if decision.bet_state is not None and bet_key is not None:
            state = decision.bet_state.value
            payout = command.amount if decision.bet_state is BetState.WON else None
            resolution_key = None if command.kind is CommandKind.BET else command.idempotency_key
            self.bets.setdefault(id(row), {})[bet_key] = (state, decision.bet_amount)
            born = self.journal.bets.get((id(row), bet_key))
            if bet is None:  # a bet, or the tombstone of a rollback that came first
                self.journal.bets[(id(row), bet_key)] = BetDraft(
                    row, bet_key, state, decision.bet_amount, command.round_ref, command.game_ref, resolution_key
                )
            elif born is not None:  # opened earlier in this batch: insert it resolved
                born.state, born.resolution_key, born.payout = state, resolution_key, payout
            else:
                assert resolution_key is not None
                self.journal.resolutions.append(ResolutionDraft(row, state, resolution_key, [bet_key], [payout]))
        return decision.result, tx_index

    def _settle(self, account: VirtualAccount, command: Command, row: AccountRow) -> tuple[Result, int | None]:
        """Close the listed bets of one account: one transaction for the total paid.

        This runs once per command but loops over every ticket (100,000 for a round), so
        the lookups of :meth:`_bet` are inlined and nothing is allocated per bet that
        outlives the batch: the won bets' cache entries share one tuple (a resolved bet's
        amount is never read again), which keeps the collector's long-lived generation,
        and its full collections, from growing by a round's tickets.
        """
        row_id = id(row)
        tentative = self.bets.setdefault(row_id, {})
        cached = account.bets
        fetched = self.fetched
        account_id = row.account_id
        states: dict[str, BetState | None] = {}
        for key, _ in command.payouts:
            value = tentative.get(key) or cached.get(key)
            if value is None and account_id is not None:
                value = fetched.get((account_id, key))
            states[key] = None if value is None else _STATES.get(value[0])  # NO_BET's "" -> None
        decision = decide_settlement(command, self._view(row), states)
        tx_index = self._post(command, row, decision.credit, None) if decision.moves_money else None
        settle_key = command.idempotency_key
        won = decision.won
        if won:
            tentative.update(dict.fromkeys([key for key, _ in won], _WON))
            born_bets = self.journal.bets
            if born_bets and any((row_id, key) in born_bets for key, _ in won):
                rest = []
                for key, payout in won:
                    draft = born_bets.get((row_id, key))
                    if draft is None:
                        rest.append((key, payout))
                    else:  # opened earlier in this batch: insert it settled instead
                        draft.state, draft.resolution_key, draft.payout = "won", settle_key, payout
                won = tuple(rest)
            if won:
                self.journal.resolutions.append(
                    ResolutionDraft(row, "won", settle_key, [k for k, _ in won], [p for _, p in won])
                )
        for key in decision.tombstones:
            tentative[key] = _TOMBSTONE
            self.journal.bets[(row_id, key)] = BetDraft(
                row, key, "tombstone", 0, command.round_ref, command.game_ref, settle_key
            )
        return decision.result, tx_index

    def rebase(self) -> bool:
        """Carry the plan onto the committed balances of now (see the engine's pipelining).

        House balances may have moved since the plan was evaluated (the batch in flight
        then has landed); no decision read them, so their lines shift by the difference.
        A player's balance cannot have moved (no account is in two batches at once); if it
        did, say so (False) and the batch is evaluated again.
        """
        offsets: dict[int, int] = {}
        for row_id, (row, balance, bonus, status) in self.journal.balances.items():
            offset = row.withdrawable - self.base[row_id]
            if offset:
                if row.kind != "system":
                    return False
                offsets[row_id] = offset
                self.balance[row_id] = balance + offset
                self.journal.balances[row_id] = (row, balance + offset, bonus, status)
        if offsets:
            for draft in self.journal.transactions:
                draft.lines = [
                    (row, bucket, amount, after + offsets.get(id(row), 0)) for row, bucket, amount, after in draft.lines
                ]
        for row_id in offsets:
            self.base[row_id] += offsets[row_id]
        return True

    def advance(self, receipt: CommitReceipt | None) -> None:
        """The batch is committed: make its rows the new committed state (before the next
        batch is prepared for writing, which reads their versions and hash chain heads)."""
        heads = receipt.heads if receipt is not None else {}
        for row, balance, _bonus, status in self.journal.balances.values():
            row.withdrawable, row.status = balance, status
        for row in [*self.created.values(), *(r for r, *_ in self.journal.balances.values())]:
            if id(row) in heads:
                row.account_id, row.version, row.last_hash = heads[id(row)]
        for key, row in self.created.items():
            if row.kind == "system":
                self.houses[key] = row
            elif key in self.accounts:
                self.accounts[key].row = row

    def answer(self) -> None:
        """Then answer, and remember the keys and bets (may overlap the next write)."""
        for account, pending, result, response in self.answers:
            if response is not None:
                command = pending.command
                remember(account.records, command.idempotency_key, cache_entry(command.request_hash(), response))
                result = Result.from_record(response, replayed=result.replayed, audited=id(pending) in self.audited)
            answer(pending, result)
        for row_id, bets in self.bets.items():
            if bets:
                remember_all(self.owner_of[row_id].bets, bets)
