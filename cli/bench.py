"""``rgs bench NAME``: benchmarks that print ours against a baseline measured in the same run.

Every benchmark returns one dict shaped
``{"name", "ours": {"per_s", "p50_ms", "p99_ms"}, "baseline": {...}, "ratio", ...extras}``.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from cli.base import add_config_flag, add_json_flag, emit_json, fail

__all__ = ["BENCHMARKS", "register"]

# name -> "module:function"; the function takes the parsed args and returns the result dict.
BENCHMARKS: dict[str, str] = {
    "ledger": "actors.bench_ledger:run_bench",
    "wallet": "serve.bench_wallet:run_bench",
    "sims": "sims.bench:run_bench",
    "settle": "actors.bench_settle:run_bench",
    "operator": "serve.bench_operator:run_bench",
}


def register(sub: Any) -> None:
    parser = sub.add_parser("bench", help="run a benchmark against its baseline, side by side")
    parser.add_argument("name", help=f"one of: {', '.join(sorted(BENCHMARKS))}")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measured side")
    parser.add_argument("--concurrency", type=int, default=None, help="requests/commands in flight")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    parser.add_argument("--tickets", type=int, default=None, help="settle: tickets in the round (default 100000)")
    parser.add_argument("--players", type=int, default=None, help="settle: players holding them (default 5000)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="wallet: measure ours and the baseline alternately N times; report the median round (default 1)")
    parser.add_argument("--floor", action="store_true",
                        help="wallet: also measure the least any wallet must do (verify, parse, commit a row)")
    add_config_flag(parser)
    add_json_flag(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    target = BENCHMARKS.get(args.name)
    if target is None:
        fail(f"rgs bench: unknown benchmark {args.name!r}; choose one of {', '.join(sorted(BENCHMARKS))}")
    module_name, func_name = target.split(":")
    result: dict[str, Any] = getattr(importlib.import_module(module_name), func_name)(args)
    if args.json:
        emit_json(result)
    else:
        print(format_result(result))
    return 0


def format_result(result: dict[str, Any]) -> str:
    lines = [f"benchmark {result['name']}"]
    for side in ("ours", "baseline"):
        figures = result[side]
        lines.append(
            f"  {side:<9} {figures['per_s']:>14,.0f} /s   p50 {figures['p50_ms']:8.2f} ms"
            f"   p99 {figures['p99_ms']:8.2f} ms"
        )
    lines.append(f"  ratio     {result['ratio']:.2f}x")
    for key, value in result.items():
        if key not in ("name", "ours", "baseline", "ratio"):
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)
