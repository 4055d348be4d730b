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
    ├── RoundError                a malformed round id, slot or schedule time
    ├── SeedError                 server seeds and the key that seals them
    │   ├── SeedKeyError          a vault key that is not 32 bytes (also a ConfigError)
    │   └── SeedUnreadableError   a sealed seed that cannot be opened (key, round, tampering)
    ├── AuthError                 an operator API call refused before it ran; carries a
    │   │                         stable ``code`` and its ``http_status``
    │   ├── AuthenticationError   401: the caller is not established
    │   │   ├── SignatureError    missing/stale timestamp, missing or bad request signature
    │   │   └── TokenError        missing, expired or invalid bearer token
    │   └── ForbiddenError        403: a known caller that may not do this (IP, another
    │                             operator's data, disabled credentials)
    ├── CredentialError           operator credentials and the keys that protect them
    │   ├── CredentialKeyError    a vault, token or master key of the wrong size (also a
    │   │                         ConfigError)
    │   └── CredentialUnreadableError  a sealed secret that does not open (key, operator,
    │                             tampering)
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
    "AuthError",
    "AuthenticationError",
    "ConfigError",
    "CredentialError",
    "CredentialKeyError",
    "CredentialUnreadableError",
    "FairnessError",
    "ForbiddenError",
    "LedgerError",
    "LifecycleError",
    "MoneyError",
    "NegativeAmountError",
    "PaytableError",
    "PrecisionError",
    "ProtocolError",
    "RgsError",
    "RoundError",
    "SeedError",
    "SeedKeyError",
    "SeedUnreadableError",
    "SignatureError",
    "TokenError",
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


class RoundError(RgsError, ValueError):
    pass


class SeedError(RgsError):
    pass


# A bad ``seed_key`` setting is both: start-up code catches ConfigError, vault code SeedError.
class SeedKeyError(SeedError, ConfigError):
    pass


class SeedUnreadableError(SeedError):
    pass


class AuthError(RgsError):
    """A refused operator API call: ``code`` is stable (clients branch on it), the message
    is for people. Raised before the call changes anything."""

    http_status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class AuthenticationError(AuthError):
    http_status = 401


class SignatureError(AuthenticationError):
    pass


class TokenError(AuthenticationError):
    pass


class ForbiddenError(AuthError):
    http_status = 403


class CredentialError(RgsError):
    pass


# Like SeedKeyError: start-up code catches ConfigError, vault code CredentialError.
class CredentialKeyError(CredentialError, ConfigError):
    pass


class CredentialUnreadableError(CredentialError):
    pass
