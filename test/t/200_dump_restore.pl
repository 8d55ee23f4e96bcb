# 200_dump_restore.pl: pg_dump (plain and custom format) of a database
# using partoo, restored into new clusters: every partoo table keeps its
# rows and states, the queue is sent once by the new cluster's worker,
# nothing sent before the dump is sent again, rows leased at dump time are
# sent after their lease, and new messages get fresh ids.
#
# With PARTOO_DUMP_OUT=FILE the plain dump is also written to FILE (and the
# figures the checks need to FILE.json), and with PARTOO_DUMP_IN=FILE such
# a dump, made by another major, is restored and checked too: .ci/run
# restores the dump of the run on PostgreSQL 15 into 17 that way.
use strict;
use warnings;
use Cwd ();
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $tmp = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir());
my $key = 'acme-key';

# the fingerprint of a database's partoo rows: what must survive
my %fingerprint = (
	accounts => q{SELECT count(*) || ':' || md5(string_agg(name || api_key || requests_per_minute, ',' ORDER BY name)) FROM partoo.accounts},
	messages => q{SELECT count(*) || ':' || md5(string_agg(id || state || coalesce(partoo_id::text, '-')
		|| coalesce(partoo_status, '-') || coalesce(content, '') || coalesce(send_at::text, '-'), ',' ORDER BY id)) FROM partoo.messages},
	outbox => q{SELECT count(*) || ':' || md5(string_agg(id || '/' || message_id || action || run_at::text
		|| coalesce(leased_at::text, '-'), ',' ORDER BY id)) FROM partoo.outbox},
	events => q{SELECT count(*) || ':' || md5(string_agg(id || dedup_key || outcome || coalesce(message_id::text, '-'), ',' ORDER BY id)) FROM partoo.events},
	message_parts => q{SELECT count(*) FROM partoo.message_parts},
);

my ($dump_plain, $dump_custom, $before) = make_dump();
# Restore into a new cluster whose worker sends to a new mock: the queue
# is sent there, once, and nothing else is.
sub check_restore
{
	my ($how, $before, $restore) = @_;
	my $mock = start_mock('--api-key', $key, '--first-id', '7000001');
	(my $name = "restored_$how") =~ s/\W/_/g;
	my $node = partoo_node($name, $mock, "partoo.database = 'restored'");
	$node->safe_psql('postgres', 'CREATE DATABASE restored');
	$restore->($node);

	for my $t (sort keys %fingerprint)
	{
		is($node->safe_psql('restored', $fingerprint{$t}), $before->{$t},
			"$how: partoo.$t has the same rows");
	}
	is($node->safe_psql('restored', q{SELECT string_agg(state, ',' ORDER BY state) FROM
		(SELECT state || '=' || count(*) AS state FROM partoo.messages GROUP BY state) s}),
		$before->{states}, "$how: the same states");

	# the scheduled messages come due, the leased ones after their lease
	ok(wait_for_db($node, 'restored', "SELECT count(*) = 0 FROM partoo.outbox", 120)
		  || diag($node->safe_psql('restored', 'SELECT * FROM partoo.worker_status()'),
			"\n", $node->safe_psql('restored', 'SELECT * FROM partoo.outbox ORDER BY id LIMIT 5'),
			"\n", $node->safe_psql('restored', 'SELECT now(), * FROM partoo.accounts')),
		"$how: the restored queue drains");
	my %seen;
	$seen{ $_->{content} }++ for @{ mock_accepted($mock) };
	my @sent_before = grep { $seen{$_} } @{ $before->{sent_contents} };
	is(scalar(@sent_before), 0, "$how: nothing sent before the dump is sent again");
	my @queued = @{ $before->{queued_contents} };
	is(scalar(grep { ($seen{$_} // 0) == 1 } @queued), scalar(@queued),
		"$how: each of the " . scalar(@queued) . " queued messages is sent once");
	my @leased = @{ $before->{leased_contents} };
	is(scalar(grep { ($seen{$_} // 0) >= 1 } @leased), scalar(@leased),
		"$how: each of the " . scalar(@leased) . " messages in flight at dump time is sent");
	is($node->safe_psql('restored', q{SELECT count(*) FROM partoo.messages
		WHERE state = 'sent' AND partoo_id >= 7000001}), scalar(@queued) + scalar(@leased),
		"$how: and recorded with the new API's ids");

	# a new message: a fresh id, sent with the restored account's key
	my $id = $node->safe_psql('restored', "SELECT partoo_enqueue(77, 'after the restore', account => 'acme')");
	cmp_ok($id, '>', $before->{max_id}, "$how: a message queued after the restore gets a fresh id");
	ok(wait_for_db($node, 'restored', "SELECT state = 'sent' FROM partoo.messages WHERE id = $id", 30),
		"$how: and is sent with the restored account");
	$node->stop;
}

sub wait_for_db
{
	my ($node, $db, $sql, $timeout) = @_;
	for (1 .. $timeout * 10)
	{
		my ($ret, $out) = $node->psql($db, $sql);
		return 1 if $ret == 0 && $out eq 't';
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

sub restore_plain
{
	my ($file) = @_;
	return sub {
		my ($node) = @_;
		$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored'),
			'-f', $file ], 'psql restores the plain dump');
	};
}
check_restore('plain', $before, restore_plain($dump_plain));
check_restore('custom', $before, sub {
	my ($node) = @_;
	$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump_custom ],
		'pg_restore restores the custom dump');
});

# a dump made by another major
if (my $in = $ENV{PARTOO_DUMP_IN})
{
	open(my $fh, '<', "$in.json") or die "$in.json: $!";
	my $other = decode_json(do { local $/; <$fh> });
	close $fh;
	check_restore("from $other->{major}", $other, restore_plain($in));
}
done_testing();

# A database with 1 account, 59 messages (5 sent, one of them delivered;
# 1 rejected; 50 scheduled; 3 in flight, their outbox rows leased) and 53
# outbox rows, dumped in both formats while the 3 requests are in flight.
sub make_dump
{
	my $mock = start_mock('--api-key', $key);
	my $node = partoo_node('source', $mock, "partoo.timeout = '60s'", "partoo.lease = '5s'");
	$node->safe_psql('postgres', qq{
		INSERT INTO partoo.accounts (name, api_key) VALUES ('acme', '$key');
		SELECT count(partoo_enqueue(10, 'sent ' || i, account => 'acme')) FROM generate_series(1, 5) i;
		SELECT partoo_enqueue(400, 'rejected', account => 'acme');
	});
	ok(wait_for($node, "SELECT count(*) = 5 FROM partoo.messages WHERE state = 'sent'", 30)
		  && wait_for($node, "SELECT count(*) = 1 FROM partoo.messages WHERE state = 'rejected'", 30),
		'source: 5 sent, 1 rejected');
	my $pid = $node->safe_psql('postgres', "SELECT partoo_id FROM partoo.messages WHERE content = 'sent 1'");
	is($node->safe_psql('postgres', qq{SET partoo.webhook_require_signature = off;
		SELECT partoo_ingest_webhook('{"type": "message_updated", "payload": {"message": {"id": $pid,
		  "conversation_id": 10, "date": "2026-01-01T00:00:00Z", "content_type": "Text",
		  "sender_type": "User", "status": "Success", "is_deleted": false, "content": "sent 1"},
		  "conversation": {"id": 10, "messaging_partner": "Whatsapp"}, "org_id": 1}}')}),
		'applied', 'source: one delivered');
	$node->safe_psql('postgres', q{
		SELECT count(partoo_enqueue(11, 'scheduled ' || i, account => 'acme',
		                            send_at => now() + interval '20 s')) FROM generate_series(1, 50) i;
	});
	# this mock holds every request from now on for 60 s
	mock_post($mock, '/_mock/faults', '{"rate_delay": 1, "delay_ms": 60000}');
	$node->safe_psql('postgres',
		"SELECT count(partoo_enqueue(12, 'in flight ' || i, account => 'acme')) FROM generate_series(1, 3) i");
	ok(wait_for($node, "SELECT count(*) = 3 FROM partoo.outbox WHERE leased_at IS NOT NULL", 30),
		'source: 3 requests in flight, their rows leased');

	my %b;
	$b{$_} = $node->safe_psql('postgres', $fingerprint{$_}) for keys %fingerprint;
	$b{states} = $node->safe_psql('postgres', q{SELECT string_agg(state, ',' ORDER BY state) FROM
		(SELECT state || '=' || count(*) AS state FROM partoo.messages GROUP BY state) s});
	is($b{states}, 'delivered=1,queued=50,rejected=1,sending=3,sent=4', 'source: the states before the dump');
	my $list = sub { [ split /\n/, $node->safe_psql('postgres', shift) ] };
	$b{sent_contents} = $list->("SELECT content FROM partoo.messages WHERE content LIKE 'sent %' ORDER BY id");
	$b{queued_contents} = $list->("SELECT content FROM partoo.messages WHERE content LIKE 'scheduled %' ORDER BY id");
	$b{leased_contents} = $list->("SELECT content FROM partoo.messages WHERE content LIKE 'in flight %' ORDER BY id");
	$b{max_id} = $node->safe_psql('postgres', 'SELECT max(id) FROM partoo.messages');
	$b{major} = 'PostgreSQL ' . $node->safe_psql('postgres', "SELECT current_setting('server_version_num')::int / 10000");

	my $plain = "$tmp/dump.sql";
	my $custom = "$tmp/dump.custom";
	$node->command_ok([ 'pg_dump', '-f', $plain, '-d', $node->connstr('postgres') ], 'pg_dump, plain');
	$node->command_ok([ 'pg_dump', '-Fc', '-f', $custom, '-d', $node->connstr('postgres') ], 'pg_dump -Fc');
	is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.outbox WHERE leased_at IS NOT NULL"), '3',
		'source: still in flight after the dumps');
	$node->stop('immediate');

	if (my $out = $ENV{PARTOO_DUMP_OUT})
	{
		system('cp', $plain, $out) == 0 or die "cp: $!";
		open(my $fh, '>', "$out.json") or die "$out.json: $!";
		print $fh encode_json(\%b);
		close $fh;
	}
	return ($plain, $custom, \%b);
}
