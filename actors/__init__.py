"""Ray actors: account shards hosting virtual per-account actors, the router that talks to
them, round schedulers, provider adapters and the chain notary. Imports ``storage`` and
``core`` only."""
