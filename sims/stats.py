"""The few statistics the simulations report, written out so their assumptions are visible."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "Z_99",
    "Moments",
    "json_interval",
    "quantile_with_interval",
    "tickets_for_precision",
    "wilson_interval",
]

#: Two-sided 99% quantile of the standard normal distribution.
Z_99 = 2.5758293035489004


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations of a sample (Welford/Chan form).

    Merging two ``Moments`` is exact up to float rounding and, done in a fixed order,
    bit-for-bit reproducible: the reason the simulations merge batches in batch order,
    never in completion order.
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: npt.ArrayLike) -> Moments:
        array = np.asarray(values, dtype=np.float64)
        if array.size == 0:
            return cls()
        mean = float(array.mean())
        return cls(int(array.size), mean, float(((array - mean) ** 2).sum()))

    def merge(self, other: Moments) -> Moments:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
        return Moments(count, mean, m2)

    @property
    def variance(self) -> float:
        """Unbiased sample variance (0 for fewer than two values)."""
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0

    def mean_interval(self, z: float = Z_99) -> tuple[float, float]:
        """Normal-approximation interval for the mean, valid for independent values."""
        if self.count < 2:
            return (-math.inf, math.inf)
        half = z * math.sqrt(self.variance / self.count)
        return (self.mean - half, self.mean + half)


def json_interval(interval: tuple[float, float]) -> list[float | None]:
    """An interval for JSON: an unbounded end (too few samples) becomes ``null``."""
    return [value if math.isfinite(value) else None for value in interval]


def tickets_for_precision(sd: float, epsilon: float, z: float = Z_99) -> int:
    """Tickets needed so the interval's half-width is ``epsilon``: ``(z·sd/ε)²``, rounded up."""
    return math.ceil((z * sd / epsilon) ** 2)


def wilson_interval(successes: int, trials: int, z: float = Z_99) -> tuple[float, float]:
    """Wilson score interval for a proportion: sane even at 0 or ``trials`` successes."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def quantile_with_interval(
    sorted_values: npt.NDArray[np.int64], q: float, z: float = Z_99
) -> tuple[int, int, int]:
    """The ``q`` quantile of sorted integers, with a distribution-free 99% interval.

    The number of values below the true quantile is Binomial(n, q), so order statistics
    at ranks ``n·q ∓ z·sqrt(n·q·(1-q))`` bracket it with about 99% confidence, whatever
    the distribution: no normality is assumed about the payouts themselves.
    """
    n = int(sorted_values.shape[0])
    if n == 0:
        return (0, 0, 0)
    rank = min(n - 1, max(0, math.ceil(n * q) - 1))
    spread = z * math.sqrt(n * q * (1 - q))
    low = max(0, math.floor(n * q - spread) - 1)
    high = min(n - 1, math.ceil(n * q + spread))
    return (int(sorted_values[rank]), int(sorted_values[low]), int(sorted_values[high]))
