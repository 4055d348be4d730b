"""The chain notary on Ray: batched commitments and reveals whose proofs check on chain."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from actors.chain_notary import ChainNotary, NotaryError, notary_handle, start_notary
from core.fairness import commitment
from core.merkle import commit_leaf, reveal_leaf, verify_proof
from storage.chain import ChainClient, PayloadKind, decode_payload
from storage.embedded_chain import EmbeddedChain
from tests.chain_fixtures import start_test_chain


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedChain]:
    chain = start_test_chain(tmp_path_factory.mktemp("chain"))
    yield chain
    chain.stop()


@pytest.fixture(scope="module")
def notary(ray_session: None, chain: EmbeddedChain) -> Iterator[Any]:
    handle = start_notary(chain.url, chain.private_key, batch_window_s=0.2)
    yield handle
    ray.kill(handle, no_restart=True)


@pytest.fixture(scope="module")
def reader(chain: EmbeddedChain) -> ChainClient:
    return ChainClient(chain.url)


def _seed(label: str) -> str:
    return hashlib.sha256(label.encode()).hexdigest()


def _check_on_chain(
    reader: ChainClient, result: dict[str, Any], leaf: bytes, kind: PayloadKind, sender: str
) -> None:
    """What ``rgs verify`` does: read the payload back and check the item's proof."""
    transaction = reader.transaction(result["tx"])
    assert transaction.sender == sender
    assert transaction.block == result["block"]
    on_chain_kind, root = decode_payload(transaction.payload)
    assert on_chain_kind == kind
    assert root.hex() == result["root"]
    assert verify_proof(leaf, result["proof"], root)


def test_concurrent_commits_share_few_transactions(notary: Any, reader: ChainClient) -> None:
    info = ray.get(notary.info.remote())
    assert info["chain_id"] == reader.chain_id()
    rounds = [f"round-{i}" for i in range(50)]
    commitments = [commitment(_seed(r)) for r in rounds]
    results = ray.get(
        [notary.commit.remote(r, c) for r, c in zip(rounds, commitments, strict=True)],
        timeout=60,
    )
    transactions = {r["tx"] for r in results}
    assert len(transactions) <= 5, transactions
    assert sum({r["tx"]: r["batch_size"] for r in results}.values()) == 50
    for round_id, digest, result in zip(rounds, commitments, results, strict=True):
        assert result["kind"] == "commit"
        _check_on_chain(
            reader, result, commit_leaf(round_id, digest), PayloadKind.COMMITS, info["address"]
        )
    # Indices within a transaction are distinct positions of its tree.
    for tx in transactions:
        indices = sorted(r["index"] for r in results if r["tx"] == tx)
        assert indices == list(range(len(indices)))
    backlog = ray.get(notary.backlog.remote())
    assert backlog["queued_commits"] == 0
    assert backlog["batches_sent"] >= len(transactions)
    assert backlog["mean_batch_size"] >= 10
    assert backlog["last_tx_latency_ms"] > 0


def test_reveal_and_duplicate_items(notary: Any, reader: ChainClient) -> None:
    seed = _seed("revealed")
    committed = ray.get(notary.commit.remote("round-r", commitment(seed)))
    address = ray.get(notary.info.remote())["address"]
    # The same reveal twice at once (a caller's retry) is one leaf, one proof.
    first, second = ray.get(
        [notary.reveal.remote("round-r", seed), notary.reveal.remote("round-r", seed)]
    )
    assert first == second
    assert first["kind"] == "reveal"
    assert first["block"] > committed["block"]
    _check_on_chain(reader, first, reveal_leaf("round-r", seed), PayloadKind.REVEALS, address)
    # And what the reveal proves: the seed matches the earlier commitment.
    _check_on_chain(
        reader, committed, commit_leaf("round-r", commitment(seed)), PayloadKind.COMMITS, address
    )


def test_salt_after_is_the_first_block_at_or_after_the_time(
    notary: Any, reader: ChainClient
) -> None:
    moment = time.time() + 1.5
    salt = ray.get(notary.salt_after.remote(moment, 10.0))
    target = math.ceil(moment)
    assert time.time() >= target
    assert salt["timestamp"] >= target > salt["parent_timestamp"]
    block = reader.block(salt["block"])
    assert (block.hash, block.timestamp) == (salt["hash"], salt["timestamp"])
    assert reader.block(salt["block"] - 1).timestamp == salt["parent_timestamp"]
    # Asking again later gives the same answer: the salt is fixed once mined.
    assert ray.get(notary.salt_after.remote(moment, 0.0)) == salt
    with pytest.raises(NotaryError):
        ray.get(notary.salt_after.remote(time.time() + 3600, 0.2))


def test_bad_input_is_refused(notary: Any) -> None:
    with pytest.raises(ValueError):  # core.errors.FairnessError
        ray.get(notary.commit.remote("round-x", "not-a-commitment"))


def test_unreachable_chain_fails_every_waiter(ray_session: None, chain: EmbeddedChain) -> None:
    lost = ChainNotary.remote("http://127.0.0.1:1", chain.private_key, 0.05)  # type: ignore[attr-defined]
    try:
        refs = [lost.commit.remote(f"lost-{i}", commitment(_seed(str(i)))) for i in range(3)]
        for ref in refs:
            with pytest.raises(NotaryError, match="not published"):
                ray.get(ref, timeout=30)
        assert ray.get(lost.backlog.remote())["failed_batches"] >= 1
    finally:
        ray.kill(lost, no_restart=True)


def test_a_killed_notary_comes_back_on_the_same_chain(notary: Any, reader: ChainClient) -> None:
    assert notary_handle()._actor_id == notary._actor_id
    before = ray.get(notary.commit.remote("before-kill", commitment(_seed("before"))))
    ray.kill(notary, no_restart=False)
    deadline = time.monotonic() + 60
    while True:
        try:
            after = ray.get(
                notary.commit.remote("after-kill", commitment(_seed("after"))), timeout=30
            )
            break
        except ray.exceptions.RayActorError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert after["block"] > before["block"]
    address = ray.get(notary.info.remote())["address"]
    _check_on_chain(
        reader,
        after,
        commit_leaf("after-kill", commitment(_seed("after"))),
        PayloadKind.COMMITS,
        address,
    )
    # The earlier publication is still on the chain the new incarnation writes to.
    _check_on_chain(
        reader,
        before,
        commit_leaf("before-kill", commitment(_seed("before"))),
        PayloadKind.COMMITS,
        address,
    )
