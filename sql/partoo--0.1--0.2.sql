/* sql/partoo--0.1--0.2.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION partoo UPDATE TO '0.2'" to load this file. \quit

/*
 * 0.2: a view of the messages that need a human, and an index to find a
 * conversation's messages.  No change to existing objects: the same
 * partoo.so serves both versions.
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
