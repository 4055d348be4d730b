"""Merkle trees over round commitments and reveals, so one transaction anchors many rounds.

The chain notary publishes a batch of items (one per round) as a single root; each round
keeps an inclusion proof, and anyone holding the item, the proof and the on-chain root can
check the round was in the batch::

    leaf  = sha256(0x00 || data)
    inner = sha256(0x01 || left || right)

The two prefixes keep leaves and inner nodes apart: without them a 64-byte leaf could be
passed off as an inner node (a second preimage) and "prove" an item that was never
published. At each level an odd last node is promoted unchanged to the next level rather
than paired with a copy of itself, so no two different leaf lists share a root by
duplication. A single leaf's root is its leaf hash, with an empty proof.

A proof is a list of ``[side, sibling_hex]`` from the leaf up: side ``"L"`` means the
sibling is on the left (``parent = inner(sibling, node)``), ``"R"`` that it is on the right.
It is plain JSON so rounds can store it and ``rgs verify`` can read it back.

The leaf data of the notary's items is fixed here (``commit_leaf``, ``reveal_leaf``) so the
publisher and the verifier build the very same bytes.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Sequence

from core.errors import FairnessError

__all__ = [
    "MerkleTree",
    "commit_leaf",
    "inner_hash",
    "leaf_hash",
    "reveal_leaf",
    "verify_proof",
]

_LEAF_PREFIX = b"\x00"
_INNER_PREFIX = b"\x01"
_DIGEST_SIZE = 32
_HEX_DIGITS = frozenset(string.hexdigits)
_LOWER_HEX_DIGITS = frozenset("0123456789abcdef")


def leaf_hash(data: bytes) -> bytes:
    """The hash of a leaf: ``sha256(0x00 || data)``."""
    return hashlib.sha256(_LEAF_PREFIX + bytes(data)).digest()


def inner_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an inner node: ``sha256(0x01 || left || right)``."""
    return hashlib.sha256(_INNER_PREFIX + left + right).digest()


class MerkleTree:
    """A Merkle tree over ``leaves`` (their data, in order); at least one leaf."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if isinstance(leaves, (bytes, bytearray, str)):
            # A lone bytes object is a sequence of ints: almost certainly a caller's bug.
            raise FairnessError("Merkle leaves must be a sequence of bytes objects, not one")
        if len(leaves) == 0:
            raise FairnessError("a Merkle tree needs at least one leaf")
        for position, leaf in enumerate(leaves):
            if not isinstance(leaf, (bytes, bytearray)):
                raise FairnessError(
                    f"Merkle leaf {position} must be bytes, got {type(leaf).__name__}"
                )
        level = [leaf_hash(leaf) for leaf in leaves]
        self._levels: list[list[bytes]] = [level]
        while len(level) > 1:
            parents = [inner_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                parents.append(level[-1])
            level = parents
            self._levels.append(level)

    def __len__(self) -> int:
        return len(self._levels[0])

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    def proof(self, index: int) -> list[list[str]]:
        """The inclusion proof of leaf ``index``: ``[[side, sibling_hex], ...]`` from the leaf up."""
        if not isinstance(index, int) or isinstance(index, bool):
            raise FairnessError(f"leaf index must be an integer, got {type(index).__name__}")
        if not 0 <= index < len(self):
            raise FairnessError(f"leaf index {index} is outside 0..{len(self) - 1}")
        steps: list[list[str]] = []
        for level in self._levels[:-1]:
            if index % 2:
                steps.append(["L", level[index - 1].hex()])
            elif index + 1 < len(level):
                steps.append(["R", level[index + 1].hex()])
            # else: the odd last node is promoted; this level adds no step.
            index //= 2
        return steps


def verify_proof(data: bytes, proof: list[list[str]], root: bytes) -> bool:
    """Whether ``proof`` leads from leaf ``data`` to ``root``; False for any malformed input.

    It never raises: a verifier reads proofs from untrusted places (a database, a file, an
    operator's API), and a malformed proof simply proves nothing.
    """
    if not isinstance(data, (bytes, bytearray)) or not isinstance(root, (bytes, bytearray)):
        return False
    if len(root) != _DIGEST_SIZE or not isinstance(proof, (list, tuple)):
        return False
    node = leaf_hash(data)
    for step in proof:
        sibling = _parse_step(step)
        if sibling is None:
            return False
        side, sibling_hash = sibling
        node = inner_hash(sibling_hash, node) if side == "L" else inner_hash(node, sibling_hash)
    return node == bytes(root)


def _parse_step(step: object) -> tuple[str, bytes] | None:
    if not isinstance(step, (list, tuple)) or len(step) != 2:
        return None
    side, sibling_hex = step
    if side not in ("L", "R") or not isinstance(sibling_hex, str):
        return None
    if len(sibling_hex) != 2 * _DIGEST_SIZE or not set(sibling_hex) <= _HEX_DIGITS:
        return None
    return side, bytes.fromhex(sibling_hex)


def commit_leaf(round_id: str, commitment: str) -> bytes:
    """Leaf data of a round's commitment: ``f"commit:{round_id}:{commitment}"`` in UTF-8.

    ``commitment`` is the 64-digit lowercase hex of ``core.fairness.commitment``: one
    canonical spelling, so the verifier rebuilds the same bytes.
    """
    _check_round_id(round_id)
    if (
        not isinstance(commitment, str)
        or len(commitment) != 2 * _DIGEST_SIZE
        or not set(commitment) <= _LOWER_HEX_DIGITS
    ):
        raise FairnessError("a commitment must be 64 lowercase hex digits (sha256 of the seed)")
    return f"commit:{round_id}:{commitment}".encode()


def reveal_leaf(round_id: str, seed: str) -> bytes:
    """Leaf data of a round's revealed server seed: ``f"reveal:{round_id}:{seed}"`` in UTF-8."""
    _check_round_id(round_id)
    if not isinstance(seed, str) or not seed:
        raise FairnessError("a revealed seed must be a non-empty string")
    # The seed is the last field, so a ':' in it would make the leaf ambiguous (which part
    # is the round?); seeds are ASCII hex in practice, as core.fairness expects.
    if not seed.isascii() or not seed.isprintable() or ":" in seed:
        raise FairnessError("a revealed seed must be printable ASCII without ':'")
    return f"reveal:{round_id}:{seed}".encode()


def _check_round_id(round_id: str) -> None:
    if not isinstance(round_id, str) or not round_id:
        raise FairnessError("a round id must be a non-empty string")
    if not round_id.isprintable():
        raise FairnessError("a round id must not contain control characters")
