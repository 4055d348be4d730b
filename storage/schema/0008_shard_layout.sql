-- Which shard actor owns which partition: the routing map every router reads.
--
-- The fencing epoch in `partitions` says which *incarnation* may write; this says which
-- *named shard* should own a partition, so a shard restarted by Ray claims what it is
-- assigned now (not what it was created with), and routers find a partition after a
-- live rebalance. One layout per shard set (the shards' name prefix); `version` grows on
-- every change, so a router can tell a newer map from the one it holds.

CREATE TABLE shard_layouts (
    shard_set      text PRIMARY KEY,
    version        bigint NOT NULL CHECK (version > 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE shard_assignments (
    shard_set      text NOT NULL REFERENCES shard_layouts ON DELETE CASCADE,
    partition_id   integer NOT NULL CHECK (partition_id >= 0),
    shard          text NOT NULL,
    PRIMARY KEY (shard_set, partition_id)
);
