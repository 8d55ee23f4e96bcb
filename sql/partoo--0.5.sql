/* sql/partoo--0.5.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION partoo" to load this file. \quit

/*
 * Tables, views and administration functions live in schema partoo; the
 * partoo_* functions live in the schema the extension is created in, so
 * that they are on the default search path.
 *
 * NB: the C code relies on the column names and order of these tables.
 * No CREATE OR REPLACE and no IF NOT EXISTS here (CVE-2022-2625).
 *
 * This is the whole of version 0.4, as partoo--0.1.sql and the upgrade
 * scripts 0.1--0.2, 0.2--0.3 and 0.3--0.4 make it (test/t/090_upgrade.pl
 * checks that both ways give the same objects, column for column).
 * Comments on why a change was made are in the upgrade script that made
 * it.  The changes of 0.4 are at the end, each in a section of its own.
 */
CREATE SCHEMA partoo;
REVOKE ALL ON SCHEMA partoo FROM PUBLIC;

/*
 * API credentials.  The API key is readable by the table's owner only; the
 * C code reads this table without going through the caller's privileges.
 * The row with name NULL does not exist: account => NULL means the default
 * account made of the GUCs partoo.api_key and partoo.base_url.
 */
CREATE TABLE partoo.accounts (
	name text PRIMARY KEY
		CONSTRAINT accounts_name_check CHECK (name <> '' AND length(name) <= 63),
	api_key text NOT NULL
		CONSTRAINT accounts_api_key_check CHECK (api_key <> ''),
	base_url text
		CONSTRAINT accounts_base_url_check CHECK (base_url ~* '^https?://[^[:space:]]+$'),
	requests_per_minute integer NOT NULL DEFAULT 300
		CONSTRAINT accounts_requests_per_minute_check CHECK (requests_per_minute >= 0),
	created_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON partoo.accounts FROM PUBLIC;
COMMENT ON TABLE partoo.accounts IS 'Partoo API credentials; the default account comes from partoo.api_key and partoo.base_url';

/*
 * Bad account rows are refused by this trigger before the constraints see
 * them: a CHECK or NOT NULL violation prints the failing row, API key
 * included.
 */
CREATE FUNCTION partoo.accounts_check()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NEW.name IS NULL OR NEW.name = '' THEN
		RAISE EXCEPTION 'account name must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The default account has no row: it is account => NULL, made of partoo.api_key and partoo.base_url.',
				  HINT = 'Give the account a name of 1 to 63 characters.';
	END IF;
	IF length(NEW.name) > 63 THEN
		RAISE EXCEPTION 'account name is too long'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('Account names have at most 63 characters; this one has %s.', length(NEW.name)),
				  HINT = 'Choose a shorter name.';
	END IF;
	IF NEW.api_key IS NULL OR NEW.api_key = '' THEN
		RAISE EXCEPTION 'API key must not be empty'
			USING ERRCODE = CASE WHEN NEW.api_key IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
				  DETAIL = format('Account "%s" has no API key.', NEW.name),
				  HINT = 'Set api_key to the key Partoo issued for the organisation.';
	END IF;
	IF NEW.base_url !~* '^https?://[^[:space:]]+$' THEN
		RAISE EXCEPTION 'invalid base URL'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The base URL of account "%s" must start with http:// or https:// and name a host, without spaces.', NEW.name),
				  HINT = 'Leave base_url NULL to use partoo.base_url.';
	END IF;
	IF NEW.requests_per_minute IS NULL OR NEW.requests_per_minute < 0 THEN
		RAISE EXCEPTION 'invalid requests_per_minute'
			USING ERRCODE = CASE WHEN NEW.requests_per_minute IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
				  DETAIL = format('The rate limit of account "%s" must be a number of requests per minute, or 0 for none.', NEW.name),
				  HINT = 'Partoo allows 300 requests per minute per organisation by default.';
	END IF;
	IF NEW.created_at IS NULL THEN
		RAISE EXCEPTION 'created_at must not be null'
			USING ERRCODE = 'null_value_not_allowed',
				  HINT = 'Leave it out: it defaults to now().';
	END IF;
	RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION partoo.accounts_check() FROM PUBLIC;
COMMENT ON FUNCTION partoo.accounts_check()
	IS 'BEFORE INSERT OR UPDATE row trigger on partoo.accounts: refuses bad rows with a clear error that never shows the key';
CREATE TRIGGER accounts_check
	BEFORE INSERT OR UPDATE ON partoo.accounts
	FOR EACH ROW EXECUTE FUNCTION partoo.accounts_check();

/*
 * The states of partoo.messages, checked by a C function: PostgreSQL plans
 * a CHECK constraint at the start of every statement that writes the
 * table, and a function call is cheaper to plan than a list of strings.
 */
CREATE FUNCTION partoo.message_state_valid(state text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'partoo_message_state_valid'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION partoo.message_state_valid(text) FROM PUBLIC;
COMMENT ON FUNCTION partoo.message_state_valid(text)
	IS 'true for a state of partoo.messages: queued, sending, sent, delivered, failed, read, rejected, dead, canceled';

/*
 * One row per message.  Messages sent through Partoo have provider
 * 'partoo'; rows created by dispatch-style status webhooks have provider
 * 'dispatch' and are keyed by (external_id, recipient).
 */
CREATE TABLE partoo.messages (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	provider text NOT NULL DEFAULT 'partoo'
		CONSTRAINT messages_provider_check CHECK (provider IN ('partoo', 'dispatch')),
	account text,
	conversation_id bigint,
	content_type text,
	content text,
	url text,
	image bytea,
	filename text,
	channel text,
	partoo_id bigint,
	external_id text,
	recipient text,
	state text NOT NULL DEFAULT 'queued'
		CONSTRAINT messages_state_check CHECK (partoo.message_state_valid(state)),
	partoo_status text,
	status_at timestamptz,
	is_deleted boolean NOT NULL DEFAULT false,
	attempts integer NOT NULL DEFAULT 0,
	last_http_status integer,
	last_error text,
	idempotency_key text,
	send_at timestamptz,
	retry_requested_at timestamptz,
	metadata jsonb,
	created_by text NOT NULL DEFAULT current_user,
	created_at timestamptz NOT NULL DEFAULT now(),
	sent_at timestamptz,
	updated_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT messages_partoo_id_key UNIQUE (partoo_id)
);
CREATE UNIQUE INDEX messages_idempotency_key_idx
	ON partoo.messages ((coalesce(account, '')), idempotency_key)
	WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX messages_dispatch_key_idx
	ON partoo.messages (external_id, recipient)
	WHERE provider = 'dispatch';
REVOKE ALL ON partoo.messages FROM PUBLIC;
COMMENT ON TABLE partoo.messages IS 'one row per message sent, queued or reported by a webhook';

/*
 * The queue the background worker drains.  run_at doubles as the lease: a
 * claimed row gets run_at = now() + partoo.lease, so a row whose worker died
 * becomes due again by itself and one index serves both.  Rows leave the
 * table when their message reaches a final outcome.  The action 'record'
 * holds the Partoo id of a message Partoo accepted whose outcome the
 * worker could not record yet: it is recorded later, never sent again.
 */
CREATE TABLE partoo.outbox (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	message_id bigint NOT NULL,
	action text NOT NULL DEFAULT 'send'
		CONSTRAINT outbox_action_check CHECK (action IN ('send', 'retry', 'record')),
	account text NOT NULL DEFAULT '',
	run_at timestamptz NOT NULL DEFAULT now(),
	attempts integer NOT NULL DEFAULT 0,
	leased_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now(),
	partoo_id bigint,
	CONSTRAINT outbox_record_check CHECK ((action = 'record') = (partoo_id IS NOT NULL))
) WITH (autovacuum_vacuum_scale_factor = 0.02,
		autovacuum_vacuum_threshold = 1000,
		autovacuum_vacuum_insert_scale_factor = 0.02,
		autovacuum_analyze_scale_factor = 0.05);
CREATE INDEX outbox_account_run_at_idx ON partoo.outbox (account, run_at);
CREATE INDEX outbox_message_id_idx ON partoo.outbox (message_id);
REVOKE ALL ON partoo.outbox FROM PUBLIC;
COMMENT ON TABLE partoo.outbox IS 'messages waiting for the partoo worker; account '''' is the default account';
COMMENT ON COLUMN partoo.outbox.partoo_id
	IS 'for action ''record'': the Partoo message_id of a message Partoo accepted, to be recorded';

/*
 * Every webhook event accepted, append-only: only a pending event's
 * outcome, message_id and applied_at change, once, when its message is
 * recorded (see the trigger in the Webhooks section).  dedup_key
 * recognises a duplicate delivery (its canonical forms are described in
 * src/core/webhook.h and README.md); events for a message not known yet wait
 * with outcome 'pending' until the message's id is recorded.  Duplicates
 * are not stored.
 *
 *	source		'partoo' or 'dispatch' (the payload's format)
 *	event_type	Partoo "type", dispatch "event"
 *	partoo_id	Partoo's message id (payload.message.id)
 *	external_id, recipient, message_part
 *				dispatchId, channelIdentifier, messagePart
 *	channel		dispatch "channel"; Partoo conversation.messaging_partner
 *	content_type, sender_type
 *				Partoo's, as received, whatever the value
 *	status		the status as received
 *	event_at	dispatch statusDate; Partoo has no event time, so the
 *				message's date
 *	order_key	dispatch "<statusDate>#<statusOrder>"
 */
CREATE TABLE partoo.events (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	source text NOT NULL
		CONSTRAINT events_source_check CHECK (source IN ('partoo', 'dispatch', 'reconcile')),	-- 'reconcile' in 0.4
	event_type text,
	partoo_id bigint,
	external_id text,
	recipient text,
	message_part integer,
	channel text,
	content_type text,
	sender_type text,
	status text,
	event_at timestamptz,
	order_key text,
	dedup_key text COLLATE "C" NOT NULL,
	payload text NOT NULL,
	outcome text NOT NULL
		CONSTRAINT events_outcome_check CHECK (outcome IN ('applied', 'stale', 'pending', 'ignored')),
	message_id bigint,
	received_at timestamptz NOT NULL DEFAULT now(),
	applied_at timestamptz,
	CONSTRAINT events_dedup_key_key UNIQUE (dedup_key)
);
CREATE INDEX events_pending_idx ON partoo.events (partoo_id) WHERE outcome = 'pending';
-- received_at follows the physical order of an append-only table: BRIN is enough for purge
CREATE INDEX events_received_at_idx ON partoo.events USING brin (received_at)
	WITH (autosummarize = on);
REVOKE ALL ON partoo.events FROM PUBLIC;
COMMENT ON TABLE partoo.events IS 'webhook events accepted, append-only; duplicates are not stored';

/*
 * Per-part state of dispatch-style messages: the newest status applied for
 * each part and its ordering key (status_date, status_order).  Rows are
 * written by partoo_ingest_webhook; partoo.purge removes those of deleted
 * messages.
 */
CREATE TABLE partoo.message_parts (
	message_id bigint NOT NULL,
	part integer NOT NULL,
	total_parts integer,
	channel text,
	status text NOT NULL,
	status_date timestamptz NOT NULL,
	status_order integer NOT NULL,
	PRIMARY KEY (message_id, part)
);
REVOKE ALL ON partoo.message_parts FROM PUBLIC;

/* ---------------------------------------------------------------------
 * SQL-callable C functions
 * ---------------------------------------------------------------------
 */

CREATE FUNCTION @extschema@.partoo_send(
	conversation_id bigint,
	content text DEFAULT NULL,
	content_type text DEFAULT 'Text',
	url text DEFAULT NULL,
	image bytea DEFAULT NULL,
	filename text DEFAULT NULL,
	channel text DEFAULT NULL,
	account text DEFAULT NULL,
	metadata jsonb DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'partoo_send'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION @extschema@.partoo_send(bigint, text, text, text, bytea, text, text, text, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.partoo_send(bigint, text, text, text, bytea, text, text, text, jsonb)
	IS 'send a message now through POST /messages and record it; returns Partoo''s message_id';

CREATE FUNCTION @extschema@.partoo_retry(message_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'partoo_retry'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION @extschema@.partoo_retry(bigint) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.partoo_retry(bigint)
	IS 'retry a failed message now through POST /messages/{message_id}/retry';

CREATE FUNCTION @extschema@.partoo_enqueue(
	conversation_id bigint,
	content text DEFAULT NULL,
	content_type text DEFAULT 'Text',
	url text DEFAULT NULL,
	image bytea DEFAULT NULL,
	filename text DEFAULT NULL,
	channel text DEFAULT NULL,
	account text DEFAULT NULL,
	idempotency_key text DEFAULT NULL,
	send_at timestamptz DEFAULT NULL,
	metadata jsonb DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'partoo_enqueue'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION @extschema@.partoo_enqueue(bigint, text, text, text, bytea, text, text, text, text, timestamptz, jsonb) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.partoo_enqueue(bigint, text, text, text, bytea, text, text, text, text, timestamptz, jsonb)
	IS 'queue a message in the current transaction; the worker sends it after commit; returns partoo.messages.id';

CREATE FUNCTION partoo.enqueue_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'partoo_enqueue_trigger'
LANGUAGE C;
REVOKE ALL ON FUNCTION partoo.enqueue_trigger() FROM PUBLIC;
COMMENT ON FUNCTION partoo.enqueue_trigger()
	IS 'AFTER INSERT OR UPDATE row trigger queueing a message: (conversation_id column, template [, content_type [, url column [, account]]])';

CREATE FUNCTION partoo.wake_worker()
RETURNS void
AS 'MODULE_PATHNAME', 'partoo_wake_worker'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION partoo.wake_worker() FROM PUBLIC;
COMMENT ON FUNCTION partoo.wake_worker() IS 'wake this database''s partoo worker when the current transaction commits';

CREATE FUNCTION partoo.accounts_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'partoo_accounts_changed'
LANGUAGE C;
REVOKE ALL ON FUNCTION partoo.accounts_changed() FROM PUBLIC;
CREATE TRIGGER accounts_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON partoo.accounts
	FOR EACH STATEMENT EXECUTE FUNCTION partoo.accounts_changed();

CREATE FUNCTION partoo.worker_status(
	OUT database text, OUT pid integer, OUT in_flight integer,
	OUT sent bigint, OUT retried bigint, OUT failed bigint, OUT rejected bigint,
	OUT dead bigint, OUT rate_limited bigint, OUT started_at timestamptz,
	OUT last_error text, OUT last_error_at timestamptz, OUT paused_accounts text,
	OUT reconcile_requests bigint, OUT reconcile_applied bigint,
	OUT reconcile_rate_limited bigint, OUT window_size integer,
	OUT latency_ms double precision)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'partoo_worker_status'
LANGUAGE C VOLATILE PARALLEL SAFE;
REVOKE ALL ON FUNCTION partoo.worker_status() FROM PUBLIC;
COMMENT ON FUNCTION partoo.worker_status()
	IS 'one row per partoo worker: pid, requests in flight and the window sized for them, the latency observed, counters since start (reconciliation''s too), last error, paused accounts';

/* ---------------------------------------------------------------------
 * Administration.  SECURITY DEFINER with a pinned search_path, EXECUTE
 * revoked from PUBLIC: grant them to the roles that administer partoo.
 * ---------------------------------------------------------------------
 */

CREATE VIEW partoo.queue_stats AS
SELECT coalesce(m.account, '') AS account, m.state, count(*) AS messages,
	   max(now() - o.run_at) FILTER (WHERE o.run_at <= now() AND o.leased_at IS NULL)
		   AS oldest_due_age,
	   count(*) FILTER (WHERE o.leased_at IS NOT NULL) AS in_flight
  FROM partoo.messages m
  LEFT JOIN partoo.outbox o ON o.message_id = m.id
 WHERE m.provider = 'partoo'
 GROUP BY 1, 2;
REVOKE ALL ON partoo.queue_stats FROM PUBLIC;
COMMENT ON VIEW partoo.queue_stats IS 'messages by account and state, with the age of the oldest due outbox row';

-- Queue a retry of a failed message through the outbox (POST /messages/{id}/retry)
CREATE FUNCTION partoo.retry_later(message_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m partoo.messages;
BEGIN
	SELECT * INTO m FROM partoo.messages WHERE id = retry_later.message_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'message % does not exist', retry_later.message_id
			USING ERRCODE = 'undefined_object',
				  HINT = 'Pass the id of a row of partoo.messages (not Partoo''s message_id).';
	END IF;
	IF m.partoo_id IS NULL OR m.state NOT IN ('failed', 'sent', 'delivered', 'read') THEN
		RAISE EXCEPTION 'message % cannot be retried in state %', m.id, m.state
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Only a message Partoo has accepted (it has a Partoo message_id) can be retried.',
				  HINT = 'Use partoo.requeue() for a message that was rejected or is dead.';
	END IF;
	IF EXISTS (SELECT 1 FROM partoo.outbox o WHERE o.message_id = m.id) THEN
		RETURN false;			-- already queued
	END IF;
	INSERT INTO partoo.outbox (message_id, action, account)
	VALUES (m.id, 'retry', coalesce(m.account, ''));
	UPDATE partoo.messages SET state = 'queued', updated_at = now() WHERE id = m.id;
	PERFORM partoo.wake_worker();
	RETURN true;
END $$;
REVOKE ALL ON FUNCTION partoo.retry_later(bigint) FROM PUBLIC;
COMMENT ON FUNCTION partoo.retry_later(bigint)
	IS 'queue POST /messages/{id}/retry for a message Partoo accepted (argument: partoo.messages.id)';

-- Send a rejected or dead message again, from attempt one
CREATE FUNCTION partoo.requeue(message_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m partoo.messages;
BEGIN
	SELECT * INTO m FROM partoo.messages WHERE id = requeue.message_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'message % does not exist', requeue.message_id
			USING ERRCODE = 'undefined_object';
	END IF;
	IF m.state NOT IN ('dead', 'rejected', 'canceled') OR m.provider <> 'partoo' THEN
		RAISE EXCEPTION 'message % cannot be requeued in state %', m.id, m.state
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Only dead, rejected and canceled messages can be requeued.';
	END IF;
	INSERT INTO partoo.outbox (message_id, action, account)
	VALUES (m.id, CASE WHEN m.partoo_id IS NULL THEN 'send' ELSE 'retry' END,
			coalesce(m.account, ''));
	UPDATE partoo.messages SET state = 'queued', last_error = NULL, updated_at = now()
	 WHERE id = m.id;
	PERFORM partoo.wake_worker();
	RETURN true;
END $$;
REVOKE ALL ON FUNCTION partoo.requeue(bigint) FROM PUBLIC;
COMMENT ON FUNCTION partoo.requeue(bigint) IS 'queue a dead, rejected or canceled message again';

-- Cancel a queued message that is not in flight
CREATE FUNCTION partoo.cancel(message_id bigint)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	m partoo.messages;
	o partoo.outbox;
BEGIN
	SELECT * INTO m FROM partoo.messages WHERE id = cancel.message_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'message % does not exist', cancel.message_id
			USING ERRCODE = 'undefined_object';
	END IF;
	SELECT * INTO o FROM partoo.outbox WHERE outbox.message_id = m.id FOR UPDATE;
	IF m.state <> 'queued' OR NOT FOUND THEN
		RAISE EXCEPTION 'message % cannot be canceled in state %', m.id, m.state
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Only queued messages can be canceled.';
	END IF;
	IF o.leased_at IS NOT NULL AND o.run_at > now() THEN
		RAISE EXCEPTION 'message % is being sent and cannot be canceled', m.id
			USING ERRCODE = 'object_in_use';
	END IF;
	DELETE FROM partoo.outbox WHERE id = o.id;
	UPDATE partoo.messages SET state = 'canceled', updated_at = now() WHERE id = m.id;
	RETURN true;
END $$;
REVOKE ALL ON FUNCTION partoo.cancel(bigint) FROM PUBLIC;
COMMENT ON FUNCTION partoo.cancel(bigint) IS 'cancel a queued message that is not in flight';

-- Delete finished messages (and their reconcile rows, 0.4) and old events
CREATE FUNCTION partoo.purge(older_than interval)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	IF older_than IS NULL OR older_than < interval '0' THEN
		RAISE EXCEPTION 'older_than must be a non-negative interval'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	WITH d AS (
		DELETE FROM partoo.messages m
		 WHERE m.updated_at < now() - older_than
		   AND m.state IN ('sent', 'delivered', 'read', 'failed', 'rejected', 'dead', 'canceled')
		   AND NOT EXISTS (SELECT 1 FROM partoo.outbox o WHERE o.message_id = m.id)
		RETURNING m.id)
	SELECT count(*) INTO n FROM d;
	DELETE FROM partoo.message_parts p
	 WHERE NOT EXISTS (SELECT 1 FROM partoo.messages m WHERE m.id = p.message_id);
	DELETE FROM partoo.reconcile r
	 WHERE NOT EXISTS (SELECT 1 FROM partoo.messages m WHERE m.id = r.message_id);
	DELETE FROM partoo.events e WHERE e.received_at < now() - older_than;
	RETURN n;
END $$;
REVOKE ALL ON FUNCTION partoo.purge(interval) FROM PUBLIC;
COMMENT ON FUNCTION partoo.purge(interval)
	IS 'delete finished messages last updated before now() - older_than (and their reconcile rows), and events received before it; returns messages deleted';

/* ---------------------------------------------------------------------
 * Webhooks
 *
 * partoo_ingest_webhook() takes one webhook body exactly as received
 * (Partoo's message_updated/message_created, or a dispatch status
 * notification) and its signature header, and returns what it did:
 * applied, duplicate, stale, pending or ignored.  partoo_ingest_webhooks()
 * does the same for arrays, in one call.  Both run as the caller and
 * switch to the extension's owner for their SQL, so a role granted
 * EXECUTE needs no privilege on the tables.
 * ---------------------------------------------------------------------
 */

CREATE FUNCTION @extschema@.partoo_ingest_webhook(payload text, signature text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'partoo_ingest_webhook'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION @extschema@.partoo_ingest_webhook(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.partoo_ingest_webhook(text, text)
	IS 'record a webhook body (Partoo or dispatch format) and apply it; signature: X-Partoo-Signature-v1, or the dispatch API key; returns applied, duplicate, stale, pending or ignored';

CREATE FUNCTION @extschema@.partoo_ingest_webhooks(payloads text[], signatures text[] DEFAULT NULL)
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'partoo_ingest_webhooks'
LANGUAGE C VOLATILE PARALLEL UNSAFE ROWS 1000;
REVOKE ALL ON FUNCTION @extschema@.partoo_ingest_webhooks(text[], text[]) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@.partoo_ingest_webhooks(text[], text[])
	IS 'partoo_ingest_webhook for many bodies in one call: one outcome per payload, in order; a malformed or unauthenticated element fails the whole call';

-- partoo.events is append-only: a pending event may become applied or stale, once
CREATE FUNCTION partoo.events_append_only()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF OLD.outcome <> 'pending' OR NEW.outcome NOT IN ('applied', 'stale')
	   OR (NEW.id, NEW.source, NEW.event_type, NEW.partoo_id, NEW.external_id,
		   NEW.recipient, NEW.message_part, NEW.channel, NEW.content_type,
		   NEW.sender_type, NEW.status, NEW.event_at, NEW.order_key,
		   NEW.dedup_key, NEW.payload, NEW.received_at)
		  IS DISTINCT FROM
		  (OLD.id, OLD.source, OLD.event_type, OLD.partoo_id, OLD.external_id,
		   OLD.recipient, OLD.message_part, OLD.channel, OLD.content_type,
		   OLD.sender_type, OLD.status, OLD.event_at, OLD.order_key,
		   OLD.dedup_key, OLD.payload, OLD.received_at)
	THEN
		RAISE EXCEPTION 'partoo.events is append-only'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Only the outcome of a pending event changes, to applied or stale, when its message is recorded.',
				  HINT = 'Use partoo.purge() to delete old events.';
	END IF;
	RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION partoo.events_append_only() FROM PUBLIC;
CREATE TRIGGER events_append_only
	BEFORE UPDATE ON partoo.events
	FOR EACH ROW EXECUTE FUNCTION partoo.events_append_only();

/* Messages that need a human */
CREATE VIEW partoo.problems AS
SELECT m.id, m.account, m.conversation_id, m.content_type, m.state, m.attempts,
	   m.last_http_status, m.last_error, m.created_at, m.updated_at
  FROM partoo.messages m
 WHERE m.state IN ('dead', 'rejected', 'failed');
REVOKE ALL ON partoo.problems FROM PUBLIC;
COMMENT ON VIEW partoo.problems
	IS 'messages that need attention: dead (attempts exhausted), rejected by the API, or failed on their channel';

CREATE INDEX messages_conversation_id_idx ON partoo.messages (conversation_id);

/*
 * 0.3: pg_dump keeps partoo's data.
 *
 * The rows of an extension's tables are not dumped unless the extension
 * marks them as configuration: without this, a logical backup lost the
 * queue, the message history and the account keys.  Every table that holds
 * state is marked (all rows), and so are the sequences of their identity
 * columns, so that a restored database hands out fresh ids.
 *
 * NB: the dump then carries the API keys of partoo.accounts, as it carries
 * every other table's data: protect dumps as you protect the database.
 */
SELECT pg_catalog.pg_extension_config_dump('partoo.accounts', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.messages', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.events', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.message_parts', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.messages_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('partoo.events_id_seq', '');

/* ---------------------------------------------------------------------
 * 0.4 (see sql/partoo--0.3--0.4.sql).  Each change of 0.4 has a section
 * of its own below, in the same order as in the upgrade script.
 * ---------------------------------------------------------------------
 */

/* ---------------------------------------------------------------------
 * 0.4: status reconciliation from the API (GET /messages).
 *
 * A message left 'sent' longer than partoo.reconcile_after has its status
 * read by the worker from GET /messages?conversation_id=..., and applied
 * through the same rules as a webhook (partoo.events.source
 * 'reconcile').  partoo.reconcile holds when each such message is
 * checked next, so that checks never rewrite partoo.messages rows.
 * (Changed in place above, as the upgrade script changes them: the CHECK
 * constraint events_source_check, partoo.purge() and
 * partoo.worker_status().)
 * ---------------------------------------------------------------------
 */

/*
 * One row per message the worker recorded 'sent' (or whose retry it
 * recorded) while reconciliation was on; the worker deletes the row when
 * the message is no longer 'sent', has gone, or is older than
 * partoo.reconcile_max_age.  No foreign key: partoo.purge deletes the
 * rows of the messages it deletes, and a foreign key would cost every
 * delete of partoo.messages a lookup here.
 *
 *	since			when this attempt was recorded sent (reconcile_max_age
 *					counts from it)
 *	checks			GET /messages made for it so far (the backoff's exponent)
 *	next_check_at	when it is due; while a check is in flight, the end of
 *					its lease
 */
CREATE TABLE partoo.reconcile (
	message_id bigint PRIMARY KEY,
	since timestamptz NOT NULL DEFAULT now(),
	checks integer NOT NULL DEFAULT 0,
	next_check_at timestamptz NOT NULL,
	last_checked_at timestamptz
);
CREATE INDEX reconcile_next_check_at_idx ON partoo.reconcile (next_check_at);
REVOKE ALL ON partoo.reconcile FROM PUBLIC;
COMMENT ON TABLE partoo.reconcile
	IS 'messages left sent whose status the worker reads from GET /messages, and when it checks each next';
SELECT pg_catalog.pg_extension_config_dump('partoo.reconcile', '');

/* ---------------------------------------------------------------------
 * 0.4: notifications.  With partoo.notify_status on, every change of a
 * message's state sends NOTIFY partoo_status with its id, state and
 * partoo_status (src/server/notify.c).  The WHEN clauses keep the
 * triggers from queueing anything while the setting is off.
 * ---------------------------------------------------------------------
 */
CREATE FUNCTION partoo.notify_status_enabled()
RETURNS boolean
AS 'MODULE_PATHNAME', 'partoo_notify_status_enabled'
LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION partoo.notify_status_enabled()
	IS 'whether partoo.notify_status is on: the WHEN clause of the messages_notify triggers';

CREATE FUNCTION partoo.messages_notify()
RETURNS trigger
AS 'MODULE_PATHNAME', 'partoo_messages_notify'
LANGUAGE C;
REVOKE ALL ON FUNCTION partoo.messages_notify() FROM PUBLIC;
COMMENT ON FUNCTION partoo.messages_notify()
	IS 'trigger: NOTIFY partoo_status with {"id", "state", "partoo_status"} of the row';

CREATE TRIGGER messages_notify_insert
	AFTER INSERT ON partoo.messages
	FOR EACH ROW WHEN (partoo.notify_status_enabled())
	EXECUTE FUNCTION partoo.messages_notify();
CREATE TRIGGER messages_notify_state
	AFTER UPDATE OF state ON partoo.messages
	FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state AND partoo.notify_status_enabled())
	EXECUTE FUNCTION partoo.messages_notify();
