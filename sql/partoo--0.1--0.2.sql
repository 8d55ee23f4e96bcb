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
