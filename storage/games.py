"""Game configuration from files: paytable documents and Keno table definitions.

Paytable sets: the ones shipped with ray-rgs, plus any the operator adds.

A set's name is its file name without ``.json``. Shipped: ``standard`` (our own 1-10 spot
tables, 90-96% return) and ``michigan`` (a published lottery prize table, 4-10 spots).
Documents are validated with ``core.keno.parse_paytables`` when loaded, so a table that
names a broken or missing set fails at start-up, not at its first draw.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from core.errors import ConfigError, PaytableError
from core.keno import PaytableSet, parse_paytables
from core.tables import DEFAULT_TABLES, TableConfig, parse_tables

__all__ = ["load_paytable_documents", "load_tables", "paytable_sets"]


def load_paytable_documents(extra_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every known set's document by name (files in ``extra_dir`` override shipped ones)."""
    documents: dict[str, dict[str, Any]] = {}
    shipped = resources.files("storage") / "data" / "paytables"
    for entry in shipped.iterdir():
        if entry.name.endswith(".json"):
            documents[entry.name[: -len(".json")]] = _parse(entry.read_text(encoding="utf-8"), entry.name)
    if extra_dir is not None:
        if not extra_dir.is_dir():
            raise ConfigError(f"paytables_dir {extra_dir} is not a folder")
        for path in sorted(extra_dir.glob("*.json")):
            documents[path.stem] = _parse(path.read_text(encoding="utf-8"), str(path))
    return documents


def paytable_sets(documents: dict[str, dict[str, Any]]) -> dict[str, PaytableSet]:
    return {name: parse_paytables(doc, name=name)[0] for name, doc in documents.items()}


def load_tables(path: Path | None) -> list[TableConfig]:
    """Tables from a JSON list or a TOML ``[[tables]]`` file; the shipped defaults if None."""
    if path is None:
        return list(DEFAULT_TABLES.values())
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"tables_file {path}: cannot read it ({exc.strerror})") from exc
    try:
        if path.suffix == ".toml":
            import tomllib

            document: Any = tomllib.loads(text)
        else:
            document = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"tables_file {path} does not parse: {exc}") from exc
    return list(parse_tables(document).values())


def _parse(text: str, where: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"paytable file {where} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"paytable file {where} must hold a JSON object")
    try:
        parse_paytables(document, name=where)
    except PaytableError as exc:
        raise ConfigError(f"paytable file {where}: {exc}") from exc
    return document
