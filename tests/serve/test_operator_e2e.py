"""The operator API end to end against the demo stack, as an integrator meets it.

``rgs up --demo`` runs as its own process (its own Ray, embedded PostgreSQL, Redis and
dev chain) with a 3-second Keno table. The operator gets a token, registers and funds
players, places bets over several rounds, rolls one back while its round is open, reads
results and recalls its tickets, follows the WebSocket feed (JSON and msgpack), and meets
every refusal the API promises. The stack runs with tokens of 60 s (the shortest the
configuration allows, so a token expires within the module), a per-client-IP limit low
enough to reach, and trusts X-Forwarded-For. After ``rgs up`` stops, ``rgs ledger verify`` and
``rgs verify --all`` pass on what it left.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgpack
import pytest
import websockets

from serve.operator_client import OperatorClient, sign

PERIOD_MS = 3000
FUNDS = 500_000
TOKEN_TTL_S = 60  # the configuration's minimum
# Requests per minute from one client IP. Every other test here is 127.0.0.1 to the API
# and the demo operator's own limit (1000/min) stays below it; the per-IP test names
# another address in X-Forwarded-For (trusted here), whose bucket it has to itself.
IP_LIMIT_PER_MIN = 1200
ERROR_KEYS = {"status", "code", "message", "timestamp", "requestId"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rgs(state: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=_env(state), capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[2])


def _env(state: Path, port: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DATABASE_URL", "REDIS_URL")}
    env.update(RGS_STATE_DIR=str(state), RGS_SHARDS="2", RGS_PARTITIONS="8", RGS_TABLES_FILE=str(state / "tables.json"))
    if port is not None:
        env["RGS_HTTP_PORT"] = str(port)
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("e2e") / ".rgs"
    state.mkdir()
    (state / "tables.json").write_text(json.dumps([{
        "table_id": "fast", "paytable_set": "standard", "currencies": ["EUR"], "max_stake_minor": 2_000_000,
        "max_win_minor": 100_000_000, "period_ms": PERIOD_MS, "close_offset_ms": 800, "commit_lead_ms": 2500,
    }, {  # a paytable set without 1..3 spots, for the refusal of picks it does not offer
        "table_id": "mich", "paytable_set": "michigan", "currencies": ["EUR"], "max_stake_minor": 2_000_000,
        "period_ms": 2 * PERIOD_MS, "close_offset_ms": 800, "commit_lead_ms": 2500,
    }]))
    port = _free_port()
    log = open(state / "up.log", "w")  # noqa: SIM115 - closed in the finally below
    env = {**_env(state, port), "RGS_API_TOKEN_TTL_S": str(TOKEN_TTL_S), "RGS_API_IP_LIMIT_PER_MIN": str(IP_LIMIT_PER_MIN),
           "RGS_TRUST_FORWARDED_FOR": "1"}
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--demo"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2], start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "rgs up: up." not in (state / "up.log").read_text():
            assert process.poll() is None, (state / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "rgs up --demo did not come up in 240 s"
            time.sleep(0.5)
        demo = json.loads((state / "demo.json").read_text())
        yield {"state": state, "demo": demo, "process": process, "port": port, "early_token": _early_token(demo)}
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()
        subprocess.run(["pkill", "-f", f"haproxy.*{port}"], check=False)
        _rgs(state, "chain", "stop")


def _early_token(demo: dict[str, Any]) -> dict[str, Any]:
    """A token the stack issued as it came up, shown to work then; it expires mid-module."""
    op = demo["operator"]
    base = op["api_base_url"].rstrip("/")
    request = urllib.request.Request(base + "/oauth/token", headers={"content-type": "application/json"}, data=json.dumps(
        {"grant_type": "client_credentials", "client_id": op["client_id"], "client_secret": op["client_secret"]}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        token = json.loads(response.read())
    received_at = time.time()
    ts = str(int(time.time()))
    request = urllib.request.Request(base + "/operator/config", headers={
        "authorization": f"Bearer {token['access_token']}", "x-timestamp": ts,
        "x-signature": sign(op["client_secret"], ts, "GET", urlsplit(base).path + "/operator/config", b"")})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    return {**token, "received_at": received_at}


def _error_shaped(answer: Any, code: str) -> None:
    assert isinstance(answer, dict) and set(answer) == ERROR_KEYS, answer
    assert answer["status"] == "error" and answer["code"] == code, (code, answer)
    assert isinstance(answer["message"], str) and answer["message"], answer
    assert isinstance(answer["timestamp"], int) and abs(answer["timestamp"] - time.time()) < 120, answer
    assert isinstance(answer["requestId"], str) and answer["requestId"], answer


async def _new_operator(stack: dict[str, Any], operator_id: str, **options: Any) -> OperatorClient:
    """A client of a new operator created straight in the store, as ``rgs operator`` does."""
    from core.operator_auth import PURPOSE_CREDENTIALS, CredentialVault, derive_key
    from core.seeds import parse_key
    from storage.operators import OperatorStore

    key = (stack["state"] / "seed.key").read_text().strip()
    store = await OperatorStore.connect(stack["demo"]["database_url"])
    try:
        client_id, secret = await store.create_operator(
            operator_id, operator_id, vault=CredentialVault(derive_key(parse_key(key), PURPOSE_CREDENTIALS)), **options)
    finally:
        await store.close()
    return OperatorClient(stack["demo"]["operator"]["api_base_url"], client_id, secret)


async def _tickets_of(stack: dict[str, Any], operator_id: str, player_id: str) -> list[dict[str, Any]]:
    import asyncpg

    conn = await asyncpg.connect(stack["demo"]["database_url"])
    try:
        rows = await conn.fetch("SELECT ticket_id, stake, state FROM tickets WHERE operator_id = $1 AND player_id = $2",
                                operator_id, player_id)
    finally:
        await conn.close()
    return [dict(r) for r in rows]


async def _spend_address(client: OperatorClient, xff: dict[str, str]) -> int:
    """Send waves from one address until one request is refused; how many were admitted."""
    admitted = 0
    while True:
        wave = await asyncio.gather(*(client.raw("GET", "/operator/config", signed=False, headers=xff) for _ in range(32)))
        refused = False
        for status, answer, headers in wave:
            if status == 429:
                refused = True
                _error_shaped(answer, "rate_limited")
                assert int(headers["retry-after"]) >= 1
            else:
                assert status == 401 and answer["code"] == "missing_token", (status, answer)
                admitted += 1
        if refused:
            return admitted
        assert admitted <= 2 * IP_LIMIT_PER_MIN, "no 429 from one address far over its limit"


async def _refused_when_spent(
    client: OperatorClient, xff: dict[str, str], send: Callable[[int], Awaitable[tuple[Any, ...]]]
) -> tuple[int, tuple[Any, ...]]:
    """Spend the address, then ``send(attempt)``; again while a refilled token lets the
    request through (one every 60 / IP_LIMIT_PER_MIN s: on a loaded machine that can pass
    between the two). Returns the attempt refused (how many got through) and its reply."""
    for attempt in range(5):
        await _spend_address(client, xff)
        reply = await send(attempt)
        if reply[0] == 429:
            return attempt, reply
        assert reply[0] == 200, reply
    raise AssertionError(f"five requests in a row got through a spent address: {reply}")


async def _balance(client: OperatorClient, player: str) -> int:
    status, body = await client.call("GET", f"/wallet/balance?player_id={player}&currency=EUR")
    assert status == 200, body
    return int(body["balance"])


async def _funded_player(client: OperatorClient, player: str, amount: int) -> None:
    assert (await client.call("POST", "/players", {"player_id": player, "currency": "EUR"}))[0] == 201
    status, body = await client.call("POST", "/wallet/credit", {"player_id": player, "currency": "EUR", "amount": amount})
    assert status == 200 and body["balance"] == amount, body


async def _settled(client: OperatorClient, ticket_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 45
    while True:
        status, body = await client.call("GET", f"/bets/{ticket_id}")
        assert status == 200, body
        if body["state"] == "settled":
            return body  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.5)


def _client(stack: dict[str, Any], **override: str) -> OperatorClient:
    op = stack["demo"]["operator"]
    return OperatorClient(op["api_base_url"], override.get("client_id", op["client_id"]),
                          override.get("client_secret", op["client_secret"]))


async def _next_round(client: OperatorClient, after: str | None = None, table_id: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = await client.call("GET", "/rounds/current" + (f"?table_id={table_id}" if table_id else ""))
        if status == 200 and body["round_id"] != after and body["closes_at"] - time.time() * 1000 > 600:
            return body  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError("no round opened")


async def _feed(client: OperatorClient, fmt: str, into: list[dict[str, Any]], stop: asyncio.Event) -> None:
    url, headers = client.feed_url(fmt)
    async with websockets.connect(url, additional_headers=headers) as ws:
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            into.append(msgpack.unpackb(message) if fmt == "msgpack" else json.loads(message))


async def test_operator_journey(stack: dict[str, Any]) -> None:
    async with _client(stack) as client:
        token = await client.authenticate()
        assert token["token_type"] == "Bearer" and token["expires_in"] > 0
        stop = asyncio.Event()
        events: list[dict[str, Any]] = []
        packed: list[dict[str, Any]] = []
        feeds = [asyncio.ensure_future(_feed(client, "json", events, stop)),
                 asyncio.ensure_future(_feed(client, "msgpack", packed, stop))]
        players = ["e2e-ann", "e2e-bob", "e2e-cid"]
        for player in players:
            assert (await client.call("POST", "/players", {"player_id": player, "currency": "EUR"}))[0] == 201
            status, body = await client.call("POST", "/wallet/credit", {"player_id": player, "currency": "EUR", "amount": FUNDS})
            assert status == 200 and body["balance"] == FUNDS, body
        placed: list[dict[str, Any]] = []
        rolled_back = None
        round_ids: list[str] = []
        current = None
        for n in range(3):  # three consecutive rounds
            current = await _next_round(client, current["round_id"] if current else None)
            round_ids.append(current["round_id"])
            for i, player in enumerate(players):
                picks = sorted({(n * 11 + i * 7 + k * 13) % 80 + 1 for k in range(1 + (n + i) % 10)})
                status, body = await client.call("POST", "/bets/place",
                                                 {"player_id": player, "currency": "EUR", "picks": picks, "stake": 1000 + i})
                assert status == 201, body
                placed.append(body)
            if rolled_back is None:
                status, body = await client.call("POST", "/bets/rollback", {"ticket_id": placed[-1]["ticket_id"]})
                assert status == 200 and body["status"] == "rolled_back", body
                rolled_back = placed.pop()["ticket_id"]
        # every round with bets reaches 'revealed'
        deadline = time.monotonic() + 60
        while True:
            status, body = await client.call("GET", "/rounds/results?limit=20")
            assert status == 200
            revealed = {r["round_id"]: r for r in body["rounds"]}
            if all(r in revealed for r in round_ids):
                break
            assert time.monotonic() < deadline, f"rounds not revealed: {round_ids} vs {list(revealed)}"
            await asyncio.sleep(0.5)
        for rid in round_ids:
            record = revealed[rid]
            assert len(record["numbers"]) == 20 and record["revealed_seed"] and record["salt"] and record["commit_proof"]
        # recall: each placed ticket is settled; balances add up
        paid = dict.fromkeys(players, 0)
        staked = dict.fromkeys(players, 0)
        for ticket in placed:
            status, body = await client.call("GET", f"/bets/{ticket['ticket_id']}")
            assert status == 200 and body["state"] == "settled", body
            assert body["round"]["numbers"] == revealed[body["round_id"]]["numbers"]
            assert body["balance_before"] - body["balance_after"] == body["stake"]
            paid[body["player_id"]] += body["payout"]
            staked[body["player_id"]] += body["stake"]
        status, body = await client.call("GET", f"/bets/{rolled_back}")
        assert status == 200 and body["state"] == "rolled_back"
        for player in players:
            status, body = await client.call("GET", f"/wallet/balance?player_id={player}&currency=EUR")
            assert status == 200 and body["balance"] == FUNDS - staked[player] + paid[player], (player, body)
        # a withdrawal
        status, body = await client.call("POST", "/wallet/debit", {"player_id": players[0], "currency": "EUR", "amount": 1})
        assert status == 200
        stop.set()
        await asyncio.gather(*feeds)
        for seen in (events, packed):
            phases = {(e["round_id"], e["phase"]) for e in seen}
            for rid in round_ids[1:]:  # the feeds were open before these rounds opened
                assert {(rid, p) for p in ("open", "closed", "drawn", "settled", "revealed")} <= phases, (rid, phases)
            drawn = [e for e in seen if e["phase"] == "drawn" and e["round_id"] in revealed]
            assert drawn and all(e["numbers"] == revealed[e["round_id"]]["numbers"] for e in drawn)
        status, body = await client.call("GET", "/operator/config")
        assert status == 200 and body["tables"][0]["paytables"]["10"]["rtp_exact"]


async def test_refusals_change_nothing_and_never_500(stack: dict[str, Any]) -> None:
    async with _client(stack) as client:
        await client.authenticate()
        player = "e2e-refusals"
        await client.call("POST", "/players", {"player_id": player, "currency": "EUR"})
        await client.call("POST", "/wallet/credit", {"player_id": player, "currency": "EUR", "amount": 100_000},
                          idempotency_key="refusals-fund")
        current = await _next_round(client)
        good = {"player_id": player, "currency": "EUR", "picks": [1, 2, 3], "stake": 100}
        bad_bodies = {
            "invalid_request": [
                {**good, "picks": list(range(1, 12))}, {**good, "picks": []},
                {**good, "stake": 0}, {**good, "stake": -5}, {**good, "stake": 1.5}, {**good, "stake": "100"},
                {**good, "unknown": 1}, {"player_id": player}, {**good, "picks": "1,2"},
            ],
            "bad_picks": [{**good, "picks": [5, 5]}, {**good, "picks": [0, 5]}, {**good, "picks": [81]}],
            "stake_above_limit": [{**good, "stake": 1_000_001}],
            "unknown_player": [{**good, "player_id": "nobody-here"}],
            "unknown_round": [{**good, "round_id": "fast-1"}],
            "round_closed": [{**good, "round_id": f"fast-{int(current['round_id'].rsplit('-', 1)[1]) - 3}"}],
            "unknown_table": [{**good, "table_id": "nope"}],
            "currency_not_offered": [{**good, "currency": "USD"}],
        }
        status, before = await client.call("GET", f"/wallet/balance?player_id={player}&currency=EUR")
        for code, bodies in bad_bodies.items():
            for body in bodies:
                status, answer = await client.call("POST", "/bets/place", body)
                assert 400 <= status < 500, (code, body, status, answer)
                assert answer["status"] == "error" and answer["code"] == code, (code, body, answer)
                assert set(answer) == {"status", "code", "message", "timestamp", "requestId"}
        for raw in (b"{not json", b"[]", b"", b'{"player_id": 5}'):
            status, answer, _ = await client.raw("POST", "/bets/place", body=raw)
            assert status == 400 and answer["code"] == "invalid_request", (raw, answer)
        _, after = await client.call("GET", f"/wallet/balance?player_id={player}&currency=EUR")
        assert after["balance"] == before["balance"]
        # idempotency: a repeat answers the stored response; the same key with another body is a conflict
        status1, first, _ = await client.raw("POST", "/bets/place", good, idempotency_key="same-key")
        status2, again, headers = await client.raw("POST", "/bets/place", good, idempotency_key="same-key")
        assert status1 == status2 == 201 and first == again and headers.get("idempotent-replayed") == "true"
        status, clash = await client.call("POST", "/bets/place", {**good, "stake": 101}, idempotency_key="same-key")
        assert status == 409 and clash["code"] == "idempotency_key_reused"
        status, missing, _ = await client.raw("POST", "/bets/place", good, headers={"idempotency-key": ""})
        assert status == 400 and missing["code"] == "missing_idempotency_key"
        # authentication: stale timestamp, bad signature, no token, forged token, wrong paths and methods
        path = f"/wallet/balance?player_id={player}&currency=EUR"
        stale = client.headers("GET", path, b"", timestamp=int(time.time()) - 121)
        assert (await client.raw("GET", path, signed=False, headers=stale))[0] == 401
        forged_sig = {**client.headers("GET", path, b""), "x-signature": "0" * 64}
        assert (await client.raw("GET", path, signed=False, headers=forged_sig))[1]["code"] == "bad_signature"
        assert (await client.raw("GET", path, signed=False))[1]["code"] == "missing_token"
        forged = {**client.headers("GET", path, b""), "authorization": "Bearer " + (client.token or "")[:-4] + "AAAA"}
        assert (await client.raw("GET", path, signed=False, headers=forged))[1]["code"] == "invalid_token"
        wrong_secret = _client(stack, client_secret="x" * 43)
        async with wrong_secret:
            status, answer, _ = await wrong_secret.raw("POST", "/oauth/token", {
                "grant_type": "client_credentials", "client_id": client.client_id, "client_secret": "x" * 43}, signed=False)
            assert status == 401 and answer["code"] == "invalid_client"
        assert (await client.raw("GET", "/no/such/path"))[0] == 404
        assert (await client.raw("DELETE", "/bets/place"))[0] == 405
        status, answer, _ = await client.raw("POST", "/bets/place", body=b"x" * 70_000)
        assert status == 413 and answer["code"] == "body_too_large"
        status, doc, _ = await client.raw("GET", "/openapi.json", signed=False)
        assert status == 200 and "/bets/place" in doc["paths"]


async def test_other_operator_rate_limits_and_risk(stack: dict[str, Any]) -> None:
    """A second operator: its token is useless with the first one's secret, it is rate
    limited at its own (low) limit, and a player betting far beyond their history is
    flagged and suspended because this operator asked for it."""
    from datetime import UTC, datetime, timedelta

    import asyncpg

    from core.operator_auth import PURPOSE_CREDENTIALS, CredentialVault, derive_key
    from core.risk import RiskLimits
    from core.seeds import parse_key
    from storage.operators import OperatorStore

    url = stack["demo"]["database_url"]
    key = (stack["state"] / "seed.key").read_text().strip()
    vault = CredentialVault(derive_key(parse_key(key), PURPOSE_CREDENTIALS))
    store = await OperatorStore.connect(url)
    try:
        client_id, secret = await store.create_operator(
            "e2e-op2", "Second operator", vault=vault, rate_limit_per_min=40,
            risk=RiskLimits(auto_suspend=True, min_history_days=7),
        )
    finally:
        await store.close()
    base = stack["demo"]["operator"]["api_base_url"]
    async with OperatorClient(base, client_id, secret) as op2, _client(stack) as op1:
        await op2.authenticate()
        await op1.authenticate()
        # op2's token signed with op1's secret is refused
        mixed = OperatorClient(base, client_id, stack["demo"]["operator"]["client_secret"], session=op2.session)
        mixed.token = op2.token
        assert (await mixed.raw("GET", "/operator/config"))[1]["code"] == "bad_signature"
        # risk: a week of small bets, then one far above them
        player = "e2e-whale"
        assert (await op2.call("POST", "/players", {"player_id": player, "currency": "EUR"}))[0] == 201
        assert (await op2.call("POST", "/wallet/credit", {"player_id": player, "currency": "EUR", "amount": 10_000_000}))[0] == 200
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("INSERT INTO game_tables (table_id, config) VALUES ('history', '{}') ON CONFLICT DO NOTHING")
            for day in range(1, 9):
                at = datetime.now(UTC) - timedelta(days=day)
                rid = f"history-{day}"
                await conn.execute(
                    "INSERT INTO rounds (round_id, table_id, nonce, phase, opens_at, closes_at, draws_at, derivation,"
                    " seed_ciphertext, commitment) VALUES ($1, 'history', $2, 'voided', $3, $3, $3, 'v1', '\\x00', 'x')",
                    rid, day, at)
                await conn.execute(
                    "INSERT INTO tickets (ticket_id, round_id, table_id, operator_id, player_id, currency, picks, stake,"
                    " paytable, state, placed_at) VALUES ($1, $2, 'history', 'e2e-op2', $3, 'EUR', '{1}', $4, 'standard',"
                    " 'settled', $5)", f"hist-{day}", rid, player, 1000 + 10 * day, at)
        finally:
            await conn.close()
        await _next_round(op2)
        status, body = await op2.call("POST", "/bets/place", {"player_id": player, "currency": "EUR", "picks": [7], "stake": 500_000})
        assert status == 201, body  # placed, then flagged: the bet itself was within limits
        status, body = await op2.call("POST", "/bets/place", {"player_id": player, "currency": "EUR", "picks": [7], "stake": 100})
        assert status == 403 and body["code"] == "player_suspended", body
        conn = await asyncpg.connect(url)
        try:
            kinds = {r["kind"] for r in await conn.fetch(
                "SELECT kind FROM significant_events WHERE subject LIKE '%e2e-whale%'")}
        finally:
            await conn.close()
        assert "player_suspended" in kinds, kinds
        # rate limit: 40/min for op2; op1 is not affected
        codes = []
        for _ in range(45):
            status, body, headers = await op2.raw("GET", "/operator/config")
            codes.append(status)
            if status == 429:
                assert int(headers["retry-after"]) >= 1 and body["code"] == "rate_limited"
                break
        assert codes[-1] == 429, codes
        assert (await op1.call("GET", "/operator/config"))[0] == 200


async def test_client_mistakes_on_every_route_are_400s_and_sessions_work(stack: dict[str, Any]) -> None:
    """Input the wallet protocol refuses (an unknown currency, an unusable key) is the
    client's mistake on every route, never a 5xx; sessions work for any registered player;
    an operator limited to an address list is refused from elsewhere (403)."""
    from core.operator_auth import PURPOSE_CREDENTIALS, CredentialVault, derive_key
    from core.seeds import parse_key
    from storage.operators import OperatorStore

    async with _client(stack) as client:
        await client.authenticate()
        player = "e2e-mistakes"
        assert (await client.call("POST", "/players", {"player_id": player, "currency": "EUR"}))[0] == 201
        for method, path, body in (
            ("POST", "/players", {"player_id": "e2e-xyz", "currency": "XYZ"}),
            ("POST", "/wallet/credit", {"player_id": player, "currency": "XYZ", "amount": 100}),
            ("POST", "/wallet/debit", {"player_id": player, "currency": "QQQ", "amount": 100}),
            ("GET", f"/wallet/balance?player_id={player}&currency=XYZ", None),
        ):
            status, answer = await client.call(method, path, body)
            assert status == 400 and answer["code"] == "invalid_request", (path, status, answer)
        credit = {"player_id": player, "currency": "EUR", "amount": 100}
        for key in ("k" * 121, "has space"):
            status, answer = await client.call("POST", "/wallet/credit", credit, idempotency_key=key)
            assert status == 400 and answer["code"] == "missing_idempotency_key", (key, status, answer)
        status, at_limit = await client.call("POST", "/wallet/credit", credit, idempotency_key="k" * 120)
        assert status == 200, at_limit
        _, balance = await client.call("GET", f"/wallet/balance?player_id={player}&currency=EUR")
        assert balance["balance"] == 100  # only the one well-formed credit moved money
        # sessions: for a player in any currency; an unknown player is a 404
        assert (await client.call("POST", "/players", {"player_id": "e2e-usd", "currency": "USD"}))[0] == 201
        status, session = await client.call("POST", "/sessions", {"player_id": "e2e-usd"})
        assert status == 201 and session["player_id"] == "e2e-usd" and len(session["session_token"]) >= 16, session
        status, answer = await client.call("POST", "/sessions", {"player_id": "e2e-nobody"})
        assert status == 404 and answer["code"] == "unknown_player", answer

    url = stack["demo"]["database_url"]
    key = (stack["state"] / "seed.key").read_text().strip()
    store = await OperatorStore.connect(url)
    try:
        client_id, secret = await store.create_operator(
            "e2e-op-fenced", "Fenced operator",
            vault=CredentialVault(derive_key(parse_key(key), PURPOSE_CREDENTIALS)), ip_allow_list=["203.0.113.0/24"],
        )
    finally:
        await store.close()
    async with OperatorClient(stack["demo"]["operator"]["api_base_url"], client_id, secret) as fenced:
        await fenced.authenticate()
        status, answer, _ = await fenced.raw("GET", "/operator/config")
        assert status == 403 and answer["code"] == "ip_not_allowed", answer


async def test_the_daily_volume_limit_holds_under_concurrent_bets(stack: dict[str, Any]) -> None:
    """An operator whose players may stake 1000 a day: eight concurrent bets of 300 of one
    player admit only the three that fit, the rest are 422 ``daily_volume_exceeded`` and
    debit nothing; the 100 left still fits, one more minor unit does not."""
    from core.risk import RiskLimits

    limit, stake, concurrent = 1000, 300, 8
    operator_id, player = "e2e-op-volume", "e2e-volume"
    op = await _new_operator(stack, operator_id, risk=RiskLimits(max_bet_minor=limit, daily_volume_minor=limit))
    async with op:
        await op.authenticate()
        await _funded_player(op, player, 100_000)
        await _next_round(op)
        answers = await asyncio.gather(*(
            op.call("POST", "/bets/place", {"player_id": player, "currency": "EUR", "picks": [k + 1], "stake": stake})
            for k in range(concurrent)))
        placed = [body for status, body in answers if status == 201]
        late = [body for status, body in answers if status == 409]
        for status, body in answers:
            if status == 422:
                _error_shaped(body, "daily_volume_exceeded")
            elif status == 409:  # the round closed mid-burst: not a volume question
                assert body["code"] in ("round_closed", "no_open_round"), body
            else:
                assert status == 201, (status, body)
        assert len(placed) * stake <= limit, answers
        if not late:
            assert len(placed) == limit // stake, answers
        booked = len(placed) * stake
        await _next_round(op)
        rest = {"player_id": player, "currency": "EUR", "picks": [9], "stake": limit - booked}
        status, body = await op.call("POST", "/bets/place", rest)
        assert status == 201, body
        placed.append(body)
        status, body = await op.call("POST", "/bets/place", {**rest, "stake": 1})
        assert status == 422, body
        _error_shaped(body, "daily_volume_exceeded")
        tickets = await _tickets_of(stack, operator_id, player)
        assert sorted(t["ticket_id"] for t in tickets) == sorted(b["ticket_id"] for b in placed)
        assert sum(t["stake"] for t in tickets) == limit
        # Refused bets debited nothing: the balance is the funds less the placed stakes plus their wins.
        paid = 0
        for body in placed:
            settled = await _settled(op, body["ticket_id"])
            paid += settled["payout"]
        assert await _balance(op, player) == 100_000 - limit + paid


async def test_picks_the_paytable_does_not_offer_are_refused(stack: dict[str, Any]) -> None:
    async with _client(stack) as client:
        await client.authenticate()
        status, config = await client.call("GET", "/operator/config")
        assert status == 200
        [mich] = [t for t in config["tables"] if t["table_id"] == "mich"]
        offered = {int(spots) for spots in mich["paytables"]}
        missing = sorted(set(range(1, 11)) - offered)
        assert missing, offered  # the michigan set has no 1..3 spot games
        player = "e2e-spots"
        await _funded_player(client, player, 10_000)
        await _next_round(client, table_id="mich")
        for spots in missing:
            bet = {"player_id": player, "currency": "EUR", "picks": list(range(1, spots + 1)), "stake": 100, "table_id": "mich"}
            status, answer = await client.call("POST", "/bets/place", bet)
            assert status in (400, 422), (spots, status, answer)
            _error_shaped(answer, "spots_not_offered")
        assert await _balance(client, player) == 10_000
        assert await _tickets_of(stack, stack["demo"]["operator"]["operator_id"], player) == []
        # The same table takes a count it offers, and the standard table takes the refused one.
        fewest = min(offered)
        status, body = await client.call("POST", "/bets/place", {
            "player_id": player, "currency": "EUR", "picks": list(range(1, fewest + 1)), "stake": 100, "table_id": "mich"})
        assert status == 201, body
        status, body = await client.call("POST", "/bets/place", {
            "player_id": player, "currency": "EUR", "picks": list(range(1, missing[0] + 1)), "stake": 100})
        assert status == 201, body


async def test_a_rollback_after_betting_closed_is_refused_and_the_bet_stands(stack: dict[str, Any]) -> None:
    async with _client(stack) as client:
        await client.authenticate()
        player = "e2e-late-rollback"
        await _funded_player(client, player, 10_000)
        current = await _next_round(client)
        status, ticket = await client.call("POST", "/bets/place", {
            "player_id": player, "currency": "EUR", "picks": [3, 30, 60], "stake": 250, "round_id": current["round_id"]})
        assert status == 201, ticket
        await asyncio.sleep(max(0.0, current["closes_at"] / 1000 + 0.05 - time.time()))
        status, answer = await client.call("POST", "/bets/rollback", {"ticket_id": ticket["ticket_id"]},
                                           idempotency_key="late-rollback")
        assert status == 409, answer
        _error_shaped(answer, "round_closed")
        assert current["round_id"] in answer["message"]
        # A retry of the refusal is the same refusal; the ticket still plays and settles.
        status, again = await client.call("POST", "/bets/rollback", {"ticket_id": ticket["ticket_id"]},
                                          idempotency_key="late-rollback")
        assert status == 409 and again["code"] == "round_closed"
        status, recalled = await client.call("GET", f"/bets/{ticket['ticket_id']}")
        assert status == 200 and recalled["state"] != "rolled_back", recalled
        settled = await _settled(client, ticket["ticket_id"])
        assert settled["stake"] == 250 and settled["round_id"] == current["round_id"]
        assert await _balance(client, player) == 10_000 - 250 + settled["payout"]
        status, answer = await client.call("POST", "/bets/rollback", {"ticket_id": "no-such-ticket"})
        assert status == 404
        _error_shaped(answer, "unknown_ticket")


async def test_results_pages_walk_newest_first_without_overlap_or_gaps(stack: dict[str, Any]) -> None:
    import asyncpg

    async with _client(stack) as client:
        await client.authenticate()
        deadline = time.monotonic() + 60
        while True:
            status, first = await client.call("GET", "/rounds/results?limit=1")
            assert status == 200, first
            if first["rounds"] and first["rounds"][0]["nonce"] >= 7:
                break
            assert time.monotonic() < deadline, first
            await asyncio.sleep(1)
        anchor = first["rounds"][0]["nonce"] + 1  # rounds revealed while we walk stay out
        conn = await asyncpg.connect(stack["demo"]["database_url"])
        try:
            expected = [r["round_id"] for r in await conn.fetch(
                "SELECT round_id FROM published_rounds WHERE table_id = 'fast' AND phase = 'revealed' AND nonce < $1"
                " ORDER BY nonce DESC", anchor)]
        finally:
            await conn.close()
        assert len(expected) >= 4, expected
        limit = max(2, -(-len(expected) // 4))
        walked: list[dict[str, Any]] = []
        cursor: int | None = anchor
        pages = 0
        while cursor is not None:
            status, page = await client.call("GET", f"/rounds/results?table_id=fast&limit={limit}&before={cursor}")
            assert status == 200, page
            assert len(page["rounds"]) <= limit and (page["next_before"] is None) == (len(page["rounds"]) < limit), page
            walked += page["rounds"]
            cursor = page["next_before"]
            pages += 1
            assert pages <= len(expected) + 1, "the walk does not end"
        assert [r["round_id"] for r in walked] == expected
        nonces = [r["nonce"] for r in walked]
        assert nonces == sorted(nonces, reverse=True) and len(set(nonces)) == len(nonces)
        assert all(len(r["numbers"]) == 20 and r["revealed_seed"] for r in walked)
        status, mich = await client.call("GET", "/rounds/results?table_id=mich&limit=100")
        assert status == 200 and all(r["round_id"].startswith("mich-") for r in mich["rounds"]), mich
        assert (await client.call("GET", "/rounds/results?before=0"))[1] == {"rounds": [], "next_before": None}
        for query in ("limit=0", "limit=101", "limit=-1", "limit=abc", "limit=1.5", "limit=", "limit=%C2%B2",
                      "limit=" + "9" * 5000, "limit=%205", "before=-3", "before=x", f"before={2**62 + 1}",
                      "before=%C2%B2", "before=" + "1" * 5000):
            status, answer = await client.call("GET", f"/rounds/results?{query}")
            assert status == 400, (query[:40], status, answer)
            _error_shaped(answer, "invalid_request")


async def test_one_client_ip_over_its_limit_gets_429_with_retry_after(stack: dict[str, Any]) -> None:
    """Requests from one address are limited together, authenticated or not, before
    anything else is looked at; a refused POST moves no money and keeps its key; other
    addresses are not affected; after Retry-After the address is served again.

    Every client reaches the API through Serve's HAProxy, so the replica's peer is always
    127.0.0.1; the stack trusts X-Forwarded-For as it would behind a load balancer that
    sets it, and this test plays that balancer (the last entry is the one it saw)."""
    away_ip = "198.51.100.23"
    xff = {"x-forwarded-for": away_ip}
    async with _client(stack) as home:
        await home.authenticate()
        player = "e2e-ip-limited"
        await _funded_player(home, player, 1000)
        op = stack["demo"]["operator"]
        away = OperatorClient(op["api_base_url"], op["client_id"], op["client_secret"], session=home.session)
        away.token = home.token
        assert (await away.call("GET", "/operator/config", headers=xff))[0] == 200
        started = time.monotonic()
        admitted = 1 + await _spend_address(away, xff)
        refill = (time.monotonic() - started) * IP_LIMIT_PER_MIN / 60
        assert IP_LIMIT_PER_MIN <= admitted <= IP_LIMIT_PER_MIN + refill + 1, (admitted, refill)

        # A refused POST moves no money and keeps its key. Credits a refilled token let
        # through (under keys of their own) are counted into the balance.
        credit = {"player_id": player, "currency": "EUR", "amount": 500}
        attempt, (_, answer, headers) = await _refused_when_spent(away, xff, lambda n: away.raw(
            "POST", "/wallet/credit", credit, idempotency_key=f"ip-limited-credit-{n}", headers=xff))
        key, credited = f"ip-limited-credit-{attempt}", 500 * attempt
        _error_shaped(answer, "rate_limited")
        retry_after = int(headers["retry-after"])
        assert 1 <= retry_after <= 60
        _, (_, answer, _) = await _refused_when_spent(away, xff, lambda _: away.raw("POST", "/oauth/token", {
            "grant_type": "client_credentials", "client_id": op["client_id"], "client_secret": op["client_secret"]},
            signed=False, headers=xff))
        assert answer["code"] == "rate_limited", answer
        # Addresses the client writes before the balancer's own do not make it someone else.
        spoofed = {"x-forwarded-for": f"192.0.2.77, {away_ip}"}
        await _refused_when_spent(away, xff, lambda _: away.call("GET", "/operator/config", headers=spoofed))
        assert (await away.call("GET", "/operator/config", headers={"x-forwarded-for": f"{away_ip}, 192.0.2.78"}))[0] == 200
        assert await _balance(home, player) == 1000 + credited  # another address, the same operator: served
        await asyncio.sleep(retry_after)
        status, body = await away.call("POST", "/wallet/credit", credit, idempotency_key=key, headers=xff)
        assert status == 200 and body["balance"] == 1500 + credited, body
        assert await _balance(home, player) == 1500 + credited  # the refused key was free, and is now spent once
    # The same rule for an operator's allow-list: a claimed address in front does not let anyone in.
    async with await _new_operator(stack, "e2e-op-fenced-xff", ip_allow_list=["203.0.113.0/24"]) as fenced:
        await fenced.authenticate()
        status, answer = await fenced.call("GET", "/operator/config", headers={"x-forwarded-for": "203.0.113.5, 192.0.2.9"})
        assert status == 403, answer
        _error_shaped(answer, "ip_not_allowed")
        assert (await fenced.call("GET", "/operator/config", headers={"x-forwarded-for": "192.0.2.9, 203.0.113.5"}))[0] == 200


async def test_rate_tiers_at_the_api(stack: dict[str, Any]) -> None:
    """Standard operators get 1000 requests a minute and premium ones 5000 (as the API
    reports them); an operator over its own limit gets 429s, and a refused POST moves no
    money and keeps its Idempotency-Key for after Retry-After."""
    for operator_id, options, expected in (("e2e-op-standard", {}, 1000), ("e2e-op-premium", {"tier": "premium"}, 5000),
                                           ("e2e-op-premium-capped", {"tier": "premium", "rate_limit_per_min": 2000}, 2000)):
        async with await _new_operator(stack, operator_id, **options) as client:
            await client.authenticate()
            status, config = await client.call("GET", "/operator/config")
            assert status == 200 and config["rate_limit_per_min"] == expected, (operator_id, config)
    low = 30  # one request back every 2 s
    async with await _new_operator(stack, "e2e-op-low", rate_limit_per_min=low) as client:
        await client.authenticate()
        player = "e2e-low-tier"
        assert (await client.call("POST", "/players", {"player_id": player, "currency": "EUR"}))[0] == 201
        admitted, started = 1, time.monotonic()
        while True:
            status, answer = await client.call("GET", "/operator/config")
            if status == 429:
                _error_shaped(answer, "rate_limited")
                break
            assert status == 200 and admitted <= 2 * low, (admitted, answer)
            admitted += 1
        assert low <= admitted <= low + (time.monotonic() - started) * low / 60 + 1, admitted
        credit = {"player_id": player, "currency": "EUR", "amount": 700}
        status, answer, headers = await client.raw("POST", "/wallet/credit", credit, idempotency_key="low-tier-credit")
        assert status == 429, answer
        _error_shaped(answer, "rate_limited")
        retry_after = int(headers["retry-after"])
        assert 1 <= retry_after <= 60 // low + 1
        await asyncio.sleep(retry_after)
        status, body = await client.call("POST", "/wallet/credit", credit, idempotency_key="low-tier-credit")
        assert status == 200 and body["balance"] == 700, body  # once: the refused one moved nothing


async def test_an_expired_token_is_refused_and_changes_nothing(stack: dict[str, Any]) -> None:
    """The token the stack issued as it came up worked then; once its ``expires_in`` has
    passed it is a 401 ``expired_token`` on every route, a POST with it moves no money and
    does not use up its Idempotency-Key, and a new token works."""
    early = stack["early_token"]
    assert early["expires_in"] == TOKEN_TTL_S
    await asyncio.sleep(max(0.0, early["received_at"] + TOKEN_TTL_S + 1 - time.time()))
    async with _client(stack) as client:
        fresh = await client.authenticate()
        assert fresh["expires_in"] == TOKEN_TTL_S and fresh["access_token"] != early["access_token"]
        player = "e2e-expired"
        await _funded_player(client, player, 1000)
        await _next_round(client)
        new_token, client.token = client.token, early["access_token"]
        credit = {"player_id": player, "currency": "EUR", "amount": 500}
        for method, path, body, key in (
            ("GET", f"/wallet/balance?player_id={player}&currency=EUR", None, None),
            ("GET", "/operator/config", None, None),
            ("POST", "/wallet/credit", credit, "expired-credit"),
            ("POST", "/bets/place", {"player_id": player, "currency": "EUR", "picks": [1, 2], "stake": 100}, "expired-bet"),
        ):
            # Signed correctly, with the right secret: only the token's age is wrong.
            status, answer, headers = await client.raw(method, path, body, idempotency_key=key, refresh=False)
            assert status == 401, (path, status, answer)
            _error_shaped(answer, "expired_token")
            assert headers.get("x-request-id") == answer["requestId"]
        client.token = new_token
        assert await _balance(client, player) == 1000
        assert await _tickets_of(stack, stack["demo"]["operator"]["operator_id"], player) == []
        # The refused POST never reached its key: the same request with a valid token runs once.
        status, body = await client.call("POST", "/wallet/credit", credit, idempotency_key="expired-credit")
        assert status == 200 and body["balance"] == 1500, body
        # The client renews an expired token by itself (and the request then goes through).
        client.token = early["access_token"]
        assert await _balance(client, player) == 1500
        assert client.token not in (early["access_token"], None)


def test_after_the_stack_stops_the_ledger_and_every_round_verify(stack: dict[str, Any]) -> None:
    process = stack["process"]
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 0
    ledger = _rgs(stack["state"], "ledger", "verify", "--json")
    assert ledger.returncode == 0, ledger.stdout + ledger.stderr
    assert json.loads(ledger.stdout)["ok"] is True
    rounds = _rgs(stack["state"], "verify", "--all", "--json")
    assert rounds.returncode == 0, rounds.stdout[-3000:] + rounds.stderr
    verified = json.loads(rounds.stdout)
    assert verified["ok"] and verified["rounds"] >= 3
