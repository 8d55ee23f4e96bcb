--
-- 06_security: privileges, and the API key never shows.
--
\pset null '(null)'
CREATE ROLE partoo_nobody LOGIN;
CREATE ROLE partoo_sender LOGIN;
GRANT EXECUTE ON FUNCTION partoo_send(bigint, text, text, text, bytea, text, text, text, jsonb) TO partoo_sender;

SET ROLE partoo_nobody;
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, 'x') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_retry(1) $$);
SELECT * FROM partoo_test.try($$ SELECT api_key FROM partoo.accounts $$);
SELECT * FROM partoo_test.try($$ SELECT * FROM partoo.messages $$);
-- (only the SQLSTATE: the message's wording changed in 16)
SELECT code FROM partoo_test.try($$ SHOW partoo.api_key $$);
SELECT count(*) AS visible FROM pg_settings WHERE name = 'partoo.api_key';
SELECT code FROM partoo_test.try($$ SELECT current_setting('partoo.api_key', true) $$);
SELECT * FROM partoo_test.try($$ SET partoo.api_key = 'mine' $$);
SELECT * FROM partoo_test.try($$ SET partoo.base_url = 'http://evil.example/v2' $$);
RESET ROLE;

-- a role granted EXECUTE sends with the default account without seeing the key,
-- and without any privilege on the tables
SET ROLE partoo_sender;
SELECT partoo_send(40, 'from sender') > 0 AS sent;
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, 'x', account => 'other') $$) WHERE code IS NULL;
SELECT * FROM partoo_test.try($$ SELECT * FROM partoo.accounts $$);
RESET ROLE;
SELECT created_by FROM partoo.messages WHERE conversation_id = 40;

REVOKE ALL ON FUNCTION partoo_send(bigint, text, text, text, bytea, text, text, text, jsonb) FROM partoo_sender;
DROP ROLE partoo_nobody;
DROP ROLE partoo_sender;

-- the key is not in any error seen by the whole suite
SELECT count(*) FILTER (WHERE concat(message, detail, hint) ~ '(test-key|sekrit|other-key)') AS with_key
  FROM partoo_test.errors_seen;
