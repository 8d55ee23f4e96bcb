# 050_worker_control.pl: SIGHUP reloads settings, SIGTERM stops the worker
# cleanly and it comes back, an ERROR in the loop is survived, one poison
# row cannot stop the others (whether its claim or its recording fails; a
# message Partoo accepted keeps its id and is never sent twice), and the
# worker's advisory lock is not one an application could be holding.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $mock = start_mock('--api-key', 'test-key');
my $node = partoo_node('control', $mock);
ok(wait_for($node, "SELECT count(*) = 1 FROM partoo.worker_status() WHERE pid IS NOT NULL", 30),
	'worker is running');
my $pid = worker_pid($node);

# SIGHUP: a rate limit set by reload takes effect, and lifting it too
$node->safe_psql('postgres', "ALTER SYSTEM SET partoo.requests_per_minute = 60; SELECT pg_reload_conf();");
sleep(1);
$node->safe_psql('postgres', "SELECT count(partoo_enqueue(6, 'hup ' || i)) FROM generate_series(1, 30) i");
sleep(2);
my $sent = $node->safe_psql('postgres', "SELECT count(*) FROM partoo.messages WHERE state = 'sent' AND content LIKE 'hup%'");
cmp_ok($sent, '<=', 5, "at 60/min only $sent of 30 went out in 2 s");
$node->safe_psql('postgres', "ALTER SYSTEM SET partoo.requests_per_minute = 0; SELECT pg_reload_conf();");
ok(wait_for($node, "SELECT count(*) = 30 FROM partoo.messages WHERE state = 'sent' AND content LIKE 'hup%'", 20),
	'after reloading an unlimited rate, the rest went out');
is(worker_pid($node), $pid, 'the same worker process did all that');

# an ERROR inside the loop is logged and survived
$node->safe_psql('postgres', "ALTER TABLE partoo.outbox RENAME TO outbox_away");
$node->safe_psql('postgres', "SELECT partoo.wake_worker()");
ok(wait_for($node, "SELECT last_error IS NOT NULL FROM partoo.worker_status()", 20),
	'the error shows in worker_status');
$node->safe_psql('postgres', "ALTER TABLE partoo.outbox_away RENAME TO outbox");
$node->safe_psql('postgres', "SELECT partoo_enqueue(7, 'after the error')");
ok(wait_for($node, "SELECT state = 'sent' FROM partoo.messages WHERE content = 'after the error'", 20),
	'the worker went on after the error');
is(worker_pid($node), $pid, 'without restarting');

# a row whose claim raises an ERROR: it alone becomes dead with the reason,
# the others keep flowing
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.poison_claim() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.content = 'poison claim' AND NEW.state = 'sending' THEN
			RAISE EXCEPTION 'poisoned claim';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER poison_claim BEFORE UPDATE ON partoo.messages
		FOR EACH ROW EXECUTE FUNCTION public.poison_claim();
	SELECT count(partoo_enqueue(8, CASE WHEN i = 25 THEN 'poison claim' ELSE 'claimed ' || i END))
	  FROM generate_series(1, 50) i;
});
ok(wait_for($node, "SELECT count(*) = 49 FROM partoo.messages WHERE content LIKE 'claimed %' AND state = 'sent'", 30),
	'the 49 other messages were claimed and sent');
ok(wait_for($node, "SELECT state = 'dead' AND last_error LIKE 'could not claim: poisoned claim%' FROM partoo.messages WHERE content = 'poison claim'", 30),
	'the row whose claim fails is dead with the reason');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.outbox o JOIN partoo.messages m ON m.id = o.message_id WHERE m.content = 'poison claim'"),
	'0', 'and out of the outbox');
is(worker_pid($node), $pid, 'the worker never crashed');
$node->safe_psql('postgres', "DROP TRIGGER poison_claim ON partoo.messages");

# a poison row: recording its outcome fails after Partoo accepted it.  It
# keeps its Partoo id, is never sent again (not even by a new worker), and
# ends sent once it can be recorded.
$node->safe_psql('postgres', q{
	CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.content = 'poison' AND NEW.state = 'sent' THEN
			RAISE EXCEPTION 'poisoned row';
		END IF;
		RETURN NEW;
	END $$;
	CREATE TRIGGER poison BEFORE UPDATE ON partoo.messages
		FOR EACH ROW EXECUTE FUNCTION public.poison();
	SELECT count(partoo_enqueue(8, CASE WHEN i = 25 THEN 'poison' ELSE 'healthy ' || i END))
	  FROM generate_series(1, 50) i;
});
ok(wait_for($node, "SELECT count(*) = 49 FROM partoo.messages WHERE content LIKE 'healthy%' AND state = 'sent'", 30),
	'the 49 healthy messages were sent');
my $poison_pid;
for my $r (@{ mock_accepted($mock) })
{
	$poison_pid = $r->{message_id} if $r->{kind} eq 'send' && $r->{content} eq 'poison';
}
ok(defined $poison_pid, 'Partoo accepted the poison message');
ok(wait_for($node, "SELECT o.partoo_id = $poison_pid AND o.action = 'record' FROM partoo.outbox o
	JOIN partoo.messages m ON m.id = o.message_id WHERE m.content = 'poison'", 30),
	'its Partoo id is kept in the outbox, to be recorded later');
isnt($node->safe_psql('postgres', "SELECT state FROM partoo.messages WHERE content = 'poison'"),
	'dead', 'it is not dead');
like(slurp_file($node->logfile), qr/LOG:  partoo worker could not record the outcome of message \d+, recording it later\n.*DETAIL:  The error was: poisoned row/,
	'the failure is logged, with the error in the detail');
# a new worker does not send it again either
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(wait_for($node, "SELECT count(*) = 1 FROM partoo.worker_status() WHERE pid IS NOT NULL AND pid <> $pid", 30),
	'a new worker started');
$pid = worker_pid($node);
$node->safe_psql('postgres', "SELECT partoo.wake_worker()");
sleep(2);
$node->safe_psql('postgres', "DROP TRIGGER poison ON partoo.messages");
ok(wait_for($node, "SELECT state = 'sent' AND partoo_id = $poison_pid FROM partoo.messages WHERE content = 'poison'", 60),
	'once the trigger is gone it ends sent with the id Partoo gave it');
is(scalar(grep { $_->{kind} eq 'send' && $_->{content} eq 'poison' } @{ mock_accepted($mock) }),
	1, 'and it was sent exactly once');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.outbox"), '0', 'the outbox is empty');

# the worker's lock is partoo's own: an application holding the advisory
# lock key it used before (-7306514891325683221) does not keep it out
my $app = $node->background_psql('postgres');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(wait_for($node, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $pid", 10),
	'the worker stopped');
# taken before the next worker starts (bgw_restart_time is 5 s)
$app->query_safe('SELECT pg_advisory_lock(-7306514891325683221)');
$app->query_safe('SELECT pg_advisory_lock(1)');
ok(wait_for($node, "SELECT count(*) = 1 FROM partoo.worker_status() WHERE pid IS NOT NULL AND pid <> $pid", 30),
	'a new worker started while an application holds bigint advisory locks');
$pid = worker_pid($node);
$node->safe_psql('postgres', "SELECT partoo_enqueue(7, 'beside the application lock')");
ok(wait_for($node, "SELECT state = 'sent' FROM partoo.messages WHERE content = 'beside the application lock'", 20),
	'and it sends');
is($node->safe_psql('postgres', "SELECT classid || '/' || objid || '/' || objsubid FROM pg_locks
	WHERE locktype = 'advisory' AND pid = $pid AND granted"),
	'1885434479/1/2', 'the worker holds the two-key advisory lock (1885434479, 1)');
$app->quit;

# SIGTERM: the worker stops cleanly and is started again
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok(wait_for($node, "SELECT count(*) = 1 FROM partoo.worker_status() WHERE pid IS NOT NULL AND pid <> $pid", 30),
	'a new worker started after SIGTERM');
$node->safe_psql('postgres', "SELECT partoo_enqueue(9, 'after sigterm')");
ok(wait_for($node, "SELECT state = 'sent' FROM partoo.messages WHERE content = 'after sigterm'", 20),
	'and it sends');
like(slurp_file($node->logfile), qr/partoo worker for database "postgres" stopped/,
	'the stop was logged');

# the worker shows in pg_stat_activity under its name
is($node->safe_psql('postgres',
	"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'partoo worker' AND application_name = 'partoo worker'"),
	'1', 'pg_stat_activity shows the partoo worker');

$node->stop;
done_testing();
