# 350_window.pl: the worker sizes its in-flight window by itself.
#
# With rate-limited accounts over an API that answers in 200 ms (the
# mock's delayed conversation ids), the window is what the limits need at
# the latency observed (sum of rates x latency x 1.5 + 8), more than the old
# fixed 64, and the worker does use more than 64 slots at once; no 429,
# each message accepted once.  partoo.max_in_flight caps it (after a
# reload).  An account without limit takes the whole cap.  And the window
# never asks for more sockets than the process can open: under a low
# open-file limit it is bounded (and logged), the worker still sends
# everything without running out of descriptors; with room under the hard
# limit, the worker raises its soft limit and keeps the whole cap.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $accounts = 100;
my $rpm = 300;
my $delayed = 5000200;			# the mock answers this conversation after 200 ms
my $mock = start_mock('--api-key', 'test-key', '--api-key-prefix', 'key-', '--threads', '4');
mock_post($mock, '/_mock/ratelimit', qq({"per_minute":$rpm}));
my $node = partoo_node('window', $mock, "partoo.requests_per_minute = $rpm");

# sample worker_status() every 50 ms until $done_sql holds; returns the
# largest in_flight seen, the last window_size and latency_ms, whether
# $done_sql came true, and how far in_flight exceeded the window_size
# published with it, at most, once 2 s had passed since requests were
# first in flight (the window is sized from the first answers' latency,
# and when it shrinks the requests already started stay in flight: a
# tenth of the window is allowed for that)
my $watch = sub {
	my ($done_sql, $timeout) = @_;
	my ($max, $window, $latency, $over, $first) = (0, 0, 0, 0, undef);
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		my $row = $node->safe_psql('postgres',
			"SELECT in_flight || ' ' || window_size || ' ' || coalesce(latency_ms, 0) || ' ' || ($done_sql)
			   FROM partoo.worker_status() WHERE pid IS NOT NULL");
		my ($in, $w, $l, $done) = split ' ', $row;
		next unless defined $done;
		$max = $in if $in > $max;
		$first //= time() if $in > 0;
		$over = $in - $w
		  if defined $first && time() - $first >= 2 && $in - $w > $over;
		($window, $latency) = ($w, $l);
		return ($max, $window, $latency, 1, $over) if $done eq 'true';
		usleep(50_000);
	}
	return ($max, $window, $latency, 0, $over);
};

# 1. rate-limited accounts at a distance
my $per = 30;
my $n = $accounts * $per;
$node->safe_psql('postgres', qq{
	INSERT INTO partoo.accounts (name, api_key, base_url, requests_per_minute)
	SELECT 'acct-' || a, 'key-' || a, '$mock->{url}/v2', $rpm FROM generate_series(1, $accounts) a;
});
sleep(1);
$node->safe_psql('postgres', qq{
	SELECT count(partoo_enqueue($delayed, 'w-' || a || '-' || r, account => 'acct-' || a))
	  FROM generate_series(1, $per) r, generate_series(1, $accounts) a;
});
my ($max, $window, $latency, $done, $over) =
	$watch->("(SELECT count(*) FROM partoo.messages WHERE content LIKE 'w-%' AND state = 'sent') = $n", 120);
ok($done, "all $n messages of $accounts rate-limited accounts sent");
note("largest in_flight $max, window_size $window, latency_ms $latency");
cmp_ok($latency, '>=', 190, 'the latency observed is the API\'s (200 ms)');
my $need = $accounts * $rpm / 60 * $latency / 1000;
cmp_ok($window, '>=', $need, "the window ($window) covers rate x latency ($need)");
# (the window was sized at a latency observed a moment before: 5 % leeway)
cmp_ok($window, '<=', int($need * 1.05 * 1.5) + 8 + 1, 'and asks for no more than its margin');
cmp_ok($max, '>', 64, "more than the old fixed 64 requests in flight at once ($max)");
cmp_ok($over, '<=', int($window / 10) + 1, "never more in flight than the window (most over it: $over)");
my $stats = mock_stats($mock);
is($stats->{rate_limited} // 0, 0, 'no 429 from the mock enforcing the same limits');
is($stats->{accepted_distinct_content}, $n, 'each message accepted');
is($stats->{accepted}, $n, 'once');

# 2. partoo.max_in_flight is a cap
$node->append_conf('postgresql.conf', "partoo.max_in_flight = 30\n");
$node->reload;
ok(wait_for($node, "SELECT window_size = 30 FROM partoo.worker_status() WHERE pid IS NOT NULL", 10),
	'partoo.max_in_flight = 30 caps the window after a reload');
mock_post($mock, '/_mock/reset', '{}');
mock_post($mock, '/_mock/ratelimit', qq({"per_minute":$rpm}));
$node->safe_psql('postgres', qq{
	SELECT count(partoo_enqueue($delayed, 'c-' || a || '-' || r, account => 'acct-' || a))
	  FROM generate_series(1, 5) r, generate_series(1, $accounts) a;
});
($max, $window) =
	$watch->("(SELECT count(*) FROM partoo.messages WHERE content LIKE 'c-%' AND state = 'sent') = " . ($accounts * 5), 60);
cmp_ok($max, '<=', 30, "at most 30 in flight under the cap ($max)");
cmp_ok($max, '>=', 25, 'and the cap is used');

# 3. an account without limit, 200 ms away, takes the whole cap (it
# counts as 10,000/s: 3,008 slots)
$node->append_conf('postgresql.conf', "partoo.max_in_flight = 400\n");
$node->safe_psql('postgres', "UPDATE partoo.accounts SET requests_per_minute = 0 WHERE name = 'acct-1'");
$node->reload;
ok(wait_for($node, "SELECT window_size = 400 FROM partoo.worker_status() WHERE pid IS NOT NULL", 10),
	'an account without limit: the window is the cap');

# 4. the open-file limit bounds the window; restart under a low limit
my $restart = sub {
	my ($soft, $hard) = @_;
	$node->stop;
	my $pgdata = $node->data_dir;
	my $log = $node->logfile;
	system('bash', '-c', "ulimit -Sn $soft && ulimit -Hn $hard && pg_ctl -D '$pgdata' -l '$log' -w start >/dev/null")
	  == 0 or die "could not start the node under ulimit -n $soft";
	$node->_update_pid(1);
};
$node->append_conf('postgresql.conf', "partoo.max_in_flight = 1000\npartoo.requests_per_minute = 0\n");
my $log_at = -s $node->logfile;
$restart->(1100, 1100);
ok(wait_for($node, "SELECT window_size > 0 FROM partoo.worker_status() WHERE pid IS NOT NULL", 20),
	'the worker runs under ulimit -n 1100');
my $log = substr(slurp_file($node->logfile), $log_at);
my ($room) = $log =~ /partoo worker can have at most (\d+) requests in flight, fewer than partoo.max_in_flight \(1000\)/;
ok(defined $room && $room < 1000, 'the log says the sockets left bound the window below the cap of 1000 (' . ($room // 'no line') . ')');
like($log, qr/DETAIL:  The open-file limit is 1100 \(hard limit 1100\)/, 'with the limits');
$window = $room // 0;
# every request of a full window at once: 2,000 messages, 500 ms each, unlimited
mock_post($mock, '/_mock/reset', '{}');
mock_post($mock, '/_mock/ratelimit', '{"per_minute":0}');
$node->safe_psql('postgres',
	"SELECT count(partoo_enqueue(5000500, 'f-' || i)) FROM generate_series(1, 2000) i");
($max) = $watch->("(SELECT count(*) FROM partoo.messages WHERE content LIKE 'f-%' AND state = 'sent') = 2000", 120);
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.messages WHERE content LIKE 'f-%' AND state = 'sent'"),
	'2000', 'a full window of slow requests sends everything');
is($node->safe_psql('postgres', "SELECT window_size FROM partoo.worker_status() WHERE pid IS NOT NULL"),
	$window, 'the window is the room the log gave (500 ms answers would ask for more)');
cmp_ok($max, '>', $window / 2, "with the window used ($max in flight)");
cmp_ok($max, '<=', $window, 'never beyond it');
$log = substr(slurp_file($node->logfile), $log_at);
unlike($log, qr/Too many open files|could not (create|open|accept)/i, 'no descriptor ran out');
is(mock_stats($mock)->{accepted}, 2000, 'each accepted once');

# room under the hard limit: the worker raises its soft limit, keeps the cap
$log_at = -s $node->logfile;
$restart->(1100, 8000);
$node->safe_psql('postgres',
	"SELECT count(partoo_enqueue(5000500, 'g-' || i)) FROM generate_series(1, 100) i");
ok(wait_for($node, "SELECT window_size = 1000 FROM partoo.worker_status() WHERE pid IS NOT NULL", 30),
	'with a hard limit of 8000 the worker raises its soft limit and keeps the whole cap');
$log = substr(slurp_file($node->logfile), $log_at);
unlike($log, qr/can have at most/, 'and logs nothing about it');

$node->stop;
done_testing();
