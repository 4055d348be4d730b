"""JSON for money inputs (paytables, ticket books): a duplicated key or a NaN is an error.

Plain ``json.loads`` keeps the last of two equal keys and accepts ``NaN``; for a paytable
either is a mistake to report, not to guess about.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "DuplicateKeyError", "loads", "too_deep"]

# Deeper than any request we accept. ``json`` parses nesting by recursion; py-evm and
# py_ecc raise the interpreter's recursion limit to 100,000 when imported (the chain
# client imports them), so in such a process a hostile body of 50,000 "[" overflows the
# C stack and kills it instead of raising RecursionError. Untrusted JSON is checked first.
MAX_DEPTH = 32


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


def too_deep(data: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Does ``data`` nest arrays/objects deeper than ``limit`` (brackets in strings aside)?"""
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot nest deeper than it has brackets: the common, fast case
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def loads(text: str) -> Any:
    """Parse ``text``; raises ``json.JSONDecodeError``, ``DuplicateKeyError`` or ``ValueError``."""
    return json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
