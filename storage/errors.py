"""The exception tree of the storage layer.

::

    core.errors.RgsError
    └── StorageError                  anything the storage layer could not do
        ├── DatabaseUnavailableError  cannot reach or lost PostgreSQL (retryable)
        ├── CommitOutcomeUnknownError the connection died during COMMIT: it may or may not
        │                             have committed; resolve by retrying with the same key
        ├── JournalRejectedError      the database refused a batch (a constraint fired)
        │   └── StaleWriterError      fencing epoch or account version moved on: another
        │                             owner wrote first; this writer must stop
        ├── MigrationError            a migration failed or an applied one was edited
        └── EmbeddedServerError       the embedded PostgreSQL could not start or stop

Foreign errors (asyncpg, OSError, subprocess) are wrapped with ``raise ... from exc``.
"""

from __future__ import annotations

from core.errors import RgsError

__all__ = [
    "CommitOutcomeUnknownError",
    "DatabaseUnavailableError",
    "EmbeddedServerError",
    "JournalRejectedError",
    "MigrationError",
    "StaleWriterError",
    "StorageError",
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
