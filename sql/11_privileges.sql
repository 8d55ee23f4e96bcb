--
-- 11_privileges: the privilege matrix.  PUBLIC (a role with no grants), a
-- role granted only sending, a role granted only webhook ingestion, and a
-- superuser, against every function, table and view of the extension,
-- granted as README.md's Security section shows.
--
CREATE ROLE matrix_nobody;
CREATE ROLE matrix_sender;
CREATE ROLE matrix_ingest;
CREATE ROLE matrix_super SUPERUSER;
GRANT EXECUTE ON FUNCTION partoo_enqueue(bigint, text, text, text, bytea, text, text, text, text, timestamptz, jsonb) TO matrix_sender;
GRANT EXECUTE ON FUNCTION partoo_send(bigint, text, text, text, bytea, text, text, text, jsonb) TO matrix_sender;
GRANT EXECUTE ON FUNCTION partoo_ingest_webhook(text, text), partoo_ingest_webhooks(text[], text[]) TO matrix_ingest;

-- functions: EXECUTE
SELECT p.oid::regprocedure AS function,
       has_function_privilege('matrix_nobody', p.oid, 'EXECUTE') AS nobody,
       has_function_privilege('matrix_sender', p.oid, 'EXECUTE') AS sender,
       has_function_privilege('matrix_ingest', p.oid, 'EXECUTE') AS ingest,
       has_function_privilege('matrix_super', p.oid, 'EXECUTE') AS super
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.classid = 'pg_proc'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'partoo')
 ORDER BY p.oid::regprocedure::text;

-- tables and views: any privilege at all, and the schema
SELECT c.oid::regclass AS relation,
       has_table_privilege('matrix_nobody', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE') AS nobody,
       has_table_privilege('matrix_sender', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE') AS sender,
       has_table_privilege('matrix_ingest', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE') AS ingest,
       has_table_privilege('matrix_super', c.oid, 'SELECT') AS super
  FROM pg_class c
 WHERE c.relnamespace = 'partoo'::regnamespace AND c.relkind IN ('r', 'v')
 ORDER BY c.oid::regclass::text;
SELECT has_schema_privilege('matrix_nobody', 'partoo', 'USAGE') AS nobody,
       has_schema_privilege('matrix_sender', 'partoo', 'USAGE') AS sender,
       has_schema_privilege('matrix_ingest', 'partoo', 'USAGE') AS ingest;

-- and in practice: each role can do exactly its job
SET ROLE matrix_sender;
SELECT partoo_enqueue(80, 'from the sender role') > 0 AS sender_enqueues;
SELECT code FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{}') $$);
SELECT code FROM partoo_test.try($$ SELECT partoo.requeue(1) $$);
SELECT code FROM partoo_test.try($$ SELECT api_key FROM partoo.accounts $$);
RESET ROLE;
SET ROLE matrix_ingest;
SELECT code FROM partoo_test.try($$ SELECT partoo_enqueue(80, 'x') $$);
-- allowed to call it: it gets as far as the signature check
SELECT code, message FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"type": "message_updated", "payload": {"message": {"id": 1, "status": "Sending"}}}') $$);
SELECT code FROM partoo_test.try($$ SELECT * FROM partoo.events $$);
RESET ROLE;
SET ROLE matrix_nobody;
SELECT code FROM partoo_test.try($$ SELECT partoo_enqueue(80, 'x') $$);
SELECT code FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{}') $$);
SELECT code FROM partoo_test.try($$ SELECT * FROM partoo.queue_stats $$);
SELECT code FROM partoo_test.try($$ SELECT * FROM partoo.worker_status() $$);
RESET ROLE;

DROP OWNED BY matrix_nobody, matrix_sender, matrix_ingest, matrix_super;
DROP ROLE matrix_nobody, matrix_sender, matrix_ingest, matrix_super;
