"""``rgs bench sims``: Keno tickets evaluated per second per core, and scaling on Ray.

* **ours**: the simulation kernel of ``rgs sim rtp`` (``simulate_rtp_batch``) in this
  process, one core: random draws and picks *generated* and evaluated (bitmask AND,
  popcount, per-draw hit histograms). Latency figures are per batch.
* **baseline**: a pure-Python loop over the *same* tickets (the same draws and picks
  as Python ints) doing the same work: ``(draw & pick).bit_count()``, pay lookup,
  histogram. It is given the tickets ready-made, so the ratio is conservative; the
  evaluation-only figure of ours is reported next to it. Both sides' hit counts on the
  shared tickets are checked equal before any figure is reported.
* **scaling**: batches of the same kernel as Ray tasks on 1 worker and on
  ``--concurrency`` workers (default 2) with the same work per worker, alternated
  five times; speed-up = median N-worker rate / median 1-worker rate, efficiency =
  speed-up / N. The same measured with plain OS processes (no Ray) is reported beside
  it, to tell Ray's overhead from the machine's own limits.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sims import SimulationError
from sims.bitmask import hits_matrix, random_subsets
from sims.rtp import RtpBatch, simulate_rtp_batch
from sims.runner import ray_cluster, run_batches, seed_sequence

__all__ = ["child_main", "run_bench"]

# The 10-spot Michigan table (per unit stake); any table costs the same to evaluate.
_MULTIPLIERS = (5.0, 0.0, 0.0, 0.0, 0.0, 2.0, 10.0, 50.0, 500.0, 5000.0, 100000.0)
_SPOTS = 10
_PER_DRAW = 256
_OURS_DRAWS = 16_384       # 4.2M tickets per batch: ~20-40 ms vectorised
_BASELINE_DRAWS = 1024     # 262k tickets per batch: ~25-40 ms in pure Python
_RAY_DRAWS = 65_536        # 16.8M tickets per Ray task: ~100-200 ms, task overhead ~1 ms
_TRIALS = 5
TARGET_PER_CORE = 10_000_000
TARGET_EFFICIENCY = 0.85


def _batch(index: int, draws: int) -> RtpBatch:
    return RtpBatch(seed=2024, spots=_SPOTS, index=index, draws=draws,
                    tickets_per_draw=_PER_DRAW, multipliers=_MULTIPLIERS)


def _figures(tickets: int, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {
        "per_s": tickets / sum(latencies),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000,
    }


def _tickets_of(batch: RtpBatch, draws: int) -> tuple[list[int], list[int]]:
    """The batch's pick pool and first ``draws`` draws, exactly as the kernel makes them."""
    rng = np.random.Generator(np.random.PCG64(seed_sequence(batch.seed, batch.spots, batch.index)))
    picks = random_subsets(rng, batch.tickets_per_draw, batch.spots)
    drawn = random_subsets(rng, batch.draws, batch.drawn)[:draws]
    as_ints = [int(lo) | int(hi) << 64 for lo, hi in zip(picks.lo.tolist(), picks.hi.tolist(), strict=True)]
    draws_ints = [int(lo) | int(hi) << 64 for lo, hi in zip(drawn.lo.tolist(), drawn.hi.tolist(), strict=True)]
    return as_ints, draws_ints


def _python_evaluate(picks: list[int], draws: list[int]) -> tuple[list[int], float]:
    """The baseline: the same evaluation in a plain Python loop."""
    counts = [0] * (_SPOTS + 1)
    returned = 0.0
    for draw in draws:
        for pick in picks:
            hits = (draw & pick).bit_count()
            counts[hits] += 1
            returned += _MULTIPLIERS[hits]
    return counts, returned


def _vector_evaluate_only(batch: RtpBatch) -> tuple[float, int]:
    """Seconds to evaluate (not generate) one batch's tickets, and the ticket count."""
    rng = np.random.Generator(np.random.PCG64(seed_sequence(batch.seed, batch.spots, batch.index)))
    picks = random_subsets(rng, batch.tickets_per_draw, batch.spots)
    draws = random_subsets(rng, batch.draws, batch.drawn)
    table = np.asarray(batch.multipliers)
    outcomes = batch.spots + 1
    offsets = (np.arange(1024, dtype=np.intp) * outcomes)[:, None]
    started = time.perf_counter()
    for start in range(0, batch.draws, 1024):
        chunk = draws[start : start + 1024]
        keys = hits_matrix(chunk, picks) + offsets[: len(chunk)]
        counts = np.bincount(keys.ravel(), minlength=len(chunk) * outcomes).reshape(-1, outcomes)
        counts @ table
    return time.perf_counter() - started, batch.tickets


def _timed_loop(duration: float, step: Any) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline or len(latencies) < 3:
        started = time.perf_counter()
        step(len(latencies))
        latencies.append(time.perf_counter() - started)
    return latencies


def _cross_check() -> int:
    """Hit counts of the kernel and of the Python loop agree on the same tickets."""
    batch = _batch(0, _BASELINE_DRAWS)
    picks, draws = _tickets_of(batch, _BASELINE_DRAWS)
    python_counts, _ = _python_evaluate(picks, draws)
    if list(simulate_rtp_batch(batch).hit_counts) != python_counts:
        raise SimulationError("bench: vectorised and pure-Python hit counts differ")
    return batch.tickets


def _ray_rate(workers: int, batches: int) -> float:
    specs = [_batch(1000 + i, _RAY_DRAWS) for i in range(batches)]
    started = time.perf_counter()
    run_batches(simulate_rtp_batch, specs, workers=workers)
    return sum(s.tickets for s in specs) / (time.perf_counter() - started)


def _alternate(one: Callable[[], float], many: Callable[[], float]) -> tuple[list[float], list[float]]:
    """Alternate 1-worker and N-worker trials: the cores are shared with whatever else
    runs, and alternating spreads that noise over both sides; callers keep the medians."""
    ones: list[float] = []
    manys: list[float] = []
    for _ in range(_TRIALS):
        ones.append(one())
        manys.append(many())
    return ones, manys


def child_main(batches: int) -> None:
    """One plain OS process of the no-Ray control: warm up, wait for "go", time batches."""
    simulate_rtp_batch(_batch(800, _OURS_DRAWS))
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    for i in range(batches):
        simulate_rtp_batch(_batch(1000 + i, _RAY_DRAWS))
    print(time.perf_counter() - started, flush=True)


def _processes_rate(processes: int, batches: int) -> float:
    """Tickets/s of ``processes`` OS processes running ``batches`` batches each at once.

    Fresh interpreters started with exec (never fork: Ray's threads may already run here),
    released together once all have imported numpy and warmed up.
    """
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-c", f"import sims.bench as b; b.child_main({batches})"]
    children = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env=env) for _ in range(processes)]
    try:
        for child in children:
            if child.stdout is None or child.stdout.readline().strip() != "ready":
                raise SimulationError("bench: a control process failed to start")
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        slowest = max(float(child.communicate()[0]) for child in children)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return processes * batches * _RAY_DRAWS * _PER_DRAW / slowest


def _process_scaling(workers: int, tasks: int) -> tuple[float, list[float], list[float]]:
    """The same scaling with plain OS processes, no Ray: what the machine itself allows."""
    ones, manys = _alternate(lambda: _processes_rate(1, tasks), lambda: _processes_rate(workers, tasks))
    return statistics.median(manys) / statistics.median(ones) / workers, ones, manys


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    duration = float(args.duration) if args.duration else 3.0
    workers = int(args.concurrency) if args.concurrency else 2
    if duration <= 0 or workers < 2:
        raise SimulationError("bench sims: --duration must be > 0 and --concurrency >= 2")
    checked = _cross_check()

    ours_latencies = _timed_loop(duration, lambda i: simulate_rtp_batch(_batch(i, _OURS_DRAWS)))
    ours = _figures(len(ours_latencies) * _PER_DRAW * _OURS_DRAWS, ours_latencies)
    evaluation = [_vector_evaluate_only(_batch(i, _OURS_DRAWS)) for i in range(8)]
    evaluation_per_s = sum(t for _, t in evaluation) / sum(s for s, _ in evaluation)

    prepared = [_tickets_of(_batch(i, _BASELINE_DRAWS), _BASELINE_DRAWS) for i in range(4)]
    baseline_latencies = _timed_loop(duration, lambda i: _python_evaluate(*prepared[i % 4]))
    baseline = _figures(len(baseline_latencies) * _PER_DRAW * _BASELINE_DRAWS, baseline_latencies)

    per_task = _RAY_DRAWS * _PER_DRAW / ours["per_s"]
    tasks = max(2, round(max(0.5, duration / 4) / per_task))
    process_efficiency, process_one, process_many = _process_scaling(workers, tasks)
    with ray_cluster(getattr(args, "address", None)):
        # Warm-up: Ray starts worker processes lazily; do not time their start-up.
        run_batches(simulate_rtp_batch, [_batch(900 + i, _OURS_DRAWS) for i in range(2 * workers)],
                    workers=workers)
        trials_one, trials_many = _alternate(lambda: _ray_rate(1, tasks),
                                             lambda: _ray_rate(workers, tasks * workers))
    one = statistics.median(trials_one)
    many = statistics.median(trials_many)
    speedup = many / one
    efficiency = speedup / workers
    return {
        "name": "sims",
        "unit": "Keno tickets (10 spots, 20 of 80) evaluated",
        "ours": ours,
        "baseline": baseline,
        "ratio": ours["per_s"] / baseline["per_s"],
        "ours_batch_tickets": _OURS_DRAWS * _PER_DRAW,
        "baseline_batch_tickets": _BASELINE_DRAWS * _PER_DRAW,
        "ours_evaluation_only_per_s": evaluation_per_s,
        "evaluation_only_ratio": evaluation_per_s / baseline["per_s"],
        "cross_checked_tickets": checked,
        "ray_batch_tickets": _RAY_DRAWS * _PER_DRAW,
        "ray_1_worker_per_s": one,
        f"ray_{workers}_workers_per_s": many,
        "ray_trials": {"1": [round(x) for x in trials_one],
                       str(workers): [round(x) for x in trials_many]},
        "speedup": speedup,
        "scaling_efficiency": efficiency,
        "processes_scaling_efficiency": process_efficiency,
        "processes_trials": {"1": [round(x) for x in process_one],
                             str(workers): [round(x) for x in process_many]},
        "target_per_core_per_s": TARGET_PER_CORE,
        "target_efficiency": TARGET_EFFICIENCY,
        "per_core_target_met": ours["per_s"] >= TARGET_PER_CORE,
        "efficiency_target_met": efficiency >= TARGET_EFFICIENCY,
    }
