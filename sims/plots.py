"""PNG plots of the simulations (matplotlib's Agg canvas: no display, no global state)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from sims import SimulationError
from sims.capacity import CapacityReport
from sims.exposure import ExposureReport
from sims.rtp import RtpReport
from sims.stats import Z_99

__all__ = ["plot_capacity", "plot_exposure", "plot_rtp"]


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(figure: Any, path: str | Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        raise SimulationError(f"cannot write plot {path}: {exc.strerror or exc}") from None


def plot_rtp(report: RtpReport, path: str | Path) -> None:
    """Running simulated RTP against tickets, the exact RTP and its 99% funnel, per table."""
    count = len(report.tables)
    columns = min(3, count)
    rows = math.ceil(count / columns)
    figure = _figure(5.0 * columns, 3.6 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, table in zip(axes.ravel(), report.tables, strict=False):
        tickets = np.array([p[0] for p in table.convergence], dtype=np.float64)
        running = np.array([p[1] for p in table.convergence]) * 100
        exact = float(table.exact_rtp) * 100
        half = Z_99 * table.exact_sd / np.sqrt(tickets) * 100
        ax.fill_between(tickets, exact - half, exact + half, color="tab:blue", alpha=0.15,
                        label="exact ± 99% (exact SD)")
        ax.axhline(exact, color="tab:blue", linewidth=1, label=f"exact {exact:.3f}%")
        ax.plot(tickets, running, color="tab:red", linewidth=1.2, label="simulated")
        final = float(table.simulated_rtp) * 100
        if table.has_ci:
            low, high = (v * 100 for v in table.ci99)
            ax.errorbar([tickets[-1]], [final], yerr=[[final - low], [high - final]], fmt="o",
                        color="black", capsize=3, label="final, 99% CI (per-draw)")
        else:
            low, high = final - float(half[-1]), final + float(half[-1])
            ax.plot([tickets[-1]], [final], "o", color="black", label="final (too few draws for a CI)")
        ax.set_xscale("log")
        spread = max(3 * (high - low), abs(final - exact) * 1.5, 1e-3)
        ax.set_ylim(exact - spread, exact + spread)
        ax.set_title(f"{table.spots} spots: {table.tickets:,} tickets")
        ax.set_xlabel("tickets")
        ax.set_ylabel("RTP %")
        ax.legend(fontsize=7, loc="upper right")
    for ax in axes.ravel()[count:]:
        ax.set_visible(False)
    figure.suptitle(f"Simulated RTP convergence (seed {report.seed})")
    _save(figure, path)


def plot_exposure(report: ExposureReport, path: str | Path) -> None:
    """Histogram of the per-round payout (log bins) and its tail P(payout > x), log-log."""
    from core.money import currency

    data = report.to_json()
    code = report.book.currency
    unit = float(currency(code).scale)  # plot major units: what a planner reads
    totals = report.totals.astype(np.float64) / unit
    figure = _figure(11.0, 4.2)
    left, right = figure.subplots(1, 2)
    positive = totals[totals > 0]
    zero_share = 1.0 - positive.size / totals.size
    if positive.size:
        low, high = float(positive.min()), float(positive.max())
        bins = np.geomspace(low, max(high, low * 1.01), 60)
        left.hist(positive, bins=bins, color="tab:blue", alpha=0.8)
        left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel(f"house payout per round ({code}); rounds paying 0: {zero_share:.1%}")
    left.set_ylabel("rounds")
    marks = [("mean", data["payout"]["mean_minor"], "black"),
             ("p99", data["payout"]["p99"]["value_minor"], "tab:orange"),
             ("p99.9", data["payout"]["p999"]["value_minor"], "tab:red")]
    if report.cap is not None:
        marks.append(("cap", report.cap, "tab:purple"))
    marks.append(("stakes", report.book.stake_per_round, "tab:green"))
    for label, value, colour in marks:
        if value > 0:
            left.axvline(value / unit, color=colour, linestyle="--", linewidth=1,
                         label=f"{label} {value / unit:,.2f}")
    left.legend(fontsize=7)
    ordered = np.sort(totals)
    survival = 1.0 - np.arange(1, ordered.size + 1) / ordered.size
    shown = (ordered > 0) & (survival > 0)
    right.step(ordered[shown], survival[shown], where="post", color="tab:blue")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel(f"payout x ({code})")
    right.set_ylabel("P(round payout > x)")
    if report.cap is not None and report.cap > 0:
        right.axvline(report.cap / unit, color="tab:purple", linestyle="--", linewidth=1, label="cap")
        right.legend(fontsize=7)
    title = f"{len(report.book):,} tickets, {totals.size:,} rounds"
    if report.ruin is not None:
        title += (f"; risk of ruin {report.ruin['p_ruin']:.2%} over "
                  f"{report.ruin['horizon_days']:g} days")
    figure.suptitle(title)
    _save(figure, path)


def plot_capacity(report: CapacityReport, path: str | Path) -> None:
    """With a sweep: p99 and utilisation against load. Without: where the time goes."""
    figure = _figure(11.0, 4.2)
    left, right = figure.subplots(1, 2)
    target = report.inputs["target_p99_ms"]
    if report.sweep:
        for shards in sorted({row["shards"] for row in report.sweep}):
            rows = [row for row in report.sweep if row["shards"] == shards]
            rates = [row["bets_per_s_window"] for row in rows]
            left.plot(rates, [max(row["p99_ms"], 1e-3) for row in rows], marker="o",
                      label=f"{rows[0]['replicas']} replicas, {shards} shards")
            if shards == report.recommendation["shards"]:
                for key, style in (("replica_max", "o-"), ("shard_max", "s-"), ("db", "^-")):
                    right.plot(rates, [row["utilization"][key] for row in rows], style, label=key)
        left.set_yscale("log")
        left.set_xlabel("bets per second (window mean)")
        left.set_ylabel("p99 bet latency (ms)")
        right.set_xlabel("bets per second (window mean)")
        right.axhline(0.95, color="grey", linestyle=":", linewidth=1)
    else:
        stages = report.evaluated["stage_p99_ms"]
        left.bar(list(stages), list(stages.values()), color=["tab:blue", "tab:orange", "tab:green"])
        left.set_ylabel("p99 per stage (ms)")
        shards = report.evaluated["per_shard"]
        right.bar([str(s["shard"]) for s in shards], [s["utilization"] for s in shards],
                  color="tab:orange", label="shard CPU")
        right.axhline(report.evaluated["utilization"]["db"], color="tab:green", label="database")
        right.set_xlabel("shard")
    left.axhline(target, color="tab:red", linestyle="--", linewidth=1, label=f"target {target:g} ms")
    left.legend(fontsize=7)
    right.set_ylabel("utilization")
    right.legend(fontsize=7)
    rec = report.recommendation
    figure.suptitle(
        f"{report.inputs['players']:,} players x {report.inputs['bets_per_minute']:g} bets/min: "
        f"{rec['replicas']} replicas, {rec['shards']} shards, {rec['nodes']} nodes "
        f"({'meets' if rec['feasible'] else 'misses'} p99 {target:g} ms)"
    )
    _save(figure, path)
