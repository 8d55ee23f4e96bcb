--
-- 03_send: partoo_send for every content type, checked at the mock.
--
\pset null '(null)'
SELECT partoo_test.reset();
TRUNCATE partoo.messages;

-- Text
SELECT partoo_send(12, 'Hello "world"' || E'\n' || 'ünïcödé ✓') > 1000000 AS sent;
SELECT r->'status' AS status, r->'content_type' AS content_type,
       (r->>'body')::jsonb - 'date' AS body,
       (r->>'body')::jsonb->>'date' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$' AS iso_date
  FROM partoo_test.last_request() r \gset
SELECT :'status' AS status, :'content_type' AS content_type, :'body' AS body, :'iso_date' AS iso_date;

-- Image by URL: "url" at the top level
SELECT partoo_send(12, content_type => 'Image', url => 'https://cdn.example.com/a.png') > 0 AS sent;
SELECT (r->>'body')::jsonb - 'date' AS body FROM partoo_test.last_request() r;

-- Video, Audio, Document: "content": {"url": ...}
SELECT partoo_send(12, content_type => 'Video', url => 'https://cdn.example.com/a.mp4', channel => 'Whatsapp') > 0 AS sent;
SELECT (r->>'body')::jsonb - 'date' AS body FROM partoo_test.last_request() r;
SELECT partoo_send(12, content_type => 'Audio', url => 'https://cdn.example.com/a.aac', channel => 'Instagram') > 0 AS sent;
SELECT (r->>'body')::jsonb - 'date' AS body FROM partoo_test.last_request() r;
SELECT partoo_send(12, content_type => 'Document', url => 'https://cdn.example.com/a.pdf', channel => 'Facebook') > 0 AS sent;
SELECT (r->>'body')::jsonb - 'date' AS body FROM partoo_test.last_request() r;

-- Image upload: multipart/form-data with a file part "image"; the exact
-- bytes (NUL, CR LF, a would-be boundary) arrive intact
CREATE TEMP TABLE upload AS
SELECT decode('89504e470d0a1a0a', 'hex') || '\x000d0a2d2d2d0d0a'::bytea
       || convert_to('--partoo-boundary', 'UTF8') || decode(repeat('ff00', 5000), 'hex') AS img;
SELECT partoo_send(12, content_type => 'Image', image => img, filename => 'logo.png',
                   metadata => '{"order": 7}') > 0 AS sent FROM upload;
SELECT r->>'content_type' LIKE 'multipart/form-data; boundary=%' AS multipart
  FROM partoo_test.last_request() r;
SELECT split_part(line, E'\t', 1) AS kind, split_part(line, E'\t', 4) AS content_type,
       split_part(line, E'\t', 8)::int = length(img) AS same_length,
       split_part(line, E'\t', 9) = partoo_test.fnv1a64(img) AS same_bytes
  FROM regexp_split_to_table(partoo_test.mock('GET', '/_mock/accepted'), E'\n') line, upload
 WHERE split_part(line, E'\t', 8) <> '';

-- what partoo.messages holds
SELECT conversation_id, content_type, left(content, 5) AS content, url, filename,
       channel, state, partoo_status, attempts, last_http_status,
       partoo_id > 1000000 AS has_partoo_id, metadata, image IS NOT NULL AS has_image,
       created_by = current_user AS by_me
  FROM partoo.messages ORDER BY id;

-- the message_id returned is the one the mock assigned and the one stored
SELECT partoo_send(13, 'check id') AS pid \gset
SELECT partoo_id = :pid AS same_id FROM partoo.messages WHERE conversation_id = 13;

-- keep-alive: many calls in one session use one TCP connection
SELECT partoo_test.reset();
SELECT count(partoo_send(14, 'keep-alive ' || i)) FROM generate_series(1, 50) i;
SELECT (s->>'accepted')::int AS accepted, (s->>'connections')::int AS connections
  FROM partoo_test.stats() s;

-- a named account with its own key and base URL
INSERT INTO partoo.accounts (name, api_key, base_url, requests_per_minute)
SELECT 'other', 'other-key', mock_url || '/v2', 60 FROM partoo_test.config;
SELECT partoo_send(15, 'from other', account => 'other') > 0 AS sent;
SELECT account, state FROM partoo.messages WHERE conversation_id = 15;

-- a rolled-back transaction keeps no record, but the message was sent
SELECT partoo_test.reset();
BEGIN;
SELECT partoo_send(16, 'rolled back') > 0 AS sent;
ROLLBACK;
SELECT count(*) AS recorded FROM partoo.messages WHERE conversation_id = 16;
SELECT (partoo_test.stats())->'accepted' AS accepted;
