"""The internal wallet protocol: commands, results and the rules that decide them.

Every dialect (Hub88, SoftSwiss, the operator API, the Keno settler) speaks this protocol
to the account actors. :func:`decide` is the whole rulebook, pure and synchronous: given
an account's state, the referenced bet and the command, it returns what happens. The
account shard journals the decision before anyone hears the result.

Rules (DESIGN.md, "Seamless-wallet rules"):

* A bet opens and debits; exactly one win (amount >= 0) or one rollback closes it.
* A win or rollback after the bet was resolved is refused and changes nothing.
* A rollback of an unknown bet is acknowledged and leaves a tombstone, so the bet, if it
  arrives late, is refused instead of debited.
* A repeat of a command (same key, same content) returns the stored original response;
  the same key with different content is refused. Refusals are stored too: a retry of a
  command that failed for insufficient funds fails the same way.
* Locked accounts cannot bet; wins, rollbacks, settlements and transfers still reach them.

Settlement (:func:`decide_settlement`): the Keno settler closes a round with ONE ``settle``
command per (account, round) instead of one win per ticket, because one ledger transaction
and one idempotency record per ticket cannot settle 100,000 tickets within a round's
two-second budget. It lists (bet key, payout) pairs: each open bet becomes won with its
payout (a payout of 0 still closes it), the credited total is one ledger transaction (none
when it is 0), and a bet that cannot be paid is skipped and named in ``Result.skipped``:

* ``"<bet key>=already_resolved"``: the bet already has its win;
* ``"<bet key>=rolled_back"``: the bet was rolled back (or tombstoned);
* ``"<bet key>=unknown_reference"``: the account has no such bet; a tombstone is left, so a
  late bet under that key is refused, exactly as after a rollback of an unknown bet.

The reason is after the last ``=`` (reasons are :class:`ResultCode` values and contain no
``=``); :func:`split_skipped` parses an entry.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

from core.errors import LifecycleError, ProtocolError
from core.money import check_minor, currency

__all__ = [
    "MAX_SETTLE_PAYOUTS",
    "TRANSIENT_CODES",
    "AccountStatus",
    "AccountView",
    "BetState",
    "BetView",
    "CallbackNote",
    "Command",
    "CommandKind",
    "Decision",
    "Result",
    "ResultCode",
    "SettlementDecision",
    "decide",
    "decide_settlement",
    "split_skipped",
]


class CommandKind(enum.Enum):
    OPEN = "open"  # register the player's account in a currency (idempotent by identity)
    BALANCE = "balance"
    BET = "bet"
    WIN = "win"
    ROLLBACK = "rollback"
    TRANSFER_IN = "transfer_in"  # operator funds the player
    TRANSFER_OUT = "transfer_out"  # operator withdraws for the player
    SET_STATUS = "set_status"  # lock / unlock
    SETTLE = "settle"  # close many of one account's bets of a round at once (one transaction)

    @property
    def keyed(self) -> bool:
        """Does this command need an idempotency key (does it move money)?"""
        return self not in (CommandKind.OPEN, CommandKind.BALANCE, CommandKind.SET_STATUS)


class ResultCode(enum.Enum):
    OK = "ok"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    DUPLICATE_MISMATCH = "duplicate_mismatch"  # same key, different content
    UNKNOWN_REFERENCE = "unknown_reference"
    ALREADY_RESOLVED = "already_resolved"
    ROLLED_BACK = "rolled_back"
    ACCOUNT_LOCKED = "account_locked"
    CURRENCY_MISMATCH = "currency_mismatch"
    LIMIT_EXCEEDED = "limit_exceeded"
    UNKNOWN_ACCOUNT = "unknown_account"
    BUSY = "busy"  # overloaded: retry later with the same key
    UNAVAILABLE = "unavailable"  # storage or shard down: retry later with the same key


# Never journaled: the command did not happen, and a retry under the same key may succeed.
TRANSIENT_CODES = frozenset({ResultCode.BUSY, ResultCode.UNAVAILABLE})


class AccountStatus(enum.Enum):
    ACTIVE = "active"
    LOCKED = "locked"


class BetState(enum.Enum):
    OPEN = "open"
    WON = "won"
    ROLLED_BACK = "rolled_back"
    TOMBSTONE = "tombstone"  # rolled back before the bet arrived

    def check_transition(self, to: BetState) -> None:
        if to not in _BET_TRANSITIONS[self]:
            raise LifecycleError(f"bet cannot go from {self.value} to {to.value}")


# A bet is born OPEN (by a bet) or TOMBSTONE (by a rollback that came first).
_BET_TRANSITIONS: dict[BetState, frozenset[BetState]] = {
    BetState.OPEN: frozenset({BetState.WON, BetState.ROLLED_BACK}),
    BetState.WON: frozenset(),
    BetState.ROLLED_BACK: frozenset(),
    BetState.TOMBSTONE: frozenset(),
}

_MAX_TEXT = 128

# Payouts per settle command. Bounded so that one command (its request, its stored record
# of skipped keys, its share of a group commit) stays small; a settler with more tickets
# for one account in one round sends several commands under distinct keys.
MAX_SETTLE_PAYOUTS = 10_000


def _text(value: object, what: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT:
        raise ProtocolError(f"{what} must be a non-empty string of at most {_MAX_TEXT} characters")
    return value


@dataclass(frozen=True, slots=True)
class CallbackNote:
    """Which provider callback a command runs for, so the shard can write the callback's
    record in the same transaction as the command's effects (``Result.audited``).

    Not part of the command's content: a provider's retry of the same request is the same
    command whatever its request id or body digest (it is answered from the stored record).
    """

    provider_id: str
    endpoint: str
    request_id: str | None
    body_sha256: bytes

    def to_wire(self) -> list[Any]:
        return [self.provider_id, self.endpoint, self.request_id, self.body_sha256]

    @classmethod
    def from_wire(cls, wire: list[Any]) -> CallbackNote:
        provider_id, endpoint, request_id, digest = wire
        if not (
            isinstance(provider_id, str)
            and isinstance(endpoint, str)
            and (request_id is None or isinstance(request_id, str))
            and isinstance(digest, bytes)
        ):
            raise ProtocolError("malformed callback note")
        return cls(provider_id, endpoint, request_id, digest)


@dataclass(frozen=True, slots=True)
class Command:
    kind: CommandKind
    operator_id: str
    player_id: str
    currency: str
    idempotency_key: str = ""
    amount: int = 0
    reference: str | None = None  # the bet a win or rollback resolves
    round_ref: str | None = None
    game_ref: str | None = None
    status: AccountStatus | None = None  # SET_STATUS only
    # SETTLE only: (bet key, payout in minor units >= 0) per ticket; amount is their sum
    payouts: tuple[tuple[str, int], ...] = ()
    # the provider callback this command runs for (seamless wallet only; not content)
    callback: CallbackNote | None = field(default=None, compare=False)
    _hash: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, CommandKind):
            raise ProtocolError(f"unknown command kind {self.kind!r}")
        _text(self.operator_id, "operator_id")
        _text(self.player_id, "player_id")
        if self.player_id.startswith("~"):
            raise ProtocolError("player_id must not start with '~' (reserved for house accounts)")
        currency(self.currency)
        check_minor(self.amount, what=f"{self.kind.value} amount")
        if self.kind.keyed:
            _text(self.idempotency_key, "idempotency_key")
        if self.kind in (CommandKind.WIN, CommandKind.ROLLBACK):
            _text(self.reference, "reference (the bet being resolved)")
        else:
            _text(self.reference, "reference", required=False)
        if self.kind is CommandKind.SETTLE:
            self._check_settlement()
        elif self.payouts:
            raise ProtocolError("only a settle command carries payouts")
        _text(self.round_ref, "round_ref", required=False)
        _text(self.game_ref, "game_ref", required=False)
        if self.kind is CommandKind.ROLLBACK and self.amount != 0:
            raise ProtocolError("a rollback refunds the bet's own amount; do not send one")
        if self.kind is CommandKind.SET_STATUS and not isinstance(self.status, AccountStatus):
            raise ProtocolError("set_status needs a status (active or locked)")

    def _check_settlement(self) -> None:
        """A settle names its round, resolves its own listed bets (no ``reference``) and
        its ``amount`` is the sum of the payouts, so a garbled list cannot go unnoticed."""
        _text(self.round_ref, "round_ref (the round being settled)")
        if self.reference is not None:
            raise ProtocolError("a settle lists its bets in payouts; do not send a reference")
        payouts = self.payouts
        if not isinstance(payouts, tuple):
            if not isinstance(payouts, list):
                raise ProtocolError("payouts must be a sequence of (bet key, payout) pairs")
            payouts = tuple(tuple(p) if isinstance(p, list) else p for p in payouts)
            object.__setattr__(self, "payouts", payouts)
        if not 1 <= len(payouts) <= MAX_SETTLE_PAYOUTS:
            raise ProtocolError(f"a settle carries 1 to {MAX_SETTLE_PAYOUTS} payouts, got {len(payouts)}")
        # Checked with C-level passes (map, set, sum): this runs for every ticket of a
        # round, on the caller's side and again where the shard decodes the wire. Only an
        # invalid list goes through the slow loop, which names the offending pair.
        if (
            set(map(type, payouts)) != {tuple}
            or set(map(len, payouts)) != {2}
            or set(map(type, keys := [k for k, _ in payouts])) != {str}
            or min(map(len, keys)) == 0
            or max(map(len, keys)) > _MAX_TEXT
            or set(map(type, amounts := [a for _, a in payouts])) != {int}  # no bool, no float
            or min(amounts) < 0
        ):
            self._explain_payouts()
        if len(set(keys)) != len(keys):
            raise ProtocolError("a settle lists each bet key at most once")
        total = sum(amounts)
        if total != self.amount:
            raise ProtocolError(f"settle amount {self.amount} is not the sum of its payouts ({total})")

    def _explain_payouts(self) -> NoReturn:
        for pair in self.payouts:
            if type(pair) is not tuple or len(pair) != 2:
                raise ProtocolError("each payout must be a (bet key, payout) pair")
            key, payout = pair
            if type(key) is not str or not key or len(key) > _MAX_TEXT:
                raise ProtocolError(f"a payout's bet key must be a non-empty string of at most {_MAX_TEXT} characters")
            if type(payout) is not int:  # excludes bool and float
                raise ProtocolError(f"payout for {key!r} must be an integer number of minor units")
            if payout < 0:
                raise ProtocolError(f"payout for {key!r} must not be negative")
        raise ProtocolError("payouts must be (bet key, payout >= 0) pairs")  # pragma: no cover

    @property
    def account_key(self) -> tuple[str, str]:
        return (self.operator_id, self.player_id)

    def request_hash(self) -> bytes:
        """Fingerprint of the content, to tell a repeat from a reuse of the key."""
        if self._hash is None:
            object.__setattr__(self, "_hash", self._compute_hash())
        assert self._hash is not None
        return self._hash

    def _compute_hash(self) -> bytes:
        canonical = "\x1f".join(
            str(part)
            for part in (
                self.kind.value,
                self.operator_id,
                self.player_id,
                self.currency,
                self.amount,
                self.reference or "",
                self.round_ref or "",
                self.game_ref or "",
            )
        )
        if self.payouts:
            # Length-prefixed keys, so no key can fake a separator; sorted, so the same
            # settlement listed in another order is the same request.
            canonical += "\x1f" + "".join([f"{len(k)}:{k}{v};" for k, v in sorted(self.payouts)])
        # Commands without payouts hash exactly as before payouts existed: their stored
        # records must keep matching their repeats.
        return hashlib.sha256(canonical.encode()).digest()

    def to_wire(self) -> list[Any]:
        wire: list[Any] = [
            self.kind.value,
            self.operator_id,
            self.player_id,
            self.currency,
            self.idempotency_key,
            # msgpack carries 64-bit integers; wei amounts can be larger
            self.amount if self.amount < 2**63 else str(self.amount),
            self.reference,
            self.round_ref,
            self.game_ref,
            None if self.status is None else self.status.value,
        ]
        if self.payouts or self.callback is not None:
            # Appended only when present: a command without them keeps the 10-item form
            # that shards of earlier versions read. No payout exceeds their sum.
            wire.append(self.payouts if self.amount < 2**63 else [(k, str(p)) for k, p in self.payouts])
        if self.callback is not None:
            wire.append(self.callback.to_wire())
        return wire

    @classmethod
    def from_wire(cls, wire: list[Any]) -> Command:
        kind, op, player, cur, key, amount, ref, round_ref, game_ref, status, *rest = wire
        payouts: tuple[tuple[str, int], ...] = ()
        if rest and rest[0]:
            # Payouts are integers on the wire unless the amount is (then all are strings).
            if isinstance(amount, str):
                payouts = tuple((k, int(p)) for k, p in rest[0])
            else:
                payouts = tuple(map(tuple, rest[0]))
        callback = CallbackNote.from_wire(rest[1]) if len(rest) > 1 else None
        return cls(
            CommandKind(kind),
            op,
            player,
            cur,
            key,
            int(amount),
            ref,
            round_ref,
            game_ref,
            None if status is None else AccountStatus(status),
            payouts,
            callback,
        )


@dataclass(frozen=True, slots=True)
class Result:
    code: ResultCode
    balance: int | None = None  # withdrawable balance after the command (or now)
    currency: str | None = None
    tx_id: int | None = None
    replayed: bool = False  # answered from the stored record of an earlier identical command
    message: str = ""
    # SETTLE only: "<bet key>=<reason>" per listed bet that was not paid (module docstring)
    skipped: tuple[str, ...] = ()
    # the command's callback record was committed with it (see CallbackNote)
    audited: bool = False

    @property
    def ok(self) -> bool:
        return self.code is ResultCode.OK

    def to_record(self) -> dict[str, Any]:
        """What is journaled under the idempotency key (the original response)."""
        record: dict[str, Any] = {
            "code": self.code.value,
            "balance": None if self.balance is None else str(self.balance),
            "currency": self.currency,
            "tx_id": self.tx_id,
            "message": self.message,
        }
        if self.skipped:  # absent otherwise: records of other commands keep their shape
            record["skipped"] = list(self.skipped)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any], *, replayed: bool = True, audited: bool = False) -> Result:
        balance = record.get("balance")
        return cls(
            ResultCode(record["code"]),
            None if balance is None else int(balance),
            record.get("currency"),
            record.get("tx_id"),
            replayed,
            record.get("message", ""),
            tuple(record.get("skipped", ())),
            audited,
        )

    def to_wire(self) -> list[Any]:
        # Balances can exceed 64 bits (ETH in wei): send them as decimal strings.
        wire: list[Any] = [
            self.code.value,
            None if self.balance is None else str(self.balance),
            self.currency,
            self.tx_id,
            self.replayed,
            self.message,
        ]
        if self.skipped or self.audited:  # appended only when present: the 6-item form stays readable
            wire.append(list(self.skipped))
        if self.audited:
            wire.append(True)
        return wire

    @classmethod
    def from_wire(cls, wire: list[Any]) -> Result:
        code, balance, cur, tx_id, replayed, message, *rest = wire
        skipped = tuple(rest[0]) if rest else ()
        audited = len(rest) > 1 and rest[1] is True
        return cls(
            ResultCode(code), None if balance is None else int(balance), cur, tx_id, replayed, message, skipped,
            audited,
        )


@dataclass(frozen=True, slots=True)
class AccountView:
    currency: str
    status: AccountStatus
    balance: int  # withdrawable


@dataclass(frozen=True, slots=True)
class BetView:
    state: BetState
    amount: int


@dataclass(frozen=True, slots=True)
class Decision:
    """What a command does: its result, the player's balance change and the bet's new state."""

    result: Result
    delta: int = 0  # change of the player's withdrawable balance; the house side mirrors it
    moves_money: bool = False  # a ledger transaction is written (even for a zero amount)
    bet_state: BetState | None = None  # new state of the bet this command touches
    bet_amount: int = 0
    status: AccountStatus | None = None


@dataclass(frozen=True, slots=True)
class SettlementDecision:
    """What a settle does: its result, the credit and the bets it closes.

    ``won`` keeps the command's order; the shard journals each as WON with its payout and
    the ledger transaction (when ``credit`` > 0) as one credit of the total.
    """

    result: Result
    credit: int = 0  # sum of the payouts of the bets that become WON
    won: tuple[tuple[str, int], ...] = ()  # (bet key, payout): OPEN -> WON
    tombstones: tuple[str, ...] = ()  # unknown keys: a TOMBSTONE is left under each

    @property
    def moves_money(self) -> bool:
        """A zero total writes no ledger transaction: there is nothing to post."""
        return self.credit > 0


def split_skipped(entry: str) -> tuple[str, ResultCode]:
    """``"keno:7=already_resolved"`` -> ``("keno:7", ResultCode.ALREADY_RESOLVED)``."""
    key, _, reason = entry.rpartition("=")
    return key, ResultCode(reason)


def _refuse(code: ResultCode, account: AccountView, message: str) -> Decision:
    return Decision(Result(code, account.balance, account.currency, message=message))


def decide(command: Command, account: AccountView | None, bet: BetView | None) -> Decision:
    """Apply the wallet rules. ``bet`` is the bet the command names: for a bet its own key,
    for a win or rollback its reference. Idempotency is settled before this is called."""
    if account is None:
        return Decision(Result(ResultCode.UNKNOWN_ACCOUNT, message="no such player account"))
    kind = command.kind
    if kind is CommandKind.OPEN:
        if command.currency != account.currency:
            return _refuse(
                ResultCode.CURRENCY_MISMATCH, account, f"account is in {account.currency}"
            )
        return Decision(Result(ResultCode.OK, account.balance, account.currency))
    if command.currency != account.currency:
        return _refuse(
            ResultCode.CURRENCY_MISMATCH,
            account,
            f"account is in {account.currency}, command in {command.currency}",
        )
    if kind is CommandKind.BALANCE:
        return Decision(Result(ResultCode.OK, account.balance, account.currency))
    if kind is CommandKind.SET_STATUS:
        assert command.status is not None
        return Decision(Result(ResultCode.OK, account.balance, account.currency), status=command.status)
    if kind is CommandKind.BET:
        return _decide_bet(command, account, bet)
    if kind is CommandKind.WIN:
        return _decide_win(command, account, bet)
    if kind is CommandKind.ROLLBACK:
        return _decide_rollback(account, bet)
    if kind is CommandKind.TRANSFER_IN:
        return _move(account, command.amount)
    if kind is CommandKind.TRANSFER_OUT:
        if account.balance < command.amount:
            return _refuse(ResultCode.INSUFFICIENT_FUNDS, account, "balance too low to withdraw")
        return _move(account, -command.amount)
    if kind is CommandKind.SETTLE:
        raise ProtocolError("a settle touches many bets: decide it with decide_settlement")
    raise ProtocolError(f"unhandled command kind {kind}")  # pragma: no cover


def _move(account: AccountView, delta: int, **bet: Any) -> Decision:
    balance = account.balance + delta
    return Decision(Result(ResultCode.OK, balance, account.currency), delta, True, **bet)


def _decide_bet(command: Command, account: AccountView, bet: BetView | None) -> Decision:
    if bet is not None:
        # Same key already seen would have been answered from its record; what is left
        # is a tombstone: the bet was rolled back before it arrived.
        return _refuse(ResultCode.ROLLED_BACK, account, "this bet was already rolled back")
    if account.status is AccountStatus.LOCKED:
        return _refuse(ResultCode.ACCOUNT_LOCKED, account, "account is locked")
    if account.balance < command.amount:
        return _refuse(ResultCode.INSUFFICIENT_FUNDS, account, "balance too low for this bet")
    return _move(account, -command.amount, bet_state=BetState.OPEN, bet_amount=command.amount)


def _decide_win(command: Command, account: AccountView, bet: BetView | None) -> Decision:
    if bet is None:
        return _refuse(ResultCode.UNKNOWN_REFERENCE, account, "no such bet")
    if bet.state in (BetState.ROLLED_BACK, BetState.TOMBSTONE):
        return _refuse(ResultCode.ROLLED_BACK, account, "the bet was rolled back")
    if bet.state is BetState.WON:
        return _refuse(ResultCode.ALREADY_RESOLVED, account, "the bet already has its win")
    bet.state.check_transition(BetState.WON)
    return _move(account, command.amount, bet_state=BetState.WON, bet_amount=bet.amount)


def _decide_rollback(account: AccountView, bet: BetView | None) -> Decision:
    if bet is None:
        return Decision(
            Result(ResultCode.OK, account.balance, account.currency, message="unknown bet: remembered"),
            bet_state=BetState.TOMBSTONE,
        )
    if bet.state is BetState.WON:
        return _refuse(ResultCode.ALREADY_RESOLVED, account, "the bet already has its win")
    if bet.state in (BetState.ROLLED_BACK, BetState.TOMBSTONE):
        return _refuse(ResultCode.ROLLED_BACK, account, "the bet was already rolled back")
    bet.state.check_transition(BetState.ROLLED_BACK)
    return _move(account, bet.amount, bet_state=BetState.ROLLED_BACK, bet_amount=bet.amount)



_SKIP_WON = "=" + ResultCode.ALREADY_RESOLVED.value
_SKIP_ROLLED_BACK = "=" + ResultCode.ROLLED_BACK.value
_SKIP_UNKNOWN = "=" + ResultCode.UNKNOWN_REFERENCE.value


def decide_settlement(
    command: Command, account: AccountView | None, bets: Mapping[str, BetState | None]
) -> SettlementDecision:
    """Settle the listed bets of one account. ``bets`` holds the current state of every
    listed key (None or missing: the account has no such bet). Idempotency is settled
    before this is called. Locked accounts are settled too: a lock stops new bets, not the
    payment of bets already placed."""
    if command.kind is not CommandKind.SETTLE:
        raise ProtocolError(f"decide_settlement got a {command.kind.value} command")
    if account is None:
        return SettlementDecision(Result(ResultCode.UNKNOWN_ACCOUNT, message="no such player account"))
    if command.currency != account.currency:
        return SettlementDecision(
            Result(
                ResultCode.CURRENCY_MISMATCH,
                account.balance,
                account.currency,
                message=f"account is in {account.currency}, command in {command.currency}",
            )
        )
    won: list[tuple[str, int]] = []
    tombstones: list[str] = []
    skipped: list[str] = []
    credit = 0
    # One pass, no per-bet objects: a round of 100,000 tickets runs through this loop.
    for pair in command.payouts:
        key = pair[0]
        state = bets.get(key)
        if state is BetState.OPEN:
            won.append(pair)
            credit += pair[1]
        elif state is None:
            tombstones.append(key)
            skipped.append(key + _SKIP_UNKNOWN)
        elif state is BetState.WON:
            skipped.append(key + _SKIP_WON)
        else:  # ROLLED_BACK, TOMBSTONE
            skipped.append(key + _SKIP_ROLLED_BACK)
    balance = account.balance + credit
    message = f"{len(won)} bet(s) settled" + (f", {len(skipped)} skipped" if skipped else "")
    return SettlementDecision(
        Result(ResultCode.OK, balance, account.currency, message=message, skipped=tuple(skipped)),
        credit,
        tuple(won),
        tuple(tombstones),
    )
