"""The exception tree of the pure domain.

::

    RgsError                      every error ray-rgs raises on purpose
    ├── MoneyError                amounts and currencies
    │   ├── UnknownCurrencyError  a currency code we do not trade
    │   ├── AmountFormatError     not a decimal string / integer (floats, NaN, garbage)
    │   ├── PrecisionError        more decimals than the currency's minor unit
    │   ├── NegativeAmountError   a negative amount where only >= 0 is allowed
    │   └── AmountOverflowError   beyond what the ledger's storage type holds
    ├── FairnessError             bad seeds, nonces, pool sizes or derivations
    ├── PaytableError             a paytable that cannot be played
    ├── LedgerError               postings that do not balance or break an invariant
    ├── ProtocolError             a wallet command that is malformed (not a business refusal)
    ├── LifecycleError            an illegal state-machine transition
    └── ConfigError               configuration that fails validation at start-up

Business refusals of the wallet (insufficient funds, already resolved, ...) are not
exceptions: they are result codes (``core.wallet.ResultCode``), because they are stored
and replayed verbatim for idempotent retries.

Lower layers define their own trees under ``RgsError`` (``storage.errors``,
``actors.errors``) so a caller can catch one family at a time.
"""

from __future__ import annotations

__all__ = [
    "AmountFormatError",
    "AmountOverflowError",
    "ConfigError",
    "FairnessError",
    "LedgerError",
    "LifecycleError",
    "MoneyError",
    "NegativeAmountError",
    "PaytableError",
    "PrecisionError",
    "ProtocolError",
    "RgsError",
    "UnknownCurrencyError",
]


class RgsError(Exception):
    """Base of every error ray-rgs raises on purpose; its message is fit for a user."""


class MoneyError(RgsError, ValueError):
    pass


class UnknownCurrencyError(MoneyError):
    pass


class AmountFormatError(MoneyError):
    pass


class PrecisionError(MoneyError):
    pass


class NegativeAmountError(MoneyError):
    pass


class AmountOverflowError(MoneyError):
    pass


class FairnessError(RgsError, ValueError):
    pass


class PaytableError(RgsError, ValueError):
    pass


class LedgerError(RgsError):
    pass


class ProtocolError(RgsError, ValueError):
    pass


class LifecycleError(RgsError):
    pass


class ConfigError(RgsError):
    pass
