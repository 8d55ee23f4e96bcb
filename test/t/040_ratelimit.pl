# 040_ratelimit.pl: an account limited to N requests per minute never
# exceeds N in any sliding minute and gets no 429 from a mock enforcing the
# same limit, while a second account (on a mock of its own, without a
# limit) drains independently; a rate-limited account's scheduled messages
# are sent when they come due.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $limit = 120;
my $mock = start_mock('--api-key', 'test-key', '--api-key-prefix', 'key-');
my $other = start_mock('--api-key-prefix', 'key-', '--first-id', '5000001');
my $node = partoo_node('ratelimit', $mock);
mock_post($mock, '/_mock/ratelimit', qq({"per_minute":$limit}));

$node->safe_psql('postgres', qq{
	INSERT INTO partoo.accounts (name, api_key, base_url, requests_per_minute)
	VALUES ('slow', 'key-slow', '$mock->{url}/v2', $limit),
	       ('fast', 'key-fast', '$other->{url}/v2', 6000);
	SELECT count(partoo_enqueue(4, 'slow ' || i, account => 'slow')) FROM generate_series(1, 400) i;
	SELECT count(partoo_enqueue(5, 'fast ' || i, account => 'fast')) FROM generate_series(1, 300) i;
});

ok(wait_for($node, "SELECT count(*) = 300 FROM partoo.messages WHERE account = 'fast' AND state = 'sent'", 30),
	'the fast account drained while the slow one is throttled');
my $slow_done = $node->safe_psql('postgres',
	"SELECT count(*) FROM partoo.messages WHERE account = 'slow' AND state = 'sent'");
cmp_ok($slow_done, '<=', $limit, "slow account sent $slow_done so far, within its limit");

# observe the slow account for more than a minute
sleep(65);
my @times = sort { $a <=> $b }
  map { $_->{time_us} } grep { $_->{key} eq 'key-slow' } @{ mock_accepted($mock) };
my ($max, $j) = (0, 0);
for my $i (0 .. $#times)
{
	$j++ while $times[$i] - $times[$j] >= 60_000_000;
	$max = $i - $j + 1 if $i - $j + 1 > $max;
}
note(scalar(@times) . " requests of the slow account; busiest 60 s window: $max");
cmp_ok(scalar(@times), '>', $limit, 'the slow account kept sending past its first minute');
cmp_ok($max, '<=', $limit, "never more than $limit requests in any sliding minute");

# busiest 1-second window: at most the rate per second plus the burst
my ($max1, $k) = (0, 0);
for my $i (0 .. $#times)
{
	$k++ while $times[$i] - $times[$k] >= 1_000_000;
	$max1 = $i - $k + 1 if $i - $k + 1 > $max1;
}
cmp_ok($max1, '<=', 2 * int($limit / 60) + 1, "busiest second: $max1 requests");

my $stats = mock_stats($mock);
is($stats->{rate_limited} // 0, 0, 'no 429 from the mock enforcing the same limit');

# A scheduled message of a rate-limited account is sent when it comes due,
# with nothing else waking the worker (it used to sleep until woken when
# its last claim of such an account found nothing due).
$node->stop;
my $idle = partoo_node('scheduled', $other);
$idle->safe_psql('postgres', q{
	INSERT INTO partoo.accounts (name, api_key, requests_per_minute) VALUES ('later', 'key-later', 300)});
$idle->safe_psql('postgres',
	"SELECT partoo_enqueue(6, 'scheduled ' || i, account => 'later', send_at => now() + interval '3 s')
	   FROM generate_series(1, 3) i");
ok(wait_for($idle, "SELECT count(*) = 3 FROM partoo.messages WHERE account = 'later' AND state = 'sent'", 20),
	'scheduled messages of a rate-limited account are sent when due');
$idle->stop;
done_testing();
