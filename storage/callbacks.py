"""Providers and the record of every wallet callback they sent, for reconciliation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

__all__ = ["CallbackRecord", "CallbackStore"]


@dataclass(frozen=True)
class CallbackRecord:
    provider_id: str
    endpoint: str
    request_id: str | None
    transaction_ids: Sequence[str]
    reference_id: str | None
    player_id: str | None
    round_ref: str | None
    body_sha256: bytes
    result_code: str
    response: Any


class CallbackStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def register_provider(self, provider_id: str, dialect: str, operator_id: str, config: dict[str, Any]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO operators VALUES ($1, $1) ON CONFLICT DO NOTHING", operator_id)
            await conn.execute(
                "INSERT INTO providers (provider_id, dialect, operator_id, config) VALUES ($1, $2, $3, $4::jsonb)"
                " ON CONFLICT (provider_id) DO UPDATE SET dialect = excluded.dialect,"
                " operator_id = excluded.operator_id, config = excluded.config",
                provider_id,
                dialect,
                operator_id,
                json.dumps(config),
            )

    async def record(self, records: Sequence[CallbackRecord]) -> None:
        """One row per callback (a multi-action request gives one row per transaction id)."""
        rows = []
        for r in records:
            for tx_id in r.transaction_ids or (None,):
                rows.append(
                    (r.provider_id, r.endpoint, r.request_id, tx_id, r.reference_id, r.player_id, r.round_ref,
                     r.body_sha256, r.result_code, json.dumps(r.response))
                )
        if rows:
            await self._pool.executemany(
                "INSERT INTO provider_callbacks (provider_id, endpoint, request_id, transaction_id, reference_id,"
                " player_id, round_ref, body_sha256, result_code, response)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)",
                rows,
            )
