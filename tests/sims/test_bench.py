"""``rgs bench sims``: the result shape ``cli.bench`` prints, on a very short run."""

from __future__ import annotations

import argparse

import pytest

import sims.bench
from sims.bench import run_bench


def test_bench_result_shape(ray_session: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sims.bench, "_TRIALS", 1)  # one alternation is enough for the shape
    result = run_bench(argparse.Namespace(duration=0.2, concurrency=None, address=None, json=True))
    assert result["name"] == "sims"
    for side in ("ours", "baseline"):
        assert set(result[side]) == {"per_s", "p50_ms", "p99_ms"}
        assert result[side]["per_s"] > 0
    assert result["ratio"] == result["ours"]["per_s"] / result["baseline"]["per_s"]
    assert result["cross_checked_tickets"] > 0
    assert result["speedup"] > 0 and "scaling_efficiency" in result
    assert "ray_2_workers_per_s" in result and result["processes_scaling_efficiency"] > 0
    assert len(result["ray_trials"]["2"]) == 1
