"""``rgs bench wallet --rounds``: which round the headline figures come from."""

from __future__ import annotations

from typing import Any

from serve.bench_wallet import median_round, stages_between


def _round(ours: float, echo: float) -> dict[str, Any]:
    return {"ours": {"per_s": ours}, "baseline": {"per_s": echo}, "ratio": round(ours / echo, 3)}


def test_the_headline_is_the_whole_round_with_the_median_ratio() -> None:
    rounds = [_round(1300, 3000), _round(1000, 3100), _round(1450, 3300)]  # 0.433, 0.323, 0.439
    headline = median_round(rounds)
    assert headline is rounds[0]
    # its own pair of runs, so ratio == ours / baseline still holds for the headline
    assert headline["ratio"] == round(headline["ours"]["per_s"] / headline["baseline"]["per_s"], 3)


def test_an_even_count_takes_the_lower_middle_and_one_round_is_itself() -> None:
    rounds = [_round(1200, 3000), _round(1000, 3000), _round(1300, 3000), _round(900, 3000)]
    assert median_round(rounds)["ours"]["per_s"] == 1000
    single = [_round(1200, 3000)]
    assert median_round(single) is single[0]


def test_a_round_without_a_ratio_ranks_lowest() -> None:
    broken = {"ours": {"per_s": 0.0}, "baseline": {"per_s": 0.0}, "ratio": None}
    rounds = [broken, _round(1200, 3000), _round(1300, 3000)]
    assert median_round(rounds)["ours"]["per_s"] == 1200


def test_stages_are_means_over_what_happened_between_the_readings() -> None:
    before = {
        "requests": 100,
        "arrival_seconds": 0.5,
        "handle_seconds": 2.0,
        "batches": 40,
        "commands": 90,
        "commit_seconds": 0.08,
    }
    after = {
        "requests": 1100,
        "arrival_seconds": 1.7,
        "handle_seconds": 7.0,
        "batches": 540,
        "commands": 990,
        "commit_seconds": 1.08,
    }
    assert stages_between(before, after) == {
        "requests": 1000,
        "replica_to_adapter_ms": 1.2,
        "in_adapter_ms": 5.0,
        "commands_per_commit": 1.8,
        "commit_ms": 2.0,
    }


def test_stages_without_traffic_are_none_rather_than_a_division_by_zero() -> None:
    same = {
        "requests": 5,
        "arrival_seconds": 0.1,
        "handle_seconds": 0.2,
        "batches": 3,
        "commands": 4,
        "commit_seconds": 0.01,
    }
    stages = stages_between(same, dict(same))
    assert stages["requests"] == 0
    assert stages["replica_to_adapter_ms"] is None and stages["commit_ms"] is None
    assert stages["commands_per_commit"] is None
