-- rgs_journal_batch_v3: v2 (0011) and, in the same transaction, the provider callbacks the
-- batch's commands ran for.
--
-- A seamless-wallet request used to take two commits: the shard journaled the command, then
-- the provider adapter wrote the callback's record to provider_callbacks before answering.
-- Measured at half the maximum rate under `rgs bench wallet`, that second write was
-- p50 1.2 / p99 5.0 ms of the adapter's 5.4 / 18.2 ms per request, and one more commit for
-- PostgreSQL to flush. Now a command carries a note of its callback (provider, endpoint,
-- request id, body digest) and the shard writes the record with the command's effects;
-- the adapter still writes the records of callbacks that never reached this function
-- (bad signatures, malformed bodies, balance reads, repeats answered from a shard's memory).
--
-- c_callbacks is a JSON array (NULL when the batch has none) of
--   [provider_id, endpoint, request_id, transaction_id, reference_id, player_id, round_ref,
--    body_sha256 as hex, response]
-- where response is the command's stored record ({"code": "ok", "balance": ..., "tx_id": ...}).
-- Rows for a provider that is not registered are left out rather than failing the batch: the
-- other commands in it belong to other callers, and reconciliation reports the money moved
-- without a recorded callback.

CREATE OR REPLACE FUNCTION rgs_journal_batch_v3(
    p_partitions int[], p_epochs bigint[],
    a_id bigint[], a_kind text[], a_operator text[], a_player text[], a_currency text[], a_partition int[],
    t_id bigint[], t_kind text[], t_account bigint[], t_key text[], t_reference text[],
    t_round text[], t_game text[], t_partition int[], t_epoch bigint[],
    l_tx bigint[], l_no smallint[], l_account bigint[], l_asset text[], l_bucket text[],
    l_amount text[], l_after text[], l_seq bigint[], l_prev bytea[], l_hash bytea[],
    r_account bigint[], r_key text[], r_kind text[], r_hash bytea[], r_response text[], r_tx bigint[],
    b_account bigint[], b_key text[], b_state text[], b_amount text[], b_round text[],
    b_game text[], b_resolution text[], b_payout text[],
    g_account bigint[], g_state text[], g_resolution text[], g_keys json, g_payouts json,
    u_id bigint[], u_withdrawable text[], u_bonus text[], u_status text[],
    u_old_version bigint[], u_new_version bigint[], u_head bytea[],
    c_callbacks json
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    conflicts text[];
BEGIN
    conflicts := rgs_journal_batch_v2(
        p_partitions, p_epochs,
        a_id, a_kind, a_operator, a_player, a_currency, a_partition,
        t_id, t_kind, t_account, t_key, t_reference, t_round, t_game, t_partition, t_epoch,
        l_tx, l_no, l_account, l_asset, l_bucket, l_amount, l_after, l_seq, l_prev, l_hash,
        r_account, r_key, r_kind, r_hash, r_response, r_tx,
        b_account, b_key, b_state, b_amount, b_round, b_game, b_resolution, b_payout,
        g_account, g_state, g_resolution, g_keys, g_payouts,
        u_id, u_withdrawable, u_bonus, u_status, u_old_version, u_new_version, u_head);
    IF cardinality(conflicts) > 0 OR c_callbacks IS NULL THEN
        RETURN conflicts;
    END IF;
    INSERT INTO provider_callbacks (provider_id, endpoint, request_id, transaction_id, reference_id,
                                    player_id, round_ref, body_sha256, result_code, response)
        SELECT c->>0, c->>1, c->>2, c->>3, c->>4, c->>5, c->>6, decode(c->>7, 'hex'),
               c->8->>'code', (c->8)::jsonb
          FROM json_array_elements(c_callbacks) AS c
         WHERE EXISTS (SELECT 1 FROM providers p WHERE p.provider_id = c->>0);
    RETURN conflicts;
END $$;
