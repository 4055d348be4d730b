"""The exception tree of the actor layer.

::

    core.errors.RgsError
    └── ActorError                 an actor could not be reached or set up
        ├── ShardUnavailableError  a shard stayed down past the caller's deadline
        ├── ShardSetupError        shards could not start (database, partitions, config)
        ├── RebalanceError         partitions could not move between shards (the layout
        │                          stays as it was for them)
        ├── NotaryUnavailableError the chain notary did not answer (retry later)
        ├── AdapterUnavailableError a provider adapter could not be reached; the call's
        │                          outcome is unknown and the provider's retry (same
        │                          transaction ids) settles it
        └── RoundError             a round could not move on
            └── BetRefusedError    a ticket refused before any money moved (closed round,
                                   bad picks, limits); carries a stable ``code``

Wallet outcomes, including transient ones (busy, unavailable), are ``core.wallet.Result``
codes, not exceptions: callers get one result per command whatever happens.
"""

from __future__ import annotations

from core.errors import RgsError

__all__ = [
    "ActorError",
    "AdapterUnavailableError",
    "BetRefusedError",
    "NotaryUnavailableError",
    "RebalanceError",
    "RoundError",
    "ShardSetupError",
    "ShardUnavailableError",
]


class ActorError(RgsError):
    pass


class ShardUnavailableError(ActorError):
    pass


class ShardSetupError(ActorError):
    pass


class RebalanceError(ActorError):
    pass


class NotaryUnavailableError(ActorError):
    pass


class AdapterUnavailableError(ActorError):
    pass


class RoundError(ActorError):
    pass


class BetRefusedError(RoundError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
