"""The daily volume limit under concurrency (``OperatorStore.reserve_volume`` and
``release_volume``) on the real embedded PostgreSQL: concurrent bets of one player never
pass the limit together, a stake counts exactly once from its check through its ticket
row, and a reservation whose caller vanished stops counting after its lease."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from core.errors import ConfigError, ProtocolError
from core.risk import DAILY_VOLUME_EXCEEDED, STAKE_ABOVE_LIMIT, RiskLimits
from storage.operators import OperatorStore, utc_day_start

TODAY = utc_day_start()
CAP = RiskLimits(max_bet_minor=1_000, daily_volume_minor=5_000)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[OperatorStore]:
    # More connections than the concurrent checks below, so they really run at once.
    s = await OperatorStore.connect(database_url, max_size=16)
    yield s
    await s.close()


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(database_url)
    yield c
    await c.close()


@pytest.fixture
async def op(conn: asyncpg.Connection) -> str:
    operator_id = f"op-{uuid.uuid4().hex[:10]}"
    await conn.execute("INSERT INTO operators (operator_id, name) VALUES ($1, $1)", operator_id)
    return operator_id


@pytest.fixture
async def round_id(conn: asyncpg.Connection) -> str:
    table_id = f"vol-{uuid.uuid4().hex[:8]}"
    rid = f"{table_id}:1"
    await conn.execute("INSERT INTO game_tables (table_id, config) VALUES ($1, '{}')", table_id)
    await conn.execute(
        "INSERT INTO rounds (round_id, table_id, nonce, phase, opens_at, closes_at, draws_at, derivation,"
        " seed_ciphertext, commitment) VALUES ($1, $2, 1, 'settled', now(), now(), now(), 'v1', '\\x00', 'c')",
        rid, table_id,
    )
    return rid


async def _ticket(conn: asyncpg.Connection, round_id: str, op: str, ticket_id: str, stake: int, *,
                  player: str = "p1", state: str = "pending", placed_at: datetime | None = None) -> None:
    await conn.execute(
        "INSERT INTO tickets (ticket_id, round_id, operator_id, player_id, currency, picks, stake,"
        " paytable, state, placed_at) VALUES ($1, $2, $3, $4, 'EUR', '{1,2,3}', $5, 'standard', $6, $7)",
        ticket_id, round_id, op, player, stake, state, placed_at or datetime.now(UTC),
    )


async def _reserved(conn: asyncpg.Connection, op: str, player: str = "p1") -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT ticket_id, stake::text AS stake FROM volume_reservations WHERE operator_id = $1 AND player_id = $2",
        op, player,
    )
    return {r["ticket_id"]: int(r["stake"]) for r in rows}


def _tid() -> str:
    return uuid.uuid4().hex


async def test_concurrent_checks_never_pass_the_limit_together(
    store: OperatorStore, conn: asyncpg.Connection, op: str, round_id: str
) -> None:
    await _ticket(conn, round_id, op, _tid(), 1_500, state="placed")  # already staked today
    # 12 bets of 800 at once against 5,000 with 1,500 spent: exactly 4 fit (4,700).
    checks = await asyncio.gather(*(
        store.reserve_volume(op, "p1", "EUR", _tid(), 800, CAP, day_start=TODAY) for _ in range(12)
    ))
    admitted = [c for c in checks if c.reserved]
    refused = [c for c in checks if not c.reserved]
    assert len(admitted) == 4 and len(refused) == 8
    assert {c.refusal for c in refused} == {DAILY_VOLUME_EXCEEDED}
    # Each admitted check saw the ones before it, one at a time.
    assert sorted(c.volume_minor for c in admitted) == [1_500, 2_300, 3_100, 3_900]
    assert {c.volume_minor for c in refused} == {4_700}
    assert sum((await _reserved(conn, op)).values()) == 3_200


async def test_other_players_currencies_and_days_do_not_count(
    store: OperatorStore, conn: asyncpg.Connection, op: str, round_id: str
) -> None:
    assert (await store.reserve_volume(op, "p1", "EUR", _tid(), 1_000, CAP, day_start=TODAY)).volume_minor == 0
    await _ticket(conn, round_id, op, _tid(), 1_000, placed_at=TODAY - timedelta(microseconds=1), state="settled")
    checks = await asyncio.gather(
        store.reserve_volume(op, "p2", "EUR", _tid(), 1_000, CAP, day_start=TODAY),
        store.reserve_volume(op, "p1", "USD", _tid(), 1_000, CAP, day_start=TODAY),
        store.reserve_volume(op, "p1", "EUR", _tid(), 1_000, CAP, day_start=TODAY + timedelta(days=1)),
    )
    assert [c.volume_minor for c in checks] == [0, 0, 0] and all(c.reserved for c in checks)
    assert (await store.reserve_volume(op, "p1", "EUR", _tid(), 1_000, CAP, day_start=TODAY)).volume_minor == 1_000


async def test_a_stake_counts_once_from_check_to_ticket(
    store: OperatorStore, conn: asyncpg.Connection, op: str, round_id: str
) -> None:
    first = _tid()
    assert (await store.reserve_volume(op, "p1", "EUR", first, 1_000, CAP, day_start=TODAY)).reserved
    # In flight, no ticket row yet: the reservation counts.
    assert (await store.reserve_volume(op, "p1", "EUR", _tid(), 1, CAP, day_start=TODAY)).volume_minor == 1_000
    # The scheduler wrote the ticket: it counts, its reservation no longer does (not 2,001).
    await _ticket(conn, round_id, op, first, 1_000, state="pending")
    assert (await store.reserve_volume(op, "p1", "EUR", _tid(), 1, CAP, day_start=TODAY)).volume_minor == 1_001
    # The wallet refused it: a rejected ticket moved no money, even before the release.
    await conn.execute("UPDATE tickets SET state = 'rejected' WHERE ticket_id = $1", first)
    assert (await store.reserve_volume(op, "p1", "EUR", _tid(), 1, CAP, day_start=TODAY)).volume_minor == 2
    assert await store.release_volume(op, "p1", "EUR", first) is True
    assert await store.release_volume(op, "p1", "EUR", first) is False
    assert first not in await _reserved(conn, op)


async def test_a_retried_bet_is_not_counted_against_itself(
    store: OperatorStore, conn: asyncpg.Connection, op: str, round_id: str
) -> None:
    tid = _tid()
    assert (await store.reserve_volume(op, "p1", "EUR", tid, 1_000, CAP, day_start=TODAY)).reserved
    await store.reserve_volume(op, "p1", "EUR", _tid(), 1_000, CAP, day_start=TODAY)
    await store.reserve_volume(op, "p1", "EUR", _tid(), 1_000, CAP, day_start=TODAY)
    await store.reserve_volume(op, "p1", "EUR", _tid(), 1_000, CAP, day_start=TODAY)
    await store.reserve_volume(op, "p1", "EUR", _tid(), 1_000, CAP, day_start=TODAY)  # 5,000: full
    assert not (await store.reserve_volume(op, "p1", "EUR", _tid(), 1, CAP, day_start=TODAY)).reserved
    # The same bet again (a retried request) fits: its own reservation is its stake, once.
    again = await store.reserve_volume(op, "p1", "EUR", tid, 1_000, CAP, day_start=TODAY)
    assert again.reserved and again.volume_minor == 4_000
    # ... and so does it once its ticket is placed.
    await _ticket(conn, round_id, op, tid, 1_000, state="placed")
    assert (await store.reserve_volume(op, "p1", "EUR", tid, 1_000, CAP, day_start=TODAY)).volume_minor == 4_000
    assert list((await _reserved(conn, op)).values()).count(1_000) == 5


async def test_stake_above_the_bet_limit_books_nothing(store: OperatorStore, conn: asyncpg.Connection, op: str) -> None:
    check = await store.reserve_volume(op, "p1", "EUR", _tid(), 1_001, CAP, day_start=TODAY)
    assert check.refusal == STAKE_ABOVE_LIMIT and await _reserved(conn, op) == {}
    exact = await store.reserve_volume(op, "p1", "EUR", _tid(), 1, RiskLimits(daily_volume_minor=1), day_start=TODAY)
    assert exact.reserved  # reaching the limit exactly is allowed
    over = await store.reserve_volume(op, "p1", "EUR", _tid(), 1, RiskLimits(daily_volume_minor=1), day_start=TODAY)
    assert over.refusal == DAILY_VOLUME_EXCEEDED and len(await _reserved(conn, op)) == 1


async def test_a_vanished_callers_reservation_lapses_and_is_pruned(
    store: OperatorStore, conn: asyncpg.Connection, op: str
) -> None:
    lost, fresh = _tid(), _tid()
    await store.reserve_volume(op, "p1", "EUR", lost, 1_000, CAP, day_start=TODAY)
    await store.reserve_volume(op, "p2", "EUR", _tid(), 1_000, CAP, day_start=TODAY)
    await conn.execute("UPDATE volume_reservations SET reserved_at = now() - interval '61 seconds' WHERE ticket_id = $1",
                       lost)
    check = await store.reserve_volume(op, "p1", "EUR", fresh, 1_000, CAP, day_start=TODAY)
    assert check.volume_minor == 0  # past its lease the lost one no longer counts
    assert (await store.reserve_volume(op, "p1", "EUR", _tid(), 1, CAP, day_start=TODAY, lease_s=120)).volume_minor == 2_000
    # Releasing any of the player's bets prunes their lapsed reservations, not others'.
    assert await store.release_volume(op, "p1", "EUR", fresh) is True
    assert lost not in await _reserved(conn, op) and len(await _reserved(conn, op, "p2")) == 1


async def test_bad_arguments(store: OperatorStore, op: str) -> None:
    with pytest.raises(ProtocolError):
        await store.reserve_volume(op, "p1", "EUR", "", 1, CAP, day_start=TODAY)
    with pytest.raises(ProtocolError):
        await store.release_volume(op, "p1", "EUR", "x" * 65)
    with pytest.raises(ConfigError):
        await store.reserve_volume(op, "p1", "EUR", _tid(), 1, CAP, day_start=datetime(2031, 3, 10))  # naive
    with pytest.raises(ConfigError):
        await store.reserve_volume(op, "p1", "EUR", _tid(), 1, CAP, day_start=TODAY, lease_s=0)
