# 050_worker_control.pl: SIGHUP reloads settings, SIGTERM stops the worker
# cleanly and it comes back, an ERROR in the loop is survived, and one
# poison row cannot stop the others.
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

# a poison row: recording its outcome fails; it becomes dead, the others are sent
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
ok(wait_for($node, "SELECT state = 'dead' AND last_error LIKE 'could not record outcome: poisoned row%' FROM partoo.messages WHERE content = 'poison'", 30),
	'the poison row is dead with the reason');
is(worker_pid($node), $pid, 'the worker never crashed');
$node->safe_psql('postgres', "DROP TRIGGER poison ON partoo.messages");

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
