"""Checking a round from public data alone: its published record and the chain.

Anyone can run these checks (``rgs verify``); nothing here reads a private column. The
record is what ``published_rounds`` shows (or the operator API serves); the chain is read
through :class:`ChainView`, which ``storage.chain.ChainClient`` implements.

Checks, in order (each names what failed):

1. ``revealed``: the round is revealed (a seed is published).
2. ``seed_matches_commitment``: sha256 of the revealed seed is the commitment.
3. ``commitment_on_chain``: the commitment is a leaf of the Merkle root carried by the
   commit transaction, via the record's inclusion proof, and that transaction was signed
   by the notary (anyone can send an ``RGS1`` payload; only the notary's count). The
   notary's address comes from the caller (``expected_notary``, e.g. the address the
   operator publishes); without it, the commit and reveal transactions must at least
   share one sender, the one the record names.
4. ``committed_before_open``: that transaction's block, as the chain says (the record's
   ``block`` is optional and only compared), is no later than betting opened. When it
   cannot be told (the commitment is not proven on chain, a block cannot be read), the
   check fails: it is never left out.
5. ``salt_from_chain``: the salt is the hash of the first block at or after the close
   (that block's timestamp >= the close, its parent's < the close), so nobody knew it
   while bets were taken and the operator could not pick among blocks.
6. ``draw_replays``: the fairness function of (seed, salt, nonce) gives the numbers.
7. ``reveal_on_chain``: the revealed seed is a leaf of the reveal transaction's root.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from core.errors import FairnessError, RgsError
from core.fairness import commitment, draw
from core.merkle import commit_leaf, reveal_leaf, verify_proof

__all__ = ["COMMIT_KIND", "REVEAL_KIND", "ChainView", "Check", "verify_round"]

COMMIT_KIND = 1
REVEAL_KIND = 2


class ChainView(Protocol):
    def batch_root(self, tx_hash: str) -> tuple[int, bytes, int, str]:
        """(payload kind, Merkle root, block number, sender address) of a notary transaction."""
        ...

    def block_times(self, number: int) -> tuple[str, int, int | None]:
        """(block hash hex, timestamp, parent's timestamp or None for genesis)."""
        ...


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


def _hex(value: str) -> str:
    return value[2:] if value.startswith("0x") else value


def verify_round(record: dict[str, Any], chain: ChainView, *, expected_notary: str | None = None) -> list[Check]:
    """Every check on one round; stops at the first failure that makes later ones moot."""
    checks: list[Check] = []
    proof = record.get("commit_proof")
    named = proof.get("sender") if isinstance(proof, dict) else None
    notary = (expected_notary or (named if isinstance(named, str) else "")).lower()
    rid = str(record.get("round_id"))
    seed = record.get("revealed_seed")
    if record.get("phase") != "revealed" or not isinstance(seed, str):
        checks.append(Check("revealed", False, f"round is {record.get('phase')}: no revealed seed to check"))
        return checks
    checks.append(Check("revealed", True, "seed published"))

    try:
        hashed = commitment(seed)
    except FairnessError as exc:
        checks.append(Check("seed_matches_commitment", False, f"revealed seed is malformed: {exc}"))
        return checks
    ok = hashed == record.get("commitment")
    checks.append(Check("seed_matches_commitment", ok, f"sha256(seed) = {hashed}" + ("" if ok else f", record says {record.get('commitment')}")))

    on_chain, commit_block = _on_chain("commitment_on_chain", chain, record.get("commit_tx"), COMMIT_KIND,
                                       commit_leaf(rid, str(record.get("commitment"))), record.get("commit_proof"), notary)
    checks.append(on_chain)
    checks.append(_committed_before_open(chain, record, commit_block if on_chain.ok else None))

    salt = record.get("salt")
    salt_block = record.get("salt_block")
    if not isinstance(salt, str) or not isinstance(salt_block, int):
        checks.append(Check("salt_from_chain", False, "no salt or salt block in the record"))
        return checks
    close_s = math.ceil(int(record["closes_at"]) / 1000)
    try:
        block_hash, stamp, parent_stamp = chain.block_times(salt_block)
    except RgsError as exc:
        checks.append(Check("salt_from_chain", False, f"block {salt_block}: {exc}"))
        return checks
    first = parent_stamp is None or parent_stamp < close_s
    ok = _hex(block_hash) == _hex(salt) and stamp >= close_s and first
    why = (
        f"block {salt_block} hash {'matches' if _hex(block_hash) == _hex(salt) else 'differs'},"
        f" at {stamp} vs close {close_s}, parent at {parent_stamp}"
    )
    checks.append(Check("salt_from_chain", ok, why))

    numbers = record.get("numbers")
    try:
        replay = list(draw(seed, salt, int(record["nonce"]), derivation=str(record.get("derivation"))))
    except RgsError as exc:
        checks.append(Check("draw_replays", False, f"cannot replay the draw: {exc}"))
        return checks
    ok = replay == numbers
    checks.append(Check("draw_replays", ok, f"replayed {replay}" + ("" if ok else f", record says {numbers}")))

    revealed, _ = _on_chain("reveal_on_chain", chain, record.get("reveal_tx"), REVEAL_KIND,
                            reveal_leaf(rid, seed), record.get("reveal_proof"), notary)
    checks.append(revealed)
    return checks


def _committed_before_open(chain: ChainView, record: dict[str, Any], commit_block: int | None) -> Check:
    """The block comes from the chain, never from the record: a record may omit or misstate
    it, and a check that cannot be made fails rather than being left out."""
    name = "committed_before_open"
    if commit_block is None:
        return Check(name, False, "cannot tell when the commitment was mined: it is not proven on chain")
    opens_at = record.get("opens_at")
    if not isinstance(opens_at, int) or isinstance(opens_at, bool):
        return Check(name, False, f"the record has no opening time (opens_at = {opens_at!r})")
    try:
        _, stamp, _ = chain.block_times(commit_block)
    except RgsError as exc:
        return Check(name, False, f"cannot read commit block {commit_block}: {exc}")
    opens_s = opens_at / 1000
    ok = stamp <= opens_s
    return Check(name, ok, f"commit block {commit_block} at {stamp}, betting opened at {opens_s:.3f}")


def _on_chain(
    name: str, chain: ChainView, tx: object, kind: int, leaf: bytes, proof: object, notary: str
) -> tuple[Check, int | None]:
    """The check, and the block the chain puts the transaction in (None if unread)."""
    if not isinstance(tx, str) or not isinstance(proof, dict):
        return Check(name, False, "no transaction or proof in the record"), None
    try:
        found_kind, root, block, sender = chain.batch_root(tx)
    except RgsError as exc:
        return Check(name, False, f"transaction {tx}: {exc}"), None
    if not notary or sender.lower() != notary:
        return Check(name, False, f"transaction {tx} was sent by {sender}, not the notary {notary or '(unknown)'}"), block
    if found_kind != kind:
        return Check(name, False, f"transaction {tx} carries payload kind {found_kind}, expected {kind}"), block
    if proof.get("block") not in (None, block):
        return Check(name, False, f"record says block {proof.get('block')}, the chain says {block}"), block
    steps = proof.get("proof")
    ok = isinstance(steps, list) and verify_proof(leaf, steps, root)
    return Check(name, ok, f"leaf {'is' if ok else 'is NOT'} under root {root.hex()} of {tx} (block {block})"), block
