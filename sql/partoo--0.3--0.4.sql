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
