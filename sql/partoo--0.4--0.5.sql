/* sql/partoo--0.4--0.5.sql */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION partoo UPDATE TO '0.5'" to load this file. \quit

/*
 * 0.5.  The whole install script sql/partoo--0.5.sql has the same objects
 * (test/t/090_upgrade.pl compares a fresh install with an upgraded one).
 */

/*
 * partoo.worker_status() shows the in-flight window the worker sized for
 * itself and the API latency it sized it for.  NB: made again, so GRANTs
 * of EXECUTE on it must be made again after the update.
 */
DROP FUNCTION partoo.worker_status();
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
