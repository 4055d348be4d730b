"""Rounds, tickets and significant events in PostgreSQL: what a round scheduler persists.

A round's phase moves only through :meth:`RoundStore.transition`, which checks the move
against the state machine (``core.rounds.RoundPhase``), updates the row only if it is
still in the phase the caller believes, and appends the move to ``round_transitions``
in the same transaction. A repeat of a move already made is a no-op, so a restarted
scheduler can replay its last step safely; any other mismatch is a
:class:`~core.errors.LifecycleError` and nothing is written.

Tickets are written in two steps around the debit (pending, then placed or rejected), so
a crash between the two leaves a pending row that recovery refunds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from core.errors import LifecycleError
from core.rounds import RoundPhase
from storage.database import create_pool, run_on_pool

__all__ = [
    "PUBLIC_ROUND_COLUMNS",
    "RoundRecord",
    "RoundStore",
    "TicketRow",
    "from_ms",
    "to_ms",
]


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(value: datetime) -> int:
    # timestamptz keeps microseconds; our times are whole milliseconds
    return int(value.timestamp() * 1000 + 0.5)


@dataclass(frozen=True, slots=True)
class RoundRecord:
    round_id: str
    table_id: str
    nonce: int
    phase: RoundPhase
    opens_at: int  # ms since the epoch
    closes_at: int
    draws_at: int
    derivation: str
    seed_ciphertext: bytes
    commitment: str
    paytable_set: str | None
    commit_tx: str | None
    commit_proof: dict[str, Any] | None
    salt: str | None
    salt_block: int | None
    numbers: tuple[int, ...] | None
    revealed_seed: str | None
    settlement: dict[str, Any] | None
    void_reason: str | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> RoundRecord:
        return cls(
            round_id=row["round_id"],
            table_id=row["table_id"],
            nonce=int(row["nonce"]),
            phase=RoundPhase(row["phase"]),
            opens_at=to_ms(row["opens_at"]),
            closes_at=to_ms(row["closes_at"]),
            draws_at=to_ms(row["draws_at"]),
            derivation=row["derivation"],
            seed_ciphertext=bytes(row["seed_ciphertext"]),
            commitment=row["commitment"],
            paytable_set=row["paytable_set"],
            commit_tx=row["commit_tx"],
            commit_proof=_json(row["commit_proof"]),
            salt=row["client_seed"],
            salt_block=row["salt_block"],
            numbers=None if row["numbers"] is None else tuple(row["numbers"]),
            revealed_seed=row["revealed_seed"],
            settlement=_json(row["settlement"]),
            void_reason=row["void_reason"],
        )


@dataclass(frozen=True, slots=True)
class TicketRow:
    ticket_id: str
    round_id: str
    operator_id: str
    player_id: str
    currency: str
    picks: tuple[int, ...]
    stake: int
    state: str

    @property
    def bet_key(self) -> str:
        return bet_key(self.ticket_id)


def _int_array_type(*columns: Sequence[int | None]) -> str:
    """``bigint`` when every amount fits in 64 bits (always, but for wei), else ``numeric``.

    asyncpg encodes a ``numeric[]`` element by element through ``Decimal``: on 100,000
    tickets that costs the settler about 0.3 s of CPU, where ``bigint[]`` costs a fifth.
    """
    fits = all(-(2**63) <= v < 2**63 for column in columns for v in column if v is not None)
    return "bigint" if fits else "numeric"


def bet_key(ticket_id: str) -> str:
    """The wallet bet a ticket is (its idempotency key in the ledger)."""
    return f"keno:{ticket_id}"


PUBLIC_ROUND_COLUMNS = (
    "round_id, table_id, nonce, phase, opens_at, closes_at, draws_at, derivation, paytable_set,"
    " commitment, commit_tx, commit_block, commit_root, commit_proof, salt, salt_block, numbers,"
    " revealed_seed, reveal_tx, reveal_block, reveal_root, reveal_proof, settlement, void_reason,"
    " chain_id"
)

# The columns a transition may set alongside the phase.
_SETTABLE = frozenset(
    {
        "commit_tx",
        "commit_block",
        "commit_root",
        "commit_proof",
        "client_seed",
        "salt_block",
        "numbers",
        "revealed_seed",
        "reveal_tx",
        "reveal_block",
        "reveal_root",
        "reveal_proof",
        "settlement",
        "void_reason",
        "chain_id",
    }
)
_JSON_COLUMNS = frozenset({"commit_proof", "reveal_proof", "settlement"})


def _json(value: Any) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    return json.loads(value)


class RoundStore:
    """One scheduler's (or reader's) access to rounds and tickets, over a small pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str, *, max_size: int = 4) -> RoundStore:
        return cls(await create_pool(url, max_size=max_size))

    async def close(self) -> None:
        await self._pool.close()

    async def _run(self, fn: Any) -> Any:
        return await run_on_pool(self._pool, fn, "a round update")

    # -- tables ---------------------------------------------------------------------------

    async def ensure_table(self, table_id: str, config: dict[str, Any]) -> tuple[bool, str | None]:
        """Register or update a table's configuration; return (enabled, disabled_reason)."""

        async def run(conn: asyncpg.Connection) -> tuple[bool, str | None]:
            row = await conn.fetchrow(
                "INSERT INTO game_tables (table_id, config) VALUES ($1, $2::jsonb)"
                " ON CONFLICT (table_id) DO UPDATE SET config = excluded.config"
                " RETURNING enabled, disabled_reason",
                table_id,
                json.dumps(config),
            )
            return bool(row["enabled"]), row["disabled_reason"]

        result: tuple[bool, str | None] = await self._run(run)
        return result

    async def set_table_enabled(self, table_id: str, enabled: bool, reason: str | None) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute(
                    "UPDATE game_tables SET enabled = $2, disabled_reason = $3 WHERE table_id = $1",
                    table_id,
                    enabled,
                    None if enabled else reason,
                )
                await _event(
                    conn,
                    "table_enabled" if enabled else "table_disabled",
                    table_id,
                    {"reason": reason},
                )

        await self._run(run)

    async def log_event(self, kind: str, subject: str, detail: dict[str, Any]) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await _event(conn, kind, subject, detail)

        await self._run(run)

    async def events(self, subject_prefix: str = "", limit: int = 100) -> list[dict[str, Any]]:
        async def run(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            rows = await conn.fetch(
                "SELECT kind, subject, detail::text AS detail, at FROM significant_events"
                " WHERE subject LIKE $1 || '%' ORDER BY event_id DESC LIMIT $2",
                subject_prefix,
                limit,
            )
            return [
                {
                    "kind": r["kind"],
                    "subject": r["subject"],
                    "detail": json.loads(r["detail"]),
                    "at": r["at"].isoformat(),
                }
                for r in rows
            ]

        result: list[dict[str, Any]] = await self._run(run)
        return result

    # -- rounds ---------------------------------------------------------------------------

    async def create_round(
        self,
        *,
        round_id: str,
        table_id: str,
        nonce: int,
        opens_at: int,
        closes_at: int,
        draws_at: int,
        derivation: str,
        paytable_set: str,
        seed_ciphertext: bytes,
        commitment: str,
    ) -> RoundRecord:
        """Insert the round in phase ``created`` (or return it if it already exists)."""

        async def run(conn: asyncpg.Connection) -> RoundRecord:
            async with conn.transaction():
                inserted = await conn.fetchval(
                    "INSERT INTO rounds (round_id, table_id, nonce, phase, opens_at, closes_at,"
                    " draws_at, derivation, paytable_set, seed_ciphertext, commitment)"
                    " VALUES ($1, $2, $3, 'created', $4, $5, $6, $7, $8, $9, $10)"
                    " ON CONFLICT (round_id) DO NOTHING RETURNING 1",
                    round_id,
                    table_id,
                    nonce,
                    from_ms(opens_at),
                    from_ms(closes_at),
                    from_ms(draws_at),
                    derivation,
                    paytable_set,
                    seed_ciphertext,
                    commitment,
                )
                if inserted:
                    await conn.execute(
                        "INSERT INTO round_transitions (round_id, seq, from_phase, to_phase)"
                        " VALUES ($1, 1, NULL, 'created')",
                        round_id,
                    )
                row = await conn.fetchrow("SELECT * FROM rounds WHERE round_id = $1", round_id)
            return RoundRecord.from_row(row)

        result: RoundRecord = await self._run(run)
        return result

    async def get_round(self, round_id: str) -> RoundRecord | None:
        async def run(conn: asyncpg.Connection) -> RoundRecord | None:
            row = await conn.fetchrow("SELECT * FROM rounds WHERE round_id = $1", round_id)
            return None if row is None else RoundRecord.from_row(row)

        result: RoundRecord | None = await self._run(run)
        return result

    async def unfinished_rounds(self, table_id: str) -> list[RoundRecord]:
        async def run(conn: asyncpg.Connection) -> list[RoundRecord]:
            rows = await conn.fetch(
                "SELECT * FROM rounds WHERE table_id = $1 AND phase NOT IN ('revealed', 'voided')"
                " ORDER BY nonce",
                table_id,
            )
            return [RoundRecord.from_row(r) for r in rows]

        result: list[RoundRecord] = await self._run(run)
        return result

    async def record_commitment(
        self, round_id: str, proof: dict[str, Any], chain_id: int | None
    ) -> None:
        """Where the commitment was published (the round stays ``created`` until it opens)."""

        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE rounds SET commit_tx = $2, commit_block = $3, commit_root = $4,"
                " commit_proof = $5::jsonb, chain_id = $6, updated_at = now()"
                " WHERE round_id = $1 AND phase = 'created'",
                round_id,
                proof["tx"],
                proof["block"],
                proof["root"],
                json.dumps(proof),
                chain_id,
            )

        await self._run(run)

    async def transition(
        self,
        round_id: str,
        from_phase: RoundPhase,
        to_phase: RoundPhase,
        detail: dict[str, Any] | None = None,
        **columns: Any,
    ) -> bool:
        """Move a round from ``from_phase`` to ``to_phase``, setting ``columns`` with it.

        Returns True if this call made the move, False if the round was already in
        ``to_phase`` (a replayed step). Raises :class:`LifecycleError` otherwise.
        """
        from_phase.check_transition(to_phase)
        unknown = set(columns) - _SETTABLE
        if unknown:
            raise LifecycleError(f"a transition cannot set {', '.join(sorted(unknown))}")
        names = sorted(columns)
        assignments = "".join(
            f", {name} = ${i + 3}{'::jsonb' if name in _JSON_COLUMNS else ''}"
            for i, name in enumerate(names)
        )
        values = [json.dumps(columns[n]) if n in _JSON_COLUMNS else columns[n] for n in names]

        async def run(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                moved = await conn.fetchval(
                    f"UPDATE rounds SET phase = $2, updated_at = now(){assignments}"
                    f" WHERE round_id = $1 AND phase = '{from_phase.value}' RETURNING 1",
                    round_id,
                    to_phase.value,
                    *values,
                )
                if not moved:
                    current = await conn.fetchval(
                        "SELECT phase FROM rounds WHERE round_id = $1", round_id
                    )
                    if current == to_phase.value:
                        return False
                    raise LifecycleError(
                        f"round {round_id} is {current or 'unknown'}, not {from_phase.value}:"
                        f" cannot move it to {to_phase.value}"
                    )
                await conn.execute(
                    "INSERT INTO round_transitions (round_id, seq, from_phase, to_phase, detail)"
                    " SELECT $1, coalesce(max(seq), 0) + 1, $2, $3, $4::jsonb"
                    " FROM round_transitions WHERE round_id = $1",
                    round_id,
                    from_phase.value,
                    to_phase.value,
                    None if detail is None else json.dumps(detail),
                )
                if to_phase is RoundPhase.VOIDED:
                    await _event(
                        conn, "round_voided", round_id, {"from": from_phase.value, **(detail or {})}
                    )
                return True

        result: bool = await self._run(run)
        return result

    async def transitions(self, round_id: str) -> list[tuple[str | None, str]]:
        async def run(conn: asyncpg.Connection) -> list[tuple[str | None, str]]:
            rows = await conn.fetch(
                "SELECT from_phase, to_phase FROM round_transitions WHERE round_id = $1 ORDER BY seq",
                round_id,
            )
            return [(r["from_phase"], r["to_phase"]) for r in rows]

        result: list[tuple[str | None, str]] = await self._run(run)
        return result

    async def published(self, round_id: str) -> dict[str, Any] | None:
        """The public record of a round (``published_rounds``), as JSON-ready values."""
        rows = await self.published_many(round_ids=[round_id])
        return rows[0] if rows else None

    async def published_many(
        self,
        *,
        round_ids: Sequence[str] | None = None,
        table_id: str | None = None,
        phases: Sequence[str] = ("revealed",),
        limit: int = 100,
        before_nonce: int | None = None,
    ) -> list[dict[str, Any]]:
        async def run(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            if round_ids is not None:
                rows = await conn.fetch(
                    f"SELECT {PUBLIC_ROUND_COLUMNS} FROM published_rounds WHERE round_id = ANY($1::text[])"
                    " ORDER BY table_id, nonce",
                    list(round_ids),
                )
            else:
                rows = await conn.fetch(
                    f"SELECT {PUBLIC_ROUND_COLUMNS} FROM published_rounds"
                    " WHERE ($1::text IS NULL OR table_id = $1) AND phase = ANY($2::text[])"
                    " AND ($3::bigint IS NULL OR nonce < $3) ORDER BY nonce DESC LIMIT $4",
                    table_id,
                    list(phases),
                    before_nonce,
                    limit,
                )
            return [_public(r) for r in rows]

        result: list[dict[str, Any]] = await self._run(run)
        return result

    # -- tickets --------------------------------------------------------------------------

    async def insert_pending(
        self, table_id: str, tickets: Sequence[TicketRow], paytable_set: str
    ) -> list[str]:
        """Write new tickets as pending; return the ids that already existed (not rewritten)."""

        stakes = [t.stake for t in tickets]
        amount = _int_array_type(stakes)

        async def run(conn: asyncpg.Connection) -> list[str]:
            async with conn.transaction():
                inserted = await conn.fetch(
                    "INSERT INTO tickets (ticket_id, round_id, table_id, operator_id, player_id, currency,"
                    " picks, stake, paytable, state)"
                    " SELECT t.id, t.round, $1, t.op, t.player, t.cur, string_to_array(t.picks, ',')::smallint[],"
                    " t.stake, $2, 'pending'"
                    " FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],"
                    f" $9::{amount}[]) AS t(id, round, op, player, cur, picks, stake)"
                    " ON CONFLICT (ticket_id) DO NOTHING RETURNING ticket_id",
                    table_id,
                    paytable_set,
                    [t.ticket_id for t in tickets],
                    [t.round_id for t in tickets],
                    [t.operator_id for t in tickets],
                    [t.player_id for t in tickets],
                    [t.currency for t in tickets],
                    [",".join(map(str, t.picks)) for t in tickets],
                    stakes,
                )
            fresh = {r["ticket_id"] for r in inserted}
            return [t.ticket_id for t in tickets if t.ticket_id not in fresh]

        await self._ensure_operators({t.operator_id for t in tickets})
        result: list[str] = await self._run(run)
        return result

    async def _ensure_operators(self, operators: set[str]) -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "INSERT INTO operators (operator_id, name) SELECT o, o FROM unnest($1::text[]) AS o"
                " ON CONFLICT DO NOTHING",
                sorted(operators),
            )

        await self._run(run)

    async def finish_placement(
        self,
        placed: Sequence[tuple[str, int, int, int | None]],
        rejected: Sequence[tuple[str, str]],
    ) -> None:
        """Placed: (ticket, balance_before, balance_after, bet tx); rejected: (ticket, code)."""

        async def run(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                if placed:
                    before = [p[1] for p in placed]
                    after = [p[2] for p in placed]
                    amount = _int_array_type(before, after)
                    await conn.execute(
                        "UPDATE tickets t SET state = 'placed', balance_before = u.before,"
                        " balance_after = u.after, bet_tx = u.tx"
                        f" FROM unnest($1::text[], $2::{amount}[], $3::{amount}[], $4::bigint[])"
                        " AS u(id, before, after, tx) WHERE t.ticket_id = u.id AND t.state = 'pending'",
                        [p[0] for p in placed],
                        before,
                        after,
                        [p[3] for p in placed],
                    )
                if rejected:
                    await conn.execute(
                        "UPDATE tickets t SET state = 'rejected', reject_code = u.code"
                        " FROM unnest($1::text[], $2::text[]) AS u(id, code)"
                        " WHERE t.ticket_id = u.id AND t.state = 'pending'",
                        [r[0] for r in rejected],
                        [r[1] for r in rejected],
                    )

        await self._run(run)

    async def tickets(self, round_id: str, states: Sequence[str]) -> list[TicketRow]:
        async def run(conn: asyncpg.Connection) -> list[TicketRow]:
            rows = await conn.fetch(
                "SELECT ticket_id, round_id, operator_id, player_id, currency, picks, stake, state"
                " FROM tickets WHERE round_id = $1 AND state = ANY($2::text[]) ORDER BY ticket_id",
                round_id,
                list(states),
            )
            return [
                TicketRow(
                    r["ticket_id"],
                    r["round_id"],
                    r["operator_id"],
                    r["player_id"],
                    r["currency"],
                    tuple(r["picks"]),
                    int(r["stake"]),
                    r["state"],
                )
                for r in rows
            ]

        result: list[TicketRow] = await self._run(run)
        return result

    async def ticket(self, ticket_id: str) -> dict[str, Any] | None:
        async def run(conn: asyncpg.Connection) -> dict[str, Any] | None:
            row = await conn.fetchrow("SELECT * FROM tickets WHERE ticket_id = $1", ticket_id)
            return None if row is None else _ticket_dict(row)

        result: dict[str, Any] | None = await self._run(run)
        return result

    async def mark_refunded(self, ticket_ids: Sequence[str], state: str = "refunded") -> None:
        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE tickets SET state = $2, settled_at = now()"
                " WHERE ticket_id = ANY($1::text[]) AND state IN ('pending', 'placed')",
                list(ticket_ids),
                state,
            )

        await self._run(run)

    async def record_results(
        self,
        ticket_ids: Sequence[str],
        hits: Sequence[int],
        payouts: Sequence[int],
        balances: Sequence[int | None],
        win_txs: Sequence[int | None],
    ) -> None:
        """Settled tickets' hits, payouts and the balance after their account's settlement."""

        amount = _int_array_type(payouts, balances)

        async def run(conn: asyncpg.Connection) -> None:
            await conn.execute(
                "UPDATE tickets t SET state = 'settled', hits = u.hits, payout = u.payout,"
                " win_balance_after = u.balance, win_tx = u.tx, settled_at = now()"
                f" FROM unnest($1::text[], $2::smallint[], $3::{amount}[], $4::{amount}[], $5::bigint[])"
                " AS u(id, hits, payout, balance, tx) WHERE t.ticket_id = u.id AND t.state = 'placed'",
                list(ticket_ids),
                list(hits),
                list(payouts),
                list(balances),
                list(win_txs),
            )

        await self._run(run)

    async def ticket_counts(self, round_id: str) -> dict[str, int]:
        async def run(conn: asyncpg.Connection) -> dict[str, int]:
            rows = await conn.fetch(
                "SELECT state, count(*) AS n FROM tickets WHERE round_id = $1 GROUP BY state",
                round_id,
            )
            return {r["state"]: int(r["n"]) for r in rows}

        result: dict[str, int] = await self._run(run)
        return result

    async def recall(self, ticket_id: str) -> dict[str, Any] | None:
        """Everything needed to re-present a bet (GLI-19 game recall)."""
        ticket = await self.ticket(ticket_id)
        if ticket is None:
            return None
        ticket["round"] = await self.published(ticket["round_id"])
        return ticket


async def _event(conn: asyncpg.Connection, kind: str, subject: str, detail: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO significant_events (kind, subject, detail) VALUES ($1, $2, $3::jsonb)",
        kind,
        subject,
        json.dumps(detail, default=str),
    )


def _public(row: asyncpg.Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            out[key] = to_ms(value)
        elif key in ("commit_proof", "reveal_proof", "settlement"):
            out[key] = _json(value)
        elif key == "numbers":
            out[key] = None if value is None else list(value)
        else:
            out[key] = value
    return out


def _ticket_dict(row: asyncpg.Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
        elif key == "picks":
            out[key] = list(value)
        elif key in ("stake", "payout", "balance_before", "balance_after", "win_balance_after"):
            out[key] = None if value is None else int(value)
        else:
            out[key] = value
    return out
