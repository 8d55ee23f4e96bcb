# 320_status_loop.pl: the status loop closed end to end, with no glue: a
# real cluster whose worker sends to the mock Partoo server, the mock
# posting signed message_updated webhooks (duplicated, reordered, some
# Failed) to partoo-webhookd, and the daemon ingesting them as a role that
# may only EXECUTE the two ingest functions.
#
#  - group F (5 messages) is accepted while the mock fails every message,
#    group A (100) at a 10 % failure rate; all converge;
#  - the daemon is stopped (SIGTERM) while group B (100) is sent: the mock
#    gets no answer and retries with backoff; nothing of B's status arrives
#    meanwhile; the daemon started again on the same port: B converges;
#  - the cluster is stopped while group C's (100) webhooks are due: the
#    daemon answers 503 (the mock retries), /healthz goes 503, then 200
#    once the cluster is back and the daemon has reconnected by itself;
#  - every failed message is retried with partoo.retry_later();
#  - at the end every message's state and status are the ones the mock's
#    GET /v2/messages reports, partoo.events holds the Sending and the final
#    event of every attempt (no event lost), and the counters agree: the
#    mock's 2xx and 5xx are the daemon's 200 and 503 answers, its
#    duplicated deliveries show up as "duplicate" outcomes, nothing given up.
#
# PARTOO_WEBHOOKD=/path/to/partoo-webhookd runs another build of the
# daemon (to check that this test fails against a broken one).
use strict;
use warnings;
use POSIX ();
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $repo = $ENV{PARTOO_REPO};
my $dir = PostgreSQL::Test::Utils::tempdir();

my $bindir = `pg_config --bindir`;
chomp $bindir;
my $daemon = $ENV{PARTOO_WEBHOOKD}
  // (-x "$bindir/partoo-webhookd" ? "$bindir/partoo-webhookd" : "$repo/src/webhookd/partoo-webhookd");
ok(-x $daemon, "partoo-webhookd is built ($daemon)");

my $http = HTTP::Tiny->new(timeout => 30, keep_alive => 0);

#
# The mock: 8 webhook senders (so that the daemon gets concurrent bodies
# to batch), short backoff so that retries come quickly, and a long
# per-attempt timeout so that no answer is ever cut off by it (every
# attempt then ends in exactly one 2xx, 5xx or error).
#
my $mock = start_mock('--api-key', 'test-key', '--webhook-threads', '8');
my $pub = decode_json(mock_get($mock, '/_mock/webhooks'))->{public_key};
like($pub, qr/^MCowBQYDK2VwAyEA/, 'the mock has an Ed25519 signing key');

my %behaviour = (
	delay_ms => 300,
	rate_failed => 0.1,
	rate_drop => 0,
	rate_duplicate => 0.2,
	rate_reorder => 0.2,
	backoff_ms => 50,
	max_retries => 10,
	timeout_ms => 15000);

# mock_webhooks(key => value...): the webhook behaviour, with overrides
# (the mock takes omitted keys as their defaults, so every key is sent)
sub mock_webhooks
{
	my (%over) = @_;
	my $r = decode_json(mock_post($mock, '/_mock/webhooks',
		encode_json({ %behaviour, %over })));
	die "mock refused the webhook settings" unless exists $r->{url};
	return $r;
}

my $node = partoo_node('loop', $mock,
	"partoo.webhook_public_key = '$pub'",
	"partoo.max_in_flight = 16");
$node->safe_psql('postgres', q{
	CREATE ROLE webhooks LOGIN;
	GRANT EXECUTE ON FUNCTION partoo_ingest_webhook(text, text),
		partoo_ingest_webhooks(text[], text[]) TO webhooks;
});

#
# The daemon: start_daemon(PORT) starts it (PORT 0: any free port) and
# returns its pid and port once it listens.
#
my $incarnation = 0;
my $log;

sub start_daemon
{
	my ($want) = @_;
	$incarnation++;
	$log = "$dir/webhookd.$incarnation.log";
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDERR, '>', $log) or die;
		open(STDOUT, '>', '/dev/null');
		exec($daemon, '--listen', "127.0.0.1:$want",
			'--dbname', $node->connstr('postgres') . ' user=webhooks')
		  or die "exec: $!";
	}
	my $port;
	for (1 .. 400)
	{
		($port) = slurp_file($log) =~ /listening on http:\/\/127\.0\.0\.1:(\d+)/ if -e $log;
		last if $port || waitpid($pid, POSIX::WNOHANG) == $pid;
		usleep(25_000);
	}
	BAIL_OUT("partoo-webhookd did not start: " . (-e $log ? slurp_file($log) : ''))
	  unless $port;
	return ($pid, $port);
}

my ($pid, $port) = start_daemon(0);
END { kill 'KILL', $pid if $pid && kill 0, $pid; }
my $base = "http://127.0.0.1:$port";
like(slurp_file($log), qr/connected to database "postgres" as "webhooks"/,
	'the daemon connected as the role webhooks');
mock_webhooks(url => "$base/partoo");

# metrics(): the daemon's counters we look at, as a hash
sub metrics
{
	my $r = $http->get("$base/metrics");
	die "GET /metrics: $r->{status}" unless $r->{status} == 200;
	my %m;
	for (split /\n/, $r->{content})
	{
		next if /^#/;
		$m{"req_$1_$2"} = $3 if /^partoo_webhookd_requests_total\{route="(\w+)",code="(\d+)"\} (\d+)$/;
		$m{"out_$1"} = $2 if /^partoo_webhookd_outcomes_total\{outcome="(\w+)"\} (\d+)$/;
		$m{db_errors} = $1 if /^partoo_webhookd_db_errors_total (\d+)$/;
		$m{batches} = $1 if /^partoo_webhookd_batch_size_count (\d+)$/;
		$m{bodies} = $1 if /^partoo_webhookd_batch_size_sum (\d+)$/;
	}
	return \%m;
}

sub healthz { return $http->get("$base/healthz")->{status}; }

# poll(SUB, TIMEOUT_S): until SUB returns true; false on timeout
sub poll
{
	my ($cond, $timeout) = @_;
	my $deadline = time() + ($timeout // 60);
	while (time() < $deadline)
	{
		return 1 if $cond->();
		usleep(50_000);
	}
	return 0;
}

# enqueue(CONVERSATION, COUNT): COUNT messages in one transaction
sub enqueue
{
	my ($conv, $n) = @_;
	$node->safe_psql('postgres',
		"SELECT count(partoo_enqueue($conv, 'loop $conv/' || g)) FROM generate_series(1, $n) g");
}

# recorded(CONVERSATION, COUNT): the worker has recorded COUNT sends (the
# mock accepted them, and so decided their webhooks)
sub recorded
{
	my ($conv, $n) = @_;
	return poll(sub {
		$node->safe_psql('postgres',
			"SELECT count(*) FROM partoo.messages WHERE conversation_id = $conv AND partoo_id IS NOT NULL"
			  . " AND state <> 'queued' AND state <> 'sending'") == $n;
	});
}

# settled(): the outbox is empty and the mock has no webhook left to
# deliver (each one answered 2xx, or given up)
sub settled
{
	return poll(sub {
		$node->safe_psql('postgres', 'SELECT count(*) FROM partoo.outbox') == 0
		  && mock_stats($mock)->{webhooks_pending} == 0;
	}, 90);
}

# converged(LABEL): every message's state and Partoo status are the ones
# the mock's GET /v2/messages reports; diag for each one that is not
sub converged
{
	my ($label) = @_;
	my %db;
	for (split /\n/, $node->safe_psql('postgres',
		"SELECT partoo_id, state, coalesce(partoo_status, '-') FROM partoo.messages"))
	{
		my ($id, $state, $status) = split /\|/;
		$db{$id} = "$state $status";
	}
	my %truth;
	for my $conv (3100 .. 3103)
	{
		my $cursor = '';
		do
		{
			my $r = $http->get("$mock->{url}/v2/messages?conversation_id=$conv&per_page=100$cursor",
				{ headers => { 'x-apikey' => 'test-key' } });
			die "GET /v2/messages: $r->{status}" unless $r->{status} == 200;
			my $page = decode_json($r->{content});
			$truth{ $_->{id} } = $_->{status} for @{ $page->{messages} };
			$cursor = defined $page->{next_cursor} ? "&cursor=$page->{next_cursor}" : '';
		} while ($cursor ne '');
	}
	my %state_of = (Success => 'delivered', Failed => 'failed', Sending => 'sent');
	my $bad = 0;
	for my $id (sort keys %truth)
	{
		my $want = "$state_of{$truth{$id}} $truth{$id}";
		my $got = $db{$id} // 'missing';
		next if $got eq $want;
		diag("$label: message $id is \"$got\", Partoo says \"$want\"") if $bad++ < 10;
	}
	is($bad, 0, "$label: every message is in the state Partoo reports");
	is(scalar(keys %db), scalar(keys %truth), "$label: the database has every message Partoo accepted");
	return \%truth;
}

#
# 1. Group F, all Failed; group A at 10 %
#
mock_webhooks(url => "$base/partoo", rate_failed => 1);
enqueue(3100, 5);
ok(recorded(3100, 5), 'group F (5) sent while the mock fails every message');
mock_webhooks(url => "$base/partoo");
enqueue(3101, 100);
ok(recorded(3101, 100), 'group A (100) sent');
ok(settled(), 'groups F and A: every webhook delivered');
converged('F and A');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM partoo.messages WHERE conversation_id = 3100 AND state = 'failed'"),
	'5', 'group F failed, as the mock said');

#
# 2. The daemon stopped while group B is sent, then started again
#
my $m1 = metrics();
my $s1 = mock_stats($mock);
kill 'TERM', $pid;
waitpid($pid, 0);
is($?, 0, 'daemon stopped (SIGTERM): exit 0');
$pid = 0;
enqueue(3102, 100);
ok(recorded(3102, 100), 'group B (100) sent while the daemon is down');
ok(poll(sub { mock_stats($mock)->{webhooks_errors} > $s1->{webhooks_errors} + 20 }, 30),
	'the mock gets no answer');
usleep(1_000_000);
is($node->safe_psql('postgres',
	"SELECT count(*) FROM partoo.events e JOIN partoo.messages m USING (partoo_id) WHERE m.conversation_id = 3102"),
	'0', 'no webhook of group B arrived while the daemon was down');
($pid, $port) = start_daemon($port);
is(healthz(), 200, 'the daemon started again on the same port');
ok(settled(), 'group B: every webhook delivered after the restart');
converged('B');

#
# 3. The cluster restarted while the daemon runs and group C's webhooks
#    are due
#
mock_webhooks(url => "$base/partoo", delay_ms => 1500);
enqueue(3103, 100);
ok(recorded(3103, 100), 'group C (100) sent');
my $s2 = mock_stats($mock);
$node->stop('fast');
my $t_down = time();
is(healthz(), 503, 'cluster stopped: /healthz 503');
ok(poll(sub { mock_stats($mock)->{webhooks_5xx} > $s2->{webhooks_5xx} }, 30),
	'cluster stopped: the daemon answers the mock 503');
usleep(500_000) while time() < $t_down + 1.5;
$node->start;
ok(poll(sub { healthz() == 200 }, 30), 'cluster started: /healthz 200 again');
like(slurp_file($log), qr/connected to database "postgres" as "webhooks" again/,
	'the daemon reconnected by itself');
mock_webhooks(url => "$base/partoo");
ok(settled(), 'group C: every webhook delivered');
converged('C');

#
# 4. The failed messages retried
#
my $failed = $node->safe_psql('postgres',
	"SELECT count(partoo.retry_later(id)) FROM partoo.messages WHERE state = 'failed'");
cmp_ok($failed, '>=', 5, "$failed failed messages retried with partoo.retry_later()");
ok(settled(), 'the retries: every webhook delivered');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM partoo.messages WHERE retry_requested_at IS NOT NULL"),
	$failed, 'the retries are recorded');

#
# 5. The end: states, events, counters
#
my $truth = converged('the end');
is(scalar(keys %$truth), 305, 'the mock accepted 305 messages');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM partoo.messages m
	 WHERE NOT EXISTS (SELECT 1 FROM partoo.events e
						WHERE e.partoo_id = m.partoo_id AND e.status = 'Sending')
		OR NOT EXISTS (SELECT 1 FROM partoo.events e
						WHERE e.partoo_id = m.partoo_id AND e.status = m.partoo_status
						  AND e.outcome = 'applied')}),
	'0', 'no event lost: every message has its Sending event and its final one, applied');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM partoo.messages m
	 WHERE m.retry_requested_at IS NOT NULL
	   AND (SELECT count(*) FROM partoo.events e
			 WHERE e.partoo_id = m.partoo_id AND e.status IN ('Success', 'Failed')) < 2}),
	'0', 'every retried message has the final events of both attempts');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.events WHERE outcome = 'pending'"),
	'0', 'no event left pending');

my $s = mock_stats($mock);
my $m2 = metrics();
note('mock: ' . join(', ', map { "$_=$s->{$_}" } grep { /^webhooks_/ } sort keys %$s));
note("daemon, first run: " . join(', ', map { "$_=$m1->{$_}" } sort keys %$m1));
note("daemon, second run: " . join(', ', map { "$_=$m2->{$_}" } sort keys %$m2));
is($s->{webhooks_given_up}, 0, 'mock: no webhook given up');
is($s->{webhooks_4xx} + $s->{webhooks_other}, 0, 'mock: no 4xx or other answer');
is($s->{webhooks_pending}, 0, 'mock: nothing left to deliver');
cmp_ok($s->{webhooks_errors}, '>', 0, 'mock: deliveries without an answer (the daemon was down)');
cmp_ok($s->{webhooks_5xx}, '>', 0, 'mock: 5xx answers (the cluster was down)');
cmp_ok($s->{webhooks_retries}, '>=', $s->{webhooks_errors} + $s->{webhooks_5xx},
	'mock: each of them retried');
cmp_ok($s->{webhooks_duplicated}, '>', 0, 'mock: some deliveries duplicated');
cmp_ok($s->{webhooks_reordered}, '>', 0, 'mock: some Sending events reordered after their final one');

my $sum = sub { my ($k) = @_; return ($m1->{$k} // 0) + ($m2->{$k} // 0); };
is($sum->('req_partoo_200'), $s->{webhooks_2xx},
	'every 2xx the mock got is a 200 the daemon counted, and no more');
is($sum->('req_partoo_503'), $s->{webhooks_5xx}, 'the same for 503');
is($sum->('out_applied') + $sum->('out_duplicate') + $sum->('out_stale')
	  + $sum->('out_pending') + $sum->('out_ignored'),
	$sum->('req_partoo_200'), 'one outcome per 200 answer');
cmp_ok($sum->('out_duplicate'), '>=', $s->{webhooks_duplicated},
	'every duplicated delivery was answered "duplicate"');
cmp_ok($sum->('out_stale'), '>', 0, 'reordered Sending events were answered "stale"');
is($sum->('out_applied') + $sum->('out_stale') + $sum->('out_pending'),
	$node->safe_psql('postgres', 'SELECT count(*) FROM partoo.events'),
	'every outcome but "duplicate" stored one event');
cmp_ok($m2->{db_errors}, '>', 0, 'daemon: the lost database connection counted');
cmp_ok($m2->{req_healthz_503} // 0, '>', 0, 'daemon: /healthz 503 counted');
cmp_ok($sum->('bodies'), '>', $sum->('batches'), 'daemon: bodies were batched');

kill 'TERM', $pid;
waitpid($pid, 0);
is($?, 0, 'daemon stopped: exit 0');
$pid = 0;
$node->stop;
done_testing();
