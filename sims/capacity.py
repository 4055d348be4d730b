"""How much hardware a load needs: sizing search and load sweeps over the system model.

``plan_capacity`` evaluates a deployment (replicas, shards) with the discrete-event model
of :mod:`sims.system_model` and, for counts not given, searches the smallest ones whose
simulated p99 bet latency meets the target while every resource stays below 95%
utilisation: grow the stage with the largest p99 by 25% until the target is met, then
bisect each count back down. Nodes follow from the CPUs of replicas, shards, round
schedulers and the Ray head (``deployment`` in the service-times file).

``sweep_capacity`` runs one scenario per (load, shard count) as parallel Ray tasks and
reports p99 against load: where the knee is and how much headroom a deployment has.

The model's figures are predictions from the service times it is given; see
``sims/data/service_times.json`` for where each default comes from.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sims import SimulationError
from sims.runner import Progress, run_batches
from sims.service import CapacityConfig
from sims.system_model import Scenario, simulate_system
from sims.workload import mean_window_rate

__all__ = ["SWEEP_LOADS", "CapacityReport", "plan_capacity", "simulate_scenario", "sweep_capacity"]

#: Load multipliers of a sweep, relative to the planned load.
SWEEP_LOADS = (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
_MAX_STEPS = 40
_TARGET_UTILIZATION = 0.7


def simulate_scenario(scenario: Scenario, config: CapacityConfig) -> dict[str, Any]:
    """One simulation (the unit of work of a Ray task in a sweep)."""
    return simulate_system(scenario, config)


def _meets(result: dict[str, Any], target_ms: float) -> bool:
    return bool(result["stable"]) and result["latency_ms"]["p99"] <= target_ms


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "replicas": result["replicas"],
        "shards": result["shards"],
        "p99_ms": result["latency_ms"]["p99"],
        "stable": result["stable"],
        "utilization": result["utilization"],
    }


@dataclass(frozen=True)
class CapacityReport:
    inputs: dict[str, Any]
    evaluated: dict[str, Any]
    recommendation: dict[str, Any]
    search: list[dict[str, Any]]
    daily_profile: list[dict[str, Any]]
    sweep: list[dict[str, Any]] | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "capacity",
            "inputs": self.inputs,
            "recommendation": self.recommendation,
            "evaluated": self.evaluated,
            "search": self.search,
            "daily_profile": self.daily_profile,
            "sweep": self.sweep,
            "seconds": round(self.seconds, 3),
        }


def _grow(value: int, limit: int) -> int:
    return min(limit, max(value + 1, math.ceil(value * 1.25)))


def _smallest(
    low: int, high: int, evaluate: Callable[[int], dict[str, Any]], target_ms: float
) -> tuple[int, dict[str, Any] | None]:
    """Smallest count in ``(low, high]`` that meets the target (``high`` is known to)."""
    best: dict[str, Any] | None = None
    while high - low > 1:
        middle = (low + high) // 2
        result = evaluate(middle)
        if _meets(result, target_ms):
            high, best = middle, result
        else:
            low = middle
    return high, best


def plan_capacity(
    *,
    players: int,
    bets_per_minute: float,
    tables: int,
    config: CapacityConfig,
    target_p99_ms: float,
    replicas: int | None = None,
    shards: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> CapacityReport:
    """Evaluate the given counts, searching the smallest ones for counts left ``None``."""
    if not target_p99_ms > 0:
        raise SimulationError(f"target p99 must be > 0 ms, got {target_p99_ms}")
    started = time.perf_counter()
    s, w, d = config.service, config.workload, config.deployment
    window_rate = mean_window_rate(players * bets_per_minute / 60.0, w)
    command_rate = window_rate * (1.0 + w.win_fraction)
    request_rate = window_rate if w.settlement else command_rate
    # Start where the mean utilisation would be 70%: below that the target cannot be met.
    r = replicas or min(d.max_replicas, max(1, math.ceil(
        request_rate * s.serve_request.mean_ms / 1000 / _TARGET_UTILIZATION)))
    k = shards or min(d.max_shards, max(1, math.ceil(
        command_rate * s.command.mean_ms / 1000 / _TARGET_UTILIZATION)))
    search: list[dict[str, Any]] = []

    def evaluate(replica_count: int, shard_count: int) -> dict[str, Any]:
        result = simulate_system(Scenario(players, bets_per_minute, tables, replica_count,
                                          shard_count, seed), config)
        search.append(_brief(result))
        if progress:
            print(f"capacity: {replica_count} replicas, {shard_count} shards -> p99 "
                  f"{result['latency_ms']['p99']:.1f} ms{'' if result['stable'] else ' (saturated)'}",
                  file=sys.stderr, flush=True)
        return result

    reason = ""
    result = evaluate(r, k)
    met = _meets(result, target_p99_ms)
    steps = 0
    while not met and steps < _MAX_STEPS:
        steps += 1
        stages = result["stage_p99_ms"]
        if result["utilization"]["db"] >= 0.95 or command_rate > 0.95 * s.db_capacity_per_s():
            reason = (f"database-bound: ~{command_rate:,.0f} commands/s against a commit capacity of "
                      f"~{s.db_capacity_per_s():,.0f}/s with full groups")
            break
        if result["utilization"]["adapter_max"] >= 0.95 or stages["adapter"] >= target_p99_ms:
            reason = (f"adapter-bound: one ProviderAdapter actor per provider ({s.providers}) and "
                      f"~{request_rate / s.providers:,.0f} requests/s each at "
                      f"{s.adapter_request.mean_ms:g} ms of adapter CPU; replicas and shards cannot help")
            break
        replica_heavy = stages["replica"] >= stages["coalesce_and_shard"] + stages["group_commit"]
        can_r = replicas is None and r < d.max_replicas
        can_k = shards is None and k < d.max_shards
        if not (can_r or can_k):
            reason = "the counts given (or the maximum counts) cannot meet the target"
            break
        if (replica_heavy and can_r) or not can_k:
            r = _grow(r, d.max_replicas)
        else:
            k = _grow(k, d.max_shards)
        result = evaluate(r, k)
        met = _meets(result, target_p99_ms)
    if not met and not reason:
        reason = f"not met within {_MAX_STEPS} search steps"
    if met:
        # Bisect each count back down: growth steps of 25% overshoot.
        if replicas is None:
            r, better = _smallest(0, r, lambda n: evaluate(n, k), target_p99_ms)
            result = better or result
        if shards is None:
            k, better = _smallest(0, k, lambda n: evaluate(r, n), target_p99_ms)
            result = better or result
    recommendation = {
        "target_p99_ms": target_p99_ms,
        "feasible": met,
        "replicas": r,
        "shards": k,
        "nodes": d.nodes(replicas=r, shards=k, tables=tables),
        "cores_per_node": d.cores_per_node,
        "p99_ms": result["latency_ms"]["p99"],
        "reason": reason or "p99 within target and every resource below 95% utilization",
    }
    inputs = {
        "players": players,
        "bets_per_minute": bets_per_minute,
        "tables": tables,
        "target_p99_ms": target_p99_ms,
        "seed": seed,
        "window_s": w.window_seconds,
        "sources": list(config.sources),
    }
    return CapacityReport(inputs, result, recommendation, search,
                          _daily_profile(result, players * bets_per_minute / 60.0, config),
                          None, time.perf_counter() - started)


def _daily_profile(result: dict[str, Any], mean_rate: float, config: CapacityConfig) -> list[dict[str, Any]]:
    """Hourly rates of the daily cycle and utilisations scaled linearly from the window."""
    w = config.workload
    scale = result["bets_per_s_window"]
    profile = []
    for hour in range(24):
        rate = mean_rate * (1 + w.daily_amplitude * math.cos(2 * math.pi * (hour - w.peak_hour) / 24))
        factor = rate / scale if scale else 0.0
        profile.append({
            "hour": hour,
            "bets_per_s": rate,
            "replica_utilization": result["utilization"]["replica_mean"] * factor,
            "shard_utilization": result["utilization"]["shard_mean"] * factor,
            "db_utilization": result["utilization"]["db"] * factor,
        })
    return profile


def sweep_capacity(
    report: CapacityReport,
    *,
    config: CapacityConfig,
    workers: int,
    loads: Sequence[float] = SWEEP_LOADS,
    progress: bool = False,
) -> CapacityReport:
    """p99 against load for the recommended counts, with shards x1 and x2, as Ray tasks."""
    inputs, rec = report.inputs, report.recommendation
    base = Scenario(inputs["players"], inputs["bets_per_minute"], inputs["tables"],
                    rec["replicas"], rec["shards"], inputs["seed"])
    scenarios = [
        replace(base, players=max(1, round(base.players * load)), shards=shard_count)
        for shard_count in sorted({base.shards, min(2 * base.shards, config.deployment.max_shards)})
        for load in loads
    ]
    bar = Progress(len(scenarios), "scenarios", enabled=progress)
    results = run_batches(simulate_scenario, scenarios, workers=workers, progress=bar,
                          shared=config)
    bar.close()
    sweep = []
    for scenario, result in zip(scenarios, results, strict=True):
        sweep.append({
            "load": scenario.players / base.players,
            "players": scenario.players,
            "replicas": scenario.replicas,
            "shards": scenario.shards,
            "bets_per_s_window": result["bets_per_s_window"],
            "p99_ms": result["latency_ms"]["p99"],
            "p50_ms": result["latency_ms"]["p50"],
            "stable": result["stable"],
            "utilization": result["utilization"],
        })
    return replace(report, sweep=sweep)
