"""The key that seals server seeds at rest: from configuration, or made once on this machine.

Losing it makes every unrevealed seed unreadable, and such rounds are voided and refunded
(GLI-19 interrupted game); so the generated file is written once, never replaced, and
readable by its owner only.
"""

from __future__ import annotations

import os
from pathlib import Path

from core.config import Config
from core.errors import ConfigError
from core.seeds import generate_key_hex, parse_key

__all__ = ["seed_key_hex"]


def seed_key_hex(config: Config) -> str:
    if config.seed_key is not None:
        parse_key(config.seed_key)
        return config.seed_key.strip().lower()
    path = config.state_dir / "seed.key"
    if not path.exists():
        _write_once(path, generate_key_hex())
    text = path.read_text(encoding="ascii").strip()
    try:
        parse_key(text)
    except Exception as exc:
        raise ConfigError(f"{path} does not hold a 64-hex-character seed key: {exc}") from exc
    return text.lower()


def _write_once(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first: use theirs
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text + "\n")
