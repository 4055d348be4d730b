"""The dialects ray-rgs speaks, by name. A new dialect is one module and one line here."""

from __future__ import annotations

import importlib
from types import MappingProxyType

from core.dialects.base import Dialect
from core.errors import ConfigError

__all__ = ["DIALECT_MODULES", "dialect"]

DIALECT_MODULES = MappingProxyType(
    {
        "hub88": "core.dialects.hub88",
        "softswiss": "core.dialects.softswiss",
    }
)


def dialect(name: str) -> Dialect:
    module = DIALECT_MODULES.get(name)
    if module is None:
        raise ConfigError(f"unknown wallet dialect {name!r}; known: {', '.join(sorted(DIALECT_MODULES))}")
    found: Dialect = importlib.import_module(module).DIALECT
    return found
