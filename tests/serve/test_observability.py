"""Metrics, health and ``rgs status`` against a stack built the way a cluster builds it.

One stack for the module: ``serve.apps`` builds both applications from the environment
(its keeper starts two shards, a provider adapter, the chain notary and a 3-second Keno
table), on a fresh database, a test Redis and a dev chain. Traffic then goes through the
wallet (SoftSwiss play calls) and the operator API (until its IP limit refuses), and the
node's Prometheus endpoint must show every ray-rgs metric family with a non-zero value.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import ray

from actors.chain_notary import NOTARY_NAME
from actors.router import ShardRouter
from actors.shard import shard_handles
from cli.main import main
from core.seeds import generate_key_hex
from core.wallet import Command, CommandKind, ResultCode
from storage.callbacks import CallbackStore
from tests.chain_fixtures import start_test_chain
from tests.redis_fixtures import start_test_redis

pytestmark = pytest.mark.usefixtures("ray_session")

TAG = uuid.uuid4().hex[:6]
OPERATOR = f"obs-op-{TAG}"
PROVIDER = f"obs-ss-{TAG}"
TABLE = f"obs-{TAG}"
SHARD_PREFIX = f"obs-{TAG}-shard-"
PLAYERS = [f"obs-p{i}" for i in range(4)]
IP_LIMIT_PER_MIN = 3
PROMETHEUS_DEADLINE_S = 120


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _register(database_url: str, auth_token: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    assert pool is not None
    try:
        await CallbackStore(pool).register_provider(
            PROVIDER,
            "softswiss",
            OPERATOR,
            {"base_path": f"/wallet/{PROVIDER}", "secrets": {"auth_token": auth_token}},
        )
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def stack(
    ray_session: None, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    from ray import serve

    from serve.apps import operator_app, wallet_app
    from storage.database import migrate

    folder = tmp_path_factory.mktemp("obs")
    name = f"rgs_obs_{TAG}"
    base, _, _ = database_url.rpartition("/")
    url = f"{base}/{name}"

    async def create() -> None:
        conn = await asyncpg.connect(database_url)
        await conn.execute(f"CREATE DATABASE {name}")
        await conn.close()
        await migrate(url)

    asyncio.run(create())
    auth_token = secrets.token_hex(16)
    asyncio.run(_register(url, auth_token))
    (folder / "tables.json").write_text(
        json.dumps(
            [
                {
                    "table_id": TABLE,
                    "paytable_set": "standard",
                    "currencies": ["EUR"],
                    "max_stake_minor": 2_000_000,
                    "max_win_minor": 100_000_000,
                    "period_ms": 3000,
                    "close_offset_ms": 800,
                    "commit_lead_ms": 2500,
                }
            ]
        )
    )
    chain = start_test_chain(folder)
    redis_server = start_test_redis(folder)
    port = _free_port()
    args = {"keeper": f"obs-keeper-{TAG}", "shard_prefix": SHARD_PREFIX}
    with pytest.MonkeyPatch.context() as env:
        for key, value in {
            "DATABASE_URL": url,
            "REDIS_URL": redis_server.url,
            "RGS_SEED_KEY": generate_key_hex(),
            "RGS_SHARDS": "2",
            "RGS_PARTITIONS": "8",
            "RGS_CHAIN_RPC_URL": chain.url,
            "RGS_CHAIN_PRIVATE_KEY": chain.private_key,
            "RGS_TABLES_FILE": str(folder / "tables.json"),
            "RGS_API_IP_LIMIT_PER_MIN": str(IP_LIMIT_PER_MIN),
            "RGS_STATE_DIR": str(folder / "state"),
        }.items():
            env.setenv(key, value)
        env.delenv("RGS_CONFIG", raising=False)
        wallet = wallet_app(args)
        operator = operator_app(args)
    keeper = ray.get_actor(args["keeper"], namespace="rgs")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 10})
        serve.run(wallet, name="wallet", route_prefix="/wallet")
        serve.run(operator, name="operator", route_prefix="/api")
        yield {
            "base_url": f"http://127.0.0.1:{port}",
            "auth_token": auth_token,
            "admin_url": database_url,
            "database": name,
            "redis": redis_server,
            "chain": chain,
        }
    finally:
        serve.shutdown()
        ray.kill(keeper, no_restart=True)  # and with it every actor it owns
        redis_server.stop()
        chain.stop()


def _http(
    stack: dict[str, Any],
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    request = urllib.request.Request(stack["base_url"] + path, data=body, method=method)
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _play(stack: dict[str, Any], payload: dict[str, Any]) -> tuple[int, Any]:
    body = json.dumps(payload).encode()
    signature = hmac.new(stack["auth_token"].encode(), body, hashlib.sha256).hexdigest()
    return _http(
        stack,
        "POST",
        f"/wallet/{PROVIDER}/play",
        body,
        {"content-type": "application/json", "x-request-sign": signature},
    )


def _bet(
    stack: dict[str, Any], player: str, game_id: str, action_id: str, amount: int
) -> tuple[int, Any]:
    """One finished SoftSwiss round holding one bet."""
    return _play(
        stack,
        {
            "user_id": player,
            "currency": "EUR",
            "game": "rgs:keno80",
            "game_id": game_id,
            "finished": True,
            "actions": [{"action": "bet", "action_id": action_id, "amount": amount}],
        },
    )


async def _fund_players() -> None:
    router = ShardRouter(shard_handles(2, 8, prefix=SHARD_PREFIX).handles, 8)
    try:
        opened = await router.execute_many(
            [Command(CommandKind.OPEN, OPERATOR, p, "EUR") for p in PLAYERS]
        )
        funded = await router.execute_many(
            [
                Command(CommandKind.TRANSFER_IN, OPERATOR, p, "EUR", f"fund-{p}", 100_000)
                for p in PLAYERS
            ]
        )
    finally:
        router.close()
    assert {r.code for r in (*opened, *funded)} == {ResultCode.OK}


def _metrics_text() -> str:
    ports = {
        n["MetricsExportPort"] for n in ray.nodes() if n["Alive"] and n.get("MetricsExportPort")
    }
    texts = []
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            texts.append(response.read().decode())
    return "\n".join(texts)


_SAMPLE = re.compile(r"^(ray_rgs_[a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$", re.MULTILINE)


def _samples(text: str) -> dict[tuple[str, str], float]:
    """Every ``ray_rgs_*`` sample by name and label set (summed over the nodes' texts)."""
    samples: dict[tuple[str, str], float] = {}
    for match in _SAMPLE.finditer(text):
        key = (match.group(1), match.group(2) or "")
        samples[key] = samples.get(key, 0.0) + float(match.group(3))
    return samples


def _grown(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    """The samples whose value rose between two scrapes, with their new value.

    Earlier test modules in the same Ray session leave their series behind (Ray keeps a
    dead actor's last values), so what this module's traffic did is what changed.
    """
    return {key: value for key, value in after.items() if value > before.get(key, 0.0)}


def _labels(series: Iterable[tuple[str, str]], sample: str, label: str) -> set[str]:
    pattern = re.compile(rf'\b{label}="([^"]*)"')
    return {
        found.group(1)
        for name, labels in series
        if name == sample and (found := pattern.search(labels)) is not None
    }


REQUIRED = (
    "ray_rgs_wallet_requests_total",
    "ray_rgs_wallet_request_seconds_count",
    "ray_rgs_journal_batches_total",
    "ray_rgs_journal_commands_total",
    "ray_rgs_journal_batch_commands_count",
    "ray_rgs_journal_commit_seconds_count",
    "ray_rgs_shard_active_accounts",
    # Queues drain in milliseconds, so the instant depths mostly read 0; their 60 s peaks
    # must show the traffic above and the table's commitments.
    "ray_rgs_shard_mailbox_depth_peak",
    "ray_rgs_chain_backlog_peak",
    "ray_rgs_rounds_total",
    "ray_rgs_settlement_seconds_count",
    "ray_rgs_chain_tx_seconds_count",
    "ray_rgs_rate_limited_total",
)
# Gauges can read lower than an earlier module left them, so they need only be non-zero.
GAUGES = frozenset(
    {
        "ray_rgs_shard_active_accounts",
        "ray_rgs_shard_mailbox_depth_peak",
        "ray_rgs_chain_backlog_peak",
    }
)


def test_traffic_shows_on_the_metrics_endpoint(stack: dict[str, Any]) -> None:
    before = _samples(_metrics_text())
    asyncio.run(_fund_players())
    base = {"user_id": PLAYERS[0], "currency": "EUR", "game": "rgs:keno80"}
    for n in range(5):
        status, played = _play(
            stack,
            {
                **base,
                "game_id": f"g{n}",
                "finished": True,
                "actions": [{"action": "bet", "action_id": f"obs-bet-{n}", "amount": 100}],
            },
        )
        assert status == 200, played
    status, _ = _http(
        stack, "POST", f"/wallet/{PROVIDER}/play", b"{}", {"x-request-sign": "forged"}
    )
    assert status != 200
    answers = [
        _http(stack, "POST", "/api/oauth/token", b"{}", {"content-type": "application/json"})[0]
        for _ in range(IP_LIMIT_PER_MIN + 2)
    ]
    assert 429 in answers, answers

    deadline = time.monotonic() + PROMETHEUS_DEADLINE_S
    missing: list[str] = list(REQUIRED)
    text = ""
    samples: dict[tuple[str, str], float] = {}
    grown: dict[tuple[str, str], float] = {}
    while missing and time.monotonic() < deadline:
        time.sleep(2)
        text = _metrics_text()
        samples = _samples(text)
        grown = _grown(before, samples)
        present = {name for name, _ in grown} | {
            name for (name, _), value in samples.items() if name in GAUGES and value > 0
        }
        missing = [name for name in REQUIRED if name not in present]
    assert not missing, f"no samples grew for {missing}"
    assert _labels(grown, "ray_rgs_wallet_requests_total", "dialect") == {"softswiss"}
    statuses = _labels(grown, "ray_rgs_wallet_requests_total", "status")
    assert "200" in statuses and len(statuses) >= 2, statuses  # the forged call's refusal too
    assert _labels(grown, "ray_rgs_rate_limited_total", "scope") == {"ip"}
    assert {f"{SHARD_PREFIX}0", f"{SHARD_PREFIX}1"} <= _labels(
        samples, "ray_rgs_shard_mailbox_depth", "shard"
    )
    assert {"open", "settled"} <= _labels(grown, "ray_rgs_rounds_total", "phase")
    assert "ray_rgs_chain_backlog" in text
    # What the Grafana dashboard and the runbook's alerts query exists under that name.
    root = Path(__file__).resolve().parents[2]

    def family(name: str) -> str:
        return re.sub(r"_(bucket|sum|count)$", "", name)

    queried = {
        family(n)
        for n in re.findall(
            r"ray_rgs_[a-z_]+",
            (root / "cluster/grafana-dashboard.json").read_text()
            + (root / "docs/runbook.md").read_text(),
        )
    }
    emitted = {family(n) for n in re.findall(r"^(ray_rgs_[a-z_]+)", text, re.MULTILINE)}
    assert queried and queried <= emitted, sorted(queried - emitted)


def test_health_endpoints(stack: dict[str, Any]) -> None:
    assert _http(stack, "GET", "/wallet/health/live") == (200, {"status": "ok"})
    status, ready = _http(stack, "GET", "/wallet/health/ready")
    assert (status, ready["status"]) == (200, "ok"), ready
    assert ready["checks"] == {
        f"provider:{PROVIDER}": "ok",
        "postgres": "ok",
        "shards": "ok",
        "redis": "ok",
        "chain": "ok",
    }
    status, api = _http(stack, "GET", "/api/health/ready")
    assert (
        status == 200 and api["checks"]["chain"] == "ok" and api["checks"][f"table:{TABLE}"] == "ok"
    ), api


def test_status_reports_shards_tables_and_notary(
    stack: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert main(["status", "--json", "--shard-prefix", SHARD_PREFIX]) == 0
        report = json.loads(capsys.readouterr().out)
        tables = {t["table_id"]: t for t in report["tables"]}
        if TABLE in tables and tables[TABLE]["current_round"] is not None:
            break
        assert time.monotonic() < deadline, report
        time.sleep(0.5)
    shards = report["shards"]
    assert [s["name"] for s in shards] == [f"{SHARD_PREFIX}0", f"{SHARD_PREFIX}1"]
    owned = sorted(int(p) for s in shards for p in s["epochs"])
    assert owned == list(range(8))  # every partition, once
    assert all(isinstance(s["pid"], int) and s["mailbox_depth"] >= 0 for s in shards)
    assert all(s["host"] and len(s["node"]) > 16 for s in shards), shards  # where to drain
    assert sum(s["active_accounts"] for s in shards) >= 1
    table = tables[TABLE]
    assert table["enabled"] is True and table["current_round"].startswith(f"{TABLE}-")
    assert table["current_phase"] in (
        "created",
        "open",
        "closed",
        "drawn",
        "settled",
        "published",
        "revealed",
        "voided",
    )
    assert report["notary"]["name"] == NOTARY_NAME and report["notary"]["queued_commits"] >= 0

    assert main(["status", "--shard-prefix", SHARD_PREFIX]) == 0
    text = capsys.readouterr().out
    assert f"{SHARD_PREFIX}0" in text and TABLE in text and "notary   chain-notary" in text


def test_wallet_readiness_fails_without_a_shard(stack: dict[str, Any]) -> None:
    # The shard stays dead until the next test restarts the keeper, which starts it again.
    ray.kill(ray.get_actor(f"{SHARD_PREFIX}1", namespace="rgs"), no_restart=True)
    deadline = time.monotonic() + 30
    while True:
        status, ready = _http(stack, "GET", "/wallet/health/ready")
        if status == 503:
            break
        assert time.monotonic() < deadline, ready
        time.sleep(0.2)
    assert ready["status"] == "unavailable" and ready["checks"]["shards"].startswith("failed: "), (
        ready
    )
    assert ready["checks"]["postgres"] == "ok" and ready["checks"]["redis"] == "ok", ready
    assert _http(stack, "GET", "/wallet/health/live")[0] == 200


def test_a_restarted_keeper_starts_the_backend_again(stack: dict[str, Any]) -> None:
    shard = ray.get_actor(f"{SHARD_PREFIX}0", namespace="rgs")
    before = ray.get(shard.ready.remote(), timeout=30)["pid"]
    ray.kill(
        ray.get_actor(f"obs-keeper-{TAG}", namespace="rgs"), no_restart=False
    )  # its actors end with it
    deadline = time.monotonic() + 120
    while True:
        try:
            again = ray.get(
                ray.get_actor(f"{SHARD_PREFIX}0", namespace="rgs").ready.remote(), timeout=10
            )
            if again["pid"] != before:
                break
        except (ValueError, ray.exceptions.RayError):
            pass  # not recreated yet
        assert time.monotonic() < deadline, "the keeper did not start the shards again"
        time.sleep(0.5)
    while True:
        status, ready = _http(stack, "GET", "/wallet/health/ready")
        if status == 200:
            break
        assert time.monotonic() < deadline, ready
        time.sleep(0.5)
    status, played = _bet(stack, PLAYERS[1], "after", "obs-after", 5)
    assert status == 200 and played["balance"] == 100_000 - 5, played


def _ready_until(stack: dict[str, Any], path: str, done: Any, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        status, ready = _http(stack, "GET", path)
        if done(status, ready):
            return dict(ready)
        assert time.monotonic() < deadline, f"{path} never showed {what}: {status} {ready}"
        time.sleep(0.5)


def _allow_connections(stack: dict[str, Any], allowed: bool) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(stack["admin_url"])
        try:
            await conn.execute(
                f"ALTER DATABASE {stack['database']} ALLOW_CONNECTIONS {str(allowed).lower()}"
            )
            if not allowed:  # and cut everyone already connected: the database is gone for them
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    stack["database"],
                )
        finally:
            await conn.close()

    asyncio.run(run())


def test_readiness_follows_postgres_redis_and_chain_outages(stack: dict[str, Any]) -> None:
    """Last of the stack's tests: it stops the stack's Redis and chain for good."""
    _ready_until(stack, "/wallet/health/ready", lambda s, r: s == 200 and r["status"] == "ok", "ok")
    # PostgreSQL away: neither the wallet nor the API can serve; both say why, liveness holds.
    _allow_connections(stack, False)
    try:
        wallet = _ready_until(stack, "/wallet/health/ready", lambda s, r: s == 503, "503")
        assert wallet["status"] == "unavailable" and wallet["checks"]["postgres"].startswith(
            "failed: "
        ), wallet
        api = _ready_until(stack, "/api/health/ready", lambda s, r: s == 503, "503")
        assert api["checks"]["postgres"].startswith("failed: "), api
        assert _http(stack, "GET", "/wallet/health/live")[0] == 200
        assert _http(stack, "GET", "/api/health/live")[0] == 200
    finally:
        _allow_connections(stack, True)
    # ... and back: ready again, and money moves again without a restart.
    _ready_until(
        stack, "/wallet/health/ready", lambda s, r: s == 200, "200 after PostgreSQL came back"
    )
    status, played = _bet(stack, PLAYERS[2], "after-pg", "obs-after-pg", 7)
    assert status == 200 and played["balance"] == 100_000 - 7, played
    # Redis away: no wallet call needs it, so the wallet only degrades; the API's rate
    # limits and idempotency records do, so it is not ready.
    stack["redis"].stop()
    wallet = _ready_until(
        stack, "/wallet/health/ready", lambda s, r: r["checks"].get("redis", "ok") != "ok", "redis"
    )
    assert wallet["status"] == "degraded" and wallet["checks"]["postgres"] == "ok", wallet
    api = _ready_until(stack, "/api/health/ready", lambda s, r: s == 503, "503 without Redis")
    assert api["checks"]["redis"].startswith("failed: ") and api["checks"]["postgres"] == "ok", api
    # The chain away: rounds cannot be committed; the wallet degrades, the API is not ready.
    stack["chain"].stop()
    wallet = _ready_until(
        stack, "/wallet/health/ready", lambda s, r: r["checks"].get("chain", "ok") != "ok", "chain"
    )
    assert wallet["status"] == "degraded", wallet
    api = _ready_until(
        stack, "/api/health/ready", lambda s, r: r["checks"].get("chain", "ok") != "ok", "chain"
    )
    assert api["status"] == "unavailable", api


def test_status_without_a_cluster_is_one_clear_line() -> None:
    port = _free_port()  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "status", "--address", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    assert "cannot reach a Ray cluster" in result.stderr and "Traceback" not in result.stderr
