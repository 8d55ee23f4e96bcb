--
-- 02_validation: every bad message is refused before anything is sent
-- or stored, with SQLSTATE, message, detail and hint.
--
\pset null '(null)'
SELECT partoo_test.reset();

SELECT * FROM partoo_test.try($$ SELECT partoo_send(NULL, 'hi') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(0, 'hi') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(-5, 'hi') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, 'hi', content_type => NULL) $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, 'hi', content_type => 'Sticker') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, 'hi', channel => 'Telegram') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, 'hi', account => '') $$);
-- Text
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1) $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, '') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, repeat('x', 65537)) $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, 'hi', url => 'https://e.com/a.png') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, 'hi', image => '\x89504e47'::bytea) $$);
-- media
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, content_type => 'Image') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, content_type => 'Image', url => 'https://e.com/a.png', image => '\x89504e47'::bytea) $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, content_type => 'Video', image => '\x0000'::bytea) $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, 'caption', content_type => 'Video', url => 'https://e.com/a.mp4') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, content_type => 'Audio', url => 'ftp://e.com/a.aac') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, content_type => 'Audio', url => 'https://e.com/a b.aac') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, content_type => 'Document', url => 'https://e.com/' || repeat('a', 3000) || '.pdf') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, content_type => 'Image', image => ''::bytea) $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, content_type => 'Image', image => decode('89504e470d0a1a0a', 'hex') || convert_to(repeat('x', 5 * 1024 * 1024), 'UTF8')) $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, content_type => 'Image', image => decode('89504e470d0a1a0a', 'hex'), filename => 'a/b.png') $$);
-- the channel x content type matrix
SELECT c.channel, t.content_type,
       (partoo_test.try(format('SELECT partoo_send(404, %L, content_type => %L, url => %L, channel => %L)',
			CASE WHEN t.content_type = 'Text' THEN 'hi' END, t.content_type,
			CASE t.content_type WHEN 'Text' THEN NULL WHEN 'Image' THEN 'https://e.com/a.png'
				WHEN 'Video' THEN 'https://e.com/a.mp4' WHEN 'Audio' THEN 'https://e.com/a.aac'
				ELSE 'https://e.com/a.pdf' END,
			c.channel))).message AS outcome
  FROM (VALUES ('Facebook'), ('Instagram'), ('SMS'), ('Whatsapp'), ('Google')) c(channel),
       (VALUES ('Text'), ('Image'), ('Video'), ('Audio'), ('Document')) t(content_type)
 ORDER BY 1, 2;
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, content_type => 'Document', url => 'https://e.com/a.pdf', channel => 'Instagram') $$);
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, content_type => 'Image', url => 'https://e.com/a.png', channel => 'SMS') $$);

-- names are matched case-insensitively (stored in the API's spelling)
SELECT * FROM partoo_test.try($$ SELECT partoo_send(0, 'hi', content_type => 'text', channel => 'whatsapp') $$);

-- an unknown account
SELECT * FROM partoo_test.try($$ SELECT partoo_send(1, 'hi', account => 'nobody') $$);

-- nothing reached the mock except the matrix's 404 probes, nothing was stored
SELECT (partoo_test.stats())->'status' AS statuses;
SELECT count(*) AS messages FROM partoo.messages;

-- a file type outside the recommended list is a warning, and the message goes
SELECT partoo_send(42, content_type => 'Image', url => 'https://e.com/cat.gif') > 0 AS sent;
SELECT partoo_send(42, content_type => 'Document', url => 'https://e.com/report?id=3') > 0 AS sent;
SELECT partoo_send(42, content_type => 'Image', image => '\x474946383961'::bytea) > 0 AS sent;
SELECT content_type, url, filename, state FROM partoo.messages ORDER BY id;
