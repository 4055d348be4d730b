"""Keno rules and their exact mathematics.

A Keno game draws ``drawn`` distinct numbers out of ``1..pool`` (the product plays
20 of 80). A player picks ``spots`` numbers (1..10 here); the number of *hits* (picks
that were drawn) follows the hypergeometric distribution::

    P(h hits) = C(drawn, h) * C(pool - drawn, spots - h) / C(pool, spots)

A :class:`Paytable` says, for one spot count, what a ticket returns per unit of stake
for each hit count (the *total* return, stake included: a pay of 1 gives the stake
back). Every figure here is exact: probabilities and multipliers are
:class:`fractions.Fraction`, money is an integer number of minor units, and a payout
is ``floor(stake * multiplier)`` so rounding always favours the house by less than
one minor unit.

Multipliers are accepted as ``int``, ``Fraction``, finite ``Decimal`` or a decimal
*string* such as ``"2.5"``. **Floats are always rejected**, even integral ones such as
``2.0``: a binary float cannot carry an exact decimal, and the money path takes
integers only. In a JSON paytable write ``2`` or ``"2.5"``, never ``2.5``. The published
statistics of a paytable file (``rtp_percent``, ``overall_odds_1_in``) are not money;
JSON floats are accepted there and converted with ``Decimal(str(x))``.

This module performs no I/O: :func:`parse_paytables` takes an already-loaded mapping.

Errors: a table or game that cannot be played raises :class:`~core.errors.PaytableError`
(naming the location, e.g. ``paytables["4"].pays["5"]``); bad player picks raise
:class:`~core.errors.ProtocolError`; a stake or cap that is not a positive integer of
minor units raises :class:`~core.errors.AmountFormatError` /
:class:`~core.errors.NegativeAmountError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any, Generic, TypeVar

from core.errors import (
    AmountFormatError,
    NegativeAmountError,
    PaytableError,
    ProtocolError,
)

__all__ = [
    "GAME_80_20",
    "MAX_SPOTS",
    "FrozenMap",
    "KenoGame",
    "MultiplierLike",
    "Paytable",
    "PaytableSet",
    "Published",
    "count_hits",
    "parse_multiplier",
    "parse_paytables",
    "validate_picks",
]

#: The most numbers a player may pick on this product.
MAX_SPOTS = 10

#: What :func:`parse_multiplier` accepts (floats are deliberately absent).
MultiplierLike = int | Fraction | Decimal | str

K = TypeVar("K")
V = TypeVar("V")

_DECIMAL_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)
_COUNT_KEY_RE = re.compile(r"0|[1-9][0-9]{0,5}", re.ASCII)
_GAME_RE = re.compile(r"\s*([0-9]{1,6})\s+of\s+([0-9]{1,6})\s*", re.ASCII | re.IGNORECASE)


class FrozenMap(Mapping[K, V], Generic[K, V]):
    """An immutable, hashable mapping (keys kept in ascending order when sortable)."""

    __slots__ = ("_data",)

    def __init__(self, items: Mapping[K, V] | Iterable[tuple[K, V]] = ()) -> None:
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
        try:
            pairs.sort(key=lambda kv: kv[0])  # type: ignore[arg-type,return-value]
        except TypeError:
            pass
        self._data: dict[K, V] = dict(pairs)

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


# --------------------------------------------------------------------------- helpers


def _kind(value: object) -> str:
    """The JSON name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | Decimal | Fraction):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _key(key: object) -> str:
    return f"[{json.dumps(key)}]" if isinstance(key, str) else f"[{key!r}]"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_multiplier(value: object, *, where: str = "multiplier") -> Fraction:
    """An exact, non-negative multiplier from an int, Fraction, finite Decimal or decimal string.

    Floats (even ``2.0``), booleans, exponents (``"1e3"``), NaN and negatives are rejected
    with a :class:`PaytableError` that starts with ``where``.
    """
    if isinstance(value, bool):
        raise PaytableError(f"{where}: expected a number, got boolean {value!r}")
    if isinstance(value, float):
        raise PaytableError(
            f"{where}: {value!r} is a float; write multipliers as integers or decimal "
            f'strings such as "2.5" so they stay exact'
        )
    result: Fraction
    if isinstance(value, int):
        result = Fraction(value)
    elif isinstance(value, Fraction):
        result = value
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise PaytableError(f"{where}: {value} is not a finite number")
        result = Fraction(value)
    elif isinstance(value, str):
        if not _DECIMAL_RE.fullmatch(value) or len(value) > 200:
            raise PaytableError(
                f'{where}: {json.dumps(value)} is not a plain decimal such as "2" or "2.5"'
            )
        result = Fraction(value)
    else:
        raise PaytableError(f"{where}: expected an integer or decimal string, got {_kind(value)}")
    if result < 0:
        raise PaytableError(f"{where}: must be >= 0, got {result}")
    return result


# --------------------------------------------------------------------------- game


@lru_cache(maxsize=256)
def _hit_probabilities(pool: int, drawn: int, spots: int) -> tuple[Fraction, ...]:
    total = math.comb(pool, spots)
    misses = pool - drawn
    return tuple(
        Fraction(math.comb(drawn, h) * math.comb(misses, spots - h), total)
        for h in range(spots + 1)
    )


@dataclass(frozen=True)
class KenoGame:
    """``drawn`` distinct numbers out of ``1..pool`` per round (default: 20 of 80)."""

    pool: int = 80
    drawn: int = 20

    def __post_init__(self) -> None:
        if not _is_int(self.pool) or not _is_int(self.drawn):
            raise PaytableError(
                f"keno game: pool and drawn must be integers, got pool={self.pool!r}, "
                f"drawn={self.drawn!r}"
            )
        if self.pool < 2:
            raise PaytableError(f"keno game: pool must be at least 2 numbers, got {self.pool}")
        if not 1 <= self.drawn < self.pool:
            raise PaytableError(
                f"keno game: drawn must be in 1..{self.pool - 1} for a pool of {self.pool}, "
                f"got {self.drawn}"
            )

    @classmethod
    def parse(cls, text: str) -> KenoGame:
        """``"20 of 80"`` -> ``KenoGame(pool=80, drawn=20)``."""
        match = _GAME_RE.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise PaytableError(
                f'game: expected "DRAWN of POOL" such as "20 of 80", got {_kind(text)}'
            )
        return cls(pool=int(match.group(2)), drawn=int(match.group(1)))

    @property
    def label(self) -> str:
        """``"20 of 80"``."""
        return f"{self.drawn} of {self.pool}"

    @property
    def max_spots(self) -> int:
        """The most spots a paytable of this game may have: ``min(MAX_SPOTS, drawn)``."""
        return min(MAX_SPOTS, self.drawn)

    def hit_probabilities(self, spots: int) -> tuple[Fraction, ...]:
        """Exact ``P(h hits)`` for ``h = 0..spots``; the tuple sums to exactly 1."""
        if not _is_int(spots) or not 1 <= spots <= self.pool:
            raise PaytableError(
                f"keno game {self.label}: spots must be an integer in 1..{self.pool}, got {spots!r}"
            )
        return _hit_probabilities(self.pool, self.drawn, spots)


GAME_80_20 = KenoGame()


# --------------------------------------------------------------------------- paytable


@dataclass(frozen=True)
class Paytable:
    """What a ticket of ``spots`` picks returns per unit of stake, by number of hits.

    ``pays[h]`` is the total return of a 1-unit ticket with ``h`` hits; hit counts that
    are absent pay 0. After construction ``pays`` is an immutable :class:`FrozenMap` of
    ``Fraction`` holding only the positive pays, in ascending order of hits.
    ``max_win_multiplier`` optionally caps every pay (a per-ticket cap as a multiple of
    the stake).
    """

    spots: int
    pays: Mapping[int, Fraction]
    max_win_multiplier: Fraction | None = None
    game: KenoGame = GAME_80_20

    def __post_init__(self) -> None:
        if not isinstance(self.game, KenoGame):
            raise PaytableError(f"paytable: game must be a KenoGame, got {_kind(self.game)}")
        if not _is_int(self.spots):
            raise PaytableError(f"paytable: spots must be an integer, got {_kind(self.spots)}")
        where = f"paytable for {self.spots} spots"
        if not 1 <= self.spots <= MAX_SPOTS:
            raise PaytableError(f"{where}: spots must be in 1..{MAX_SPOTS}")
        if self.spots > self.game.drawn:
            raise PaytableError(
                f"{where}: more spots than the {self.game.drawn} numbers drawn in {self.game.label}"
            )
        if not isinstance(self.pays, Mapping):
            raise PaytableError(f"{where}: pays must be a mapping of hits to multipliers")
        pays: dict[int, Fraction] = {}
        for hits, raw in self.pays.items():
            if not _is_int(hits):
                raise PaytableError(f"{where}: hit count {hits!r} is not an integer")
            if hits < 0:
                raise PaytableError(f"{where}: pay for {hits} hits, hits cannot be negative")
            if hits > self.spots:
                raise PaytableError(f"{where}: pay for {hits} hits but only {self.spots} spots")
            value = parse_multiplier(raw, where=f"{where}: pay for {hits} hits")
            if value > 0:
                pays[hits] = value
        cap = self.max_win_multiplier
        if cap is not None:
            cap = parse_multiplier(cap, where=f"{where}: max_win_multiplier")
            if cap == 0:
                raise PaytableError(f"{where}: max_win_multiplier must be > 0 (or absent)")
        probs = self.game.hit_probabilities(self.spots)
        if not any(probs[h] > 0 for h in pays):
            raise PaytableError(
                f"{where}: nothing pays; at least one reachable hit count needs a positive pay"
            )
        object.__setattr__(self, "pays", FrozenMap(pays))
        object.__setattr__(self, "max_win_multiplier", cap)

    @classmethod
    def of(
        cls,
        spots: int,
        pays: Mapping[int, MultiplierLike],
        *,
        max_win_multiplier: MultiplierLike | None = None,
        game: KenoGame = GAME_80_20,
    ) -> Paytable:
        """Typed convenience constructor: pays given as ints, decimal strings, ..."""
        cap = (
            None
            if max_win_multiplier is None
            else parse_multiplier(
                max_win_multiplier, where=f"paytable for {spots} spots: max_win_multiplier"
            )
        )
        converted = {
            h: parse_multiplier(v, where=f"paytable for {spots} spots: pay for {h} hits")
            for h, v in pays.items()
        }
        return cls(spots=spots, pays=converted, max_win_multiplier=cap, game=game)

    # -- settling one ticket

    def multiplier(self, hits: int) -> Fraction:
        """Return per unit stake for ``hits`` hits, after ``max_win_multiplier``."""
        if not _is_int(hits) or not 0 <= hits <= self.spots:
            raise PaytableError(
                f"paytable for {self.spots} spots: hits must be an integer in 0..{self.spots}, "
                f"got {hits!r}"
            )
        value = self.pays.get(hits, Fraction(0))
        cap = self.max_win_multiplier
        return value if cap is None or value <= cap else cap

    def payout(self, stake_minor: int, hits: int, *, max_win_minor: int | None = None) -> int:
        """``floor(stake_minor * multiplier(hits))`` minor units, then at most ``max_win_minor``.

        ``stake_minor`` must be a positive ``int`` (not bool, not float);
        ``max_win_minor`` a non-negative ``int`` or ``None``.
        """
        if not _is_int(stake_minor):
            raise AmountFormatError(
                f"stake must be an integer number of minor units, got {_kind(stake_minor)}"
            )
        if stake_minor <= 0:
            raise NegativeAmountError(f"stake must be positive, got {stake_minor}")
        if max_win_minor is not None:
            if not _is_int(max_win_minor):
                raise AmountFormatError(
                    f"max_win_minor must be an integer number of minor units, got {_kind(max_win_minor)}"
                )
            if max_win_minor < 0:
                raise NegativeAmountError(f"max_win_minor must be >= 0, got {max_win_minor}")
        m = self.multiplier(hits)
        amount = (stake_minor * m.numerator) // m.denominator
        if max_win_minor is not None and amount > max_win_minor:
            return max_win_minor
        return amount

    # -- exact statistics (per unit stake)

    def probabilities(self) -> tuple[Fraction, ...]:
        """``P(h hits)`` for ``h = 0..spots``."""
        return self.game.hit_probabilities(self.spots)

    def multipliers(self) -> tuple[Fraction, ...]:
        """Capped multiplier for ``h = 0..spots``."""
        return tuple(self.multiplier(h) for h in range(self.spots + 1))

    def max_multiplier(self) -> Fraction:
        """The largest return per unit stake one ticket can get (after the cap)."""
        return max(self.multipliers())

    def rtp(self) -> Fraction:
        """Expected return per unit stake: ``sum(multiplier(h) * P(h))``."""
        return sum(
            (m * p for m, p in zip(self.multipliers(), self.probabilities(), strict=True)),
            Fraction(0),
        )

    def hit_frequency(self) -> Fraction:
        """Probability that a ticket pays anything."""
        return sum(
            (p for m, p in zip(self.multipliers(), self.probabilities(), strict=True) if m > 0),
            Fraction(0),
        )

    def overall_odds(self) -> Fraction:
        """``1 / hit_frequency()``: a ticket pays something once in this many."""
        return 1 / self.hit_frequency()

    def variance(self) -> Fraction:
        """Variance of the return of a 1-unit ticket."""
        mean = self.rtp()
        second = sum(
            (m * m * p for m, p in zip(self.multipliers(), self.probabilities(), strict=True)),
            Fraction(0),
        )
        return second - mean * mean

    def sd(self) -> float:
        """Standard deviation of the return of a 1-unit ticket."""
        return math.sqrt(self.variance())

    def payout_distribution(self) -> tuple[tuple[Fraction, Fraction], ...]:
        """``(multiplier, probability)`` pairs, merged by multiplier, ascending by multiplier.

        Outcomes of probability 0 are left out; the probabilities sum to exactly 1.
        """
        merged: dict[Fraction, Fraction] = {}
        for m, p in zip(self.multipliers(), self.probabilities(), strict=True):
            if p > 0:
                merged[m] = merged.get(m, Fraction(0)) + p
        return tuple(sorted(merged.items()))


@dataclass(frozen=True)
class PaytableSet:
    """The paytables offered together, one per spot count, all of the same game."""

    name: str
    tables: Mapping[int, Paytable]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PaytableError(f"paytable set: name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.tables, Mapping) or not self.tables:
            raise PaytableError(f"paytable set {self.name!r}: needs at least one paytable")
        games: set[KenoGame] = set()
        for spots, table in self.tables.items():
            if not isinstance(table, Paytable):
                raise PaytableError(
                    f"paytable set {self.name!r}: entry {spots!r} is not a Paytable"
                )
            if not _is_int(spots) or spots != table.spots:
                raise PaytableError(
                    f"paytable set {self.name!r}: key {spots!r} holds the table for "
                    f"{table.spots} spots"
                )
            games.add(table.game)
        if len(games) > 1:
            labels = ", ".join(sorted(g.label for g in games))
            raise PaytableError(f"paytable set {self.name!r}: tables of different games ({labels})")
        object.__setattr__(self, "tables", FrozenMap(self.tables))

    @property
    def game(self) -> KenoGame:
        return next(iter(self.tables.values())).game

    @property
    def spots(self) -> tuple[int, ...]:
        """The spot counts offered, ascending."""
        return tuple(sorted(self.tables))

    def for_spots(self, spots: int) -> Paytable:
        table = self.tables.get(spots) if _is_int(spots) else None
        if table is None:
            offered = ", ".join(str(s) for s in self.spots)
            raise PaytableError(
                f"paytable set {self.name!r} has no table for {spots!r} spots; it offers {offered}"
            )
        return table


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Published:
    """Figures a paytable file states about itself (to compare with the computed ones)."""

    rtp_percent: Decimal | None = None
    overall_odds_1_in: Decimal | None = None


_TOP_KEYS = frozenset({"game", "paytables", "source", "facts"})
_TABLE_KEYS = frozenset({"pays", "overall_odds_1_in", "rtp_percent", "max_win_multiplier"})


def _reject_unknown(obj: Mapping[Any, Any], allowed: frozenset[str], where: str) -> None:
    unknown = [k for k in obj if k not in allowed]
    if unknown:
        shown = ", ".join(json.dumps(k) if isinstance(k, str) else repr(k) for k in unknown)
        expected = ", ".join(sorted(allowed))
        raise PaytableError(f"{where}: unknown key {shown} (expected: {expected})")


def _count_key(key: object, where: str, what: str) -> int:
    if _is_int(key):
        assert isinstance(key, int)
        return key
    if isinstance(key, str) and _COUNT_KEY_RE.fullmatch(key):
        return int(key)
    raise PaytableError(f"{where}{_key(key)}: {what} {_kind(key)} is not a whole number")


def _statistic(value: object, where: str, *, minimum: Decimal) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise PaytableError(f"{where}: expected a number, got boolean")
    result: Decimal
    if isinstance(value, int | float):
        result = Decimal(str(value))
    elif isinstance(value, str) and _DECIMAL_RE.fullmatch(value):
        result = Decimal(value)
    elif isinstance(value, Decimal):
        result = value
    else:
        raise PaytableError(f"{where}: expected a number, got {_kind(value)}")
    if not result.is_finite():
        raise PaytableError(f"{where}: {value!r} is not a finite number")
    if result < minimum:
        raise PaytableError(f"{where}: must be >= {minimum}, got {result}")
    return result


def parse_paytables(
    data: Mapping[str, Any], *, name: str = "default"
) -> tuple[PaytableSet, dict[int, Published]]:
    """Build a :class:`PaytableSet` from a loaded paytable document.

    Format (keys of JSON objects are strings; Python ``int`` keys are accepted too)::

        {"game": "20 of 80",                  # optional, default 20 of 80
         "source": "...", "facts": {...},     # optional, not interpreted
         "paytables": {"10": {"pays": {"10": 100000, "0": 5, ...},
                              "max_win_multiplier": 50000,      # optional
                              "overall_odds_1_in": 9.05,        # optional, published
                              "rtp_percent": 63.67}}}           # optional, published

    Returns the set and, for every spot count in it, the published figures (fields are
    ``None`` where the document states none). Any problem raises :class:`PaytableError`
    naming its location, e.g. ``paytables["4"].pays["5"]: ...``.
    """
    if not isinstance(data, Mapping):
        raise PaytableError(f"paytable document: expected an object, got {_kind(data)}")
    _reject_unknown(data, _TOP_KEYS, "paytable document")
    game = GAME_80_20
    if data.get("game") is not None:
        game = KenoGame.parse(data["game"])
    if "source" in data and not isinstance(data["source"], str):
        raise PaytableError(f"source: expected a string, got {_kind(data['source'])}")
    if "facts" in data and not isinstance(data["facts"], Mapping):
        raise PaytableError(f"facts: expected an object, got {_kind(data['facts'])}")
    if "paytables" not in data:
        raise PaytableError('paytable document: missing "paytables"')
    raw_tables = data["paytables"]
    if not isinstance(raw_tables, Mapping):
        raise PaytableError(
            f"paytables: expected an object keyed by spots, got {_kind(raw_tables)}"
        )
    if not raw_tables:
        raise PaytableError("paytables: no paytable given")

    tables: dict[int, Paytable] = {}
    published: dict[int, Published] = {}
    for raw_spots, raw_table in raw_tables.items():
        spots = _count_key(raw_spots, "paytables", "spot count")
        where = f"paytables{_key(raw_spots)}"
        if spots in tables:
            raise PaytableError(f"{where}: a second paytable for {spots} spots")
        if not isinstance(raw_table, Mapping):
            raise PaytableError(f"{where}: expected an object, got {_kind(raw_table)}")
        _reject_unknown(raw_table, _TABLE_KEYS, where)
        if "pays" not in raw_table:
            raise PaytableError(f'{where}: missing "pays"')
        raw_pays = raw_table["pays"]
        if not isinstance(raw_pays, Mapping):
            raise PaytableError(
                f"{where}.pays: expected an object mapping hits to multipliers, got {_kind(raw_pays)}"
            )
        pays: dict[int, Fraction] = {}
        for raw_hits, raw_pay in raw_pays.items():
            hits = _count_key(raw_hits, f"{where}.pays", "hit count")
            pay_where = f"{where}.pays{_key(raw_hits)}"
            if hits in pays:
                raise PaytableError(f"{pay_where}: a second pay for {hits} hits")
            if hits > spots:
                raise PaytableError(f"{pay_where}: pay for {hits} hits but only {spots} spots")
            pays[hits] = parse_multiplier(raw_pay, where=pay_where)
        cap: Fraction | None = None
        if raw_table.get("max_win_multiplier") is not None:
            cap = parse_multiplier(
                raw_table["max_win_multiplier"], where=f"{where}.max_win_multiplier"
            )
        try:
            tables[spots] = Paytable(spots=spots, pays=pays, max_win_multiplier=cap, game=game)
        except PaytableError as exc:
            raise PaytableError(f"{where}: {exc}") from None
        published[spots] = Published(
            rtp_percent=_statistic(
                raw_table.get("rtp_percent"), f"{where}.rtp_percent", minimum=Decimal(0)
            ),
            overall_odds_1_in=_statistic(
                raw_table.get("overall_odds_1_in"), f"{where}.overall_odds_1_in", minimum=Decimal(1)
            ),
        )
    return PaytableSet(name=name, tables=tables), published


# --------------------------------------------------------------------------- picks


def count_hits(picks: Iterable[int], drawn: Iterable[int]) -> int:
    """How many of ``picks`` are among the ``drawn`` numbers (inputs assumed validated)."""
    return len(set(picks).intersection(drawn))


def validate_picks(
    picks: Iterable[object], game: KenoGame = GAME_80_20, *, max_spots: int = MAX_SPOTS
) -> tuple[int, ...]:
    """A player's picks as a sorted tuple, or :class:`ProtocolError`.

    Picks must be 1..``max_spots`` distinct ``int`` (not bool) numbers in ``1..game.pool``.
    """
    if not _is_int(max_spots) or max_spots < 1:
        raise ProtocolError(f"max_spots must be a positive integer, got {max_spots!r}")
    if isinstance(picks, str | bytes | bytearray | Mapping) or not isinstance(picks, Iterable):
        raise ProtocolError(f"picks must be a list of numbers, got {_kind(picks)}")
    items = list(picks)
    if not items:
        raise ProtocolError("no picks: choose at least 1 number")
    if len(items) > max_spots:
        raise ProtocolError(f"{len(items)} picks: choose at most {max_spots} numbers")
    seen: set[int] = set()
    for pick in items:
        if not _is_int(pick):
            raise ProtocolError(f"pick {_kind(pick)} is not an integer")
        assert isinstance(pick, int)
        if not 1 <= pick <= game.pool:
            raise ProtocolError(f"pick {pick} is out of range 1..{game.pool}")
        if pick in seen:
            raise ProtocolError(f"pick {pick} is chosen twice")
        seen.add(pick)
    return tuple(sorted(seen))
