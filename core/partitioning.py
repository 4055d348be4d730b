"""Which partition an account lives in, and which shard owns a partition.

The hash must never change: it decides where every existing account's state lives.
"""

from __future__ import annotations

import hashlib

__all__ = ["partition_of", "shard_of"]


def partition_of(operator_id: str, player_id: str, partitions: int) -> int:
    """Stable partition of a player account (all of one player's accounts share it)."""
    digest = hashlib.sha256(f"{operator_id}\x1f{player_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % partitions


def shard_of(partition: int, shards: int) -> int:
    return partition % shards
