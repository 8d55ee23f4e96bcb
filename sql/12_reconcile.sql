--
-- 12_reconcile: status reconciliation's settings refuse bad values with a
-- clear error, and its table is as private as the others.
--

-- the settings: integers with units, reloaded with the configuration
SELECT name, setting, unit, context, min_val, max_val
  FROM pg_settings WHERE name LIKE 'partoo.reconcile%' ORDER BY name;
SHOW partoo.reconcile_after;
SHOW partoo.reconcile_max_age;

-- bad values, as ALTER SYSTEM checks them (nothing is written)
\set VERBOSITY default
ALTER SYSTEM SET partoo.reconcile_after = '10 parsecs';
ALTER SYSTEM SET partoo.reconcile_after = 'soon';
ALTER SYSTEM SET partoo.reconcile_max_age = '30000d';
-- out of range: PostgreSQL 18 words the range with its units, so the
-- SQLSTATE and what the message says are shown, not its exact text
\set VERBOSITY sqlstate
ALTER SYSTEM SET partoo.reconcile_after = -1;
SELECT :'LAST_ERROR_MESSAGE' ~ '^-1 ms is outside the valid range for parameter "partoo.reconcile_after" \(0( ms)? \.\. 2147483647( ms)?\)$' AS clear;
ALTER SYSTEM SET partoo.reconcile_max_age = 0;
SELECT :'LAST_ERROR_MESSAGE' ~ '^0 s is outside the valid range for parameter "partoo.reconcile_max_age" \(1( s)? \.\. 2147483647( s)?\)$' AS clear;
ALTER SYSTEM SET partoo.reconcile_max_age = '-2h';
SELECT :'LAST_ERROR_MESSAGE' ~ '^-7200 s is outside the valid range for parameter "partoo.reconcile_max_age"' AS clear;
\set VERBOSITY default
-- worker settings: not for a session
SET partoo.reconcile_after = '1s';
SELECT code, message FROM partoo_test.try($$ SELECT set_config('partoo.reconcile_max_age', '1h', false) $$);
\set VERBOSITY terse

-- the events of reconciliation have a source of their own
SELECT pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'partoo.events'::regclass AND conname = 'events_source_check';

-- partoo.reconcile: the worker's, dumped with the data, readable by nobody else
SELECT 'partoo.reconcile'::regclass = ANY (extconfig) AS dumped
  FROM pg_extension WHERE extname = 'partoo';
SELECT count(*) AS grants_beyond_owner
  FROM pg_class c, aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
 WHERE c.oid = 'partoo.reconcile'::regclass AND a.grantee <> c.relowner;
SELECT indexdef FROM pg_indexes WHERE schemaname = 'partoo' AND tablename = 'reconcile' ORDER BY indexname;
CREATE ROLE reconcile_nobody;
GRANT USAGE ON SCHEMA partoo TO reconcile_nobody;
SET ROLE reconcile_nobody;
SELECT code, message FROM partoo_test.try($$ SELECT * FROM partoo.reconcile $$);
SELECT code, message FROM partoo_test.try($$ DELETE FROM partoo.reconcile $$);
RESET ROLE;
REVOKE USAGE ON SCHEMA partoo FROM reconcile_nobody;
DROP ROLE reconcile_nobody;

-- partoo.purge() takes the rows of the messages it deletes with them
INSERT INTO partoo.reconcile (message_id, next_check_at) VALUES (-1, now() + interval '1 hour');
SELECT partoo.purge('1 hour') >= 0 AS purged;
SELECT count(*) AS orphan_rows FROM partoo.reconcile WHERE message_id = -1;

-- worker_status() shows the counters
SELECT reconcile_requests >= 0 AND reconcile_applied >= 0 AND reconcile_rate_limited >= 0 AS counters
  FROM partoo.worker_status();
