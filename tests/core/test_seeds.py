"""``core.seeds``: fresh server seeds and the AES-256-GCM vault that seals them per round."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import ConfigError, SeedError, SeedKeyError, SeedUnreadableError
from core.fairness import commitment
from core.seeds import (
    KEY_BYTES,
    SEAL_VERSION,
    SeedVault,
    generate_key_hex,
    new_server_seed,
    parse_key,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture
def vault() -> SeedVault:
    return SeedVault(KEY)


def test_new_server_seed_is_64_lowercase_hex_and_fresh() -> None:
    seeds = {new_server_seed() for _ in range(50)}
    assert len(seeds) == 50
    for seed in seeds:
        assert re.fullmatch(r"[0-9a-f]{64}", seed)
        assert len(commitment(seed)) == 64  # usable by the fairness module as is


def test_seal_and_open_round_trip(vault: SeedVault) -> None:
    seed = new_server_seed()
    blob = vault.seal(seed, "keno-1-5")
    assert blob[0] == SEAL_VERSION
    assert len(blob) == 1 + 12 + len(seed) + 16
    assert seed.encode() not in blob
    assert vault.open(blob, "keno-1-5") == seed
    # another vault with the same key opens it too (a restarted scheduler)
    assert SeedVault(bytearray(KEY)).open(blob, "keno-1-5") == seed


def test_every_seal_uses_a_fresh_nonce(vault: SeedVault) -> None:
    blobs = {vault.seal("abc", "keno-1-5") for _ in range(20)}
    assert len(blobs) == 20


def test_wrong_key_fails(vault: SeedVault) -> None:
    blob = vault.seal(new_server_seed(), "keno-1-5")
    with pytest.raises(SeedUnreadableError, match="keno-1-5"):
        SeedVault(OTHER_KEY).open(blob, "keno-1-5")


def test_blob_moved_to_another_round_fails(vault: SeedVault) -> None:
    blob = vault.seal(new_server_seed(), "keno-1-5")
    with pytest.raises(SeedUnreadableError):
        vault.open(blob, "keno-1-6")


def test_every_altered_byte_is_detected(vault: SeedVault) -> None:
    blob = vault.seal(new_server_seed(), "keno-1-5")
    for i in range(len(blob)):
        altered = bytearray(blob)
        altered[i] ^= 0x01
        with pytest.raises(SeedUnreadableError):
            vault.open(bytes(altered), "keno-1-5")


@pytest.mark.parametrize("cut", [0, 1, 13, 29, -1])
def test_truncated_blobs_fail(vault: SeedVault, cut: int) -> None:
    blob = vault.seal(new_server_seed(), "keno-1-5")
    with pytest.raises(SeedUnreadableError):
        vault.open(blob[:cut], "keno-1-5")


def test_unknown_version_and_junk_fail(vault: SeedVault) -> None:
    blob = vault.seal("seed", "r-1")
    with pytest.raises(SeedUnreadableError):
        vault.open(b"\x02" + blob[1:], "r-1")
    with pytest.raises(SeedUnreadableError):
        vault.open(blob + b"\x00", "r-1")
    with pytest.raises(SeedUnreadableError):
        vault.open("not bytes", "r-1")  # type: ignore[arg-type]
    assert vault.open(memoryview(blob), "r-1") == "seed"


def test_seal_validates_its_inputs(vault: SeedVault) -> None:
    for bad_seed in ("", "é" * 3, 5, "x" * 1025):
        with pytest.raises(SeedError):
            vault.seal(bad_seed, "r-1")  # type: ignore[arg-type]
    for bad_round in ("", None, "r" * 257):
        with pytest.raises(SeedError):
            vault.seal("seed", bad_round)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [b"", b"x" * 31, b"x" * 33, "00" * 32, None])
def test_vault_needs_a_32_byte_key(key: object) -> None:
    with pytest.raises(SeedKeyError) as info:
        SeedVault(key)  # type: ignore[arg-type]
    assert isinstance(info.value, SeedError)
    assert "00" * 8 not in str(info.value)


def test_vault_hides_its_key() -> None:
    assert repr(SeedVault(KEY)) == "SeedVault(<key hidden>)"
    assert KEY.hex() not in repr(SeedVault(KEY))


@settings(max_examples=50)
@given(
    seed=st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=200),
    round_id=st.text(min_size=1, max_size=50),
)
def test_round_trip_any_ascii_seed(seed: str, round_id: str) -> None:
    vault = SeedVault(KEY)
    assert vault.open(vault.seal(seed, round_id), round_id) == seed


# ----------------------------------------------------------------- keys


def test_generate_and_parse_key() -> None:
    text = generate_key_hex()
    assert re.fullmatch(r"[0-9a-f]{64}", text)
    key = parse_key(text)
    assert len(key) == KEY_BYTES and key.hex() == text
    assert generate_key_hex() != text
    assert parse_key("  " + text.upper() + "\n") == key  # pasted keys


@pytest.mark.parametrize(
    "text",
    ["", "00" * 31, "00" * 33, "zz" * 32, "0x" + "00" * 31, "00" * 16 + " " + "00" * 16],
)
def test_bad_keys_name_the_setting_but_not_the_value(text: str) -> None:
    secretish = text.replace(" ", "")
    with pytest.raises(SeedKeyError, match="seed_key") as info:
        parse_key(text)
    # both families catch it: start-up code (ConfigError) and vault code (SeedError)
    assert isinstance(info.value, ConfigError) and isinstance(info.value, SeedError)
    if len(secretish) >= 8:
        assert secretish not in str(info.value)


def test_parse_key_rejects_non_strings() -> None:
    with pytest.raises(SeedKeyError, match="seed_key"):
        parse_key(b"00" * 32)  # type: ignore[arg-type]
