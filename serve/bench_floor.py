"""The floor that ``rgs bench wallet --floor`` measures: the least a wallet must do.

A Serve deployment configured like the wallet gateway that, for each Hub88 bet or win,
does only what no design can skip: it checks the RSA signature over the raw body, parses
the JSON and commits one row per request to PostgreSQL before it answers (group commit:
the requests that arrive while a commit runs share the next one). No actors, no balance,
no double entry, no idempotency check: one row where the wallet writes six.

Its throughput next to the echo's says how much of the HTTP ceiling is left on this
machine once a request is verified and made durable; ours next to it says how much our
own code costs above that. It writes to ``rgs_bench_floor``, a table it creates and
drops, in the stack's database.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import asyncpg
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from actors.shard import tune_interpreter
from core.dialects.base import ProviderSettings, WireRequest
from core.dialects.hub88 import Hub88
from serve.wallet import WALLET_DEPLOYMENT_OPTIONS

__all__ = ["FLOOR_TABLE", "FloorGateway", "create_floor_table", "drop_floor_table"]

FLOOR_TABLE = "rgs_bench_floor"


async def create_floor_table(database_url: str) -> None:
    await _execute(
        database_url,
        f"CREATE TABLE IF NOT EXISTS {FLOOR_TABLE} (request_id text PRIMARY KEY,"
        " body_sha256 bytea NOT NULL, answer jsonb NOT NULL)",
    )


async def drop_floor_table(database_url: str) -> None:
    await _execute(database_url, f"DROP TABLE IF EXISTS {FLOOR_TABLE}")


async def _execute(database_url: str, statement: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


class _GroupCommit:
    """Rows wait for the commit in flight to end, then go together in the next one."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._pending: list[tuple[tuple[str, bytes, str], asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None
        self.commits = 0  # statements run, each its own transaction

    async def write(self, request_id: str, digest: bytes, answer: str) -> None:
        done = asyncio.get_running_loop().create_future()
        self._pending.append(((request_id, digest, answer), done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        await done

    async def _flush(self) -> None:
        while self._pending:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self._database_url)
            batch, self._pending = self._pending, []
            rows = [row for row, _ in batch]
            try:
                await self._conn.execute(
                    f"INSERT INTO {FLOOR_TABLE} SELECT * FROM unnest($1::text[], $2::bytea[], $3::jsonb[])"
                    " ON CONFLICT DO NOTHING",
                    [r[0] for r in rows],
                    [r[1] for r in rows],
                    [r[2] for r in rows],
                )
            except Exception as exc:  # each waiting request answers with it
                for _, done in batch:
                    done.set_exception(exc)
            else:
                self.commits += 1
                for _, done in batch:
                    done.set_result(None)


@serve.deployment(**WALLET_DEPLOYMENT_OPTIONS)
class FloorGateway:
    def __init__(self, database_url: str, public_key_pem: str) -> None:
        tune_interpreter()
        # The wallet's own signature check, so both sides pay the same for it.
        self._dialect = Hub88()
        self._settings = ProviderSettings(
            "floor", "floor", "hub88", {"public_key_pem": public_key_pem}
        )
        self._journal = _GroupCommit(database_url)

    async def __call__(self, request: Request) -> Response:
        body = await request.body()
        wire = WireRequest("POST", request.url.path, dict(request.headers), body, time.time())
        refused = self._dialect.authenticate(wire, self._settings)
        if refused is not None:
            return Response(refused.body, refused.status, dict(refused.headers))
        try:
            payload: dict[str, Any] = json.loads(body)
            request_id = str(payload["request_uuid"])
        except (ValueError, KeyError, TypeError):
            return Response(
                b'{"status":"RS_ERROR_WRONG_SYNTAX"}', 200, {"content-type": "application/json"}
            )
        answer = json.dumps(
            {
                "status": "RS_OK",
                "request_uuid": request_id,
                "user": payload.get("user"),
                "currency": payload.get("currency"),
                "balance": 0,
            }
        )
        await self._journal.write(request_id, hashlib.sha256(body).digest(), answer)
        return Response(answer.encode(), 200, {"content-type": "application/json"})
