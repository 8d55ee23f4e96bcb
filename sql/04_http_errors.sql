--
-- 04_http_errors: every HTTP failure class becomes an error with its own
-- SQLSTATE, the status and the API's error body in the detail, and leaves
-- nothing recorded.  The mock answers by magic conversation id.
--
\pset null '(null)'
SELECT partoo_test.reset();
TRUNCATE partoo.messages;

SELECT * FROM partoo_test.try($$ SELECT partoo_send(400, 'x') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(403, 'x') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(404, 'x') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(415, 'x') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(429, 'x') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(500, 'x') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(502, 'x') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(503, 'x') $$);
-- connection dropped without an answer
SELECT * FROM partoo_test.try($$ SELECT partoo_send(408000, 'x') $$);
-- 200 without JSON, without message_id, and with a body over the limit
SELECT * FROM partoo_test.try($$ SELECT partoo_send(6000001, 'x') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(6000002, 'x') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(6000003, 'x') $$);

-- 401: a wrong key, through an account
INSERT INTO partoo.accounts (name, api_key, base_url)
SELECT 'badkey', 'sekrit-wrong-key-0123', mock_url || '/v2' FROM partoo_test.config;
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, 'x', account => 'badkey') $$);

-- nothing listens: connection refused (08001)
INSERT INTO partoo.accounts (name, api_key, base_url)
VALUES ('nowhere', 'sekrit-nowhere-key', 'http://127.0.0.1:1/v2');
SELECT code, message, detail LIKE 'POST /messages failed: %' AS detail_ok, hint
  FROM partoo_test.try($$ SELECT partoo_send(1, 'x', account => 'nowhere') $$);

-- partoo.timeout: the mock delays 3 s (conversation 5003000)
SET partoo.timeout = '300ms';
SELECT * FROM partoo_test.try($$ SELECT partoo_send(5003000, 'x') $$);
RESET partoo.timeout;

-- statement_timeout cancels a request in flight promptly, with the usual error
CREATE TEMP TABLE t0 AS SELECT clock_timestamp() AS t;
SET statement_timeout = '200ms';
SELECT * FROM partoo_test.try($$ SELECT partoo_send(5004000, 'x') $$);
RESET statement_timeout;
SELECT clock_timestamp() - t < interval '450 ms' AS prompt FROM t0;
-- the session still works afterwards, and reuses nothing broken
SELECT partoo_send(20, 'after cancel') > 0 AS sent;

-- nothing recorded for any failure
SELECT conversation_id, state FROM partoo.messages ORDER BY id;

-- no error, detail or hint ever showed an API key
SELECT count(*) AS errors_seen,
       count(*) FILTER (WHERE concat(message, detail, hint) ~ '(test-key|sekrit|other-key)') AS with_key
  FROM partoo_test.errors_seen;
