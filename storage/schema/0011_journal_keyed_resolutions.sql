-- rgs_journal_batch_v2 (0005) again, with two changes; same arguments, same answers.
--
-- 1. Resolving bets no longer scans wallet_bets. 0005 joined the bets to resolve, read
--    from JSON, straight against the table. PostgreSQL estimates a JSON array function at
--    100 rows, so a lone win looked like 10,000 pairs, and with few bets still open (a
--    wallet resolves each bet seconds after placing it) "state = 'open'" looked like one
--    row: the plan scanned the whole table once per batch with a win or a rollback in it.
--    Measured with `rgs up --demo` under `rgs bench wallet`: 24,000 rows read per scan at
--    35,000 bets, 5.6 ms per batch, and wallet throughput falling run after run as the
--    table grew (801 -> 460 req/s over five runs). Now the pairs are gathered into arrays
--    first and the UPDATE reads them through unnest, which the planner sizes from the
--    array (custom plans) or at ten rows (generic plans): either way one primary-key
--    probe per bet, whatever the table holds.
-- 2. Generic plans. A shard commits hundreds of mostly small batches a second; with the
--    default plan cache mode PL/pgSQL may plan the dozen statements again for each call's
--    arrays. The function turns hash and merge joins off, so a generic plan is keyed
--    lookups from the arrays as well. Measured on one-command batches: 1.69 ms instead of
--    2.00 ms per call (pg_stat_user_functions, two alternating runs each).

CREATE OR REPLACE FUNCTION rgs_journal_batch_v2(
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
    u_old_version bigint[], u_new_version bigint[], u_head bytea[]
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    matched integer;
    expected integer;
    conflicts text[];
    v_accounts bigint[];
    v_groups int[];
    v_keys text[];
    v_payouts text[];
BEGIN
    -- Fencing, exactly as rgs_journal_batch (0003).
    PERFORM pg_advisory_xact_lock_shared(21351, p) FROM unnest(p_partitions) AS p;
    SELECT count(*) INTO matched
      FROM partitions p JOIN unnest(p_partitions, p_epochs) AS e(id, epoch)
        ON p.partition_id = e.id AND p.epoch = e.epoch;
    IF matched <> coalesce(cardinality(p_partitions), 0) THEN
        RAISE EXCEPTION 'stale writer: a partition''s epoch moved on' USING ERRCODE = 'RG001';
    END IF;

    -- Keys the shard assumed were new: report those the database knows, write nothing.
    IF cardinality(r_account) > 0 OR cardinality(b_account) > 0 THEN
        SELECT array_agg(c) INTO conflicts FROM (
            SELECT 'record:' || r.account_id || ':' || r.idempotency_key AS c
              FROM idempotency_records r JOIN unnest(r_account, r_key) AS k(id, key)
                ON r.account_id = k.id AND r.idempotency_key = k.key
            UNION ALL
            SELECT 'bet:' || b.account_id || ':' || b.bet_key
              FROM wallet_bets b JOIN unnest(b_account, b_key) AS k(id, key)
                ON b.account_id = k.id AND b.bet_key = k.key
        ) found;
    END IF;
    IF conflicts IS NOT NULL THEN
        RETURN conflicts;
    END IF;

    IF cardinality(a_id) > 0 THEN
        INSERT INTO operators (operator_id, name)
            SELECT DISTINCT op, op FROM unnest(a_operator) AS op ON CONFLICT DO NOTHING;
        INSERT INTO accounts (account_id, kind, operator_id, player_id, currency, partition_id)
            SELECT * FROM unnest(a_id, a_kind, a_operator, a_player, a_currency, a_partition);
    END IF;

    IF cardinality(t_id) > 0 THEN
        INSERT INTO ledger_transactions (tx_id, kind, account_id, idempotency_key, reference,
                                         round_ref, game_ref, partition_id, epoch)
            SELECT * FROM unnest(t_id, t_kind, t_account, t_key, t_reference, t_round, t_game,
                                 t_partition, t_epoch);
        INSERT INTO ledger_lines (tx_id, line_no, account_id, asset, bucket, amount, balance_after,
                                  account_seq, prev_hash, hash)
            SELECT k.tx, k.no, k.account, k.asset, k.bucket, k.amount::numeric, k.after::numeric,
                   k.seq, k.prev, k.hash
              FROM unnest(l_tx, l_no, l_account, l_asset, l_bucket, l_amount, l_after, l_seq,
                          l_prev, l_hash) AS k(tx, no, account, asset, bucket, amount, after, seq, prev, hash);
    END IF;
    IF cardinality(r_account) > 0 THEN
        INSERT INTO idempotency_records (account_id, idempotency_key, command_kind, request_hash,
                                         response, tx_id)
            SELECT k.id, k.key, k.kind, k.hash, k.response::jsonb, k.tx
              FROM unnest(r_account, r_key, r_kind, r_hash, r_response, r_tx)
                AS k(id, key, kind, hash, response, tx);
    END IF;
    IF cardinality(b_account) > 0 THEN
        INSERT INTO wallet_bets (account_id, bet_key, state, amount, round_ref, game_ref,
                                 resolution_key, payout)
            SELECT k.id, k.key, k.state, k.amount::numeric, k.round, k.game, k.resolution, k.payout::numeric
              FROM unnest(b_account, b_key, b_state, b_amount, b_round, b_game, b_resolution, b_payout)
                AS k(id, key, state, amount, round, game, resolution, payout);
    END IF;
    IF cardinality(g_account) > 0 THEN
        -- The (account, key, group, payout) of every bet to resolve, as arrays: see the
        -- header of this migration for why the UPDATE reads them through unnest.
        SELECT array_agg(g_account[g.n]), array_agg(g.n::int), array_agg(t.key), array_agg(t.payout)
          INTO v_accounts, v_groups, v_keys, v_payouts
          FROM ROWS FROM (json_array_elements(g_keys), json_array_elements(g_payouts))
                 WITH ORDINALITY AS g(keys, payouts, n),
               LATERAL ROWS FROM (json_array_elements_text(g.keys), json_array_elements_text(g.payouts))
                 AS t(key, payout);
        UPDATE wallet_bets b
           SET state = g_state[s.n], resolution_key = g_resolution[s.n], payout = s.payout::numeric,
               updated_at = now()
          FROM unnest(v_accounts, v_groups, v_keys, v_payouts) AS s(id, n, key, payout)
         WHERE b.account_id = s.id AND b.bet_key = s.key AND b.state = 'open';
        GET DIAGNOSTICS matched = ROW_COUNT;
        expected := coalesce(cardinality(v_keys), 0);
        IF matched <> expected THEN
            RAISE EXCEPTION '% bet(s) to resolve were not open', expected - matched USING ERRCODE = 'RG002';
        END IF;
    END IF;

    IF cardinality(u_id) > 0 THEN
        UPDATE accounts a
           SET withdrawable = u.w::numeric, bonus = u.b::numeric, status = u.status,
               version = u.new_version, last_hash = u.head
          FROM unnest(u_id, u_withdrawable, u_bonus, u_status, u_old_version, u_new_version, u_head)
            AS u(id, w, b, status, old_version, new_version, head)
         WHERE a.account_id = u.id AND a.version = u.old_version;
        GET DIAGNOSTICS matched = ROW_COUNT;
        IF matched <> coalesce(cardinality(u_id), 0) THEN
            RAISE EXCEPTION 'stale writer: % account version(s) moved on',
                coalesce(cardinality(u_id), 0) - matched USING ERRCODE = 'RG001';
        END IF;
    END IF;
    RETURN ARRAY[]::text[];
END $$
-- Every statement above looks rows up by key from arrays. The planner, seeing a small
-- table or a large array, prefers hashing the whole table (all of wallet_bets for a
-- settlement of 10,000 bets): fine at 100,000 rows, a full scan per batch at 10 million.
-- Keyed lookups it is, whatever the sizes.
SET enable_hashjoin = off
SET enable_mergejoin = off
SET plan_cache_mode = force_generic_plan;
