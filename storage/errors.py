"""The exception tree of the storage layer.

::

    core.errors.RgsError
    └── StorageError                  anything the storage layer could not do
        ├── DatabaseUnavailableError  cannot reach or lost PostgreSQL (retryable)
        ├── RedisUnavailableError     cannot reach or lost Redis, or it refused to serve
        │   │                         (retryable)
        │   └── RateLimitUnavailableError  rate limits cannot be checked (a fail-closed
        │                             limiter; the default fails open instead)
        ├── CommitOutcomeUnknownError the connection died during COMMIT: it may or may not
        │                             have committed; resolve by retrying with the same key
        ├── JournalRejectedError      the database refused a batch (a constraint fired)
        │   └── StaleWriterError      fencing epoch or account version moved on: another
        │                             owner wrote first; this writer must stop
        ├── MigrationError            a migration failed or an applied one was edited
        ├── EmbeddedServerError       the embedded PostgreSQL (or dev chain, or Redis) could
        │                             not start or stop
        ├── OperatorError             operator credentials and their records
        │   ├── OperatorExistsError   credentials already exist for that operator
        │   └── UnknownOperatorError  no credentials for that operator
        └── ChainError                anything about the EVM chain of the notary
            ├── ChainUnavailableError cannot reach the JSON-RPC endpoint (retryable)
            ├── ChainTimeoutError     no receipt / no block in time (retryable; a sent
            │                         transaction may still be mined later)
            ├── ChainRejectedError    the node refused the transaction or it reverted
            └── ChainDataError        unknown transaction or block, malformed payload

Foreign errors (asyncpg, redis, web3, requests, OSError, subprocess) are wrapped with
``raise ... from exc``.
"""

from __future__ import annotations

from core.errors import RgsError

__all__ = [
    "ChainDataError",
    "ChainError",
    "ChainRejectedError",
    "ChainTimeoutError",
    "ChainUnavailableError",
    "CommitOutcomeUnknownError",
    "DatabaseUnavailableError",
    "EmbeddedServerError",
    "JournalRejectedError",
    "MigrationError",
    "OperatorError",
    "OperatorExistsError",
    "RateLimitUnavailableError",
    "RedisUnavailableError",
    "StaleWriterError",
    "StorageError",
    "UnknownOperatorError",
]


class StorageError(RgsError):
    pass


class DatabaseUnavailableError(StorageError):
    pass


class CommitOutcomeUnknownError(StorageError):
    pass


class JournalRejectedError(StorageError):
    pass


class StaleWriterError(JournalRejectedError):
    pass


class MigrationError(StorageError):
    pass


class EmbeddedServerError(StorageError):
    pass


class ChainError(StorageError):
    pass


class ChainUnavailableError(ChainError):
    pass


class ChainTimeoutError(ChainError):
    pass


class ChainRejectedError(ChainError):
    pass


class ChainDataError(ChainError):
    pass


class OperatorError(StorageError):
    pass


class OperatorExistsError(OperatorError):
    pass


class UnknownOperatorError(OperatorError):
    pass


class RedisUnavailableError(StorageError):
    pass


class RateLimitUnavailableError(RedisUnavailableError):
    pass
