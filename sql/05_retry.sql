--
-- 05_retry: partoo_retry calls POST /messages/{id}/retry.
--
\pset null '(null)'
SELECT partoo_test.reset();
TRUNCATE partoo.messages;

SELECT partoo_send(30, 'to retry') AS pid \gset
UPDATE partoo.messages SET state = 'failed', partoo_status = 'Failed' WHERE partoo_id = :pid;
SELECT partoo_retry(:pid);
SELECT r->>'path' = '/v2/messages/' || :pid || '/retry' AS right_path, r->>'status' AS status
  FROM partoo_test.last_request() r;
SELECT state, partoo_status, attempts, retry_requested_at IS NOT NULL AS retried
  FROM partoo.messages WHERE partoo_id = :pid;

-- an id the API does not know: 400 from the API
SELECT * FROM partoo_test.try($$ SELECT partoo_retry(999) $$);
-- bad arguments never reach the API
SELECT partoo_test.reset();
SELECT * FROM partoo_test.try($$ SELECT partoo_retry(NULL) $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_retry(0) $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_retry(-1) $$);
SELECT (partoo_test.stats())->'requests' AS requests;
