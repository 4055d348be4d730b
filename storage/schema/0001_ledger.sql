-- Double-entry, append-only ledger with per-account hash chains and fencing.
-- Amounts are NUMERIC(38,0) minor units: ETH's 18 decimals overflow BIGINT at ~9.2 ETH.
--
-- The hot tables (transactions, lines, idempotency records, bets) carry no foreign keys:
-- per-row FK triggers cost a fifth of the journal's write time, and the only writer is
-- the owning shard, inside rgs_journal_batch. `rgs ledger verify` checks that every
-- reference resolves.

CREATE TABLE ledger_settings (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    partitions     integer NOT NULL CHECK (partitions BETWEEN 1 AND 65536),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE operators (
    operator_id    text PRIMARY KEY CHECK (length(operator_id) BETWEEN 1 AND 64),
    name           text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- A partition is the unit of ownership: exactly one shard owns it at a time. Every
-- journal write re-reads the epoch FOR SHARE and aborts if a newer owner bumped it.
CREATE TABLE partitions (
    partition_id   integer PRIMARY KEY,
    epoch          bigint NOT NULL DEFAULT 0,
    owner          text,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    account_id     bigserial PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('player', 'system')),
    operator_id    text NOT NULL REFERENCES operators,
    player_id      text NOT NULL CHECK (length(player_id) BETWEEN 1 AND 128),
    currency       text NOT NULL,
    partition_id   integer NOT NULL REFERENCES partitions,
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'locked')),
    -- cached balance buckets: always equal to the sum of this account's lines
    withdrawable   numeric(38, 0) NOT NULL DEFAULT 0,
    bonus          numeric(38, 0) NOT NULL DEFAULT 0,
    -- number of ledger lines applied (= account_seq of the last line); optimistic lock
    version        bigint NOT NULL DEFAULT 0,
    last_hash      bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (operator_id, player_id),
    -- system accounts (the house side of each posting) may go negative; players may not
    CONSTRAINT player_balance_not_negative
        CHECK (kind = 'system' OR (withdrawable >= 0 AND bonus >= 0))
);
CREATE INDEX accounts_partition ON accounts (partition_id);

CREATE TABLE ledger_transactions (
    tx_id           bigint PRIMARY KEY,
    kind            text NOT NULL,
    account_id      bigint NOT NULL,   -- the player the event is about
    idempotency_key text NOT NULL,
    reference       text,          -- the bet a win or rollback resolves
    round_ref       text,
    game_ref        text,
    partition_id    integer NOT NULL,
    epoch           bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE SEQUENCE ledger_tx_id_seq AS bigint;
-- reconciliation and game recall find a bet's resolution by its reference
CREATE INDEX ledger_transactions_reference ON ledger_transactions (account_id, reference)
    WHERE reference IS NOT NULL;

CREATE TABLE ledger_lines (
    tx_id          bigint NOT NULL,
    line_no        smallint NOT NULL,
    account_id     bigint NOT NULL,
    asset          text NOT NULL,
    bucket         text NOT NULL CHECK (bucket IN ('withdrawable', 'bonus')),
    amount         numeric(38, 0) NOT NULL,
    balance_after  numeric(38, 0) NOT NULL,
    account_seq    bigint NOT NULL CHECK (account_seq >= 1),
    prev_hash      bytea NOT NULL,
    hash           bytea NOT NULL,
    PRIMARY KEY (tx_id, line_no),
    UNIQUE (account_id, account_seq)
);

-- Every mutating command's outcome, refusals included, keyed per account: a repeat gets
-- the stored response back, a different request under the same key is refused.
CREATE TABLE idempotency_records (
    account_id      bigint NOT NULL,
    idempotency_key text NOT NULL,
    command_kind    text NOT NULL,
    request_hash    bytea NOT NULL,
    response        jsonb NOT NULL,
    tx_id           bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, idempotency_key)
);

-- The seamless-wallet state of each bet: open until exactly one win or one rollback.
-- A rollback that arrives before its bet leaves a 'tombstone' so the late bet is refused.
CREATE TABLE wallet_bets (
    account_id       bigint NOT NULL,
    bet_key          text NOT NULL,
    state            text NOT NULL CHECK (state IN ('open', 'won', 'rolled_back', 'tombstone')),
    amount           numeric(38, 0) NOT NULL CHECK (amount >= 0),
    round_ref        text,
    game_ref         text,
    resolution_key   text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, bet_key)
);
CREATE INDEX wallet_bets_open ON wallet_bets (account_id) WHERE state = 'open';

-- Append-only is enforced by the database, not by good manners.
CREATE FUNCTION rgs_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER ledger_lines_append_only
    BEFORE UPDATE OR DELETE ON ledger_lines
    FOR EACH ROW EXECUTE FUNCTION rgs_forbid_change();
CREATE TRIGGER ledger_lines_no_truncate
    BEFORE TRUNCATE ON ledger_lines
    FOR EACH STATEMENT EXECUTE FUNCTION rgs_forbid_change();
CREATE TRIGGER ledger_transactions_append_only
    BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION rgs_forbid_change();
CREATE TRIGGER ledger_transactions_no_truncate
    BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION rgs_forbid_change();
CREATE TRIGGER idempotency_records_append_only
    BEFORE UPDATE OR DELETE ON idempotency_records
    FOR EACH ROW EXECUTE FUNCTION rgs_forbid_change();
