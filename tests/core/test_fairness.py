"""The fairness function: Stake's published vectors, draw properties, uniformity."""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import FairnessError
from core.fairness import (
    DEFAULT_DERIVATION,
    MAX_COUNT,
    MAX_POOL,
    Derivation,
    byte_stream,
    commitment,
    draw,
    floats,
    integers,
)

# Copied from shared/vectors/stake.json (Stake's published algorithm, as reproduced by the
# open-source verifier provably-fair-betting/verifierform-stake) so the suite needs only
# the project.
STAKE_FLOATS_SERVER_SEED = "5d43f77f53fec7d115180136105400f0fd2a1f20b681b6b54a289c207923b190"
STAKE_FLOATS_CLIENT_SEED = "iyAyNGKPsa"
STAKE_FLOATS_NONCE = 29
STAKE_FLOATS = [
    0.418529668823,
    0.986164369853,
    0.605522957863,
    0.559553349391,
    0.689863011241,
    0.035750991898,
    0.270845992723,
    0.011545740766,
    0.523547452874,
]

STAKE_KENO_SERVER_SEED = "735249f062ac025044a8523aa92e034803f02d6b75129abc97e8b1be19aab9b4"
STAKE_KENO_CLIENT_SEED = "ec75fca98de6f2d9"
STAKE_KENO_NONCE = 20
STAKE_KENO_10_OF_40 = (38, 33, 8, 23, 21, 30, 5, 2, 7, 1)

# Upper 1% points of the chi-square distribution (standard tables), by degrees of freedom.
CHI2_99 = {2: 9.210, 9: 21.666, 79: 111.144}

server_seeds = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=64)
client_seeds = st.text(min_size=1, max_size=32)
nonces = st.integers(min_value=0, max_value=2**63 - 1)


@st.composite
def pools_and_counts(draw_: st.DrawFn) -> tuple[int, int]:
    pool = draw_(st.integers(min_value=1, max_value=120))
    return pool, draw_(st.integers(min_value=0, max_value=pool))


def chi_square(counts: Counter[int], categories: Sequence[int]) -> float:
    total = sum(counts[c] for c in categories)
    expected = total / len(categories)
    return sum((counts[c] - expected) ** 2 / expected for c in categories)


# --- Stake's vectors --------------------------------------------------------------------


def test_floats_reproduce_stake_vector() -> None:
    values = floats(STAKE_FLOATS_SERVER_SEED, STAKE_FLOATS_CLIENT_SEED, STAKE_FLOATS_NONCE, 9)
    assert [round(v, 12) for v in values] == STAKE_FLOATS


def test_stake_derivation_reproduces_stake_keno_vector() -> None:
    numbers = draw(
        STAKE_KENO_SERVER_SEED,
        STAKE_KENO_CLIENT_SEED,
        STAKE_KENO_NONCE,
        pool=40,
        count=10,
        derivation=Derivation.STAKE,
    )
    assert numbers == STAKE_KENO_10_OF_40


def test_derivation_accepts_its_stored_name() -> None:
    seeds = (STAKE_KENO_SERVER_SEED, STAKE_KENO_CLIENT_SEED, STAKE_KENO_NONCE)
    assert draw(*seeds, pool=40, count=10, derivation="stake") == STAKE_KENO_10_OF_40


# Computed by this implementation and checked against an independent one; pins v1.
V1_SERVER_CLIENT_0_10_OF_40 = (4, 7, 28, 40, 6, 20, 23, 2, 25, 10)


def test_v1_draw_is_pinned() -> None:
    # Rounds store their derivation name; if this fails, v1 changed and old rounds no
    # longer verify. Add a new derivation instead.
    assert draw("server", "client", 0, pool=40, count=10) == V1_SERVER_CLIENT_0_10_OF_40


# --- Byte stream, floats, commitment ----------------------------------------------------


def test_byte_stream_concatenates_hmac_digests_by_cursor() -> None:
    stream = byte_stream("server", "client", 7)
    head = bytes(next(stream) for _ in range(96))
    expected = b"".join(
        hmac.new(b"server", f"client:7:{cursor}".encode(), hashlib.sha256).digest()
        for cursor in range(3)
    )
    assert head == expected


def test_floats_sum_bytes_as_base_256_fractions() -> None:
    stream = byte_stream("server", "client", 7)
    raw = [next(stream) for _ in range(40)]
    expected = [
        sum(byte / 256 ** (i + 1) for i, byte in enumerate(raw[k : k + 4])) for k in range(0, 40, 4)
    ]
    assert floats("server", "client", 7, 10) == expected
    assert all(0.0 <= f < 1.0 for f in expected)


def test_commitment_is_sha256_of_the_seed_text() -> None:
    assert (
        commitment(STAKE_KENO_SERVER_SEED)
        == hashlib.sha256(STAKE_KENO_SERVER_SEED.encode("ascii")).hexdigest()
    )
    assert len(commitment("x")) == 64


def test_integers_skip_rejected_words_in_stream_order() -> None:
    # With bound 3·2**30 a quarter of all words are rejected, so skipping is exercised.
    bound = 3 * 2**30
    stream = byte_stream("server", "client", 3)
    raw_words = [int.from_bytes(bytes(next(stream) for _ in range(4)), "big") for _ in range(64)]
    accepted = [w for w in raw_words if w < bound]
    assert len(accepted) < len(raw_words)
    assert integers("server", "client", 3, below=bound, count=len(accepted)) == accepted


# --- Draw properties --------------------------------------------------------------------


@given(server_seeds, client_seeds, nonces, pools_and_counts(), st.sampled_from(Derivation))
def test_draw_is_distinct_in_range_and_exactly_count_long(
    server_seed: str,
    client_seed: str,
    nonce: int,
    pool_and_count: tuple[int, int],
    derivation: Derivation,
) -> None:
    pool, count = pool_and_count
    numbers = draw(server_seed, client_seed, nonce, pool=pool, count=count, derivation=derivation)
    assert len(numbers) == count
    assert len(set(numbers)) == count
    assert all(1 <= n <= pool for n in numbers)


@given(server_seeds, client_seeds, nonces, st.sampled_from(Derivation))
def test_draw_is_deterministic(
    server_seed: str, client_seed: str, nonce: int, derivation: Derivation
) -> None:
    first = draw(server_seed, client_seed, nonce, derivation=derivation)
    assert draw(server_seed, client_seed, nonce, derivation=derivation) == first


@given(server_seeds, client_seeds, nonces, st.sampled_from(Derivation))
def test_draw_differs_between_nonces(
    server_seed: str, client_seed: str, nonce: int, derivation: Derivation
) -> None:
    # Two equal ordered 20-of-80 draws by chance: about 1 in 10**37.
    this = draw(server_seed, client_seed, nonce, derivation=derivation)
    assert draw(server_seed, client_seed, nonce + 1, derivation=derivation) != this


@given(server_seeds, client_seeds, nonces)
def test_v1_and_stake_differ_on_the_same_inputs(
    server_seed: str, client_seed: str, nonce: int
) -> None:
    assert draw(server_seed, client_seed, nonce, derivation=Derivation.V1) != draw(
        server_seed, client_seed, nonce, derivation=Derivation.STAKE
    )


def test_default_derivation_is_v1() -> None:
    assert DEFAULT_DERIVATION is Derivation.V1
    assert draw("s", "c", 1) == draw("s", "c", 1, derivation=Derivation.V1)


def test_full_draw_is_a_permutation_and_empty_draw_is_empty() -> None:
    assert sorted(draw("s", "c", 1, pool=80, count=80)) == list(range(1, 81))
    assert draw("s", "c", 1, pool=80, count=0) == ()
    assert draw("s", "c", 1, pool=1, count=1) == (1,)


# --- Uniformity -------------------------------------------------------------------------


@pytest.mark.parametrize("derivation", list(Derivation))
def test_draw_counts_do_not_reject_uniformity(derivation: Derivation) -> None:
    # 4,000 rounds of 20 of 80 = 80,000 numbers, 1,000 expected per number; fixed seeds
    # keep the statistic (and so the test) deterministic.
    counts: Counter[int] = Counter()
    for nonce in range(4_000):
        counts.update(draw("uniformity-server", "uniformity-client", nonce, derivation=derivation))
    assert sum(counts.values()) == 80_000
    assert chi_square(counts, range(1, 81)) < CHI2_99[79]


def test_integers_below_a_non_power_of_two_are_uniform() -> None:
    counts = Counter(integers("uniformity-server", "uniformity-client", 0, below=10, count=50_000))
    assert chi_square(counts, range(10)) < CHI2_99[9]


def test_integers_have_no_modulo_bias() -> None:
    # Below 3·2**30 a plain `word % bound` would land in the lowest third twice as often
    # as in each other third; rejection sampling must keep the thirds level.
    bound = 3 * 2**30
    values = integers("uniformity-server", "uniformity-client", 1, below=bound, count=30_000)
    thirds = Counter(v // 2**30 for v in values)
    assert chi_square(thirds, range(3)) < CHI2_99[2]


# --- Errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"server_seed": ""}, "server seed must not be empty"),
        ({"server_seed": "sé"}, "server seed must be ASCII"),
        ({"server_seed": 1}, "server seed must be a string"),
        ({"client_seed": ""}, "client seed must not be empty"),
        ({"client_seed": None}, "client seed must be a string"),
        ({"nonce": -1}, "nonce must be >= 0"),
        ({"nonce": 1.0}, "nonce must be an integer"),
        ({"nonce": True}, "nonce must be an integer"),
        ({"pool": 0}, "pool size must be between 1"),
        ({"pool": MAX_POOL + 1}, "pool size must be between 1"),
        ({"count": -1}, "draw count must be between 0"),
        ({"pool": 10, "count": 11}, "draw count must be between 0 and the pool size 10"),
        ({"derivation": "v2"}, "unknown fairness derivation 'v2'; choose one of: v1, stake"),
    ],
)
def test_draw_rejects_bad_input(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"server_seed": "s", "client_seed": "c", "nonce": 0, **kwargs}
    with pytest.raises(FairnessError, match=message):
        draw(**arguments)  # type: ignore[arg-type]


def test_floats_integers_and_stream_reject_bad_input() -> None:
    with pytest.raises(FairnessError, match="float count must be between 0"):
        floats("s", "c", 0, -1)
    with pytest.raises(FairnessError, match="float count must be between 0"):
        floats("s", "c", 0, MAX_COUNT + 1)
    with pytest.raises(FairnessError, match="integer bound must be between 1 and 2\\*\\*32"):
        integers("s", "c", 0, below=0, count=1)
    with pytest.raises(FairnessError, match="integer bound must be between 1 and 2\\*\\*32"):
        integers("s", "c", 0, below=2**32 + 1, count=1)
    # Checked when called, not when the first byte is read.
    with pytest.raises(FairnessError, match="nonce must be >= 0"):
        byte_stream("s", "c", -1)
    with pytest.raises(FairnessError, match="server seed must not be empty"):
        commitment("")


def test_unknown_derivation_name_is_a_fairness_error() -> None:
    with pytest.raises(FairnessError, match="unknown fairness derivation"):
        Derivation.parse("STAKE")
    assert Derivation.parse("stake") is Derivation.STAKE
    assert Derivation.parse(Derivation.V1) is Derivation.V1
