"""``rgs bench wallet``: signed Hub88 bet+win pairs against the running stack, next to the
same load on a trivial echo deployment configured the same way (the HTTP ceiling).

Needs ``rgs up --demo`` running (it reads ``<state>/demo.json``). Bodies are signed before
the clock starts: RSA signing costs the client ~1 ms each and would otherwise be what we
measure. Both sides send the same bytes with the same headers at the same concurrency.

``--rounds N`` measures ours and the echo alternately N times: on a shared machine the
ratio of one pair of runs drifts by more than most changes move it. The headline figures
are then the round with the median ratio, and ``rounds`` lists every round.

``--floor`` adds a third side in every round, on the same bodies: ``serve.bench_floor``,
which only verifies, parses and commits one row per request. ``floor_ratio`` (floor over
echo) is what this machine leaves of the HTTP ceiling to any wallet that journals before
it answers; ``ratio`` over ``floor_ratio`` is how close our code comes to that floor.

``stages_at_half_rate`` says where the half-rate run's time went, from the stack's own
counters read before and after it: the mean wait from the replica's receipt to the
adapter starting on a request, the mean time in the adapter (the shard call included),
and the shards' commands per journal commit and wall time per commit.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from actors.bench_ledger import summarize
from cli.base import fail, load_cli_config

__all__ = ["median_round", "run_bench", "stages_between"]

StageCounters = dict[str, float]


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
    *,
    cycle: bool = False,
) -> tuple[dict[str, float], dict[str, int]]:
    """Send ``pairs`` for ``duration`` seconds (or until they run out, unless ``cycle``:
    only the echo may see a body twice, the wallet would answer a repeat from memory)."""
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    next_pair = itertools.cycle(range(len(pairs))) if cycle else iter(range(len(pairs)))
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

    from serve.bench_floor import FloorGateway, create_floor_table, drop_floor_table
    from serve.echo import EchoGateway

    config = load_cli_config(args)
    demo_file = Path(config.state_dir) / "demo.json"
    try:
        demo = json.loads(demo_file.read_text())
    except (OSError, ValueError):
        fail(f"rgs bench wallet: no {demo_file}; start the stack first with: rgs up --demo")
    duration = args.duration or 10.0
    concurrency = args.concurrency or 32
    rounds = getattr(args, "rounds", None) or 1
    if duration <= 0 or concurrency < 1 or rounds < 1:
        fail("rgs bench wallet: --duration must be > 0, --concurrency and --rounds at least 1")
    with_floor = bool(getattr(args, "floor", False))
    ray.init(address=args.address or config.ray_address or "auto", namespace="rgs", log_to_driver=False,
             configure_logging=False)
    try:
        serve.run(EchoGateway.bind(), name="echo", route_prefix="/echo")  # type: ignore[attr-defined]
        base = demo["base_url"]
        floor_urls = None
        if with_floor:
            asyncio.run(create_floor_table(demo["database_url"]))
            public_pem = demo["providers"]["hub88"]["public_key_pem"]
            serve.run(FloorGateway.bind(demo["database_url"], public_pem),  # type: ignore[attr-defined]
                      name="floor", route_prefix="/floor")
            floor_urls = (f"{base}/floor/bet", f"{base}/floor/win")
        per_side = _pairs_per_side(duration)
        count = 100 + (rounds + 1) * per_side
        _progress(f"signing {count} bet+win pairs")
        pairs = _pairs(demo, count)
        wallet_urls = (f"{base}/wallet/hub88/transaction/bet", f"{base}/wallet/hub88/transaction/win")
        echo_urls = (f"{base}/echo/bet", f"{base}/echo/win")
        counters = _stage_reader(demo["providers"]["hub88"]["provider_id"])
        return asyncio.run(
            _measure(wallet_urls, echo_urls, pairs, concurrency, duration, rounds, floor_urls, counters)
        )
    finally:
        serve.delete("echo")
        if with_floor:
            serve.delete("floor")
            asyncio.run(drop_floor_table(demo["database_url"]))
        ray.shutdown()


def _stage_reader(provider_id: str) -> Callable[[], Awaitable[StageCounters]] | None:
    """How to read the adapter's and the shards' cumulative counters, or None (with a
    word on stderr) when this cluster does not have them under the default names."""
    import ray

    from actors.provider_adapter import adapter_name
    from actors.shard import NAMESPACE, live_shards

    try:
        adapter = ray.get_actor(adapter_name(provider_id), namespace=NAMESPACE)
        shards = [ray.get_actor(name, namespace=NAMESPACE) for name in live_shards()]
    except ValueError:
        shards = []
    if not shards:
        _progress("no adapter or shards under the default names: no stage figures")
        return None

    async def read() -> StageCounters:
        totals: StageCounters = dict(await adapter.stats.remote())
        for stats in await asyncio.gather(*(shard.stats.remote() for shard in shards)):
            for key in ("batches", "commands", "commit_seconds"):
                totals[key] = totals.get(key, 0.0) + float(stats.get(key, 0.0))
        return totals

    return read


def stages_between(before: StageCounters, after: StageCounters) -> dict[str, float | None]:
    """Means per request and per commit between two readings of the stage counters
    (None where nothing was counted)."""

    def delta(key: str) -> float:
        return float(after.get(key, 0.0)) - float(before.get(key, 0.0))

    def mean_ms(key: str, over: float) -> float | None:
        return round(delta(key) / over * 1000, 3) if over > 0 else None

    requests, batches = delta("requests"), delta("batches")
    return {
        "requests": requests,
        "replica_to_adapter_ms": mean_ms("arrival_seconds", requests),
        "in_adapter_ms": mean_ms("handle_seconds", requests),
        "commands_per_commit": round(delta("commands") / batches, 2) if batches > 0 else None,
        "commit_ms": mean_ms("commit_seconds", batches),
    }


def _pairs_per_side(duration: float) -> int:
    # Fresh pairs for every measured side: a repeat is answered from a shard's memory,
    # which is cheaper than the real thing. 1,250 pairs/s is 2,500 req/s, well above ours.
    return int(duration * 1250) + 100


def _share(side: dict[str, float], echo: dict[str, float]) -> float | None:
    return round(side["per_s"] / echo["per_s"], 3) if echo["per_s"] else None


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round whose ratio is the median (the lower one of an even count): its own
    figures, so the headline ratio is still ours.per_s / baseline.per_s of one run."""
    ranked = sorted(rounds, key=lambda r: r["ratio"] if r["ratio"] is not None else -1.0)
    return ranked[(len(ranked) - 1) // 2]


async def _measure(wallet_urls: tuple[str, str], echo_urls: tuple[str, str], pairs: list[Any],
                   concurrency: int, duration: float, rounds: int = 1,
                   floor_urls: tuple[str, str] | None = None,
                   counters: Callable[[], Awaitable[StageCounters]] | None = None) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    per_side = _pairs_per_side(duration)
    measured: list[dict[str, Any]] = []
    outcomes: dict[str, int] = {}
    async with aiohttp.ClientSession(connector=connector) as session:
        await _load(session, wallet_urls, pairs[:100], concurrency, 2.0)
        for n in range(rounds):
            mine = pairs[100 + n * per_side : 100 + (n + 1) * per_side]
            label = f" (round {n + 1} of {rounds})" if rounds > 1 else ""
            _progress(f"ours{label}: {concurrency} in flight for {duration:.0f} s")
            ours, ours_outcomes = await _load(session, wallet_urls, mine, concurrency, duration)
            for status, seen in ours_outcomes.items():
                outcomes[status] = outcomes.get(status, 0) + seen
            _progress(f"ours: {ours} {ours_outcomes}")
            floor = None
            if floor_urls is not None:
                # The floor's table has not seen these bodies; past 2,500 req/s it sees
                # some twice and skips their rows (ON CONFLICT), still committing.
                _progress(f"floor{label}: {concurrency} in flight for {duration:.0f} s")
                floor, floor_outcomes = await _load(session, floor_urls, mine, concurrency, duration, cycle=True)
                _progress(f"floor: {floor} {floor_outcomes}")
            _progress(f"echo{label}: {concurrency} in flight for {duration:.0f} s")
            echo, _ = await _load(session, echo_urls, mine, concurrency, duration, cycle=True)
            _progress(f"echo: {echo}")
            round_figures: dict[str, Any] = {"ours": ours, "baseline": echo, "ratio": _share(ours, echo)}
            if floor is not None:
                round_figures["floor"] = floor
                round_figures["floor_ratio"] = _share(floor, echo)
            measured.append(round_figures)
        headline = median_round(measured)
        half = headline["ours"]["per_s"] / 2
        _progress(f"ours at half its maximum rate ({half:.0f} req/s)")
        rest = pairs[100 + rounds * per_side :]
        before = await counters() if counters is not None else {}
        at_half, _ = await _load(session, wallet_urls, rest, concurrency, duration, rate=half)
        stages = stages_between(before, await counters()) if counters is not None else None
    result: dict[str, Any] = {
        "name": "wallet",
        "ours": headline["ours"],
        "baseline": headline["baseline"],
        "ratio": headline["ratio"],
        "ours_at_half_rate": at_half,
        "concurrency": concurrency,
        "duration_s": duration,
        "outcomes": outcomes,
        "targets": {"ratio": 0.8, "p99_ms_at_half_rate": 20.0},
    }
    if stages is not None:
        result["stages_at_half_rate"] = stages
    if floor_urls is not None:
        result["floor"] = headline["floor"]
        result["floor_ratio"] = headline["floor_ratio"]
    if rounds > 1:
        result["rounds"] = [
            {"ours_per_s": r["ours"]["per_s"], "baseline_per_s": r["baseline"]["per_s"], "ratio": r["ratio"],
             **({"floor_per_s": r["floor"]["per_s"], "floor_ratio": r["floor_ratio"]} if "floor" in r else {})}
            for r in measured
        ]
    return result
