# 030_crash.pl: SIGKILL of the worker several times during a drain, and an
# immediate server restart, lose nothing; duplicates stay within what was
# in flight at each crash.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $n = 6000;
my $in_flight = 32;
my $mock = start_mock('--api-key', 'test-key');
# the test framework turns restart_after_crash off; a crash must restart here
my $node = partoo_node('crash', $mock, "partoo.max_in_flight = $in_flight",
	"restart_after_crash = on");
ok(wait_for($node, "SELECT count(*) = 1 FROM partoo.worker_status() WHERE pid IS NOT NULL", 30),
	'worker is running');

# slow every request down so that the drain lasts a few seconds
mock_post($mock, '/_mock/faults', '{"rate_delay":1.0,"delay_ms":40}');
$node->safe_psql('postgres',
	"SELECT count(partoo_enqueue(3, 'crash message ' || i)) FROM generate_series(1, $n) i");

my $crashes = 0;
for my $round (1 .. 3)
{
	usleep(700_000);
	my $pid = worker_pid($node);
	ok($pid =~ /^\d+$/, "round $round: worker pid $pid");
	kill 'KILL', $pid;
	$crashes++;
	ok(wait_for($node, "SELECT count(*) = 1 FROM partoo.worker_status() WHERE pid IS NOT NULL AND pid <> $pid", 60),
		"round $round: worker is back after SIGKILL");
}
usleep(700_000);
$node->stop('immediate');
$crashes++;
$node->start;
note('server restarted after stop -m immediate');

ok(wait_for($node, "SELECT count(*) = $n FROM partoo.messages WHERE state = 'sent'", 180),
	"all $n messages sent after $crashes crashes");
is($node->safe_psql('postgres', 'SELECT count(*) FROM partoo.outbox'), '0', 'outbox is empty');

my $stats = mock_stats($mock);
is($stats->{accepted_distinct_content}, $n, 'every message reached the mock');
my $dups = $stats->{accepted} - $stats->{accepted_distinct_content};
note("duplicate sends: $dups after $crashes crashes with at most $in_flight in flight");
cmp_ok($dups, '<=', 2 * $crashes * $in_flight,
	'duplicates bounded by what was in flight or answered but not recorded at the crashes (twice the window each)');

my %issued;
for my $r (@{ mock_accepted($mock) })
{
	push @{ $issued{ $r->{content} } }, $r->{message_id} if $r->{kind} eq 'send';
}
my $bad = 0;
for my $line (split /\n/, $node->safe_psql('postgres', 'SELECT content, partoo_id FROM partoo.messages'))
{
	my ($content, $pid) = split /\|/, $line;
	$bad++ unless grep { $_ eq $pid } @{ $issued{$content} // [] };
}
is($bad, 0, 'every recorded partoo_id was issued by the mock for that message');

$node->stop;
done_testing();
