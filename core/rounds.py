"""Keno rounds: their lifecycle, their wall-clock schedule and their ids.

A table plays one round per *slot*: slot ``s`` of a :class:`Schedule` with period ``P``
opens at ``s * P`` ms since the epoch, stops taking bets ``close_offset`` ms before its
end and is drawn at ``(s + 1) * P`` — the moment the next slot opens. Times are
``int`` milliseconds since the Unix epoch everywhere (exact arithmetic, no float drift
across a day of 8,640 rounds); seconds as floats exist only for timers
(:meth:`RoundTimes.as_seconds`).

A round's id is ``"{table_id}-{slot}"``: unique per table and slot, stable across
restarts (a restarted scheduler recomputes the same id for the same slot), and
readable in logs.

The lifecycle is a state machine (:class:`RoundPhase`)::

    created ─► open ─► closed ─► drawn ─► settled ─► published ─► revealed
       │         │        │         │
       └─────────┴────────┴─────────┴──► voided   (every bet refunded)

Once settled, wins are owed: a round can no longer be voided, only published and
revealed. A repeat of a move already made (``open → open``) is *not* a legal transition
here; making replays harmless is the persisting layer's job (it compares the stored
phase first).

Errors: an illegal move raises :class:`~core.errors.LifecycleError`; a malformed round
id, slot or time raises :class:`~core.errors.RoundError`; a schedule that cannot run
raises :class:`~core.errors.ConfigError`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from core.errors import ConfigError, LifecycleError, RoundError

__all__ = [
    "MAX_SLOT",
    "MIN_PERIOD_MS",
    "TABLE_ID_RE",
    "RoundPhase",
    "RoundTimes",
    "Schedule",
    "check_table_id",
    "parse_round_id",
    "round_id",
]

#: A table id: 1–32 characters of ``[a-z0-9_-]``, starting with a letter.
TABLE_ID_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}", re.ASCII)

#: The shortest period a schedule accepts: below it, committing on chain, taking bets and
#: settling could not all fit in one round.
MIN_PERIOD_MS = 200

#: Slots are stored in a signed 64-bit column (``bigint``).
MAX_SLOT = 2**63 - 1

# Canonical decimal (no sign, no leading zeros) so every slot has exactly one spelling
# and ``round_id(parse_round_id(x)) == x``; 19 digits covers MAX_SLOT.
_SLOT_RE = re.compile(r"0|[1-9][0-9]{0,18}", re.ASCII)


class RoundPhase(enum.Enum):
    """Where a round is in its lifecycle; the values are what the database stores."""

    CREATED = "created"
    OPEN = "open"
    CLOSED = "closed"
    DRAWN = "drawn"
    SETTLED = "settled"
    PUBLISHED = "published"
    REVEALED = "revealed"
    VOIDED = "voided"

    @classmethod
    def parse(cls, name: RoundPhase | str) -> RoundPhase:
        """The phase called ``name``; a ``LifecycleError`` naming the choices if none is."""
        if isinstance(name, RoundPhase):
            return name
        try:
            return cls(name)
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise LifecycleError(f"unknown round phase {name!r}; one of: {choices}") from None

    @property
    def allowed(self) -> frozenset[RoundPhase]:
        """The phases this one may move to."""
        return _ROUND_TRANSITIONS[self]

    def can_go(self, to: RoundPhase) -> bool:
        """Is ``self → to`` a legal move?"""
        return to in _ROUND_TRANSITIONS[self]

    def check_transition(self, to: RoundPhase) -> None:
        """Raise :class:`LifecycleError` unless ``self → to`` is a legal move."""
        if not isinstance(to, RoundPhase):
            raise LifecycleError(f"round cannot go from {self.value} to {to!r}: not a phase")
        if to not in _ROUND_TRANSITIONS[self]:
            allowed = ", ".join(sorted(p.value for p in _ROUND_TRANSITIONS[self])) or "nothing"
            raise LifecycleError(
                f"round cannot go from {self.value} to {to.value} (from {self.value}: {allowed})"
            )

    @property
    def terminal(self) -> bool:
        """No move leaves this phase (revealed or voided)."""
        return not _ROUND_TRANSITIONS[self]

    @property
    def accepts_bets(self) -> bool:
        """Bets are taken in the open phase only."""
        return self is RoundPhase.OPEN


_ROUND_TRANSITIONS: dict[RoundPhase, frozenset[RoundPhase]] = {
    RoundPhase.CREATED: frozenset({RoundPhase.OPEN, RoundPhase.VOIDED}),
    RoundPhase.OPEN: frozenset({RoundPhase.CLOSED, RoundPhase.VOIDED}),
    RoundPhase.CLOSED: frozenset({RoundPhase.DRAWN, RoundPhase.VOIDED}),
    RoundPhase.DRAWN: frozenset({RoundPhase.SETTLED, RoundPhase.VOIDED}),
    # Settled means wins are owed and (partly) credited: voiding would refund stakes on
    # top of paid wins, so from here the round can only finish.
    RoundPhase.SETTLED: frozenset({RoundPhase.PUBLISHED}),
    RoundPhase.PUBLISHED: frozenset({RoundPhase.REVEALED}),
    RoundPhase.REVEALED: frozenset(),
    RoundPhase.VOIDED: frozenset(),
}


# --------------------------------------------------------------------------- times


def _is_int(value: object) -> bool:
    # bool is an int subclass; True milliseconds is always a caller's bug.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_ms(value: object, what: str) -> int:
    if not _is_int(value):
        raise RoundError(f"{what} must be an integer number of milliseconds, got {value!r}")
    assert isinstance(value, int)
    if value < 0:
        raise RoundError(f"{what} must be >= 0 ms since the epoch, got {value}")
    return value


def _check_slot(slot: object) -> int:
    if not _is_int(slot):
        raise RoundError(f"slot must be an integer, got {slot!r}")
    assert isinstance(slot, int)
    if not 0 <= slot <= MAX_SLOT:
        raise RoundError(f"slot must be in 0..2**63-1, got {slot}")
    return slot


@dataclass(frozen=True, slots=True)
class RoundTimes:
    """When a round opens, closes (last bet) and is drawn, in ms since the epoch.

    ``opens_at < closes_at < draws_at``; bets are on time when
    ``opens_at <= t < closes_at``.
    """

    opens_at: int
    closes_at: int
    draws_at: int

    def __post_init__(self) -> None:
        for name in ("opens_at", "closes_at", "draws_at"):
            _check_ms(getattr(self, name), name)
        if not self.opens_at < self.closes_at < self.draws_at:
            raise RoundError(
                "round times must satisfy opens_at < closes_at < draws_at, got "
                f"{self.opens_at}, {self.closes_at}, {self.draws_at}"
            )

    def is_open_at(self, now_ms: int) -> bool:
        """Would a bet placed at ``now_ms`` be on time?"""
        return self.opens_at <= _check_ms(now_ms, "now_ms") < self.closes_at

    def as_seconds(self) -> tuple[float, float, float]:
        """``(opens_at, closes_at, draws_at)`` in seconds, for timers and ``time.time()``.

        Floats are for waiting only: store and compare the integer milliseconds.
        """
        return (self.opens_at / 1000, self.closes_at / 1000, self.draws_at / 1000)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Wall-clock-aligned slots of ``period_ms``; betting stops ``close_offset_ms`` before
    a slot ends.

    ``period_ms >= 200`` and ``0 < close_offset_ms < period_ms``, else
    :class:`ConfigError`.
    """

    period_ms: int
    close_offset_ms: int

    def __post_init__(self) -> None:
        if not _is_int(self.period_ms) or self.period_ms < MIN_PERIOD_MS:
            raise ConfigError(
                f"schedule: period_ms must be an integer >= {MIN_PERIOD_MS}, got {self.period_ms!r}"
            )
        if not _is_int(self.close_offset_ms) or not 0 < self.close_offset_ms < self.period_ms:
            raise ConfigError(
                f"schedule: close_offset_ms must be an integer with 0 < close_offset_ms < "
                f"period_ms ({self.period_ms}), got {self.close_offset_ms!r}"
            )

    def slot_at(self, now_ms: int) -> int:
        """The slot running at ``now_ms`` (the one whose ``[opens_at, draws_at)`` holds it)."""
        return _check_ms(now_ms, "now_ms") // self.period_ms

    def times(self, slot: int) -> RoundTimes:
        """Open, close and draw times of ``slot``."""
        opens_at = _check_slot(slot) * self.period_ms
        return RoundTimes(
            opens_at=opens_at,
            closes_at=opens_at + self.period_ms - self.close_offset_ms,
            draws_at=opens_at + self.period_ms,
        )

    def next_slot(self, now_ms: int, lead_ms: int = 0) -> int:
        """The first slot that opens at or after ``now_ms + lead_ms``.

        ``lead_ms`` is the time needed before opening (creating the round and committing
        its seed on chain); a slot that opens sooner is skipped rather than opened late.
        """
        _check_ms(now_ms, "now_ms")
        if not _is_int(lead_ms) or lead_ms < 0:
            raise RoundError(f"lead_ms must be an integer >= 0, got {lead_ms!r}")
        earliest = now_ms + lead_ms
        return -(-earliest // self.period_ms)  # ceiling division, exact on ints


# --------------------------------------------------------------------------- ids


def check_table_id(table_id: object) -> str:
    """``table_id`` if it is 1–32 chars of ``[a-z0-9_-]`` starting with a letter."""
    if not isinstance(table_id, str) or not TABLE_ID_RE.fullmatch(table_id):
        raise RoundError(
            f"table id {table_id!r} is invalid: use 1-32 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter"
        )
    return table_id


def round_id(table_id: str, slot: int) -> str:
    """``"{table_id}-{slot}"``, e.g. ``"keno-1-177000000"``."""
    return f"{check_table_id(table_id)}-{_check_slot(slot)}"


def parse_round_id(text: object) -> tuple[str, int]:
    """``(table_id, slot)`` of a round id made by :func:`round_id`, else :class:`RoundError`.

    Table ids may contain ``-``, so the slot is what follows the *last* dash. Only the
    canonical spelling is accepted (no leading zeros, no sign, no spaces), so one round
    has one id.
    """
    if not isinstance(text, str):
        raise RoundError(f"round id must be a string, got {type(text).__name__}")
    shown = text if len(text) <= 80 else text[:80] + "..."
    table_id, dash, slot_text = text.rpartition("-")
    if not dash:
        raise RoundError(f"round id {shown!r} is not of the form TABLE-SLOT")
    if not _SLOT_RE.fullmatch(slot_text):
        raise RoundError(
            f"round id {shown!r}: slot {slot_text!r} is not a non-negative integer "
            "without leading zeros"
        )
    slot = int(slot_text)
    if slot > MAX_SLOT:
        raise RoundError(f"round id {shown!r}: slot is beyond 2**63-1")
    if not TABLE_ID_RE.fullmatch(table_id):
        raise RoundError(
            f"round id {shown!r}: table id {table_id!r} is invalid (1-32 characters of a-z, "
            "0-9, '_' and '-', starting with a letter)"
        )
    return table_id, slot
