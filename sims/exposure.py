"""How much one round can cost the house: per-round payout of a ticket book.

All tickets of a round share one draw, so their payouts are correlated (a draw full of
popular numbers pays many tickets at once). The simulation therefore draws *rounds*:
each simulated round is one draw evaluated against the whole book, and the round, not
the ticket, is the independent unit of every statistic below.

* payouts: exact integer arithmetic (``Book.payout_table``, int64, overflow-checked);
* mean with a 99% interval over rounds; p99 and p99.9 with distribution-free 99%
  intervals from order statistics; the exact expected payout for comparison;
* aggregate cap: the house pays at most ``cap`` per round; how often that binds
  (Wilson 99% interval) and the mean payout after the cap;
* risk of ruin: paths of ``horizon_days × 8,640`` rounds (one every 10 s) resampled
  from the simulated rounds; the fraction of paths where ``bankroll + Σ(stakes − capped
  payouts)`` goes below zero. Resampling cannot invent rounds worse than the worst one
  simulated, so simulate enough rounds for the tail that matters.

Determinism: round batch ``i`` uses ``SeedSequence(seed, spawn_key=(100, i))`` and ruin
batch ``j`` uses ``(102, j)``; layouts depend only on the inputs, not on the workers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from sims import SimulationError
from sims.bitmask import Masks, hits_matrix, random_subsets
from sims.book import Book
from sims.runner import Progress, run_batches, seed_sequence
from sims.stats import Z_99, Moments, json_interval, quantile_with_interval, wilson_interval

__all__ = [
    "ROUNDS_PER_DAY",
    "BookArrays",
    "ExposureBatch",
    "ExposureReport",
    "RuinBatch",
    "exact_payout_distribution",
    "simulate_exposure",
    "simulate_exposure_batch",
    "simulate_ruin_batch",
]

#: A round every 10 seconds, wall-clock aligned (DESIGN.md, round lifecycle).
ROUNDS_PER_DAY = 8_640
_ROUNDS_STREAM = 100
_RUIN_STREAM = 102
# Ticket evaluations per vectorised step (hits matrix of 1 MB, gather keys of 8 MB).
_CHUNK_EVALUATIONS = 1 << 20
# Work per Ray task in ticket evaluations: ~30-200 ms here, far above task overhead.
_MIN_BATCH_EVALUATIONS = 1 << 22
_MAX_BATCH_EVALUATIONS = 1 << 25
_RUIN_BATCH_SAMPLES = 1 << 24
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class BookArrays:
    """The part of a book the Ray tasks need, shipped once through the object store."""

    picks: Masks
    payouts: npt.NDArray[np.int64]  # flattened payout_table, row-major
    width: int
    pool: int
    drawn: int


@dataclass(frozen=True)
class ExposureBatch:
    seed: int
    index: int
    rounds: int


def simulate_exposure_batch(batch: ExposureBatch, book: BookArrays) -> npt.NDArray[np.int64]:
    """Total payout of each of ``batch.rounds`` rounds, one shared draw per round."""
    rng = np.random.Generator(np.random.PCG64(seed_sequence(batch.seed, _ROUNDS_STREAM, batch.index)))
    tickets = len(book.picks)
    offsets = np.arange(tickets, dtype=np.intp) * book.width
    step = max(1, _CHUNK_EVALUATIONS // tickets)
    totals = np.empty(batch.rounds, dtype=np.int64)
    for start in range(0, batch.rounds, step):
        rows = min(step, batch.rounds - start)
        draws = random_subsets(rng, rows, book.drawn, book.pool)
        keys = hits_matrix(draws, book.picks) + offsets
        totals[start : start + rows] = book.payouts[keys].sum(axis=1)
    return totals


@dataclass(frozen=True)
class RuinBatch:
    seed: int
    index: int
    paths: int
    horizon: int
    bankroll: int


def simulate_ruin_batch(batch: RuinBatch, net: npt.NDArray[np.int64]) -> dict[str, Any]:
    """Bankroll paths resampled from per-round house results ``net`` (stakes − payouts)."""
    rng = np.random.Generator(np.random.PCG64(seed_sequence(batch.seed, _RUIN_STREAM, batch.index)))
    carry = np.zeros(batch.paths, dtype=np.int64)
    lowest = np.zeros(batch.paths, dtype=np.int64)
    block = max(1, (1 << 21) // batch.paths)
    for start in range(0, batch.horizon, block):
        length = min(block, batch.horizon - start)
        steps = net[rng.integers(0, net.shape[0], size=(batch.paths, length))]
        running = np.cumsum(steps, axis=1) + carry[:, None]
        np.minimum(lowest, running.min(axis=1), out=lowest)
        carry = running[:, -1]
    return {
        "ruined": int(np.count_nonzero(batch.bankroll + lowest < 0)),
        "final": carry,
        "lowest": lowest,
    }


def exact_payout_distribution(book: Book) -> list[tuple[int, Fraction]]:
    """Exact (payout, probability) pairs of a one-ticket book, ascending by payout."""
    if len(book) != 1:
        raise SimulationError("an exact payout distribution is computed for one-ticket books only")
    spots = int(book.spots[0])
    payouts = book.payout_table[0, : spots + 1].tolist()
    merged: dict[int, Fraction] = {}
    for payout, p in zip(payouts, book.tables.for_spots(spots).probabilities(), strict=True):
        if p > 0:
            merged[int(payout)] = merged.get(int(payout), Fraction(0)) + p
    return sorted(merged.items())


@dataclass(frozen=True)
class ExposureReport:
    book: Book
    seed: int
    workers: int
    seconds: float
    totals: npt.NDArray[np.int64]  # per-round payout before the cap, in round order
    cap: int | None
    ruin: dict[str, Any] | None

    @property
    def capped(self) -> npt.NDArray[np.int64]:
        return self.totals if self.cap is None else np.minimum(self.totals, self.cap)

    def to_json(self) -> dict[str, Any]:
        totals = self.totals
        ordered = np.sort(totals)
        rounds = int(totals.shape[0])
        moments = Moments.of(totals)
        stake = self.book.stake_per_round
        result: dict[str, Any] = {
            "command": "exposure",
            "seed": self.seed,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "rounds": rounds,
            "book": {
                "source": self.book.source,
                "tickets": len(self.book),
                "currency": self.book.currency,
                "stake_per_round_minor": stake,
                "spot_mix": {str(k): v for k, v in self.book.spot_mix().items()},
                "max_win_minor": self.book.max_win_minor,
                "max_payout_bound_minor": int(self.book.payout_table.max(axis=1).sum()),
            },
            "payout": {
                "exact_mean_minor": float(self.book.exact_mean_payout()),
                "mean_minor": moments.mean,
                "mean_ci99": json_interval(moments.mean_interval(Z_99)),
                "sd_minor": math.sqrt(moments.variance),
                "p50_minor": quantile_with_interval(ordered, 0.5)[0],
                "p99": _quantile_json(ordered, 0.99),
                "p999": _quantile_json(ordered, 0.999),
                "max_minor": int(ordered[-1]),
                "p_house_loses": float(np.count_nonzero(totals > stake) / rounds),
            },
            "cap": None,
            "ruin": self.ruin,
        }
        if self.cap is not None:
            binds = int(np.count_nonzero(totals > self.cap))
            result["cap"] = {
                "cap_minor": self.cap,
                "p_binds": binds / rounds,
                "p_binds_ci99": list(wilson_interval(binds, rounds)),
                "mean_capped_payout_minor": float(self.capped.mean()),
            }
        if len(self.book) == 1:
            values, counts = np.unique(totals, return_counts=True)
            seen = dict(zip(values.tolist(), counts.tolist(), strict=True))
            result["distribution"] = [
                {"payout_minor": v, "exact": float(p), "simulated": seen.get(v, 0) / rounds}
                for v, p in exact_payout_distribution(self.book)
            ]
        return result


def _quantile_json(ordered: npt.NDArray[np.int64], q: float) -> dict[str, Any]:
    value, low, high = quantile_with_interval(ordered, q)
    return {"value_minor": value, "ci99": [low, high]}


def _plan_rounds(rounds: int, tickets: int, seed: int) -> list[ExposureBatch]:
    smallest = math.ceil(_MIN_BATCH_EVALUATIONS / tickets)
    largest = max(smallest, _MAX_BATCH_EVALUATIONS // tickets)
    per_batch = min(rounds, max(smallest, min(largest, math.ceil(rounds / 16))))
    return [
        ExposureBatch(seed, index, min(per_batch, rounds - start))
        for index, start in enumerate(range(0, rounds, per_batch))
    ]


def _risk_of_ruin(
    net: npt.NDArray[np.int64], *, bankroll: int, days: float, paths: int, seed: int,
    workers: int, progress: bool,
) -> dict[str, Any]:
    horizon = math.ceil(days * ROUNDS_PER_DAY)
    if horizon < 1 or paths < 1:
        raise SimulationError("risk of ruin needs a horizon of at least one round and >= 1 path")
    worst_step = int(np.abs(net).max())
    if bankroll + horizon * worst_step > _INT64_MAX:
        raise SimulationError(
            "bankroll + horizon x largest round result exceeds int64; lower the bankroll or horizon"
        )
    per_batch = max(1, min(paths, _RUIN_BATCH_SAMPLES // horizon))
    batches = [
        RuinBatch(seed, index, min(per_batch, paths - start), horizon, bankroll)
        for index, start in enumerate(range(0, paths, per_batch))
    ]
    bar = Progress(paths * horizon, "path rounds", enabled=progress)
    outcomes = run_batches(simulate_ruin_batch, batches, workers=workers, progress=bar,
                           weight=lambda b: b.paths * b.horizon, shared=net)
    bar.close()
    ruined = sum(o["ruined"] for o in outcomes)
    final = bankroll + np.concatenate([o["final"] for o in outcomes])
    lowest = bankroll + np.concatenate([o["lowest"] for o in outcomes])
    return {
        "bankroll_minor": bankroll,
        "horizon_days": days,
        "horizon_rounds": horizon,
        "paths": paths,
        "method": "paths resampled from the simulated rounds (i.i.d. rounds, fixed book)",
        "p_ruin": ruined / paths,
        "p_ruin_ci99": list(wilson_interval(ruined, paths)),
        "final_bankroll_p01_minor": int(np.quantile(final, 0.01, method="inverted_cdf")),
        "final_bankroll_p50_minor": int(np.quantile(final, 0.5, method="inverted_cdf")),
        "lowest_bankroll_p01_minor": int(np.quantile(lowest, 0.01, method="inverted_cdf")),
    }


def simulate_exposure(
    book: Book,
    *,
    rounds: int,
    seed: int = 0,
    cap: int | None = None,
    bankroll: int | None = None,
    horizon_days: float | None = None,
    paths: int = 1000,
    workers: int = 0,
    progress: bool = False,
) -> ExposureReport:
    """Simulate ``rounds`` rounds of ``book``; with ``bankroll`` and ``horizon_days``, also
    the risk of ruin over that horizon. ``workers`` as in :func:`sims.runner.run_batches`."""
    if rounds < 1:
        raise SimulationError(f"rounds must be >= 1, got {rounds}")
    if cap is not None and not 0 <= cap <= _INT64_MAX:
        raise SimulationError(f"the aggregate cap must be 0..2**63-1 minor units, got {cap}")
    if (bankroll is None) != (horizon_days is None):
        raise SimulationError("risk of ruin needs both a bankroll and a horizon in days")
    if bankroll is not None and bankroll < 0:
        raise SimulationError(f"bankroll must be >= 0 minor units, got {bankroll}")
    if book.stake_per_round > _INT64_MAX:
        raise SimulationError("the book's stakes per round exceed int64; split the book")
    table = book.payout_table
    arrays = BookArrays(book.picks, table.ravel(), table.shape[1], book.tables.game.pool,
                        book.tables.game.drawn)
    batches = _plan_rounds(rounds, len(book), seed)
    bar = Progress(rounds, "rounds", enabled=progress)
    started = time.perf_counter()
    parts = run_batches(simulate_exposure_batch, batches, workers=workers, progress=bar,
                        weight=lambda b: b.rounds, shared=arrays)
    bar.close()
    totals = np.concatenate(parts)
    ruin = None
    if bankroll is not None and horizon_days is not None:
        capped = totals if cap is None else np.minimum(totals, cap)
        net = book.stake_per_round - capped
        ruin = _risk_of_ruin(net, bankroll=bankroll, days=horizon_days, paths=paths, seed=seed,
                             workers=workers, progress=progress)
    return ExposureReport(book, seed, workers, time.perf_counter() - started, totals, cap, ruin)
