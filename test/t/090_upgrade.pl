# 090_upgrade.pl: install 0.1, fill it, ALTER EXTENSION partoo UPDATE to
# 0.2, to 0.3 and then to the current version: the data is intact, the new
# objects exist and the worker runs; a fresh install of 0.3 is the same as
# the database upgraded to 0.3, and a fresh install of the current version
# the same as the one upgraded to it.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $mock = start_mock('--api-key', 'test-key', '--api-key-prefix', 'key-');
my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'partoo'
partoo.base_url = '$mock->{url}/v2'
partoo.api_key = 'test-key'
partoo.database = 'postgres'
partoo.requests_per_minute = 0
partoo.retry_base = '20ms'
partoo.retry_max = '100ms'
});
$node->start;

$node->safe_psql('postgres', "CREATE EXTENSION partoo VERSION '0.1'");
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'partoo'"),
	'0.1', 'installed 0.1');
$node->safe_psql('postgres', qq{
	INSERT INTO partoo.accounts (name, api_key, base_url) VALUES ('acct', 'key-acct', '$mock->{url}/v2');
	SELECT partoo_send(1, 'sent before the upgrade');
	SELECT count(partoo_enqueue(2, 'queued before ' || i, account => 'acct')) FROM generate_series(1, 100) i;
	SELECT partoo_enqueue(3, 'scheduled', send_at => now() + interval '1 hour');
	SELECT partoo_enqueue(400, 'rejected before the upgrade');
});
ok(wait_for($node, "SELECT count(*) = 101 FROM partoo.messages WHERE state = 'sent'", 30), 'sent before upgrading');
ok(wait_for($node, "SELECT count(*) = 1 FROM partoo.messages WHERE state = 'rejected'", 30), 'rejected before upgrading');
my $before = $node->safe_psql('postgres',
	"SELECT md5(string_agg(id || state || coalesce(partoo_id::text, '') || content, ',' ORDER BY id)) FROM partoo.messages");

$node->safe_psql('postgres', "ALTER EXTENSION partoo UPDATE TO '0.2'");
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'partoo'"),
	'0.2', 'updated to 0.2');
is($node->safe_psql('postgres',
	"SELECT md5(string_agg(id || state || coalesce(partoo_id::text, '') || content, ',' ORDER BY id)) FROM partoo.messages"),
	$before, 'messages intact');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.accounts"), '1', 'accounts intact');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.outbox"), '1', 'the scheduled row is still queued');
is($node->safe_psql('postgres', "SELECT state FROM partoo.problems"), 'rejected', 'the new view works');

$node->safe_psql('postgres', "SELECT partoo_enqueue(4, 'after the upgrade', account => 'acct')");
ok(wait_for($node, "SELECT state = 'sent' FROM partoo.messages WHERE content = 'after the upgrade'", 30),
	'the worker keeps running and sending');

# 0.2 applies pending webhook events without the 0.1 triggers
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'partoo.messages'::regclass AND NOT tgisinternal"),
	'0', 'the 0.1 triggers on partoo.messages are gone');
my $event = sub {
	my ($id) = @_;
	return qq{'{"type": "message_updated", "payload": {"message": {"id": $id, "conversation_id": 5,
	  "date": "2026-01-01T00:00:00Z", "content_type": "Text", "sender_type": "User",
	  "status": "Success", "is_deleted": false, "content": "x"}, "conversation": {"id": 5,
	  "messaging_partner": "Whatsapp"}, "org_id": 1}}'};
};
for my $how ('partoo_send', 'worker')
{
	my $next = mock_stats($mock)->{last_message_id} + 1;
	is($node->safe_psql('postgres', "SET partoo.webhook_require_signature = off;
		SELECT partoo_ingest_webhook(" . $event->($next) . ")"), 'pending',
		"a webhook before the $how response is kept pending");
	if ($how eq 'partoo_send')
	{
		$node->safe_psql('postgres', "SELECT partoo_send(5, 'webhook came first')");
	}
	else
	{
		$node->safe_psql('postgres', "SELECT partoo_enqueue(5, 'webhook came first, worker')");
	}
	ok(wait_for($node, "SELECT state = 'delivered' AND partoo_status = 'Success'
		FROM partoo.messages WHERE partoo_id = $next", 30),
		"and applied when the $how records the message");
	is($node->safe_psql('postgres', "SELECT outcome FROM partoo.events WHERE partoo_id = $next"),
		'applied', "the $how event is applied");
}

# 0.3: pg_dump keeps the rows of every table that holds state
$node->safe_psql('postgres', "ALTER EXTENSION partoo UPDATE TO '0.3'");
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'partoo'"),
	'0.3', 'updated to 0.3');
my $intact = q{SELECT md5(string_agg(id || state || coalesce(partoo_id::text, '') || content, ',' ORDER BY id)) FROM partoo.messages
	  WHERE content NOT LIKE 'webhook came first%' AND content <> 'after the upgrade'};
is($node->safe_psql('postgres', $intact), $before, 'messages intact after the second update');
my $dumped = q{SELECT string_agg(c::regclass::text, ',' ORDER BY c::regclass::text)
  FROM pg_extension, unnest(extconfig) c WHERE extname = 'partoo'};
my $dumped_03 = 'partoo.accounts,partoo.events,partoo.events_id_seq,partoo.message_parts,partoo.messages,'
  . 'partoo.messages_id_seq,partoo.outbox,partoo.outbox_id_seq';
is($node->safe_psql('postgres', $dumped), $dumped_03,
	'every table and sequence that holds state is dumped by pg_dump');

# A fresh install (of VERSION, or of the default version when undef) into
# database DB is the same as the upgraded database postgres.
my $objects = q{SELECT string_agg(pg_describe_object(classid, objid, objsubid), ','
                  ORDER BY pg_describe_object(classid, objid, objsubid))
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'partoo')};
# and every detail of them (pg_dump leaves extension members out, so ask
# the catalogs): columns in order, constraints, indexes, triggers, function
# bodies and properties, views, comments, privileges, storage options
my $shape = q{
SELECT string_agg(line, E'\n' ORDER BY line) FROM (
  SELECT 'column ' || c.relname || ' ' || a.attnum || ' ' || a.attname || ' '
         || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' ' || a.attidentity::text
         || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') || ' ' || coalesce(a.attcollation::regcollation::text, '') AS line
    FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
   WHERE c.relnamespace = 'partoo'::regnamespace
  UNION ALL
  SELECT 'relation ' || relname || ' ' || relkind::text || ' ' || coalesce(relacl::text, '') || ' '
         || coalesce(reloptions::text, '') || ' ' || coalesce(obj_description(oid, 'pg_class'), '')
    FROM pg_class WHERE relnamespace = 'partoo'::regnamespace
  UNION ALL
  SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = 'partoo'::regnamespace
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index
   WHERE indrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'partoo'::regnamespace)
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger
   WHERE NOT tgisinternal AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'partoo'::regnamespace)
  UNION ALL
  SELECT 'view ' || oid::regclass || ' ' || pg_get_viewdef(oid) FROM pg_class
   WHERE relnamespace = 'partoo'::regnamespace AND relkind = 'v'
  UNION ALL
  SELECT 'function ' || pg_get_functiondef(p.oid) || ' ' || coalesce(p.proacl::text, '') || ' '
         || coalesce(obj_description(p.oid, 'pg_proc'), '')
    FROM pg_proc p JOIN pg_depend dep ON dep.objid = p.oid AND dep.classid = 'pg_proc'::regclass
   WHERE dep.refclassid = 'pg_extension'::regclass AND dep.deptype = 'e'
     AND dep.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'partoo')
  UNION ALL
  SELECT 'schema ' || coalesce(nspacl::text, '') || ' ' || coalesce(obj_description(oid, 'pg_namespace'), '')
    FROM pg_namespace WHERE nspname = 'partoo'
) s};
my $same_as_fresh = sub {
	my ($db, $version) = @_;
	my $what = $version // 'the default version';
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION partoo' . (defined $version ? " VERSION '$version'" : ''));
	is($node->safe_psql($db, $objects), $node->safe_psql('postgres', $objects),
		"a fresh install of $what has the same objects as the upgraded one");
	is($node->safe_psql($db, $dumped), $node->safe_psql('postgres', $dumped),
		'and the same tables dumped');
	is($node->safe_psql('postgres', $shape), $node->safe_psql($db, $shape),
		'and every column, constraint, index, trigger, function, view, comment and grant');
};
# the whole install script of 0.3 stays as released
$same_as_fresh->('fresh03', '0.3');
# and so does 0.4's
$node->safe_psql('postgres', "ALTER EXTENSION partoo UPDATE TO '0.4'");
$same_as_fresh->('fresh04', '0.4');

# then up to the default version, through every later upgrade script
$node->safe_psql('postgres', 'ALTER EXTENSION partoo UPDATE');
my $default = $node->safe_psql('postgres', "SELECT default_version FROM pg_available_extensions WHERE name = 'partoo'");
is($node->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'partoo'"),
	$default, "updated to the default version, $default");
is($node->safe_psql('postgres', $intact), $before, 'messages intact after the update to the default version');
is($node->safe_psql('postgres', $dumped), $dumped_03 . ',partoo.reconcile',
	'every table and sequence that holds state is dumped by pg_dump, partoo.reconcile too (0.4)');
$same_as_fresh->('fresh', undef);

# 0.4, reconciliation: the messages left sent are checked from the update on
is($node->safe_psql('postgres', q{SELECT count(*) FROM partoo.messages m
	WHERE m.state = 'sent' AND m.partoo_id IS NOT NULL
	  AND NOT EXISTS (SELECT 1 FROM partoo.reconcile r WHERE r.message_id = m.id)}),
	'0', 'every message left sent has a reconcile row after the update');
is($node->safe_psql('postgres', "SELECT count(*) > 100 FROM partoo.reconcile"), 't',
	'(the 101 messages sent before the updates among them)');
like($node->safe_psql('postgres', "SELECT pg_get_function_arguments('partoo.worker_status'::regproc)"),
	qr/reconcile_requests bigint, OUT reconcile_applied bigint, OUT reconcile_rate_limited bigint/,
	'partoo.worker_status() has the reconciliation counters');
# 0.5: the window the worker sized for itself, and the latency it observed
like($node->safe_psql('postgres', "SELECT pg_get_function_arguments('partoo.worker_status'::regproc)"),
	qr/OUT window_size integer, OUT latency_ms double precision/,
	'partoo.worker_status() has the window and the latency (0.5)');
ok(wait_for($node, "SELECT window_size > 0 AND latency_ms > 0 FROM partoo.worker_status() WHERE pid IS NOT NULL", 30),
	'and shows them for the running worker');

# 0.3, the worker's robustness (issue 12), on the upgraded database with its rows
is($node->safe_psql('postgres', "SELECT pg_get_function_result('partoo.worker_status'::regproc) LIKE '%loops%'"),
	'f', 'partoo.worker_status() has no loops column any more');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.worker_status() WHERE pid IS NOT NULL"),
	'1', 'and it shows the worker');
my ($ret, $out, $err) = $node->psql('postgres',
	"INSERT INTO partoo.accounts (name, api_key) VALUES (repeat('n', 64), 'key-secret-upgraded')");
like($err, qr/account name is too long/, 'an account name too long is refused with a clear error');
unlike($err, qr/key-secret/, 'that does not show the key');
# a message Partoo accepted whose recording fails keeps its id in the outbox
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.refuse_sent() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.content = 'recorded later' AND NEW.state = 'sent' THEN
			RAISE EXCEPTION 'not now';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER refuse_sent BEFORE UPDATE ON partoo.messages
		FOR EACH ROW EXECUTE FUNCTION public.refuse_sent();
	SELECT partoo_enqueue(6, 'recorded later', account => 'acct');
});
ok(wait_for($node, "SELECT o.action = 'record' AND o.partoo_id IS NOT NULL FROM partoo.outbox o
	JOIN partoo.messages m ON m.id = o.message_id WHERE m.content = 'recorded later'", 30),
	'an accepted message whose recording fails becomes a record action in the outbox');
$node->safe_psql('postgres', 'DROP TRIGGER refuse_sent ON partoo.messages');
ok(wait_for($node, "SELECT state = 'sent' AND partoo_id IS NOT NULL FROM partoo.messages WHERE content = 'recorded later'", 30),
	'and is recorded sent once it can be');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.outbox o JOIN partoo.messages m ON m.id = o.message_id
	WHERE m.content = 'recorded later'"), '0', 'and leaves the outbox');

$node->stop;
done_testing();
