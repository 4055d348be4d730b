"""``rgs keno ...``: Keno paytable mathematics.

``rgs keno rtp --paytable FILE [--json]`` computes, exactly, each paytable's return to
player, overall odds, hit frequency and standard deviation per unit bet, and sets them
beside the figures the file publishes (``rtp_percent``, ``overall_odds_1_in``). Tables are
listed by spots in descending order (10 first), like the published prize tables.
Differences are ``computed - published``.
"""

from __future__ import annotations

import argparse
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

from cli.base import Parser, add_json_flag, emit_json, fail
from core import strict_json
from core.errors import PaytableError
from core.keno import Paytable, PaytableSet, Published, parse_paytables

__all__ = ["format_rtp_report", "load_paytable_file", "register", "rtp_report"]


def register(sub: Any) -> None:
    keno = sub.add_parser("keno", help="Keno paytable mathematics (RTP, odds, volatility)")
    keno_sub = keno.add_subparsers(dest="keno_command", metavar="SUBCOMMAND", parser_class=Parser)
    keno_sub.required = True
    rtp = keno_sub.add_parser(
        "rtp",
        help="exact RTP, overall odds and SD per spots, against the published figures",
        description=(
            "Compute each paytable's RTP, overall odds, hit frequency and SD per unit bet "
            "exactly from the hypergeometric distribution, and compare them with the "
            "figures the file publishes."
        ),
    )
    rtp.add_argument("--paytable", required=True, metavar="FILE", help="paytable JSON file")
    add_json_flag(rtp)
    rtp.set_defaults(handler=_run_rtp)


def load_paytable_file(path: str) -> tuple[PaytableSet, dict[int, Published]]:
    """Read and validate a paytable JSON file; any failure is a one-line ``CliError``."""
    prefix = "rgs keno rtp"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"{prefix}: cannot read {path}: no such file")
    except IsADirectoryError:
        fail(f"{prefix}: cannot read {path}: it is a directory")
    except UnicodeDecodeError:
        fail(f"{prefix}: cannot read {path}: not UTF-8 text")
    except OSError as exc:
        fail(f"{prefix}: cannot read {path}: {exc.strerror or exc}")
    try:
        data = strict_json.loads(text)
    except json.JSONDecodeError as exc:
        fail(
            f"{prefix}: {path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        )
    except strict_json.DuplicateKeyError as exc:
        fail(f"{prefix}: {path} is not valid JSON for a paytable: duplicate key {json.dumps(exc.key)}")
    except (ValueError, RecursionError) as exc:
        fail(f"{prefix}: {path} is not valid JSON: {exc}")
    try:
        return parse_paytables(data, name=Path(path).stem or "default")
    except PaytableError as exc:
        fail(f"{prefix}: {path}: {exc}")


def _fraction_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def _table_report(table: Paytable, published: Published | None) -> dict[str, Any]:
    rtp_percent = table.rtp() * 100
    odds = table.overall_odds()
    pub: dict[str, float | None] | None = None
    diff: dict[str, float | None] | None = None
    if published is not None and (
        published.rtp_percent is not None or published.overall_odds_1_in is not None
    ):
        pub, diff = {}, {}
        for key, computed, stated in (
            ("rtp_percent", rtp_percent, published.rtp_percent),
            ("overall_odds_1_in", odds, published.overall_odds_1_in),
        ):
            pub[key] = None if stated is None else float(stated)
            diff[key] = None if stated is None else float(computed - Fraction(stated))
    return {
        "rtp_percent": float(rtp_percent),
        "overall_odds_1_in": float(odds),
        "sd": table.sd(),
        "hit_frequency": float(table.hit_frequency()),
        "rtp_exact": _fraction_text(table.rtp()),
        "published": pub,
        "difference": diff,
    }


def rtp_report(tables: PaytableSet, published: dict[int, Published]) -> dict[str, Any]:
    """The ``--json`` document: per spots (descending) computed and published figures."""
    return {
        "game": tables.game.label,
        "paytables": {
            str(spots): _table_report(tables.for_spots(spots), published.get(spots))
            for spots in sorted(tables.tables, reverse=True)
        },
    }


def _cell(value: float | None, spec: str, width: int) -> str:
    """``value`` formatted with ``spec`` (e.g. ``"+.4f"``), right-aligned; ``-`` when absent."""
    return f"{'-':>{width}}" if value is None else f"{format(value, spec):>{width}}"


def format_rtp_report(report: dict[str, Any], source: str) -> str:
    lines = [
        f"Keno {report['game']}: paytables from {source}",
        "computed exactly from the hypergeometric distribution; diff = computed - published",
        "",
        f"{'spots':>5}  {'RTP %':>9} {'published':>9} {'diff':>8}  "
        f"{'odds 1 in':>12} {'published':>9} {'diff':>8}  {'hit freq':>8}  {'SD/unit':>10}",
    ]
    for spots, row in report["paytables"].items():
        pub = row["published"] or {}
        diff = row["difference"] or {}
        lines.append(
            f"{spots:>5}  {row['rtp_percent']:>9.4f} "
            f"{_cell(pub.get('rtp_percent'), '.2f', 9)} {_cell(diff.get('rtp_percent'), '+.4f', 8)}  "
            f"{row['overall_odds_1_in']:>12.4f} "
            f"{_cell(pub.get('overall_odds_1_in'), '.2f', 9)} "
            f"{_cell(diff.get('overall_odds_1_in'), '+.4f', 8)}  "
            f"{row['hit_frequency'] * 100:>7.3f}%  {row['sd']:>10.4f}"
        )
    return "\n".join(lines)


def _run_rtp(args: argparse.Namespace) -> int:
    tables, published = load_paytable_file(args.paytable)
    report = rtp_report(tables, published)
    if args.json:
        emit_json(report)
    else:
        print(format_rtp_report(report, args.paytable))
    return 0
