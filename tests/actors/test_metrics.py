"""Shard sampling: cumulative engine totals become per-sample changes."""

from __future__ import annotations

from actors.metrics import ShardSampler, WindowMax


def test_sampler_records_changes_and_survives_an_engine_reset() -> None:
    sampler = ShardSampler("unit-shard-0")
    first = sampler.sample(
        {
            "batches": 4,
            "commands": 40,
            "commit_seconds": 0.02,
            "busy_rejections": 0,
            "active_accounts": 7,
            "mailbox_depth": 3,
        }
    )
    assert first == {"batches": 4, "commands": 40, "commit_seconds": 0.02, "busy_rejections": 0}
    second = sampler.sample(
        {"batches": 6, "commands": 50, "commit_seconds": 0.03, "busy_rejections": 2}
    )
    assert second["batches"] == 2 and second["commands"] == 10 and second["busy_rejections"] == 2
    assert abs(second["commit_seconds"] - 0.01) < 1e-12
    # A new engine (restart, rebalance) starts from zero: its totals are the change.
    third = sampler.sample(
        {"batches": 1, "commands": 3, "commit_seconds": 0.001, "busy_rejections": 0}
    )
    assert third == {"batches": 1, "commands": 3, "commit_seconds": 0.001, "busy_rejections": 0}
    quiet = sampler.sample({"batches": 1, "commands": 3, "commit_seconds": 0.001})
    assert quiet == {"batches": 0, "commands": 0, "commit_seconds": 0, "busy_rejections": 0}


def test_window_max_holds_a_peak_for_its_window_then_lets_it_go() -> None:
    peak = WindowMax(window_s=60.0)
    assert peak.value(0.0) == 0.0
    assert peak.observe(5, 0.0) == 5
    assert peak.observe(0, 1.0) == 5  # the queue drained; the peak is still in the window
    assert peak.observe(3, 30.0) == 5
    assert peak.value(59.9) == 5
    assert peak.value(60.0) == 3  # 5 left the window; 3 (at 30 s) is the largest left
    assert peak.observe(1, 95.0) == 1
    assert peak.value(200.0) == 0.0

