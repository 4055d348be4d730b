"""Game sessions: issue, resolve and expire the tokens providers present for a player."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

__all__ = ["SessionInfo", "SessionStore", "token_digest"]


def token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class SessionInfo:
    operator_id: str
    player_id: str
    provider_id: str | None
    valid: bool  # not expired and not revoked


class SessionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def issue(
        self, operator_id: str, player_id: str, *, provider_id: str | None = None, ttl: timedelta = timedelta(hours=12)
    ) -> str:
        token = secrets.token_urlsafe(24)
        await self._pool.execute(
            "INSERT INTO game_sessions (token_sha256, operator_id, player_id, provider_id, expires_at)"
            " VALUES ($1, $2, $3, $4, $5)",
            token_digest(token),
            operator_id,
            player_id,
            provider_id,
            datetime.now(UTC) + ttl,
        )
        return token

    async def resolve(self, token: str) -> SessionInfo | None:
        row = await self._pool.fetchrow(
            "SELECT operator_id, player_id, provider_id, NOT revoked AND expires_at > now() AS valid"
            " FROM game_sessions WHERE token_sha256 = $1",
            token_digest(token),
        )
        if row is None:
            return None
        return SessionInfo(row["operator_id"], row["player_id"], row["provider_id"], bool(row["valid"]))

    async def expire(self, token: str) -> None:
        await self._pool.execute("UPDATE game_sessions SET expires_at = now() WHERE token_sha256 = $1", token_digest(token))
