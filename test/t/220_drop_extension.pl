# 220_drop_extension.pl: the extension's life in a running server.
#
# - The worker of a database without the extension stays quiet and starts
#   sending at CREATE EXTENSION.
# - DROP EXTENSION while messages are queued and in flight: the worker
#   goes quiet (no error loop), never records a request that was in flight
#   into the tables of a re-created extension, and serves the re-created
#   extension without a server restart.
# - Without shared_preload_libraries, CREATE EXTENSION and partoo_send work
#   (and partoo_enqueue queues), and nothing ends the session.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $mock = start_mock('--api-key', 'test-key');
my $node = PostgreSQL::Test::Cluster->new('drop');
$node->init;
$node->append_conf('postgresql.conf', partoo_conf($mock, "partoo.database = 'app'"));
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');

# the lines the worker wrote to the log since offset $from, and partoo's
# ERRORs and WARNINGs from any process
sub partoo_log_since
{
	my ($from) = @_;
	my $pid = $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'partoo worker'");
	my $log = slurp_file($node->logfile, $from);
	return grep { ($pid ne '' && /\[$pid\]/) || (/partoo/i && /\b(ERROR|WARNING)\b/) } split /\n/, $log;
}

sub wait_app
{
	my ($sql, $timeout) = @_;
	for (1 .. 10 * ($timeout // 30))
	{
		my ($ret, $out) = $node->psql('app', $sql);
		return 1 if $ret == 0 && $out eq 't';
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

# no extension yet: quiet
my $offset = -s $node->logfile;
sleep(3);
is(scalar(partoo_log_since($offset)), 0, 'without the extension the worker is quiet');
$node->safe_psql('app', 'CREATE EXTENSION partoo');
$node->safe_psql('app', "SELECT partoo_enqueue(1, 'first')");
ok(wait_app("SELECT state = 'sent' FROM partoo.messages WHERE content = 'first'", 30),
	'it sends once the extension is created');

# drop it with messages in flight (the mock holds each request 3 s) and
# queued (scheduled), then create it again at once
mock_post($mock, '/_mock/faults', '{"rate_delay": 1, "delay_ms": 3000}');
$node->safe_psql('app', q{
	SELECT count(partoo_enqueue(2, 'in flight ' || i)) FROM generate_series(1, 5) i;
	SELECT count(partoo_enqueue(3, 'scheduled ' || i, send_at => now() + interval '2 s')) FROM generate_series(1, 5) i;
});
ok(wait_app("SELECT count(*) = 5 FROM partoo.messages WHERE state = 'sending'", 30), '5 requests in flight');
$offset = -s $node->logfile;
$node->safe_psql('app', 'DROP EXTENSION partoo');
$node->safe_psql('app', 'CREATE EXTENSION partoo');
mock_post($mock, '/_mock/faults', '{}');
$node->safe_psql('app', q{SELECT count(partoo_enqueue(4, 'new ' || i, send_at => now() + interval '4 s'))
	FROM generate_series(1, 10) i});

# the answers to the old requests arrive; nothing of theirs is recorded
sleep(6);
is($node->safe_psql('app', q{SELECT count(*) FROM partoo.messages WHERE partoo_id IS NOT NULL
	AND content NOT LIKE 'new %'}), '0',
	'no outcome of a request made for the dropped extension is recorded in the new one');
ok(wait_app("SELECT count(*) = 10 FROM partoo.messages WHERE content LIKE 'new %' AND state = 'sent'", 30),
	'the re-created extension is served without a restart');
my %partoo_ids;
my $recorded = $node->safe_psql('app', 'SELECT string_agg(partoo_id::text, \',\') FROM partoo.messages');
my %accepted = map { $_->{message_id} => $_->{content} } @{ mock_accepted($mock) };
is(scalar(grep { ($accepted{$_} // '') !~ /^new / } split /,/, $recorded), 0,
	'each Partoo id recorded is that of a message of the new extension');
my @noise = partoo_log_since($offset);
cmp_ok(scalar(@noise), '<=', 2, 'a line or two in the log for the drop, no error loop')
  or diag(join("\n", @noise[0 .. ($#noise < 5 ? $#noise : 5)]));

# dropped for good: the worker goes quiet again
$offset = -s $node->logfile;
$node->safe_psql('app', q{SELECT count(partoo_enqueue(5, 'never ' || i, send_at => now() + interval '1 s'))
	FROM generate_series(1, 5) i});
$node->safe_psql('app', 'DROP EXTENSION partoo');
sleep(4);
@noise = partoo_log_since($offset);
cmp_ok(scalar(@noise), '<=', 2, 'after DROP EXTENSION the worker is quiet (a line or two)')
  or diag(join("\n", @noise[0 .. ($#noise < 5 ? $#noise : 5)]));
is($node->safe_psql('app', "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'partoo worker'"),
	'1', 'and still there, waiting for CREATE EXTENSION');
is(scalar(grep { $_->{content} =~ /^never / } @{ mock_accepted($mock) }), 0,
	'nothing queued in the dropped extension was sent');
$node->stop;

# not preloaded: no worker, but the functions work and nothing is FATAL
my $plain = PostgreSQL::Test::Cluster->new('not_preloaded');
$plain->init;
$plain->append_conf('postgresql.conf', "partoo.base_url = '$mock->{url}/v2'\npartoo.api_key = 'test-key'\n");
$plain->start;
my ($ret, $out, $err) = $plain->psql('postgres', "CREATE EXTENSION partoo; SELECT partoo_send(7, 'not preloaded') > 0");
is($out, 't', 'without preloading, CREATE EXTENSION and partoo_send work') or diag($err);
unlike($err, qr/FATAL|server closed/, 'and nothing ends the session');
is($plain->safe_psql('postgres', "SELECT partoo_enqueue(8, 'queued, not preloaded') > 0"), 't',
	'partoo_enqueue queues');
$plain->stop;
done_testing();
