"""Reading the JSON inputs of the simulations; every failure is one ``SimulationError`` line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core import strict_json
from core.errors import PaytableError
from core.keno import PaytableSet, parse_paytables
from sims import SimulationError

__all__ = ["load_json", "load_paytables", "paytables_from_document"]


def load_json(path: str | Path, what: str) -> Any:
    """The parsed JSON document at ``path`` (``what`` names it in messages)."""
    where = f"{what} {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SimulationError(f"cannot read {where}: no such file") from None
    except IsADirectoryError:
        raise SimulationError(f"cannot read {where}: it is a directory") from None
    except UnicodeDecodeError:
        raise SimulationError(f"cannot read {where}: not UTF-8 text") from None
    except OSError as exc:
        raise SimulationError(f"cannot read {where}: {exc.strerror or exc}") from None
    try:
        return strict_json.loads(text)
    except json.JSONDecodeError as exc:
        raise SimulationError(
            f"{where} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except strict_json.DuplicateKeyError as exc:
        raise SimulationError(f"{where}: key {exc.key!r} appears twice") from None
    except ValueError as exc:
        raise SimulationError(f"{where}: {exc}") from None


def paytables_from_document(document: Any, where: str, name: str = "default") -> PaytableSet:
    """A validated :class:`PaytableSet` from a loaded paytable document."""
    try:
        tables, _published = parse_paytables(document, name=name)
    except PaytableError as exc:
        raise SimulationError(f"{where}: {exc}") from None
    return tables


def load_paytables(path: str | Path) -> PaytableSet:
    """The paytable file at ``path`` (format of ``core.keno.parse_paytables``)."""
    return paytables_from_document(load_json(path, "paytable file"), f"paytable file {path}",
                                   name=Path(path).stem or "default")
