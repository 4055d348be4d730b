"""A small client of an EVM chain over JSON-RPC: publish payloads, read them and blocks back.

The chain notary anchors batches of round commitments and reveals in ordinary
transactions: a self-addressed, zero-value transaction whose data is a 37-byte payload::

    b"RGS1" || kind (1 byte: 0x01 commitments, 0x02 reveals) || Merkle root (32 bytes)

No contract is needed, so any EVM chain works and anyone can read a payload back with
``eth_getTransactionByHash``. Verifiers must also check the transaction's sender is the
operator's notary address (``ChainTransaction.sender``): anyone can send such a payload.

Transactions are signed here (``eth_account``) and sent raw, so the node never holds the
key. One ``ChainClient`` manages its account's nonce itself (no round trip per publish)
and re-reads the pending count when the node says the nonce is wrong ("nonce too low" on
geth and anvil, "invalid transaction nonce" on eth-tester), which happens when another
process (a restarted notary) used the same key. ``publish`` is ``send`` then ``wait_for``;
callers with several transactions in flight send them in order and wait in parallel.

Every foreign error (web3, requests, eth_account) surfaces as a ``storage.errors.ChainError``.
``ChainClient`` is blocking and thread-safe; async callers run it in a thread.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from eth_account import Account
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.exceptions import (
    BlockNotFound,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.middleware import ExtraDataToPOAMiddleware

from storage.errors import (
    ChainDataError,
    ChainError,
    ChainRejectedError,
    ChainTimeoutError,
    ChainUnavailableError,
)

__all__ = [
    "PAYLOAD_MAGIC",
    "PAYLOAD_SIZE",
    "BlockInfo",
    "ChainClient",
    "ChainTransaction",
    "PayloadKind",
    "Publication",
    "decode_payload",
    "encode_payload",
]

PAYLOAD_MAGIC = b"RGS1"
_ROOT_SIZE = 32
PAYLOAD_SIZE = len(PAYLOAD_MAGIC) + 1 + _ROOT_SIZE

# A 37-byte data transaction needs 21,000 + calldata gas (about 21,600, or 22,480 under
# EIP-7623's calldata floor). A fixed, generous limit saves an eth_estimateGas round trip;
# only the gas actually used is paid for.
_GAS_LIMIT = 60_000
# How often a nonce conflict is resolved by re-reading the pending count before giving up.
_NONCE_ATTEMPTS = 3
_NONCE_HINTS = ("nonce", "already known", "replacement transaction underpriced")


class PayloadKind(enum.IntEnum):
    COMMITS = 0x01
    REVEALS = 0x02


def encode_payload(kind: PayloadKind | int, root: bytes) -> bytes:
    """The transaction data anchoring a batch: magic, kind, 32-byte Merkle root."""
    try:
        kind = PayloadKind(kind)
    except ValueError as exc:
        raise ChainDataError(f"unknown payload kind {kind!r}") from exc
    if not isinstance(root, (bytes, bytearray)) or len(root) != _ROOT_SIZE:
        raise ChainDataError("a payload root must be 32 bytes")
    return PAYLOAD_MAGIC + bytes([kind]) + bytes(root)


def decode_payload(data: bytes) -> tuple[PayloadKind, bytes]:
    """``(kind, root)`` of a payload; ``ChainDataError`` if it is not one of ours."""
    if not isinstance(data, (bytes, bytearray)) or len(data) != PAYLOAD_SIZE:
        raise ChainDataError(f"a payload is {PAYLOAD_SIZE} bytes, got {len(data)!r}")
    if not data.startswith(PAYLOAD_MAGIC):
        raise ChainDataError("not an RGS1 payload (wrong magic)")
    try:
        kind = PayloadKind(data[len(PAYLOAD_MAGIC)])
    except ValueError as exc:
        raise ChainDataError(f"unknown payload kind {data[len(PAYLOAD_MAGIC)]}") from exc
    return kind, bytes(data[len(PAYLOAD_MAGIC) + 1 :])


@dataclass(frozen=True)
class Publication:
    """A mined transaction: its hash (``0x…``), block number and block timestamp."""

    tx_hash: str
    block: int
    timestamp: int


@dataclass(frozen=True)
class BlockInfo:
    """A block's number, hash (``0x…``), timestamp and its parent's timestamp (None at 0)."""

    number: int
    hash: str
    timestamp: int
    parent_timestamp: int | None


@dataclass(frozen=True)
class ChainTransaction:
    """A mined transaction as a verifier needs it."""

    tx_hash: str
    sender: str
    to: str | None
    payload: bytes
    block: int


class ChainClient:
    """One JSON-RPC endpoint, and optionally one signing key for ``publish``."""

    def __init__(
        self,
        rpc_url: str,
        private_key: str | None = None,
        *,
        timeout_s: float = 10,
        receipt_timeout_s: float = 60,
        poll_s: float = 0.1,
    ) -> None:
        self.rpc_url = rpc_url
        self._receipt_timeout_s = receipt_timeout_s
        self._poll_s = poll_s
        self._account: Any = None
        if private_key is not None:
            try:
                self._account = Account.from_key(private_key)
            except (ValueError, TypeError) as exc:
                # Never echo the key itself into logs.
                raise ChainError("the chain private key is not a valid secp256k1 key") from exc
        provider = HTTPProvider(
            rpc_url,
            request_kwargs={"timeout": timeout_s},
            # No silent retries with backoff inside web3: an unreachable node should fail
            # within one timeout, and our callers (the notary's batches) retry themselves.
            exception_retry_configuration=None,
        )
        self._w3 = Web3(provider)
        # PoA chains (Polygon, BSC, private networks) carry more than 32 bytes of extraData,
        # which web3 otherwise rejects in every block; on other chains this does nothing.
        self._w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
        self._chain_id: int | None = None
        self._nonce: int | None = None
        self._send_lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------

    @property
    def address(self) -> str | None:
        """The checksum address of the signing key, or None for a read-only client."""
        return None if self._account is None else str(self._account.address)

    def chain_id(self) -> int:
        if self._chain_id is None:
            with _rpc("read the chain id"):
                self._chain_id = int(self._w3.eth.chain_id)
        return self._chain_id

    def head(self) -> int:
        """The latest block number."""
        with _rpc("read the latest block number"):
            return int(self._w3.eth.block_number)

    def block(self, number: int) -> BlockInfo:
        """Block ``number`` with its parent's timestamp; ``ChainDataError`` if unknown."""
        if number < 0:
            raise ChainDataError(f"block {number} is unknown")
        raw = self._raw_block(number)
        parent = self._raw_block(number - 1)["timestamp"] if number > 0 else None
        return BlockInfo(
            number=int(raw["number"]),
            hash=_hex(raw["hash"]),
            timestamp=int(raw["timestamp"]),
            parent_timestamp=None if parent is None else int(parent),
        )

    def transaction(self, tx_hash: str) -> ChainTransaction:
        """A mined transaction; ``ChainDataError`` if unknown or not mined yet."""
        with _rpc(f"read transaction {tx_hash}"):
            tx = self._w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        if tx.get("blockNumber") is None:
            raise ChainDataError(f"transaction {tx_hash} is not mined yet")
        return ChainTransaction(
            tx_hash=_hex(tx["hash"]),
            sender=str(tx["from"]),
            to=None if tx.get("to") is None else str(tx["to"]),
            payload=bytes(tx["input"]),
            block=int(tx["blockNumber"]),
        )

    def transaction_payload(self, tx_hash: str) -> tuple[bytes, int]:
        """``(data, block number)`` of a mined transaction."""
        tx = self.transaction(tx_hash)
        return tx.payload, tx.block

    def first_block_at_or_after(self, unix_seconds: int, *, wait_s: float) -> BlockInfo:
        """The first block whose timestamp is ``>= unix_seconds``.

        If no such block exists yet, poll until one is mined or ``wait_s`` passes
        (``ChainTimeoutError``). Block timestamps never decrease, so the answer is found by
        galloping back from the head to a block before the time, then bisecting.
        """
        target = int(unix_seconds)
        deadline = time.monotonic() + wait_s
        timestamps: dict[int, int] = {}

        def stamp(number: int) -> int:
            if number not in timestamps:
                timestamps[number] = int(self._raw_block(number)["timestamp"])
            return timestamps[number]

        while True:
            head = self.head()
            if stamp(head) >= target:
                break
            if time.monotonic() >= deadline:
                raise ChainTimeoutError(
                    f"no block with timestamp >= {target} within {wait_s:.1f}s "
                    f"(head {head} at {stamp(head)})"
                )
            time.sleep(min(self._poll_s, max(0.0, deadline - time.monotonic())))
        # Invariant: stamp(high) >= target; low is before the target (or -1: none).
        high, step, low = head, 1, head - 1
        while low >= 0 and stamp(low) >= target:
            high, low = low, max(-1, low - step)
            step *= 2
        while high - low > 1:
            middle = (low + high) // 2
            if stamp(middle) >= target:
                high = middle
            else:
                low = middle
        return self.block(high)

    # -- publishing -------------------------------------------------------------------

    def publish(self, payload: bytes) -> Publication:
        """Sign and send a self-addressed 0-value transaction carrying ``payload``; wait
        for it to be mined. ``ChainRejectedError`` if the node refuses it or it fails."""
        return self.wait_for(self.send(payload))

    def send(self, payload: bytes) -> str:
        """Sign and send the transaction of ``publish`` without waiting; its hash.

        Sends are serialised (nonce order); waits are not, so a caller may have several
        transactions in flight and let them share a block.
        """
        if self._account is None:
            raise ChainError("this chain client has no private key: it cannot publish")
        with self._send_lock:
            return _hex(self._send(bytes(payload)))

    def wait_for(self, tx_hash: str) -> Publication:
        """Wait until ``tx_hash`` is mined: its block and timestamp; ``ChainTimeoutError``
        after ``receipt_timeout_s``, ``ChainRejectedError`` if it failed."""
        try:
            with _rpc(f"wait for transaction {tx_hash}"):
                receipt = self._w3.eth.wait_for_transaction_receipt(
                    HexBytes(tx_hash), timeout=self._receipt_timeout_s, poll_latency=self._poll_s
                )
        except ChainError:
            with self._send_lock:
                # Mined later, or dropped: the node's pending count will tell.
                self._nonce = None
            raise
        if int(receipt["status"]) != 1:
            raise ChainRejectedError(f"transaction {tx_hash} failed (status 0)")
        number = int(receipt["blockNumber"])
        return Publication(
            tx_hash=tx_hash,
            block=number,
            timestamp=int(self._raw_block(number)["timestamp"]),
        )

    def _send(self, payload: bytes) -> HexBytes:
        account = self._account
        chain_id = self.chain_id()
        fees = self._fees()
        for attempt in range(1, _NONCE_ATTEMPTS + 1):
            if self._nonce is None:
                with _rpc("read the account's nonce"):
                    self._nonce = int(
                        self._w3.eth.get_transaction_count(account.address, "pending")
                    )
            transaction = {
                "chainId": chain_id,
                "nonce": self._nonce,
                "to": account.address,
                "value": 0,
                "data": payload,
                "gas": _GAS_LIMIT,
                **fees,
            }
            try:
                signed = account.sign_transaction(transaction)
            except (ValueError, TypeError) as exc:
                raise ChainRejectedError(f"cannot sign the transaction: {exc}") from exc
            try:
                with _rpc("send a transaction", rejected=True):
                    tx_hash = self._w3.eth.send_raw_transaction(signed.raw_transaction)
            except ChainRejectedError as exc:
                self._nonce = None
                if attempt < _NONCE_ATTEMPTS and _is_nonce_conflict(exc):
                    continue
                raise
            except ChainError:
                # The node may or may not have taken it: ask again next time.
                self._nonce = None
                raise
            self._nonce += 1
            return HexBytes(tx_hash)
        raise AssertionError("unreachable")

    def _fees(self) -> dict[str, int]:
        """EIP-1559 fees (2 × base fee + tip, the usual headroom), or a legacy gas price."""
        latest = self._raw_block("latest")
        with _rpc("read the gas price"):
            if latest.get("baseFeePerGas") is None:
                return {"gasPrice": int(self._w3.eth.gas_price)}
            tip = int(self._w3.eth.max_priority_fee)
        return {"maxFeePerGas": 2 * int(latest["baseFeePerGas"]) + tip, "maxPriorityFeePerGas": tip}

    def _raw_block(self, number: int | str) -> Any:
        with _rpc(f"read block {number}"):
            block = self._w3.eth.get_block(number)  # type: ignore[arg-type]
        if block is None:
            raise ChainDataError(f"block {number} is unknown")
        return block


def _hex(value: Any) -> str:
    if isinstance(value, str):
        return value if value.startswith("0x") else "0x" + value
    return "0x" + bytes(value).hex()


def _is_nonce_conflict(exc: BaseException) -> bool:
    message = str(exc).lower()
    return any(hint in message for hint in _NONCE_HINTS)


@contextlib.contextmanager
def _rpc(what: str, *, rejected: bool = False) -> Iterator[None]:
    """Turn web3 / requests errors of one call into ``ChainError``s.

    An error answer from the node is a refusal when sending (``rejected``), and unknown
    or malformed data when reading.
    """
    try:
        yield
    except (TransactionNotFound, BlockNotFound) as exc:
        raise ChainDataError(f"cannot {what}: not found") from exc
    except TimeExhausted as exc:
        raise ChainTimeoutError(f"cannot {what}: timed out") from exc
    except Web3RPCError as exc:
        if rejected:
            raise ChainRejectedError(f"cannot {what}: {exc}") from exc
        raise ChainDataError(f"cannot {what}: the node answered with an error: {exc}") from exc
    except (requests.RequestException, ProviderConnectionError, ConnectionError, OSError) as exc:
        raise ChainUnavailableError(
            f"cannot {what}: the chain's RPC is unreachable ({exc})"
        ) from exc
    except (Web3Exception, ValueError, KeyError, TypeError) as exc:
        raise ChainDataError(f"cannot {what}: unexpected answer from the node ({exc})") from exc
