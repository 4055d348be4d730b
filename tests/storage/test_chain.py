"""The dev chain process and the JSON-RPC chain client: publish, read back, find blocks."""

from __future__ import annotations

import itertools
import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.chain import (
    PAYLOAD_SIZE,
    ChainClient,
    PayloadKind,
    decode_payload,
    encode_payload,
)
from storage.embedded_chain import DEV_PRIVATE_KEY, EmbeddedChain
from storage.errors import (
    ChainDataError,
    ChainError,
    ChainTimeoutError,
    ChainUnavailableError,
)
from tests.chain_fixtures import start_test_chain

# Nothing listens on port 1 (privileged, unassigned): connections are refused at once.
UNREACHABLE = "http://127.0.0.1:1"


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedChain]:
    chain = start_test_chain(tmp_path_factory.mktemp("chain"))
    yield chain
    chain.stop()
    assert not chain.running()


@pytest.fixture(scope="module")
def client(chain: EmbeddedChain) -> ChainClient:
    return ChainClient(chain.url, chain.private_key)


def test_payload_round_trip_and_malformed_payloads() -> None:
    root = bytes(range(32))
    payload = encode_payload(PayloadKind.REVEALS, root)
    assert payload == b"RGS1\x02" + root and len(payload) == PAYLOAD_SIZE
    assert decode_payload(payload) == (PayloadKind.REVEALS, root)
    for bad in (b"", payload[:-1], payload + b"\x00", b"XGS1" + payload[4:], b"RGS1\x07" + root):
        with pytest.raises(ChainDataError):
            decode_payload(bad)
    with pytest.raises(ChainDataError):
        encode_payload(PayloadKind.COMMITS, root[:31])
    with pytest.raises(ChainDataError):
        encode_payload(9, root)


def test_publish_and_read_back(chain: EmbeddedChain, client: ChainClient) -> None:
    assert client.address == "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf"  # dev key 1
    assert chain.private_key == DEV_PRIVATE_KEY
    assert client.chain_id() > 0
    before = client.head()
    payload = encode_payload(PayloadKind.COMMITS, b"\x11" * 32)
    published = client.publish(payload)
    assert published.tx_hash.startswith("0x") and len(published.tx_hash) == 66
    assert published.block > before
    assert abs(published.timestamp - time.time()) < 5

    assert client.transaction_payload(published.tx_hash) == (payload, published.block)
    tx = client.transaction(published.tx_hash)
    assert tx.sender == tx.to == client.address
    # A read-only client in another "process" sees the same chain.
    reader = ChainClient(chain.url)
    assert reader.address is None
    assert decode_payload(reader.transaction_payload(published.tx_hash)[0])[1] == b"\x11" * 32
    assert reader.block(published.block).timestamp == published.timestamp


def test_sends_in_flight_share_a_block(client: ChainClient) -> None:
    # Right after a publish this second has its block, so both sends wait for the next.
    client.publish(encode_payload(PayloadKind.COMMITS, b"\x21" * 32))
    first = client.send(encode_payload(PayloadKind.COMMITS, b"\x22" * 32))
    second = client.send(encode_payload(PayloadKind.REVEALS, b"\x23" * 32))
    mined = [client.wait_for(first), client.wait_for(second)]
    assert mined[0].block == mined[1].block
    assert [decode_payload(client.transaction_payload(h)[0])[1] for h in (first, second)] == [
        b"\x22" * 32,
        b"\x23" * 32,
    ]


def test_unknown_transaction_and_block(client: ChainClient) -> None:
    with pytest.raises(ChainDataError):
        client.transaction_payload("0x" + "ab" * 32)
    with pytest.raises(ChainDataError):
        client.block(client.head() + 1000)


def test_read_only_client_cannot_publish(chain: EmbeddedChain) -> None:
    with pytest.raises(ChainError, match="no private key"):
        ChainClient(chain.url).publish(encode_payload(PayloadKind.COMMITS, bytes(32)))
    with pytest.raises(ChainError, match="not a valid"):
        ChainClient(chain.url, "0x1234")


def test_first_block_at_or_after_a_future_time(client: ChainClient) -> None:
    target = int(time.time()) + 1
    block = client.first_block_at_or_after(target, wait_s=10)
    # Publicly checkable: this block is at or after the time, its parent before it ...
    assert block.timestamp >= target
    assert block.parent_timestamp is not None and block.parent_timestamp < target
    assert client.block(block.number - 1).timestamp == block.parent_timestamp
    # ... and it did not exist before the time: no block is stamped in the future.
    assert time.time() >= target


def test_first_block_at_or_after_a_past_time(client: ChainClient) -> None:
    head = client.head()
    assert head >= 3
    stamps = [client.block(n).timestamp for n in range(head + 1)]
    assert all(a < b for a, b in itertools.pairwise(stamps)), stamps
    assert stamps[-1] <= time.time()
    for number in (1, head // 2, head):
        found = client.first_block_at_or_after(stamps[number], wait_s=0)
        assert found.number == number
        assert found.parent_timestamp == stamps[number - 1]
    genesis = client.first_block_at_or_after(0, wait_s=0)
    assert genesis.number == 0 and genesis.parent_timestamp is None


def test_first_block_times_out(client: ChainClient) -> None:
    started = time.monotonic()
    with pytest.raises(ChainTimeoutError):
        client.first_block_at_or_after(int(time.time()) + 3600, wait_s=0.3)
    assert time.monotonic() - started < 3


def test_unreachable_rpc_is_unavailable() -> None:
    started = time.monotonic()
    with pytest.raises(ChainUnavailableError):
        ChainClient(UNREACHABLE, timeout_s=2).head()
    with pytest.raises(ChainUnavailableError):
        ChainClient(UNREACHABLE, DEV_PRIVATE_KEY, timeout_s=2).publish(
            encode_payload(PayloadKind.COMMITS, bytes(32))
        )
    assert time.monotonic() - started < 3  # no hidden retries with backoff


def test_nonce_conflict_with_another_client_is_recovered(chain: EmbeddedChain) -> None:
    # Two clients with one key: what a restarted notary looks like to the old one.
    first = ChainClient(chain.url, chain.private_key)
    second = ChainClient(chain.url, chain.private_key)
    first.publish(encode_payload(PayloadKind.COMMITS, b"\x01" * 32))
    second.publish(encode_payload(PayloadKind.COMMITS, b"\x02" * 32))
    # ``first`` still holds the nonce ``second`` used: the node refuses, it re-reads.
    published = first.publish(encode_payload(PayloadKind.COMMITS, b"\x03" * 32))
    assert decode_payload(first.transaction_payload(published.tx_hash)[0])[1] == b"\x03" * 32


def test_json_rpc_batches_and_errors(chain: EmbeddedChain) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
        {"jsonrpc": "2.0", "id": "two", "method": "no_such_method", "params": []},
        {"jsonrpc": "2.0", "method": "eth_chainId", "params": []},  # a notification
    ]
    request = urllib.request.Request(
        chain.url, data=json.dumps(batch).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        answers = json.loads(reply.read())
    assert [a["id"] for a in answers] == [1, "two"]
    assert answers[0]["result"].startswith("0x")
    assert "error" in answers[1]


def test_a_running_chain_is_reused(chain: EmbeddedChain, client: ChainClient) -> None:
    head = client.head()
    again = EmbeddedChain(chain.state_dir)
    assert again.running()
    started = time.monotonic()
    assert again.start() == chain.url
    assert again.pid == chain.pid
    assert time.monotonic() - started < 1  # found, not started
    assert ChainClient(again.url).head() >= head  # same chain, same history


def test_stopping_loses_the_chain(tmp_path: Path) -> None:
    chain = start_test_chain(tmp_path)
    url = chain.url
    assert ChainClient(url).head() >= 0
    chain.stop()
    assert not chain.running()
    assert not (chain.state_dir / "chain.json").exists()
    with pytest.raises(ChainUnavailableError):
        ChainClient(url, timeout_s=2).head()
    chain.stop()  # stopping twice is fine
