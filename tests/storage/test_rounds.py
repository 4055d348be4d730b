"""``storage.rounds`` ticket writes on the real embedded PostgreSQL: amounts round-trip
exactly whichever array type carries them (``bigint`` normally, ``numeric`` for wei)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest

from core.fairness import commitment
from core.rounds import RoundPhase
from storage.rounds import RoundStore, TicketRow, _int_array_type

SEED = "ab" * 32


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[RoundStore]:
    s = await RoundStore.connect(database_url)
    yield s
    await s.close()


async def _open_round(store: RoundStore) -> str:
    table_id = f"t-{uuid.uuid4().hex[:8]}"
    await store.ensure_table(table_id, {"table_id": table_id})
    rid = f"{table_id}-1"
    now = int(time.time() * 1000)
    await store.create_round(
        round_id=rid, table_id=table_id, nonce=1, opens_at=now, closes_at=now + 9000, draws_at=now + 10_000,
        derivation="v1", paytable_set="standard", seed_ciphertext=b"sealed", commitment=commitment(SEED),
    )
    await store.transition(rid, RoundPhase.CREATED, RoundPhase.OPEN)
    return rid


def test_array_type_is_bigint_until_an_amount_leaves_64_bits() -> None:
    assert _int_array_type([0, 2**63 - 1], [None, -(2**63)]) == "bigint"
    assert _int_array_type([1], [2**63]) == "numeric"
    assert _int_array_type([-(2**63) - 1]) == "numeric"
    assert _int_array_type([]) == "bigint"


@pytest.mark.parametrize(
    ("currency", "stake", "balance", "payout"),
    [
        ("EUR", 1_000, 6_372_709_234, 36_000),
        # wei: every amount beyond 64 bits, so the numeric[] path carries them
        ("ETH", 2 * 10**19, 123 * 10**20 + 7, 9 * 10**21 + 1),
    ],
)
async def test_ticket_amounts_round_trip_exactly(
    store: RoundStore, currency: str, stake: int, balance: int, payout: int
) -> None:
    rid = await _open_round(store)
    ticket = TicketRow(f"{rid}-a", rid, "op-rounds", "p1", currency, (3, 14, 15), stake, "pending")
    assert await store.insert_pending(rid.rsplit("-", 1)[0], [ticket], "standard") == []
    await store.finish_placement([(ticket.ticket_id, balance + stake, balance, 11)], [])
    await store.record_results([ticket.ticket_id], [2], [payout], [balance + payout], [12])

    row = await store.ticket(ticket.ticket_id)
    assert row is not None
    assert row["state"] == "settled"
    assert int(row["stake"]) == stake
    assert int(row["balance_before"]) == balance + stake
    assert int(row["balance_after"]) == balance
    assert int(row["payout"]) == payout
    assert int(row["win_balance_after"]) == balance + payout
    assert row["hits"] == 2
