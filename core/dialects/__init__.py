"""Seamless-wallet dialects: each provider's public wallet API, mapped to our wallet protocol.

A dialect is pure: it checks a request's signature and freshness, turns the request into
wallet *intents* (what to do to which player) and turns the wallet's results back into the
provider's exact response. The ``ProviderAdapter`` actor does the I/O around it (session
look-up, the account shards, recording callbacks). Adding a dialect is one module here,
registered in :data:`core.dialects.registry.DIALECTS`, plus its tests.
"""
