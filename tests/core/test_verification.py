"""``verify_round`` against a chain held in memory: which check fails for which lie.

The chain here is a table of transactions and blocks, so each case states exactly what
the chain says; the same checks against the real dev chain are in
tests/actors/test_table_runner.py and tests/cli/test_verify_cli.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.errors import RgsError
from core.fairness import commitment, draw
from core.merkle import MerkleTree, commit_leaf, reveal_leaf
from core.verification import COMMIT_KIND, REVEAL_KIND, verify_round

NOTARY = "0x" + "ab" * 20
ROUND = "keno-1-101"
SEED = hashlib.sha256(b"a server seed").hexdigest()
OPENS_S, CLOSES_S = 1010, 1019
COMMIT_TX, LATE_COMMIT_TX, REVEAL_TX = "0x" + "c1" * 32, "0x" + "c2" * 32, "0x" + "e1" * 32
COMMIT_BLOCK, LATE_COMMIT_BLOCK, SALT_BLOCK, REVEAL_BLOCK = 101, 104, 103, 105
# block number -> timestamp; block 103 is the first at or after the close (1019)
STAMPS = {100: 1000, 101: 1005, 102: 1015, 103: 1019, 104: 1020, 105: 1030}


class UnknownOnChain(RgsError):
    pass


@dataclass
class MemoryChain:
    """A ``core.verification.ChainView`` over fixed transactions and blocks."""

    transactions: dict[str, tuple[int, bytes, int, str]] = field(default_factory=dict)
    stamps: dict[int, int] = field(default_factory=lambda: dict(STAMPS))

    def batch_root(self, tx_hash: str) -> tuple[int, bytes, int, str]:
        if tx_hash not in self.transactions:
            raise UnknownOnChain(f"transaction {tx_hash} is unknown")
        return self.transactions[tx_hash]

    def block_times(self, number: int) -> tuple[str, int, int | None]:
        if number not in self.stamps:
            raise UnknownOnChain(f"block {number} is unknown")
        return _block_hash(number), self.stamps[number], self.stamps.get(number - 1)


def _block_hash(number: int) -> str:
    return "0x" + hashlib.sha256(f"block {number}".encode()).hexdigest()


def _published_round() -> tuple[dict[str, Any], MemoryChain]:
    """An honest revealed round, batched with other rounds' items as the notary does."""
    committed = commitment(SEED)
    commits = MerkleTree([commit_leaf("keno-1-100", "0" * 64), commit_leaf(ROUND, committed)])
    reveals = MerkleTree([reveal_leaf(ROUND, SEED), reveal_leaf("keno-1-100", "ff" * 32)])
    chain = MemoryChain(
        {
            COMMIT_TX: (COMMIT_KIND, commits.root, COMMIT_BLOCK, NOTARY),
            # the same commitment again, mined after betting opened
            LATE_COMMIT_TX: (COMMIT_KIND, commits.root, LATE_COMMIT_BLOCK, NOTARY),
            REVEAL_TX: (REVEAL_KIND, reveals.root, REVEAL_BLOCK, NOTARY),
        }
    )
    salt = _block_hash(SALT_BLOCK)
    record = {
        "round_id": ROUND,
        "phase": "revealed",
        "nonce": 101,
        "derivation": "v1",
        "opens_at": OPENS_S * 1000,
        "closes_at": CLOSES_S * 1000,
        "commitment": committed,
        "commit_tx": COMMIT_TX,
        "commit_proof": {"tx": COMMIT_TX, "block": COMMIT_BLOCK, "proof": commits.proof(1), "sender": NOTARY},
        "salt": salt,
        "salt_block": SALT_BLOCK,
        "numbers": list(draw(SEED, salt, 101, derivation="v1")),
        "revealed_seed": SEED,
        "reveal_tx": REVEAL_TX,
        "reveal_proof": {"tx": REVEAL_TX, "block": REVEAL_BLOCK, "proof": reveals.proof(0), "sender": NOTARY},
    }
    return record, chain


def _without_block(proof: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in proof.items() if k != "block"}


def _failed(record: dict[str, Any], chain: MemoryChain) -> set[str]:
    return {c.name for c in verify_round(record, chain) if not c.ok}


def test_honest_round_passes_every_check_in_order() -> None:
    record, chain = _published_round()
    checks = verify_round(record, chain)
    assert [c.name for c in checks] == [
        "revealed",
        "seed_matches_commitment",
        "commitment_on_chain",
        "committed_before_open",
        "salt_from_chain",
        "draw_replays",
        "reveal_on_chain",
    ]
    assert all(c.ok for c in checks), checks


def test_record_without_commit_block_is_checked_against_the_chain_block() -> None:
    record, chain = _published_round()
    record["commit_proof"] = _without_block(record["commit_proof"])
    checks = {c.name: c for c in verify_round(record, chain)}
    assert all(c.ok for c in checks.values()), checks
    assert f"commit block {COMMIT_BLOCK} at {STAMPS[COMMIT_BLOCK]}" in checks["committed_before_open"].detail


@pytest.mark.parametrize("states_block", [False, True])
def test_commit_mined_after_betting_opened_fails_committed_before_open(states_block: bool) -> None:
    record, chain = _published_round()
    proof = {**_without_block(record["commit_proof"]), "tx": LATE_COMMIT_TX}
    if states_block:
        proof["block"] = LATE_COMMIT_BLOCK
    record.update(commit_tx=LATE_COMMIT_TX, commit_proof=proof)
    assert _failed(record, chain) == {"committed_before_open"}
    [check] = [c for c in verify_round(record, chain) if c.name == "committed_before_open"]
    assert f"block {LATE_COMMIT_BLOCK} at {STAMPS[LATE_COMMIT_BLOCK]}" in check.detail


def test_a_record_cannot_claim_an_earlier_block_than_the_chain() -> None:
    record, chain = _published_round()
    record.update(
        commit_tx=LATE_COMMIT_TX,
        commit_proof={**record["commit_proof"], "tx": LATE_COMMIT_TX, "block": COMMIT_BLOCK},
    )
    assert _failed(record, chain) == {"commitment_on_chain", "committed_before_open"}


def test_commit_block_that_cannot_be_read_fails_instead_of_being_skipped() -> None:
    record, chain = _published_round()
    record["commit_proof"] = _without_block(record["commit_proof"])
    del chain.stamps[COMMIT_BLOCK]
    checks = {c.name: c for c in verify_round(record, chain)}
    assert not checks["committed_before_open"].ok
    assert f"block {COMMIT_BLOCK}" in checks["committed_before_open"].detail
    assert {n for n, c in checks.items() if not c.ok} == {"committed_before_open"}


def test_unknown_commit_transaction_fails_both_commit_checks() -> None:
    record, chain = _published_round()
    del chain.transactions[COMMIT_TX]
    record["commit_proof"] = _without_block(record["commit_proof"])
    assert _failed(record, chain) == {"commitment_on_chain", "committed_before_open"}


def test_record_without_opening_time_fails_committed_before_open() -> None:
    record, chain = _published_round()
    del record["opens_at"]
    assert _failed(record, chain) == {"committed_before_open"}
