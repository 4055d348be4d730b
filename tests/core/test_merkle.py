"""Merkle trees: every proof verifies, and any change to leaf, proof or root breaks it."""

from __future__ import annotations

import hashlib

import pytest

from core.errors import FairnessError
from core.merkle import (
    MerkleTree,
    commit_leaf,
    inner_hash,
    leaf_hash,
    reveal_leaf,
    verify_proof,
)


def _leaves(count: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(count)]


def test_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    left, right = b"\x11" * 32, b"\x22" * 32
    assert inner_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    # An inner node's preimage as leaf data does not reproduce the inner node.
    assert leaf_hash(left + right) != inner_hash(left, right)


def test_single_leaf_root_is_its_hash_with_empty_proof() -> None:
    tree = MerkleTree([b"only"])
    assert tree.root == leaf_hash(b"only")
    assert tree.proof(0) == []
    assert verify_proof(b"only", [], tree.root)


def test_three_leaves_promote_the_odd_node() -> None:
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    tree = MerkleTree([b"a", b"b", b"c"])
    assert tree.root == inner_hash(inner_hash(a, b), c)
    assert tree.proof(2) == [["L", inner_hash(a, b).hex()]]
    assert tree.proof(0) == [["R", b.hex()], ["R", c.hex()]]


@pytest.mark.parametrize("count", range(1, 18))
def test_every_proof_verifies(count: int) -> None:
    leaves = _leaves(count)
    tree = MerkleTree(leaves)
    assert len(tree) == count
    for index, leaf in enumerate(leaves):
        proof = tree.proof(index)
        assert verify_proof(leaf, proof, tree.root), (count, index)
        # A leaf does not verify at another leaf's position.
        if count > 1:
            other = leaves[(index + 1) % count]
            assert not verify_proof(other, proof, tree.root)


@pytest.mark.parametrize("count", [2, 3, 5, 8, 13, 17])
def test_tampering_fails(count: int) -> None:
    leaves = _leaves(count)
    tree = MerkleTree(leaves)
    for index, leaf in enumerate(leaves):
        proof = tree.proof(index)
        assert proof, "more than one leaf means a non-empty proof"
        assert not verify_proof(leaf + b"!", proof, tree.root)
        assert not verify_proof(leaf, proof, bytes(32))
        flipped_root = bytes([tree.root[0] ^ 1]) + tree.root[1:]
        assert not verify_proof(leaf, proof, flipped_root)
        for step in range(len(proof)):
            side, sibling = proof[step]
            other_side = "R" if side == "L" else "L"
            swapped = [list(s) for s in proof]
            swapped[step] = [other_side, sibling]
            assert not verify_proof(leaf, swapped, tree.root)
            changed = [list(s) for s in proof]
            changed[step] = [side, ("0" if sibling[0] != "0" else "1") + sibling[1:]]
            assert not verify_proof(leaf, changed, tree.root)
        assert not verify_proof(leaf, proof[:-1], tree.root)
        assert not verify_proof(leaf, [*proof, proof[-1]], tree.root)


def test_changing_any_leaf_changes_the_root() -> None:
    leaves = _leaves(9)
    root = MerkleTree(leaves).root
    for index in range(len(leaves)):
        changed = list(leaves)
        changed[index] = b"other"
        assert MerkleTree(changed).root != root
    # Promotion is not duplication: [a, b, c] and [a, b, c, c] differ.
    assert MerkleTree(leaves[:3]).root != MerkleTree([*leaves[:3], leaves[2]]).root


@pytest.mark.parametrize(
    "proof",
    [
        None,
        "L",
        [["L"]],
        [["X", "00" * 32]],
        [["L", "00" * 31]],
        [["L", "zz" * 32]],
        [["L", 7]],
        [["L", "00" * 32, "extra"]],
        [{"side": "L"}],
        [["L", "0x" + "00" * 31]],
        [None],
    ],
)
def test_malformed_proofs_return_false(proof: object) -> None:
    tree = MerkleTree(_leaves(4))
    assert verify_proof(b"leaf-0", proof, tree.root) is False  # type: ignore[arg-type]


def test_malformed_data_or_root_return_false() -> None:
    tree = MerkleTree(_leaves(2))
    proof = tree.proof(0)
    assert verify_proof("leaf-0", proof, tree.root) is False  # type: ignore[arg-type]
    assert verify_proof(b"leaf-0", proof, tree.root.hex()) is False  # type: ignore[arg-type]
    assert verify_proof(b"leaf-0", proof, tree.root[:31]) is False


def test_uppercase_sibling_hex_is_accepted() -> None:
    tree = MerkleTree(_leaves(2))
    proof = [[side, sibling.upper()] for side, sibling in tree.proof(1)]
    assert verify_proof(b"leaf-1", proof, tree.root)


def test_bad_trees_and_indices_raise() -> None:
    with pytest.raises(FairnessError, match="at least one leaf"):
        MerkleTree([])
    with pytest.raises(FairnessError):
        MerkleTree(b"abc")  # type: ignore[arg-type]
    with pytest.raises(FairnessError, match="must be bytes"):
        MerkleTree(["text"])  # type: ignore[list-item]
    tree = MerkleTree(_leaves(3))
    for index in (-1, 3, True):
        with pytest.raises(FairnessError):
            tree.proof(index)
    with pytest.raises(ValueError):  # FairnessError is a ValueError
        MerkleTree([])


def test_leaf_data_is_canonical() -> None:
    digest = hashlib.sha256(b"seed").hexdigest()
    assert commit_leaf("r-1", digest) == f"commit:r-1:{digest}".encode()
    assert reveal_leaf("table:7", "abc123") == b"reveal:table:7:abc123"
    with pytest.raises(FairnessError):
        commit_leaf("r-1", digest.upper())
    with pytest.raises(FairnessError):
        commit_leaf("r-1", digest[:-1])
    with pytest.raises(FairnessError):
        commit_leaf("", digest)
    with pytest.raises(FairnessError):
        commit_leaf("r\n1", digest)
    with pytest.raises(FairnessError):
        reveal_leaf("r-1", "")
    with pytest.raises(FairnessError):
        reveal_leaf("r-1", "a:b")
    with pytest.raises(FairnessError):
        reveal_leaf("r-1", "sé")
