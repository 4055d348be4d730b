"""Ticket books: the tickets in play in one round, real (from a file) or synthetic.

Book file (JSON; money in integer minor units, never floats)::

    {
      "currency": "EUR",                      # a code core.money knows
      "paytables": "keno_paytables.json",     # path relative to this file, or the
                                              # paytable document itself, inline
      "max_win_minor": 5000000,               # optional per-ticket cap, minor units
      "tickets": [
        {"picks": [3, 17, 22, 41], "stake_minor": 200},
        {"picks": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "stake_minor": 100, "count": 25}
      ]
    }

``count`` (default 1) repeats a ticket, e.g. many players on the same favourite numbers.
Each ticket's spot count is its number of picks and must have a paytable in the set.

A payout is ``Paytable.payout(stake, hits, max_win_minor=...)`` of ``core.keno``, i.e.
``floor(stake × multiplier)`` in exact integer arithmetic. A book precomputes that for
every ticket and hit count once (``payout_table``), so simulations only look integers up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.errors import MoneyError, ProtocolError
from core.keno import PaytableSet, validate_picks
from core.money import check_minor, currency
from sims import SimulationError
from sims.bitmask import Masks, masks_from_numbers, weighted_subsets
from sims.files import load_json, load_paytables, paytables_from_document
from sims.runner import seed_sequence

__all__ = [
    "BOOK_STREAM",
    "Book",
    "StakeDistribution",
    "load_book",
    "number_weights",
    "parse_spot_mix",
    "parse_stake_distribution",
    "synthetic_book",
]

#: Spawn key of the random stream that builds synthetic books (distinct from draws').
BOOK_STREAM = 101
_MAX_COUNT = 10_000_000
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Book:
    """Tickets in play each round: picks, spots and stakes, one entry per ticket."""

    currency: str
    tables: PaytableSet
    picks: Masks
    spots: npt.NDArray[np.uint8]
    stakes: npt.NDArray[np.int64]
    max_win_minor: int | None
    source: str

    def __len__(self) -> int:
        return len(self.picks)

    @property
    def stake_per_round(self) -> int:
        return int(sum(int(s) for s in self.stakes.tolist()))

    @cached_property
    def payout_table(self) -> npt.NDArray[np.int64]:
        """``table[t, h]``: integer payout of ticket ``t`` with ``h`` hits (0 past its spots).

        Also proves a round's total cannot overflow int64: the sum of every ticket's
        largest payout must fit, or the simulation refuses to run.
        """
        width = max(self.tables.spots) + 1
        table = np.zeros((len(self), width), dtype=np.int64)
        keys = np.stack([self.spots.astype(np.int64), self.stakes], axis=1)
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        rows = np.zeros((len(unique), width), dtype=np.int64)
        tickets_per_row = np.bincount(inverse.ravel(), minlength=len(unique)).tolist()
        worst_total = 0
        for row, (spots, stake) in enumerate(unique.tolist()):
            paytable = self.tables.for_spots(int(spots))
            pays = [paytable.payout(int(stake), h, max_win_minor=self.max_win_minor)
                    for h in range(int(spots) + 1)]
            if max(pays) > _INT64_MAX:
                raise SimulationError(f"a {spots}-spot ticket of {stake} can win more than int64")
            rows[row, : len(pays)] = pays
            worst_total += max(pays) * tickets_per_row[row]
        if worst_total > _INT64_MAX:
            raise SimulationError(
                "the book's largest possible round payout exceeds int64; split the book"
            )
        table[:] = rows[inverse.ravel()]
        return table

    def exact_mean_payout(self) -> Fraction:
        """Expected total payout of a round: linearity of expectation holds even though
        tickets sharing a draw are correlated."""
        table = self.payout_table
        total = Fraction(0)
        for spots in np.unique(self.spots).tolist():
            probabilities = self.tables.for_spots(int(spots)).probabilities()
            sums = table[self.spots == spots, : int(spots) + 1].sum(axis=0).tolist()
            total += sum((Fraction(int(s)) * p for s, p in zip(sums, probabilities, strict=True)),
                         Fraction(0))
        return total

    def spot_mix(self) -> dict[int, int]:
        values, counts = np.unique(self.spots, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def _check_stake(value: object, where: str) -> int:
    try:
        stake = check_minor(value, what=f"{where}.stake_minor")
    except MoneyError as exc:
        raise SimulationError(str(exc)) from None
    if stake == 0:
        raise SimulationError(f"{where}.stake_minor must be positive")
    if stake > _INT64_MAX:
        raise SimulationError(f"{where}.stake_minor {stake} is beyond what a simulation holds (int64)")
    return stake


def load_book(path: str | Path) -> Book:
    """The ticket book in the JSON file at ``path`` (format in this module's docstring)."""
    document = load_json(path, "book file")
    where = f"book file {path}"
    if not isinstance(document, Mapping):
        raise SimulationError(f"{where}: expected a JSON object")
    unknown = sorted(set(document) - {"currency", "paytables", "max_win_minor", "tickets"})
    if unknown:
        raise SimulationError(f"{where}: unknown key {unknown[0]!r}")
    try:
        code = currency(document.get("currency", "EUR")).code
    except MoneyError as exc:
        raise SimulationError(f"{where}: {exc}") from None
    raw_tables = document.get("paytables")
    if isinstance(raw_tables, str):
        tables = load_paytables(Path(path).parent / raw_tables)
    elif isinstance(raw_tables, Mapping):
        tables = paytables_from_document(raw_tables, f"{where}: paytables")
    else:
        raise SimulationError(f'{where}: "paytables" must be a file path or a paytable document')
    max_win = document.get("max_win_minor")
    if max_win is not None:
        try:
            max_win = check_minor(max_win, what=f"{where}: max_win_minor")
        except MoneyError as exc:
            raise SimulationError(str(exc)) from None
    raw_tickets = document.get("tickets")
    if not isinstance(raw_tickets, list) or not raw_tickets:
        raise SimulationError(f'{where}: "tickets" must be a non-empty list')
    numbers: list[tuple[int, ...]] = []
    stakes: list[int] = []
    for index, ticket in enumerate(raw_tickets):
        at = f"{where}: tickets[{index}]"
        if not isinstance(ticket, Mapping):
            raise SimulationError(f"{at}: expected an object with picks and stake_minor")
        extra = sorted(set(ticket) - {"picks", "stake_minor", "count"})
        if extra:
            raise SimulationError(f"{at}: unknown key {extra[0]!r}")
        try:
            picks = validate_picks(ticket.get("picks", ()), tables.game)
        except ProtocolError as exc:
            raise SimulationError(f"{at}.picks: {exc}") from None
        if len(picks) not in tables.tables:
            offered = ", ".join(str(s) for s in tables.spots)
            raise SimulationError(f"{at}: no paytable for {len(picks)} spots (offered: {offered})")
        stake = _check_stake(ticket.get("stake_minor"), at)
        count = ticket.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= _MAX_COUNT:
            raise SimulationError(f"{at}.count must be an integer in 1..{_MAX_COUNT}")
        numbers.extend([picks] * count)
        stakes.extend([stake] * count)
    return Book(
        currency=code,
        tables=tables,
        picks=masks_from_numbers(numbers, tables.game.pool),
        spots=np.array([len(p) for p in numbers], dtype=np.uint8),
        stakes=np.array(stakes, dtype=np.int64),
        max_win_minor=max_win,
        source=f"file {path}",
    )


# --------------------------------------------------------------------------- synthetic


@dataclass(frozen=True)
class StakeDistribution:
    """Stakes in minor units: weighted fixed values, or lognormal around a median."""

    values: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    lognormal: tuple[float, float] | None = None  # (median, sigma)

    def sample(self, rng: np.random.Generator, count: int) -> npt.NDArray[np.int64]:
        if self.lognormal is not None:
            median, sigma = self.lognormal
            raw = rng.lognormal(math.log(median), sigma, size=count)
            return np.maximum(1, np.rint(raw)).astype(np.int64)
        p = np.asarray(self.weights) / sum(self.weights)
        return np.asarray(self.values, dtype=np.int64)[rng.choice(len(self.values), count, p=p)]


def _weighted_pairs(text: str, what: str) -> list[tuple[str, float]]:
    pairs = []
    for part in text.split(","):
        key, sep, weight = part.strip().partition(":")
        try:
            value = float(weight) if sep else math.nan
        except ValueError:
            value = math.nan
        if not key or not math.isfinite(value) or value <= 0:
            raise SimulationError(f"{what}: expected VALUE:WEIGHT,... with positive weights, got {text!r}")
        pairs.append((key.strip(), value))
    return pairs


def parse_spot_mix(text: str, tables: PaytableSet) -> dict[int, float]:
    """``"4:0.3,10:0.7"`` -> ``{4: 0.3, 10: 0.7}``; every spot count needs a paytable."""
    mix: dict[int, float] = {}
    for key, weight in _weighted_pairs(text, "spot mix"):
        if not key.isdigit() or int(key) not in tables.tables:
            offered = ", ".join(str(s) for s in tables.spots)
            raise SimulationError(f"spot mix: no paytable for {key!r} spots (offered: {offered})")
        mix[int(key)] = mix.get(int(key), 0.0) + weight
    return mix


def parse_stake_distribution(text: str) -> StakeDistribution:
    """``"100:0.6,500:0.3,2500:0.1"`` (minor units: weight) or ``"lognormal:MEDIAN:SIGMA"``."""
    if text.startswith("lognormal:"):
        parts = text.split(":")
        try:
            median, sigma = float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            median = sigma = math.nan
        if len(parts) != 3 or not (median >= 1 and 0 <= sigma <= 5):
            raise SimulationError(
                f"stake distribution: expected lognormal:MEDIAN:SIGMA with MEDIAN >= 1 minor unit"
                f" and 0 <= SIGMA <= 5, got {text!r}"
            )
        return StakeDistribution(lognormal=(median, sigma))
    values, weights = [], []
    for key, weight in _weighted_pairs(text, "stake distribution"):
        if not key.isdigit() or int(key) < 1:
            raise SimulationError(f"stake distribution: stake {key!r} is not a positive integer of minor units")
        values.append(int(key))
        weights.append(weight)
    return StakeDistribution(tuple(values), tuple(weights))


# Numbers players favour: birthdays (1..31) and a few "lucky" ones. Only the shape
# matters; ``clustering`` scales how strongly players follow it.
_LUCKY = (3, 7, 9, 11, 13, 17, 21, 27)


def number_weights(pool: int, clustering: float) -> list[float]:
    """Pick weight of each number 1..pool: uniform at 0, strongly clustered at 1."""
    if not 0.0 <= clustering <= 1.0:
        raise SimulationError(f"clustering must be between 0 and 1, got {clustering}")
    weights = []
    for number in range(1, pool + 1):
        weight = 1.0
        if number <= 31:
            weight += 2.0 * clustering
        if number in _LUCKY:
            weight += 6.0 * clustering
        weights.append(weight)
    return weights


def synthetic_book(
    tables: PaytableSet,
    *,
    players: int,
    spot_mix: Mapping[int, float] | None = None,
    stakes: StakeDistribution | None = None,
    clustering: float = 0.0,
    seed: int = 0,
    currency_code: str = "EUR",
    max_win_minor: int | None = None,
) -> Book:
    """One ticket per player, spots from ``spot_mix``, stakes from ``stakes``, picks
    favouring popular numbers as much as ``clustering`` says (0 = uniform)."""
    if not 1 <= players <= _MAX_COUNT:
        raise SimulationError(f"players must be in 1..{_MAX_COUNT}, got {players}")
    mix = dict(spot_mix) if spot_mix else {s: 1.0 for s in tables.spots}
    stakes = stakes or StakeDistribution(values=(100,), weights=(1.0,))
    rng = np.random.Generator(np.random.PCG64(seed_sequence(seed, BOOK_STREAM)))
    spot_values = np.array(sorted(mix), dtype=np.uint8)
    p = np.array([mix[int(s)] for s in spot_values]) / sum(mix.values())
    spots = spot_values[rng.choice(len(spot_values), players, p=p)]
    weights = number_weights(tables.game.pool, clustering)
    lo = np.zeros(players, dtype=np.uint64)
    hi = np.zeros(players, dtype=np.uint16)
    for value in spot_values.tolist():
        rows = np.flatnonzero(spots == value)
        masks = weighted_subsets(rng, len(rows), int(value), weights)
        lo[rows], hi[rows] = masks.lo, masks.hi
    return Book(
        currency=currency(currency_code).code,
        tables=tables,
        picks=Masks(lo, hi),
        spots=spots,
        stakes=stakes.sample(rng, players),
        max_win_minor=max_win_minor,
        source=f"synthetic: {players} players, clustering {clustering}",
    )

