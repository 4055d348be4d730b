"""The seamless wallet end to end over HTTP: Serve gateway → provider adapters → shards.

One stack for the module (Ray Serve takes seconds to start): a fresh database, two shards,
the demo provisioning, both providers' adapters and the gateway on a free port.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import ray
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from actors.shard import start_shards
from cli.main import main
from core.config import load_config
from core.seeds import generate_key_hex
from storage.database import migrate
from storage.ledger_check import verify_ledger
from storage.reconciliation import reconcile


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def stack(ray_session: None, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ray import serve

    from serve.demo import provision_demo, start_adapters
    from serve.wallet import WalletGateway

    name = f"rgs_wallet_{uuid.uuid4().hex[:8]}"
    base, _, _ = database_url.rpartition("/")
    url = f"{base}/{name}"

    async def create() -> None:
        conn = await asyncpg.connect(database_url)
        await conn.execute(f"CREATE DATABASE {name}")
        await conn.close()
        await migrate(url)

    asyncio.run(create())
    port = _free_port()
    config = load_config(
        {}, overrides={"shards": 2, "partitions": 8, "state_dir": str(tmp_path_factory.mktemp("state")), "http_port": port}
    )
    shards = start_shards(config, url, prefix="wallet-shard-")
    base_url = f"http://127.0.0.1:{port}"
    _, demo, providers = asyncio.run(provision_demo(config, url, shards, base_url, generate_key_hex()))
    adapters = start_adapters(providers, url, shards)
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 10})
    routes = {f"/wallet/{p.provider_id}": {"provider_id": p.provider_id, "dialect": p.dialect} for p in providers}
    serve.run(WalletGateway.bind(routes), name="wallet", route_prefix="/wallet")  # type: ignore[attr-defined]
    try:
        yield {**demo, "database_url": url, "state_dir": config.state_dir}
    finally:
        serve.shutdown()
        for adapter in adapters:
            ray.kill(adapter, no_restart=True)
        shards.stop()


def _post(stack: dict[str, Any], path: str, body: bytes, headers: dict[str, str], method: str = "POST") -> tuple[int, Any]:
    request = urllib.request.Request(stack["base_url"] + path, data=body if method == "POST" else None, method=method)
    for key, value in {"content-type": "application/json", **headers}.items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _hub88(stack: dict[str, Any], path: str, payload: dict[str, Any], *, sign_with: bytes | None = None) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    key = serialization.load_pem_private_key(stack["providers"]["hub88"]["private_key_pem"].encode(), None)
    signature = base64.b64encode(key.sign(sign_with or body, padding.PKCS1v15(), hashes.SHA256())).decode()  # type: ignore[union-attr, call-arg, arg-type]
    return _post(stack, "/wallet/hub88" + path, body, {"x-hub88-signature": signature})


def _softswiss(stack: dict[str, Any], path: str, payload: dict[str, Any], *, token: str | None = None) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    secret = token or stack["providers"]["softswiss"]["auth_token"]
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return _post(stack, "/wallet/softswiss" + path, body, {"x-request-sign": signature})


def _player(stack: dict[str, Any], index: int) -> dict[str, Any]:
    return stack["players"][index]


def _hub88_tx(player: dict[str, Any], kind: str, tx: str, amount: int = 0, ref: str | None = None, round_id: str = "r1") -> dict[str, Any]:
    body: dict[str, Any] = {
        "user": player["player_id"],
        "token": player["session_token"],
        "request_uuid": str(uuid.uuid4()),
        "transaction_uuid": tx,
        "round": round_id,
        "round_closed": kind != "bet",
        "game_code": "rgs_keno_80",
    }
    if kind != "rollback":
        body.update(currency="EUR", amount=amount, supplier_transaction_id=f"s-{tx}", is_free=False, bet="keno")
    if ref is not None:
        body["reference_transaction_uuid"] = ref
    return body


def test_hub88_bet_win_and_refusals(stack: dict[str, Any]) -> None:
    player = _player(stack, 0)
    status, info = _hub88(stack, "/user/balance", {"user": player["player_id"], "token": player["session_token"],
                                                   "request_uuid": "rq-1", "game_code": "rgs_keno_80"})
    assert status == 200 and info["status"] == "RS_OK" and info["request_uuid"] == "rq-1"
    start = info["balance"]
    assert start == 100_000_000 * 1000  # 1,000,000.00 EUR in Hub88's 1/100000 units

    status, bet = _hub88(stack, "/transaction/bet", _hub88_tx(player, "bet", "h-bet-1", 150_000))  # 1.50 EUR
    assert (status, bet["status"], bet["balance"]) == (200, "RS_OK", start - 150_000)
    status, again = _hub88(stack, "/transaction/bet", _hub88_tx(player, "bet", "h-bet-1", 150_000))
    assert again["status"] == "RS_OK" and again["balance"] == start - 150_000  # debited once
    status, win = _hub88(stack, "/transaction/win", _hub88_tx(player, "win", "h-win-1", 500_000, ref="h-bet-1"))
    assert win["status"] == "RS_OK" and win["balance"] == start + 350_000
    status, late = _hub88(stack, "/transaction/rollback", _hub88_tx(player, "rollback", "h-rb-1", ref="h-bet-1"))
    assert late["status"] != "RS_OK" and late["balance"] == start + 350_000  # rollback after win refused

    forged = _hub88_tx(player, "bet", "h-bet-2", 100_000)
    status, refused = _hub88(stack, "/transaction/bet", forged, sign_with=b"{}")
    assert (status, refused["status"]) == (200, "RS_ERROR_INVALID_SIGNATURE")
    status, now = _hub88(stack, "/user/balance", {"user": player["player_id"], "token": player["session_token"],
                                                  "request_uuid": "rq-2", "game_code": "rgs_keno_80"})
    assert now["balance"] == start + 350_000


def test_softswiss_play_rollback_and_refusals(stack: dict[str, Any]) -> None:
    player = _player(stack, 1)["player_id"]
    base = {"user_id": player, "currency": "EUR", "game": "rgs:keno80"}
    status, balance = _softswiss(stack, "/play", base)
    assert status == 200 and balance["balance"] == 100_000_000
    status, played = _softswiss(stack, "/play", {**base, "game_id": "g1", "finished": True, "actions": [
        {"action": "bet", "action_id": "s-bet-1", "amount": 200},
        {"action": "win", "action_id": "s-win-1", "amount": 500},
    ]})
    assert status == 200 and played["balance"] == 100_000_300 and len(played["transactions"]) == 2
    status, _ = _softswiss(stack, "/rollback", {**base, "game_id": "g2", "finished": True, "actions": [
        {"action": "rollback", "action_id": "s-rb-1", "original_action_id": "s-bet-2"}]})
    assert status == 200  # rollback of an unknown bet is acknowledged ...
    status, _late = _softswiss(stack, "/play", {**base, "game_id": "g2", "finished": False, "actions": [
        {"action": "bet", "action_id": "s-bet-2", "amount": 100}]})
    assert status != 200  # ... and the late bet is not debited
    status, forged = _softswiss(stack, "/play", {**base, "game_id": "g3", "finished": False, "actions": [
        {"action": "bet", "action_id": "s-bet-3", "amount": 100}]}, token="wrong")
    assert status == 403 and forged["code"] == 403
    status, after = _softswiss(stack, "/play", base)
    assert after["balance"] == 100_000_300


@pytest.mark.parametrize("dialect", ["hub88", "softswiss"])
def test_bad_input_never_gets_a_500(stack: dict[str, Any], dialect: str) -> None:
    header = "x-hub88-signature" if dialect == "hub88" else "x-request-sign"
    endpoint = "/transaction/bet" if dialect == "hub88" else "/play"
    cases = [
        ("POST", endpoint, b"{not json", {header: "x"}),
        ("POST", endpoint, b'{"user": 5}', {header: "x"}),
        ("POST", "/no/such/path", b"{}", {header: "x"}),
        ("GET", endpoint, b"", {}),
        ("POST", endpoint, b"x" * 100_000, {header: "x"}),
    ]
    for method, path, body, headers in cases:
        status, answer = _post(stack, f"/wallet/{dialect}{path}", body, headers, method=method)
        assert status < 500, (method, path, status, answer)
        assert isinstance(answer, dict) and "Traceback" not in json.dumps(answer)
    status, answer = _post(stack, "/wallet/nobody/user/balance", b"{}", {})
    assert status == 404 and answer["error"] == "not_found"
    status, spec = _post(stack, f"/wallet/{dialect}/openapi.json", b"", {}, method="GET")
    assert status == 200 and spec["openapi"].startswith("3.") and spec["paths"]


async def test_fifty_identical_concurrent_bets_debit_once(stack: dict[str, Any]) -> None:
    player = _player(stack, 2)
    body = json.dumps(_hub88_tx(player, "bet", "h-same", 1_000_000)).encode()
    key = serialization.load_pem_private_key(stack["providers"]["hub88"]["private_key_pem"].encode(), None)
    signature = base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()  # type: ignore[union-attr, call-arg, arg-type]
    headers = {"content-type": "application/json", "x-hub88-signature": signature}
    async with aiohttp.ClientSession() as session:

        async def send() -> Any:
            async with session.post(stack["base_url"] + "/wallet/hub88/transaction/bet", data=body, headers=headers) as r:
                return await r.json()

        answers = await asyncio.gather(*(send() for _ in range(50)))
    assert {a["status"] for a in answers} == {"RS_OK"}
    assert {a["balance"] for a in answers} == {100_000_000 * 1000 - 1_000_000}


def test_a_restarted_adapter_is_reached_again_and_retries_debit_once(stack: dict[str, Any]) -> None:
    """The gateway reaches the adapter over its socket, not through Ray: when Ray replaces
    the adapter, the gateway must find the new incarnation, and a provider retrying the
    same bet through the outage is debited exactly once."""
    import time

    player = _player(stack, 3)
    status, before = _hub88(stack, "/user/balance", {"user": player["player_id"], "token": player["session_token"],
                                                     "request_uuid": str(uuid.uuid4()), "game_code": "rgs_keno_80"})
    assert status == 200 and before["status"] == "RS_OK"
    adapter = ray.get_actor("provider-hub88", namespace="rgs")
    old_pid = ray.get(adapter.__ray_call__.remote(lambda self: __import__("os").getpid()))
    ray.kill(adapter, no_restart=False)

    bet = _hub88_tx(player, "bet", "h-restart", 250_000)
    answers = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, answer = _hub88(stack, "/transaction/bet", {**bet, "request_uuid": str(uuid.uuid4())})
        answers.append((status, answer["status"]))
        if answer["status"] == "RS_OK":
            break
        time.sleep(0.2)
    assert answers[-1] == (200, "RS_OK"), answers
    # during the outage: the dialect's retryable error, never a 500 or a traceback
    assert set(answers[:-1]) <= {(200, "RS_ERROR_UNKNOWN")}, answers
    new_pid = ray.get(ray.get_actor("provider-hub88", namespace="rgs").__ray_call__.remote(
        lambda self: __import__("os").getpid()))
    assert new_pid != old_pid

    status, repeat = _hub88(stack, "/transaction/bet", {**bet, "request_uuid": str(uuid.uuid4())})
    assert repeat["status"] == "RS_OK"
    assert repeat["balance"] == before["balance"] - 250_000


def _callbacks_of(stack: dict[str, Any], provider: str, like: str) -> list[Any]:
    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(stack["database_url"])
        try:
            return await conn.fetch(
                "SELECT endpoint, request_id, transaction_id, result_code, body_sha256, response"
                " FROM provider_callbacks WHERE provider_id = $1 AND transaction_id LIKE $2 ORDER BY callback_id",
                provider,
                like,
            )
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_every_callback_is_recorded_once_by_whoever_answered_it(stack: dict[str, Any]) -> None:
    """A one-intent call's record is written by the shard with its command (the wallet's
    own code); a repeat answered from memory and a call of several actions are recorded
    by the adapter (the dialect's code). Either way: one row per callback and transaction."""
    player = _player(stack, 4)
    payload = _hub88_tx(player, "bet", "h-rec-1", 100_000)
    status, bet = _hub88(stack, "/transaction/bet", payload)
    assert (status, bet["status"]) == (200, "RS_OK")
    (row,) = _callbacks_of(stack, "hub88", "%h-rec-1")
    assert row["endpoint"].endswith("/transaction/bet") and row["request_id"] == payload["request_uuid"]
    assert row["result_code"] == "ok" and json.loads(row["response"])["tx_id"] is not None
    assert bytes(row["body_sha256"]) == hashlib.sha256(json.dumps(payload).encode()).digest()

    status, again = _hub88(stack, "/transaction/bet", payload)  # the same request, byte for byte
    assert again["status"] == "RS_OK" and again["balance"] == bet["balance"]
    first, repeat = _callbacks_of(stack, "hub88", "%h-rec-1")
    assert first["result_code"] == "ok" and repeat["result_code"] == "RS_OK"
    assert json.loads(repeat["response"])["request_uuid"] == payload["request_uuid"]

    base = {"user_id": _player(stack, 4)["player_id"], "currency": "EUR", "game": "rgs:keno80"}
    status, played = _softswiss(stack, "/play", {**base, "game_id": "g-rec", "finished": True, "actions": [
        {"action": "bet", "action_id": "s-rec-bet", "amount": 100},
        {"action": "win", "action_id": "s-rec-win", "amount": 40},
    ]})
    assert status == 200 and len(played["transactions"]) == 2
    rows = _callbacks_of(stack, "softswiss", "%rec%")
    assert len(rows) == 2 and {r["result_code"] for r in rows} == {"200"}
    assert len({bytes(r["body_sha256"]) for r in rows}) == 1  # one request, one row per transaction


def test_reconciliation_and_ledger_agree(stack: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    async def check() -> tuple[Any, Any, list[Any]]:
        conn = await asyncpg.connect(stack["database_url"])
        try:
            return await reconcile(conn, "hub88"), await reconcile(conn, "softswiss"), await verify_ledger(conn)
        finally:
            await conn.close()

    hub88, softswiss, violations = asyncio.run(check())
    assert violations == []
    assert hub88.divergences == [] and softswiss.divergences == [], (hub88.divergences, softswiss.divergences)
    assert hub88.won_bets >= 1 and hub88.callbacks >= 5
    assert softswiss.rollbacks_of_unknown == 1
    assert main(["reconcile", "--provider", "hub88", "--database-url", stack["database_url"], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["money"]["EUR"]["ggr"] == str(int(hub88.money["EUR"]["ggr"]))
    assert Path(stack["state_dir"], "demo.json").exists()
