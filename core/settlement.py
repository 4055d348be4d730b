"""Settlement of one round's tickets, vectorised with numpy and exact to the minor unit.

A round's tickets form a :class:`TicketBook`: one row per ticket, as columns. The picks
of a ticket are a bitmask over the pool — ``lo`` (``uint64``) holds numbers 1..64 at bit
``n - 1``, ``hi`` (``uint64``) numbers 65..80 at bit ``n - 65`` — so a ticket's hits
against the draw are two ANDs and two popcounts, for every ticket at once. Its spot count
is the popcount of its mask; the spot count selects the paytable of the table's
:class:`~core.keno.PaytableSet` (one set per table, so no per-ticket paytable column).

:func:`settle` computes, per ticket, exactly what :meth:`core.keno.Paytable.payout`
computes::

    payout = min(floor(stake * multiplier(spots, hits)), max_win_minor)

and then enforces the round's aggregate cap: when the sum of the payouts (``gross``)
exceeds ``round_cap_minor``, **every** payout becomes ``floor(payout * cap / gross)``.
The new sum is at most the cap; the rounding remainder (``cap - paid_total``, less than
one minor unit per winning ticket) stays with the house. The pro-rated amount is the
ticket's whole return, stake included.

Money stays in integers. Stakes are ``int64`` when every stake, and every stake times a
multiplier's numerator, fits in 63 bits — the fast path; otherwise (wei amounts of ETH
pass 2**63 at about 9.2 ETH) the same arithmetic runs on Python ints held in numpy
``object`` arrays — the exact path. Intermediate products that could overflow ``int64``
(pro-rating multiplies a payout by the cap) switch to Python ints for the rows
concerned. No float is ever involved. ``payouts.tolist()`` gives Python ints either way.

:func:`settle_slow` is a plain-Python reference of the same rules, one ticket at a time
through :meth:`Paytable.payout`: the tests compare the two, and an auditor can
re-settle a round without numpy.

Errors: malformed picks raise :class:`~core.errors.ProtocolError`; a bad stake or limit
:class:`~core.errors.AmountFormatError` / :class:`~core.errors.NegativeAmountError` /
:class:`~core.errors.AmountOverflowError` (also for a payout beyond the ledger's 38
digits, which a table's limits should make impossible); a draw that is not ``game.drawn`` distinct
numbers of the pool :class:`~core.errors.FairnessError`; a ticket whose spot count the
paytable set does not offer :class:`~core.errors.PaytableError`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import (
    AmountFormatError,
    AmountOverflowError,
    FairnessError,
    NegativeAmountError,
    PaytableError,
    ProtocolError,
)
from core.keno import MAX_SPOTS, PaytableSet
from core.money import MAX_AMOUNT_MINOR, check_minor

__all__ = [
    "MAX_NUMBER",
    "Settlement",
    "TicketBook",
    "mask_of",
    "numbers_of",
    "settle",
    "settle_slow",
]

#: The highest number a mask can hold (``lo`` 1..64, ``hi`` 65..80).
MAX_NUMBER = 80

_INT64_MAX = int(np.iinfo(np.int64).max)
_ROW = MAX_SPOTS + 1  # lookup tables are indexed by spots * _ROW + hits

U8Array = npt.NDArray[np.uint8]
U64Array = npt.NDArray[np.uint64]
# int64 on the fast path, object (Python ints) on the exact path.
MoneyArray = npt.NDArray[Any]

# _LO_BIT[n] / _HI_BIT[n]: the bit of number n in lo / hi (0 where n belongs to the other).
_LO_BIT = np.array(
    [1 << (n - 1) if 1 <= n <= 64 else 0 for n in range(MAX_NUMBER + 1)], dtype=np.uint64
)
_HI_BIT = np.array(
    [1 << (n - 65) if n >= 65 else 0 for n in range(MAX_NUMBER + 1)], dtype=np.uint64
)
_HI_LIMIT = 1 << (MAX_NUMBER - 64)  # hi must stay below this: bits above 80 are no number


def _popcount_swar(x: U64Array) -> U8Array:
    # Classic SWAR popcount, for numpy < 2 which has no bitwise_count.
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return ((x * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.uint8)


def _popcount(x: U64Array) -> U8Array:
    counter = getattr(np, "bitwise_count", None)
    if counter is None:  # pragma: no cover - numpy >= 2 has it
        return _popcount_swar(x)
    result: U8Array = counter(x)
    return result


def _readonly(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array.flags.writeable = False
    return array


# --------------------------------------------------------------------------- masks


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def mask_of(numbers: Iterable[int]) -> tuple[int, int]:
    """``(lo, hi)`` bitmasks of distinct numbers in ``1..80`` (a ticket's picks or a draw).

    Any count is accepted here (a draw has 20); :class:`TicketBook` checks spot counts.
    """
    if isinstance(numbers, str | bytes) or not isinstance(numbers, Iterable):
        raise ProtocolError(f"numbers must be a list of integers, got {type(numbers).__name__}")
    lo = hi = 0
    for n in numbers:
        if not _is_int(n):
            raise ProtocolError(f"number {n!r} is not an integer")
        if not 1 <= n <= MAX_NUMBER:
            raise ProtocolError(f"number {n} is out of range 1..{MAX_NUMBER}")
        if n <= 64:
            bit = 1 << (n - 1)
            if lo & bit:
                raise ProtocolError(f"number {n} appears twice")
            lo |= bit
        else:
            bit = 1 << (n - 65)
            if hi & bit:
                raise ProtocolError(f"number {n} appears twice")
            hi |= bit
    return lo, hi


def numbers_of(lo: int, hi: int) -> tuple[int, ...]:
    """The numbers of a ``(lo, hi)`` mask, ascending (the inverse of :func:`mask_of`)."""
    lo, hi = int(lo), int(hi)
    if not 0 <= lo < 1 << 64 or not 0 <= hi < _HI_LIMIT:
        raise ProtocolError(f"({lo:#x}, {hi:#x}) is not a mask of numbers 1..{MAX_NUMBER}")
    return tuple(n + 1 for n in range(64) if lo >> n & 1) + tuple(
        n + 65 for n in range(MAX_NUMBER - 64) if hi >> n & 1
    )


# --------------------------------------------------------------------------- stakes


def _stake_column(stakes: object) -> MoneyArray:
    """Stakes as ``int64`` if all fit, else as an ``object`` array of Python ints."""
    if isinstance(stakes, np.ndarray):
        if stakes.ndim != 1:
            raise AmountFormatError(f"stakes must be one-dimensional, got shape {stakes.shape}")
        kind = stakes.dtype.kind
        if kind in "iu":
            if stakes.size and int(stakes.min()) <= 0:
                raise NegativeAmountError(f"every stake must be positive, got {int(stakes.min())}")
            if kind == "u" and stakes.size and int(stakes.max()) > _INT64_MAX:
                return stakes.astype(object)  # astype(object) yields Python ints
            return stakes.astype(np.int64)
        if kind != "O":
            raise AmountFormatError(
                f"stakes must be integers of minor units, got an array of {stakes.dtype}"
            )
        values: list[Any] = stakes.tolist()
    elif isinstance(stakes, str | bytes) or not isinstance(stakes, Iterable):
        raise AmountFormatError(f"stakes must be a list of integers, got {type(stakes).__name__}")
    else:
        values = list(stakes)
    # `type(s) is int` is the fast check (rejects bool and float); the loop below only runs
    # to name the culprit or to accept numpy integers.
    if not all(type(s) is int for s in values):
        checked: list[int] = []
        for s in values:
            if isinstance(s, np.integer) and not isinstance(s, np.bool_):
                s = int(s)
            checked.append(check_minor(s, what="stake"))
        values = checked
    if values:
        low, high = min(values), max(values)
        if low <= 0:
            raise NegativeAmountError(f"every stake must be positive, got {low}")
        if high > MAX_AMOUNT_MINOR:
            check_minor(high, what="stake")  # raises AmountOverflowError
        if high > _INT64_MAX:
            column = np.empty(len(values), dtype=object)
            column[:] = values
            return column
    return np.array(values, dtype=np.int64)


# --------------------------------------------------------------------------- the book


class TicketBook:
    """One round's tickets as columns; row ``i`` is ticket ``i`` of the caller's list.

    ``lo``/``hi`` (``uint64``) are the pick masks, ``spots`` (``uint8``) their popcount,
    ``stakes`` the stakes in minor units (``int64``, or ``object`` holding Python ints
    when a stake exceeds ``2**63 - 1``). Every column is read-only; construction
    validates: 1..:data:`~core.keno.MAX_SPOTS` distinct numbers of 1..80 per ticket,
    positive stakes within the ledger's 38 digits.
    """

    __slots__ = ("hi", "lo", "spots", "stakes")

    spots: U8Array
    lo: U64Array
    hi: U64Array
    stakes: MoneyArray

    def __init__(self, lo: U64Array, hi: U64Array, stakes: object) -> None:
        for name, column in (("lo", lo), ("hi", hi)):
            if not isinstance(column, np.ndarray) or column.dtype != np.uint64 or column.ndim != 1:
                raise ProtocolError(f"ticket book: {name} must be a 1-d uint64 array")
        if lo.shape != hi.shape:
            raise ProtocolError(f"ticket book: lo has {lo.size} rows but hi has {hi.size}")
        stake_column = _stake_column(stakes)
        if stake_column.shape != lo.shape:
            raise ProtocolError(f"ticket book: {lo.size} tickets but {stake_column.size} stakes")
        if hi.size and int(hi.max()) >= _HI_LIMIT:
            row = int(np.flatnonzero(hi >= np.uint64(_HI_LIMIT))[0])
            raise ProtocolError(f"ticket {row}: a pick above {MAX_NUMBER}")
        spots = _popcount(lo) + _popcount(hi)
        bad = np.flatnonzero((spots < 1) | (spots > MAX_SPOTS))
        if bad.size:
            row = int(bad[0])
            raise ProtocolError(
                f"ticket {row}: {int(spots[row])} picks; a ticket has 1..{MAX_SPOTS} numbers"
            )
        self.lo = _readonly(np.array(lo, dtype=np.uint64, copy=True))
        self.hi = _readonly(np.array(hi, dtype=np.uint64, copy=True))
        self.spots = _readonly(spots.astype(np.uint8))
        self.stakes = _readonly(stake_column)

    @classmethod
    def from_picks(cls, picks: Sequence[Sequence[int]], stakes: object) -> TicketBook:
        """A book from each ticket's picked numbers and its stake (minor units)."""
        if isinstance(picks, str | bytes) or not isinstance(picks, Sequence):
            raise ProtocolError(f"picks must be a list of tickets, got {type(picks).__name__}")
        count = len(picks)
        try:
            lengths = np.fromiter((len(p) for p in picks), dtype=np.int64, count=count)
        except TypeError:
            raise ProtocolError("picks must be a list of tickets, each a list of numbers") from None
        if count and (int(lengths.min()) < 1 or int(lengths.max()) > MAX_SPOTS):
            row = int(np.flatnonzero((lengths < 1) | (lengths > MAX_SPOTS))[0])
            raise ProtocolError(
                f"ticket {row}: {int(lengths[row])} picks; a ticket has 1..{MAX_SPOTS} numbers"
            )
        flat_list = list(itertools.chain.from_iterable(picks))
        if not all(type(n) is int for n in flat_list):
            culprit = next(n for n in flat_list if type(n) is not int)
            raise ProtocolError(f"pick {culprit!r} is not an integer")
        flat = np.array(flat_list, dtype=np.int64)
        if flat.size and (int(flat.min()) < 1 or int(flat.max()) > MAX_NUMBER):
            culprit = int(flat[(flat < 1) | (flat > MAX_NUMBER)][0])
            raise ProtocolError(f"pick {culprit} is out of range 1..{MAX_NUMBER}")
        lo = np.zeros(count, dtype=np.uint64)
        hi = np.zeros(count, dtype=np.uint64)
        if count:
            starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
            lo = np.bitwise_or.reduceat(_LO_BIT[flat], starts)
            hi = np.bitwise_or.reduceat(_HI_BIT[flat], starts)
            # A repeated number sets one bit twice: the mask then has fewer bits than picks.
            dupes = np.flatnonzero(_popcount(lo) + _popcount(hi) != lengths)
            if dupes.size:
                raise ProtocolError(f"ticket {int(dupes[0])}: a number is picked twice")
        return cls(lo, hi, stakes)

    def __len__(self) -> int:
        return int(self.lo.size)

    def __repr__(self) -> str:
        return f"TicketBook({len(self)} tickets{', exact stakes' if self.exact else ''})"

    @property
    def exact(self) -> bool:
        """Are stakes held as Python ints (some stake is beyond ``int64``)?"""
        return self.stakes.dtype == object

    def picks(self, row: int) -> tuple[int, ...]:
        """Ticket ``row``'s numbers, ascending."""
        return numbers_of(int(self.lo[row]), int(self.hi[row]))

    def stake(self, row: int) -> int:
        """Ticket ``row``'s stake as a Python int."""
        return int(self.stakes[row])


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False)
class Settlement:
    """What one round pays, per ticket (row order of the book) and in total.

    ``payouts`` are the final amounts, stake included, after ``max_win_minor`` and
    pro-rating: ``int64`` or ``object`` (Python ints); ``payouts.tolist()`` is exact
    either way. ``gross_total`` is their sum *before* the round cap, ``paid_total``
    after; ``factor`` is ``cap / gross`` when ``capped``, else 1 (each payout is
    ``floor(uncapped * factor)``).
    """

    hits: U8Array
    payouts: MoneyArray
    gross_total: int
    paid_total: int
    factor: Fraction
    capped: bool

    def __len__(self) -> int:
        return int(self.payouts.size)

    def payout(self, row: int) -> int:
        """Ticket ``row``'s payout as a Python int."""
        return int(self.payouts[row])

    def winners(self) -> npt.NDArray[np.intp]:
        """Rows with a payout above zero (the tickets to credit), ascending."""
        return np.flatnonzero(self.payouts)


# --------------------------------------------------------------------------- settling


def _checked_limit(value: int | None, what: str) -> int | None:
    return None if value is None else check_minor(value, what=what)


def _checked_drawn(drawn: Sequence[int], paytables: PaytableSet) -> tuple[int, int]:
    game = paytables.game
    if game.pool > MAX_NUMBER:
        raise PaytableError(
            f"paytable set {paytables.name!r}: settlement handles pools up to {MAX_NUMBER}, "
            f"not {game.label}"
        )
    numbers = list(drawn) if isinstance(drawn, Iterable) and not isinstance(drawn, str) else None
    if numbers is None:
        raise FairnessError(f"drawn numbers must be a list of integers, got {type(drawn).__name__}")
    if len(numbers) != game.drawn:
        raise FairnessError(f"a draw of {game.label} has {game.drawn} numbers, got {len(numbers)}")
    for n in numbers:
        if not _is_int(n) or not 1 <= n <= game.pool:
            raise FairnessError(f"drawn number {n!r} is not an integer in 1..{game.pool}")
    if len(set(numbers)) != len(numbers):
        raise FairnessError("drawn numbers must be distinct")
    return mask_of(numbers)


def _offered_check(book: TicketBook, paytables: PaytableSet) -> None:
    offered = np.zeros(_ROW, dtype=bool)
    offered[list(paytables.spots)] = True
    bad = np.flatnonzero(~offered[book.spots])
    if bad.size:
        row = int(bad[0])
        shown = ", ".join(str(s) for s in paytables.spots)
        raise PaytableError(
            f"ticket {row} has {int(book.spots[row])} spots; paytable set "
            f"{paytables.name!r} offers {shown}"
        )


def _multiplier_tables(paytables: PaytableSet) -> tuple[list[int], list[int]]:
    """Numerators and denominators of every capped multiplier at ``spots * _ROW + hits``."""
    numerators = [0] * (_ROW * _ROW)
    denominators = [1] * (_ROW * _ROW)
    for spots in paytables.spots:
        table = paytables.for_spots(spots)
        for hits in range(spots + 1):
            m = table.multiplier(hits)
            numerators[spots * _ROW + hits] = m.numerator
            denominators[spots * _ROW + hits] = m.denominator
    return numerators, denominators


def _object_array(values: Sequence[int]) -> MoneyArray:
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def _fits_int64(
    book: TicketBook, index: npt.NDArray[np.intp], numerators: list[int], denominators: list[int]
) -> bool:
    """Does ``stake * numerator`` fit in ``int64`` for every ticket (the fast path)?"""
    if book.exact or max(numerators) > _INT64_MAX or max(denominators) > _INT64_MAX:
        return False
    if not len(book) or int(book.stakes.max()) * max(numerators) <= _INT64_MAX:
        return True
    # The set-wide bound fails (a big stake somewhere): check each ticket against the
    # numerator its own hits selected, so a big losing stake does not slow the round.
    limits = np.array([_INT64_MAX // max(n, 1) for n in numerators], dtype=np.int64)
    return bool(np.all(book.stakes <= limits[index]))


def _check_storable(payouts: list[int]) -> None:
    # An int64 payout is far below 38 digits, so settle() only checks its exact path.
    if payouts and max(payouts) > MAX_AMOUNT_MINOR:
        row = payouts.index(max(payouts))
        raise AmountOverflowError(
            f"ticket {row}: payout {payouts[row]} exceeds the ledger's 38-digit limit; "
            "lower the table's max_stake_minor or set max_win_minor"
        )


def _total(payouts: MoneyArray) -> int:
    # An int64 sum is exact while it cannot overflow: n * largest <= 2**63 - 1.
    if payouts.dtype != object and payouts.size and int(payouts.max()) * payouts.size <= _INT64_MAX:
        return int(payouts.sum())
    return sum(payouts.tolist())


def settle(
    book: TicketBook,
    drawn: Sequence[int],
    paytables: PaytableSet,
    *,
    max_win_minor: int | None,
    round_cap_minor: int | None,
) -> Settlement:
    """Hits and exact payouts of every ticket of ``book`` against ``drawn``.

    See the module docstring for the rules; ``max_win_minor`` and ``round_cap_minor`` are
    non-negative ints of minor units or ``None`` (no limit).
    """
    if not isinstance(book, TicketBook):
        raise ProtocolError(f"book must be a TicketBook, got {type(book).__name__}")
    max_win = _checked_limit(max_win_minor, "max_win_minor")
    cap = _checked_limit(round_cap_minor, "round_cap_minor")
    draw_lo, draw_hi = _checked_drawn(drawn, paytables)
    _offered_check(book, paytables)

    hits = _popcount(book.lo & np.uint64(draw_lo)) + _popcount(book.hi & np.uint64(draw_hi))
    index = book.spots.astype(np.intp) * _ROW + hits
    numerators, denominators = _multiplier_tables(paytables)

    payouts: MoneyArray
    if _fits_int64(book, index, numerators, denominators):
        # Fast path: stake * numerator fits in int64 for every ticket.
        num = np.array(numerators, dtype=np.int64)[index]
        den = np.array(denominators, dtype=np.int64)[index]
        payouts = book.stakes * num // den
        if max_win is not None and max_win <= _INT64_MAX:
            np.minimum(payouts, np.int64(max_win), out=payouts)
    else:
        # Exact path: the same formula on Python ints, element by element inside numpy.
        stakes = book.stakes if book.exact else book.stakes.astype(object)
        payouts = stakes * _object_array(numerators)[index] // _object_array(denominators)[index]
        if max_win is not None:
            payouts = np.where(payouts > max_win, max_win, payouts).astype(object)

    gross = _total(payouts)
    capped = cap is not None and gross > cap
    factor = Fraction(1)
    paid = gross
    if capped:
        assert cap is not None
        factor = Fraction(cap, gross)
        if (
            payouts.dtype != object
            and gross <= _INT64_MAX
            and int(payouts.max()) * cap <= _INT64_MAX
        ):
            payouts = payouts * np.int64(cap) // np.int64(gross)
        else:
            # payout * cap can pass 2**63 (500,000.00 * 5,000,000.00 in cents does): pro-rate
            # the winners on Python ints. The results are <= the payouts, so they fit back.
            rows = np.flatnonzero(payouts)
            scaled = payouts[rows].astype(object) * cap // gross
            payouts = payouts.copy()
            payouts[rows] = scaled
        paid = _total(payouts)

    if payouts.dtype == object:
        _check_storable(payouts.tolist())
    return Settlement(
        hits=_readonly(hits.astype(np.uint8)),
        payouts=_readonly(payouts),
        gross_total=gross,
        paid_total=paid,
        factor=factor,
        capped=capped,
    )


def settle_slow(
    book: TicketBook,
    drawn: Sequence[int],
    paytables: PaytableSet,
    *,
    max_win_minor: int | None,
    round_cap_minor: int | None,
) -> Settlement:
    """The reference for :func:`settle`: plain Python, one ticket at a time.

    Hits are counted on the decoded picks and payouts come from
    :meth:`core.keno.Paytable.payout`; ``payouts`` is an ``object`` array of Python ints.
    """
    max_win = _checked_limit(max_win_minor, "max_win_minor")
    cap = _checked_limit(round_cap_minor, "round_cap_minor")
    _checked_drawn(drawn, paytables)
    drawn_set = set(drawn)
    hits: list[int] = []
    amounts: list[int] = []
    for row in range(len(book)):
        picks = book.picks(row)
        h = sum(1 for n in picks if n in drawn_set)
        hits.append(h)
        table = paytables.for_spots(len(picks))
        amounts.append(table.payout(book.stake(row), h, max_win_minor=max_win))
    gross = sum(amounts)
    capped = cap is not None and gross > cap
    factor = Fraction(1)
    if capped:
        assert cap is not None
        factor = Fraction(cap, gross)
        amounts = [a * cap // gross for a in amounts]
    _check_storable(amounts)
    return Settlement(
        hits=_readonly(np.array(hits, dtype=np.uint8)),
        payouts=_readonly(_object_array(amounts)),
        gross_total=gross,
        paid_total=sum(amounts),
        factor=factor,
        capped=capped,
    )
