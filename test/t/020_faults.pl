# 020_faults.pl: with the mock injecting 5xx, 429 with Retry-After, dropped
# connections (before and after accepting) and delays, every message ends
# sent, every message the mock accepted is recorded with its partoo_id,
# and duplicate sends stay within what "outcome unknown" allows.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $n = $ENV{PARTOO_FAULT_MESSAGES} // 10000;
my $mock = start_mock('--api-key', 'test-key');
my $node = partoo_node('faults', $mock,
	"partoo.max_in_flight = 256",
	"partoo.max_attempts = 100",
	"partoo.timeout = '2s'");

mock_post($mock, '/_mock/faults', '{"rate_5xx":0.2,"rate_429":0.05,"retry_after":1,'
	  . '"rate_drop":0.05,"rate_drop_after_accept":0.005,"rate_delay":0.05,"delay_ms":150}');

$node->safe_psql('postgres',
	"SELECT count(partoo_enqueue(2, 'fault message ' || i)) FROM generate_series(1, $n) i");
ok(wait_for($node, "SELECT count(*) = $n FROM partoo.messages WHERE state = 'sent'", 300),
	"all $n messages sent despite faults");
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.messages WHERE state <> 'sent'"),
	'0', 'nothing dead, rejected or stuck');
is($node->safe_psql('postgres', 'SELECT count(*) FROM partoo.outbox'), '0', 'outbox is empty');

my $stats = mock_stats($mock);
my $status = $stats->{status};
cmp_ok($status->{500} // 0 + ($status->{503} // 0), '>', 0, 'the mock did inject 5xx');
cmp_ok($status->{429} // 0, '>', 0, 'the mock did inject 429');
cmp_ok($stats->{dropped} // 0, '>', 0, 'the mock did drop connections');
is($stats->{accepted_distinct_content}, $n, 'every message reached the mock');

# each message's recorded partoo_id is one the mock issued for its content
my %issued;
for my $r (@{ mock_accepted($mock) })
{
	next unless $r->{kind} eq 'send';
	push @{ $issued{ $r->{content} } }, $r->{message_id};
}
my $rows = $node->safe_psql('postgres', "SELECT content, partoo_id FROM partoo.messages");
my $bad = 0;
for my $line (split /\n/, $rows)
{
	my ($content, $pid) = split /\|/, $line;
	$bad++ unless grep { $_ eq $pid } @{ $issued{$content} // [] };
}
is($bad, 0, 'every recorded partoo_id was issued by the mock for that message');

my $dups = $stats->{accepted} - $stats->{accepted_distinct_content};
my $unknown = $node->safe_psql('postgres',
	"SELECT count(*) FROM partoo.messages WHERE attempts > 1");
note("duplicates: $dups (accepted $stats->{accepted}); messages retried: $unknown");
cmp_ok($dups, '<=', $unknown, 'duplicates only come from retried requests whose outcome was unknown');
cmp_ok($node->safe_psql('postgres', 'SELECT rate_limited FROM partoo.worker_status()'), '>', 0,
	'429s paused the account');

$node->stop;
done_testing();
