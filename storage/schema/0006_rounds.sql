-- Keno rounds on the chain: where each commitment and reveal was published, the public
-- salt, the settlement summary; ticket placement as a two-step (pending, then placed or
-- rejected) so a crash between the debit and the ticket row is found and refunded.

ALTER TABLE rounds
    ADD COLUMN commit_root     text,
    ADD COLUMN commit_block    bigint,
    ADD COLUMN salt_block      bigint,
    ADD COLUMN reveal_root     text,
    ADD COLUMN reveal_block    bigint,
    ADD COLUMN reveal_proof    jsonb,
    ADD COLUMN settlement      jsonb,
    ADD COLUMN paytable_set    text,
    ADD COLUMN chain_id        bigint;

ALTER TABLE round_transitions ADD CONSTRAINT round_transitions_legal CHECK (
    (from_phase IS NULL AND to_phase = 'created')
    OR (from_phase, to_phase) IN (
        ('created', 'open'), ('created', 'voided'),
        ('open', 'closed'), ('open', 'voided'),
        ('closed', 'drawn'), ('closed', 'voided'),
        ('drawn', 'settled'), ('drawn', 'voided'),
        ('settled', 'published'),
        ('published', 'revealed')));

ALTER TABLE tickets DROP CONSTRAINT tickets_state_check;
ALTER TABLE tickets ADD CONSTRAINT tickets_state_check CHECK (
    state IN ('pending', 'placed', 'rejected', 'settled', 'refunded', 'rolled_back'));
ALTER TABLE tickets
    ADD COLUMN table_id         text,
    ADD COLUMN reject_code      text,
    ADD COLUMN bet_tx           bigint,
    ADD COLUMN win_tx           bigint,
    ADD COLUMN win_balance_after numeric(38, 0);
CREATE INDEX tickets_round_state ON tickets (round_id, state);

ALTER TABLE game_tables ADD COLUMN disabled_reason text;

-- What anybody may see of a round: never the encrypted seed, and the seed itself only
-- once it has been revealed. `rgs verify` and the operator API read this view.
CREATE VIEW published_rounds AS
SELECT round_id, table_id, nonce, phase, opens_at, closes_at, draws_at, derivation,
       paytable_set, commitment, commit_tx, commit_block, commit_root, commit_proof,
       client_seed AS salt, salt_block, numbers,
       CASE WHEN phase = 'revealed' THEN revealed_seed END AS revealed_seed,
       reveal_tx, reveal_block, reveal_root, reveal_proof, settlement, void_reason, chain_id
  FROM rounds;
