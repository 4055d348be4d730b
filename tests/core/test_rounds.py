"""``core.rounds``: the round state machine, wall-clock slots and round ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import ConfigError, LifecycleError, RoundError
from core.rounds import (
    MAX_SLOT,
    RoundPhase,
    RoundTimes,
    Schedule,
    check_table_id,
    parse_round_id,
    round_id,
)

P = RoundPhase

LEGAL = {
    (P.CREATED, P.OPEN),
    (P.CREATED, P.VOIDED),
    (P.OPEN, P.CLOSED),
    (P.OPEN, P.VOIDED),
    (P.CLOSED, P.DRAWN),
    (P.CLOSED, P.VOIDED),
    (P.DRAWN, P.SETTLED),
    (P.DRAWN, P.VOIDED),
    (P.SETTLED, P.PUBLISHED),
    (P.PUBLISHED, P.REVEALED),
}


# ----------------------------------------------------------------- phases


def test_phase_values_are_the_stored_names() -> None:
    assert [p.value for p in P] == [
        "created",
        "open",
        "closed",
        "drawn",
        "settled",
        "published",
        "revealed",
        "voided",
    ]


@pytest.mark.parametrize("src", list(P))
@pytest.mark.parametrize("dst", list(P))
def test_every_pair_of_phases(src: RoundPhase, dst: RoundPhase) -> None:
    legal = (src, dst) in LEGAL
    assert src.can_go(dst) is legal
    assert (dst in src.allowed) is legal
    if legal:
        src.check_transition(dst)
    else:
        with pytest.raises(LifecycleError) as info:
            src.check_transition(dst)
        assert src.value in str(info.value) and dst.value in str(info.value)


def test_a_repeat_is_not_a_transition() -> None:
    for phase in P:
        assert not phase.can_go(phase)


def test_terminal_and_betting_phases() -> None:
    assert {p for p in P if p.terminal} == {P.REVEALED, P.VOIDED}
    assert {p for p in P if p.accepts_bets} == {P.OPEN}


def test_settled_rounds_cannot_be_voided() -> None:
    for phase in (P.SETTLED, P.PUBLISHED, P.REVEALED):
        assert not phase.can_go(P.VOIDED)


def test_the_happy_path_reaches_revealed() -> None:
    phase = P.CREATED
    for nxt in (P.OPEN, P.CLOSED, P.DRAWN, P.SETTLED, P.PUBLISHED, P.REVEALED):
        phase.check_transition(nxt)
        phase = nxt
    assert phase.terminal


def test_check_transition_rejects_non_phases() -> None:
    with pytest.raises(LifecycleError):
        P.CREATED.check_transition("open")  # type: ignore[arg-type]


def test_parse_phase() -> None:
    assert RoundPhase.parse("drawn") is P.DRAWN
    assert RoundPhase.parse(P.OPEN) is P.OPEN
    with pytest.raises(LifecycleError, match="unknown round phase 'paid'"):
        RoundPhase.parse("paid")


# ----------------------------------------------------------------- times and schedule


def test_round_times_validate() -> None:
    times = RoundTimes(1_000, 10_000, 11_000)
    assert times.as_seconds() == (1.0, 10.0, 11.0)
    assert times.is_open_at(1_000) and times.is_open_at(9_999)
    assert not times.is_open_at(999) and not times.is_open_at(10_000)
    with pytest.raises(RoundError):
        RoundTimes(10, 10, 20)
    with pytest.raises(RoundError):
        RoundTimes(10, 20, 15)
    with pytest.raises(RoundError):
        RoundTimes(-5, 10, 20)
    with pytest.raises(RoundError, match="integer number of milliseconds"):
        RoundTimes(1.5, 10, 20)  # type: ignore[arg-type]
    with pytest.raises(RoundError):
        RoundTimes(True, 10, 20)


def test_default_schedule_times() -> None:
    sched = Schedule(10_000, 1_000)
    now = 1_700_000_003_456
    slot = sched.slot_at(now)
    assert slot == 170_000_000
    times = sched.times(slot)
    assert times == RoundTimes(1_700_000_000_000, 1_700_000_009_000, 1_700_000_010_000)
    assert times.opens_at <= now < times.draws_at
    # the next slot opens when this one is drawn
    assert sched.times(slot + 1).opens_at == times.draws_at


def test_next_slot_leaves_time_to_commit() -> None:
    sched = Schedule(10_000, 1_000)
    assert sched.next_slot(1_700_000_000_000, 0) == 170_000_000  # exactly on a boundary
    assert sched.next_slot(1_700_000_000_000, 2_000) == 170_000_001
    assert sched.next_slot(1_700_000_007_999, 2_000) == 170_000_001  # opens at +2.001 s
    assert sched.next_slot(1_700_000_008_000, 2_000) == 170_000_001  # exactly +2 s: still ok
    assert sched.next_slot(1_700_000_008_001, 2_000) == 170_000_002


@given(
    period=st.integers(200, 3_600_000),
    data=st.data(),
    now=st.integers(0, 2**50),
    lead=st.integers(0, 10**7),
)
def test_schedule_properties(period: int, data: st.DataObject, now: int, lead: int) -> None:
    offset = data.draw(st.integers(1, period - 1))
    sched = Schedule(period, offset)
    slot = sched.slot_at(now)
    times = sched.times(slot)
    assert times.opens_at <= now < times.draws_at
    assert times.draws_at - times.closes_at == offset
    nxt = sched.next_slot(now, lead)
    assert sched.times(nxt).opens_at >= now + lead
    assert nxt == 0 or sched.times(nxt - 1).opens_at < now + lead


@pytest.mark.parametrize(
    ("period", "offset"),
    [(199, 100), (10_000, 0), (10_000, 10_000), (10_000, -1), (10_000.0, 1_000), (True, 1)],
)
def test_bad_schedules(period: object, offset: object) -> None:
    with pytest.raises(ConfigError):
        Schedule(period, offset)  # type: ignore[arg-type]


def test_schedule_rejects_bad_arguments() -> None:
    sched = Schedule(10_000, 1_000)
    with pytest.raises(RoundError):
        sched.slot_at(-1)
    with pytest.raises(RoundError):
        sched.slot_at(1.5)  # type: ignore[arg-type]
    with pytest.raises(RoundError):
        sched.times(-1)
    with pytest.raises(RoundError):
        sched.times(MAX_SLOT + 1)
    with pytest.raises(RoundError):
        sched.next_slot(0, -1)


# ----------------------------------------------------------------- round ids


def test_round_id_examples() -> None:
    assert round_id("keno-1", 170_000_000) == "keno-1-170000000"
    assert parse_round_id("keno-1-170000000") == ("keno-1", 170_000_000)
    assert parse_round_id("k-0") == ("k", 0)
    assert parse_round_id("a_b--3") == ("a_b-", 3)


@given(
    table_id=st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True),
    slot=st.integers(0, MAX_SLOT),
)
def test_round_ids_round_trip(table_id: str, slot: int) -> None:
    text = round_id(table_id, slot)
    assert parse_round_id(text) == (table_id, slot)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "keno",
        "keno-",
        "-5",
        "keno-01",
        "keno-+5",
        "keno- 5",
        "keno-5 ",
        "Keno-5",
        "1keno-5",
        "keno-1.5",
        "a" * 33 + "-5",
        f"keno-{MAX_SLOT + 1}",
        "kéno-5",
        "keno-٣",
    ],
)
def test_bad_round_ids(text: str) -> None:
    with pytest.raises(RoundError, match="round id"):
        parse_round_id(text)


def test_round_id_rejects_non_strings_and_bad_parts() -> None:
    with pytest.raises(RoundError):
        parse_round_id(5)
    with pytest.raises(RoundError, match="table id"):
        round_id("Keno", 1)
    with pytest.raises(RoundError):
        round_id("keno", -1)
    with pytest.raises(RoundError):
        round_id("keno", True)  # type: ignore[arg-type]
    assert check_table_id("t" * 32) == "t" * 32
    with pytest.raises(RoundError):
        check_table_id("t" * 33)
    with pytest.raises(RoundError):
        check_table_id("keno\n")
