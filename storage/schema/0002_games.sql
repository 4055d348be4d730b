-- Keno rounds, tickets, provider callbacks and significant events.

CREATE TABLE game_tables (
    table_id        text PRIMARY KEY,
    config          jsonb NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE rounds (
    round_id        text PRIMARY KEY,
    table_id        text NOT NULL REFERENCES game_tables,
    nonce           bigint NOT NULL,
    phase           text NOT NULL CHECK (phase IN
                    ('created', 'open', 'closed', 'drawn', 'settled', 'published', 'revealed', 'voided')),
    opens_at        timestamptz NOT NULL,
    closes_at       timestamptz NOT NULL,
    draws_at        timestamptz NOT NULL,
    derivation      text NOT NULL,
    -- the server seed, AES-256-GCM encrypted at rest; revealed in clear only after settlement
    seed_ciphertext bytea NOT NULL,
    commitment      text NOT NULL,          -- hex sha256 of the seed, published before betting
    commit_tx       text,                   -- chain transaction carrying the Merkle root
    commit_proof    jsonb,                  -- inclusion proof of this commitment
    client_seed     text,                   -- public salt fixed after betting closed
    numbers         smallint[],
    revealed_seed   text,
    reveal_tx       text,
    void_reason     text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (table_id, nonce)
);
CREATE INDEX rounds_phase ON rounds (phase) WHERE phase NOT IN ('revealed', 'voided');

CREATE TABLE round_transitions (
    round_id        text NOT NULL REFERENCES rounds,
    seq             integer NOT NULL,
    from_phase      text,
    to_phase        text NOT NULL,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    detail          jsonb,
    PRIMARY KEY (round_id, seq)
);

CREATE TABLE tickets (
    ticket_id       text PRIMARY KEY,
    round_id        text NOT NULL REFERENCES rounds,
    operator_id     text NOT NULL REFERENCES operators,
    player_id       text NOT NULL,
    currency        text NOT NULL,
    picks           smallint[] NOT NULL,
    stake           numeric(38, 0) NOT NULL CHECK (stake > 0),
    paytable        text NOT NULL,
    state           text NOT NULL CHECK (state IN ('placed', 'settled', 'refunded', 'rolled_back')),
    hits            smallint,
    payout          numeric(38, 0) CHECK (payout >= 0),
    balance_before  numeric(38, 0),
    balance_after   numeric(38, 0),
    placed_at       timestamptz NOT NULL DEFAULT now(),
    settled_at      timestamptz
);
CREATE INDEX tickets_round ON tickets (round_id);
CREATE INDEX tickets_player ON tickets (operator_id, player_id);

CREATE TABLE providers (
    provider_id     text PRIMARY KEY,
    dialect         text NOT NULL,
    operator_id     text NOT NULL REFERENCES operators,
    config          jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Every wallet callback as received, for reconciliation against the ledger.
CREATE TABLE provider_callbacks (
    callback_id     bigserial PRIMARY KEY,
    provider_id     text NOT NULL REFERENCES providers,
    endpoint        text NOT NULL,
    request_id      text,
    transaction_id  text,
    reference_id    text,
    player_id       text,
    round_ref       text,
    body_sha256     bytea NOT NULL,
    result_code     text NOT NULL,
    response        jsonb,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_callbacks_tx ON provider_callbacks (provider_id, transaction_id);

-- GLI-19 significant events: table disabled, round voided, player suspended, ...
CREATE TABLE significant_events (
    event_id        bigserial PRIMARY KEY,
    kind            text NOT NULL,
    subject         text NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}',
    at              timestamptz NOT NULL DEFAULT now()
);
