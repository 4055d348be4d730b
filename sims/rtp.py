"""Simulated return to player of a paytable, set beside the exact figure of ``core.keno``.

How tickets are simulated: a batch draws ``D`` rounds and a pool of ``P`` random pick sets
and evaluates every (pick set, draw) pair: ``D·P`` tickets, ``P`` of them per draw, as in
a real round where many tickets share one draw. Every ticket's return has exactly the
paytable's distribution (for any fixed picks, a uniform draw gives hypergeometric hits).

Why the interval is honest: tickets sharing a draw are not treated as independent.
The independent unit is the *draw*: given the pick pool, the ``D`` draws are i.i.d. and
each draw's mean return has expectation exactly the RTP whatever the picks, so the 99%
interval is built from the per-draw means (``mean ± z·s/√draws``), with ``s`` their
sample standard deviation. Its ``design_effect`` (variance of the per-draw mean relative
to independent tickets) shows how much sharing a draw costs; it stays near 1 because
independent random picks make the tickets of one draw uncorrelated on average.

What the interval cannot see: a prize rarer than the run (the 10-spot top prize is 1 in
8.9 million) is usually absent from the sample, and then the sample variance understates
the truth. ``ci_reliable`` is false when outcomes expected fewer than 10 times in the run
carry more than 10% of the exact variance, with ``tickets_for_reliable_ci`` saying how
many tickets would be enough.

Determinism: batch ``i`` of a table with ``spots`` spots is seeded by
``SeedSequence(seed, spawn_key=(spots, i))`` and the batch layout depends only on the
ticket count, so any number of workers gives bit-identical results.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from core.keno import Paytable, PaytableSet
from sims import SimulationError
from sims.bitmask import hits_matrix, random_subsets
from sims.runner import Progress, run_batches, seed_sequence
from sims.stats import Z_99, Moments, json_interval, tickets_for_precision

__all__ = [
    "DEFAULT_TICKETS_PER_DRAW",
    "PRECISION",
    "RtpBatch",
    "RtpBatchResult",
    "RtpReport",
    "RtpTableResult",
    "plan_batches",
    "simulate_rtp",
    "simulate_rtp_batch",
]

#: Tickets evaluated against each simulated draw.
DEFAULT_TICKETS_PER_DRAW = 256
#: The precision ``tickets_for_precision`` is quoted for: ±0.1 percentage point of RTP.
PRECISION = 0.001
# Draws per vectorised step: 1,024 draws x 256 tickets keeps the hit matrix (256 kB) and
# its bincount keys in cache-friendly sizes; larger steps measured no faster.
_CHUNK_DRAWS = 1024
# Batch size bounds in draws (x 256 tickets): a batch of 16,384 draws takes ~25 ms here,
# so Ray's per-task overhead (~1 ms) stays small, and at most 65,536 keeps progress lively.
_MIN_BATCH_DRAWS = 16_384
_MAX_BATCH_DRAWS = 65_536
# An outcome seen fewer times than this in a run is too rare for the sample variance.
_RELIABLE_COUNT = 10
_RELIABLE_SHARE = 0.10
# Fewer independent draws than this give no interval: the normal approximation of the
# per-draw means would be a guess.
_MIN_DRAWS_FOR_CI = 30


@dataclass(frozen=True)
class RtpBatch:
    """One Ray task's work: ``draws`` draws x ``tickets_per_draw`` tickets of one table."""

    seed: int
    spots: int
    index: int
    draws: int
    tickets_per_draw: int
    multipliers: tuple[float, ...]
    pool: int = 80
    drawn: int = 20

    @property
    def tickets(self) -> int:
        return self.draws * self.tickets_per_draw


@dataclass(frozen=True)
class RtpBatchResult:
    hit_counts: tuple[int, ...]
    draw_means: Moments
    chunk_returns: tuple[float, ...]
    chunk_tickets: tuple[int, ...]
    seconds: float


def simulate_rtp_batch(batch: RtpBatch) -> RtpBatchResult:
    """Evaluate one batch (runs inside a Ray task, or in process with ``workers=0``)."""
    started = time.perf_counter()
    rng = np.random.Generator(np.random.PCG64(seed_sequence(batch.seed, batch.spots, batch.index)))
    per_draw = batch.tickets_per_draw
    outcomes = batch.spots + 1
    picks = random_subsets(rng, per_draw, batch.spots, batch.pool)
    draws = random_subsets(rng, batch.draws, batch.drawn, batch.pool)
    table = np.asarray(batch.multipliers, dtype=np.float64)
    # Row r's hit count h becomes bin r·outcomes + h: one bincount yields every draw's hit
    # histogram, from which both the per-draw return and the exact hit totals follow.
    offsets = (np.arange(_CHUNK_DRAWS, dtype=np.intp) * outcomes)[:, None]
    hit_counts = np.zeros(outcomes, dtype=np.int64)
    moments = Moments()
    chunk_returns: list[float] = []
    chunk_tickets: list[int] = []
    for start in range(0, batch.draws, _CHUNK_DRAWS):
        chunk = draws[start : start + _CHUNK_DRAWS]
        rows = len(chunk)
        keys = hits_matrix(chunk, picks) + offsets[:rows]
        counts = np.bincount(keys.ravel(), minlength=rows * outcomes).reshape(rows, outcomes)
        returns = counts @ table
        moments = moments.merge(Moments.of(returns / per_draw))
        hit_counts += counts.sum(axis=0)
        chunk_returns.append(float(returns.sum()))
        chunk_tickets.append(rows * per_draw)
    return RtpBatchResult(
        hit_counts=tuple(int(c) for c in hit_counts),
        draw_means=moments,
        chunk_returns=tuple(chunk_returns),
        chunk_tickets=tuple(chunk_tickets),
        seconds=time.perf_counter() - started,
    )


def plan_batches(
    table: Paytable, *, tickets: int, seed: int, tickets_per_draw: int
) -> list[RtpBatch]:
    """The batches simulating at least ``tickets`` tickets (whole draws) of ``table``."""
    if tickets < 1:
        raise SimulationError(f"tickets must be >= 1, got {tickets}")
    if tickets_per_draw < 1:
        raise SimulationError(f"tickets per draw must be >= 1, got {tickets_per_draw}")
    total_draws = math.ceil(tickets / tickets_per_draw)
    per_batch = min(_MAX_BATCH_DRAWS, max(_MIN_BATCH_DRAWS, math.ceil(total_draws / 16)))
    multipliers = tuple(float(m) for m in table.multipliers())
    batches = []
    for index, start in enumerate(range(0, total_draws, per_batch)):
        batches.append(
            RtpBatch(
                seed=seed,
                spots=table.spots,
                index=index,
                draws=min(per_batch, total_draws - start),
                tickets_per_draw=tickets_per_draw,
                multipliers=multipliers,
                pool=table.game.pool,
                drawn=table.game.drawn,
            )
        )
    return batches


@dataclass(frozen=True)
class RtpTableResult:
    """Simulated against exact figures for one paytable."""

    spots: int
    tickets: int
    draws: int
    tickets_per_draw: int
    exact_rtp: Fraction
    simulated_rtp: Fraction
    ci99: tuple[float, float]
    exact_sd: float
    design_effect: float
    tickets_for_precision: int
    ci_reliable: bool
    tickets_for_reliable_ci: int
    hit_counts: tuple[int, ...]
    hit_probabilities: tuple[Fraction, ...]
    convergence: tuple[tuple[int, float], ...]

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.ci99[0]) and math.isfinite(self.ci99[1])

    @property
    def within_ci(self) -> bool:
        return self.ci99[0] <= float(self.exact_rtp) <= self.ci99[1]

    def to_json(self) -> dict[str, Any]:
        step = max(1, len(self.convergence) // 60)
        return {
            "spots": self.spots,
            "tickets": self.tickets,
            "draws": self.draws,
            "tickets_per_draw": self.tickets_per_draw,
            "exact_rtp": float(self.exact_rtp),
            "exact_rtp_fraction": str(self.exact_rtp),
            "simulated_rtp": float(self.simulated_rtp),
            "difference": float(self.simulated_rtp - self.exact_rtp),
            "ci99": json_interval(self.ci99),
            "within_ci": self.within_ci if self.has_ci else None,
            "exact_sd": self.exact_sd,
            "design_effect": self.design_effect,
            "tickets_for_precision": self.tickets_for_precision,
            "precision": PRECISION,
            "ci_reliable": self.ci_reliable,
            "tickets_for_reliable_ci": self.tickets_for_reliable_ci,
            "hits": [
                {"hits": h, "count": c, "frequency": c / self.tickets, "exact": float(p)}
                for h, (c, p) in enumerate(zip(self.hit_counts, self.hit_probabilities, strict=True))
            ],
            "convergence": [list(point) for point in
                            (*self.convergence[:-1:step], self.convergence[-1])],
        }


@dataclass(frozen=True)
class RtpReport:
    seed: int
    workers: int
    seconds: float
    tables: tuple[RtpTableResult, ...] = field(default_factory=tuple)

    @property
    def tickets(self) -> int:
        return sum(t.tickets for t in self.tables)

    def to_json(self) -> dict[str, Any]:
        return {
            "command": "rtp",
            "seed": self.seed,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "tickets": self.tickets,
            "tickets_per_s": self.tickets / self.seconds if self.seconds > 0 else None,
            "confidence": 0.99,
            "tables": [t.to_json() for t in self.tables],
        }


def _reliability(table: Paytable, tickets: int) -> tuple[bool, int]:
    """Whether outcomes too rare for this run carry a material share of the variance."""
    mean = table.rtp()
    variance = table.variance()
    if variance == 0:
        return True, 0
    rare_share = Fraction(0)
    needed = 0
    for m, p in zip(table.multipliers(), table.probabilities(), strict=True):
        share = (m - mean) ** 2 * p / variance
        if p > 0 and share > Fraction(1, 1000):
            needed = max(needed, math.ceil(_RELIABLE_COUNT / p))
        if p > 0 and tickets * p < _RELIABLE_COUNT:
            rare_share += share
    return rare_share <= _RELIABLE_SHARE, needed


def _summarise(table: Paytable, batches: list[RtpBatch], results: list[RtpBatchResult]) -> RtpTableResult:
    outcomes = table.spots + 1
    hit_counts = [0] * outcomes
    moments = Moments()
    convergence: list[tuple[int, float]] = []
    seen_tickets = 0
    seen_return = 0.0
    for result in results:  # batch order: the reduction is identical for any worker count
        hit_counts = [a + b for a, b in zip(hit_counts, result.hit_counts, strict=True)]
        moments = moments.merge(result.draw_means)
        for returned, tickets in zip(result.chunk_returns, result.chunk_tickets, strict=True):
            seen_tickets += tickets
            seen_return += returned
            convergence.append((seen_tickets, seen_return / seen_tickets))
    tickets = sum(b.tickets for b in batches)
    per_draw = batches[0].tickets_per_draw
    multipliers = table.multipliers()
    simulated = sum(
        (Fraction(c) * m for c, m in zip(hit_counts, multipliers, strict=True)), Fraction(0)
    ) / tickets
    exact_variance = float(table.variance())
    design_effect = moments.variance * per_draw / exact_variance if exact_variance else 1.0
    reliable, needed = _reliability(table, tickets)
    return RtpTableResult(
        spots=table.spots,
        tickets=tickets,
        draws=moments.count,
        tickets_per_draw=per_draw,
        exact_rtp=table.rtp(),
        simulated_rtp=simulated,
        ci99=moments.mean_interval(Z_99) if moments.count >= _MIN_DRAWS_FOR_CI
        else (-math.inf, math.inf),
        exact_sd=table.sd(),
        design_effect=design_effect,
        tickets_for_precision=tickets_for_precision(table.sd(), PRECISION),
        ci_reliable=reliable,
        tickets_for_reliable_ci=needed,
        hit_counts=tuple(hit_counts),
        hit_probabilities=table.probabilities(),
        convergence=tuple(_thin(convergence)),
    )


def _thin(points: list[tuple[int, float]], keep: int = 400) -> list[tuple[int, float]]:
    """About ``keep`` points spread evenly on a log scale of tickets (for plots and JSON)."""
    if len(points) <= keep:
        return points
    positions = np.unique(np.geomspace(1, len(points), keep).astype(np.int64) - 1)
    return [points[int(i)] for i in positions]


def simulate_rtp(
    tables: PaytableSet,
    *,
    tickets: int,
    seed: int = 0,
    spots: int | None = None,
    workers: int = 0,
    tickets_per_draw: int = DEFAULT_TICKETS_PER_DRAW,
    progress: bool = False,
) -> RtpReport:
    """Simulate ``tickets`` tickets of every table (or only ``spots``) and compare with exact.

    ``workers`` Ray tasks run at once (Ray must be initialised); 0 runs in this process.
    """
    chosen = [tables.for_spots(spots)] if spots is not None else [
        tables.tables[s] for s in tables.spots
    ]
    plans = [plan_batches(t, tickets=tickets, seed=seed, tickets_per_draw=tickets_per_draw)
             for t in chosen]
    everything = [b for plan in plans for b in plan]
    bar = Progress(sum(b.tickets for b in everything), "tickets", enabled=progress)
    started = time.perf_counter()
    results = run_batches(
        simulate_rtp_batch, everything, workers=workers, progress=bar, weight=lambda b: b.tickets
    )
    bar.close()
    seconds = time.perf_counter() - started
    summaries = []
    offset = 0
    for table, plan in zip(chosen, plans, strict=True):
        summaries.append(_summarise(table, plan, results[offset : offset + len(plan)]))
        offset += len(plan)
    return RtpReport(seed=seed, workers=workers, seconds=seconds, tables=tuple(summaries))
