"""When bets arrive: a daily cycle, the rush before each round closes, and a burst.

The bet rate at time ``t`` (seconds into the simulated window) is::

    rate(t) = mean · daily(t) · round_shape(t mod round) · burst(t)

* ``daily``: ``1 + A·cos(2π(t_day − peak)/86,400)``, mean 1 over a day, so ``mean`` is
  the daily average ``players × bets_per_minute / 60``. The window starts at the peak.
* ``round_shape``: bets are taken while a round is open (its first ``round − close``
  seconds); the density grows linearly to ``close_rush`` times its opening value just
  before the close, and is zero while the round is closed. Mean 1 over a round.
* ``burst``: ``burst_multiplier`` during ``burst_seconds`` in the middle of the part of
  the window that is measured (after warm-up): a promotion or a jackpot rush.

So the simulated window is the busiest time of the day with a burst in it: the case to
size for. Arrivals are a non-homogeneous Poisson process, drawn by thinning.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from sims.service import Workload

__all__ = ["arrival_times", "mean_window_rate", "paced_bursts", "peak_rate", "rate_at"]


def _burst_span(w: Workload) -> tuple[float, float]:
    middle = w.warmup_seconds + (w.window_seconds - w.warmup_seconds) / 2
    return (middle - w.burst_seconds / 2, middle + w.burst_seconds / 2)


def rate_at(times: npt.NDArray[np.float64], mean_rate: float, w: Workload) -> npt.NDArray[np.float64]:
    """Bets per second at each time of ``times`` (seconds into the window)."""
    # The window starts at the daily peak, so the cycle's phase is just ``times``.
    daily = 1.0 + w.daily_amplitude * np.cos(2 * math.pi * times / 86_400.0)
    open_seconds = w.round_seconds - w.close_seconds
    phase = np.mod(times, w.round_seconds)
    # Linear density a..b over the open part with b = rush·a and mean 1 over the round.
    start = 2.0 * w.round_seconds / (open_seconds * (1.0 + w.close_rush))
    ramp = start * (1.0 + (w.close_rush - 1.0) * phase / open_seconds)
    shape = np.where(phase < open_seconds, ramp, 0.0)
    low, high = _burst_span(w)
    burst = np.where((times >= low) & (times < high), w.burst_multiplier, 1.0)
    result: npt.NDArray[np.float64] = mean_rate * daily * shape * burst
    return result


def peak_rate(mean_rate: float, w: Workload) -> float:
    """An upper bound of ``rate_at`` over the window (for thinning and sizing)."""
    open_seconds = w.round_seconds - w.close_seconds
    start = 2.0 * w.round_seconds / (open_seconds * (1.0 + w.close_rush))
    return mean_rate * (1.0 + w.daily_amplitude) * start * max(1.0, w.close_rush) * w.burst_multiplier


def mean_window_rate(mean_rate: float, w: Workload) -> float:
    """Average bets per second over the window (numerically, on a 10 ms grid)."""
    grid = np.arange(0.0, w.window_seconds, 0.01) + 0.005
    return float(rate_at(grid, mean_rate, w).mean())


def arrival_times(rng: np.random.Generator, mean_rate: float, w: Workload) -> npt.NDArray[np.float64]:
    """Sorted bet arrival times in ``[0, window)``, by thinning a Poisson process."""
    bound = peak_rate(mean_rate, w)
    candidates = np.sort(rng.uniform(0.0, w.window_seconds, size=rng.poisson(bound * w.window_seconds)))
    keep = rng.uniform(0.0, bound, size=candidates.shape[0]) < rate_at(candidates, mean_rate, w)
    result: npt.NDArray[np.float64] = candidates[keep]
    return result


def paced_bursts(rate: float, workers: int, w: Workload) -> npt.NDArray[np.float64]:
    """Send times of ``workers`` paced workers started together at ``rate`` requests/s in
    all: every one sends at once, every ``workers / rate`` seconds (the bursts repeat
    exactly while each answer comes back within that period)."""
    period = workers / rate
    result: npt.NDArray[np.float64] = np.arange(0.0, w.window_seconds, period)
    return result
