-- One round trip per group commit: the shard sends a whole batch to this function, which
-- checks fencing and optimistic assumptions and writes everything, atomically (a single
-- statement is its own transaction). Ids are reserved by the shard in blocks beforehand,
-- so it can compute every line's hash chain before writing.

ALTER SEQUENCE ledger_tx_id_seq INCREMENT BY 1024;
ALTER SEQUENCE accounts_account_id_seq INCREMENT BY 64;

CREATE FUNCTION rgs_claim_partitions(p_partitions int[], p_owner text)
RETURNS TABLE (partition_id int, epoch bigint) LANGUAGE plpgsql AS $$
BEGIN
    -- Waits for every in-flight journal write on these partitions, then fences them out.
    PERFORM pg_advisory_xact_lock(21351, p) FROM unnest(p_partitions) AS p ORDER BY p;
    RETURN QUERY
        UPDATE partitions AS t SET epoch = t.epoch + 1, owner = p_owner, updated_at = now()
         WHERE t.partition_id = ANY (p_partitions)
        RETURNING t.partition_id, t.epoch;
END $$;

CREATE FUNCTION rgs_journal_batch(
    p_partitions int[], p_epochs bigint[],
    a_id bigint[], a_kind text[], a_operator text[], a_player text[], a_currency text[], a_partition int[],
    t_id bigint[], t_kind text[], t_account bigint[], t_key text[], t_reference text[],
    t_round text[], t_game text[], t_partition int[], t_epoch bigint[],
    l_tx bigint[], l_no smallint[], l_account bigint[], l_asset text[], l_bucket text[],
    l_amount numeric[], l_after numeric[], l_seq bigint[], l_prev bytea[], l_hash bytea[],
    r_account bigint[], r_key text[], r_kind text[], r_hash bytea[], r_response text[], r_tx bigint[],
    b_account bigint[], b_key text[], b_state text[], b_amount numeric[], b_round text[],
    b_game text[], b_resolution text[], b_new boolean[],
    u_id bigint[], u_withdrawable numeric[], u_bonus numeric[], u_status text[],
    u_old_version bigint[], u_new_version bigint[], u_head bytea[]
) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    matched integer;
    conflicts text[];
BEGIN
    -- Fencing: a shared advisory lock per partition keeps a take-over (which takes the
    -- same locks exclusively, see rgs_claim_partitions) from committing while we write;
    -- then the epochs we were given must still be the current ones. Advisory locks live
    -- in memory: unlike FOR SHARE row locks they write nothing to the WAL.
    PERFORM pg_advisory_xact_lock_shared(21351, p) FROM unnest(p_partitions) AS p;
    SELECT count(*) INTO matched
      FROM partitions p JOIN unnest(p_partitions, p_epochs) AS e(id, epoch)
        ON p.partition_id = e.id AND p.epoch = e.epoch;
    IF matched <> coalesce(cardinality(p_partitions), 0) THEN
        RAISE EXCEPTION 'stale writer: a partition''s epoch moved on' USING ERRCODE = 'RG001';
    END IF;

    -- The shard assumed these keys were new; if the database knows them, say which and
    -- write nothing, so the shard loads them and decides again.
    IF cardinality(r_account) > 0 OR cardinality(b_account) > 0 THEN
        SELECT array_agg(c) INTO conflicts FROM (
            SELECT 'record:' || r.account_id || ':' || r.idempotency_key AS c
              FROM idempotency_records r JOIN unnest(r_account, r_key) AS k(id, key)
                ON r.account_id = k.id AND r.idempotency_key = k.key
            UNION ALL
            SELECT 'bet:' || b.account_id || ':' || b.bet_key
              FROM wallet_bets b JOIN unnest(b_account, b_key, b_new) AS k(id, key, new)
                ON k.new AND b.account_id = k.id AND b.bet_key = k.key
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
            SELECT * FROM unnest(l_tx, l_no, l_account, l_asset, l_bucket, l_amount, l_after, l_seq,
                                 l_prev, l_hash);
    END IF;
    IF cardinality(r_account) > 0 THEN
        INSERT INTO idempotency_records (account_id, idempotency_key, command_kind, request_hash,
                                         response, tx_id)
            SELECT k.id, k.key, k.kind, k.hash, k.response::jsonb, k.tx
              FROM unnest(r_account, r_key, r_kind, r_hash, r_response, r_tx)
                AS k(id, key, kind, hash, response, tx);
    END IF;
    IF cardinality(b_account) > 0 THEN
        INSERT INTO wallet_bets (account_id, bet_key, state, amount, round_ref, game_ref, resolution_key)
            SELECT * FROM unnest(b_account, b_key, b_state, b_amount, b_round, b_game, b_resolution)
            ON CONFLICT (account_id, bet_key) DO UPDATE
                SET state = excluded.state, resolution_key = excluded.resolution_key, updated_at = now();
    END IF;

    IF cardinality(u_id) > 0 THEN
        UPDATE accounts a
           SET withdrawable = u.w, bonus = u.b, status = u.status, version = u.new_version,
               last_hash = u.head
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
END $$;
