"""Double-entry postings and the per-account hash chain.

Every money event is one transaction of lines that sum to zero per asset. The player's
line is mirrored by a line on a house account of the same operator, currency and
partition: the house is split per partition so that one shard owns each house account
and writes to it stay serialised without a global hot row.

Each line extends its account's hash chain: ``hash = sha256(prev_hash || line)``. A
verifier can recompute every chain from the lines alone and compare the heads with the
accounts, so an edited or deleted line is evident.
"""

from __future__ import annotations

import enum
import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from core.errors import LedgerError
from core.wallet import CommandKind

__all__ = [
    "GENESIS_HASH",
    "HouseAccount",
    "Line",
    "assert_balanced",
    "house_account_for",
    "house_player_id",
    "line_hash",
]

GENESIS_HASH = bytes(32)


class HouseAccount(enum.Enum):
    GAME = "game"  # the other side of bets, wins and rollbacks
    TRANSFER = "transfer"  # the other side of operator transfers in and out


def house_account_for(kind: CommandKind) -> HouseAccount:
    if kind in (CommandKind.TRANSFER_IN, CommandKind.TRANSFER_OUT):
        return HouseAccount.TRANSFER
    return HouseAccount.GAME


def house_player_id(house: HouseAccount, currency: str, partition: int) -> str:
    """The reserved id of a house account ('~' cannot start a player id)."""
    return f"~{house.value}:{currency}:{partition}"


@dataclass(frozen=True, slots=True)
class Line:
    tx_id: int
    line_no: int
    account_id: int
    asset: str
    bucket: str
    amount: int
    balance_after: int
    account_seq: int


def line_hash(prev_hash: bytes, line: Line) -> bytes:
    payload = (
        f"{line.tx_id}|{line.line_no}|{line.account_id}|{line.asset}|{line.bucket}|"
        f"{line.amount}|{line.balance_after}|{line.account_seq}"
    ).encode()
    return hashlib.sha256(prev_hash + payload).digest()


def assert_balanced(lines: Iterable[Line]) -> None:
    totals: dict[tuple[int, str], int] = defaultdict(int)
    for line in lines:
        totals[(line.tx_id, line.asset)] += line.amount
    unbalanced = {key: total for key, total in totals.items() if total != 0}
    if unbalanced:
        raise LedgerError(f"unbalanced transactions (tx, asset -> sum): {unbalanced}")
