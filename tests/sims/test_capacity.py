"""Capacity model: closed-form queues, the simulated system, sizing and sweeps, inputs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sims import SimulationError
from sims.capacity import plan_capacity, sweep_capacity
from sims.event_model import _Loop, _Process
from sims.service import CapacityConfig, load_config
from sims.system_model import Scenario, fifo_departures, simulate_system
from sims.workload import arrival_times, mean_window_rate, rate_at


@pytest.fixture(scope="module")
def config() -> CapacityConfig:
    """Shipped defaults on a 30 s window: the same model, quicker."""
    loaded = load_config()
    return replace(loaded, workload=replace(loaded.workload, window_seconds=30.0))


def test_fifo_departures_match_the_step_by_step_recursion() -> None:
    rng = np.random.default_rng(2)
    arrivals = np.sort(rng.uniform(0, 10, 5_000))
    services = rng.exponential(0.0019, 5_000)
    expected = np.empty_like(arrivals)
    previous = -np.inf
    for i, (a, s) in enumerate(zip(arrivals, services, strict=True)):
        previous = max(a, previous) + s
        expected[i] = previous
    assert np.allclose(fifo_departures(arrivals, services), expected, rtol=0, atol=1e-9)


def test_arrivals_follow_the_round_shape(config: CapacityConfig) -> None:
    w = config.workload
    times = arrival_times(np.random.default_rng(1), 200.0, w)
    phase = np.mod(times, w.round_seconds)
    assert np.all(phase < w.round_seconds - w.close_seconds)  # nothing while a round is closed
    early = np.count_nonzero(phase < 1.0)
    late = np.count_nonzero((phase >= 8.0) & (phase < 9.0))
    assert late > 2 * early  # the rush before the close
    assert times.size == pytest.approx(mean_window_rate(200.0, w) * w.window_seconds, rel=0.05)
    assert rate_at(np.array([9.5]), 200.0, w)[0] == 0.0


def test_a_light_load_is_fast_and_a_heavier_one_needs_more(config: CapacityConfig) -> None:
    light = simulate_system(Scenario(500, 6, 2, replicas=1, shards=1, seed=1), config)
    assert light["stable"] and light["latency_ms"]["p99"] < 20
    assert light["latency_ms"]["p50"] <= light["latency_ms"]["p99"] <= light["latency_ms"]["max"]
    assert 0 < light["utilization"]["replica_max"] < 0.5 and 0 < light["utilization"]["db"] < 0.5
    assert light["credits"] > 0 and light["settlement_ms"]["rounds_measured"] > 0
    assert len(light["per_shard"]) == 1 and len(light["per_replica"]) == 1
    # Four providers: one adapter each, so the Serve replicas and shards are what saturates.
    spread = replace(config, service=replace(config.service, providers=4))
    squeezed = simulate_system(Scenario(12_000, 6, 2, replicas=1, shards=1, seed=1), spread)
    roomy = simulate_system(Scenario(12_000, 6, 2, replicas=4, shards=4, seed=1), spread)
    assert squeezed["latency_ms"]["p99"] > roomy["latency_ms"]["p99"]
    assert squeezed["utilization"]["replica_max"] > roomy["utilization"]["replica_max"]
    # Deterministic for a seed.
    assert simulate_system(Scenario(500, 6, 2, 1, 1, seed=1), config) | {"simulation_seconds": 0} == \
        light | {"simulation_seconds": 0}


def test_plan_finds_small_counts_and_reports_a_database_bound(config: CapacityConfig) -> None:
    small = plan_capacity(players=500, bets_per_minute=6, tables=2, config=config,
                          target_p99_ms=100).to_json()
    assert small["recommendation"]["feasible"]
    assert (small["recommendation"]["replicas"], small["recommendation"]["shards"]) == (1, 1)
    assert small["recommendation"]["nodes"] == 1
    assert len(small["daily_profile"]) == 24
    slow_database = replace(config, service=replace(config.service, db_per_command_ms=2.0))
    huge = plan_capacity(players=5_000, bets_per_minute=6, tables=2, config=slow_database,
                         target_p99_ms=100).to_json()
    assert not huge["recommendation"]["feasible"]
    assert "database-bound" in huge["recommendation"]["reason"]


def test_plan_grows_counts_until_the_target_is_met(config: CapacityConfig) -> None:
    config = replace(config, service=replace(config.service, providers=4))  # adapters keep up
    report = plan_capacity(players=6_000, bets_per_minute=6, tables=2, config=config,
                           target_p99_ms=150, shards=2)
    rec = report.recommendation
    assert rec["feasible"] and rec["shards"] == 2 and rec["p99_ms"] <= 150
    assert len(report.search) >= 2
    # One replica fewer would miss the target (the bisection found the smallest count).
    if rec["replicas"] > 1:
        fewer = simulate_system(Scenario(6_000, 6, 2, rec["replicas"] - 1, 2), config)
        assert fewer["latency_ms"]["p99"] > 150 or not fewer["stable"]


def test_sweep_runs_every_scenario(config: CapacityConfig, ray_session: None) -> None:
    plan = plan_capacity(players=1_000, bets_per_minute=6, tables=2, config=config,
                         target_p99_ms=100, replicas=1, shards=1)
    swept = sweep_capacity(plan, config=config, workers=2, loads=(0.5, 1.0, 2.0))
    assert swept.sweep is not None and len(swept.sweep) == 6
    assert {row["shards"] for row in swept.sweep} == {1, 2}
    in_process = sweep_capacity(plan, config=config, workers=0, loads=(0.5, 1.0, 2.0))
    assert in_process.sweep == swept.sweep
    rates = [row["bets_per_s_window"] for row in swept.sweep[:3]]
    assert rates == sorted(rates)


def test_service_time_overrides(tmp_path: Path) -> None:
    override = tmp_path / "times.json"
    override.write_text(json.dumps({"service": {"db_connections": 4,
                                                "serve_request_ms": {"mean": 1.0}}}))
    config = load_config(override)
    assert config.service.db_connections == 4
    assert config.service.serve_request.mean_ms == 1.0
    assert config.service.serve_request.cv == load_config().service.serve_request.cv
    bench = tmp_path / "bench.jsonl"
    lines = [{"name": "wallet", "ours": {}, "baseline": {}, "ratio": 1,
              "service_times": {"service": {"command_ms": {"mean": 0.2}}}},
             {"name": "other", "ours": {}, "baseline": {}, "ratio": 1}]
    bench.write_text("\n".join(json.dumps(line) for line in lines))
    assert load_config(bench).service.command.mean_ms == 0.2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"service": {"serve_request_ms": {"mean": -1}}}))
    with pytest.raises(SimulationError, match=r"serve_request_ms\.mean"):
        load_config(bad)
    bad.write_text(json.dumps({"service": {"gpu_ms": 1}}))
    with pytest.raises(SimulationError, match="unknown key 'gpu_ms'"):
        load_config(bad)
    with pytest.raises(SimulationError, match="no such file"):
        load_config(tmp_path / "absent.json")


def test_bad_scenarios(config: CapacityConfig) -> None:
    with pytest.raises(SimulationError, match="shards"):
        simulate_system(Scenario(100, 6, 1, replicas=1, shards=0), config)
    with pytest.raises(SimulationError, match="target"):
        plan_capacity(players=10, bets_per_minute=1, tables=1, config=config, target_p99_ms=0)


def test_adapter_service_time_drives_latency(config: CapacityConfig) -> None:
    scenario = Scenario(3_000, 6, 2, replicas=1, shards=1, seed=3)
    quick = simulate_system(scenario, config)
    slow_config = replace(config, service=replace(
        config.service, adapter_request=replace(config.service.adapter_request, mean_ms=2.0)))
    slow = simulate_system(scenario, slow_config)
    assert slow["latency_ms"]["p50"] > quick["latency_ms"]["p50"]
    assert slow["stage_p99_ms"]["adapter"] > quick["stage_p99_ms"]["adapter"]
    assert slow["utilization"]["adapter_max"] > quick["utilization"]["adapter_max"] > 0
    # Every request is recorded before its answer: the record stage and its writes exist.
    assert quick["record_writes_per_s"] > 0 and quick["stage_p99_ms"]["callback_record"] > 0


def test_a_saturated_adapter_is_reported(config: CapacityConfig) -> None:
    slow = replace(config, service=replace(
        config.service, adapter_request=replace(config.service.adapter_request, mean_ms=20.0)))
    report = plan_capacity(players=3_000, bets_per_minute=6, tables=2, config=slow,
                           target_p99_ms=100).to_json()
    assert not report["recommendation"]["feasible"]
    assert "adapter-bound" in report["recommendation"]["reason"]


def test_settlement_off_removes_round_end_credits(config: CapacityConfig) -> None:
    scenario = Scenario(1_000, 6, 2, replicas=1, shards=1, seed=2)
    keno = simulate_system(scenario, config)
    wallet = simulate_system(scenario, replace(config, workload=replace(config.workload,
                                                                        settlement=False)))
    assert keno["credits"] > 0 and keno["settlement_ms"]["rounds_measured"] > 0
    assert wallet["credits"] == 0 and wallet["settlement_ms"]["rounds_measured"] == 0
    assert keno["requests"] == keno["bets"]
    # Wins arrive as wallet requests instead: bets plus about win_fraction more.
    expected = wallet["bets"] * (1 + config.workload.win_fraction)
    assert wallet["requests"] == pytest.approx(expected, rel=0.1)


def test_settlement_flag_is_validated(tmp_path: Path) -> None:
    good = tmp_path / "off.json"
    good.write_text(json.dumps({"workload": {"settlement": False}}))
    assert load_config(good).workload.settlement is False
    assert load_config().workload.settlement is True
    good.write_text(json.dumps({"workload": {"settlement": "no"}}))
    with pytest.raises(SimulationError, match=r"settlement"):
        load_config(good)


def test_processes_share_the_node_cores() -> None:
    # Two processes with one second of CPU each, started together: on one core they take
    # turns (both done at 2 s); on two cores each has its own (both done at 1 s).
    for cores, expected in ((1, 2.0), (2, 1.0), (0, 1.0)):
        loop = _Loop(cores)
        finished: list[float] = []
        shard, adapter = _Process("shard"), _Process("adapter")
        loop.at(0.0, lambda _now: loop.submit(shard, 1.0, finished.append))  # noqa: B023
        loop.at(0.0, lambda _now: loop.submit(adapter, 1.0, finished.append))  # noqa: B023
        loop.run()
        assert finished == pytest.approx([expected, expected])
    # One process is one thread: its jobs never overlap, whatever the cores.
    loop, done, process = _Loop(4), [], _Process("replica")
    loop.at(0.0, lambda _now: [loop.submit(process, 0.5, done.append) for _ in range(3)])
    loop.run()
    assert done == pytest.approx([0.5, 1.0, 1.5])


def _flat(config: CapacityConfig) -> CapacityConfig:
    """Steady wallet traffic (no daily cycle, rush or burst, no settlement): as benchmarked."""
    return replace(config, workload=replace(config.workload, daily_amplitude=0.0, close_rush=1.0,
                                            burst_multiplier=1.0, settlement=False))


def test_shared_cores_raise_latency(config: CapacityConfig) -> None:
    config = _flat(config)
    scenario = Scenario(1_200, 6, 2, replicas=2, shards=2, seed=4)  # ~0.4 cores of demand
    own = simulate_system(scenario, config)
    one = simulate_system(scenario, replace(config, service=replace(config.service, node_cores=1)))
    assert own["node_cores"] == 0 and own["utilization"]["node_cpu"] == 0.0
    assert 0.3 < one["utilization"]["node_cpu"] < 0.95 and one["stable"]
    assert one["latency_ms"]["p50"] > own["latency_ms"]["p50"]
    assert one["latency_ms"]["p99"] > 1.2 * own["latency_ms"]["p99"]
    # The same demand either way: only the waiting for a core differs.
    assert one["utilization"]["cpu_demand_cores"] == pytest.approx(own["utilization"]["cpu_demand_cores"],
                                                                   rel=0.05)
    # Deterministic for a seed on the event-loop path too.
    again = simulate_system(scenario, replace(config, service=replace(config.service, node_cores=1)))
    assert again | {"simulation_seconds": 0} == one | {"simulation_seconds": 0}


def test_the_router_in_flight_limit_coalesces_commands(config: CapacityConfig) -> None:
    wallet = _flat(config)
    scenario = Scenario(1_500, 6, 1, replicas=1, shards=1, seed=5)
    limited = simulate_system(scenario, replace(wallet, service=replace(wallet.service, router_in_flight=1)))
    # Practically unlimited: every command leaves as a request of its own, as in the closed form.
    unlimited = simulate_system(scenario, replace(wallet, service=replace(wallet.service, router_in_flight=1024)))
    closed = simulate_system(scenario, replace(wallet, service=replace(
        wallet.service, router_in_flight=0, adapter_after_share=0.0)))
    assert unlimited["calls_per_s"] == pytest.approx(unlimited["requests_per_s_window"])
    assert limited["calls_per_s"] < 0.95 * limited["requests_per_s_window"]
    assert limited["stage_p99_ms"]["coalesce_and_shard"] > unlimited["stage_p99_ms"]["coalesce_and_shard"]
    # The event loop and the closed form agree when the new mechanisms are off (the serve
    # batch and the adapter's after-shard share differ, so only roughly).
    assert closed["node_cores"] == 0 and closed["router_in_flight"] == 0
    assert unlimited["latency_ms"]["p50"] == pytest.approx(closed["latency_ms"]["p50"], rel=0.3)


def test_adapter_work_after_the_shard_answer_moves_out_of_the_adapter_stage(config: CapacityConfig) -> None:
    config = _flat(config)
    scenario = Scenario(1_000, 6, 2, replicas=1, shards=1, seed=6)
    before = simulate_system(scenario, replace(config, service=replace(config.service, adapter_after_share=0.0)))
    after = simulate_system(scenario, replace(config, service=replace(config.service, adapter_after_share=1.0)))
    assert after["stage_p99_ms"]["adapter"] < before["stage_p99_ms"]["adapter"]
    assert after["stage_p99_ms"]["callback_record"] > before["stage_p99_ms"]["callback_record"]
    assert after["utilization"]["adapter_max"] == pytest.approx(before["utilization"]["adapter_max"], rel=0.02)


def test_the_measured_run_file_describes_that_run(tmp_path: Path) -> None:
    measured = load_config(Path(__file__).resolve().parents[2] / "sims" / "data" / "measured_2026-11-22.json")
    assert measured.service.node_cores == 2 and measured.service.router_in_flight == 1
    assert measured.service.client_request.mean_ms > 0 and measured.service.needs_event_loop
    assert measured.workload.client_workers == 32 and load_config().workload.client_workers == 0
    assert not load_config().service.node_cores
    bad = tmp_path / "cores.json"
    bad.write_text(json.dumps({"service": {"cpu": {"node_cores": -1}}}))
    with pytest.raises(SimulationError, match=r"cpu\.node_cores"):
        load_config(bad)


def test_paced_workers_started_together_send_in_bursts(config: CapacityConfig) -> None:
    config = _flat(config)
    scenario = Scenario(1_200, 6, 2, replicas=1, shards=1, seed=7)
    poisson = simulate_system(scenario, config)
    paced = simulate_system(scenario, replace(config, workload=replace(config.workload, client_workers=32)))
    # The same rate (one request per worker per period), all 32 at once.
    assert paced["requests_per_s_window"] == pytest.approx(poisson["requests_per_s_window"], rel=0.05)
    assert paced["latency_ms"]["p50"] > 2 * poisson["latency_ms"]["p50"]
    assert paced["stage_p99_ms"]["replica"] > 5 * poisson["stage_p99_ms"]["replica"]
