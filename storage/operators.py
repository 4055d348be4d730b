"""Operators' API credentials, idempotency records of API calls, and players' risk state.

**Credentials.** :meth:`OperatorStore.create_operator` makes a client id and secret,
returns the secret once, and keeps it only sealed (:class:`~core.operator_auth.
CredentialVault`, bound to the operator id); every read opens it again with the vault the
caller passes. Caching credentials in process (with a short TTL, so a rotation or a
disabled operator takes effect) is the caller's business. Creating, rotating and
reconfiguring credentials each log a significant event (subject ``operator:<id>``),
never with secret material.

**Idempotency** of the operator API's ``POST`` calls, per operator and
``Idempotency-Key``::

    begin_request  -> NEW          the key is claimed (in_progress): run the handler
                   -> REPLAY       done before with the same request: answer the stored
                                   status and body, byte for byte
                   -> MISMATCH     the key was used for another request: 409
                   -> IN_PROGRESS  the same request is running now: 409, retry later
    finish_request   store the answer (2xx, 3xx, 4xx); a 5xx is NOT stored: it is
                     transient, so the claim is dropped and a retry runs again
    abandon_request  drop the claim when the handler failed before changing anything

A claim whose handler died (crash, lost replica) would block its key forever, so a claim
older than ``lease_s`` is taken over by the next identical request (NEW again, with
``resumed`` set). Hence, as with a retried 5xx, a handler may run twice for one key:
everything it changes must itself be idempotent under a key derived from the request's
(the wallet's commands are), so the second run finds the first one's effects.

**Risk data.** Daily betting volumes are sums of ticket stakes per UTC day
(:data:`VOLUME_STATES`: pending, placed and settled tickets; rejected, refunded and
rolled-back ones moved no money). A pending ticket counts: its debit is in flight, and
leaving it out would let a burst of bets slip past the daily limit together.

**Daily limit under concurrency.** A bet becomes a ticket only when its table's scheduler
writes the row, after the limit check; so two concurrent bets would each miss the other's
stake and pass the limit together. :meth:`OperatorStore.reserve_volume` therefore checks
and books the stake in one transaction under a per-player advisory lock: it sums the
day's tickets plus the stakes other checks admitted whose ticket row does not exist yet
(``volume_reservations``), and books its own if the limits allow it. Once a ticket row
exists it counts by its own state (a rejected one no longer counts), so a reservation is
never counted twice. :meth:`OperatorStore.release_volume` drops the reservation when the
scheduler has answered; one whose caller vanished (a lost replica) stops counting after
``lease_s`` (the ticket, if any was written, counts by then) and is pruned by the
player's next release.
:meth:`OperatorStore.flag_player` keeps each player's current state in ``player_risk``
(clear < flagged < suspended; a flag never lowers it) and logs every change as a
significant event (``player_flagged``, ``player_suspended``, ``player_cleared``; subject
``player:<operator>:<player>``).

Errors: :class:`~storage.errors.OperatorExistsError`,
:class:`~storage.errors.UnknownOperatorError`, :class:`~storage.errors.StorageError` for
a refused statement, :class:`~storage.errors.DatabaseUnavailableError` for a lost
connection; invalid settings raise :class:`~core.errors.ConfigError`, a malformed
idempotency key :class:`~core.errors.ProtocolError`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import asyncpg

from core.errors import ConfigError, ProtocolError
from core.operator_auth import (
    DEFAULT_RATE_LIMITS,
    TIERS,
    CredentialVault,
    new_client_id,
    new_client_secret,
    parse_allow_list,
)
from core.risk import RiskLimits, check_bet
from storage.database import create_pool, run_on_pool
from storage.errors import (
    OperatorExistsError,
    UnknownOperatorError,
)

__all__ = [
    "DEFAULT_LEASE_S",
    "KEEP",
    "RESERVATION_LEASE_S",
    "VOLUME_STATES",
    "Begin",
    "BeginOutcome",
    "OperatorCredentials",
    "OperatorStore",
    "PlayerRisk",
    "VolumeCheck",
    "utc_day_start",
]

#: Ticket states whose stakes count towards a player's betting volume.
VOLUME_STATES = ("pending", "placed", "settled")
#: How long a claimed idempotency key stays claimed before another attempt may take it.
DEFAULT_LEASE_S = 60.0
#: How long an admitted stake counts without its ticket row. Far above a placement's
#: duration (the API's requests time out after seconds), so only a vanished caller's
#: reservation lapses.
RESERVATION_LEASE_S = 60.0

_MAX_KEY_CHARS = 255
_MAX_VOLUME_DAYS = 366
_SEVERITY = {"clear": 0, "flagged": 1, "suspended": 2}
# Two-key advisory locks (this class, a hash of the player): their key space is apart from
# the one-key locks (migrations); a hash collision only makes two players wait in turn.
_VOLUME_LOCK_CLASS = 0x5267_7602


class _Keep(enum.Enum):
    KEEP = "keep"


#: "Leave this setting as it is" in :meth:`OperatorStore.configure`.
KEEP: Literal[_Keep.KEEP] = _Keep.KEEP


def utc_day_start(at: datetime | None = None) -> datetime:
    """Midnight UTC of the day of ``at`` (default: now), as an aware datetime."""
    at = datetime.now(UTC) if at is None else _aware(at, "at")
    return datetime.combine(at.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ConfigError(f"{what} must be a timezone-aware datetime")
    return value


@dataclass(frozen=True, slots=True)
class OperatorCredentials:
    """An operator's credentials and API settings, secret opened."""

    operator_id: str
    client_id: str
    secret: bytes = field(repr=False)  # the HMAC key: the client secret's ASCII bytes
    tier: str
    rate_limit_per_min: int | None  # None: the tier's
    ip_allow_list: tuple[str, ...]
    risk: RiskLimits
    enabled: bool

    def effective_rate_limit(self, defaults: Mapping[str, int] = DEFAULT_RATE_LIMITS) -> int:
        """Requests per minute: the operator's own override, else its tier's default."""
        if self.rate_limit_per_min is not None:
            return self.rate_limit_per_min
        return defaults[self.tier]


class BeginOutcome(enum.StrEnum):
    NEW = "new"
    REPLAY = "replay"
    MISMATCH = "mismatch"
    IN_PROGRESS = "in_progress"


@dataclass(frozen=True, slots=True)
class Begin:
    """What :meth:`OperatorStore.begin_request` found; status and body only for REPLAY."""

    outcome: BeginOutcome
    status_code: int | None = None
    body: bytes | None = None
    resumed: bool = False  # NEW by taking over a claim whose lease ran out


@dataclass(frozen=True, slots=True)
class PlayerRisk:
    operator_id: str
    player_id: str
    state: str  # clear | flagged | suspended
    kind: str  # why: volume_anomaly, manual, ...
    detail: dict[str, Any]
    updated_at: datetime

    @property
    def suspended(self) -> bool:
        return self.state == "suspended"


def _json(value: Any) -> Any:
    if value is None or isinstance(value, dict | list):
        return value
    return json.loads(value)


def _check_tier(tier: object) -> str:
    if tier not in TIERS:
        raise ConfigError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
    assert isinstance(tier, str)
    return tier


def _check_rate_limit(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000_000:
        raise ConfigError(
            f"rate_limit_per_min must be an integer in 1..10000000 or None, got {value!r}"
        )
    return value


def _check_risk(value: object) -> RiskLimits:
    if not isinstance(value, RiskLimits):
        raise ConfigError(f"risk must be RiskLimits, got {type(value).__name__}")
    return value


def _check_idempotency_key(key: object) -> str:
    # Printable ASCII: the key arrives in an HTTP header and is echoed in logs.
    if (
        not isinstance(key, str)
        or not 1 <= len(key) <= _MAX_KEY_CHARS
        or not key.isascii()
        or not key.isprintable()
    ):
        raise ProtocolError(
            f"Idempotency-Key must be 1..{_MAX_KEY_CHARS} printable ASCII characters"
        )
    return key


def _check_reservation(ticket_id: object, lease_s: object) -> None:
    if not isinstance(ticket_id, str) or not 1 <= len(ticket_id) <= 64:
        raise ProtocolError("a ticket id is a string of 1..64 characters")
    if isinstance(lease_s, bool) or not isinstance(lease_s, int | float) or not lease_s > 0:
        raise ConfigError(f"lease_s must be a positive number of seconds, got {lease_s!r}")


def _check_hash(request_hash: object) -> bytes:
    if not isinstance(request_hash, bytes) or len(request_hash) != 32:
        raise ProtocolError("a request hash is 32 bytes (SHA-256)")
    return request_hash


@dataclass(frozen=True, slots=True)
class VolumeCheck:
    """What :meth:`OperatorStore.reserve_volume` decided.

    ``refusal``: None when the stake was reserved, else a :mod:`core.risk` code;
    ``volume_minor``: the player's volume of the day before this bet, in-flight bets
    included (what the limits were checked against).
    """

    refusal: str | None
    volume_minor: int

    @property
    def reserved(self) -> bool:
        return self.refusal is None


class OperatorStore:
    """The operator API's access to credentials, idempotency records and risk state."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str, *, max_size: int = 4) -> OperatorStore:
        return cls(await create_pool(url, max_size=max_size))

    async def close(self) -> None:
        await self._pool.close()

    async def _run(self, fn: Any, what: str) -> Any:
        return await run_on_pool(self._pool, fn, what)

    # -- credentials ----------------------------------------------------------------------

    async def create_operator(
        self,
        operator_id: str,
        name: str,
        *,
        vault: CredentialVault,
        tier: str = "standard",
        ip_allow_list: Sequence[str] = (),
        risk: RiskLimits = RiskLimits(),  # noqa: B008 - frozen, so one shared default is fine
        rate_limit_per_min: int | None = None,
    ) -> tuple[str, str]:
        """Give ``operator_id`` API credentials; return ``(client_id, client_secret)``.

        The secret is returned here only: it is stored sealed and never shown again
        (:meth:`rotate_secret` makes a new one). The ``operators`` row is created if
        missing. Raises :class:`OperatorExistsError` if the operator has credentials.
        """
        tier = _check_tier(tier)
        allow = list(parse_allow_list(ip_allow_list))
        limits = _check_risk(risk)
        rate = _check_rate_limit(rate_limit_per_min)
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("an operator's name must be a non-empty string")
        client_id = new_client_id()
        client_secret = new_client_secret()
        sealed = vault.seal(client_secret.encode("ascii"), operator_id)

        async def run(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO operators (operator_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    operator_id,
                    name,
                )
                created = await conn.fetchval(
                    "INSERT INTO operator_credentials (operator_id, client_id, secret_sealed, tier,"
                    " rate_limit_per_min, ip_allow_list, risk)"
                    " VALUES ($1, $2, $3, $4, $5, $6::text[], $7::jsonb)"
                    " ON CONFLICT (operator_id) DO NOTHING RETURNING 1",
                    operator_id,
                    client_id,
                    sealed,
                    tier,
                    rate,
                    allow,
                    json.dumps(limits.to_mapping()),
                )
                if created:
                    await _event(
                        conn,
                        "operator_created",
                        f"operator:{operator_id}",
                        {
                            "client_id": client_id,
                            "tier": tier,
                            "rate_limit_per_min": rate,
                            "ip_allow_list": allow,
                            "risk": limits.to_mapping(),
                        },
                    )
                return bool(created)

        if not await self._run(run, "new operator credentials"):
            raise OperatorExistsError(f"operator {operator_id!r} already has API credentials")
        return client_id, client_secret

    async def rotate_secret(self, operator_id: str, *, vault: CredentialVault) -> str:
        """Replace the operator's client secret (the client id stays); return the new one.

        The old secret stops working at once (for tokens already issued too, as every
        call is signed with the secret).
        """
        client_secret = new_client_secret()
        sealed = vault.seal(client_secret.encode("ascii"), operator_id)

        async def run(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                done = await conn.fetchval(
                    "UPDATE operator_credentials SET secret_sealed = $2, secret_rotated_at = now(),"
                    " updated_at = now() WHERE operator_id = $1 RETURNING 1",
                    operator_id,
                    sealed,
                )
                if done:
                    await _event(conn, "operator_secret_rotated", f"operator:{operator_id}", {})
                return bool(done)

        if not await self._run(run, "a secret rotation"):
            raise UnknownOperatorError(f"operator {operator_id!r} has no API credentials")
        return client_secret

    async def configure(
        self,
        operator_id: str,
        *,
        tier: str | _Keep = KEEP,
        rate_limit_per_min: int | _Keep | None = KEEP,
        ip_allow_list: Sequence[str] | _Keep = KEEP,
        risk: RiskLimits | _Keep = KEEP,
        enabled: bool | _Keep = KEEP,
    ) -> None:
        """Change some of an operator's settings (:data:`KEEP` leaves one as it is)."""
        changes: dict[str, Any] = {}
        if tier is not KEEP:
            changes["tier"] = _check_tier(tier)
        if rate_limit_per_min is not KEEP:
            changes["rate_limit_per_min"] = _check_rate_limit(rate_limit_per_min)
        if ip_allow_list is not KEEP:
            assert not isinstance(ip_allow_list, _Keep)
            changes["ip_allow_list"] = list(parse_allow_list(ip_allow_list))
        if risk is not KEEP:
            changes["risk"] = _check_risk(risk).to_mapping()
        if enabled is not KEEP:
            if not isinstance(enabled, bool):
                raise ConfigError(f"enabled must be true or false, got {enabled!r}")
            changes["enabled"] = enabled
        if not changes:
            return
        names = sorted(changes)
        casts = {"ip_allow_list": "::text[]", "risk": "::jsonb"}
        assignments = ", ".join(f"{n} = ${i + 2}{casts.get(n, '')}" for i, n in enumerate(names))
        values = [json.dumps(changes[n]) if n == "risk" else changes[n] for n in names]

        async def run(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                done = await conn.fetchval(
                    f"UPDATE operator_credentials SET {assignments}, updated_at = now()"
                    " WHERE operator_id = $1 RETURNING 1",
                    operator_id,
                    *values,
                )
                if done:
                    await _event(conn, "operator_configured", f"operator:{operator_id}", changes)
                return bool(done)

        if not await self._run(run, "an operator's settings"):
            raise UnknownOperatorError(f"operator {operator_id!r} has no API credentials")

    async def credentials(
        self, operator_id: str, vault: CredentialVault
    ) -> OperatorCredentials | None:
        """The operator's credentials with the secret opened, or None if it has none."""
        return await self._credentials("operator_id", operator_id, vault)

    async def credentials_by_client_id(
        self, client_id: str, vault: CredentialVault
    ) -> OperatorCredentials | None:
        """The credentials of ``client_id`` (the token endpoint's look-up), or None."""
        return await self._credentials("client_id", client_id, vault)

    async def _credentials(
        self, column: Literal["operator_id", "client_id"], value: str, vault: CredentialVault
    ) -> OperatorCredentials | None:
        async def run(conn: asyncpg.Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(
                "SELECT operator_id, client_id, secret_sealed, tier, rate_limit_per_min,"
                f" ip_allow_list, risk::text AS risk, enabled FROM operator_credentials WHERE {column} = $1",
                value,
            )

        row = await self._run(run, "a credentials look-up")
        if row is None:
            return None
        operator_id = row["operator_id"]
        return OperatorCredentials(
            operator_id=operator_id,
            client_id=row["client_id"],
            # CredentialUnreadableError (wrong key, tampered row) propagates: a server
            # misconfiguration, not the caller's fault.
            secret=vault.open(bytes(row["secret_sealed"]), operator_id),
            tier=row["tier"],
            rate_limit_per_min=row["rate_limit_per_min"],
            ip_allow_list=tuple(row["ip_allow_list"]),
            risk=RiskLimits.from_mapping(
                _json(row["risk"]), where=f"operator {operator_id!r} risk"
            ),
            enabled=bool(row["enabled"]),
        )

    # -- idempotency ----------------------------------------------------------------------

    async def begin_request(
        self, operator_id: str, key: str, request_hash: bytes, *, lease_s: float = DEFAULT_LEASE_S
    ) -> Begin:
        """Claim ``key`` for this request, or say why not (see the module doc).

        ``request_hash`` identifies the request (``core.operator_auth.request_fingerprint``).
        Of concurrent identical calls exactly one gets NEW.
        """
        _check_idempotency_key(key)
        _check_hash(request_hash)

        async def run(conn: asyncpg.Connection) -> Begin:
            # Each statement commits on its own; the loop covers a claim dropped between
            # our insert and our read (a 5xx or an abandon), which frees the key again.
            for _ in range(5):
                claimed = await conn.fetchval(
                    "INSERT INTO api_requests (operator_id, idempotency_key, request_hash, state)"
                    " VALUES ($1, $2, $3, 'in_progress') ON CONFLICT DO NOTHING RETURNING 1",
                    operator_id,
                    key,
                    request_hash,
                )
                if claimed:
                    return Begin(BeginOutcome.NEW)
                row = await conn.fetchrow(
                    "SELECT request_hash, state, status_code, response FROM api_requests"
                    " WHERE operator_id = $1 AND idempotency_key = $2",
                    operator_id,
                    key,
                )
                if row is None:
                    continue
                if bytes(row["request_hash"]) != request_hash:
                    return Begin(BeginOutcome.MISMATCH)
                if row["state"] == "done":
                    return Begin(BeginOutcome.REPLAY, row["status_code"], bytes(row["response"]))
                # A concurrent take-over waits for the first one's row lock, then finds
                # started_at fresh and matches nothing: one attempt wins.
                resumed = await conn.fetchval(
                    "UPDATE api_requests SET started_at = now()"
                    " WHERE operator_id = $1 AND idempotency_key = $2 AND state = 'in_progress'"
                    " AND request_hash = $3 AND started_at < now() - make_interval(secs => $4)"
                    " RETURNING 1",
                    operator_id,
                    key,
                    request_hash,
                    float(lease_s),
                )
                if resumed:
                    return Begin(BeginOutcome.NEW, resumed=True)
                return Begin(BeginOutcome.IN_PROGRESS)
            return Begin(BeginOutcome.IN_PROGRESS)

        result: Begin = await self._run(run, "an idempotency claim")
        return result

    async def finish_request(
        self, operator_id: str, key: str, status_code: int, body: bytes
    ) -> bool:
        """Store a claimed request's answer; True if stored.

        A 5xx is not stored: the claim is dropped so that a retry runs again (False).
        False too if the claim is gone or already finished (another attempt won).
        """
        _check_idempotency_key(key)
        if (
            isinstance(status_code, bool)
            or not isinstance(status_code, int)
            or not 100 <= status_code <= 599
        ):
            raise ProtocolError(f"an HTTP status is 100..599, got {status_code!r}")
        if status_code >= 500:
            await self.abandon_request(operator_id, key)
            return False

        async def run(conn: asyncpg.Connection) -> bool:
            done = await conn.fetchval(
                "UPDATE api_requests SET state = 'done', status_code = $3, response = $4,"
                " finished_at = now()"
                " WHERE operator_id = $1 AND idempotency_key = $2 AND state = 'in_progress'"
                " RETURNING 1",
                operator_id,
                key,
                status_code,
                bytes(body),
            )
            return bool(done)

        result: bool = await self._run(run, "a request's answer")
        return result

    async def abandon_request(self, operator_id: str, key: str) -> bool:
        """Drop an unfinished claim (the handler changed nothing); True if one was dropped."""
        _check_idempotency_key(key)

        async def run(conn: asyncpg.Connection) -> bool:
            dropped = await conn.fetchval(
                "DELETE FROM api_requests"
                " WHERE operator_id = $1 AND idempotency_key = $2 AND state = 'in_progress'"
                " RETURNING 1",
                operator_id,
                key,
            )
            return bool(dropped)

        result: bool = await self._run(run, "dropping a claim")
        return result

    async def prune_requests(self, *, older_than: timedelta) -> int:
        """Delete idempotency records created more than ``older_than`` ago; return how many.

        After that a repeat of such a request runs again, so keep them longer than any
        client retries (a day or more).
        """
        if not isinstance(older_than, timedelta) or older_than <= timedelta(0):
            raise ConfigError("older_than must be a positive timedelta")

        async def run(conn: asyncpg.Connection) -> int:
            status = await conn.execute(
                "DELETE FROM api_requests WHERE created_at < now() - $1::interval", older_than
            )
            return int(status.split()[-1])

        result: int = await self._run(run, "pruning idempotency records")
        return result

    # -- risk -----------------------------------------------------------------------------

    async def volume_today(
        self, operator_id: str, player_id: str, currency: str, *, day_start: datetime
    ) -> int:
        """The player's stakes in ``currency`` on the UTC day starting at ``day_start``."""
        start = _aware(day_start, "day_start")

        async def run(conn: asyncpg.Connection) -> int:
            total = await conn.fetchval(
                "SELECT coalesce(sum(stake), 0)::text FROM tickets"
                " WHERE operator_id = $1 AND player_id = $2 AND currency = $3"
                " AND placed_at >= $4 AND placed_at < $4 + interval '1 day'"
                " AND state = ANY($5::text[])",
                operator_id,
                player_id,
                currency,
                start,
                list(VOLUME_STATES),
            )
            return int(total)

        result: int = await self._run(run, "a volume query")
        return result

    async def reserve_volume(
        self,
        operator_id: str,
        player_id: str,
        currency: str,
        ticket_id: str,
        stake_minor: int,
        limits: RiskLimits,
        *,
        day_start: datetime,
        lease_s: float = RESERVATION_LEASE_S,
    ) -> VolumeCheck:
        """Check a bet against ``limits`` and, if they allow it, book its stake on the
        player's volume of the day until :meth:`release_volume` or its ticket row.

        Concurrent calls for one player run one at a time, each seeing the stakes booked
        before it, so together they never pass the daily limit (see the module doc).
        ``ticket_id`` is the bet's own: its ticket row and an earlier reservation of it (a
        retried request) are left out of the volume, so a retry is not counted twice.
        """
        start = _aware(day_start, "day_start")
        _check_reservation(ticket_id, lease_s)

        async def run(conn: asyncpg.Connection) -> VolumeCheck:
            async with conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                    _VOLUME_LOCK_CLASS,
                    f"{operator_id}\x1f{player_id}\x1f{currency}",
                )
                # A statement of its own, after the lock: its snapshot then includes every
                # reservation committed by the lock's previous holders.
                volume = int(
                    await conn.fetchval(
                        "SELECT ((SELECT coalesce(sum(stake), 0) FROM tickets"
                        "  WHERE operator_id = $1 AND player_id = $2 AND currency = $3"
                        "  AND placed_at >= $4 AND placed_at < $4 + interval '1 day'"
                        "  AND state = ANY($5::text[]) AND ticket_id <> $6)"
                        " + (SELECT coalesce(sum(r.stake), 0) FROM volume_reservations r"
                        "  WHERE r.operator_id = $1 AND r.player_id = $2 AND r.currency = $3"
                        "  AND r.day_start = $4 AND r.ticket_id <> $6"
                        "  AND r.reserved_at > now() - make_interval(secs => $7)"
                        "  AND NOT EXISTS (SELECT 1 FROM tickets t WHERE t.ticket_id = r.ticket_id)"
                        "))::text",
                        operator_id,
                        player_id,
                        currency,
                        start,
                        list(VOLUME_STATES),
                        ticket_id,
                        float(lease_s),
                    )
                )
                refusal = check_bet(limits, stake_minor, volume)
                if refusal is None:
                    await conn.execute(
                        "INSERT INTO volume_reservations (ticket_id, operator_id, player_id, currency,"
                        " day_start, stake) VALUES ($1, $2, $3, $4, $5, $6)"
                        " ON CONFLICT (ticket_id) DO UPDATE SET stake = EXCLUDED.stake,"
                        " day_start = EXCLUDED.day_start, reserved_at = now()",
                        ticket_id,
                        operator_id,
                        player_id,
                        currency,
                        start,
                        stake_minor,
                    )
                return VolumeCheck(refusal, volume)

        result: VolumeCheck = await self._run(run, "a volume reservation")
        return result

    async def release_volume(
        self,
        operator_id: str,
        player_id: str,
        currency: str,
        ticket_id: str,
        *,
        lease_s: float = RESERVATION_LEASE_S,
    ) -> bool:
        """Drop the reservation of ``ticket_id`` (its scheduler answered, whatever the
        answer) and the player's lapsed ones; True if the ticket's own was there."""
        _check_reservation(ticket_id, lease_s)

        async def run(conn: asyncpg.Connection) -> bool:
            rows = await conn.fetch(
                "DELETE FROM volume_reservations WHERE ticket_id = $4"
                " OR (operator_id = $1 AND player_id = $2 AND currency = $3"
                " AND reserved_at <= now() - make_interval(secs => $5))"
                " RETURNING ticket_id",
                operator_id,
                player_id,
                currency,
                ticket_id,
                float(lease_s),
            )
            return any(r["ticket_id"] == ticket_id for r in rows)

        result: bool = await self._run(run, "releasing a volume reservation")
        return result

    async def daily_volumes(
        self,
        operator_id: str,
        player_id: str,
        currency: str,
        days: int = 30,
        *,
        day_start: datetime | None = None,
    ) -> list[int]:
        """The player's volume on each of the ``days`` UTC days before ``day_start``
        (default: today's start), oldest first, idle days as 0.

        The history starts at the player's first bet in this currency: the days before
        it say nothing about the player, so a player of three days has three entries.
        """
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= _MAX_VOLUME_DAYS:
            raise ConfigError(f"days must be an integer in 1..{_MAX_VOLUME_DAYS}, got {days!r}")
        end = utc_day_start(day_start)
        start = end - timedelta(days=days)

        async def run(conn: asyncpg.Connection) -> tuple[datetime | None, list[asyncpg.Record]]:
            first = await conn.fetchval(
                "SELECT min(placed_at) FROM tickets"
                " WHERE operator_id = $1 AND player_id = $2 AND currency = $3"
                " AND state = ANY($4::text[]) AND placed_at < $5",
                operator_id,
                player_id,
                currency,
                list(VOLUME_STATES),
                end,
            )
            rows = await conn.fetch(
                "SELECT (placed_at AT TIME ZONE 'UTC')::date AS day, sum(stake)::text AS total"
                " FROM tickets WHERE operator_id = $1 AND player_id = $2 AND currency = $3"
                " AND state = ANY($4::text[]) AND placed_at >= $5 AND placed_at < $6"
                " GROUP BY 1",
                operator_id,
                player_id,
                currency,
                list(VOLUME_STATES),
                start,
                end,
            )
            return first, rows

        first, rows = await self._run(run, "a volume history query")
        if first is None:
            return []
        by_day: dict[date, int] = {r["day"]: int(r["total"]) for r in rows}
        first_day = max(start.date(), first.astimezone(UTC).date())
        count = (end.date() - first_day).days
        return [by_day.get(first_day + timedelta(days=i), 0) for i in range(count)]

    async def flag_player(
        self,
        operator_id: str,
        player_id: str,
        kind: str,
        detail: Mapping[str, Any],
        *,
        suspended: bool,
    ) -> bool:
        """Flag (or suspend) a player; True if their state changed and an event was logged.

        A player already in that state or a stronger one keeps it (and its reason): a
        second anomaly on the same day logs nothing new.
        """
        if not isinstance(kind, str) or not kind:
            raise ConfigError("a flag's kind must be a non-empty string")
        wanted = "suspended" if suspended else "flagged"
        return await self._set_state(
            operator_id, player_id, wanted, kind, dict(detail), lower=False
        )

    async def clear_player(self, operator_id: str, player_id: str, *, reason: str) -> bool:
        """Lift a flag or suspension (a person decided); True if the state changed."""
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError("clearing a player needs a reason")
        return await self._set_state(
            operator_id, player_id, "clear", "cleared", {"reason": reason}, lower=True
        )

    async def _set_state(
        self,
        operator_id: str,
        player_id: str,
        state: str,
        kind: str,
        detail: dict[str, Any],
        *,
        lower: bool,
    ) -> bool:
        event_kind = {
            "flagged": "player_flagged",
            "suspended": "player_suspended",
            "clear": "player_cleared",
        }[state]
        detail_json = json.dumps(detail, default=str)

        async def run(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                # A 'clear' row first, so concurrent flags serialise on its lock instead
                # of racing to insert.
                await conn.execute(
                    "INSERT INTO player_risk (operator_id, player_id, state, kind)"
                    " VALUES ($1, $2, 'clear', 'none') ON CONFLICT DO NOTHING",
                    operator_id,
                    player_id,
                )
                current = await conn.fetchval(
                    "SELECT state FROM player_risk WHERE operator_id = $1 AND player_id = $2 FOR UPDATE",
                    operator_id,
                    player_id,
                )
                if current == state or (not lower and _SEVERITY[current] > _SEVERITY[state]):
                    return False
                await conn.execute(
                    "UPDATE player_risk SET state = $3, kind = $4, detail = $5::jsonb, updated_at = now()"
                    " WHERE operator_id = $1 AND player_id = $2",
                    operator_id,
                    player_id,
                    state,
                    kind,
                    detail_json,
                )
                await _event(
                    conn,
                    event_kind,
                    f"player:{operator_id}:{player_id}",
                    {
                        "operator_id": operator_id,
                        "player_id": player_id,
                        "from": current,
                        "kind": kind,
                        "detail": detail,
                    },
                )
                return True

        result: bool = await self._run(run, "a player's risk state")
        return result

    async def player_risk(self, operator_id: str, player_id: str) -> PlayerRisk | None:
        """The player's risk state, or None if no flag or clearing ever touched them."""

        async def run(conn: asyncpg.Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(
                "SELECT state, kind, detail::text AS detail, updated_at FROM player_risk"
                " WHERE operator_id = $1 AND player_id = $2",
                operator_id,
                player_id,
            )

        row = await self._run(run, "a player's risk state")
        if row is None:
            return None
        return PlayerRisk(
            operator_id,
            player_id,
            row["state"],
            row["kind"],
            json.loads(row["detail"]),
            row["updated_at"],
        )


async def _event(
    conn: asyncpg.Connection, kind: str, subject: str, detail: Mapping[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO significant_events (kind, subject, detail) VALUES ($1, $2, $3::jsonb)",
        kind,
        subject,
        json.dumps(detail, default=str),
    )
