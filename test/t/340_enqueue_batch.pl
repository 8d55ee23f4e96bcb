# 340_enqueue_batch.pl: partoo_enqueue and partoo.enqueue_trigger buffer
# their rows in backend memory and write them as one INSERT (batch.c).
# What the buffer must not change, each checked where the buffering could
# break it:
#
#  - the id returned is the message's, ids and outbox rows follow call
#    order, within one statement and across flushes;
#  - a bad call raises its error at once and writes nothing;
#  - ROLLBACK, ROLLBACK TO SAVEPOINT and a PL/pgSQL EXCEPTION block undo
#    exactly the calls made in them, including rows of an outer level
#    that were written while a deeper subtransaction was active (one and
#    two levels deep);
#  - the next statement sees the rows: after SELECT, PERFORM, a PL/pgSQL
#    simple expression (x := partoo_enqueue(...)), a cursor's FETCH, a
#    CALL, and the trigger's statement;
#  - an idempotency key already used returns the first id;
#  - the buffer's memory is bounded and freed at the end of the transaction;
#  - a role with only EXECUTE on partoo_enqueue can queue;
#  - the worker is woken at commit, not at rollback;
#  - all of it also with the library loaded on first call (not preloaded).
#
# Most checks run in database "app", where no worker drains the outbox.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $mock = start_mock('--api-key', 'test-key');
my $node = partoo_node('enqueue_batch', $mock);
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', 'CREATE EXTENSION partoo');

sub app_sql
{
	my ($sql) = @_;
	return $node->safe_psql('app', $sql);
}

# the checks that must hold whether the library was preloaded or not
sub semantics
{
	my ($how, $role) = @_;
	app_sql('TRUNCATE partoo.messages, partoo.outbox');

	# ids: the message's, in call order, across several flushes (4,096 rows)
	my $out = app_sql(q{
		CREATE TEMP TABLE got AS
		SELECT i, partoo_enqueue(1, 'order-' || i) AS id FROM generate_series(1, 10000) i;
		SELECT count(*) FILTER (WHERE m.id = g.id AND m.content = 'order-' || g.i),
			   bool_and(g.id > coalesce(prev, 0))
		  FROM (SELECT *, lag(id) OVER (ORDER BY i) AS prev FROM got) g
		  JOIN partoo.messages m ON m.id = g.id;
	});
	is($out, "10000|t", "$how: each id returned is its message's, increasing in call order");
	$out = app_sql(q{
		SELECT count(*), bool_and(o.id > coalesce(prev, 0))
		  FROM (SELECT o.*, lag(o.id) OVER (ORDER BY m.id) AS prev
				  FROM partoo.outbox o JOIN partoo.messages m ON m.id = o.message_id
				 WHERE m.content LIKE 'order-%') o
	});
	is($out, "10000|t", "$how: one outbox row each, in call order");

	# a bad call raises at once, and the statement writes nothing
	my ($ret, $stdout, $stderr) = $node->psql('app', q{
		SELECT partoo_enqueue(2, 'bad-' || i, content_type => CASE WHEN i = 3000 THEN 'Nope' ELSE 'Text' END)
		  FROM generate_series(1, 5000) i;
	});
	like($stderr, qr/ERROR:  unknown content type "Nope"/, "$how: a bad call raises its error");
	is(app_sql("SELECT count(*) FROM partoo.messages WHERE content LIKE 'bad-%'"), '0',
		"$how: and nothing of its statement is written");
	($ret, $stdout, $stderr) = $node->psql('app',
		"SELECT partoo_enqueue(2, 'x', send_at => 'infinity')");
	like($stderr, qr/ERROR:  send_at must be a finite time/, "$how: send_at is checked at call time");

	# rollback, savepoints, exception blocks
	$out = app_sql(q{
		BEGIN;
		SELECT partoo_enqueue(3, 'rolled back') IS NOT NULL;
		ROLLBACK;
		BEGIN;
		SELECT partoo_enqueue(3, 'sp-before') IS NOT NULL;
		SAVEPOINT s;
		SELECT partoo_enqueue(3, 'sp-inside') IS NOT NULL;
		ROLLBACK TO SAVEPOINT s;
		SELECT partoo_enqueue(3, 'sp-after') IS NOT NULL;
		COMMIT;
		SELECT string_agg(content, ',' ORDER BY id) FROM partoo.messages WHERE conversation_id = 3;
	});
	like($out, qr/^sp-before,sp-after$/m, "$how: ROLLBACK and ROLLBACK TO SAVEPOINT undo exactly their calls");

	$out = app_sql(q{
		DO $$
		DECLARE x bigint;
		BEGIN
			x := partoo_enqueue(4, 'outer, written in the block');
			BEGIN
				PERFORM 1;	-- a flush point, in the block's subtransaction
				x := partoo_enqueue(4, 'inner');
				RAISE EXCEPTION 'undo the block';
			EXCEPTION WHEN raise_exception THEN
				NULL;
			END;
		END $$;
		SELECT string_agg(content, ',' ORDER BY id) FROM partoo.messages WHERE conversation_id = 4;
		SELECT count(*) FROM partoo.outbox o JOIN partoo.messages m ON m.id = o.message_id
		 WHERE m.conversation_id = 4;
	});
	is($out, "outer, written in the block\n1",
		"$how: an EXCEPTION block undoes its calls and keeps the outer call written inside it");

	$out = app_sql(q{
		DO $$
		DECLARE x bigint;
		BEGIN
			x := partoo_enqueue(5, 'outer, two levels');
			BEGIN
				BEGIN
					PERFORM 1;	-- written two subtransactions deep
				EXCEPTION WHEN division_by_zero THEN
					NULL;
				END;		-- that one commits into the next
				x := partoo_enqueue(5, 'middle');
				RAISE EXCEPTION 'undo the middle block';
			EXCEPTION WHEN raise_exception THEN
				NULL;
			END;
			x := partoo_enqueue(5, 'outer, after');
		END $$;
		SELECT string_agg(content, ',' ORDER BY id) FROM partoo.messages WHERE conversation_id = 5;
	});
	is($out, "outer, two levels,outer, after",
		"$how: two levels deep too");

	$out = app_sql(q{
		BEGIN;
		SELECT count(partoo_enqueue(6, 'big-outer-' || i)) FROM generate_series(1, 100) i;
		SAVEPOINT s;
		SELECT count(partoo_enqueue(6, 'big-inner-' || i)) FROM generate_series(1, 5000) i;
		ROLLBACK TO SAVEPOINT s;
		COMMIT;
		SELECT count(*) FILTER (WHERE content LIKE 'big-outer-%'), count(*) FILTER (WHERE content LIKE 'big-inner-%')
		  FROM partoo.messages WHERE conversation_id = 6;
	});
	like($out, qr/^100\|0$/m, "$how: a savepoint rolled back after its calls filled the buffer");

	# visibility to the next statement
	$out = app_sql(q{
		BEGIN;
		SELECT partoo_enqueue(7, 'v-select') AS id \gset
		SELECT count(*) FROM partoo.messages WHERE id = :id;
		DO $$
		DECLARE x bigint; n int;
		BEGIN
			x := partoo_enqueue(7, 'v-simple');
			SELECT count(*) INTO n FROM partoo.messages WHERE id = x;
			RAISE NOTICE 'simple expression: %', n;
			PERFORM partoo_enqueue(7, 'v-perform');
			SELECT count(*) INTO n FROM partoo.messages WHERE content = 'v-perform';
			RAISE NOTICE 'perform: %', n;
			x := partoo_enqueue(7, 'v-last');
		END $$;
		SELECT count(*) FROM partoo.messages WHERE content = 'v-last';
		DECLARE c CURSOR FOR SELECT partoo_enqueue(7, 'v-cursor-' || i) FROM generate_series(1, 10) i;
		FETCH 3 FROM c;
		SELECT count(*) FROM partoo.messages WHERE content LIKE 'v-cursor-%';
		CLOSE c;
		CREATE PROCEDURE pg_temp.p() LANGUAGE plpgsql AS $$
			DECLARE x bigint; BEGIN x := partoo_enqueue(7, 'v-call'); END $$;
		CALL pg_temp.p();
		SELECT count(*) FROM partoo.messages WHERE content = 'v-call';
		COMMIT;
	});
	my @lines = split /\n/, $out;
	is($lines[0], '1', "$how: SELECT partoo_enqueue: the next statement sees the row");
	is($lines[1], '1', "$how: a DO block's last simple expression: seen after the block");
	is($lines[-2] // '', '3', "$how: a cursor's FETCH: seen by the next statement");
	is($lines[-1] // '', '1', "$how: CALL: seen by the next statement");
	($ret, $stdout, $stderr) = $node->psql('app', q{
		DO $$
		DECLARE x bigint; n int;
		BEGIN
			x := partoo_enqueue(7, 'v-simple2');
			SELECT count(*) INTO n FROM partoo.messages WHERE id = x;
			RAISE NOTICE 'simple expression: %', n;
			PERFORM partoo_enqueue(7, 'v-perform2');
			SELECT count(*) INTO n FROM partoo.messages WHERE content = 'v-perform2';
			RAISE NOTICE 'perform: %', n;
		END $$;
	});
	like($stderr, qr/NOTICE:  simple expression: 1/,
		"$how: x := partoo_enqueue(...) then a query in the same function: seen");
	like($stderr, qr/NOTICE:  perform: 1/, "$how: PERFORM partoo_enqueue(...) then a query: seen");

	# idempotency keys
	$out = app_sql(q{
		SELECT count(DISTINCT id) FROM (
			SELECT partoo_enqueue(8, 'k-' || i, idempotency_key => 'key-' || (i % 3)) AS id
			  FROM generate_series(1, 9) i) s;
		SELECT partoo_enqueue(8, 'k-again', idempotency_key => 'key-1') =
			   (SELECT id FROM partoo.messages WHERE content = 'k-1');
		SELECT count(*) FROM partoo.messages WHERE conversation_id = 8;
	});
	is($out, "3\nt\n3", "$how: an idempotency key used before returns the first message's id");

	# the trigger: every row written by the end of its statement
	$out = app_sql(q{
		CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, conv bigint, shipped boolean);
		TRUNCATE orders;
		INSERT INTO orders SELECT i, 9, false FROM generate_series(1, 10000) i;
		CREATE OR REPLACE TRIGGER orders_shipped AFTER UPDATE ON orders FOR EACH ROW
			WHEN (NEW.shipped) EXECUTE FUNCTION partoo.enqueue_trigger('conv', 'shipped {{id}}');
		BEGIN;
		UPDATE orders SET shipped = true WHERE id <= 9000;
		SELECT count(*) FROM partoo.messages WHERE conversation_id = 9;
		SAVEPOINT s;
		UPDATE orders SET shipped = true WHERE id > 9000;
		ROLLBACK TO SAVEPOINT s;
		COMMIT;
		SELECT count(*), count(DISTINCT content) FROM partoo.messages WHERE conversation_id = 9;
	});
	is($out, "9000\n9000|9000", "$how: the trigger's rows are seen by the next statement, and undone with a savepoint");

	# memory: bounded while queueing, freed at the end of the transaction
	$out = app_sql(q{
		BEGIN;
		SELECT count(partoo_enqueue(10, repeat('m', 100) || i)) FROM generate_series(1, 100000) i;
		SELECT coalesce(sum(total_bytes), 0) < 4 * 1024 * 1024
		  FROM pg_backend_memory_contexts WHERE name LIKE 'partoo enqueue buffer%';
		COMMIT;
		SELECT count(*) FROM pg_backend_memory_contexts WHERE name LIKE 'partoo enqueue buffer%';
	});
	is($out, "100000\nt\n0", "$how: the buffer stays under 4 MB for 100,000 calls and is freed at commit");
	$out = app_sql(q{
		BEGIN;
		DO $$
		DECLARE x bigint;
		BEGIN
			FOR i IN 1..100000 LOOP
				x := partoo_enqueue(10, repeat('s', 100) || i);
			END LOOP;
		END $$;
		SELECT coalesce(sum(total_bytes), 0) < 4 * 1024 * 1024
		  FROM pg_backend_memory_contexts WHERE name LIKE 'partoo enqueue buffer%';
		ROLLBACK;
	});
	is($out, "t", "$how: also for 100,000 calls outside the executor");

	# privileges: EXECUTE on partoo_enqueue is enough, for both paths
	$out = app_sql(qq{
		CREATE ROLE $role;
		GRANT EXECUTE ON FUNCTION partoo_enqueue(bigint, text, text, text, bytea, text, text, text, text, timestamptz, jsonb) TO $role;
		GRANT EXECUTE ON FUNCTION partoo.enqueue_trigger() TO $role;
		GRANT USAGE ON SCHEMA partoo TO $role;
		GRANT CREATE ON SCHEMA public TO $role;
		SET ROLE $role;
		SELECT count(partoo_enqueue(11, 'priv-' || i)) FROM generate_series(1, 5000) i;
		CREATE TABLE ${role}_orders (id int, conv bigint);
		CREATE TRIGGER q AFTER INSERT ON ${role}_orders FOR EACH ROW
			EXECUTE FUNCTION partoo.enqueue_trigger('conv', 'priv-trigger {{id}}');
		INSERT INTO ${role}_orders SELECT i, 11 FROM generate_series(1, 5000) i;
		RESET ROLE;
		SELECT count(*), count(*) FILTER (WHERE created_by = '$role')
		  FROM partoo.messages WHERE conversation_id = 11;
	});
	is($out, "5000\n10000|10000", "$how: a role with only EXECUTE queues, through the function and the trigger");
}

semantics('preloaded', 'app_user1');

# the worker is woken at commit, and sends nothing rolled back
$node->safe_psql('postgres', q{
	BEGIN;
	SELECT count(partoo_enqueue(20, 'wake-rolled-back-' || i)) FROM generate_series(1, 10) i;
	ROLLBACK;
	BEGIN;
	SELECT count(partoo_enqueue(20, 'wake-' || i)) FROM generate_series(1, 10) i;
	COMMIT;
});
ok(wait_for($node, "SELECT count(*) = 10 FROM partoo.messages WHERE content LIKE 'wake-%' AND state = 'sent'", 10),
	'the worker sends the committed calls');
my $accepted = join("\n", map { $_->{content} } @{ mock_accepted($mock) });
unlike($accepted, qr/wake-rolled-back/, 'and nothing of the rolled-back ones');

# loaded on first call, not preloaded: the same
$node->adjust_conf('postgresql.conf', 'shared_preload_libraries', "''");
# NB: stop and start, not restart: pg_ctl restart runs the binary named in
# postmaster.opts, which bypasses the asan stage's wrapper
$node->stop;
$node->start;
semantics('loaded on first call', 'app_user2');

done_testing();
