"""Shard sampling: cumulative engine totals become per-sample changes."""

from __future__ import annotations

from actors.metrics import ShardSampler


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
