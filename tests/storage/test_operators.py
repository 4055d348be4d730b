"""``storage.operators`` on the real embedded PostgreSQL: sealed credentials, idempotency
claims under concurrency, daily volumes from tickets, and players' risk state."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from core.errors import ConfigError, CredentialUnreadableError, ProtocolError
from core.operator_auth import (
    CredentialVault,
    check_signature,
    derive_key,
    signature,
    verify_client_secret,
)
from core.risk import RiskLimits
from storage.errors import OperatorExistsError, UnknownOperatorError
from storage.operators import (
    KEEP,
    BeginOutcome,
    OperatorStore,
    utc_day_start,
)

MASTER = bytes(range(32))
VAULT = CredentialVault(derive_key(MASTER, "ray-rgs/operator-credentials/v1"))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[OperatorStore]:
    s = await OperatorStore.connect(database_url, max_size=12)
    yield s
    await s.close()


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(database_url)
    yield c
    await c.close()


def _op() -> str:
    return f"op-{uuid.uuid4().hex[:10]}"


def _hash(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


# -- credentials ----------------------------------------------------------------------


async def test_create_and_read_credentials(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op = _op()
    risk = RiskLimits(max_bet_minor=500, anomaly_sigma=Fraction(5, 2), auto_suspend=True)
    client_id, secret = await store.create_operator(
        op, "Acme Bets", vault=VAULT, tier="premium", ip_allow_list=["10.1.2.3/8", "2001:db8::/32"], risk=risk
    )
    assert await conn.fetchval("SELECT name FROM operators WHERE operator_id = $1", op) == "Acme Bets"

    creds = await store.credentials(op, VAULT)
    assert creds is not None
    assert creds.operator_id == op
    assert creds.client_id == client_id
    assert creds.secret == secret.encode()
    assert creds.tier == "premium"
    assert creds.rate_limit_per_min is None
    assert creds.effective_rate_limit() == 5000
    assert creds.ip_allow_list == ("10.0.0.0/8", "2001:db8::/32")
    assert creds.risk == risk
    assert creds.enabled is True
    assert secret not in repr(creds)
    assert await store.credentials_by_client_id(client_id, VAULT) == creds

    # What the operator API does with them: token endpoint, then a signed call.
    verify_client_secret(creds.secret, secret)
    sig = signature(secret.encode(), "1700000000", "POST", "/v1/bets", b"{}")
    check_signature(creds.secret, "1700000000", "POST", "/v1/bets", b"{}", sig, now=1_700_000_000)


async def test_unknown_operator_or_client(store: OperatorStore) -> None:
    assert await store.credentials(_op(), VAULT) is None
    assert await store.credentials_by_client_id("rgs_" + "0" * 32, VAULT) is None


async def test_create_twice_is_refused(store: OperatorStore) -> None:
    op = _op()
    await store.create_operator(op, "Acme", vault=VAULT)
    with pytest.raises(OperatorExistsError):
        await store.create_operator(op, "Acme", vault=VAULT)


async def test_existing_operators_row_is_kept(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op = _op()
    await conn.execute("INSERT INTO operators (operator_id, name) VALUES ($1, 'Original')", op)
    await store.create_operator(op, "Other name", vault=VAULT)
    assert await conn.fetchval("SELECT name FROM operators WHERE operator_id = $1", op) == "Original"


async def test_credentials_are_never_stored_in_clear(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op = _op()
    client_id, secret = await store.create_operator(op, "Acme", vault=VAULT)
    rotated = await store.rotate_secret(op, vault=VAULT)
    for plain in (secret, rotated):
        needles = [plain, plain.encode().hex(), hashlib.sha256(plain.encode()).hexdigest()]
        sealed = bytes(await conn.fetchval("SELECT secret_sealed FROM operator_credentials WHERE operator_id = $1", op))
        assert plain.encode() not in sealed
        # Every column of every row this test wrote, as PostgreSQL renders it (bytea as hex).
        for table, where in (
            ("operator_credentials", "t.operator_id = $1"),
            ("operators", "t.operator_id = $1"),
            ("significant_events", "t.subject = 'operator:' || $1"),
        ):
            rows = await conn.fetch(f"SELECT row_to_json(t)::text AS j FROM {table} t WHERE {where}", op)
            assert rows
            for row in rows:
                for needle in needles:
                    assert needle not in row["j"], f"{table} holds the secret"
    # The client id is public; it is there.
    row = await conn.fetchval("SELECT row_to_json(t)::text FROM operator_credentials t WHERE operator_id = $1", op)
    assert client_id in row


async def test_another_vault_key_cannot_open(store: OperatorStore) -> None:
    op = _op()
    await store.create_operator(op, "Acme", vault=VAULT)
    other = CredentialVault(derive_key(bytes(range(1, 33)), "ray-rgs/operator-credentials/v1"))
    with pytest.raises(CredentialUnreadableError):
        await store.credentials(op, other)


async def test_a_sealed_secret_moved_to_another_operator_does_not_open(
    store: OperatorStore, conn: asyncpg.Connection
) -> None:
    victim, attacker = _op(), _op()
    await store.create_operator(victim, "Victim", vault=VAULT)
    await store.create_operator(attacker, "Attacker", vault=VAULT)
    await conn.execute(
        "UPDATE operator_credentials SET secret_sealed ="
        " (SELECT secret_sealed FROM operator_credentials WHERE operator_id = $1) WHERE operator_id = $2",
        victim,
        attacker,
    )
    with pytest.raises(CredentialUnreadableError):
        await store.credentials(attacker, VAULT)


async def test_rotate_secret(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op = _op()
    client_id, old = await store.create_operator(op, "Acme", vault=VAULT)
    new = await store.rotate_secret(op, vault=VAULT)
    assert new != old
    creds = await store.credentials(op, VAULT)
    assert creds is not None
    assert creds.client_id == client_id
    assert creds.secret == new.encode()
    kinds = [r["kind"] for r in await conn.fetch(
        "SELECT kind FROM significant_events WHERE subject = $1 ORDER BY event_id", f"operator:{op}"
    )]
    assert kinds == ["operator_created", "operator_secret_rotated"]
    with pytest.raises(UnknownOperatorError):
        await store.rotate_secret(_op(), vault=VAULT)


async def test_configure(store: OperatorStore) -> None:
    op = _op()
    await store.create_operator(op, "Acme", vault=VAULT, ip_allow_list=["192.0.2.1"])
    await store.configure(op, tier="premium", rate_limit_per_min=250, risk=RiskLimits(auto_suspend=True))
    creds = await store.credentials(op, VAULT)
    assert creds is not None
    assert (creds.tier, creds.rate_limit_per_min, creds.effective_rate_limit()) == ("premium", 250, 250)
    assert creds.risk.auto_suspend is True
    assert creds.ip_allow_list == ("192.0.2.1/32",)  # kept
    assert creds.enabled is True

    await store.configure(op, rate_limit_per_min=None, ip_allow_list=[], enabled=False)
    creds = await store.credentials(op, VAULT)
    assert creds is not None
    assert (creds.rate_limit_per_min, creds.effective_rate_limit()) == (None, 5000)
    assert creds.ip_allow_list == ()
    assert creds.enabled is False
    assert creds.tier == "premium"

    await store.configure(op, tier=KEEP)  # nothing to do
    with pytest.raises(ConfigError):
        await store.configure(op, ip_allow_list=["10.0.0.0/40"])
    with pytest.raises(ConfigError):
        await store.configure(op, tier="gold")
    with pytest.raises(ConfigError):
        await store.configure(op, rate_limit_per_min=0)
    with pytest.raises(UnknownOperatorError):
        await store.configure(_op(), enabled=False)


async def test_create_validates_settings(store: OperatorStore) -> None:
    for kwargs in ({"tier": "gold"}, {"ip_allow_list": ["nope"]}, {"rate_limit_per_min": -5}):
        with pytest.raises(ConfigError):
            await store.create_operator(_op(), "Acme", vault=VAULT, **kwargs)  # type: ignore[arg-type]


# -- idempotency ----------------------------------------------------------------------


async def test_idempotency_lifecycle(store: OperatorStore) -> None:
    op, key = _op(), f"k-{uuid.uuid4()}"
    h, other = _hash("request"), _hash("another request")

    assert (await store.begin_request(op, key, h)).outcome is BeginOutcome.NEW
    assert (await store.begin_request(op, key, h)).outcome is BeginOutcome.IN_PROGRESS
    assert (await store.begin_request(op, key, other)).outcome is BeginOutcome.MISMATCH

    body = b'{"ticket_id":"t-1","stake":"1.00"}\n'
    assert await store.finish_request(op, key, 201, body) is True
    assert await store.finish_request(op, key, 201, b"again") is False  # already finished

    replay = await store.begin_request(op, key, h)
    assert (replay.outcome, replay.status_code, replay.body) == (BeginOutcome.REPLAY, 201, body)
    assert (await store.begin_request(op, key, other)).outcome is BeginOutcome.MISMATCH

    # Keys belong to their operator.
    assert (await store.begin_request(_op(), key, other)).outcome is BeginOutcome.NEW


async def test_client_errors_are_stored_and_replayed(store: OperatorStore) -> None:
    op, key, h = _op(), "k-4xx", _hash("bad bet")
    await store.begin_request(op, key, h)
    assert await store.finish_request(op, key, 422, b'{"error":"stake_above_limit"}')
    replay = await store.begin_request(op, key, h)
    assert (replay.outcome, replay.status_code) == (BeginOutcome.REPLAY, 422)


async def test_server_errors_are_not_stored(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op, key, h = _op(), "k-5xx", _hash("request")
    await store.begin_request(op, key, h)
    assert await store.finish_request(op, key, 503, b'{"error":"unavailable"}') is False
    assert await conn.fetchval(
        "SELECT count(*) FROM api_requests WHERE operator_id = $1 AND idempotency_key = $2", op, key
    ) == 0
    assert (await store.begin_request(op, key, h)).outcome is BeginOutcome.NEW


async def test_abandon(store: OperatorStore) -> None:
    op, key, h = _op(), "k-abandon", _hash("request")
    await store.begin_request(op, key, h)
    assert await store.abandon_request(op, key) is True
    assert await store.abandon_request(op, key) is False
    assert await store.finish_request(op, key, 200, b"{}") is False  # the claim is gone
    assert (await store.begin_request(op, key, _hash("now something else"))).outcome is BeginOutcome.NEW
    await store.finish_request(op, key, 200, b"{}")
    assert await store.abandon_request(op, key) is False  # a finished answer stays


async def test_expired_claim_is_taken_over_once(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op, key, h = _op(), "k-lease", _hash("request")
    await store.begin_request(op, key, h)
    assert (await store.begin_request(op, key, h, lease_s=60)).outcome is BeginOutcome.IN_PROGRESS
    # The handler died two minutes ago.
    await conn.execute(
        "UPDATE api_requests SET started_at = now() - interval '2 minutes'"
        " WHERE operator_id = $1 AND idempotency_key = $2",
        op,
        key,
    )
    results = await asyncio.gather(*(store.begin_request(op, key, h, lease_s=60) for _ in range(8)))
    taken = [r for r in results if r.outcome is BeginOutcome.NEW]
    assert len(taken) == 1 and taken[0].resumed
    assert all(r.outcome is BeginOutcome.IN_PROGRESS for r in results if r is not taken[0])
    # Another request never takes a claim over.
    assert (await store.begin_request(op, key, _hash("x"), lease_s=0)).outcome is BeginOutcome.MISMATCH


async def test_concurrent_begins_with_one_key_give_exactly_one_new(store: OperatorStore) -> None:
    op, key, h = _op(), f"k-{uuid.uuid4()}", _hash("request")
    results = await asyncio.gather(*(store.begin_request(op, key, h) for _ in range(24)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(BeginOutcome.NEW) == 1
    assert outcomes.count(BeginOutcome.IN_PROGRESS) == 23


async def test_concurrent_begins_with_different_bodies(store: OperatorStore) -> None:
    op, key = _op(), f"k-{uuid.uuid4()}"
    results = await asyncio.gather(*(store.begin_request(op, key, _hash(f"body {i}")) for i in range(12)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(BeginOutcome.NEW) == 1
    assert outcomes.count(BeginOutcome.MISMATCH) == 11


async def test_bad_keys_and_statuses(store: OperatorStore) -> None:
    op = _op()
    for key in ("", "x" * 256, "with\nnewline", "clé"):
        with pytest.raises(ProtocolError):
            await store.begin_request(op, key, _hash("r"))
    with pytest.raises(ProtocolError):
        await store.begin_request(op, "k", b"short")
    await store.begin_request(op, "k-status", _hash("r"))
    for status in (99, 600, True):
        with pytest.raises(ProtocolError):
            await store.finish_request(op, "k-status", status, b"")  # type: ignore[arg-type]


async def test_prune_requests(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op = _op()
    for key in ("old", "new"):
        await store.begin_request(op, key, _hash(key))
        await store.finish_request(op, key, 200, b"{}")
    await conn.execute(
        "UPDATE api_requests SET created_at = now() - interval '3 days'"
        " WHERE operator_id = $1 AND idempotency_key = 'old'",
        op,
    )
    assert await store.prune_requests(older_than=timedelta(days=2)) >= 1
    assert (await store.begin_request(op, "old", _hash("old"))).outcome is BeginOutcome.NEW
    assert (await store.begin_request(op, "new", _hash("new"))).outcome is BeginOutcome.REPLAY
    with pytest.raises(ConfigError):
        await store.prune_requests(older_than=timedelta(0))


# -- volumes --------------------------------------------------------------------------

TODAY = datetime(2031, 3, 10, tzinfo=UTC)


async def _round(conn: asyncpg.Connection) -> str:
    table_id = f"vol-{uuid.uuid4().hex[:8]}"
    round_id = f"{table_id}:1"
    await conn.execute("INSERT INTO game_tables (table_id, config) VALUES ($1, '{}')", table_id)
    await conn.execute(
        "INSERT INTO rounds (round_id, table_id, nonce, phase, opens_at, closes_at, draws_at, derivation,"
        " seed_ciphertext, commitment) VALUES ($1, $2, 1, 'settled', $3, $3, $3, 'v1', '\\x00', 'c')",
        round_id,
        table_id,
        TODAY,
    )
    return round_id


async def _ticket(
    conn: asyncpg.Connection,
    round_id: str,
    op: str,
    player: str,
    stake: int,
    placed_at: datetime,
    *,
    state: str = "placed",
    currency: str = "EUR",
) -> None:
    await conn.execute(
        "INSERT INTO tickets (ticket_id, round_id, operator_id, player_id, currency, picks, stake,"
        " paytable, state, placed_at) VALUES ($1, $2, $3, $4, $5, '{1,2,3}', $6, 'standard', $7, $8)",
        uuid.uuid4().hex,
        round_id,
        op,
        player,
        currency,
        stake,
        state,
        placed_at,
    )


async def _operator(conn: asyncpg.Connection) -> str:
    op = _op()
    await conn.execute("INSERT INTO operators (operator_id, name) VALUES ($1, $1)", op)
    return op


async def test_volume_today(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op, round_id = await _operator(conn), await _round(conn)
    tick = timedelta(microseconds=1)
    await _ticket(conn, round_id, op, "p1", 100, TODAY)  # the first instant counts
    await _ticket(conn, round_id, op, "p1", 200, TODAY + timedelta(hours=23, minutes=59), state="settled")
    await _ticket(conn, round_id, op, "p1", 400, TODAY + timedelta(hours=1), state="pending")
    await _ticket(conn, round_id, op, "p1", 10**20, TODAY + timedelta(hours=2))  # beyond bigint
    await _ticket(conn, round_id, op, "p1", 1_000, TODAY - tick)  # yesterday
    await _ticket(conn, round_id, op, "p1", 2_000, TODAY + timedelta(days=1))  # tomorrow
    for state in ("rejected", "refunded", "rolled_back"):  # no money moved
        await _ticket(conn, round_id, op, "p1", 4_000, TODAY + timedelta(hours=3), state=state)
    await _ticket(conn, round_id, op, "p1", 8_000, TODAY + timedelta(hours=3), currency="USD")
    await _ticket(conn, round_id, op, "p2", 16_000, TODAY + timedelta(hours=3))
    assert await store.volume_today(op, "p1", "EUR", day_start=TODAY) == 700 + 10**20
    assert await store.volume_today(op, "p1", "USD", day_start=TODAY) == 8_000
    assert await store.volume_today(op, "p2", "EUR", day_start=TODAY) == 16_000
    assert await store.volume_today(op, "nobody", "EUR", day_start=TODAY) == 0
    with pytest.raises(ConfigError):
        await store.volume_today(op, "p1", "EUR", day_start=datetime(2031, 3, 10))  # naive


async def test_daily_volumes_start_at_the_first_bet(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op, round_id = await _operator(conn), await _round(conn)
    day = timedelta(days=1)
    await _ticket(conn, round_id, op, "p1", 300, TODAY - 4 * day + timedelta(hours=5))
    await _ticket(conn, round_id, op, "p1", 50, TODAY - 4 * day + timedelta(hours=23))
    await _ticket(conn, round_id, op, "p1", 70, TODAY - 2 * day, state="settled")
    await _ticket(conn, round_id, op, "p1", 999, TODAY - 2 * day, state="rejected")
    await _ticket(conn, round_id, op, "p1", 5, TODAY - timedelta(microseconds=1))
    await _ticket(conn, round_id, op, "p1", 1_000_000, TODAY + timedelta(hours=1))  # today: not history
    # 4 days ago, 3 (idle), 2, yesterday.
    assert await store.daily_volumes(op, "p1", "EUR", day_start=TODAY) == [350, 0, 70, 5]
    assert await store.daily_volumes(op, "p1", "EUR", days=2, day_start=TODAY) == [70, 5]
    # A later day: idle days since count as zeros.
    assert await store.daily_volumes(op, "p1", "EUR", days=7, day_start=TODAY + 3 * day) == [
        350, 0, 70, 5, 1_000_000, 0, 0,
    ]
    assert await store.daily_volumes(op, "p1", "USD", day_start=TODAY) == []
    assert await store.daily_volumes(op, "nobody", "EUR", day_start=TODAY) == []
    # day_start is truncated to its UTC midnight.
    assert await store.daily_volumes(op, "p1", "EUR", day_start=TODAY + timedelta(hours=13)) == [350, 0, 70, 5]


async def test_daily_volumes_window(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op, round_id = await _operator(conn), await _round(conn)
    await _ticket(conn, round_id, op, "p1", 9, TODAY - timedelta(days=40))
    await _ticket(conn, round_id, op, "p1", 3, TODAY - timedelta(days=30))
    volumes = await store.daily_volumes(op, "p1", "EUR", days=30, day_start=TODAY)
    assert len(volumes) == 30
    assert volumes[0] == 3 and sum(volumes) == 3
    for bad in (0, 367, True):
        with pytest.raises(ConfigError):
            await store.daily_volumes(op, "p1", "EUR", days=bad, day_start=TODAY)


def test_utc_day_start() -> None:
    assert utc_day_start(datetime(2031, 3, 10, 23, 59, tzinfo=UTC)) == TODAY
    # 19:30 on the 10th in New York is 00:30 on the 11th in UTC.
    new_york = datetime(2031, 3, 11, 0, 30, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    assert new_york.day == 10
    assert utc_day_start(new_york) == TODAY + timedelta(days=1)
    assert utc_day_start().tzinfo is UTC


# -- player risk ----------------------------------------------------------------------


async def _events(conn: asyncpg.Connection, op: str, player: str) -> list[tuple[str, dict[str, object]]]:
    rows = await conn.fetch(
        "SELECT kind, detail::text AS detail FROM significant_events WHERE subject = $1 ORDER BY event_id",
        f"player:{op}:{player}",
    )
    return [(r["kind"], json.loads(r["detail"])) for r in rows]


async def test_flag_suspend_and_clear(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op = await _operator(conn)
    assert await store.player_risk(op, "p1") is None
    detail = {"today_minor": 21, "mean_minor": "5.00", "sd_minor": "5.00"}

    assert await store.flag_player(op, "p1", "volume_anomaly", detail, suspended=False) is True
    risk = await store.player_risk(op, "p1")
    assert risk is not None
    assert (risk.state, risk.kind, risk.detail, risk.suspended) == ("flagged", "volume_anomaly", detail, False)
    assert await store.flag_player(op, "p1", "volume_anomaly", detail, suspended=False) is False

    assert await store.flag_player(op, "p1", "volume_anomaly", detail, suspended=True) is True
    risk = await store.player_risk(op, "p1")
    assert risk is not None and risk.suspended
    # A later flag does not lower a suspension.
    assert await store.flag_player(op, "p1", "manual", {}, suspended=False) is False
    assert (await store.player_risk(op, "p1")).state == "suspended"  # type: ignore[union-attr]

    assert await store.clear_player(op, "p1", reason="reviewed by risk team") is True
    assert (await store.player_risk(op, "p1")).state == "clear"  # type: ignore[union-attr]
    assert await store.clear_player(op, "p1", reason="again") is False

    events = await _events(conn, op, "p1")
    assert [k for k, _ in events] == ["player_flagged", "player_suspended", "player_cleared"]
    assert events[0][1] == {"operator_id": op, "player_id": "p1", "from": "clear", "kind": "volume_anomaly",
                            "detail": detail}
    assert events[1][1]["from"] == "flagged"
    assert events[2][1]["detail"] == {"reason": "reviewed by risk team"}
    with pytest.raises(ConfigError):
        await store.clear_player(op, "p1", reason=" ")


async def test_direct_suspension_and_isolation(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op = await _operator(conn)
    assert await store.flag_player(op, "p1", "volume_anomaly", {}, suspended=True) is True
    assert [k for k, _ in await _events(conn, op, "p1")] == ["player_suspended"]
    assert await store.player_risk(op, "p2") is None
    other = await _operator(conn)
    assert await store.player_risk(other, "p1") is None


async def test_concurrent_flags_log_one_event(store: OperatorStore, conn: asyncpg.Connection) -> None:
    op = await _operator(conn)
    changed = await asyncio.gather(
        *(store.flag_player(op, "p1", "volume_anomaly", {"i": i}, suspended=True) for i in range(10))
    )
    assert changed.count(True) == 1
    assert [k for k, _ in await _events(conn, op, "p1")] == ["player_suspended"]
