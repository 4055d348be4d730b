"""``serve.bench_floor``: the floor ``rgs bench wallet --floor`` measures must really
verify, parse and commit before it answers, or it would be a second echo."""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace
from typing import Any

import asyncpg
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from serve.bench_floor import (
    FLOOR_TABLE,
    FloorGateway,
    _GroupCommit,
    create_floor_table,
    drop_floor_table,
)


async def _rows(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(f"SELECT request_id, answer FROM {FLOOR_TABLE} ORDER BY request_id")
    finally:
        await conn.close()


def test_concurrent_writes_all_land_and_share_commits(fresh_database_url: str) -> None:
    async def scenario() -> tuple[list[asyncpg.Record], int]:
        await create_floor_table(fresh_database_url)
        journal = _GroupCommit(fresh_database_url)
        await asyncio.gather(
            *(journal.write(f"r{n:03}", bytes(32), json.dumps({"n": n})) for n in range(200))
        )
        rows = await _rows(fresh_database_url)
        await drop_floor_table(fresh_database_url)
        return rows, journal.commits

    rows, commits = asyncio.run(scenario())
    assert [r["request_id"] for r in rows] == [f"r{n:03}" for n in range(200)]
    assert json.loads(rows[7]["answer"]) == {"n": 7}
    # all 200 were pending before the first statement ran: they share one or two commits
    assert 1 <= commits <= 2, commits


def test_a_failed_commit_reaches_every_waiter(fresh_database_url: str) -> None:
    async def scenario() -> list[Any]:
        journal = _GroupCommit(fresh_database_url)  # no table: every INSERT fails
        return await asyncio.gather(
            *(journal.write(f"r{n}", bytes(32), "{}") for n in range(5)), return_exceptions=True
        )

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, asyncpg.UndefinedTableError) for o in outcomes), outcomes


class _Request:
    def __init__(self, body: bytes, signature: str) -> None:
        self._body = body
        self.headers = {"x-hub88-signature": signature}
        self.url = SimpleNamespace(path="/floor/bet")

    async def body(self) -> bytes:
        return self._body


def test_the_gateway_answers_only_after_verifying_and_committing(fresh_database_url: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    body = json.dumps(
        {"request_uuid": "floor-1", "user": "p1", "currency": "EUR", "amount": 100_000}
    ).encode()
    good = base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()
    forged = base64.b64encode(key.sign(body + b" ", padding.PKCS1v15(), hashes.SHA256())).decode()

    async def scenario() -> tuple[Any, Any, list[asyncpg.Record]]:
        await create_floor_table(fresh_database_url)
        gateway = FloorGateway.func_or_class(fresh_database_url, public)  # type: ignore[attr-defined]
        refused = await gateway(_Request(body, forged))
        answered = await gateway(_Request(body, good))
        rows = await _rows(fresh_database_url)
        await drop_floor_table(fresh_database_url)
        return json.loads(refused.body), json.loads(answered.body), rows

    refused, answered, rows = asyncio.run(scenario())
    assert (
        refused["status"] == "RS_ERROR_INVALID_SIGNATURE" and refused["request_uuid"] == "floor-1"
    )
    assert answered["status"] == "RS_OK" and answered["request_uuid"] == "floor-1"
    assert [r["request_id"] for r in rows] == ["floor-1"]
