"""``rgs bench wallet --rounds``: which round the headline figures come from."""

from __future__ import annotations

from typing import Any

from serve.bench_wallet import median_round


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
