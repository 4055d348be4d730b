"""Exposure: per-round payouts of a book, cap, risk of ruin; a one-ticket book is exact."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sims import SimulationError
from sims.book import load_book
from sims.exposure import exact_payout_distribution, simulate_exposure

from .conftest import ONE_TICKET_BOOK_FILE, SMALL_BOOK_FILE


def _chi_square_critical(degrees: int, z: float = 3.090232306167813) -> float:
    """Upper 99.9% point of chi-square (Wilson-Hilferty), z = the normal 99.9% point."""
    k = float(degrees)
    return k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3


def test_one_ticket_book_matches_the_exact_distribution() -> None:
    book = load_book(ONE_TICKET_BOOK_FILE)
    rounds = 2_000_000
    report = simulate_exposure(book, rounds=rounds, seed=3)
    exact = exact_payout_distribution(book)
    assert sum(p for _, p in exact) == 1
    values, counts = np.unique(report.totals, return_counts=True)
    seen = dict(zip(values.tolist(), counts.tolist(), strict=True))
    assert set(seen) <= {v for v, _ in exact}
    # Pearson chi-square over the outcomes, the rarest merged until each expects >= 5.
    statistic, degrees, pooled_observed, pooled_expected = 0.0, -1, 0, 0.0
    for value, p in exact:
        pooled_observed += seen.get(value, 0)
        pooled_expected += float(p) * rounds
        if pooled_expected >= 5:
            statistic += (pooled_observed - pooled_expected) ** 2 / pooled_expected
            degrees += 1
            pooled_observed, pooled_expected = 0, 0.0
    assert degrees >= 3
    assert statistic < _chi_square_critical(degrees), (statistic, degrees)
    # And outcome by outcome, within 5 binomial standard deviations.
    for value, p in exact:
        q = float(p)
        assert abs(seen.get(value, 0) / rounds - q) <= 5 * math.sqrt(q * (1 - q) / rounds) + 1e-9
    data = report.to_json()
    assert [row["payout_minor"] for row in data["distribution"]] == [v for v, _ in exact]
    assert data["payout"]["exact_mean_minor"] == pytest.approx(
        float(sum(v * p for v, p in exact)), rel=1e-12)


def test_book_statistics_cap_and_ruin() -> None:
    book = load_book(SMALL_BOOK_FILE)
    report = simulate_exposure(book, rounds=200_000, seed=1, cap=100_000, bankroll=10**9,
                               horizon_days=1, paths=50)
    data = report.to_json()
    payout = data["payout"]
    low, high = payout["mean_ci99"]
    assert low <= payout["exact_mean_minor"] <= high
    assert payout["p50_minor"] <= payout["p99"]["value_minor"] <= payout["p999"]["value_minor"]
    assert payout["p999"]["value_minor"] <= payout["max_minor"] <= data["book"]["max_payout_bound_minor"]
    cap = data["cap"]
    assert cap["p_binds"] == np.count_nonzero(report.totals > 100_000) / 200_000
    assert cap["mean_capped_payout_minor"] <= payout["mean_minor"]
    # A huge bankroll over one day is never ruined; the interval still has a width.
    ruin = data["ruin"]
    assert ruin["horizon_rounds"] == 8640 and ruin["p_ruin"] == 0.0
    assert 0.0 < ruin["p_ruin_ci99"][1] < 0.2


def test_ruin_falls_with_the_bankroll_and_results_are_deterministic() -> None:
    book = load_book(SMALL_BOOK_FILE)
    ruin = []
    for bankroll in (0, 20_000, 200_000):
        report = simulate_exposure(book, rounds=20_000, seed=4, bankroll=bankroll,
                                   horizon_days=0.5, paths=200)
        assert report.ruin is not None
        ruin.append(report.ruin["p_ruin"])
    # The same seed resamples the same paths, so ruin can only fall as the bankroll grows.
    assert ruin[0] > 0.5 and ruin[0] >= ruin[1] >= ruin[2]
    first = simulate_exposure(book, rounds=20_000, seed=4, bankroll=0, horizon_days=0.5, paths=40)
    second = simulate_exposure(book, rounds=20_000, seed=4, bankroll=0, horizon_days=0.5, paths=40)
    assert np.array_equal(first.totals, second.totals) and first.ruin == second.ruin


def test_same_seed_same_rounds_on_ray_workers(ray_session: None) -> None:
    book = load_book(SMALL_BOOK_FILE)
    local = simulate_exposure(book, rounds=300_000, seed=8, bankroll=10_000, horizon_days=0.2,
                              paths=30)
    on_ray = simulate_exposure(book, rounds=300_000, seed=8, bankroll=10_000, horizon_days=0.2,
                               paths=30, workers=2)
    assert np.array_equal(local.totals, on_ray.totals)
    assert local.to_json()["ruin"] == on_ray.to_json()["ruin"]


def test_bad_exposure_inputs() -> None:
    book = load_book(ONE_TICKET_BOOK_FILE)
    with pytest.raises(SimulationError, match="rounds"):
        simulate_exposure(book, rounds=0)
    with pytest.raises(SimulationError, match="both"):
        simulate_exposure(book, rounds=10, bankroll=5)
    with pytest.raises(SimulationError, match="cap"):
        simulate_exposure(book, rounds=10, cap=-1)
    with pytest.raises(SimulationError, match="one-ticket"):
        exact_payout_distribution(load_book(SMALL_BOOK_FILE))
