"""``rgs bench wallet``: signed Hub88 bet+win pairs against the running stack, next to the
same load on a trivial echo deployment configured the same way (the HTTP ceiling).

Needs ``rgs up --demo`` running (it reads ``<state>/demo.json``). Bodies are signed before
the clock starts: RSA signing costs the client ~1 ms each and would otherwise be what we
measure. Both sides send the same bytes with the same headers at the same concurrency.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from actors.bench_ledger import summarize
from cli.base import fail, load_cli_config

__all__ = ["run_bench"]


def _progress(message: str) -> None:
    print(f"bench wallet: {message}", file=sys.stderr, flush=True)


def _pairs(demo: dict[str, Any], count: int) -> list[tuple[tuple[bytes, str], tuple[bytes, str]]]:
    key = serialization.load_pem_private_key(demo["providers"]["hub88"]["private_key_pem"].encode(), None)
    run = uuid.uuid4().hex[:8]
    players = demo["players"]

    def signed(payload: dict[str, Any]) -> tuple[bytes, str]:
        body = json.dumps(payload, separators=(",", ":")).encode()
        signature = key.sign(body, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr, call-arg, arg-type]
        return body, base64.b64encode(signature).decode()

    pairs = []
    for n in range(count):
        player = players[n % len(players)]
        common = {"user": player["player_id"], "token": player["session_token"], "round": f"bench-{run}-{n}",
                  "game_code": demo["providers"]["hub88"]["game_code"], "currency": "EUR", "bet": "keno",
                  "is_free": False}
        bet = {**common, "request_uuid": f"{run}-rb{n}", "transaction_uuid": f"{run}-b{n}",
               "supplier_transaction_id": f"{run}-sb{n}", "round_closed": False, "amount": 100_000}
        win = {**common, "request_uuid": f"{run}-rw{n}", "transaction_uuid": f"{run}-w{n}",
               "reference_transaction_uuid": f"{run}-b{n}", "supplier_transaction_id": f"{run}-sw{n}",
               "round_closed": True, "amount": 150_000}
        pairs.append((signed(bet), signed(win)))
    return pairs


async def _load(
    session: aiohttp.ClientSession,
    urls: tuple[str, str],
    pairs: list[tuple[tuple[bytes, str], tuple[bytes, str]]],
    concurrency: int,
    duration: float,
    rate: float | None = None,
) -> tuple[dict[str, float], dict[str, int]]:
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    next_pair = iter(range(len(pairs)))
    stop_at = time.perf_counter() + duration
    interval = None if rate is None else concurrency / rate  # per worker, between requests

    async def worker(slot: int) -> None:
        if interval is not None:
            # Spread the workers over one interval: paced workers that start together
            # would fire in bursts of ``concurrency`` and measure their own queue.
            await asyncio.sleep(interval * slot / concurrency)
        for index in next_pair:
            if time.perf_counter() >= stop_at:
                return
            for url, (body, signature) in zip(urls, pairs[index], strict=True):
                started = time.perf_counter()
                headers = {"content-type": "application/json", "x-hub88-signature": signature}
                async with session.post(url, data=body, headers=headers) as response:
                    answer = await response.read()
                latencies.append(time.perf_counter() - started)
                status = json.loads(answer).get("status", str(response.status)) if response.status == 200 else str(response.status)
                outcomes[status] = outcomes.get(status, 0) + 1
                if interval is not None:
                    await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))

    started = time.perf_counter()
    await asyncio.gather(*(worker(slot) for slot in range(concurrency)))
    return summarize(latencies, time.perf_counter() - started), outcomes


def run_bench(args: Any) -> dict[str, Any]:
    import ray
    from ray import serve

    from serve.echo import EchoGateway

    config = load_cli_config(args)
    demo_file = Path(config.state_dir) / "demo.json"
    try:
        demo = json.loads(demo_file.read_text())
    except (OSError, ValueError):
        fail(f"rgs bench wallet: no {demo_file}; start the stack first with: rgs up --demo")
    duration = args.duration or 10.0
    concurrency = args.concurrency or 32
    ray.init(address=args.address or config.ray_address or "auto", namespace="rgs", log_to_driver=False,
             configure_logging=False)
    try:
        serve.run(EchoGateway.bind(), name="echo", route_prefix="/echo")  # type: ignore[attr-defined]
        count = int(duration * 2500) + 500
        _progress(f"signing {count} bet+win pairs")
        pairs = _pairs(demo, count)
        base = demo["base_url"]
        wallet_urls = (f"{base}/wallet/hub88/transaction/bet", f"{base}/wallet/hub88/transaction/win")
        echo_urls = (f"{base}/echo/bet", f"{base}/echo/win")
        return asyncio.run(_measure(wallet_urls, echo_urls, pairs, concurrency, duration))
    finally:
        serve.delete("echo")
        ray.shutdown()


async def _measure(wallet_urls: tuple[str, str], echo_urls: tuple[str, str], pairs: list[Any],
                   concurrency: int, duration: float) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        third = len(pairs) // 3
        await _load(session, wallet_urls, pairs[:100], concurrency, 2.0)
        _progress(f"ours: {concurrency} in flight for {duration:.0f} s")
        ours, ours_outcomes = await _load(session, wallet_urls, pairs[100:third], concurrency, duration)
        _progress(f"ours: {ours} {ours_outcomes}")
        _progress(f"echo: {concurrency} in flight for {duration:.0f} s")
        echo, _ = await _load(session, echo_urls, pairs[100:third], concurrency, duration)
        _progress(f"echo: {echo}")
        half = ours["per_s"] / 2
        _progress(f"ours at half its maximum rate ({half:.0f} req/s)")
        at_half, _ = await _load(session, wallet_urls, pairs[third:], concurrency, duration, rate=half)
    return {
        "name": "wallet",
        "ours": ours,
        "baseline": echo,
        "ratio": round(ours["per_s"] / echo["per_s"], 3) if echo["per_s"] else None,
        "ours_at_half_rate": at_half,
        "concurrency": concurrency,
        "duration_s": duration,
        "outcomes": ours_outcomes,
        "targets": {"ratio": 0.8, "p99_ms_at_half_rate": 20.0},
    }
