"""Simulated RTP: inside its 99% interval of the exact RTP, honest and deterministic."""

from __future__ import annotations

import math

import pytest

from core.keno import PaytableSet
from sims import SimulationError
from sims.rtp import plan_batches, simulate_rtp


def test_every_paytable_is_within_its_99_percent_interval(paytables: PaytableSet) -> None:
    """At a fixed seed and enough tickets for the rare prizes to show, exact RTP is in the CI.

    Tickets per table: enough for every outcome carrying variance to be seen >= 10 times
    (the 10-spot top prize is 1 in 8.9 million), so the interval is reliable.
    """
    for spots in paytables.spots:
        table = paytables.for_spots(spots)
        needed = max(2_000_000, min(120_000_000, math.ceil(10 / float(min(table.probabilities())))))
        result = simulate_rtp(paytables, tickets=needed, seed=11, spots=spots).tables[0]
        assert result.ci_reliable, spots
        assert result.within_ci, (spots, float(result.exact_rtp), result.ci99)
        # Sharing a draw costs almost nothing with independent random picks.
        assert 0.5 < result.design_effect < 1.5, (spots, result.design_effect)
        # Every hit count appears about as often as the hypergeometric law says.
        for count, p in zip(result.hit_counts, result.hit_probabilities, strict=True):
            expected = float(p) * result.tickets
            assert abs(count - expected) <= 6 * math.sqrt(expected) + 1, (spots, count, expected)


def test_figures_of_a_small_run(paytables: PaytableSet) -> None:
    report = simulate_rtp(paytables, tickets=300_000, seed=1, spots=10)
    table = report.tables[0]
    assert table.tickets >= 300_000 and table.tickets % table.tickets_per_draw == 0
    assert table.draws == table.tickets // table.tickets_per_draw
    assert sum(table.hit_counts) == table.tickets
    assert table.exact_rtp == paytables.for_spots(10).rtp()
    # N = (2.5758 · SD / 0.001)²
    assert table.tickets_for_precision == math.ceil((2.5758293035489004 * table.exact_sd / 0.001) ** 2)
    # 300k tickets cannot see a 1-in-8.9-million prize: the report must say so.
    assert not table.ci_reliable and table.tickets_for_reliable_ci > 80_000_000
    data = report.to_json()
    assert data["tables"][0]["convergence"][-1][0] == table.tickets


def test_same_seed_same_result_on_0_1_and_2_workers(paytables: PaytableSet, ray_session: None) -> None:
    def figures(workers: int) -> list[dict[str, object]]:
        report = simulate_rtp(paytables, tickets=9_000_000, seed=5, spots=6, workers=workers)
        return report.to_json()["tables"]

    in_process = figures(0)
    assert len(plan_batches(paytables.for_spots(6), tickets=9_000_000, seed=5, tickets_per_draw=256)) > 1
    assert figures(1) == in_process
    assert figures(2) == in_process
    assert simulate_rtp(paytables, tickets=9_000_000, seed=6, spots=6).to_json()["tables"] != in_process


def test_bad_inputs(paytables: PaytableSet) -> None:
    with pytest.raises(SimulationError):
        simulate_rtp(paytables, tickets=0)
    with pytest.raises(SimulationError):
        simulate_rtp(paytables, tickets=10, tickets_per_draw=0)
    with pytest.raises(SimulationError):
        simulate_rtp(paytables, tickets=10, seed=-1)


def test_too_few_draws_give_no_interval(paytables: PaytableSet) -> None:
    """Fewer than 30 independent draws: no interval rather than a made-up one."""
    table = simulate_rtp(paytables, tickets=10, seed=1, spots=4).tables[0]
    assert table.draws == 1 and table.tickets == 256 and not table.has_ci
    data = table.to_json()
    assert data["ci99"] == [None, None] and data["within_ci"] is None
