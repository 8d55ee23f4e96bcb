# 310_reconcile.pl: status reconciliation from GET /messages, with the
# mock's webhooks off: statuses set in the mock reach partoo.messages
# within a few partoo.reconcile_after periods, as events of source
# 'reconcile'; the GETs of a message stuck at Sending stay within what the
# doubling backoff allows; partoo.reconcile_max_age ends the checks;
# reconcile_after = 0 makes none; while sends are due no GET is made and
# nothing gets a 429; a 429 on a GET pauses reconciliation only, never
# the sends; messages of partoo_send() and partoo_retry() are checked too.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $mock = start_mock('--api-key', 'test-key');
# webhooks off: statuses change in the mock, nobody is told
my $webhooks_off = sub {
	my ($delay_ms) = @_;
	mock_post($mock, '/_mock/webhooks', qq({"url":null,"delay_ms":$delay_ms}));
};
$webhooks_off->(300);
my $node = partoo_node('reconcile', $mock, "partoo.reconcile_after = '1s'");

my $gets = sub {
	return scalar grep { $_->{method} eq 'GET' }
	  @{ decode_json(mock_get($mock, '/_mock/requests')) };
};
my $status = sub {
	my ($col) = @_;
	return $node->safe_psql('postgres', "SELECT $col FROM partoo.worker_status()");
};
my $reload = sub {
	my ($sql) = @_;
	$node->safe_psql('postgres', "$sql; SELECT pg_reload_conf()");
	usleep(300_000);
};
my $sent_ids = sub {
	my ($conv, $n) = @_;
	ok(wait_for($node, "SELECT count(*) = $n FROM partoo.messages WHERE conversation_id = $conv AND state = 'sent'", 30),
		"conversation $conv: $n messages sent");
	return split /\n/, $node->safe_psql('postgres',
		"SELECT partoo_id FROM partoo.messages WHERE conversation_id = $conv ORDER BY id");
};

# --- statuses set in the mock reach partoo.messages
$node->safe_psql('postgres', q{
	SELECT count(partoo_enqueue(71, 'a' || i)) FROM generate_series(1, 5) i;
	SELECT count(partoo_enqueue(72, 'b' || i)) FROM generate_series(1, 3) i;
});
my @a = $sent_ids->(71, 5);
my @b = $sent_ids->(72, 3);
is($node->safe_psql('postgres', q{SELECT count(*) FROM partoo.messages m WHERE m.conversation_id IN (71, 72)
	AND (EXISTS (SELECT 1 FROM partoo.reconcile r WHERE r.message_id = m.id) OR m.state = 'delivered')}), '8',
	'each message recorded sent is tracked for reconciliation (or already reconciled)');
mock_post($mock, '/_mock/status', qq({"id":$b[1],"status":"Failed"}));
my $t0 = time();
ok(wait_for($node, "SELECT count(*) = 7 FROM partoo.messages WHERE conversation_id IN (71, 72) AND state = 'delivered'"
	  . " AND partoo_status = 'Success'", 20)
	  && wait_for($node, "SELECT state = 'failed' AND partoo_status = 'Failed' FROM partoo.messages WHERE partoo_id = $b[1]", 5),
	'without webhooks, Success and Failed reach partoo.messages from GET /messages');
my $took = time() - $t0;
cmp_ok($took, '<', 8, sprintf('within a few reconcile_after periods (%.1f s)', $took));
is($node->safe_psql('postgres', q{SELECT string_agg(status || ':' || outcome || ':' || CASE WHEN dedup_key LIKE 'reconcile:' || partoo_id || ':%' THEN 't' ELSE 'f' END, ',' ORDER BY status)
	FROM (SELECT status, outcome, dedup_key, partoo_id, count(*) FROM partoo.events
	       WHERE source = 'reconcile' AND status <> 'Sending' GROUP BY 1, 2, 3, 4) e}),
	join(',', 'Failed:applied:t', ('Success:applied:t') x 7),
	'each final status is one event of source reconcile, applied, keyed reconcile:<partoo_id>:<status>');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.events WHERE source <> 'reconcile'"), '0',
	'and no webhook came');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.reconcile"), '0',
	'the reconcile rows of final messages are gone');
my $g = $gets->();
cmp_ok($g, '>=', 2, "at least one GET per conversation ($g)");
cmp_ok($g, '<=', 6, 'one GET serves every due message of its conversation');
like(mock_get($mock, '/_mock/requests'), qr{"path":"/v2/messages\?conversation_id=71&per_page=100"},
	'the GET asks for the conversation, 100 per page');
is($status->('reconcile_applied'), '8', 'worker_status counts the 8 final statuses applied');
cmp_ok($status->('reconcile_requests'), '>=', 2, 'and the requests');

# a status found again is a duplicate, not stored twice: the same
# message's status is read again only after a retry
is($node->safe_psql('postgres',
	"SELECT count(*) FROM partoo.events WHERE source = 'reconcile' GROUP BY partoo_id, status HAVING count(*) > 1"),
	'', 'no status stored twice for a message');

# --- the backoff bounds the GETs of a message stuck at Sending
mock_post($mock, '/_mock/reset');
$webhooks_off->(3600000);
$node->safe_psql('postgres', "SELECT partoo_enqueue(73, 'stuck')");
my ($stuck) = $sent_ids->(73, 1);
my $sent_at = time();
sleep(12);
$g = $gets->();
my $window = time() - $sent_at;
# checks at about 1, 3, 7, 15 s after the send (reconcile_after * (2^k - 1)),
# each up to a second late: at most 3 in 12 s, never one a second
cmp_ok($g, '>=', 2, "a stuck message is checked again ($g GETs in ${\ sprintf('%.0f', $window)} s)");
cmp_ok($g, '<=', 4, 'but no more often than the doubling backoff allows');
is($node->safe_psql('postgres', "SELECT checks FROM partoo.reconcile r JOIN partoo.messages m ON m.id = r.message_id
	WHERE m.partoo_id = $stuck"), $g, 'partoo.reconcile counts the checks');
is($node->safe_psql('postgres', "SELECT state || '/' || partoo_status FROM partoo.messages WHERE partoo_id = $stuck"),
	'sent/Sending', 'the message stays sent while the API says Sending');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.events WHERE partoo_id = $stuck"), '1',
	'Sending is stored once, not at every check');

# --- reconcile_max_age: no more checks, the message stays sent
$reload->("ALTER SYSTEM SET partoo.reconcile_max_age = '5s'");
my $before = $gets->();
sleep(6);
is($gets->(), $before, 'past partoo.reconcile_max_age, no GET');
ok(wait_for($node, "SELECT NOT EXISTS (SELECT 1 FROM partoo.reconcile r JOIN partoo.messages m ON m.id = r.message_id
	WHERE m.partoo_id = $stuck)", 20), 'and its reconcile row goes when it comes due');
is($node->safe_psql('postgres', "SELECT state FROM partoo.messages WHERE partoo_id = $stuck"), 'sent',
	'the message is left sent');
is($gets->(), $before, 'still no GET');
$reload->("ALTER SYSTEM RESET partoo.reconcile_max_age");

# --- reconcile_after = 0: off
$reload->("ALTER SYSTEM SET partoo.reconcile_after = 0");
$before = $gets->();
$node->safe_psql('postgres', "SELECT partoo_enqueue(74, 'not reconciled')");
$sent_ids->(74, 1);
sleep(4);
is($gets->(), $before, 'reconcile_after = 0: no GET');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.reconcile r JOIN partoo.messages m ON m.id = r.message_id
	WHERE m.conversation_id = 74"), '0', 'and nothing tracked');

# --- sends first: no GET while sends are due, no 429 from reconciliation
$node->safe_psql('postgres', "DELETE FROM partoo.reconcile");
$reload->("ALTER SYSTEM SET partoo.reconcile_after = '1s'; ALTER SYSTEM SET partoo.requests_per_minute = 120");
mock_post($mock, '/_mock/reset');
$webhooks_off->(3600000);
mock_post($mock, '/_mock/ratelimit', '{"per_minute":120}');
$node->safe_psql('postgres', "SELECT count(partoo_enqueue(75 + i, 'due for a check')) FROM generate_series(0, 2) i");
# NB: tracked, not "due now": with reconcile_after = 1s the worker may
# check one before this polls, which moves its next_check_at on
ok(wait_for($node, "SELECT count(*) = 3 FROM partoo.reconcile", 30),
	'three messages tracked for a check');
my $requests_before = $status->('reconcile_requests');
$node->safe_psql('postgres', "SELECT count(partoo_enqueue(78, 'backlog ' || i)) FROM generate_series(1, 24) i");
ok(wait_for($node, "SELECT count(*) = 24 FROM partoo.messages WHERE conversation_id = 78 AND state = 'sent'", 60),
	'a backlog of 24 sends at 2 per second drains');
ok(wait_for($node, "SELECT reconcile_requests >= $requests_before + 3 FROM partoo.worker_status()", 30),
	'then the checks are made');
my @log = @{ decode_json(mock_get($mock, '/_mock/requests')) };
my @backlog = map { $_->{seq} } grep { $_->{method} eq 'POST' && ($_->{body} // '') =~ /"conversation_id":\s*78\b/ } @log;
is(scalar @backlog, 24, 'the mock saw the 24 sends');
my @between = grep { $_->{method} eq 'GET' && $_->{seq} > $backlog[0] && $_->{seq} < $backlog[-1] } @log;
is(scalar @between, 0, 'no GET between the first and the last send of the backlog: sends come first');
is(mock_stats($mock)->{rate_limited}, 0, 'the mock enforcing the same limit answered no 429');
is($status->('rate_limited') . '/' . $status->('reconcile_rate_limited'), '0/0', 'and the worker counted none');

# --- a 429 on a GET pauses reconciliation, not the sends
$node->safe_psql('postgres', "DELETE FROM partoo.reconcile");
$reload->("ALTER SYSTEM SET partoo.requests_per_minute = 0");
mock_post($mock, '/_mock/reset');
$webhooks_off->(3600000);
$node->safe_psql('postgres', "SELECT partoo_enqueue(79, 'checked twice')");
$sent_ids->(79, 1);
# the first check passes, the second (about 2 s later) gets a 429
mock_post($mock, '/_mock/ratelimit', '{"per_minute":1,"window_ms":8000}');
ok(wait_for($node, "SELECT reconcile_rate_limited >= 1 FROM partoo.worker_status()", 20),
	'a GET got a 429');
my $gets_at_429 = $gets->();
mock_post($mock, '/_mock/ratelimit', '{"per_minute":0}');
$t0 = time();
$node->safe_psql('postgres', "SELECT partoo_enqueue(80, 'sent while reconciliation pauses')");
ok(wait_for($node, "SELECT state = 'sent' FROM partoo.messages WHERE conversation_id = 80", 3),
	sprintf('a send goes out at once (%.1f s)', time() - $t0));
is($status->("coalesce(paused_accounts, 'none')"), 'none', 'no account is paused for sends');
is($status->('rate_limited'), '0', 'no send was rate limited');
usleep(500_000);
is($gets->(), $gets_at_429, 'no GET while reconciliation is paused (Retry-After)');
mock_post($mock, '/_mock/status', qq({"id":${\ $node->safe_psql('postgres', "SELECT partoo_id FROM partoo.messages WHERE conversation_id = 79")},"status":"Success"}));
ok(wait_for($node, "SELECT state = 'delivered' FROM partoo.messages WHERE conversation_id = 79", 30),
	'after Retry-After, reconciliation resumes and applies the status');

# --- partoo_send() and partoo_retry() in a session: tracked too, and the
# idle worker finds them without being woken
$webhooks_off->(200);
my $sid = $node->safe_psql('postgres', "SELECT partoo_send(81, 'sent by a session')");
is($node->safe_psql('postgres', "SELECT r.checks FROM partoo.reconcile r JOIN partoo.messages m ON m.id = r.message_id WHERE m.partoo_id = $sid"),
	'0', 'partoo_send() tracks its message for reconciliation');
ok(wait_for($node, "SELECT state = 'delivered' FROM partoo.messages WHERE partoo_id = $sid", 30),
	'and its status comes from the API');
mock_post($mock, '/_mock/webhooks', '{"url":null,"delay_ms":200,"rate_failed":1}');
$node->safe_psql('postgres', "SELECT partoo_retry($sid)");
ok(wait_for($node, "SELECT state = 'failed' AND partoo_status = 'Failed' FROM partoo.messages WHERE partoo_id = $sid", 30),
	'partoo_retry() tracks it again: the retry\'s final status (Failed) comes from the API');
is($node->safe_psql('postgres', "SELECT string_agg(status || ':' || outcome, ',' ORDER BY id) FROM partoo.events WHERE partoo_id = $sid"),
	'Success:applied,Failed:applied', 'two reconcile events, one per attempt');

$node->stop;
done_testing();
