--
-- 01_setup: install the extension and the helpers the other tests use.
--
CREATE EXTENSION partoo;

-- what the extension owns
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'partoo')
   AND deptype = 'e'
   -- since 17 a table's row type and its array type are members too: they
   -- come with the tables listed here, so leave them out
   AND NOT (classid = 'pg_type'::regclass AND EXISTS
            (SELECT FROM pg_type t
              WHERE t.oid = objid
                AND (t.typrelid <> 0 OR
                     (SELECT e.typrelid FROM pg_type e WHERE e.oid = t.typelem) <> 0)))
 ORDER BY 1;

-- nothing is granted to PUBLIC, nor to anybody but the owner
SELECT p.oid::regprocedure AS function,
       (SELECT count(*) FROM aclexplode(p.proacl) a WHERE a.grantee <> p.proowner) AS grants
  FROM pg_proc p
 WHERE p.proname LIKE 'partoo%' OR p.pronamespace = 'partoo'::regnamespace
 ORDER BY p.oid::regprocedure::text COLLATE "C";
SELECT c.relname, c.relacl IS NOT NULL AS has_acl,
       (SELECT count(*) FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner) AS grants
  FROM pg_class c
 WHERE c.relnamespace = 'partoo'::regnamespace AND c.relkind IN ('r', 'v')
 ORDER BY 1;
SELECT has_schema_privilege('public', 'partoo', 'USAGE') AS public_usage;

-- settings and their defaults (the key is hidden from SHOW ALL)
SELECT name, setting, unit, context FROM pg_settings
 WHERE name LIKE 'partoo.%' AND name NOT IN ('partoo.base_url')
 ORDER BY name;

-- the states partoo.messages accepts (README's list), and nothing else
SELECT s, partoo.message_state_valid(s) AS valid
  FROM unnest(ARRAY['queued', 'sending', 'sent', 'delivered', 'failed', 'read',
                    'rejected', 'dead', 'canceled', 'Sent', 'sent ', '', 'deleted']) s;
\set VERBOSITY terse
INSERT INTO partoo.messages (conversation_id, state) VALUES (1, 'bogus');
INSERT INTO partoo.messages (conversation_id, state) VALUES (1, 'dispatched');
\set VERBOSITY default
SELECT count(*) AS messages FROM partoo.messages;
-- (those took two ids; later tests expect the first message to be 1)
ALTER TABLE partoo.messages ALTER COLUMN id RESTART WITH 1;

-- a bad base URL is refused
SET partoo.base_url = 'ftp://example.com/v2';
SET partoo.base_url = 'https://';
SET partoo.base_url = 'http://exa mple.com';

--
-- Helpers for the tests, in schema partoo_test.
--
CREATE SCHEMA partoo_test;

-- the mock server's address, from the environment run-all.sh exports
\getenv mock_url PARTOO_MOCK_URL
CREATE TABLE partoo_test.config (mock_url text NOT NULL);
INSERT INTO partoo_test.config VALUES (:'mock_url');

-- Ask the mock server something: partoo_test.mock('GET', '/_mock/stats')
CREATE FUNCTION partoo_test.mock(method text, path text, body text DEFAULT NULL)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	cmd text;
	result text;
BEGIN
	cmd := format('curl -s -X %s %s%s', method,
				  (SELECT mock_url FROM partoo_test.config), path);
	IF body IS NOT NULL THEN
		cmd := cmd || ' -H ''Content-Type: application/json'' --data-binary '
			|| quote_literal(body);
	END IF;
	IF to_regclass('pg_temp.mock_out') IS NULL THEN
		CREATE TEMP TABLE mock_out (line text);
	END IF;
	TRUNCATE mock_out;
	EXECUTE format('COPY mock_out FROM PROGRAM %L WITH (FORMAT csv, DELIMITER %L, QUOTE %L)',
				   cmd, E'\x01', E'\x02');
	SELECT string_agg(line, E'\n') INTO result FROM mock_out;
	RETURN result;
END $$;

CREATE FUNCTION partoo_test.stats() RETURNS jsonb LANGUAGE sql
AS $$ SELECT partoo_test.mock('GET', '/_mock/stats')::jsonb $$;

CREATE FUNCTION partoo_test.reset() RETURNS void LANGUAGE sql
AS $$ SELECT partoo_test.mock('POST', '/_mock/reset') $$;

-- The last request the mock received, as jsonb
CREATE FUNCTION partoo_test.last_request() RETURNS jsonb LANGUAGE sql
AS $$ SELECT r FROM jsonb_array_elements(
		replace(partoo_test.mock('GET', '/_mock/requests'), '\u0000', '\\0')::jsonb) r
	  ORDER BY (r->>'seq')::bigint DESC LIMIT 1 $$;

-- FNV-1a 64 of bytes, as the mock reports it for uploads
CREATE FUNCTION partoo_test.fnv1a64(b bytea) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	h numeric := 14695981039346656037;
	low int;
BEGIN
	FOR i IN 0 .. length(b) - 1 LOOP
		low := (h % 256)::int;
		h := h - low + (low # get_byte(b, i));
		h := (h * 1099511628211) % 18446744073709551616;
	END LOOP;
	RETURN lpad(to_hex((h / 4294967296)::bigint), 8, '0')
		|| lpad(to_hex((h % 4294967296)::bigint), 8, '0');
END $$;

-- Run a statement, return its error as one row (NULLs when it succeeds).
-- Every error seen here is also kept, to check that none shows the key.
CREATE TABLE partoo_test.errors_seen (code text, message text, detail text, hint text);
CREATE FUNCTION partoo_test.try(stmt text,
	OUT code text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE stmt;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	INSERT INTO partoo_test.errors_seen VALUES (code, message, detail, hint);
END $$;

GRANT USAGE ON SCHEMA partoo_test TO PUBLIC;
GRANT SELECT ON partoo_test.config TO PUBLIC;
GRANT INSERT ON partoo_test.errors_seen TO PUBLIC;

SELECT partoo_test.reset();
SELECT (partoo_test.stats())->'requests' AS requests;

-- Wait (polling) until a condition holds; false after the timeout
CREATE FUNCTION partoo_test.wait_until(cond text, timeout_s float8 DEFAULT 30)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	ok boolean;
	deadline timestamptz := clock_timestamp() + timeout_s * interval '1 s';
BEGIN
	LOOP
		EXECUTE 'SELECT (' || cond || ')' INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		IF clock_timestamp() > deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_sleep(0.02);
	END LOOP;
END $$;
