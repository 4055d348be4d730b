"""Bitmask tickets and draws: exact hits, uniform random subsets, agreement with core."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.fairness import draw
from core.keno import count_hits
from sims import SimulationError
from sims.bitmask import (
    hits_matrix,
    masks_from_numbers,
    numbers_from_masks,
    random_subsets,
    weighted_subsets,
)


def test_masks_round_trip_across_both_words() -> None:
    subsets = [(1,), (64,), (65,), (80,), (1, 2, 63, 64, 65, 79, 80), tuple(range(1, 81))]
    assert numbers_from_masks(masks_from_numbers(subsets)) == subsets


def test_random_subsets_have_k_distinct_numbers_and_are_uniform() -> None:
    rng = np.random.default_rng(7)
    masks = random_subsets(rng, 200_000, 20)
    assert set(masks.sizes().tolist()) == {20}
    # Each number is drawn with probability 20/80; 200k draws put every frequency within
    # 5 standard deviations of 1/4.
    counts = np.zeros(80)
    for number in range(80):
        word, bit = (masks.lo, number) if number < 64 else (masks.hi, number - 64)
        counts[number] = np.count_nonzero(word & word.dtype.type(1 << bit))
    frequency = counts / len(masks)
    sd = math.sqrt(0.25 * 0.75 / len(masks))
    assert np.all(np.abs(frequency - 0.25) < 5 * sd)


def test_random_subsets_are_reproducible_and_reject_bad_pools() -> None:
    first = random_subsets(np.random.default_rng(1), 100, 10)
    second = random_subsets(np.random.default_rng(1), 100, 10)
    assert np.array_equal(first.lo, second.lo) and np.array_equal(first.hi, second.hi)
    with pytest.raises(SimulationError):
        random_subsets(np.random.default_rng(1), 10, 5, pool=81)
    with pytest.raises(SimulationError):
        random_subsets(np.random.default_rng(1), 10, 21, pool=20)


def test_hits_match_core_on_fairness_draws() -> None:
    """The bitmask evaluation agrees with core.keno.count_hits on real provably-fair draws."""
    draws = [draw("ab" * 32, "client", nonce) for nonce in range(40)]
    rng = np.random.default_rng(3)
    picks = [tuple(sorted(rng.choice(np.arange(1, 81), size=k, replace=False).tolist()))
             for k in (1, 4, 7, 10) for _ in range(10)]
    hits = hits_matrix(masks_from_numbers(draws), masks_from_numbers(picks))
    expected = [[count_hits(p, d) for p in picks] for d in draws]
    assert hits.tolist() == expected


def test_weighted_subsets_favour_heavy_numbers() -> None:
    weights = [10.0 if n <= 10 else 1.0 for n in range(1, 81)]
    masks = weighted_subsets(np.random.default_rng(5), 20_000, 5, weights)
    assert set(masks.sizes().tolist()) == {5}
    low_numbers = np.bitwise_count(masks.lo & np.uint64(0x3FF)).mean()
    assert low_numbers > 2.5  # uniform picks would average 5 * 10/80 = 0.625
