--
-- 08_worker_admin: retries through the outbox, rate limiting, and the
-- administration functions.
--
\pset null '(null)'
SELECT partoo_test.reset();

-- retry_later queues POST /messages/{id}/retry for an accepted message
SELECT partoo_enqueue(70, 'will be retried') AS id \gset
SELECT partoo_test.wait_until($$ (SELECT state FROM partoo.messages WHERE id = $$ || :id || $$) = 'sent' $$);
UPDATE partoo.messages SET state = 'failed', partoo_status = 'Failed' WHERE id = :id;
SELECT partoo.retry_later(:id);
SELECT partoo_test.wait_until($$ (SELECT state FROM partoo.messages WHERE id = $$ || :id || $$) = 'sent' $$);
SELECT state, partoo_status, attempts, retry_requested_at IS NOT NULL AS retried
  FROM partoo.messages WHERE id = :id;
SELECT count(*) AS retries FROM regexp_split_to_table(partoo_test.mock('GET', '/_mock/accepted'), E'\n') l
 WHERE l LIKE 'retry%';
SELECT * FROM partoo_test.try($$ SELECT partoo.retry_later(-1) $$);

-- 429: the account pauses for Retry-After; the row waits, no attempt counted
SELECT partoo_enqueue(429, 'rate limited') AS limited \gset
SELECT partoo_test.wait_until($$ (SELECT last_http_status FROM partoo.messages WHERE id = $$ || :limited || $$) = 429 $$);
SELECT state, attempts FROM partoo.messages WHERE id = :limited;
SELECT rate_limited > 0 AS counted FROM partoo.worker_status();
-- other accounts keep flowing while the default one is paused
SELECT partoo_enqueue(71, 'other account flows', account => 'other') AS flows \gset
SELECT partoo_test.wait_until($$ (SELECT state FROM partoo.messages WHERE id = $$ || :flows || $$) = 'sent' $$);

-- cancel a queued message; requeue it
SELECT partoo.cancel(:limited);
SELECT state FROM partoo.messages WHERE id = :limited;
SELECT count(*) AS outbox_rows FROM partoo.outbox o WHERE o.message_id = :limited;
SELECT * FROM partoo_test.try($$ SELECT partoo.cancel($$ || :limited || $$) $$);
SELECT * FROM partoo_test.try($$ SELECT partoo.cancel(0) $$);

-- requeue: dead and rejected messages go out again from attempt one
SELECT id AS dead FROM partoo.messages WHERE state = 'dead' LIMIT 1 \gset
SELECT partoo.requeue(:dead);
SELECT state FROM partoo.messages WHERE id = :dead;
SELECT * FROM partoo_test.try($$ SELECT partoo.requeue($$ || :id || $$) $$);

-- queue_stats and worker_status
SELECT account, state, messages FROM partoo.queue_stats WHERE state NOT IN ('queued', 'sending') ORDER BY 1, 2;
SELECT database, pid IS NOT NULL AS running, sent > 0 AS has_sent, retried > 0 AS has_retried,
       rejected > 0 AS has_rejected, dead > 0 AS has_dead
  FROM partoo.worker_status();

-- purge removes finished messages only
SELECT partoo_test.wait_until($$ (SELECT state FROM partoo.messages WHERE id = $$ || :dead || $$) = 'dead' $$);
SELECT partoo_enqueue(72, 'kept: scheduled', send_at => now() + interval '1 hour') AS kept \gset
SELECT partoo.purge(interval '0') > 0 AS purged;
SELECT count(*) AS left_over, bool_and(state = 'queued') AS only_unfinished FROM partoo.messages;
SELECT * FROM partoo_test.try($$ SELECT partoo.purge(interval '-1 day') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo.purge(NULL) $$);
