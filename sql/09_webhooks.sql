--
-- 09_webhooks: partoo_ingest_webhook and partoo_ingest_webhooks: both
-- formats, every outcome, pending events applied when the message is
-- recorded, retries, duplicates, ordering under any arrival order,
-- signatures, malformed input, privileges, and the batch function.
--
\pset null '(null)'
SET timezone = 'UTC';
SELECT partoo_test.reset();
TRUNCATE partoo.messages, partoo.outbox, partoo.events, partoo.message_parts;

-- the settings and their defaults (the dispatch key is hidden)
SELECT name, setting, unit, context FROM pg_settings
 WHERE name LIKE 'partoo.webhook%' OR name = 'partoo.dispatch_webhook_key'
 ORDER BY name;

--
-- Helpers: payloads in both formats.  sp is the whitespace between some
-- fields, so that the same event can be sent spelled differently.
--
CREATE FUNCTION partoo_test.pevent(id bigint, status text, deleted boolean DEFAULT false,
	type text DEFAULT 'message_updated', sender text DEFAULT 'User', sp text DEFAULT ' ')
RETURNS text LANGUAGE sql AS $$
SELECT '{"type":' || sp || to_json(type)::text || ',' || sp || '"payload":' || sp
	|| '{"message":{"id":' || id || ',"conversation_id":12,'
	|| '"date":"2023-01-31 16:22:17.327878+00:00","content_type":"Text",'
	|| '"sender_type":' || to_json(sender)::text || ',"sender_label":"Jane Doe",'
	|| '"status":' || to_json(status)::text || ',' || sp || '"is_deleted":' || deleted
	|| ',"content":"hello","user_id":"u-1","custom_channel":null},'
	|| '"conversation":{"id":12,"consumer_name":"John Doe","business":{"id":3},'
	|| '"messaging_partner":"Whatsapp","custom_channel":null},"org_id":7}}'
$$;

CREATE FUNCTION partoo_test.devent(dispatch text, recipient text, part int, total int,
	status text, status_date text, status_order int DEFAULT 0,
	channel text DEFAULT 'WHATSAPP', sp text DEFAULT '')
RETURNS text LANGUAGE sql AS $$
SELECT '{"event":"MESSAGE_STATUS","module":"DISPATCH_API","dispatchId":' || to_json(dispatch)::text
	|| ',' || sp || '"messageId":"m-' || part || '","messagePart":' || part
	|| ',"messageTotalParts":' || total || ',"channel":' || to_json(channel)::text
	|| ',"channelIdentifier":' || to_json(recipient)::text || ',' || sp
	|| '"status":' || to_json(status)::text || ',"statusOrder":' || status_order
	|| ',"statusDate":' || to_json(status_date)::text
	|| ',"dispatchMetadata":{"campaign":"spring"},"recipientMetadata":{"name":"Ada"}}'
$$;

-- Run a shell command as the server (the regress user is a superuser)
CREATE FUNCTION partoo_test.shell(cmd text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	result text;
BEGIN
	IF to_regclass('pg_temp.shell_out') IS NULL THEN
		CREATE TEMP TABLE shell_out (line text);
	END IF;
	TRUNCATE shell_out;
	EXECUTE format('COPY shell_out FROM PROGRAM %L WITH (FORMAT csv, DELIMITER %L, QUOTE %L)',
				   cmd, E'\x01', E'\x02');
	SELECT string_agg(line, E'\n') INTO result FROM shell_out;
	RETURN result;
END $$;

-- Ed25519 with the openssl command: a private key (PEM, as base64), its
-- public key (base64 SubjectPublicKeyInfo), and a signature of a body
CREATE FUNCTION partoo_test.ed25519_key() RETURNS text LANGUAGE sql
AS $$ SELECT partoo_test.shell('openssl genpkey -algorithm ed25519 | base64 -w0') $$;
CREATE FUNCTION partoo_test.ed25519_public(priv text) RETURNS text LANGUAGE sql
AS $$ SELECT partoo_test.shell('printf %s ' || priv
	|| ' | base64 -d | openssl pkey -pubout -outform DER | base64 -w0') $$;
CREATE FUNCTION partoo_test.ed25519_sign(priv text, body text) RETURNS text LANGUAGE sql
AS $$ SELECT partoo_test.shell('d=$(mktemp -d) && printf %s ' || priv || ' | base64 -d > $d/k.pem'
	|| ' && printf %s ' || translate(encode(convert_to(body, 'UTF8'), 'base64'), E'\n', '')
	|| ' | base64 -d > $d/m && openssl pkeyutl -sign -inkey $d/k.pem -rawin -in $d/m | base64 -w0;'
	|| ' rm -rf $d') $$;

--
-- Malformed input: an error with its SQLSTATE, and nothing recorded.
-- (Parsing comes before authentication, so the signature setting does
-- not matter here.)
--
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('not json') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"type": "message_updated", "payload": {') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"a": 1} {"b": 2}') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"type": "message_updated\u0000", "payload": {}}') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('[1, 2]') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('"message_updated"') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"hello": "world"}') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"type": "message_updated", "payload": {"message": {"id": "123"}}}') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"type": "message_updated", "payload": {"message": {"id": 1.5}}}') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"type": "message_updated", "payload": {"message": {"status": "Success"}}}') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"type": "message_updated", "payload": {"message": {"id": 5, "is_deleted": "yes"}}}') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"type": "message_updated", "payload": {"message": {"id": 5, "date": "31/01/2023"}}}') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"dispatchId": "d", "channelIdentifier": "x", "status": "READ", "statusDate": "2024-05-01T10:00:00Z", "messagePart": "1"}') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"dispatchId": "d", "channelIdentifier": "x", "status": "READ", "statusDate": "2024-05-01T10:00:00Z", "messagePart": 3, "messageTotalParts": 2}') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{"dispatchId": "d", "status": "READ", "statusDate": "2024-05-01T10:00:00Z"}') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook(NULL) $$);
SET partoo.webhook_max_bytes = 1024;
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook(partoo_test.pevent(5, 'Success', sp => repeat(' ', 1000))) $$);
RESET partoo.webhook_max_bytes;
SELECT count(*) AS events, (SELECT count(*) FROM partoo.messages) AS messages FROM partoo.events;

--
-- Signatures.  partoo.webhook_require_signature is on by default.
--
SELECT partoo_send(70, 'signed') AS signed_id \gset
SELECT * FROM partoo_test.try(format('SELECT partoo_ingest_webhook(%L)',
	partoo_test.pevent(:signed_id, 'Success')));
-- a key pair made for this test
SELECT partoo_test.ed25519_key() AS priv \gset
SELECT partoo_test.ed25519_key() AS other_priv \gset
SELECT partoo_test.ed25519_public(:'priv') AS pub \gset
SELECT length(:'pub') AS spki_length, left(:'pub', 16) AS spki_prefix;
SET partoo.webhook_public_key = :'pub';
SELECT partoo_test.pevent(:signed_id, 'Success') AS body \gset
SELECT partoo_test.ed25519_sign(:'priv', :'body') AS sig \gset
SELECT partoo_test.ed25519_sign(:'other_priv', :'body') AS other_sig \gset
-- tampered body, a signature by another key, garbage: refused, nothing recorded
SELECT * FROM partoo_test.try(format('SELECT partoo_ingest_webhook(%L, %L)',
	replace(:'body', '"Success"', '"Failed"'), :'sig'));
SELECT * FROM partoo_test.try(format('SELECT partoo_ingest_webhook(%L, %L)', :'body', :'other_sig'));
SELECT * FROM partoo_test.try(format('SELECT partoo_ingest_webhook(%L, %L)', :'body', 'c2lnbmF0dXJl'));
SELECT count(*) AS events_after_bad_signatures FROM partoo.events;
-- the body exactly as signed: accepted
SELECT partoo_ingest_webhook(:'body', :'sig');
SELECT state, partoo_status FROM partoo.messages WHERE partoo_id = :signed_id;
-- checking the signatures of a large batch takes seconds (40,000 here,
-- about 5 s on one core): a cancel (statement_timeout) ends it at once
SELECT clock_timestamp() AS t0 \gset
SET statement_timeout = '200ms';
\set VERBOSITY terse
SELECT count(*) FROM partoo_ingest_webhooks(array_fill(:'body'::text, ARRAY[40000]),
											 array_fill(:'sig'::text, ARRAY[40000]));
\set VERBOSITY default
RESET statement_timeout;
SELECT clock_timestamp() - :'t0'::timestamptz < interval '2.5 s' AS canceled_promptly;
-- Partoo's production key is the default; a key that is not Ed25519 SPKI is refused
RESET partoo.webhook_public_key;
SELECT current_setting('partoo.webhook_public_key') = 'MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQ=' AS production_key;
SELECT * FROM partoo_test.try($$ SET partoo.webhook_public_key = 'bm90IGEga2V5' $$);
SELECT * FROM partoo_test.try($$ SET partoo.webhook_public_key = 'MCowBQYDK2VuAyEA' $$);
-- the production key does not verify our test signature
SELECT * FROM partoo_test.try(format('SELECT partoo_ingest_webhook(%L, %L)', :'body', :'sig'));

-- the dispatch format: an API key, compared with partoo.dispatch_webhook_key
SELECT partoo_test.devent('d-auth', '+33600000009', 1, 1, 'DELIVERED', '2024-05-01T10:00:00Z') AS dbody \gset
SELECT * FROM partoo_test.try(format('SELECT partoo_ingest_webhook(%L, %L)', :'dbody', 'sekrit-dispatch'));
SET partoo.dispatch_webhook_key = 'sekrit-dispatch';
SELECT * FROM partoo_test.try(format('SELECT partoo_ingest_webhook(%L)', :'dbody'));
SELECT * FROM partoo_test.try(format('SELECT partoo_ingest_webhook(%L, %L)', :'dbody', 'sekrit-dispatcH'));
SELECT * FROM partoo_test.try(format('SELECT partoo_ingest_webhook(%L, %L)', :'dbody', 'sekrit-dispatch-and-more'));
SELECT count(*) AS events_after_bad_keys FROM partoo.events;
SELECT partoo_ingest_webhook(:'dbody', 'sekrit-dispatch');
RESET partoo.dispatch_webhook_key;

--
-- The outcomes.  From here on, payloads come unsigned.
--
SET partoo.webhook_require_signature = off;
SELECT partoo_send(71, 'outcomes') AS pid \gset
-- applied: the Sending partoo recorded itself, confirmed; then Success
SELECT partoo_ingest_webhook(partoo_test.pevent(:pid, 'Sending', type => 'message_created'));
SELECT partoo_ingest_webhook(partoo_test.pevent(:pid, 'Success'));
-- duplicate: the same event spelled differently
SELECT partoo_ingest_webhook(partoo_test.pevent(:pid, 'Success', sp => E'\n  '));
-- stale: Sending after Success
SELECT partoo_ingest_webhook(partoo_test.pevent(:pid, 'Sending'));
-- ignored: a consumer's message, an event type partoo does not track, a status it does not know
SELECT partoo_ingest_webhook(partoo_test.pevent(:pid, 'Success', type => 'message_created', sender => 'Consumer'));
SELECT partoo_ingest_webhook('{"type": "business_created", "payload": {"business": {"id": 3}}}');
SELECT partoo_ingest_webhook(partoo_test.pevent(:pid, 'Scheduled'));
SELECT partoo_ingest_webhook('{"type": "business_created", "payload": {"business": {"id": 3}}}');
-- is_deleted is kept, and sticky: a later event saying false does not undo it
SELECT partoo_ingest_webhook(partoo_test.pevent(:pid, 'Success', deleted => true));
SELECT partoo_ingest_webhook(partoo_test.pevent(:pid, 'Failed', deleted => false));
SELECT state, partoo_status, is_deleted FROM partoo.messages WHERE partoo_id = :pid;
-- what was recorded (duplicates are not)
SELECT source, event_type, partoo_id = :pid AS same_id, status, sender_type, content_type, channel,
       event_at, outcome, message_id IS NOT NULL AS has_message, left(dedup_key, 15) AS key_start
  FROM partoo.events WHERE partoo_id = :pid OR event_type = 'business_created' ORDER BY id;

--
-- A webhook before the send response: pending, then applied in the
-- transaction that records the message
--
SELECT (partoo_test.stats()->>'last_message_id')::bigint + 1 AS next_id \gset
SELECT partoo_ingest_webhook(partoo_test.pevent(:next_id, 'Sending', type => 'message_created'));
SELECT partoo_ingest_webhook(partoo_test.pevent(:next_id, 'Success'));
SELECT partoo_ingest_webhook(partoo_test.pevent(:next_id, 'Success', sp => ''));
SELECT outcome, message_id FROM partoo.events WHERE partoo_id = :next_id ORDER BY id;
SELECT partoo_send(72, 'the webhook came first') = :next_id AS predicted;
SELECT state, partoo_status FROM partoo.messages WHERE partoo_id = :next_id;
SELECT outcome, message_id = (SELECT id FROM partoo.messages WHERE partoo_id = :next_id) AS linked,
       applied_at IS NOT NULL AS has_applied_at
  FROM partoo.events WHERE partoo_id = :next_id ORDER BY id;

-- the same when the send is recorded later in the transaction, with others
SELECT (partoo_test.stats()->>'last_message_id')::bigint + 2 AS next_id \gset
SELECT partoo_ingest_webhook(partoo_test.pevent(:next_id, 'Success'));
BEGIN;
SELECT count(partoo_send(74, 'the webhook came first ' || i)) AS calls FROM generate_series(1, 3) i;
SELECT content, state, partoo_status FROM partoo.messages WHERE partoo_id = :next_id;
COMMIT;
SELECT outcome, message_id = (SELECT id FROM partoo.messages WHERE partoo_id = :next_id) AS linked
  FROM partoo.events WHERE partoo_id = :next_id;

-- the same when the worker records the message it sent
SELECT (partoo_test.stats()->>'last_message_id')::bigint + 1 AS next_id \gset
SELECT partoo_ingest_webhook(partoo_test.pevent(:next_id, 'Failed'));
SELECT partoo_enqueue(73, 'the worker records me') AS wid \gset
SELECT partoo_test.wait_until($$ (SELECT state FROM partoo.messages WHERE id = $$ || :wid || $$) = 'failed' $$);
SELECT state, partoo_status, partoo_id = :next_id AS predicted FROM partoo.messages WHERE id = :wid;
SELECT outcome, message_id = :wid AS linked FROM partoo.events WHERE partoo_id = :next_id;

-- a message that never shows up keeps its event pending
SELECT partoo_ingest_webhook(partoo_test.pevent(999999999, 'Success', type => 'message_created'));

--
-- Failed, then a retry: a later Sending is stale until a retry is issued,
-- then the new attempt's events apply
--
SELECT partoo_send(74, 'will fail') AS rid \gset
SELECT partoo_ingest_webhook(partoo_test.pevent(:rid, 'Failed'));
SELECT partoo_ingest_webhook(partoo_test.pevent(:rid, 'Sending'));
SELECT state, partoo_status FROM partoo.messages WHERE partoo_id = :rid;
SELECT partoo_retry(:rid);
SELECT state, partoo_status, retry_requested_at IS NOT NULL AS retried FROM partoo.messages WHERE partoo_id = :rid;
-- the new attempt's Sending has the same body as the old one's: it applies
SELECT partoo_ingest_webhook(partoo_test.pevent(:rid, 'Sending'));
SELECT partoo_ingest_webhook(partoo_test.pevent(:rid, 'Success'));
SELECT partoo_ingest_webhook(partoo_test.pevent(:rid, 'Success'));
-- the old attempt's Failed, delivered again late: stale
SELECT partoo_ingest_webhook(partoo_test.pevent(:rid, 'Failed'));
SELECT state, partoo_status FROM partoo.messages WHERE partoo_id = :rid;
SELECT status, outcome, dedup_key LIKE '%/r%' AS after_retry FROM partoo.events WHERE partoo_id = :rid ORDER BY id;

--
-- Dispatch: one message per (dispatchId, channelIdentifier), per-part
-- state, ordered by (statusDate, statusOrder)
--
SELECT partoo_ingest_webhook(partoo_test.devent('d-100', '+33600000001', 1, 3, 'DELIVERED', '2024-05-01T10:00:01Z'));
SELECT partoo_ingest_webhook(partoo_test.devent('d-100', '+33600000001', 2, 3, 'DELIVERED', '2024-05-01T10:00:02Z'));
SELECT state, partoo_status FROM partoo.messages WHERE external_id = 'd-100';
SELECT partoo_ingest_webhook(partoo_test.devent('d-100', '+33600000001', 3, 3, 'DELIVERED', '2024-05-01T10:00:03Z', channel => 'SMS'));
SELECT state, partoo_status, channel FROM partoo.messages WHERE external_id = 'd-100';
-- the same second, a higher statusOrder: newer
SELECT partoo_ingest_webhook(partoo_test.devent('d-100', '+33600000001', 2, 3, 'READ', '2024-05-01T10:00:02Z', 1));
-- older than part 1's DELIVERED: stale; the same notification again: duplicate
SELECT partoo_ingest_webhook(partoo_test.devent('d-100', '+33600000001', 1, 3, 'READ', '2024-05-01T10:00:00Z'));
SELECT partoo_ingest_webhook(partoo_test.devent('d-100', '+33600000001', 3, 3, 'DELIVERED', '2024-05-01 11:00:03+01:00', channel => 'SMS', sp => ' '));
-- another recipient of the same dispatch: its own message; NOSENT is a failure
SELECT partoo_ingest_webhook(partoo_test.devent('d-100', '+33600000002', 1, 1, 'NOSENT', '2024-05-01T10:00:05Z', channel => 'RCS'));
-- statuses and channels partoo does not know are stored
SELECT partoo_ingest_webhook(partoo_test.devent('d-101', 'ada@example.com', 1, 1, 'QUEUED', '2024-05-01T10:00:05Z', channel => 'CARRIER_PIGEON'));
-- no event, no module, no parts: defaults
SELECT partoo_ingest_webhook('{"dispatchId": "d-102", "channelIdentifier": "+33600000003", "status": "FAILED", "statusDate": "2024-05-01T10:00:06Z"}');
SELECT provider, external_id, recipient, state, partoo_status, status_at, channel, metadata,
       partoo_id, created_by = current_user AS by_me
  FROM partoo.messages WHERE provider = 'dispatch' ORDER BY external_id, recipient;
SELECT m.external_id, m.recipient, p.part, p.total_parts, p.channel, p.status, p.status_date, p.status_order
  FROM partoo.message_parts p JOIN partoo.messages m ON m.id = p.message_id
 ORDER BY 1, 2, 3;
SELECT external_id, recipient, message_part, status, order_key, outcome
  FROM partoo.events WHERE source = 'dispatch' AND external_id LIKE 'd-10%' ORDER BY id;

--
-- Any arrival order of a stream with duplicates ends in the state of the
-- stream in order: 200 shuffles for each format, one at a time and as a
-- batch
--
INSERT INTO partoo.messages (partoo_id, state, partoo_status, status_at)
VALUES (900000001, 'sent', 'Sending', now()), (900000002, 'sent', 'Sending', now());
CREATE FUNCTION partoo_test.shuffles(rounds int) RETURNS TABLE (format text, mismatches int)
LANGUAGE plpgsql AS $$
DECLARE
	stream text[];
	want text;
	got text;
	bad int;
	batch boolean;
BEGIN
	PERFORM setseed(0.42);

	-- Partoo: two messages, Sending -> Success -> deleted, Sending -> Failed,
	-- and re-deliveries spelled differently
	stream := ARRAY[
		partoo_test.pevent(900000001, 'Sending', type => 'message_created'),
		partoo_test.pevent(900000001, 'Success'),
		partoo_test.pevent(900000001, 'Success', deleted => true),
		partoo_test.pevent(900000001, 'Success', sp => ''),
		partoo_test.pevent(900000001, 'Sending', sp => E'\t', type => 'message_created'),
		partoo_test.pevent(900000002, 'Sending'),
		partoo_test.pevent(900000002, 'Failed'),
		partoo_test.pevent(900000002, 'Sending', sp => '  '),
		partoo_test.pevent(900000002, 'Failed', sp => E'\n')];
	bad := 0;
	FOR r IN 0 .. rounds LOOP
		UPDATE partoo.messages SET state = 'sent', partoo_status = 'Sending', is_deleted = false,
			   status_at = now(), retry_requested_at = NULL
		 WHERE partoo_id IN (900000001, 900000002);
		DELETE FROM partoo.events WHERE partoo_id IN (900000001, 900000002);
		batch := r % 2 = 1;
		IF r = 0 THEN
			PERFORM partoo_ingest_webhooks(stream);		-- in order
		ELSIF batch THEN
			PERFORM partoo_ingest_webhooks(ARRAY(SELECT s FROM unnest(stream) s ORDER BY random()));
		ELSE
			PERFORM partoo_ingest_webhook(s) FROM (SELECT s FROM unnest(stream) s ORDER BY random()) x;
		END IF;
		SELECT string_agg(concat_ws(' ', partoo_id, state, partoo_status, is_deleted), '; ' ORDER BY partoo_id)
			   || ' | ' || (SELECT count(*) FROM partoo.events WHERE partoo_id IN (900000001, 900000002))
		  INTO got FROM partoo.messages WHERE partoo_id IN (900000001, 900000002);
		IF r = 0 THEN
			want := got;
			RAISE NOTICE 'partoo in order: %', want;
		ELSIF got IS DISTINCT FROM want THEN
			bad := bad + 1;
			RAISE NOTICE 'partoo shuffle %: % instead of %', r, got, want;
		END IF;
	END LOOP;
	format := 'partoo';
	mismatches := bad;
	RETURN NEXT;

	-- dispatch: three parts, statuses out of order, ties broken by
	-- statusOrder, a late FAILED on another recipient, re-deliveries
	stream := ARRAY[
		partoo_test.devent('d-900', 'r1', 1, 3, 'DELIVERED', '2024-05-01T10:00:01Z'),
		partoo_test.devent('d-900', 'r1', 2, 3, 'DELIVERED', '2024-05-01T10:00:02Z'),
		partoo_test.devent('d-900', 'r1', 3, 3, 'DELIVERED', '2024-05-01T10:00:02Z', channel => 'SMS'),
		partoo_test.devent('d-900', 'r1', 2, 3, 'READ', '2024-05-01T10:00:02Z', 7),
		partoo_test.devent('d-900', 'r1', 1, 3, 'READ', '2024-05-01T10:00:09Z'),
		partoo_test.devent('d-900', 'r1', 1, 3, 'DELIVERED', '2024-05-01T10:00:01Z', sp => ' '),
		partoo_test.devent('d-900', 'r1', 2, 3, 'READ', '2024-05-01 12:00:02+02:00', 7),
		partoo_test.devent('d-900', 'r2', 1, 2, 'DELIVERED', '2024-05-01T10:00:01Z'),
		partoo_test.devent('d-900', 'r2', 2, 2, 'DELIVERED', '2024-05-01T10:00:01Z'),
		partoo_test.devent('d-900', 'r2', 2, 2, 'FAILED', '2024-05-01T10:05:00Z', channel => 'SMS'),
		partoo_test.devent('d-900', 'r3', 1, 2, 'DELIVERED', '2024-05-01T10:00:01Z'),
		partoo_test.devent('d-900', 'r3', 2, 2, 'DELIVERED', '2024-05-01T10:00:03Z', sp => E'\t'),
		partoo_test.devent('d-900', 'r3', 2, 2, 'DELIVERED', '2024-05-01T10:00:03Z')];
	bad := 0;
	FOR r IN 0 .. rounds LOOP
		DELETE FROM partoo.message_parts p USING partoo.messages m
		 WHERE m.id = p.message_id AND m.external_id = 'd-900';
		DELETE FROM partoo.messages WHERE external_id = 'd-900';
		DELETE FROM partoo.events WHERE external_id = 'd-900';
		batch := r % 2 = 1;
		IF r = 0 THEN
			PERFORM partoo_ingest_webhooks(stream);
		ELSIF batch THEN
			PERFORM partoo_ingest_webhooks(ARRAY(SELECT s FROM unnest(stream) s ORDER BY random()));
		ELSE
			PERFORM partoo_ingest_webhook(s) FROM (SELECT s FROM unnest(stream) s ORDER BY random()) x;
		END IF;
		SELECT string_agg(concat_ws(' ', m.recipient, m.state, m.partoo_status, m.channel, m.status_at,
					(SELECT string_agg(concat_ws(':', p.part, p.status, p.status_order), ',' ORDER BY p.part)
					   FROM partoo.message_parts p WHERE p.message_id = m.id)), '; ' ORDER BY m.recipient)
			   || ' | ' || (SELECT count(*) FROM partoo.events WHERE external_id = 'd-900')
		  INTO got FROM partoo.messages m WHERE m.external_id = 'd-900';
		IF r = 0 THEN
			want := got;
			RAISE NOTICE 'dispatch in order: %', want;
		ELSIF got IS DISTINCT FROM want THEN
			bad := bad + 1;
			RAISE NOTICE 'dispatch shuffle %: % instead of %', r, got, want;
		END IF;
	END LOOP;
	format := 'dispatch';
	mismatches := bad;
	RETURN NEXT;
END $$;
SELECT * FROM partoo_test.shuffles(200);

--
-- The batch function: one outcome per payload, in order, the same rules
--
SELECT partoo_send(75, 'batch one') AS b1 \gset
SELECT partoo_send(76, 'batch two') AS b2 \gset
SELECT o.n, o.outcome
  FROM partoo_ingest_webhooks(ARRAY[
		partoo_test.pevent(:b1, 'Success'),
		partoo_test.pevent(:b1, 'Success', sp => ''),
		partoo_test.pevent(:b1, 'Sending'),
		partoo_test.pevent(:b2, 'Failed'),
		partoo_test.pevent(999999998, 'Sending'),
		partoo_test.pevent(:b2, 'Success', type => 'message_created', sender => 'Consumer'),
		partoo_test.devent('d-200', '+33600000004', 1, 1, 'DELIVERED', '2024-05-01T10:00:00Z'),
		partoo_test.devent('d-200', '+33600000004', 1, 1, 'READ', '2024-05-01T10:00:01Z'),
		partoo_test.devent('d-200', '+33600000004', 1, 1, 'DELIVERED', '2024-05-01T10:00:00Z', sp => ' ')
	]) WITH ORDINALITY AS o(outcome, n);
SELECT partoo_id = :b1 AS is_b1, state, partoo_status FROM partoo.messages
 WHERE partoo_id IN (:b1, :b2) ORDER BY partoo_id;
SELECT state, partoo_status FROM partoo.messages WHERE external_id = 'd-200';
-- signatures by element; a NULL signature is "none"
SELECT count(*) FROM partoo_ingest_webhooks(ARRAY[partoo_test.pevent(:b1, 'Success')], ARRAY[NULL]::text[]);
SELECT count(*) AS no_payloads FROM partoo_ingest_webhooks('{}');
-- one malformed element fails the whole call, which changes nothing; the
-- error's context names the element
SELECT count(*) AS events_before FROM partoo.events \gset
SELECT partoo_ingest_webhooks(ARRAY[partoo_test.pevent(:b2, 'Success'),
	partoo_test.pevent(:b2, 'Sending'), '{"type": 1, "payload": {}}']);
SELECT * FROM partoo_test.try(format('SELECT partoo_ingest_webhooks(ARRAY[%L, NULL])', partoo_test.pevent(:b2, 'Success')));
SELECT * FROM partoo_test.try(format('SELECT partoo_ingest_webhooks(ARRAY[%L], ARRAY[%L, %L])',
	partoo_test.pevent(:b2, 'Success'), 'a', 'b'));
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhooks(NULL) $$);
SET partoo.webhook_require_signature = on;
SET partoo.webhook_public_key = :'pub';
SELECT partoo_ingest_webhooks(ARRAY[:'body', partoo_test.pevent(:b2, 'Success')], ARRAY[:'sig', NULL]);
RESET partoo.webhook_public_key;
SET partoo.webhook_require_signature = off;
SELECT count(*) - :events_before AS new_events, (SELECT state FROM partoo.messages WHERE partoo_id = :b2) AS b2_state
  FROM partoo.events;

-- REPEATABLE READ callers read and write the latest state
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) > 0 AS snapshot_taken FROM partoo.messages;
SELECT partoo_ingest_webhook(partoo_test.pevent(:b2, 'Success'));
COMMIT;
SELECT state FROM partoo.messages WHERE partoo_id = :b2;

--
-- Privileges: EXECUTE is revoked from PUBLIC; a role granted EXECUTE
-- ingests without any privilege on the tables
--
CREATE ROLE partoo_hook_nobody;
CREATE ROLE partoo_hook;
GRANT EXECUTE ON FUNCTION partoo_ingest_webhook(text, text) TO partoo_hook;
GRANT EXECUTE ON FUNCTION partoo_ingest_webhooks(text[], text[]) TO partoo_hook;
SET ROLE partoo_hook_nobody;
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhook('{}') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_ingest_webhooks('{}') $$);
-- (only the SQLSTATE: the message's wording changed in 16)
SELECT code FROM partoo_test.try($$ SHOW partoo.dispatch_webhook_key $$);
SELECT * FROM partoo_test.try($$ SET partoo.webhook_require_signature = off $$);
RESET ROLE;
SET ROLE partoo_hook;
SELECT partoo_ingest_webhook(partoo_test.devent('d-300', '+33600000005', 1, 1, 'READ', '2024-05-01T10:00:00Z'));
SELECT * FROM partoo_ingest_webhooks(ARRAY[partoo_test.pevent(:b2, 'Success', deleted => true)]);
SELECT * FROM partoo_test.try($$ SELECT count(*) FROM partoo.events $$);
RESET ROLE;
SELECT state, created_by FROM partoo.messages WHERE external_id = 'd-300';
REVOKE ALL ON FUNCTION partoo_ingest_webhook(text, text) FROM partoo_hook;
REVOKE ALL ON FUNCTION partoo_ingest_webhooks(text[], text[]) FROM partoo_hook;
DROP ROLE partoo_hook;
DROP ROLE partoo_hook_nobody;

-- partoo.events is append-only: only a pending event's outcome changes
SELECT * FROM partoo_test.try($$ UPDATE partoo.events SET outcome = 'stale' WHERE outcome = 'applied' $$);
SELECT * FROM partoo_test.try($$ UPDATE partoo.events SET payload = '{}' WHERE outcome = 'pending' $$);

-- no error ever showed the dispatch key, a private key or a signature
SELECT count(*) FILTER (WHERE concat(message, detail, hint) ~ 'sekrit|PRIVATE|c2lnbmF0dXJl') AS with_secret,
       count(*) FILTER (WHERE position(:'sig' IN concat(message, detail, hint)) > 0
                           OR position(:'other_sig' IN concat(message, detail, hint)) > 0
                           OR position(:'priv' IN concat(message, detail, hint)) > 0) AS with_signature
  FROM partoo_test.errors_seen;

-- retention: purge deletes events received before the cut, pending ones too
SELECT partoo.purge(interval '0') >= 0 AS purged;
SELECT count(*) AS events_left FROM partoo.events;
RESET partoo.webhook_require_signature;
