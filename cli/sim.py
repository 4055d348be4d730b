"""``rgs sim ...``: Monte Carlo for capacity planners (RTP, exposure, capacity) on Ray.

``rgs sim rtp --paytable FILE --tickets N``: simulated RTP, 99% interval, exact RTP.
``rgs sim exposure --book FILE | --synthetic --paytable FILE ... --rounds N``: per-round
house payout, aggregate cap, risk of ruin. ``rgs sim capacity --players P
--bets-per-minute B --tables T``: replicas, shards and nodes for a p99 target.

Every command prints a summary, or one JSON object with ``--json``; ``--plot FILE.png``
writes a chart; progress goes to stderr (``--quiet`` silences it). Ray: ``--address``,
else ``RAY_ADDRESS``, else a local Ray for the duration of the command; ``--workers 0``
runs in this process without Ray.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any

from cli.base import Parser, add_json_flag, emit_json, fail
from core.errors import MoneyError

__all__ = ["register"]

_COUNT_RE = re.compile(r"([0-9][0-9_]*(?:\.[0-9]+)?)(?:e([0-9]+))?([kKmMgG]?)")
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def _count(text: str) -> int:
    """A positive count: ``1000000``, ``1_000_000``, ``1e6``, ``1M`` or ``2.5k``."""
    match = _COUNT_RE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count such as 1000000, 1e6 or 1M")
    mantissa, exponent, suffix = match.groups()
    value = float(mantissa.replace("_", "")) * 10 ** int(exponent or 0) * _SUFFIX[suffix.lower()]
    if value != math.floor(value) or not 1 <= value <= 10**15:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole number from 1 to 1e15")
    return int(value)


def _non_negative_int(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return int(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def _common(parser: argparse.ArgumentParser, *, workers: bool = True) -> None:
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="random seed (default 0)")
    if workers:
        parser.add_argument("--workers", type=_non_negative_int, default=None,
                            help="Ray tasks at once (default: the cluster's CPUs; 0 = in process, no Ray)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--plot", metavar="FILE.png", default=None, help="write a PNG chart")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_json_flag(parser)


def register(sub: Any) -> None:
    sim = sub.add_parser("sim", help="Monte Carlo for capacity planners: RTP, exposure, capacity")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND", parser_class=Parser)
    sim_sub.required = True

    rtp = sim_sub.add_parser("rtp", help="simulated RTP with a 99%% interval, next to the exact RTP")
    rtp.add_argument("--paytable", required=True, metavar="FILE", help="paytable JSON file")
    rtp.add_argument("--spots", type=int, default=None, help="only this table (default: all)")
    rtp.add_argument("--tickets", type=_count, required=True, help="tickets per table (e.g. 1e8)")
    rtp.add_argument("--tickets-per-draw", type=_count, default=256,
                     help="tickets sharing each simulated draw (default 256)")
    _common(rtp)
    rtp.set_defaults(handler=_run_rtp)

    exposure = sim_sub.add_parser("exposure", help="per-round house payout, cap and risk of ruin")
    source = exposure.add_mutually_exclusive_group(required=True)
    source.add_argument("--book", metavar="FILE", help="ticket book JSON file (see sims.book)")
    source.add_argument("--synthetic", action="store_true", help="generate a book of --players")
    exposure.add_argument("--paytable", metavar="FILE", help="paytable JSON file (with --synthetic)")
    exposure.add_argument("--players", type=_count, default=None,
                          help="synthetic: tickets per round (default 1000)")
    exposure.add_argument("--spot-mix", default=None, help='synthetic: "4:0.3,10:0.7" (default: even)')
    exposure.add_argument("--stake-dist", default=None,
                          help='synthetic: stakes in minor units "100:0.6,500:0.4" or '
                               '"lognormal:MEDIAN:SIGMA" (default 100)')
    exposure.add_argument("--clustering", type=_fraction, default=None,
                          help="synthetic: 0 = uniform picks (default) .. 1 = strongly popular numbers")
    exposure.add_argument("--currency", default=None, help="synthetic: currency code (default EUR)")
    exposure.add_argument("--rounds", type=_count, required=True, help="rounds to simulate")
    exposure.add_argument("--cap", default=None, metavar="AMOUNT",
                          help="aggregate payout cap per round, in major units (e.g. 50000.00)")
    exposure.add_argument("--bankroll", default=None, metavar="AMOUNT", help="bankroll, major units")
    exposure.add_argument("--horizon-days", type=_positive_float, default=None, help="ruin horizon")
    exposure.add_argument("--paths", type=_count, default=1000, help="ruin paths (default 1000)")
    _common(exposure)
    exposure.set_defaults(handler=_run_exposure)

    capacity = sim_sub.add_parser("capacity", help="replicas, shards and nodes for a p99 target")
    capacity.add_argument("--players", type=_count, required=True, help="active players")
    capacity.add_argument("--bets-per-minute", type=_positive_float, required=True,
                          help="bets per player per minute, daily average")
    capacity.add_argument("--tables", type=_count, required=True, help="game tables (10 s rounds)")
    capacity.add_argument("--service-times", metavar="FILE", default=None,
                          help="service-time overrides or `rgs bench --json` output")
    capacity.add_argument("--target-p99-ms", type=_positive_float, default=250.0,
                          help="p99 bet latency to meet (default 250 ms)")
    capacity.add_argument("--replicas", type=_count, default=None, help="fix the Serve replicas")
    capacity.add_argument("--shards", type=_count, default=None, help="fix the account shards")
    capacity.add_argument("--window", type=_positive_float, default=None,
                          help="simulated seconds (default from the service-times file: 60)")
    capacity.add_argument("--no-settlement", action="store_true",
                          help="no round-end Keno credits; wins arrive as wallet requests "
                               "(like `rgs bench wallet`)")
    capacity.add_argument("--node-cores", type=_non_negative_int, default=None,
                          help="simulate one node of N cores shared by every process (0: a core each)")
    capacity.add_argument("--router-in-flight", type=_non_negative_int, default=None,
                          help="requests a router keeps out per shard (0: unlimited)")
    capacity.add_argument("--client-workers", type=_non_negative_int, default=None,
                          help="N paced load-generator workers sending together (0: Poisson arrivals)")
    capacity.add_argument("--sweep", action="store_true", help="also sweep load as Ray tasks")
    capacity.add_argument("--workers", type=_non_negative_int, default=None,
                          help="sweep tasks at once (default: the cluster's CPUs; 0 = in process)")
    _common(capacity, workers=False)
    capacity.set_defaults(handler=_run_capacity)


# --------------------------------------------------------------------------- shared


def _check_plot(path: str | None) -> None:
    """Fail before a long run, not after it, if the chart cannot be written."""
    if path is None:
        return
    target = Path(path)
    if target.suffix.lower() != ".png":
        fail(f"rgs sim: --plot {path}: the chart is a PNG; name it FILE.png")
    if not target.parent.is_dir():
        fail(f"rgs sim: --plot {path}: folder {target.parent} does not exist")


def _with_workers(args: argparse.Namespace, work: Any) -> Any:
    """Run ``work(workers)`` in process (``--workers 0``) or on Ray."""
    if args.workers == 0:
        return work(0)
    from sims.runner import cluster_cpus, ray_cluster

    with ray_cluster(args.address):
        return work(args.workers or cluster_cpus())


def _money(text: str | None, code: str, option: str) -> int | None:
    if text is None:
        return None
    from core.money import parse_amount

    try:
        return parse_amount(text, code)
    except MoneyError as exc:
        fail(f"rgs sim exposure: {option} {text!r}: {exc}")


def _show(minor: float, code: str) -> str:
    from core.money import format_amount

    return f"{format_amount(round(minor), code)} {code}"


# --------------------------------------------------------------------------- rtp


def _run_rtp(args: argparse.Namespace) -> int:
    from sims.files import load_paytables
    from sims.rtp import simulate_rtp

    _check_plot(args.plot)
    tables = load_paytables(args.paytable)
    if args.spots is not None:
        tables.for_spots(args.spots)  # an unknown table fails before Ray starts
    report = _with_workers(args, lambda workers: simulate_rtp(
        tables, tickets=args.tickets, seed=args.seed, spots=args.spots, workers=workers,
        tickets_per_draw=args.tickets_per_draw, progress=not args.quiet))
    return _report(args, report, "plot_rtp", _format_rtp)



def _report(args: argparse.Namespace, report: Any, plotter: str, formatter: Any) -> int:
    """What every sim command does with its result: optional PNG, then JSON or a summary."""
    if args.plot:
        from sims import plots

        getattr(plots, plotter)(report, args.plot)
    data = report.to_json()
    if args.plot:
        data["plot"] = args.plot
    if args.json:
        emit_json(data)
    else:
        print(formatter(data))
    return 0


def _format_rtp(data: dict[str, Any]) -> str:
    lines = [
        f"rgs sim rtp: seed {data['seed']}, {data['workers']} workers, {data['seconds']:.1f} s, "
        f"{data['tickets']:,} tickets ({(data['tickets_per_s'] or 0) / 1e6:,.1f}M/s)",
        f"{'spots':>5} {'tickets':>14} {'exact RTP':>10} {'simulated':>10} {'99% CI':>21} "
        f"{'in CI':>5} {'SD':>8} {'tickets for ±0.1%':>18}",
    ]
    notes = []
    for t in data["tables"]:
        low, high = t["ci99"]
        interval = "too few draws" if low is None or high is None else f"[{low:.3%}, {high:.3%}]"
        verdict = {True: "yes", False: "NO", None: "n/a"}[t["within_ci"]]
        lines.append(
            f"{t['spots']:>5} {t['tickets']:>14,} {t['exact_rtp']:>10.4%} {t['simulated_rtp']:>10.4%} "
            f"{interval:>21} {verdict:>5} "
            f"{t['exact_sd']:>8.3f} {t['tickets_for_precision']:>18,}"
        )
        if not t["ci_reliable"]:
            notes.append(f"  {t['spots']} spots: prizes too rare for {t['tickets']:,} tickets carry "
                         f"much of the variance; the interval is optimistic below "
                         f"~{t['tickets_for_reliable_ci']:,} tickets")
    lines.append("CI from per-draw means (tickets of one draw are not independent); "
                 f"{data['tables'][0]['tickets_per_draw']} tickets per draw")
    if notes:
        lines.append("caution:")
        lines.extend(notes)
    if "plot" in data:
        lines.append(f"plot: {data['plot']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- exposure


def _run_exposure(args: argparse.Namespace) -> int:
    from sims.book import load_book, parse_spot_mix, parse_stake_distribution, synthetic_book
    from sims.exposure import simulate_exposure
    from sims.files import load_paytables

    _check_plot(args.plot)
    if (args.bankroll is None) != (args.horizon_days is None):
        fail("rgs sim exposure: --bankroll and --horizon-days go together")
    synthetic_only = {"--paytable": args.paytable, "--players": args.players,
                      "--spot-mix": args.spot_mix, "--stake-dist": args.stake_dist,
                      "--clustering": args.clustering, "--currency": args.currency}
    if args.book is not None:
        given = [name for name, value in synthetic_only.items() if value is not None]
        if given:
            fail(f"rgs sim exposure: {', '.join(given)} only apply to --synthetic; "
                 "a book file states its own tickets and paytables")
        book = load_book(args.book)
    else:
        if args.paytable is None:
            fail("rgs sim exposure: --synthetic needs --paytable FILE")
        tables = load_paytables(args.paytable)
        mix = parse_spot_mix(args.spot_mix, tables) if args.spot_mix else None
        from core.money import currency

        try:
            code = currency(args.currency or "EUR").code
        except MoneyError as exc:
            fail(f"rgs sim exposure: --currency: {exc}")
        book = synthetic_book(tables, players=args.players or 1000, spot_mix=mix,
                              stakes=parse_stake_distribution(args.stake_dist or "100"),
                              clustering=args.clustering or 0.0, seed=args.seed,
                              currency_code=code)
    cap = _money(args.cap, book.currency, "--cap")
    bankroll = _money(args.bankroll, book.currency, "--bankroll")
    report = _with_workers(args, lambda workers: simulate_exposure(
        book, rounds=args.rounds, seed=args.seed, cap=cap, bankroll=bankroll,
        horizon_days=args.horizon_days, paths=args.paths, workers=workers,
        progress=not args.quiet))
    return _report(args, report, "plot_exposure", _format_exposure)


def _format_exposure(data: dict[str, Any]) -> str:
    book, pay, code = data["book"], data["payout"], data["book"]["currency"]
    lines = [
        f"book: {book['source']}; {book['tickets']:,} tickets, stakes "
        f"{_show(book['stake_per_round_minor'], code)} per round",
        f"rounds: {data['rounds']:,} (seed {data['seed']}, {data['workers']} workers, "
        f"{data['seconds']:.1f} s); every ticket of a round shares its draw",
        f"payout per round: mean {_show(pay['mean_minor'], code)} (exact "
        f"{_show(pay['exact_mean_minor'], code)}), sd {_show(pay['sd_minor'], code)}",
        f"  p99   {_show(pay['p99']['value_minor'], code)}  99% CI "
        f"[{_show(pay['p99']['ci99'][0], code)}, {_show(pay['p99']['ci99'][1], code)}]",
        f"  p99.9 {_show(pay['p999']['value_minor'], code)}  99% CI "
        f"[{_show(pay['p999']['ci99'][0], code)}, {_show(pay['p999']['ci99'][1], code)}]",
        f"  max   {_show(pay['max_minor'], code)} (bound: {_show(book['max_payout_bound_minor'], code)})",
        f"house pays out more than it took in {pay['p_house_loses']:.3%} of rounds",
    ]
    if data["cap"]:
        cap = data["cap"]
        low, high = cap["p_binds_ci99"]
        lines.append(f"cap {_show(cap['cap_minor'], code)} binds in {cap['p_binds']:.4%} of rounds "
                     f"(99% CI {low:.4%}..{high:.4%}); mean payout after cap "
                     f"{_show(cap['mean_capped_payout_minor'], code)}")
    if data["ruin"]:
        ruin = data["ruin"]
        low, high = ruin["p_ruin_ci99"]
        lines.append(
            f"risk of ruin, bankroll {_show(ruin['bankroll_minor'], code)} over "
            f"{ruin['horizon_days']:g} days ({ruin['horizon_rounds']:,} rounds, {ruin['paths']:,} "
            f"paths): {ruin['p_ruin']:.3%} (99% CI {low:.3%}..{high:.3%})"
        )
        lines.append(f"  ({ruin['method']}: no round worse than the worst simulated one)")
    if "distribution" in data:
        lines.append("one-ticket book: payout, exact probability, simulated frequency")
        lines.extend(f"  {_show(row['payout_minor'], code):>16} {row['exact']:.3e} {row['simulated']:.3e}"
                     for row in data["distribution"])
    if "plot" in data:
        lines.append(f"plot: {data['plot']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- capacity


def _run_capacity(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from sims.capacity import plan_capacity, sweep_capacity
    from sims.service import load_config

    _check_plot(args.plot)
    config = load_config(args.service_times)
    if args.window is not None:
        if args.window <= config.workload.warmup_seconds:
            fail(f"rgs sim capacity: --window must exceed the {config.workload.warmup_seconds:g} s warm-up")
        config = replace(config, workload=replace(config.workload, window_seconds=args.window))
    if args.no_settlement:
        config = replace(config, workload=replace(config.workload, settlement=False))
    if args.client_workers is not None:
        config = replace(config, workload=replace(config.workload, client_workers=args.client_workers))
    if args.node_cores is not None:
        config = replace(config, service=replace(config.service, node_cores=args.node_cores))
    if args.router_in_flight is not None:
        config = replace(config, service=replace(config.service, router_in_flight=args.router_in_flight))
    report = plan_capacity(
        players=args.players, bets_per_minute=args.bets_per_minute, tables=args.tables,
        config=config, target_p99_ms=args.target_p99_ms, replicas=args.replicas,
        shards=args.shards, seed=args.seed, progress=not args.quiet)
    if args.sweep:
        report = _with_workers(args, lambda workers: sweep_capacity(
            report, config=config, workers=workers, progress=not args.quiet))
    return _report(args, report, "plot_capacity", _format_capacity)


def _format_capacity(data: dict[str, Any]) -> str:
    inputs, rec, ev = data["inputs"], data["recommendation"], data["evaluated"]
    util, lat = ev["utilization"], ev["latency_ms"]
    worst_shard = max(ev["per_shard"], key=lambda row: row["p99_ms"])
    worst_replica = max(ev["per_replica"], key=lambda row: row["p99_ms"])
    lines = [
        f"load: {inputs['players']:,} players x {inputs['bets_per_minute']:g} bets/min = "
        f"{ev['bets_per_s_daily_mean']:,.0f} bets/s daily mean; simulated {ev['window_s']:g} s at "
        f"the daily peak with a burst: {ev['bets_per_s_window']:,.0f} bets/s, busiest second "
        f"{ev['bets_per_s_peak_second']:,}",
        f"{'meets' if rec['feasible'] else 'MISSES'} p99 {rec['target_p99_ms']:g} ms with "
        f"{rec['replicas']} Serve replicas, {rec['shards']} account shards, {inputs['tables']} "
        f"tables: {rec['nodes']} nodes of {rec['cores_per_node']} cores ({rec['reason']})",
        f"{ev['requests_per_s_window']:,.0f} wallet requests/s"
        f"{'' if ev['settlement'] else ' (bets and wins; no round-end settlement)'} through "
        f"{ev['providers']} provider adapter(s), {ev['adapter_calls_per_s']:,.0f} adapter calls/s",
        f"request latency ms: p50 {lat['p50']:.1f}, p99 {lat['p99']:.1f}, p99.9 {lat['p999']:.1f}, "
        f"max {lat['max']:.1f}",
        "p99 per stage ms: " + ", ".join(f"{k} {v:.1f}" for k, v in ev["stage_p99_ms"].items()),
        f"utilization: replicas max {util['replica_max']:.0%}, adapter max "
        f"{util['adapter_max']:.0%}, shards max {util['shard_max']:.0%}, "
        f"database {util['db']:.0%}; {ev['commits_per_s']:,.0f} commits/s of "
        f"{ev['mean_group_size']:.1f} entries, {ev['record_writes_per_s']:,.0f} record writes/s",
        f"CPU demand {util['cpu_demand_cores']:.2f} cores"
        + (f" on one node of {ev['node_cores']} shared cores ({util['node_cpu']:.0%})" if ev["node_cores"]
           else " (each process on a core of its own)")
        + f"; router: {ev['calls_per_s']:,.0f} shard requests/s, "
        + (f"{ev['router_in_flight']} in flight per shard" if ev["router_in_flight"] else "no in-flight limit"),
        f"worst shard: #{worst_shard['shard']} p99 {worst_shard['p99_ms']:.1f} ms at "
        f"{worst_shard['utilization']:.0%}; worst replica: #{worst_replica['replica']} queue+service "
        f"p99 {worst_replica['p99_ms']:.1f} ms at {worst_replica['utilization']:.0%} (all in --json)",
        f"settlement (round end to last credit committed) p99 {ev['settlement_ms']['p99']:.1f} ms",
        f"search: {len(data['search'])} simulations; inputs: {'; '.join(inputs['sources'])}",
    ]
    if data["sweep"]:
        lines.append(f"{'load':>6} {'shards':>6} {'bets/s':>10} {'p50 ms':>9} {'p99 ms':>10} stable")
        lines.extend(
            f"{row['load']:>6.2f} {row['shards']:>6} {row['bets_per_s_window']:>10,.0f} "
            f"{row['p50_ms']:>9.1f} {row['p99_ms']:>10.1f} {'yes' if row['stable'] else 'no'}"
            for row in data["sweep"]
        )
    if "plot" in data:
        lines.append(f"plot: {data['plot']}")
    return "\n".join(lines)
