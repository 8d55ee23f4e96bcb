# 080_soak.pl: chaos soak.  Messages over several accounts while the mock
# injects 5xx, 429 with Retry-After, timeouts, dropped connections and slow
# responses; the worker is SIGKILLed every few seconds and the server is
# restarted once with -m immediate; webhooks for the sent messages are
# ingested concurrently, shuffled, with duplicates.  At the end every
# message is sent or beyond, nothing is dead, every message the mock
# accepted is recorded with its partoo_id, the final statuses equal the
# in-order result, and the duplicate sends are counted and bounded.
#
# SOAK=large runs 50,000 messages; the default size keeps the suite short.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use List::Util qw(shuffle);
use POSIX ();
use Time::HiRes qw(usleep time);
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $large = ($ENV{SOAK} // '') eq 'large';
my $n = $ENV{PARTOO_SOAK_MESSAGES} // ($large ? 50000 : 6000);
my $in_flight = 64;
srand(20261123);

my $mock = start_mock('--api-key', 'test-key', '--api-key-prefix', 'key-');
my $node = partoo_node('soak', $mock,
	"partoo.max_in_flight = $in_flight",
	"partoo.max_attempts = 1000",
	"partoo.timeout = '1s'",
	"partoo.lease = '30s'",
	"restart_after_crash = on",
	"partoo.webhook_require_signature = off");
$node->safe_psql('postgres', qq{
	INSERT INTO partoo.accounts (name, api_key, base_url, requests_per_minute)
	VALUES ('a1', 'key-a1', '$mock->{url}/v2', 0), ('a2', 'key-a2', '$mock->{url}/v2', 0);
});
mock_post($mock, '/_mock/faults', '{"rate_5xx":0.1,"rate_429":0.01,"retry_after":1,'
	  . '"rate_drop":0.03,"rate_drop_after_accept":0.002,"rate_delay":0.01,"delay_ms":1500}');

# the expected final status of message i: even -> Success, odd -> Failed
sub expected_status { my ($i) = @_; return $i % 2 ? 'Failed' : 'Success'; }

sub payload
{
	my ($id, $status) = @_;
	return sprintf('{"type":"message_updated","payload":{"message":{"id":%d,"conversation_id":9,'
		  . '"date":"2026-11-23 10:00:00.000000+00:00","content_type":"Text","sender_type":"business",'
		  . '"sender_label":"Shop","status":"%s","is_deleted":false,"content":"x","user_id":null,'
		  . '"custom_channel":null},"conversation":{"id":9,"messaging_partner":"whatsapp"},"org_id":1}}',
		$id, $status);
}

# enqueue in chunks, spread over the accounts
my $chunk = 2000;
for (my $from = 1; $from <= $n; $from += $chunk)
{
	my $to = $from + $chunk - 1;
	$to = $n if $to > $n;
	$node->safe_psql('postgres', qq{
		SELECT count(partoo_enqueue(9, 'soak ' || i,
			account => (ARRAY[NULL, 'a1', 'a2'])[1 + i % 3]))
		  FROM generate_series($from, $to) i});
}
note("queued $n messages");

# webhooks: a child process ingests events for every id the mock accepted,
# shuffled, each twice, the Sending event sometimes after the final one
my $child = fork();
die "fork: $!" unless defined $child;
if ($child == 0)
{
	# NB: the server crashes under this process's feet: ignore SIGPIPE,
	# survive psql failures, and leave with _exit so that the test
	# framework's END blocks (which stop the node) run in the parent only
	$SIG{PIPE} = 'IGNORE';
	eval { ingest_loop(); };
	POSIX::_exit(0);
}

sub ingest_loop
{
	my %done;
	my $deadline = time() + ($large ? 1500 : 400);
	while (time() < $deadline)
	{
		my @batch;
		for my $r (@{ mock_accepted($mock) })
		{
			next unless $r->{kind} eq 'send' && !$done{ $r->{message_id} }++;
			my ($i) = $r->{content} =~ /^soak (\d+)$/ or next;
			push @batch, payload($r->{message_id}, 'Sending'),
			  payload($r->{message_id}, expected_status($i)),
			  payload($r->{message_id}, expected_status($i));
		}
		@batch = shuffle(@batch);
		while (my @part = splice(@batch, 0, 500))
		{
			my $arr = join(',', map { my $p = $_; $p =~ s/'/''/g; "'$p'" } @part);
			# the server may be restarting: retry until it answers
			for (1 .. 100)
			{
				my $ret = eval {
					($node->psql('postgres',
						"SELECT count(*) FROM partoo_ingest_webhooks(ARRAY[$arr]::text[])"))[0];
				} // 1;
				last if $ret == 0;
				usleep(200_000);
			}
		}
		my ($ret, $left) = eval {
			$node->psql('postgres',
				"SELECT count(*) FROM partoo.messages WHERE state IN ('queued', 'sending')");
		};
		last if ($ret // 1) == 0 && $left eq '0' && -e "$ENV{TESTDIR}/soak.stop";
		usleep(300_000);
	}
}

# chaos: SIGKILL the worker every few seconds, one immediate restart
my $crashes = 0;
for my $round (1 .. ($large ? 8 : 3))
{
	sleep(3);
	my ($ret, $pid) = $node->psql('postgres',
		"SELECT pid FROM partoo.worker_status() WHERE pid IS NOT NULL");
	next unless $ret == 0 && $pid =~ /^\d+$/;
	kill 'KILL', $pid;
	$crashes++;
	note("round $round: killed worker $pid");
	wait_for($node, "SELECT count(*) = 1 FROM partoo.worker_status() WHERE pid IS NOT NULL AND pid <> $pid", 60);
}
sleep(2);
$node->stop('immediate');
$crashes++;
$node->start;
note('server restarted after stop -m immediate');

ok(wait_for($node, "SELECT count(*) = $n FROM partoo.messages WHERE state NOT IN ('queued', 'sending')",
	$large ? 1800 : 600), 'every message left the queue');
open(my $stop, '>', "$ENV{TESTDIR}/soak.stop");
close $stop;
waitpid($child, 0);

# a last pass: every event again, in a fresh shuffle, so none is missing
{
	my @all;
	for my $r (@{ mock_accepted($mock) })
	{
		next unless $r->{kind} eq 'send';
		my ($i) = $r->{content} =~ /^soak (\d+)$/ or next;
		push @all, payload($r->{message_id}, expected_status($i)), payload($r->{message_id}, 'Sending');
	}
	@all = shuffle(@all);
	while (my @part = splice(@all, 0, 1000))
	{
		my $arr = join(',', map { my $p = $_; $p =~ s/'/''/g; "'$p'" } @part);
		$node->safe_psql('postgres', "SELECT count(*) FROM partoo_ingest_webhooks(ARRAY[$arr]::text[])");
	}
}

is($node->safe_psql('postgres',
	"SELECT count(*) FROM partoo.messages WHERE state IN ('dead', 'rejected', 'queued', 'sending', 'canceled')"),
	'0', 'nothing dead, rejected or left behind');

# every message the mock accepted is recorded, with one of its ids
my %issued;
for my $r (@{ mock_accepted($mock) })
{
	push @{ $issued{ $r->{content} } }, $r->{message_id} if $r->{kind} eq 'send';
}
my ($bad_id, $bad_status, $rows) = (0, 0, 0);
for my $line (split /\n/, $node->safe_psql('postgres',
	"SELECT content, partoo_id, partoo_status, state FROM partoo.messages"))
{
	my ($content, $pid, $status, $state) = split /\|/, $line;
	$rows++;
	$bad_id++ unless grep { $_ eq $pid } @{ $issued{$content} // [] };
	my ($i) = $content =~ /^soak (\d+)$/;
	my $want = expected_status($i);
	my $want_state = $want eq 'Success' ? 'delivered' : 'failed';
	$bad_status++ unless $status eq $want && $state eq $want_state;
}
is($rows, $n, "$n messages recorded");
is(scalar(keys %issued), $n, 'the mock accepted every message');
is($bad_id, 0, 'every recorded partoo_id was issued by the mock for that message');
is($bad_status, 0, 'every final status equals the in-order result');

my $stats = mock_stats($mock);
my $dups = $stats->{accepted} - scalar(keys %issued);
my $retried = $node->safe_psql('postgres', 'SELECT count(*) FROM partoo.messages WHERE attempts > 1');
note("duplicate sends: $dups for $n messages, $crashes crashes, $retried messages retried");
cmp_ok($dups, '<=', 2 * $crashes * $in_flight + $retried,
	'duplicates within the bound: twice the window at each crash plus outcome-unknown retries');

$node->stop;
done_testing();
