"""The operator API end to end against the demo stack, as an integrator meets it.

``rgs up --demo`` runs as its own process (its own Ray, embedded PostgreSQL, Redis and
dev chain) with a 3-second Keno table. The operator gets a token, registers and funds
players, places bets over several rounds, rolls one back while its round is open, reads
results and recalls its tickets, follows the WebSocket feed (JSON and msgpack), and meets
every refusal the API promises. After ``rgs up`` stops, ``rgs ledger verify`` and
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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import websockets

from serve.operator_client import OperatorClient

PERIOD_MS = 3000
FUNDS = 500_000


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
    }]))
    port = _free_port()
    log = open(state / "up.log", "w")  # noqa: SIM115 - closed in the finally below
    process = subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--demo"], env=_env(state, port), stdout=log,
                               stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2], start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "rgs up: up." not in (state / "up.log").read_text():
            assert process.poll() is None, (state / "up.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "rgs up --demo did not come up in 240 s"
            time.sleep(0.5)
        demo = json.loads((state / "demo.json").read_text())
        yield {"state": state, "demo": demo, "process": process, "port": port}
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


def _client(stack: dict[str, Any], **override: str) -> OperatorClient:
    op = stack["demo"]["operator"]
    return OperatorClient(op["api_base_url"], override.get("client_id", op["client_id"]),
                          override.get("client_secret", op["client_secret"]))


async def _next_round(client: OperatorClient, after: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = await client.call("GET", "/rounds/current")
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
