"""``rgs bench operator``: signed ``POST /api/bets/place`` against the running stack, next to
the same requests on the echo deployment (the HTTP ceiling, as in ``rgs bench wallet``).

Needs ``rgs up --demo`` running. The benchmark makes its own operator (so the demo's
1,000/min rate limit does not cap it: it measures the system, not the limiter, which still
runs on every request) and its own funded players, then waits for a round with enough
betting time left and sends signed, idempotent bets at bounded concurrency for the
duration. Only placed tickets (201) count as ours; the echo answers every request.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from actors.bench_ledger import summarize
from cli.base import fail, load_cli_config

__all__ = ["run_bench"]

PLAYERS = 200


def _progress(message: str) -> None:
    print(f"bench operator: {message}", file=sys.stderr, flush=True)


def run_bench(args: Any) -> dict[str, Any]:
    import ray
    from ray import serve

    from serve.echo import EchoGateway

    config = load_cli_config(args)
    demo_file = Path(config.state_dir) / "demo.json"
    try:
        demo = json.loads(demo_file.read_text())
    except (OSError, ValueError):
        fail(f"rgs bench operator: no {demo_file}; start the stack first with: rgs up --demo")
    duration = args.duration or 6.0
    concurrency = args.concurrency or 32
    from storage.keys import seed_key_hex

    credentials = asyncio.run(_bench_operator(demo["database_url"], seed_key_hex(config)))
    ray.init(address=args.address or config.ray_address or "auto", namespace="rgs", log_to_driver=False,
             configure_logging=False)
    try:
        serve.run(EchoGateway.bind(), name="echo", route_prefix="/echo")  # type: ignore[attr-defined]
        return asyncio.run(_measure(demo, credentials, concurrency, duration))
    finally:
        serve.delete("echo")
        ray.shutdown()


async def _bench_operator(database_url: str, seed_key: str) -> tuple[str, str]:
    from core.operator_auth import PURPOSE_CREDENTIALS, CredentialVault, derive_key
    from core.risk import RiskLimits
    from core.seeds import parse_key
    from storage.operators import OperatorStore

    vault = CredentialVault(derive_key(parse_key(seed_key), PURPOSE_CREDENTIALS))
    store = await OperatorStore.connect(database_url)
    try:
        operator_id = f"bench-{uuid.uuid4().hex[:8]}"
        return await store.create_operator(
            operator_id, "benchmark operator", vault=vault, tier="premium", rate_limit_per_min=10_000_000,
            risk=RiskLimits(max_bet_minor=1_000_000, daily_volume_minor=10**15),
        )
    finally:
        await store.close()


async def _measure(demo: dict[str, Any], credentials: tuple[str, str], concurrency: int, duration: float) -> dict[str, Any]:
    from serve.operator_client import OperatorClient

    base = demo["base_url"]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = OperatorClient(f"{base}/api", *credentials, session=session)
        echo = OperatorClient(f"{base}/echo", *credentials, session=session)
        await client.authenticate()
        echo.token = client.token
        _progress(f"registering and funding {PLAYERS} players")
        players = [f"bp{i}" for i in range(PLAYERS)]
        for player in players:
            await client.call("POST", "/players", {"player_id": player, "currency": "EUR"})
            await client.call("POST", "/wallet/credit", {"player_id": player, "currency": "EUR", "amount": 10**9})
        table = (await client.call("GET", "/operator/config"))[1]["tables"][0]
        period_s = table["period_ms"] / 1000
        window_s = (table["period_ms"] - table["close_offset_ms"]) / 1000
        if duration > window_s - 1:
            fail(f"rgs bench operator: --duration must fit in one betting window ({window_s - 1:.1f} s here)")
        await _load(client, players, concurrency, 1.0, "warm")
        await _await_window(client, duration + 0.3, period_s)
        _progress(f"ours: {concurrency} in flight for {duration:.1f} s, signed bets/place")
        ours, ours_codes = await _load(client, players, concurrency, duration, "run")
        _progress(f"ours: {ours} {ours_codes}")
        _progress(f"echo: the same requests for {duration:.1f} s")
        ceiling, echo_codes = await _load(echo, players, concurrency, duration, "echo")
        _progress(f"echo: {ceiling} {echo_codes}")
    return {
        "name": "operator",
        "ours": ours,
        "baseline": ceiling,
        "ratio": round(ours["per_s"] / ceiling["per_s"], 3) if ceiling["per_s"] else None,
        "concurrency": concurrency,
        "duration_s": duration,
        "outcomes": {"ours": ours_codes, "echo": echo_codes},
        "what": "POST /api/bets/place: JWT + HMAC check, rate limits (Redis), idempotency record, risk volume"
                " query, ticket rows, wallet debit through the shards; 1 ticket per request",
    }


async def _await_window(client: Any, needed_s: float, period_s: float) -> None:
    deadline = time.monotonic() + 3 * period_s
    while time.monotonic() < deadline:
        status, current = await client.call("GET", "/rounds/current")
        if status == 200 and current["closes_at"] / 1000 - time.time() >= needed_s:
            return
        await asyncio.sleep(0.05)
    fail("rgs bench operator: no round with a long enough betting window opened")


async def _load(client: Any, players: list[str], concurrency: int, duration: float, run: str) -> tuple[dict[str, float], dict[str, int]]:
    latencies: list[float] = []
    codes: dict[str, int] = {}
    stop_at = time.perf_counter() + duration
    counter = iter(range(10**9))
    tag = uuid.uuid4().hex[:6]

    async def worker() -> None:
        for n in counter:
            if time.perf_counter() >= stop_at:
                return
            bet = {"player_id": players[n % len(players)], "currency": "EUR", "picks": [1 + n % 80, 1 + (n + 40) % 80],
                   "stake": 100}
            started = time.perf_counter()
            status, _, _ = await client.raw("POST", "/bets/place", bet, idempotency_key=f"{run}-{tag}-{n}")
            elapsed = time.perf_counter() - started
            codes[str(status)] = codes.get(str(status), 0) + 1
            if status in (200, 201):
                latencies.append(elapsed)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summarize(latencies, time.perf_counter() - started), codes
