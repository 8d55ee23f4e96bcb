# 100_other_sessions.pl: nothing another session holds open stalls the
# worker, and no stall of the worker's own turns an answered request into a
# timeout (and so a duplicate send).
#
#  - a transaction that ingested a webhook for a Partoo id not recorded yet
#    (the event is pending) stays open 30 s while 300 messages are queued:
#    all are sent and recorded within 10 s; after its commit the mock has
#    received each exactly once and the pending event is applied;
#  - SELECT ... FOR UPDATE on a queued message, and an idle-in-transaction
#    administrator who updated messages in flight: the others flow, the
#    locked ones are sent and recorded once after the commit;
#  - a recording transaction made slow (a trigger sleeps 3 s) while
#    requests are in flight with partoo.timeout = 1s: no request that got
#    its answer is counted as a timeout, nothing is sent twice;
#  - SIGTERM while another session holds a table lock the worker needs:
#    the worker ends within partoo.shutdown_timeout.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $mock = start_mock('--api-key', 'test-key');
my $node = partoo_node('others', $mock,
	"partoo.webhook_require_signature = off",
	"partoo.shutdown_timeout = '2s'",
	"partoo.max_in_flight = 32");
ok(wait_for($node, "SELECT count(*) = 1 FROM partoo.worker_status() WHERE pid IS NOT NULL", 30),
	'worker is running');

# How many times the mock accepted each content starting with $prefix
sub accepted_counts
{
	my ($prefix) = @_;
	my %n;
	for my $r (@{ mock_accepted($mock) })
	{
		next unless $r->{kind} eq 'send' && index($r->{content}, $prefix) == 0;
		$n{ $r->{content} }++;
	}
	return \%n;
}

sub event
{
	my ($id, $status) = @_;
	return qq{'{"type": "message_updated", "payload": {"message": {"id": $id, "conversation_id": 11,
	  "date": "2026-01-01T00:00:00Z", "content_type": "Text", "sender_type": "User",
	  "status": "$status", "is_deleted": false, "content": "x"}, "conversation": {"id": 11,
	  "messaging_partner": "Whatsapp"}, "org_id": 1}}'};
}

#
# 1. A pending webhook held open for 30 s
#
my $next = mock_stats($mock)->{last_message_id} + 1;
my $held = $node->background_psql('postgres');
my $t_begin = time();
$held->query_safe('BEGIN');
is($held->query_safe('SELECT partoo_ingest_webhook(' . event($next, 'Success') . ')'),
	'pending', "a webhook for Partoo id $next, not recorded yet, is pending in an open transaction");

my $t0 = time();
$node->safe_psql('postgres',
	"SELECT count(partoo_enqueue(11, 'held ' || i)) FROM generate_series(1, 300) i");
ok(wait_for($node, "SELECT count(*) = 300 FROM partoo.messages WHERE content LIKE 'held %' AND state = 'sent' AND partoo_id IS NOT NULL", 10),
	'all 300 messages sent and recorded within 10 s while the transaction stays open');
note(sprintf('300 messages recorded %.1f s after they were queued', time() - $t0));
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.outbox"), '0', 'the outbox is empty');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'partoo worker' AND wait_event_type = 'Lock'"),
	'0', 'the worker is not waiting for a lock');

# keep it open 30 s in all, then commit
my $left = 30 - (time() - $t_begin);
sleep($left) if $left > 0;
$held->query_safe('COMMIT');
$held->quit;
ok(wait_for($node, "SELECT state = 'delivered' AND partoo_status = 'Success' FROM partoo.messages WHERE partoo_id = $next", 20),
	'after the commit the pending event is applied to its message');
is($node->safe_psql('postgres', "SELECT outcome FROM partoo.events WHERE partoo_id = $next"),
	'applied', 'and the event is marked applied');
ok(wait_for($node, "SELECT count(*) = 300 FROM partoo.messages WHERE content LIKE 'held %' AND state IN ('sent', 'delivered')", 30),
	'all 300 are recorded');
my $n = accepted_counts('held ');
is(scalar(keys %$n), 300, 'the mock received all 300');
is(scalar(grep { $_ != 1 } values %$n), 0, 'each exactly once');

#
# 2. SELECT ... FOR UPDATE on a queued message; an idle-in-transaction
#    administrator who updated messages in flight
#
$node->safe_psql('postgres',
	"SELECT partoo_enqueue(12, 'locked queued', send_at => now() + interval '2 s')");
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN');
$locker->query_safe("SELECT id FROM partoo.messages WHERE content = 'locked queued' FOR UPDATE");
# in flight: the mock holds these answers for 1.5 s
$node->safe_psql('postgres',
	"SELECT count(partoo_enqueue(5001500, 'admin ' || i)) FROM generate_series(1, 10) i");
ok(wait_for($node, "SELECT count(*) = 10 FROM partoo.messages WHERE content LIKE 'admin %' AND state = 'sending'", 10),
	'ten messages in flight');
my $admin = $node->background_psql('postgres');
$admin->query_safe('BEGIN');
$admin->query_safe("UPDATE partoo.messages SET metadata = '{\"seen\": true}' WHERE content LIKE 'admin %'");
sleep(3);    # the locked queued message is due; the answers are in
$t0 = time();
$node->safe_psql('postgres',
	"SELECT count(partoo_enqueue(12, 'meanwhile ' || i)) FROM generate_series(1, 100) i");
ok(wait_for($node, "SELECT count(*) = 100 FROM partoo.messages WHERE content LIKE 'meanwhile %' AND state = 'sent'", 10),
	'other messages flow while a message is locked FOR UPDATE and an administrator sits in a transaction');
note(sprintf('100 messages recorded in %.1f s', time() - $t0));
is($node->safe_psql('postgres', "SELECT state FROM partoo.messages WHERE content = 'locked queued'"),
	'queued', 'the message locked FOR UPDATE waits');
$locker->query_safe('COMMIT');
$locker->quit;
$admin->query_safe('COMMIT');
$admin->quit;
ok(wait_for($node, "SELECT state = 'sent' FROM partoo.messages WHERE content = 'locked queued'", 20),
	'it is sent once the lock is gone');
ok(wait_for($node, "SELECT count(*) = 10 FROM partoo.messages WHERE content LIKE 'admin %' AND state = 'sent' AND metadata = '{\"seen\": true}'", 20),
	'the messages the administrator held are recorded after the commit, keeping the update');
$n = accepted_counts('admin ');
is(scalar(keys %$n) . '/' . scalar(grep { $_ != 1 } values %$n), '10/0',
	'the administrator\'s messages were sent exactly once each');
is(accepted_counts('locked queued')->{'locked queued'}, 1, 'the locked message was sent once');

#
# 3. A slow recording transaction does not time out answered requests
#
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET partoo.timeout = '1s';
	SELECT pg_reload_conf();
	CREATE FUNCTION public.slow_record() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.content = 'slow' AND NEW.state = 'sent' THEN
			PERFORM pg_sleep(3);
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER slow_record BEFORE UPDATE ON partoo.messages
		FOR EACH ROW EXECUTE FUNCTION public.slow_record();
});
sleep(1);
# claimed together: the mock answers the twenty after 300 ms, while the
# worker is still recording 'slow' (3 s)
$node->safe_psql('postgres', "SELECT partoo_enqueue(13, 'slow');
	SELECT count(partoo_enqueue(5000300, 'stalled ' || i)) FROM generate_series(1, 20) i");
ok(wait_for($node, "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'partoo worker' AND wait_event = 'PgSleep'", 10),
	'the worker is stuck in a slow recording');
ok(wait_for($node, "SELECT count(*) = 20 FROM partoo.messages WHERE content LIKE 'stalled %' AND state = 'sent'", 30),
	'the requests in flight during the stall are recorded sent');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.messages WHERE content LIKE 'stalled %' AND attempts <> 1"),
	'0', 'none was counted as a timeout and tried again');
$n = accepted_counts('stalled ');
is(scalar(keys %$n) . '/' . scalar(grep { $_ != 1 } values %$n), '20/0',
	'each was sent exactly once');
$node->safe_psql('postgres', "DROP TRIGGER slow_record ON partoo.messages;
	ALTER SYSTEM RESET partoo.timeout; SELECT pg_reload_conf();");

#
# 4. SIGTERM while another session holds a lock the worker waits for
#
my $pid = worker_pid($node);
my $tabler = $node->background_psql('postgres');
$tabler->query_safe('BEGIN');
$tabler->query_safe('LOCK TABLE partoo.outbox IN ACCESS EXCLUSIVE MODE');
$node->safe_psql('postgres', 'SELECT partoo.wake_worker()');
sleep(1);
$t0 = time();
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
my $gone = 0;
while (time() - $t0 < 20)
{
	if ($node->safe_psql('postgres', "SELECT count(*) FROM pg_stat_activity WHERE pid = $pid") eq '0')
	{
		$gone = 1;
		last;
	}
	usleep(50_000);
}
my $took = time() - $t0;
note(sprintf('the worker ended %.2f s after SIGTERM', $took));
# partoo.shutdown_timeout is 2 s; 3 s more for a busy machine
ok($gone && $took < 5, 'the worker ends within partoo.shutdown_timeout of SIGTERM despite the lock');
$tabler->query_safe('COMMIT');
$tabler->quit;
$node->safe_psql('postgres', "SELECT partoo_enqueue(14, 'after the lock')");
ok(wait_for($node, "SELECT state = 'sent' FROM partoo.messages WHERE content = 'after the lock'", 30),
	'a new worker sends');

$node->stop;
done_testing();
