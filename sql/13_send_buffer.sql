--
-- 13_send_buffer: partoo_send records its messages through the enqueue
-- buffer (batch.c): what a transaction sees of them, and when.
--
\pset null '(null)'
--
-- The recording is buffered (batch.c): the POST is made at once, the rows
-- are written with the next calls' at the end of the top-level statement
-- or before any query that reads a table, whichever comes first.
--
SELECT partoo_test.reset();
-- the next statement sees the message and its reconcile row
BEGIN;
SELECT partoo_send(20, 'seen next') AS pid \gset
SELECT state, partoo_status, partoo_id = :pid AS same_id, attempts, last_http_status,
       (SELECT count(*) FROM partoo.reconcile r WHERE r.message_id = m.id) AS reconcile_rows
  FROM partoo.messages m WHERE conversation_id = 20;
COMMIT;
-- a loop of PERFORMs past the buffer's 4,096 rows: each query reading the
-- table sees the calls made before it
DO $$
DECLARE
	n bigint;
BEGIN
	FOR i IN 1..4100 LOOP
		PERFORM partoo_send(21, 'loop ' || i);
		IF i IN (1, 4098) THEN
			SELECT count(*) INTO n FROM partoo.messages WHERE conversation_id = 21;
			IF n <> i THEN
				RAISE EXCEPTION 'after % calls, % rows', i, n;
			END IF;
		END IF;
	END LOOP;
END $$;
SELECT count(*) AS recorded, count(DISTINCT partoo_id) AS partoo_ids,
       bool_and(state = 'sent' AND partoo_status = 'Sending') AS all_sent,
       count(r.message_id) AS reconcile_rows,
       bool_and(split_part(content, ' ', 2)::bigint = rn) AS ids_in_call_order
  FROM (SELECT m.*, row_number() OVER (ORDER BY id) AS rn
          FROM partoo.messages m WHERE conversation_id = 21) m
  LEFT JOIN partoo.reconcile r ON r.message_id = m.id;
SELECT (partoo_test.stats())->'accepted' AS accepted;
-- rollback to a savepoint drops the calls made after it
BEGIN;
SELECT partoo_send(22, 'before the savepoint') > 0 AS sent;
SAVEPOINT a;
SELECT partoo_send(22, 'undone') > 0 AS sent;
ROLLBACK TO a;
SELECT partoo_send(22, 'kept') > 0 AS sent;
COMMIT;
SELECT content FROM partoo.messages WHERE conversation_id = 22 ORDER BY id;
-- a call before a block whose rows were written in it, which then fails:
-- the call's row is written again
DO $$
DECLARE
	x bigint;
	n bigint;
BEGIN
	x := partoo_send(23, 'before the block');
	BEGIN
		SELECT count(*) INTO n FROM partoo.messages WHERE conversation_id = 23;
		IF n <> 1 THEN
			RAISE EXCEPTION 'the block saw % rows', n;
		END IF;
		RAISE EXCEPTION 'undo the block' USING ERRCODE = 'P0099';
	EXCEPTION WHEN SQLSTATE 'P0099' THEN
		NULL;
	END;
END $$;
SELECT content FROM partoo.messages WHERE conversation_id = 23;
-- an error later in the same statement undoes its recordings, not its sends
SELECT partoo_test.reset();
SELECT partoo_send(24, 'then an error ' || i), 1 / (2 - i) FROM generate_series(1, 2) i;
SELECT count(*) AS recorded FROM partoo.messages WHERE conversation_id = 24;
SELECT (partoo_test.stats())->'accepted' AS accepted;
-- per row of a SELECT, in a function that reads the table after each call
CREATE FUNCTION pg_temp.send_and_count(i int) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
	PERFORM partoo_send(25, 'row ' || i);
	RETURN (SELECT count(*) FROM partoo.messages WHERE conversation_id = 25);
END $$;
SELECT count(*) FILTER (WHERE pg_temp.send_and_count(i) = i) AS each_saw_its_own
  FROM generate_series(1, 300) i;
-- per row of a SELECT, more rows than the buffer holds
SELECT count(partoo_send(26, 'big ' || i)) AS calls FROM generate_series(1, 5000) i;
SELECT count(*) AS recorded, count(DISTINCT partoo_id) AS partoo_ids
  FROM partoo.messages WHERE conversation_id = 26;
-- enqueued and sent in one statement: each kind written as itself
SELECT partoo_enqueue(27, 'queued') > 0 AS queued, partoo_send(27, 'sent') > 0 AS sent;
SELECT content, content = 'sent' AND state = 'sent' AND partoo_id IS NOT NULL AS recorded_sent,
       EXISTS (SELECT 1 FROM partoo.outbox o WHERE o.message_id = m.id) AS in_outbox
  FROM partoo.messages m WHERE conversation_id = 27 AND content = 'sent'
UNION ALL
SELECT content, NULL, NULL FROM partoo.messages WHERE conversation_id = 27 AND content = 'queued';
