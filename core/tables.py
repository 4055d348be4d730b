"""Game tables: what one round scheduler plays, how often, in which currencies, with which
limits.

A table is configured as a JSON object or a TOML table (``[[tables]]``); every field
but ``table_id``, ``paytable_set``, ``currencies`` and ``max_stake_minor`` has a default::

    {"table_id": "keno-1", "paytable_set": "standard", "currencies": ["EUR", "USD"],
     "max_stake_minor": 1000000, "max_win_minor": 50000000,
     "round_liability_cap_minor": 500000000,
     "period_ms": 10000, "close_offset_ms": 1000, "commit_lead_ms": 2000,
     "min_stake_minor": 1, "derivation": "v1", "enabled": true}

**Limits are in minor units and apply to every currency of the table alike**: a
``max_stake_minor`` of 1,000,000 is 10,000.00 EUR and 10,000.00 USD. So that one number
means the same amount of money units everywhere, all currencies of a table must have the
same number of decimals (EUR with USD, not EUR with JPY or ETH); a table for another
kind of currency is another table. There are no exchange rates here.

``max_win_minor`` caps one ticket's payout (absent: only the paytable's own
``max_win_multiplier`` applies); ``round_liability_cap_minor`` caps the sum of one
round's payouts, pro-rating every win when it binds (see :mod:`core.settlement`).

Parsing is strict and pure (the caller loads the file): an unknown key, a missing
required key, a float or boolean where an integer belongs, an unknown currency or
derivation each raise :class:`~core.errors.ConfigError` naming the table and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from core.errors import ConfigError, FairnessError, MoneyError, RoundError
from core.fairness import DEFAULT_DERIVATION, Derivation
from core.money import MAX_AMOUNT_MINOR, currency
from core.rounds import Schedule, check_table_id

__all__ = [
    "DEFAULT_TABLES",
    "MAX_COMMIT_LEAD_MS",
    "TableConfig",
    "parse_tables",
]

#: The earliest a round may be created before it opens. A day is far beyond any chain's
#: confirmation time; the bound catches seconds typed where milliseconds belong.
MAX_COMMIT_LEAD_MS = 86_400_000

_REQUIRED = ("table_id", "paytable_set", "currencies", "max_stake_minor")
_OPTIONAL_MONEY = ("max_win_minor", "round_liability_cap_minor")
_MAX_NAME_CHARS = 64


def _kind(value: object) -> str:
    """The JSON-ish name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, int | float):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, str):
        return f"string {json.dumps(value)}"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class TableConfig:
    """One game table; validated on construction (:class:`ConfigError` naming the field)."""

    table_id: str
    paytable_set: str  # the name of a PaytableSet, one set per table
    period_ms: int = 10_000
    close_offset_ms: int = 1_000
    commit_lead_ms: int = 2_000  # a round is created (and committed on chain) this early
    currencies: tuple[str, ...]
    min_stake_minor: int = 1  # per ticket, in every currency of the table
    max_stake_minor: int  # per ticket
    max_win_minor: int | None = None  # per ticket; None: the paytable's own cap only
    round_liability_cap_minor: int | None = None  # sum of a round's payouts; None: no cap
    derivation: str = DEFAULT_DERIVATION.value
    enabled: bool = True

    def __post_init__(self) -> None:
        table_id = self.table_id
        label = f"table {table_id!r}" if isinstance(table_id, str) else "table"

        def fail(name: str, problem: str) -> ConfigError:
            return ConfigError(f"{label}: {name}: {problem}")

        try:
            check_table_id(table_id)
        except RoundError as exc:
            raise fail("table_id", str(exc)) from None

        name = self.paytable_set
        if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME_CHARS:
            raise fail(
                "paytable_set",
                f"must be the name of a paytable set (1-{_MAX_NAME_CHARS} characters), "
                f"got {_kind(name)}",
            )

        for field_name in ("period_ms", "close_offset_ms", "commit_lead_ms"):
            value = getattr(self, field_name)
            if not _is_int(value):
                raise fail(
                    field_name, f"must be an integer number of milliseconds, got {_kind(value)}"
                )
        try:
            Schedule(self.period_ms, self.close_offset_ms)
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        if not 0 <= self.commit_lead_ms <= MAX_COMMIT_LEAD_MS:
            raise fail(
                "commit_lead_ms", f"must be in 0..{MAX_COMMIT_LEAD_MS}, got {self.commit_lead_ms}"
            )

        object.__setattr__(self, "currencies", self._checked_currencies(fail))

        for field_name in ("min_stake_minor", "max_stake_minor", *_OPTIONAL_MONEY):
            value = getattr(self, field_name)
            if value is None and field_name in _OPTIONAL_MONEY:
                continue
            if not _is_int(value):
                raise fail(
                    field_name, f"must be an integer number of minor units, got {_kind(value)}"
                )
            if value > MAX_AMOUNT_MINOR:
                raise fail(field_name, f"{value} exceeds the ledger's 38-digit limit")
            if value < 1:
                raise fail(field_name, f"must be at least 1 minor unit, got {value}")
        if self.max_stake_minor < self.min_stake_minor:
            raise fail(
                "max_stake_minor",
                f"{self.max_stake_minor} is below min_stake_minor {self.min_stake_minor}",
            )

        try:
            derivation = Derivation.parse(self.derivation)
        except FairnessError as exc:
            raise fail("derivation", str(exc)) from None
        object.__setattr__(self, "derivation", derivation.value)

        if not isinstance(self.enabled, bool):
            raise fail("enabled", f"must be true or false, got {_kind(self.enabled)}")

    def _checked_currencies(self, fail: Any) -> tuple[str, ...]:
        raw = self.currencies
        if isinstance(raw, str) or not isinstance(raw, Sequence) or not raw:
            raise fail(
                "currencies", f"must be a non-empty list of currency codes, got {_kind(raw)}"
            )
        codes: list[str] = []
        exponents: dict[int, str] = {}
        for code in raw:
            try:
                cur = currency(code)
            except MoneyError as exc:
                raise fail("currencies", str(exc)) from None
            if code in codes:
                raise fail("currencies", f"{code} is listed twice")
            codes.append(code)
            exponents.setdefault(cur.exponent, code)
        if len(exponents) > 1:
            shown = ", ".join(f"{c} ({e} decimals)" for e, c in sorted(exponents.items()))
            raise fail(
                "currencies",
                f"limits are in minor units shared by every currency, so all need the same "
                f"number of decimals; got {shown}",
            )
        return tuple(codes)

    # -- derived

    @property
    def schedule(self) -> Schedule:
        """The table's wall-clock slots."""
        return Schedule(self.period_ms, self.close_offset_ms)

    @property
    def fairness_derivation(self) -> Derivation:
        """:attr:`derivation` as the enum the draw takes."""
        return Derivation(self.derivation)

    # -- mapping form (JSON / TOML)

    @classmethod
    def from_mapping(cls, obj: object, *, where: str = "table") -> TableConfig:
        """A table from a loaded JSON object / TOML table; strict (see the module doc).

        ``where`` locates the object in its document for error messages
        (e.g. ``tables[2]``).
        """
        if not isinstance(obj, Mapping):
            raise ConfigError(f"{where}: expected an object, got {_kind(obj)}")
        raw_id = obj.get("table_id")
        label = f"{where} (table {raw_id!r})" if isinstance(raw_id, str) else where
        known = [f.name for f in fields(cls)]
        unknown = [k for k in obj if k not in known]
        if unknown:
            shown = ", ".join(json.dumps(k) if isinstance(k, str) else repr(k) for k in unknown)
            raise ConfigError(f"{label}: unknown key {shown} (expected: {', '.join(known)})")
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise ConfigError(f"{label}: missing {', '.join(missing)}")
        values = dict(obj)
        raw_currencies = values["currencies"]
        # JSON and TOML give arrays as lists; the config keeps an immutable tuple.
        if not isinstance(raw_currencies, list | tuple):
            raise ConfigError(
                f"{label}: currencies: must be a list of currency codes, got {_kind(raw_currencies)}"
            )
        values["currencies"] = tuple(raw_currencies)
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def to_mapping(self) -> dict[str, Any]:
        """The JSON/TOML form; ``from_mapping(to_mapping())`` gives back an equal table.

        Absent limits (``None``) are left out rather than written as null: TOML has no null.
        """
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = list(value) if f.name == "currencies" else value
        return out


def parse_tables(obj: object) -> dict[str, TableConfig]:
    """Every table of a loaded document, by id, in document order.

    ``obj`` is a list of table objects (JSON) or a mapping whose only key is ``tables``
    holding that list (TOML ``[[tables]]``). Ids must be unique; at least one table.
    """
    if isinstance(obj, Mapping):
        extra = [k for k in obj if k != "tables"]
        if extra:
            raise ConfigError(f"tables document: unknown key {extra[0]!r} (expected: tables)")
        if "tables" not in obj:
            raise ConfigError('tables document: missing "tables"')
        obj = obj["tables"]
    if not isinstance(obj, list | tuple):
        raise ConfigError(f"tables: expected a list of tables, got {_kind(obj)}")
    if not obj:
        raise ConfigError("tables: no table configured")
    tables: dict[str, TableConfig] = {}
    first_at: dict[str, int] = {}
    for index, item in enumerate(obj):
        table = TableConfig.from_mapping(item, where=f"tables[{index}]")
        if table.table_id in tables:
            raise ConfigError(
                f"tables[{index}]: table id {table.table_id!r} is already used by "
                f"tables[{first_at[table.table_id]}]"
            )
        tables[table.table_id] = table
        first_at[table.table_id] = index
    return tables


#: An example configuration: one 10-second table in EUR and USD on the shipped "standard" set.
DEFAULT_TABLES: Mapping[str, TableConfig] = MappingProxyType(
    {
        "keno-1": TableConfig(
            table_id="keno-1",
            paytable_set="standard",
            currencies=("EUR", "USD"),
            max_stake_minor=10_000_00,  # 10,000.00 per ticket
            max_win_minor=500_000_00,  # 500,000.00 per ticket
            round_liability_cap_minor=5_000_000_00,  # 5,000,000.00 per round
        )
    }
)
