"""The exception tree of the actor layer.

::

    core.errors.RgsError
    └── ActorError                 an actor could not be reached or set up
        ├── ShardUnavailableError  a shard stayed down past the caller's deadline
        └── ShardSetupError        shards could not start (database, partitions, config)

Wallet outcomes, including transient ones (busy, unavailable), are ``core.wallet.Result``
codes, not exceptions: callers get one result per command whatever happens.
"""

from __future__ import annotations

from core.errors import RgsError

__all__ = ["ActorError", "ShardSetupError", "ShardUnavailableError"]


class ActorError(RgsError):
    pass


class ShardUnavailableError(ActorError):
    pass


class ShardSetupError(ActorError):
    pass
