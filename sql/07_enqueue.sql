--
-- 07_enqueue: the transactional path.  partoo_enqueue queues in the
-- caller's transaction; the worker sends after commit.
--
\pset null '(null)'
SELECT partoo_test.reset();
TRUNCATE partoo.messages, partoo.outbox;

-- the worker runs in this database
SELECT partoo_test.wait_until($$ EXISTS (SELECT 1 FROM partoo.worker_status() WHERE pid IS NOT NULL) $$);
SELECT database, in_flight FROM partoo.worker_status();
SELECT count(*) AS workers FROM pg_stat_activity WHERE backend_type = 'partoo worker';

-- a rolled-back transaction sends nothing
BEGIN;
SELECT partoo_enqueue(50, 'never sent') > 0 AS queued;
SELECT state FROM partoo.messages WHERE conversation_id = 50;
ROLLBACK;
SELECT pg_sleep(0.3);
SELECT count(*) AS messages, (SELECT count(*) FROM partoo.outbox) AS outbox FROM partoo.messages;
SELECT (partoo_test.stats())->'requests' AS requests;

-- a committed one is sent, once
SELECT partoo_enqueue(51, 'hello from the outbox') AS id \gset
SELECT partoo_test.wait_until($$ (SELECT state FROM partoo.messages WHERE id = $$ || :id || $$) = 'sent' $$);
SELECT state, partoo_status, attempts, last_http_status, partoo_id > 1000000 AS has_partoo_id,
       sent_at IS NOT NULL AS has_sent_at
  FROM partoo.messages WHERE id = :id;
SELECT count(*) AS outbox_rows FROM partoo.outbox;
SELECT count(*) AS accepted_once
  FROM regexp_split_to_table(partoo_test.mock('GET', '/_mock/accepted'), E'\n') l
 WHERE split_part(l, E'\t', 7) = 'hello from the outbox';

-- validation is the same as partoo_send's, and a bad call queues nothing
SELECT code, message FROM partoo_test.try($$ SELECT partoo_enqueue(52, content_type => 'Image', url => 'https://e.com/a.png', channel => 'SMS') $$);
SELECT code, message FROM partoo_test.try($$ SELECT partoo_enqueue(52, 'x', account => 'nobody') $$);
SELECT code, message FROM partoo_test.try($$ SELECT partoo_enqueue(52, 'x', idempotency_key => '') $$);
SELECT count(*) AS queued FROM partoo.messages WHERE conversation_id = 52;

-- the same idempotency key returns the first message and queues nothing new
SELECT partoo_enqueue(53, 'once', idempotency_key => 'order-1') AS first \gset
SELECT partoo_enqueue(53, 'twice', idempotency_key => 'order-1') = :first AS same_id;
SELECT partoo_enqueue(53, 'other account', idempotency_key => 'order-1', account => 'other') <> :first AS other_account_differs;
SELECT count(*) AS messages FROM partoo.messages WHERE conversation_id = 53;

-- send_at schedules
SELECT partoo_enqueue(54, 'later', send_at => now() + interval '1.5 s') AS later \gset
SELECT pg_sleep(0.5);
SELECT state FROM partoo.messages WHERE id = :later;
SELECT partoo_test.wait_until($$ (SELECT state FROM partoo.messages WHERE id = $$ || :later || $$) = 'sent' $$);
SELECT sent_at >= send_at AS not_early FROM partoo.messages WHERE id = :later;

-- a 4xx is final: rejected with the body kept, never retried
SELECT partoo_enqueue(400, 'bad conversation') AS bad \gset
SELECT partoo_test.wait_until($$ (SELECT state FROM partoo.messages WHERE id = $$ || :bad || $$) = 'rejected' $$);
SELECT state, attempts, last_http_status, last_error FROM partoo.messages WHERE id = :bad;

-- 5xx is retried with backoff, then dead after partoo.max_attempts (10 here)
SELECT partoo_enqueue(500, 'server keeps failing') AS dead \gset
SELECT partoo_test.wait_until($$ (SELECT state FROM partoo.messages WHERE id = $$ || :dead || $$) = 'dead' $$);
SELECT state, attempts, last_http_status, last_error FROM partoo.messages WHERE id = :dead;

-- the trigger: a template filled from the new row
CREATE TABLE orders (id int PRIMARY KEY, name text, customer_conversation_id bigint, shipped boolean DEFAULT false);
CREATE TRIGGER orders_shipped AFTER INSERT OR UPDATE ON orders FOR EACH ROW
	WHEN (NEW.shipped)
	EXECUTE FUNCTION partoo.enqueue_trigger('customer_conversation_id', 'Hello {{name}}, order {{ id }} has shipped');
INSERT INTO orders VALUES (1, 'Ada', 60), (2, 'Bob', 61);
SELECT count(*) AS queued_before_shipping FROM partoo.messages WHERE conversation_id IN (60, 61);
UPDATE orders SET shipped = true WHERE id = 1;
INSERT INTO orders VALUES (3, 'Cy''s "shop"; DROP TABLE orders; --', 62, true);
SELECT partoo_test.wait_until($$ (SELECT count(*) FROM partoo.messages WHERE conversation_id IN (60, 62) AND state = 'sent') = 2 $$);
SELECT conversation_id, content, state FROM partoo.messages WHERE conversation_id IN (60, 61, 62) ORDER BY 1;

-- a bad column name is a clear error when the trigger first fires, and the row is not written
CREATE TRIGGER orders_bad AFTER INSERT ON orders FOR EACH ROW
	EXECUTE FUNCTION partoo.enqueue_trigger('no_such_column', 'x');
SELECT * FROM partoo_test.try($$ INSERT INTO orders VALUES (4, 'Dee', 63) $$);
DROP TRIGGER orders_bad ON orders;
CREATE TRIGGER orders_bad AFTER INSERT ON orders FOR EACH ROW
	EXECUTE FUNCTION partoo.enqueue_trigger('customer_conversation_id', 'Hi {{nope}}');
SELECT * FROM partoo_test.try($$ INSERT INTO orders VALUES (4, 'Dee', 63) $$);
DROP TRIGGER orders_bad ON orders;
CREATE TRIGGER orders_bad BEFORE INSERT ON orders FOR EACH ROW
	EXECUTE FUNCTION partoo.enqueue_trigger('customer_conversation_id', 'x');
SELECT * FROM partoo_test.try($$ INSERT INTO orders VALUES (4, 'Dee', 63) $$);
DROP TRIGGER orders_bad ON orders;
SELECT count(*) AS orders_4 FROM orders WHERE id = 4;
DROP TABLE orders;
