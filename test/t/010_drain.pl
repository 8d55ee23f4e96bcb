# 010_drain.pl: 10,000 messages committed in one transaction are each
# delivered exactly once against a healthy mock; a rolled-back batch sends
# nothing.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $mock = start_mock('--api-key', 'test-key');
# the cap at 64: the window on loopback is 64 unless the machine is so
# busy that even the quickest answers take milliseconds (it is sized at
# 10,000/s x the latency's floor), and the connections are checked
# against the cap
my $node = partoo_node('drain', $mock, 'partoo.max_in_flight = 64');

ok(wait_for($node, "SELECT count(*) = 1 FROM partoo.worker_status() WHERE pid IS NOT NULL", 30),
	'worker is running');

$node->safe_psql('postgres', q{
	BEGIN;
	SELECT count(partoo_enqueue(1, 'rolled back ' || i)) FROM generate_series(1, 1000) i;
	ROLLBACK;
});

$node->safe_psql('postgres', q{
	SELECT count(partoo_enqueue(1 + i % 7, 'drain message ' || i)) FROM generate_series(1, 10000) i;
});
ok(wait_for($node, "SELECT count(*) = 10000 FROM partoo.messages WHERE state = 'sent'", 120),
	'all 10,000 messages sent');

my $stats = mock_stats($mock);
is($stats->{accepted}, 10000, 'the mock accepted 10,000 messages');
is($stats->{accepted_distinct_content}, 10000, 'each exactly once');
is($node->safe_psql('postgres', 'SELECT count(*) FROM partoo.outbox'), '0', 'outbox is empty');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM partoo.messages WHERE content LIKE 'rolled back%'"), '0',
	'the rolled-back batch left nothing');

# every partoo_id recorded is one the mock issued for that content
my %issued = map { $_->{content} => $_->{message_id} } grep { $_->{kind} eq 'send' } @{ mock_accepted($mock) };
my $rows = $node->safe_psql('postgres', "SELECT content, partoo_id FROM partoo.messages");
my $mismatch = 0;
for my $line (split /\n/, $rows)
{
	my ($content, $pid) = split /\|/, $line;
	$mismatch++ unless defined $issued{$content} && $issued{$content} eq $pid;
}
is($mismatch, 0, 'every recorded partoo_id matches what the mock issued');

my $conns = $stats->{connections};
cmp_ok($conns, '<=', 64 + 8, "connections are reused, at most the window's 64 (and a few) ($conns for 10,000 requests)");

$node->stop;
done_testing();
