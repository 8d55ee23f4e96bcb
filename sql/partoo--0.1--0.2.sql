/* sql/partoo--0.1--0.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION partoo UPDATE TO '0.2'" to load this file. \quit

/*
 * 0.2: a view of the messages that need a human, an index to find a
 * conversation's messages, and changes found by the benchmark (below).
 * The same partoo.so serves both versions.
 */

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
 * Indexes that hurt the worker (see test/bench: drain, many accounts).
 * NB: messages.state and updated_at change on every claim, outcome and
 * webhook, so an index on them makes each of those updates non-HOT; and
 * with statistics taken while nothing was queued the planner used it to
 * find the messages of a claim (a scan of every queued message per
 * claim).  partoo.purge() scans the table instead; it runs rarely.
 * outbox (run_at) alone serves no query: claims and the next due time go
 * through (account, run_at), and the planner, misled the same way, picked
 * (run_at) for claims and read every due row of every account per claim.
 */
DROP INDEX partoo.messages_state_idx;
DROP INDEX partoo.outbox_run_at_idx;

/*
 * Pending webhook events are applied by the code that records a Partoo id
 * (partoo_send, the worker), no longer by statement triggers: their
 * transition tables copied every row of every write of partoo.messages
 * (claims, outcomes, webhooks) for the sake of the few that record an id.
 * partoo.so still serves the trigger function to 0.1 schemas.
 */
DROP TRIGGER messages_apply_pending_insert ON partoo.messages;
DROP TRIGGER messages_apply_pending_update ON partoo.messages;
DROP FUNCTION partoo.webhook_apply_pending();

/*
 * The same rule as before, in a form that costs less.  NB: PostgreSQL
 * reads a CHECK constraint back from its stored text and plans it at the
 * start of every statement that writes the table; an IN list of nine
 * strings is a long text, and partoo_send writes one row per statement.
 * A call of a C function is a short one.
 */
CREATE FUNCTION partoo.message_state_valid(state text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'partoo_message_state_valid'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
REVOKE ALL ON FUNCTION partoo.message_state_valid(text) FROM PUBLIC;
COMMENT ON FUNCTION partoo.message_state_valid(text)
	IS 'true for a state of partoo.messages: queued, sending, sent, delivered, failed, read, rejected, dead, canceled';

ALTER TABLE partoo.messages
	DROP CONSTRAINT messages_state_check,
	ADD CONSTRAINT messages_state_check CHECK (partoo.message_state_valid(state)) NOT VALID;
ALTER TABLE partoo.messages VALIDATE CONSTRAINT messages_state_check;
