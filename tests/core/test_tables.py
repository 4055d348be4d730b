"""``core.tables``: strict table configuration from JSON / TOML mappings."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import pytest

from core.errors import ConfigError
from core.fairness import Derivation
from core.rounds import Schedule
from core.tables import DEFAULT_TABLES, TableConfig, parse_tables


def minimal(**extra: Any) -> dict[str, Any]:
    return {
        "table_id": "keno-1",
        "paytable_set": "classic",
        "currencies": ["EUR", "USD"],
        "max_stake_minor": 1_000_000,
        **extra,
    }


def test_defaults() -> None:
    table = TableConfig.from_mapping(minimal())
    assert table.period_ms == 10_000
    assert table.close_offset_ms == 1_000
    assert table.commit_lead_ms == 2_000
    assert table.min_stake_minor == 1
    assert table.max_win_minor is None
    assert table.round_liability_cap_minor is None
    assert table.derivation == "v1"
    assert table.fairness_derivation is Derivation.V1
    assert table.enabled is True
    assert table.currencies == ("EUR", "USD")
    assert table.schedule == Schedule(10_000, 1_000)


def test_default_tables_example() -> None:
    assert list(DEFAULT_TABLES) == ["keno-1"]
    table = DEFAULT_TABLES["keno-1"]
    assert table.currencies == ("EUR", "USD")
    assert table.paytable_set == "standard"
    assert table.max_stake_minor == 10_000_00
    assert table.max_win_minor == 500_000_00
    assert table.round_liability_cap_minor == 5_000_000_00
    with pytest.raises(TypeError):
        DEFAULT_TABLES["x"] = table  # type: ignore[index]


def test_round_trip_through_json_and_toml() -> None:
    full = TableConfig.from_mapping(
        minimal(
            period_ms=5_000,
            close_offset_ms=500,
            commit_lead_ms=0,
            min_stake_minor=10,
            max_win_minor=50_000_000,
            round_liability_cap_minor=500_000_000,
            derivation="stake",
            enabled=False,
        )
    )
    for table in (full, TableConfig.from_mapping(minimal()), DEFAULT_TABLES["keno-1"]):
        mapping = table.to_mapping()
        assert TableConfig.from_mapping(mapping) == table
        assert TableConfig.from_mapping(json.loads(json.dumps(mapping))) == table
        assert None not in mapping.values()  # TOML has no null


def test_parse_tables_from_toml() -> None:
    text = """
[[tables]]
table_id = "keno-1"
paytable_set = "classic"
currencies = ["EUR", "USD"]
max_stake_minor = 1_000_000
round_liability_cap_minor = 500_000_000

[[tables]]
table_id = "turbo"
paytable_set = "classic"
currencies = ["BTC"]
max_stake_minor = 100_000_000
period_ms = 5_000
close_offset_ms = 500
"""
    tables = parse_tables(tomllib.loads(text))
    assert list(tables) == ["keno-1", "turbo"]
    assert tables["turbo"].schedule == Schedule(5_000, 500)
    assert tables["keno-1"].round_liability_cap_minor == 500_000_000


def test_parse_tables_from_a_json_list() -> None:
    tables = parse_tables(json.loads(json.dumps([minimal(), minimal(table_id="keno-2")])))
    assert list(tables) == ["keno-1", "keno-2"]


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(
        ConfigError, match=r"tables\[2\]: table id 'keno-1' is already used by tables\[0\]"
    ):
        parse_tables([minimal(), minimal(table_id="keno-2"), minimal()])


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "no table"),
        ({}, 'missing "tables"'),
        ({"tables": [], "x": 1}, "unknown key"),
        ("keno-1", "expected a list"),
        ([5], r"tables\[0\]: expected an object"),
    ],
)
def test_bad_documents(document: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_tables(document)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"table_id": "Keno"}, "table_id"),
        ({"table_id": 5}, "table_id"),
        ({"paytable_set": ""}, "paytable_set"),
        ({"paytable_set": 3}, "paytable_set"),
        ({"period_ms": 10_000.0}, "period_ms"),
        ({"period_ms": "10000"}, "period_ms"),
        ({"period_ms": 100}, "period_ms"),
        ({"close_offset_ms": 0}, "close_offset_ms"),
        ({"close_offset_ms": 10_000}, "close_offset_ms"),
        ({"commit_lead_ms": -1}, "commit_lead_ms"),
        ({"commit_lead_ms": 86_400_001}, "commit_lead_ms"),
        ({"commit_lead_ms": True}, "commit_lead_ms"),
        ({"currencies": []}, "currencies"),
        ({"currencies": "EUR"}, "currencies"),
        ({"currencies": ["EUR", "XXX"]}, "currencies"),
        ({"currencies": ["EUR", "EUR"]}, "currencies"),
        ({"currencies": ["EUR", "JPY"]}, "currencies"),
        ({"currencies": ["eur"]}, "currencies"),
        ({"min_stake_minor": 0}, "min_stake_minor"),
        ({"min_stake_minor": 1.0}, "min_stake_minor"),
        ({"max_stake_minor": True}, "max_stake_minor"),
        ({"max_stake_minor": "100"}, "max_stake_minor"),
        ({"max_stake_minor": -5}, "max_stake_minor"),
        ({"max_stake_minor": 10**38}, "max_stake_minor"),
        ({"min_stake_minor": 100, "max_stake_minor": 99}, "max_stake_minor"),
        ({"max_win_minor": 0}, "max_win_minor"),
        ({"max_win_minor": 2.5}, "max_win_minor"),
        ({"round_liability_cap_minor": "big"}, "round_liability_cap_minor"),
        ({"derivation": "v2"}, "derivation"),
        ({"derivation": None}, "derivation"),
        ({"enabled": 1}, "enabled"),
        ({"enabled": "true"}, "enabled"),
    ],
)
def test_bad_fields_name_the_table_and_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        TableConfig.from_mapping(minimal(**change), where="tables[3]")
    message = str(info.value)
    assert message.startswith("tables[3]")
    assert field in message
    if field != "table_id":
        assert "'keno-1'" in message


def test_unknown_and_missing_keys() -> None:
    with pytest.raises(ConfigError, match=r'tables\[0\] \(table .keno-1.\): unknown key "max_bet"'):
        TableConfig.from_mapping(minimal(max_bet=5), where="tables[0]")
    for key in ("table_id", "paytable_set", "currencies", "max_stake_minor"):
        obj = minimal()
        del obj[key]
        with pytest.raises(ConfigError, match=f"missing {key}"):
            TableConfig.from_mapping(obj)


def test_null_limits_mean_no_limit() -> None:
    table = TableConfig.from_mapping(minimal(max_win_minor=None, round_liability_cap_minor=None))
    assert table.max_win_minor is None and table.round_liability_cap_minor is None


def test_big_limits_for_18_decimal_currencies() -> None:
    table = TableConfig.from_mapping(
        minimal(currencies=["ETH"], max_stake_minor=10 * 10**18, max_win_minor=10**30)
    )
    assert table.max_stake_minor == 10**19
    assert TableConfig.from_mapping(table.to_mapping()) == table


def test_direct_construction_is_validated_and_normalised() -> None:
    table = TableConfig(
        table_id="t",
        paytable_set="classic",
        currencies=["EUR"],  # type: ignore[arg-type]
        max_stake_minor=100,
        derivation=Derivation.STAKE,  # type: ignore[arg-type]
    )
    assert table.currencies == ("EUR",)
    assert table.derivation == "stake"
    with pytest.raises(ConfigError, match="table 't': max_stake_minor"):
        TableConfig(table_id="t", paytable_set="classic", currencies=("EUR",), max_stake_minor=0)
