--
-- 10_bad_input: every SQL entry point, fed NULLs, empty strings, huge
-- strings, bad numbers, unknown enum values and SQL metacharacters, gives
-- a clear error (never XX000) and writes nothing.
--
\pset null '(null)'
SELECT partoo_test.reset();
CREATE TEMP TABLE before AS
SELECT (SELECT count(*) FROM partoo.messages) AS messages, (SELECT count(*) FROM partoo.outbox) AS outbox;

CREATE TEMP TABLE cases (n serial, stmt text);
INSERT INTO cases (stmt) VALUES
-- partoo_send / partoo_enqueue share the message checks
($$ SELECT partoo_send(NULL, NULL) $$),
($$ SELECT partoo_send(1, NULL, NULL) $$),
($$ SELECT partoo_send(1, '') $$),
($$ SELECT partoo_send(1, 'x', '') $$),
($$ SELECT partoo_send(1, 'x', 'TEXT; DROP TABLE partoo.messages') $$),
($$ SELECT partoo_send(1, 'x', channel => '') $$),
($$ SELECT partoo_send(1, 'x', channel => 'Carrier pigeon') $$),
($$ SELECT partoo_send(1, 'x', account => '') $$),
($$ SELECT partoo_send(1, 'x', account => ''' OR 1=1 --') $$),
($$ SELECT partoo_send(-9223372036854775808, 'x') $$),
($$ SELECT partoo_send(9223372036854775808, 'x') $$),
($$ SELECT partoo_send(1, repeat('x', 100 * 1024 * 1024)) $$),
($$ SELECT partoo_send(1, content_type => 'Image', url => '') $$),
($$ SELECT partoo_send(1, content_type => 'Image', url => 'javascript:alert(1)') $$),
($$ SELECT partoo_send(1, content_type => 'Image', url => 'https://e.com/' || repeat('a', 100 * 1024 * 1024)) $$),
($$ SELECT partoo_send(1, content_type => 'Image', image => ''::bytea) $$),
($$ SELECT partoo_send(1, content_type => 'Image', image => '\x89504e47'::bytea, filename => '') $$),
($$ SELECT partoo_send(1, content_type => 'Image', image => '\x89504e47'::bytea, filename => E'a\nb.png') $$),
($$ SELECT partoo_send(1, content_type => 'Image', image => '\x89504e47'::bytea, filename => repeat('f', 300)) $$),
($$ SELECT partoo_enqueue(NULL, 'x') $$),
($$ SELECT partoo_enqueue(0, 'x') $$),
($$ SELECT partoo_enqueue(1, 'x', content_type => 'Sticker') $$),
($$ SELECT partoo_enqueue(1, repeat('x', 100 * 1024 * 1024)) $$),
($$ SELECT partoo_enqueue(1, 'x', idempotency_key => '') $$),
($$ SELECT partoo_enqueue(1, 'x', idempotency_key => repeat('k', 201)) $$),
($$ SELECT partoo_enqueue(1, 'x', account => 'no such account') $$),
($$ SELECT partoo_enqueue(1, 'x', send_at => 'infinity') $$),
($$ SELECT partoo_enqueue(1, 'x', metadata => 'not json') $$),
-- partoo_retry
($$ SELECT partoo_retry(NULL) $$),
($$ SELECT partoo_retry(0) $$),
($$ SELECT partoo_retry(-1) $$),
($$ SELECT partoo_retry(99999999999) $$),
-- administration
($$ SELECT partoo.retry_later(NULL) $$),
($$ SELECT partoo.retry_later(-1) $$),
($$ SELECT partoo.requeue(NULL) $$),
($$ SELECT partoo.requeue(9223372036854775807) $$),
($$ SELECT partoo.cancel(NULL) $$),
($$ SELECT partoo.cancel(-1) $$),
($$ SELECT partoo.purge(NULL) $$),
($$ SELECT partoo.purge('-1 second') $$),
-- the trigger function with hostile arguments
($$ SELECT partoo.enqueue_trigger() $$);

SELECT n, code, message FROM cases, LATERAL partoo_test.try(stmt) ORDER BY n;

-- the trigger: metacharacters in column names and templates
CREATE TABLE hostile (id int, "conv; DROP TABLE hostile; --" bigint, "na""me" text);
CREATE TRIGGER t1 AFTER INSERT ON hostile FOR EACH ROW
	EXECUTE FUNCTION partoo.enqueue_trigger('conv''); DROP TABLE hostile; --', 'x');
SELECT code, message FROM partoo_test.try($$ INSERT INTO hostile VALUES (1, 2, 'n') $$);
DROP TRIGGER t1 ON hostile;
CREATE TRIGGER t2 AFTER INSERT ON hostile FOR EACH ROW
	EXECUTE FUNCTION partoo.enqueue_trigger('conv; DROP TABLE hostile; --', 'Hi {{na"me}} {{ $$ }} {{id}');
SELECT code, message FROM partoo_test.try($$ INSERT INTO hostile VALUES (1, 2, 'n') $$);
DROP TRIGGER t2 ON hostile;
CREATE TRIGGER t3 AFTER INSERT ON hostile FOR EACH ROW
	EXECUTE FUNCTION partoo.enqueue_trigger('conv; DROP TABLE hostile; --', 'Hi {{na"me}} {{id}');
SELECT count(*) FROM hostile;
BEGIN;
INSERT INTO hostile VALUES (1, 2, 'it''s "quoted"; DROP TABLE x; --');
SELECT content FROM partoo.messages WHERE conversation_id = 2;
ROLLBACK;
CREATE TRIGGER t4 AFTER INSERT ON hostile FOR EACH ROW
	EXECUTE FUNCTION partoo.enqueue_trigger('id', 'x', 'Image', 'no_such_url_column');
SELECT code, message FROM partoo_test.try($$ INSERT INTO hostile VALUES (1, 2, 'n') $$);
DROP TRIGGER t4 ON hostile;
CREATE TRIGGER t5 BEFORE DELETE ON hostile FOR EACH STATEMENT
	EXECUTE FUNCTION partoo.enqueue_trigger('id', 'x');
SELECT code, message FROM partoo_test.try($$ DELETE FROM hostile $$);
DROP TABLE hostile;

-- nothing was written by any of it
SELECT (SELECT count(*) FROM partoo.messages) = messages AS messages_unchanged,
       (SELECT count(*) FROM partoo.outbox) = outbox AS outbox_unchanged
  FROM before;
SELECT count(*) FILTER (WHERE code = 'XX000') AS internal_errors FROM partoo_test.errors_seen;
