"""``rgs sim ...``: JSON shapes, summaries, plots and one-line errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from cli.main import main

from .conftest import ONE_TICKET_BOOK_FILE, PAYTABLES_FILE, SMALL_BOOK_FILE

# The real entry point: every command module registered, its error handling.
run = main


def run_json(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert run([*argv, "--json", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one JSON object, one line
    data: dict[str, object] = json.loads(out)
    return data


def test_rtp_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(["sim", "rtp", "--paytable", str(PAYTABLES_FILE), "--spots", "4",
                     "--tickets", "200k", "--workers", "0", "--seed", "3"], capsys)
    assert data["command"] == "rtp" and data["seed"] == 3 and data["workers"] == 0
    (table,) = data["tables"]  # type: ignore[misc]
    for key in ("spots", "tickets", "exact_rtp", "simulated_rtp", "ci99", "within_ci",
                "tickets_for_precision", "ci_reliable", "hits", "convergence", "design_effect"):
        assert key in table
    assert table["spots"] == 4 and table["tickets"] >= 200_000 and len(table["ci99"]) == 2


def test_rtp_summary_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "rtp.png"
    assert run(["sim", "rtp", "--paytable", str(PAYTABLES_FILE), "--tickets", "1e5",
                "--workers", "0", "--quiet", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "exact RTP" in out
    spots_rows = [line.split()[0] for line in out.splitlines()[2:9]]
    assert spots_rows == ["4", "5", "6", "7", "8", "9", "10"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rtp_on_ray(capsys: pytest.CaptureFixture[str], ray_session: None) -> None:
    on_ray = run_json(["sim", "rtp", "--paytable", str(PAYTABLES_FILE), "--spots", "7",
                       "--tickets", "5M", "--workers", "2"], capsys)
    local = run_json(["sim", "rtp", "--paytable", str(PAYTABLES_FILE), "--spots", "7",
                      "--tickets", "5M", "--workers", "0"], capsys)
    assert on_ray["tables"] == local["tables"]


def test_exposure_json_shapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = run_json(["sim", "exposure", "--book", str(ONE_TICKET_BOOK_FILE), "--rounds", "20000",
                    "--workers", "0"], capsys)
    assert one["command"] == "exposure" and "distribution" in one
    book = run_json(["sim", "exposure", "--book", str(SMALL_BOOK_FILE), "--rounds", "20000",
                     "--cap", "500.00", "--bankroll", "1000", "--horizon-days", "0.1",
                     "--paths", "20", "--workers", "0"], capsys)
    assert book["cap"]["cap_minor"] == 50_000  # type: ignore[index]
    assert book["ruin"]["bankroll_minor"] == 100_000  # type: ignore[index]
    for key in ("mean_minor", "exact_mean_minor", "p99", "p999", "max_minor"):
        assert key in book["payout"]  # type: ignore[operator]
    plot = tmp_path / "exposure.png"
    assert run(["sim", "exposure", "--synthetic", "--paytable", str(PAYTABLES_FILE),
                "--players", "300", "--spot-mix", "4:1,10:1", "--stake-dist", "100:1,500:1",
                "--clustering", "0.5", "--rounds", "5000", "--workers", "0", "--quiet",
                "--plot", str(plot)]) == 0
    assert "payout per round" in capsys.readouterr().out
    assert plot.stat().st_size > 1000


def test_capacity_json_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "capacity.png"
    data = run_json(["sim", "capacity", "--players", "500", "--bets-per-minute", "6",
                     "--tables", "2", "--window", "20", "--plot", str(plot)], capsys)
    assert data["command"] == "capacity" and data["sweep"] is None
    rec = data["recommendation"]
    for key in ("feasible", "replicas", "shards", "nodes", "target_p99_ms", "p99_ms"):
        assert key in rec  # type: ignore[operator]
    assert "per_shard" in data["evaluated"] and "per_replica" in data["evaluated"]  # type: ignore[operator]
    assert plot.exists()


def test_capacity_node_cores_and_router_flags(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sim", "capacity", "--players", "500", "--bets-per-minute", "6", "--tables", "2",
            "--window", "20", "--replicas", "1", "--shards", "1"]
    shared = run_json([*argv, "--node-cores", "1", "--router-in-flight", "1"], capsys)["evaluated"]
    own = run_json([*argv, "--node-cores", "0", "--router-in-flight", "0"], capsys)["evaluated"]
    assert shared["node_cores"] == 1 and shared["router_in_flight"] == 1  # type: ignore[index]
    assert shared["utilization"]["node_cpu"] > 0  # type: ignore[index]
    assert own["node_cores"] == 0 and own["utilization"]["node_cpu"] == 0  # type: ignore[index]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sim", "rtp", "--paytable", "/nonexistent.json", "--tickets", "10"], "no such file"),
        (["sim", "rtp", "--paytable", str(PAYTABLES_FILE), "--tickets", "many"], "not a count"),
        (["sim", "rtp", "--paytable", str(PAYTABLES_FILE), "--tickets", "0"], "from 1 to"),
        (["sim", "rtp", "--paytable", str(PAYTABLES_FILE), "--tickets", "10", "--spots", "3"],
         "no table for 3 spots"),
        (["sim", "rtp", "--paytable", str(PAYTABLES_FILE), "--tickets", "10", "--plot", "x.txt"],
         "PNG"),
        (["sim", "rtp", "--paytable", str(PAYTABLES_FILE), "--tickets", "10", "--plot",
          "/nonexistent/x.png"], "does not exist"),
        (["sim", "rtp", "--tickets", "10"], "--paytable"),
        (["sim", "exposure", "--synthetic", "--rounds", "10"], "needs --paytable"),
        (["sim", "exposure", "--book", str(SMALL_BOOK_FILE), "--rounds", "10", "--bankroll", "5"],
         "go together"),
        (["sim", "exposure", "--book", str(SMALL_BOOK_FILE), "--rounds", "10", "--cap", "1.234"],
         "decimals"),
        (["sim", "exposure", "--book", str(SMALL_BOOK_FILE), "--synthetic", "--rounds", "10"],
         "not allowed with"),
        (["sim", "exposure", "--book", str(PAYTABLES_FILE), "--rounds", "10"], "unknown key"),
        (["sim", "exposure", "--book", str(SMALL_BOOK_FILE), "--rounds", "10", "--players", "5"],
         "only apply to --synthetic"),
        (["sim", "exposure", "--synthetic", "--paytable", str(PAYTABLES_FILE), "--rounds", "10",
          "--clustering", "2"], "between 0 and 1"),
        (["sim", "capacity", "--players", "10", "--bets-per-minute", "-1", "--tables", "1"],
         "positive"),
        (["sim", "capacity", "--players", "10", "--bets-per-minute", "1", "--tables", "1",
          "--service-times", "/nonexistent.json"], "no such file"),
        (["sim", "capacity", "--players", "10", "--bets-per-minute", "1", "--tables", "1",
          "--window", "5"], "warm-up"),
        (["sim"], "required"),
    ],
)
def test_errors_are_one_line_without_traceback(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run([*argv, "--workers", "0"] if argv[:2] in (["sim", "rtp"], ["sim", "exposure"])
               else argv) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err, captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_unreachable_ray_address_fails_fast(capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    from sims import SimulationError
    from sims.runner import _check_reachable

    with pytest.raises(SimulationError, match="cannot reach Ray"):
        _check_reachable("ray://127.0.0.1:1")
    _check_reachable("auto")  # forms Ray resolves itself are left to Ray
    if ray.is_initialized():
        return  # the connected session would be reused and --address not consulted
    assert run(["sim", "rtp", "--paytable", str(PAYTABLES_FILE), "--tickets", "10",
                "--address", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach Ray at 127.0.0.1:1" in err and err.count("\n") == 1
