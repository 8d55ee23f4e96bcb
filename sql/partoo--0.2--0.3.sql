/* sql/partoo--0.2--0.3.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION partoo UPDATE TO '0.3'" to load this file. \quit

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
 * 0.3, issue 12: robustness of the worker.
 * ---------------------------------------------------------------------
 */

/*
 * Bad account rows are refused by a trigger before the CHECK constraints
 * see them, with an error that says what is wrong and how to fix it.  NB:
 * a CHECK or NOT NULL violation prints the failing row in its detail, API
 * key included.  The rules are the constraints' own: a name of 1 to 63
 * characters (the worker serves any name of that length, however many
 * bytes it takes), a key, an http(s) base URL or none, a rate limit >= 0.
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
 * A message Partoo accepted whose outcome the worker could not record
 * (a trigger refused it, say) keeps its Partoo id in its outbox row, as
 * the action 'record': the worker records it later and never sends it
 * again, even after a restart.  Only 'record' rows have a partoo_id.
 */
ALTER TABLE partoo.outbox ADD COLUMN partoo_id bigint;
COMMENT ON COLUMN partoo.outbox.partoo_id
	IS 'for action ''record'': the Partoo message_id of a message Partoo accepted, to be recorded';
ALTER TABLE partoo.outbox
	DROP CONSTRAINT outbox_action_check,
	ADD CONSTRAINT outbox_action_check CHECK (action IN ('send', 'retry', 'record')) NOT VALID,
	ADD CONSTRAINT outbox_record_check CHECK ((action = 'record') = (partoo_id IS NOT NULL)) NOT VALID;
ALTER TABLE partoo.outbox VALIDATE CONSTRAINT outbox_action_check;
ALTER TABLE partoo.outbox VALIDATE CONSTRAINT outbox_record_check;

/*
 * partoo.worker_status() without the loops column (a debugging counter).
 * NB: a function's result columns cannot change in place, so it is made
 * again, and GRANTs of EXECUTE on it must be made again after the update.
 */
DROP FUNCTION partoo.worker_status();
CREATE FUNCTION partoo.worker_status(
	OUT database text, OUT pid integer, OUT in_flight integer,
	OUT sent bigint, OUT retried bigint, OUT failed bigint, OUT rejected bigint,
	OUT dead bigint, OUT rate_limited bigint, OUT started_at timestamptz,
	OUT last_error text, OUT last_error_at timestamptz, OUT paused_accounts text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'partoo_worker_status'
LANGUAGE C VOLATILE PARALLEL SAFE;
REVOKE ALL ON FUNCTION partoo.worker_status() FROM PUBLIC;
COMMENT ON FUNCTION partoo.worker_status()
	IS 'one row per partoo worker: pid, requests in flight, counters since start, last error, paused accounts';
