# 210_failover.pl: streaming replication.  On a hot standby the worker
# does nothing (no process, no query, no ERROR or WARNING); when the
# primary dies (immediate stop) in the middle of a drain of 3,000 messages
# and the standby is promoted, its worker starts by itself and sends what
# the old primary had committed and not sent: every message reaches the
# API at least once, and the duplicates stay within what was in flight.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $n = 3000;
my $window = 32;
my $mock = start_mock('--api-key', 'test-key');
my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', partoo_conf($mock, "partoo.max_in_flight = $window"));
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION partoo');
$primary->safe_psql('postgres', "SELECT partoo_enqueue(1, 'before the standby')");
ok(wait_for($primary, "SELECT state = 'sent' FROM partoo.messages WHERE id = 1", 30), 'the primary sends');

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

# the standby: no worker, no query of partoo's, nothing in its log
is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't', 'the standby is in recovery');
is($standby->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'partoo worker'"),
	'0', 'no partoo worker runs on the standby');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM partoo.worker_status() WHERE pid IS NOT NULL'),
	'0', 'worker_status() on the standby shows no worker');

# a drain the primary will not finish: each request takes 50 ms
mock_post($mock, '/_mock/faults', '{"rate_delay": 1, "delay_ms": 50}');
$primary->safe_psql('postgres',
	"SELECT count(partoo_enqueue(2, 'failover ' || i)) FROM generate_series(1, $n) i");
$primary->wait_for_catchup($standby);
my $t0 = time();
while (mock_stats($mock)->{accepted} < 1 + $n / 3 && time() - $t0 < 60)
{
	select(undef, undef, undef, 0.05);
}
my $before_crash = mock_stats($mock)->{accepted} - 1;
cmp_ok($before_crash, '>', 0, "the primary sent $before_crash of $n");
$primary->stop('immediate');
my $at_crash = mock_stats($mock)->{accepted} - 1;
cmp_ok($at_crash, '<', $n, "and died in the middle of the drain ($at_crash sent)");

my $standby_log = slurp_file($standby->logfile);
my @noise = grep { /partoo/i && /\b(ERROR|WARNING|FATAL)\b/ } split /\n/, $standby_log;
is(scalar(@noise), 0, 'no partoo ERROR or WARNING in the standby\'s log while it was a standby')
  or diag(join("\n", @noise[0 .. ($#noise < 5 ? $#noise : 5)]));
unlike($standby_log, qr/partoo worker started/, 'no partoo worker started on the standby');

mock_post($mock, '/_mock/faults', '{}');
$standby->promote;
ok(wait_for($standby, "SELECT count(*) = $n FROM partoo.messages WHERE content LIKE 'failover %' AND state = 'sent'", 120),
	'after promotion the new primary\'s worker sends the rest');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM partoo.outbox'), '0', 'its outbox is empty');

my %seen;
$seen{ $_->{content} }++ for grep { $_->{content} =~ /^failover / } @{ mock_accepted($mock) };
is(scalar(keys %seen), $n, "each of the $n messages reached the API");
my $dups = 0;
$dups += $_ - 1 for values %seen;
note("$dups duplicates for one failover with max_in_flight = $window");
cmp_ok($dups, '<=', 2 * $window,
	"duplicates ($dups) within what was in flight or claimed (at most 2 x max_in_flight)");

$standby->stop;
done_testing();
