"""Tickets and draws as bitmasks over the pool, the representation of every hot loop.

Number ``n`` of ``1..pool`` is bit ``n - 1``. Pools of up to 80 numbers fit in two words:
``lo`` (``uint64``) holds numbers 1..64 and ``hi`` (``uint16``) numbers 65..80, so the
hits of a ticket against a draw are two ANDs and two popcounts::

    hits = bitwise_count(pick_lo & draw_lo) + bitwise_count(pick_hi & draw_hi)

Random subsets come from Floyd's algorithm run on whole arrays at once: exactly ``k``
vectorised steps, no rejection loop, every ``k``-subset equally likely. It measured
~0.55 µs per 20-of-80 draw here, against ~3.8 µs for ``argpartition`` of a random matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sims import SimulationError

__all__ = [
    "MAX_POOL",
    "Masks",
    "hits_matrix",
    "masks_from_numbers",
    "numbers_from_masks",
    "random_subsets",
    "weighted_subsets",
]

#: The largest pool two words (64 + 16 bits) can hold.
MAX_POOL = 80

# Bit of each number index (0-based) in each word; an index outside the word maps to 0, so
# ``lo |= LO_BIT[i]; hi |= HI_BIT[i]`` sets the right bit without branching.
_LO_BIT = np.array([1 << i if i < 64 else 0 for i in range(MAX_POOL)], dtype=np.uint64)
_HI_BIT = np.array([1 << (i - 64) if i >= 64 else 0 for i in range(MAX_POOL)], dtype=np.uint16)

U64Array = npt.NDArray[np.uint64]
U16Array = npt.NDArray[np.uint16]
U8Array = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Masks:
    """Many subsets of the pool: ``lo[i]``/``hi[i]`` are the two words of subset ``i``."""

    lo: U64Array
    hi: U16Array

    def __len__(self) -> int:
        return int(self.lo.shape[0])

    def __getitem__(self, index: slice) -> Masks:
        return Masks(self.lo[index], self.hi[index])

    def sizes(self) -> U8Array:
        """How many numbers each subset holds."""
        return np.bitwise_count(self.lo) + np.bitwise_count(self.hi)


def _check_pool(pool: int, k: int) -> None:
    if not 1 <= pool <= MAX_POOL:
        raise SimulationError(f"pool of {pool} numbers: simulations support pools of 1..{MAX_POOL}")
    if not 0 <= k <= pool:
        raise SimulationError(f"cannot choose {k} numbers out of a pool of {pool}")


def random_subsets(rng: np.random.Generator, count: int, k: int, pool: int = 80) -> Masks:
    """``count`` independent, uniformly random ``k``-subsets of ``1..pool`` (Floyd)."""
    _check_pool(pool, k)
    lo = np.zeros(count, dtype=np.uint64)
    hi = np.zeros(count, dtype=np.uint16)
    for j in range(pool - k, pool):
        # Floyd: take a uniform t in [0, j]; if t is already chosen take j instead (j is
        # never chosen before this step). Each k-subset ends up with probability 1/C(pool, k).
        t = rng.integers(0, j + 1, size=count, dtype=np.uint8)
        taken = ((lo & _LO_BIT[t]) != 0) | ((hi & _HI_BIT[t]) != 0)
        chosen = np.where(taken, np.uint8(j), t)
        lo |= _LO_BIT[chosen]
        hi |= _HI_BIT[chosen]
    return Masks(lo, hi)


def weighted_subsets(
    rng: np.random.Generator, count: int, k: int, weights: Sequence[float]
) -> Masks:
    """``count`` ``k``-subsets drawn without replacement with probability ∝ ``weights``.

    Gumbel top-k: adding Gumbel noise to ``log(weight)`` and keeping the ``k`` largest
    keys is exactly successive sampling without replacement. Used for synthetic books
    (popular numbers), not on a hot path.
    """
    pool = len(weights)
    _check_pool(pool, k)
    log_w = np.log(np.asarray(weights, dtype=np.float64))
    if not np.all(np.isfinite(log_w)):
        raise SimulationError("number weights must all be positive and finite")
    lo = np.zeros(count, dtype=np.uint64)
    hi = np.zeros(count, dtype=np.uint16)
    # Rows in chunks so a million players do not need an 80-million-key matrix at once.
    for start in range(0, count, 65_536):
        rows = min(65_536, count - start)
        keys = log_w[None, :] + rng.gumbel(size=(rows, pool))
        top = np.argpartition(-keys, k - 1, axis=1)[:, :k] if k else np.empty((rows, 0), int)
        lo[start : start + rows] = np.bitwise_or.reduce(_LO_BIT[top], axis=1)
        hi[start : start + rows] = np.bitwise_or.reduce(_HI_BIT[top], axis=1)
    return Masks(lo, hi)


def masks_from_numbers(subsets: Iterable[Iterable[int]], pool: int = 80) -> Masks:
    """Masks of explicit subsets of ``1..pool`` (assumed validated and distinct)."""
    _check_pool(pool, 0)
    los: list[int] = []
    his: list[int] = []
    for numbers in subsets:
        bits = 0
        for n in numbers:
            bits |= 1 << (n - 1)
        los.append(bits & 0xFFFF_FFFF_FFFF_FFFF)
        his.append(bits >> 64)
    return Masks(np.array(los, dtype=np.uint64), np.array(his, dtype=np.uint16))


def numbers_from_masks(masks: Masks) -> list[tuple[int, ...]]:
    """The sorted numbers of each subset (for tests and reports)."""
    result = []
    for lo, hi in zip(masks.lo.tolist(), masks.hi.tolist(), strict=True):
        bits = int(lo) | (int(hi) << 64)
        result.append(tuple(i + 1 for i in range(MAX_POOL) if bits >> i & 1))
    return result


def hits_matrix(draws: Masks, picks: Masks) -> U8Array:
    """``hits[d, t]``: how many numbers of ticket ``t`` draw ``d`` hit (every pair)."""
    return np.bitwise_count(draws.lo[:, None] & picks.lo[None, :]) + np.bitwise_count(
        draws.hi[:, None] & picks.hi[None, :]
    )
