# 090_upgrade.pl: install 0.1, fill it, ALTER EXTENSION partoo UPDATE to
# 0.2: the data is intact, the new objects exist and the worker runs.
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

$node->safe_psql('postgres', 'ALTER EXTENSION partoo UPDATE');
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

# a fresh install of the default version is the same as the upgraded one
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION partoo');
my $objects = q{SELECT string_agg(pg_describe_object(classid, objid, objsubid), ',' ORDER BY 1)
  FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'partoo')};
is($node->safe_psql('fresh', $objects), $node->safe_psql('postgres', $objects),
	'a fresh install has the same objects as the upgraded one');

$node->stop;
done_testing();
