-- Game sessions: the token an operator hands to a provider's game client. Only a hash of
-- the token is kept, so a database dump does not hand out live sessions.
CREATE TABLE game_sessions (
    token_sha256    bytea PRIMARY KEY,
    operator_id     text NOT NULL REFERENCES operators,
    player_id       text NOT NULL,
    provider_id     text,                     -- NULL: valid with any provider of the operator
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked         boolean NOT NULL DEFAULT false
);
CREATE INDEX game_sessions_player ON game_sessions (operator_id, player_id);

-- Each provider's callbacks name players by the operator's player id; provider_callbacks
-- keeps every request for reconciliation (see 0002). Look-ups by transaction id:
CREATE INDEX provider_callbacks_received ON provider_callbacks (provider_id, received_at);
