-- The operator API: operators' client credentials and settings, idempotency records of
-- API calls, and each player's risk state.

-- One set of client credentials per operator. The client secret keys the HMAC of every
-- request, so it must be recoverable: it is kept AES-256-GCM sealed (core.operator_auth.
-- CredentialVault, bound to the operator id) under a key that lives in configuration,
-- never here. A dump of this table hands out no secret.
CREATE TABLE operator_credentials (
    operator_id         text PRIMARY KEY REFERENCES operators,
    client_id           text NOT NULL UNIQUE CHECK (length(client_id) BETWEEN 8 AND 128),
    secret_sealed       bytea NOT NULL,
    tier                text NOT NULL DEFAULT 'standard' CHECK (tier IN ('standard', 'premium')),
    rate_limit_per_min  integer CHECK (rate_limit_per_min > 0),   -- NULL: the tier's
    ip_allow_list       text[] NOT NULL DEFAULT '{}',             -- CIDRs; empty: anyone
    risk                jsonb NOT NULL DEFAULT '{}',              -- core.risk.RiskLimits
    enabled             boolean NOT NULL DEFAULT true,
    secret_rotated_at   timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- Every POST of the operator API under its Idempotency-Key: claimed 'in_progress' before
-- the handler runs, 'done' with the exact response bytes after. A repeat is answered from
-- here; another request under the same key is refused. 5xx answers are not kept (they
-- are transient: the row is deleted and a retry runs again). No foreign key: one row per
-- POST, and the operator was authenticated just before.
CREATE TABLE api_requests (
    operator_id         text NOT NULL,
    idempotency_key     text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash        bytea NOT NULL CHECK (length(request_hash) = 32),
    state               text NOT NULL CHECK (state IN ('in_progress', 'done')),
    status_code         integer CHECK (status_code BETWEEN 100 AND 499),
    response            bytea,
    started_at          timestamptz NOT NULL DEFAULT now(),    -- of the current attempt
    created_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    PRIMARY KEY (operator_id, idempotency_key),
    CONSTRAINT api_requests_done_has_response
        CHECK ((state = 'done') = (status_code IS NOT NULL AND response IS NOT NULL))
);
-- Pruning old records walks this.
CREATE INDEX api_requests_created ON api_requests (created_at);

-- A player's current risk state; the history of changes is in significant_events
-- (player_flagged, player_suspended, player_cleared).
CREATE TABLE player_risk (
    operator_id         text NOT NULL REFERENCES operators,
    player_id           text NOT NULL CHECK (length(player_id) BETWEEN 1 AND 128),
    state               text NOT NULL CHECK (state IN ('clear', 'flagged', 'suspended')),
    kind                text NOT NULL,                  -- why: volume_anomaly, manual, ...
    detail              jsonb NOT NULL DEFAULT '{}',
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (operator_id, player_id)
);

-- Risk checks sum one player's stakes per currency and UTC day, on every bet: without
-- this, each check reads every ticket the player ever placed.
CREATE INDEX tickets_player_volume ON tickets (operator_id, player_id, currency, placed_at);
