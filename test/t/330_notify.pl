# 330_notify.pl: partoo.notify_status.  With the setting on, every change
# of a message's state sends NOTIFY partoo_status with
# {"id", "state", "partoo_status"}, in the transaction that made it:
#
#  - partoo_enqueue (queued), the worker's claim and record (sending,
#    sent), a webhook (delivered), partoo.cancel (canceled): each one
#    notification, received by a session that LISTENs;
#  - a rolled back transaction or savepoint notifies nothing; an UPDATE
#    that leaves the state as it was notifies nothing;
#  - with the setting off (the default) nothing is sent, and with it on
#    only in postgresql.conf the worker's changes are notified too;
#  - the payload is JSON, and an over-long partoo_status is cut.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $mock = start_mock('--api-key', 'test-key');
my $node = partoo_node('notify', $mock,
	"partoo.webhook_require_signature = off");

# listen_for($sql): run $sql in a session that LISTENs on partoo_status and
# then waits a little for the notifications of other sessions; returns the
# payloads received, decoded, in order
sub listen_for
{
	my ($sql) = @_;
	my $out = $node->safe_psql('postgres',
		"LISTEN partoo_status;\n$sql\nSELECT pg_sleep(0.5);\nSELECT 'end';");
	my @got;
	while ($out =~ /Asynchronous notification "partoo_status" with payload "(.*?)" received from server process with PID \d+\./g)
	{
		push @got, decode_json($1);
	}
	# a notification on another channel would mean a wrong channel name
	unlike($out, qr/Asynchronous notification "(?!partoo_status")/, 'no other channel');
	return \@got;
}

sub states
{
	my ($got) = @_;
	return join(' ', map { $_->{state} } @$got);
}

# off by default: nothing, whatever happens
my $got = listen_for(q{
	SELECT partoo_enqueue(11, 'quiet');
	SELECT pg_sleep(0.5);
});
is(scalar(@$got), 0, 'with partoo.notify_status off (the default), no notification');
ok(wait_for($node, "SELECT state = 'sent' FROM partoo.messages WHERE content = 'quiet'", 30),
	'and the message was sent all the same');

# on for one session: its own change is notified at commit, with the id
$got = listen_for(q{
	SET partoo.notify_status = on;
	SELECT partoo_enqueue(12, 'own session') AS id \gset
	SELECT :id;
});
is(scalar(@$got), 1, 'SET in a session: its enqueue notifies once');
my $id = $node->safe_psql('postgres', "SELECT id FROM partoo.messages WHERE content = 'own session'");
is_deeply($got->[0], { id => $id + 0, state => 'queued', partoo_status => undef },
	'payload {"id", "state": "queued", "partoo_status": null}');

# rollbacks notify nothing
$got = listen_for(q{
	SET partoo.notify_status = on;
	BEGIN;
	SELECT partoo_enqueue(13, 'rolled back');
	ROLLBACK;
	BEGIN;
	SAVEPOINT s;
	SELECT partoo_enqueue(13, 'to a savepoint');
	ROLLBACK TO SAVEPOINT s;
	SELECT partoo_enqueue(13, 'kept');
	COMMIT;
});
is(states($got), 'queued', 'a rollback and a rollback to a savepoint notify nothing; the kept one does');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.messages WHERE conversation_id = 13"),
	'1', 'and only that message exists');

# the worker's changes, with the setting on in postgresql.conf
$node->append_conf('postgresql.conf', "partoo.notify_status = on\n");
$node->reload;
ok(wait_for($node, "SELECT current_setting('partoo.notify_status') = 'on'", 10), 'turned on by reload');
sleep(1);    # the worker reads the file at its next iteration
$got = listen_for(q{
	SELECT partoo_enqueue(14, 'through the worker') AS id \gset
	DO $$
	BEGIN
		FOR i IN 1 .. 300 LOOP
			EXIT WHEN EXISTS (SELECT FROM partoo.messages
							  WHERE content = 'through the worker' AND state = 'sent');
			PERFORM pg_sleep(0.1);
		END LOOP;
	END $$;
});
$id = $node->safe_psql('postgres', "SELECT id FROM partoo.messages WHERE content = 'through the worker'");
is(states($got), 'queued sending sent',
	'queued (the enqueue), sending (the worker\'s claim), sent (its record), in order');
ok(!grep({ $_->{id} != $id } @$got), 'all about that message');

# a webhook: delivered, with Partoo's status
my $pid = $node->safe_psql('postgres', "SELECT partoo_id FROM partoo.messages WHERE id = $id");
my $hook = qq({"type":"message_updated","payload":{"message":{"id":$pid,"conversation_id":14,)
  . qq("date":"2026-12-05 07:00:00.000000+00:00","content_type":"Text","sender_type":"User",)
  . qq("status":"Success","is_deleted":false,"content":"through the worker"},)
  . qq("conversation":{"id":14,"messaging_partner":"Whatsapp"},"org_id":1}});
$got = listen_for("SELECT partoo_ingest_webhook('$hook');");
is_deeply($got, [ { id => $id + 0, state => 'delivered', partoo_status => 'Success' } ],
	'a webhook that delivers it: one notification, with partoo_status');

# the same webhook again changes nothing and notifies nothing
$got = listen_for("SELECT partoo_ingest_webhook('$hook');");
is(scalar(@$got), 0, 'a duplicate webhook notifies nothing');

# an UPDATE that writes the same state notifies nothing
$got = listen_for("UPDATE partoo.messages SET state = state, updated_at = now() WHERE id = $id;");
is(scalar(@$got), 0, 'an UPDATE leaving the state as it was notifies nothing');

# partoo.cancel: canceled
$got = listen_for(q{
	SELECT partoo_enqueue(15, 'to cancel', send_at => now() + interval '1 hour') AS cid \gset
	SELECT partoo.cancel(:cid);
});
is(states($got), 'queued canceled', 'cancel notifies canceled');

# an over-long partoo_status is cut, and the payload stays valid JSON
$got = listen_for(qq{UPDATE partoo.messages SET state = 'failed', partoo_status = repeat(chr(233), 5000) WHERE id = $id;});
is(scalar(@$got), 1, 'a long partoo_status: one notification');
is(length($got->[0]{partoo_status}), 200, 'its partoo_status cut to 200 characters');

# turned off by a session: that session's changes are not notified
$got = listen_for(q{
	SET partoo.notify_status = off;
	SELECT partoo_enqueue(16, 'session off', send_at => now() + interval '1 hour');
});
is(scalar(@$got), 0, 'a session that turns it off notifies nothing');

done_testing();
