/* sql/partoo--0.3--0.4.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION partoo UPDATE TO '0.4'" to load this file. \quit

/*
 * 0.4.  Each change of 0.4 has a section of its own below, and the same
 * section, in the same order, at the end of the whole install script
 * sql/partoo--0.4.sql (test/t/090_upgrade.pl checks that a fresh install
 * and an upgraded one have the same objects).
 */

/* ---------------------------------------------------------------------
 * 0.4: status reconciliation from the API (GET /messages).
 *
 * A message left 'sent' longer than partoo.reconcile_after has its status
 * read by the worker from GET /messages?conversation_id=..., and applied
 * through the same rules as a webhook (partoo.events.source
 * 'reconcile').  partoo.reconcile holds when each such message is
 * checked next, so that checks never rewrite partoo.messages rows.
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

-- the messages already waiting for a status are checked from now on
INSERT INTO partoo.reconcile (message_id, since, next_check_at)
SELECT m.id, coalesce(m.retry_requested_at, m.sent_at, m.updated_at),
	   coalesce(m.retry_requested_at, m.sent_at, m.updated_at)
  FROM partoo.messages m
 WHERE m.provider = 'partoo' AND m.state = 'sent' AND m.partoo_id IS NOT NULL;

-- statuses read from the API are events of their own source
ALTER TABLE partoo.events
	DROP CONSTRAINT events_source_check,
	ADD CONSTRAINT events_source_check CHECK (source IN ('partoo', 'dispatch', 'reconcile'));

/*
 * partoo.purge() also deletes the reconcile rows of the messages it
 * deletes.  NB: made again (no CREATE OR REPLACE in extension scripts),
 * so GRANTs of EXECUTE on it must be made again after the update.
 */
DROP FUNCTION partoo.purge(interval);
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

/*
 * partoo.worker_status() gains the reconciliation counters.  NB: made
 * again, so GRANTs of EXECUTE on it must be made again after the update.
 */
DROP FUNCTION partoo.worker_status();
CREATE FUNCTION partoo.worker_status(
	OUT database text, OUT pid integer, OUT in_flight integer,
	OUT sent bigint, OUT retried bigint, OUT failed bigint, OUT rejected bigint,
	OUT dead bigint, OUT rate_limited bigint, OUT started_at timestamptz,
	OUT last_error text, OUT last_error_at timestamptz, OUT paused_accounts text,
	OUT reconcile_requests bigint, OUT reconcile_applied bigint,
	OUT reconcile_rate_limited bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'partoo_worker_status'
LANGUAGE C VOLATILE PARALLEL SAFE;
REVOKE ALL ON FUNCTION partoo.worker_status() FROM PUBLIC;
COMMENT ON FUNCTION partoo.worker_status()
	IS 'one row per partoo worker: pid, requests in flight, counters since start (reconciliation''s too), last error, paused accounts';

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
