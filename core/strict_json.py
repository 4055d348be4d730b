"""JSON for money inputs (paytables, ticket books): a duplicated key or a NaN is an error.

Plain ``json.loads`` keeps the last of two equal keys and accepts ``NaN``; for a paytable
either is a mistake to report, not to guess about.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DuplicateKeyError", "loads"]


class DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} appears twice")
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKeyError(key)
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def loads(text: str) -> Any:
    """Parse ``text``; raises ``json.JSONDecodeError``, ``DuplicateKeyError`` or ``ValueError``."""
    return json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
