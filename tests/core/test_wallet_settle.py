"""The settle command: validation, fingerprint, wire and record forms, and its rules."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from core.errors import ProtocolError
from core.wallet import (
    MAX_SETTLE_PAYOUTS,
    AccountStatus,
    AccountView,
    BetState,
    Command,
    CommandKind,
    Result,
    ResultCode,
    decide,
    decide_settlement,
    split_skipped,
)

OP = "op-test"


def settle(payouts: Any, *, amount: int | None = None, **kw: Any) -> Command:
    """A settle of round r1 by alice in EUR (``amount`` defaults to the payouts' sum)."""
    if amount is None:
        amount = sum(p for _, p in payouts)
    fields: dict[str, Any] = {"round_ref": "r1", "game_ref": "keno:t1", "idempotency_key": "settle:r1"}
    fields.update(kw)
    return Command(CommandKind.SETTLE, OP, "alice", str(fields.pop("currency", "EUR")), amount=amount, payouts=payouts, **fields)


ACTIVE = AccountView("EUR", AccountStatus.ACTIVE, 1000)


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payouts", "kw", "message"),
    [
        ((("k1", 5),), {"round_ref": None}, "round_ref"),
        ((("k1", 5),), {"reference": "k1"}, "reference"),
        ((("k1", 5),), {"idempotency_key": ""}, "idempotency_key"),
        ((), {}, "1 to"),
        ((("k1", 5),), {"amount": 6}, "not the sum"),
        ((("k1", 5), ("k1", 0)), {}, "at most once"),
        ((("k1", -1), ("k2", 1)), {"amount": 0}, "negative"),
        ((("k1", 1.5),), {"amount": 1}, "integer"),
        ((("k1", True),), {"amount": 1}, "integer"),
        ((("", 1),), {}, "bet key"),
        ((("x" * 129, 1),), {}, "bet key"),
        ((("k1", 1, 2),), {"amount": 1}, "pair"),
        (("k1",), {"amount": 0}, "pair"),
        ((("k1", 10**38),), {"amount": 10**38}, "38-digit"),
    ],
)
def test_invalid_settlements_are_refused(payouts: Any, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        settle(payouts, **kw)


def test_too_many_payouts_are_refused() -> None:
    payouts = tuple((f"k{i}", 0) for i in range(MAX_SETTLE_PAYOUTS + 1))
    with pytest.raises(ProtocolError, match="1 to"):
        settle(payouts)
    assert len(settle(payouts[:MAX_SETTLE_PAYOUTS]).payouts) == MAX_SETTLE_PAYOUTS


def test_only_a_settle_carries_payouts() -> None:
    with pytest.raises(ProtocolError, match="only a settle"):
        Command(CommandKind.WIN, OP, "alice", "EUR", "w1", 5, reference="b1", payouts=(("b1", 5),))


def test_payouts_given_as_lists_become_tuples() -> None:
    command = settle([["k1", 5], ["k2", 0]])
    assert command.payouts == (("k1", 5), ("k2", 0))


# -- fingerprint, wire, record ------------------------------------------------------------


def test_request_hash_covers_payouts_but_not_their_order() -> None:
    base = settle((("k1", 5), ("k2", 0)))
    assert base.request_hash() == settle((("k2", 0), ("k1", 5))).request_hash()
    assert base.request_hash() != settle((("k1", 4), ("k2", 1))).request_hash()
    assert base.request_hash() != settle((("k1", 5), ("k3", 0))).request_hash()
    # Length-prefixed keys: without them both lists would read "a15;b15;".
    assert settle((("a1", 5), ("b", 15))).request_hash() != settle((("a", 15), ("b1", 5))).request_hash()


def test_commands_without_payouts_hash_as_they_always_did() -> None:
    """Stored records of earlier commands must keep matching their repeats."""
    command = Command(CommandKind.WIN, OP, "alice", "EUR", "w1", 50, reference="b1", round_ref="r1")
    legacy = "\x1f".join(["win", OP, "alice", "EUR", "50", "b1", "r1", ""])
    assert command.request_hash() == hashlib.sha256(legacy.encode()).digest()


@pytest.mark.parametrize("big", [False, True])
def test_settle_round_trips_the_wire(big: bool) -> None:
    scale = 10**21 if big else 1  # ETH in wei passes 2**63
    command = settle((("k1", 5 * scale), ("k2", 0), ("k3", 7 * scale)), currency="ETH" if big else "EUR")
    wire = command.to_wire()
    assert len(wire) == 11
    if big:
        assert all(isinstance(p, str) for _, p in wire[10])
    again = Command.from_wire(wire)
    assert again == command and again.request_hash() == command.request_hash()


def test_commands_without_payouts_keep_the_ten_item_wire() -> None:
    command = Command(CommandKind.BET, OP, "alice", "EUR", "b1", 5)
    assert len(command.to_wire()) == 10
    assert Command.from_wire(command.to_wire()) == command


def test_skipped_travels_through_record_and_wire() -> None:
    result = Result(ResultCode.OK, 2**70, "ETH", 7, message="m", skipped=("a=already_resolved", "b=rolled_back"))
    record = result.to_record()
    assert record["skipped"] == ["a=already_resolved", "b=rolled_back"]
    assert Result.from_record(record, replayed=False) == result
    assert Result.from_wire(result.to_wire()) == result
    plain = Result(ResultCode.OK, 5, "EUR")
    assert "skipped" not in plain.to_record() and len(plain.to_wire()) == 6
    assert Result.from_wire(plain.to_wire()) == plain


def test_split_skipped_reads_the_reason_after_the_last_equals_sign() -> None:
    assert split_skipped("keno:7=already_resolved") == ("keno:7", ResultCode.ALREADY_RESOLVED)
    assert split_skipped("a=b=unknown_reference") == ("a=b", ResultCode.UNKNOWN_REFERENCE)


# -- the rules ----------------------------------------------------------------------------


def test_open_bets_are_won_and_the_rest_skipped() -> None:
    command = settle((("open", 30), ("zero", 0), ("won", 5), ("back", 6), ("tomb", 7), ("ghost", 8)))
    states = {
        "open": BetState.OPEN,
        "zero": BetState.OPEN,
        "won": BetState.WON,
        "back": BetState.ROLLED_BACK,
        "tomb": BetState.TOMBSTONE,
        "ghost": None,
    }
    decision = decide_settlement(command, ACTIVE, states)
    assert decision.result.code is ResultCode.OK
    assert decision.credit == 30 and decision.moves_money
    assert decision.result.balance == 1030
    assert decision.won == (("open", 30), ("zero", 0))
    assert decision.tombstones == ("ghost",)
    assert [split_skipped(s) for s in decision.result.skipped] == [
        ("won", ResultCode.ALREADY_RESOLVED),
        ("back", ResultCode.ROLLED_BACK),
        ("tomb", ResultCode.ROLLED_BACK),
        ("ghost", ResultCode.UNKNOWN_REFERENCE),
    ]


def test_a_missing_key_counts_as_unknown() -> None:
    decision = decide_settlement(settle((("k1", 3),)), ACTIVE, {})
    assert decision.tombstones == ("k1",) and decision.credit == 0


def test_zero_total_moves_no_money_but_closes_the_bets() -> None:
    decision = decide_settlement(settle((("k1", 0), ("k2", 0))), ACTIVE, {"k1": BetState.OPEN, "k2": BetState.OPEN})
    assert not decision.moves_money and decision.credit == 0
    assert decision.won == (("k1", 0), ("k2", 0))
    assert decision.result.ok and decision.result.balance == 1000


def test_a_locked_account_is_still_settled() -> None:
    locked = AccountView("EUR", AccountStatus.LOCKED, 10)
    decision = decide_settlement(settle((("k1", 5),)), locked, {"k1": BetState.OPEN})
    assert decision.result.ok and decision.result.balance == 15


def test_refusals_of_the_whole_command() -> None:
    assert decide_settlement(settle((("k1", 5),)), None, {}).result.code is ResultCode.UNKNOWN_ACCOUNT
    usd = decide_settlement(settle((("k1", 5),), currency="USD"), ACTIVE, {"k1": BetState.OPEN})
    assert usd.result.code is ResultCode.CURRENCY_MISMATCH and not usd.won and not usd.tombstones


def test_settle_is_not_decided_one_bet_at_a_time() -> None:
    with pytest.raises(ProtocolError, match="decide_settlement"):
        decide(settle((("k1", 5),)), ACTIVE, None)
    assert decide(settle((("k1", 5),)), None, None).result.code is ResultCode.UNKNOWN_ACCOUNT
    with pytest.raises(ProtocolError):
        decide_settlement(Command(CommandKind.BET, OP, "alice", "EUR", "b1", 5), ACTIVE, {})


def test_eth_sized_payouts_are_exact() -> None:
    wei = 10**18
    payouts = (("k1", 12 * wei + 1), ("k2", 3 * wei))
    eth = AccountView("ETH", AccountStatus.ACTIVE, 2**64)
    decision = decide_settlement(settle(payouts, currency="ETH"), eth, {"k1": BetState.OPEN, "k2": BetState.OPEN})
    assert decision.credit == 15 * wei + 1
    assert decision.result.balance == 2**64 + 15 * wei + 1
