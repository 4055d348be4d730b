"""``ChainNotary``: the Ray actor that anchors round commitments and reveals on an EVM chain.

Every round publishes ``sha256(server_seed)`` before betting opens and reveals the seed
after settlement. One transaction per item would cost a transaction per round and event,
so the notary batches: all items of a kind queued within ``batch_window_s`` (or
``max_batch`` of them) become the leaves of one Merkle tree (``core.merkle``), and one
transaction carries its root (``storage.chain`` payload). Each caller gets back the
transaction, the root and its item's inclusion proof, which the round stores for
``rgs verify``.

Each kind has at most one transaction in flight; items arriving meanwhile form its next
batch, so the batch size follows the load. Transactions are sent one at a time (nonce
order) but their receipts are awaited in parallel, so a commit batch and a reveal batch
can share a block: with one block per second on the dev chain, waiting for each receipt
before sending the next would halve the throughput.

Callers retry when a batch fails. An item published twice is harmless: a leaf only states
"round R committed to C" (or "revealed S"), and C = sha256(S) pins the seed, so a second
publication repeats the same statement; the verifier accepts any publication of the
round's item whose block is early enough. The same item queued twice within one batch is
published once and both callers get the same proof.

The actor is named ``chain-notary`` (by default) in namespace ``rgs`` and restarted by
Ray; a new incarnation starts with empty queues (callers whose calls died retry) and
re-reads its account's nonce from the chain. The chain itself lives outside (see
``storage.embedded_chain``), so it survives the notary.

The signing key reaches the actor as a constructor argument, so it is stored in Ray's
actor table like any argument: fine for the public dev key; for a real key, keep the Ray
cluster private (as it must be anyway: it holds the database URL too).

Errors, drawn under ``actors.errors``::

    actors.errors.ActorError
    └── NotaryError   a batch could not be published, the chain could not be read or the
                      notary could not be started; retry later

Bad input (a round id, commitment or seed that ``core.merkle`` refuses) raises
``core.errors.FairnessError`` straight away.
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import ray

from actors.errors import ActorError
from actors.metrics import observe_chain_tx, record_chain_backlog
from actors.shard import NAMESPACE
from core.merkle import MerkleTree, commit_leaf, reveal_leaf
from storage.chain import BlockInfo, ChainClient, PayloadKind, encode_payload
from storage.errors import ChainError, ChainTimeoutError

__all__ = [
    "NOTARY_NAME",
    "ChainNotary",
    "NotaryError",
    "notary_handle",
    "start_notary",
]

NOTARY_NAME = "chain-notary"
# Reads run beside sends: up to one receipt wait per kind, salt look-ups and info. A few
# threads are plenty, since the waiting part of a salt look-up polls from the event loop.
_READ_THREADS = 6
_SALT_POLL_S = 0.1
_IDLE_REPORT_S = 5.0


class NotaryError(ActorError):
    pass


@dataclass
class _Item:
    leaf: bytes
    waiters: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)


class _Batcher:
    """One kind's queue and the task that turns it into transactions."""

    def __init__(self, kind: PayloadKind, name: str) -> None:
        self.kind = kind
        self.name = name
        self.queue: dict[bytes, _Item] = {}  # leaf -> item, in arrival order
        self.oldest_at = 0.0  # loop time the oldest queued item arrived
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.in_flight = 0  # items of the batch being published

    def report_backlog(self) -> None:
        record_chain_backlog(self.name, len(self.queue) + self.in_flight)


@ray.remote(max_restarts=-1, max_task_retries=0)
class ChainNotary:
    """Batches commitments and reveals into Merkle roots published on the chain."""

    def __init__(
        self,
        rpc_url: str,
        private_key: str,
        batch_window_s: float = 0.2,
        max_batch: int = 512,
    ) -> None:
        if batch_window_s < 0 or max_batch < 1:
            raise NotaryError("batch_window_s must be >= 0 and max_batch >= 1")
        self._rpc_url = rpc_url
        try:
            self._client = ChainClient(rpc_url, private_key)
        except ChainError as exc:
            raise NotaryError(f"chain notary cannot use its key: {exc}") from exc
        self._window_s = batch_window_s
        self._max_batch = max_batch
        # One thread sends transactions: one at a time, in nonce order. Each kind has at
        # most one transaction in flight; their receipts are awaited on reader threads.
        self._publisher = ThreadPoolExecutor(1, thread_name_prefix="notary-send")
        self._readers = ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="notary-read")
        self._batchers: dict[str, _Batcher] | None = None
        self._batches_sent = 0
        self._items_sent = 0
        self._failed_batches = 0
        self._last_latency_ms: float | None = None

    # -- the API ----------------------------------------------------------------------

    async def commit(self, round_id: str, commitment_hex: str) -> dict[str, Any]:
        """Publish a round's commitment; the batch's tx, root and this item's proof."""
        return await self._submit("commit", commit_leaf(round_id, commitment_hex))

    async def reveal(self, round_id: str, seed_hex: str) -> dict[str, Any]:
        """Publish a round's revealed server seed; the batch's tx, root and this item's proof."""
        return await self._submit("reveal", reveal_leaf(round_id, seed_hex))

    async def salt_after(self, unix_seconds: float, wait_s: float = 15.0) -> dict[str, Any]:
        """The first block with timestamp >= ceil(unix_seconds), as the round's public salt.

        Anyone can check the choice: the block's timestamp is >= ceil(t) and its parent's
        is < ceil(t). Waits up to ``wait_s`` for such a block to be mined.
        """
        target = math.ceil(unix_seconds)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            try:
                block: BlockInfo = await self._read(
                    self._client.first_block_at_or_after, target, wait_s=0.0
                )
                break
            except ChainTimeoutError as exc:
                if loop.time() >= deadline:
                    raise NotaryError(f"no block at or after {target} within {wait_s}s") from exc
            except ChainError as exc:
                raise NotaryError(f"cannot read the chain for a salt: {exc}") from exc
            await asyncio.sleep(min(_SALT_POLL_S, max(0.0, deadline - loop.time())))
        return {
            "block": block.number,
            "hash": block.hash,
            "timestamp": block.timestamp,
            "parent_timestamp": block.parent_timestamp,
        }

    async def backlog(self) -> dict[str, Any]:
        batchers = self._batchers or {}
        commits = batchers.get("commit")
        reveals = batchers.get("reveal")
        return {
            "queued_commits": len(commits.queue) if commits else 0,
            "queued_reveals": len(reveals.queue) if reveals else 0,
            "in_flight_commits": commits.in_flight if commits else 0,
            "in_flight_reveals": reveals.in_flight if reveals else 0,
            "batches_sent": self._batches_sent,
            "items_sent": self._items_sent,
            "failed_batches": self._failed_batches,
            "last_tx_latency_ms": self._last_latency_ms,
            "mean_batch_size": self._items_sent / self._batches_sent
            if self._batches_sent
            else None,
        }

    async def info(self) -> dict[str, Any]:
        """Where the notary publishes; reads the chain's head, so it fails while the chain
        is unreachable (health checks rely on that: the chain id alone is cached)."""
        try:
            chain_id = await self._read(self._client.chain_id)
            head = await self._read(self._client.head)
        except ChainError as exc:
            raise NotaryError(f"cannot reach the chain at {self._rpc_url}: {exc}") from exc
        return {"rpc_url": self._rpc_url, "chain_id": chain_id, "head": head, "address": self._client.address}

    # -- batching ---------------------------------------------------------------------

    def _batcher(self, name: str) -> _Batcher:
        if self._batchers is None:
            # Created on first use, inside the actor's event loop (not in __init__).
            self._batchers = {
                "commit": _Batcher(PayloadKind.COMMITS, "commit"),
                "reveal": _Batcher(PayloadKind.REVEALS, "reveal"),
            }
        batcher = self._batchers[name]
        if batcher.task is None or batcher.task.done():
            batcher.task = asyncio.ensure_future(self._run(batcher))
        return batcher

    async def _submit(self, name: str, leaf: bytes) -> dict[str, Any]:
        batcher = self._batcher(name)
        loop = asyncio.get_running_loop()
        item = batcher.queue.get(leaf)
        if item is None:
            if not batcher.queue:
                batcher.oldest_at = loop.time()
            item = batcher.queue[leaf] = _Item(leaf)
        waiter: asyncio.Future[dict[str, Any]] = loop.create_future()
        item.waiters.append(waiter)
        batcher.changed.set()
        batcher.report_backlog()
        return await waiter

    async def _run(self, batcher: _Batcher) -> None:
        """Forever: wait for items, let the window fill, publish one batch, repeat."""
        loop = asyncio.get_running_loop()
        while True:
            while not batcher.queue:
                batcher.changed.clear()
                try:
                    await asyncio.wait_for(batcher.changed.wait(), _IDLE_REPORT_S)
                except TimeoutError:
                    batcher.report_backlog()  # so the backlog's peak gauge decays when idle
            # The window runs from the oldest item's arrival: items that queued up during
            # the previous publish have waited long enough and go at once.
            while len(batcher.queue) < self._max_batch:
                remaining = batcher.oldest_at + self._window_s - loop.time()
                if remaining <= 0:
                    break
                batcher.changed.clear()
                try:
                    await asyncio.wait_for(batcher.changed.wait(), remaining)
                except TimeoutError:
                    break
            items = list(batcher.queue.values())[: self._max_batch]
            for item in items:
                del batcher.queue[item.leaf]
            batcher.oldest_at = loop.time()
            batcher.in_flight = len(items)
            try:
                await self._publish(batcher, items)
            finally:
                batcher.in_flight = 0
                batcher.report_backlog()

    async def _publish(self, batcher: _Batcher, items: list[_Item]) -> None:
        tree = MerkleTree([item.leaf for item in items])
        payload = encode_payload(batcher.kind, tree.root)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            # Sent on the one publisher thread (nonce order), awaited on a reader thread:
            # the other kind's batch can be sent meanwhile and share the block.
            tx_hash = await loop.run_in_executor(self._publisher, self._client.send, payload)
            publication = await loop.run_in_executor(self._readers, self._client.wait_for, tx_hash)
        except Exception as exc:  # every waiter of the batch must hear of any failure
            self._failed_batches += 1
            message = f"{batcher.name} batch of {len(items)} not published: {exc}; retry"
            for item in items:
                for waiter in item.waiters:
                    if not waiter.done():
                        error = NotaryError(message)
                        error.__cause__ = exc
                        waiter.set_exception(error)
            return
        self._last_latency_ms = (time.perf_counter() - started) * 1000
        observe_chain_tx(batcher.name, self._last_latency_ms / 1000)
        self._batches_sent += 1
        self._items_sent += len(items)
        for index, item in enumerate(items):
            result = {
                "kind": batcher.name,
                "root": tree.root.hex(),
                "tx": publication.tx_hash,
                "block": publication.block,
                "index": index,
                "proof": tree.proof(index),
                "batch_size": len(items),
                # who signed: a verifier checks the transaction came from this address
                "sender": self._client.address,
            }
            for waiter in item.waiters:
                if not waiter.done():
                    waiter.set_result(result)

    async def _read(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, lambda: function(*args, **kwargs)
        )


def start_notary(
    rpc_url: str,
    private_key: str,
    *,
    name: str = NOTARY_NAME,
    batch_window_s: float = 0.2,
    max_batch: int = 512,
    timeout_s: float = 60.0,
) -> Any:
    """Create (or find) the named notary and check it reaches ``rpc_url``; its handle.

    Not detached: it lives as long as the Ray job that created it (``rgs up``). Another
    ``name`` gives an independent notary (tests run several side by side).
    """
    handle = ChainNotary.options(  # type: ignore[attr-defined]
        name=name,
        namespace=NAMESPACE,
        get_if_exists=True,
        # Callers wait in the actor for their batch: allow far more than one batch.
        max_concurrency=10_000,
    ).remote(rpc_url, private_key, batch_window_s, max_batch)
    try:
        info = ray.get(handle.info.remote(), timeout=timeout_s)
    except (ray.exceptions.RayError, TimeoutError) as exc:
        raise NotaryError(f"chain notary did not start: {exc}") from exc
    if info["rpc_url"] != rpc_url:
        raise NotaryError(
            f"a chain notary for {info['rpc_url']} is already running, not for {rpc_url}"
        )
    return handle


def notary_handle(name: str = NOTARY_NAME) -> Any:
    """The running notary's handle; ``NotaryError`` if there is none."""
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError as exc:
        raise NotaryError(f"no chain notary {name!r} is running (start_notary first)") from exc
