"""Small builders shared by tests."""

from __future__ import annotations

from core.wallet import Command, CommandKind

OPERATOR = "op-test"


def cmd(kind: str, player: str = "alice", key: str = "", amount: int = 0, **kw: object) -> Command:
    """A wallet command of the test operator, EUR unless ``currency=`` says otherwise."""
    currency = str(kw.pop("currency", "EUR"))
    return Command(CommandKind(kind), OPERATOR, player, currency, key, amount, **kw)  # type: ignore[arg-type]
