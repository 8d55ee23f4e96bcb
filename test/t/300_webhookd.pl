# 300_webhookd.pl: partoo-webhookd, the webhook receiver daemon, against a
# real cluster, connected as a role that holds nothing but EXECUTE on the
# two ingest functions.
#
#  - a signed message_updated for a sent message: 200 "applied", and the
#    message's status changes; the same body again: 200 "duplicate";
#  - a forged signature: 401, nothing changes; not JSON: 400; a body over
#    the server's partoo.webhook_max_bytes (read by the daemon at connect):
#    413; GET /partoo: 405; /nope: 404; the dispatch route with a wrong and
#    the right X-API-Key: 401, 200;
#  - /healthz 200, /metrics with the counters;
#  - 100 valid webhooks at once, with 5 forged ones among them: the 100
#    get 200 and are committed, the forged ones 401 (the batch they fell
#    into is ingested one by one), and bodies were grouped into batches;
#  - slow-loris connections that dribble bytes do not stop a webhook from
#    being answered, and a connection that goes quiet is closed after
#    --connection-timeout;
#  - the cluster stopped: /healthz 503, POST 503; started again: the daemon
#    reconnects by itself, 200;
#  - SIGTERM: exit 0, and no body, signature or key in its log.
use strict;
use warnings;
use POSIX ();
use HTTP::Tiny;
use IO::Socket::INET;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $repo = $ENV{PARTOO_REPO};
my $dir = PostgreSQL::Test::Utils::tempdir();

# the daemon: installed next to the server's programs (make install), or
# the one built in the tree
my $bindir = `pg_config --bindir`;
chomp $bindir;
my $daemon = -x "$bindir/partoo-webhookd" ? "$bindir/partoo-webhookd"
  : "$repo/src/webhookd/partoo-webhookd";
ok(-x $daemon, "partoo-webhookd is built ($daemon)");

# a signing key pair of our own, standing in for Partoo's
system("openssl genpkey -algorithm ed25519 -out $dir/key.pem 2>/dev/null") == 0
  or die "openssl genpkey failed";
my $pub = `openssl pkey -in $dir/key.pem -pubout -outform DER | base64 -w0`;
die "no public key" unless $pub =~ /^MCowBQYDK2VwAyEA/;

my $seq = 0;

# sign($body): the X-Partoo-Signature-v1 of $body (base64 Ed25519)
sub sign
{
	my ($body) = @_;
	my $f = "$dir/body" . $seq++;
	open(my $fh, '>', $f) or die;
	print $fh $body;
	close $fh;
	my $sig = `openssl pkeyutl -sign -inkey $dir/key.pem -rawin -in $f | base64 -w0`;
	die "openssl pkeyutl failed" if $? != 0 || $sig eq '';
	unlink $f;
	return $sig;
}

sub event
{
	my ($id, $status) = @_;
	return qq({"type":"message_updated","payload":{"message":{"id":$id,"conversation_id":12,)
	  . qq("date":"2023-01-31 16:22:17.327878+00:00","content_type":"Text","sender_type":"User",)
	  . qq("sender_label":"Jane Doe","status":"$status","is_deleted":false,"content":"hello",)
	  . qq("user_id":"u-1","custom_channel":null},"conversation":{"id":12,)
	  . qq("messaging_partner":"Whatsapp","custom_channel":null},"org_id":7}});
}

my $mock = start_mock('--api-key', 'test-key');
my $node = partoo_node('webhookd', $mock,
	"partoo.webhook_public_key = '$pub'",
	"partoo.dispatch_webhook_key = 'dispatch-sekrit'",
	"partoo.webhook_max_bytes = 65536");
$node->safe_psql('postgres', q{
	CREATE ROLE webhooks LOGIN;
	GRANT EXECUTE ON FUNCTION partoo_ingest_webhook(text, text),
		partoo_ingest_webhooks(text[], text[]) TO webhooks;
});
is($node->safe_psql('postgres', q{
	SELECT has_table_privilege('webhooks', 'partoo.messages', 'SELECT')
		OR has_table_privilege('webhooks', 'partoo.events', 'INSERT')
		OR has_schema_privilege('webhooks', 'partoo', 'USAGE')}),
	'f', 'the daemon\'s role has no privilege on partoo\'s tables');

# start the daemon on a free port (port 0: it says which in its log)
my $log = "$dir/webhookd.log";
my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0)
{
	open(STDERR, '>', $log) or die;
	open(STDOUT, '>', '/dev/null');
	exec($daemon, '--listen', '127.0.0.1:0',
		'--dbname', $node->connstr('postgres') . ' user=webhooks',
		'--batch-wait-ms', '20', '--connection-timeout', '2',
		'--max-connections', '300')
	  or die "exec: $!";
}
END { kill 'KILL', $pid if $pid && kill 0, $pid; }

my $port;
for (1 .. 200)
{
	if (open(my $fh, '<', $log))
	{
		local $/;
		my $text = <$fh>;
		($port) = $text =~ /listening on http:\/\/127\.0\.0\.1:(\d+)/;
	}
	last if $port;
	usleep(25_000);
}
ok($port, 'the daemon listens') or BAIL_OUT('partoo-webhookd did not start: ' . slurp_file($log));
like(slurp_file($log), qr/connected to database "postgres" as "webhooks"/, 'it connected as the role');
like(slurp_file($log), qr/max body 65536 bytes/, 'the body limit is the server\'s partoo.webhook_max_bytes');

my $base = "http://127.0.0.1:$port";
my $http = HTTP::Tiny->new(timeout => 30, keep_alive => 0);

sub post
{
	my ($path, $body, %headers) = @_;
	return $http->request('POST', "$base$path",
		{ content => $body, headers => { 'content-type' => 'application/json', %headers } });
}

sub status_of
{
	my ($pid) = @_;
	return $node->safe_psql('postgres',
		"SELECT state || ' ' || coalesce(partoo_status, '-') FROM partoo.messages WHERE partoo_id = $pid");
}

#
# 1. One webhook, then the same again, forged, malformed, oversized
#
my $sent = $node->safe_psql('postgres', "SELECT partoo_send(70, 'hello')");
my $before = status_of($sent);
my $body = event($sent, 'Success');
my $sig = sign($body);

my $r = post('/partoo', $body, 'x-partoo-signature-v1' => sign(event($sent, 'Failed')));
is($r->{status}, 401, 'a signature of another body: 401');
like($r->{content}, qr/"sqlstate":"28000"/, 'the answer names the SQLSTATE');
is(status_of($sent), $before, 'nothing changed');
$r = post('/partoo', $body);
is($r->{status}, 401, 'no signature: 401');

$r = post('/partoo', $body, 'x-partoo-signature-v1' => $sig);
is($r->{status}, 200, 'a signed message_updated: 200');
is($r->{content}, qq({"outcome":"applied"}\n), 'the answer says applied');
isnt($before, 'delivered Success', 'the message was not delivered before');
is(status_of($sent), 'delivered Success', 'the message\'s status changed');

$r = post('/partoo', $body, 'x-partoo-signature-v1' => $sig);
is($r->{status}, 200, 'the same body again: 200');
is($r->{content}, qq({"outcome":"duplicate"}\n), 'the answer says duplicate');

$r = post('/partoo', 'this is not JSON', 'x-partoo-signature-v1' => $sig);
is($r->{status}, 400, 'garbage: 400');
$r = post('/partoo', '{"type":"message_updated","payload":' . (' ' x 70000) . '{}}');
is($r->{status}, 413, 'a body over the limit: 413');

$r = $http->get("$base/partoo");
is($r->{status}, 405, 'GET /partoo: 405');
is($r->{headers}{allow}, 'POST', 'with Allow: POST');
is($http->get("$base/nope")->{status}, 404, '/nope: 404');
is(post('/nope', $body)->{status}, 404, 'POST /nope: 404');

# the dispatch format, with its API key
my $dbody = '{"event":"MESSAGE_STATUS","module":"DISPATCH_API","dispatchId":"d-1",'
  . '"messageId":"m-1","messagePart":1,"messageTotalParts":1,"channel":"WHATSAPP",'
  . '"channelIdentifier":"+33600000009","status":"DELIVERED","statusOrder":0,'
  . '"statusDate":"2024-05-01T10:00:00Z"}';
is(post('/dispatch', $dbody, 'x-api-key' => 'wrong')->{status}, 401, 'dispatch, wrong X-API-Key: 401');
$r = post('/dispatch', $dbody, 'x-api-key' => 'dispatch-sekrit');
is($r->{status}, 200, 'dispatch, right X-API-Key: 200');
like($r->{content}, qr/"outcome":"\w+"/, 'with an outcome');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.messages WHERE provider = 'dispatch' AND external_id = 'd-1'"),
	'1', 'the dispatch notification is recorded');

$r = $http->get("$base/healthz");
is($r->{status}, 200, '/healthz: 200');

$r = $http->get("$base/metrics");
is($r->{status}, 200, '/metrics: 200');
like($r->{content}, qr/^partoo_webhookd_requests_total\{route="partoo",code="200"\} 2$/m,
	'metrics count requests by route and answer');
like($r->{content}, qr/^partoo_webhookd_requests_total\{route="partoo",code="401"\} 2$/m,
	'... the 401s');
like($r->{content}, qr/^partoo_webhookd_outcomes_total\{outcome="applied"\} \d+$/m,
	'metrics count outcomes');
like($r->{content}, qr/^partoo_webhookd_outcomes_total\{outcome="duplicate"\} 1$/m,
	'... one duplicate');
like($r->{content}, qr/^partoo_webhookd_batch_size_count \d+$/m, 'batch size histogram');
like($r->{content}, qr/^partoo_webhookd_ingest_seconds_bucket\{le="\+Inf"\} \d+$/m,
	'ingest latency histogram');
like($r->{content}, qr/^partoo_webhookd_db_errors_total 0$/m, 'no database error so far');

#
# 2. A burst: 100 valid webhooks at once, 5 forged ones among them
#
my @ids = split /\n/, $node->safe_psql('postgres',
	"SELECT partoo_send(80, 'burst ' || g) FROM generate_series(1, 100) g ORDER BY g");
is(scalar @ids, 100, '100 messages sent');
my @jobs;
for my $id (@ids)
{
	my $b = event($id, 'Success');
	push @jobs, [ $b, sign($b), 200 ];
}
for my $i (1 .. 5)
{
	# signed by our key, but for another body: refused
	push @jobs, [ event($ids[$i * 10], 'Failed'), sign(event($ids[$i * 10], 'Sending')), 401 ];
}
# shuffle the forged ones in
@jobs = map { $_->[1] } sort { $a->[0] <=> $b->[0] } map { [ rand(), $_ ] } @jobs;

my $m0 = $http->get("$base/metrics")->{content};
my ($calls0) = $m0 =~ /^partoo_webhookd_batch_size_count (\d+)$/m;
my ($bodies0) = $m0 =~ /^partoo_webhookd_batch_size_sum (\d+)$/m;
my ($singles0) = $m0 =~ /^partoo_webhookd_batch_size_bucket\{le="1"\} (\d+)$/m;

my %kids;
my $go = "$dir/go";
for my $j (0 .. $#jobs)
{
	my $kid = fork();
	die "fork: $!" unless defined $kid;
	if ($kid == 0)
	{
		usleep(10_000) until -e $go;
		my $c = HTTP::Tiny->new(timeout => 60, keep_alive => 0);
		my $res = $c->request('POST', "$base/partoo",
			{ content => $jobs[$j][0], headers => { 'x-partoo-signature-v1' => $jobs[$j][1] } });
		open(my $fh, '>', "$dir/burst.$j") or die;
		print $fh $res->{status};
		close $fh;
		# not exit: that would run the END blocks that stop the cluster
		POSIX::_exit(0);
	}
	$kids{$kid} = 1;
}
open(my $gofh, '>', $go) or die;
close $gofh;
my $t0 = time();
waitpid($_, 0) for keys %kids;
my $elapsed = time() - $t0;
my ($good, $refused, $other) = (0, 0, 0);
for my $j (0 .. $#jobs)
{
	my $st = slurp_file("$dir/burst.$j");
	if ($st == $jobs[$j][2]) { $jobs[$j][2] == 200 ? $good++ : $refused++; }
	else { $other++; diag("burst $j: $st, expected $jobs[$j][2]"); }
}
is($good, 100, 'the 100 valid webhooks of the burst: 200');
is($refused, 5, 'the 5 forged ones: 401');
is($other, 0, 'nothing else');
note(sprintf('burst answered in %.2f s', $elapsed));
is($node->safe_psql('postgres',
	"SELECT count(*) FROM partoo.messages WHERE partoo_id IN (" . join(',', @ids)
	  . ") AND state = 'delivered' AND partoo_status = 'Success'"),
	'100', 'all 100 are committed');
my $m1 = $http->get("$base/metrics")->{content};
my ($calls1) = $m1 =~ /^partoo_webhookd_batch_size_count (\d+)$/m;
my ($bodies1) = $m1 =~ /^partoo_webhookd_batch_size_sum (\d+)$/m;
my ($singles1) = $m1 =~ /^partoo_webhookd_batch_size_bucket\{le="1"\} (\d+)$/m;
note("burst: " . ($bodies1 - $bodies0) . " bodies in " . ($calls1 - $calls0)
	  . " database calls, " . ($singles1 - $singles0) . " of one body");
cmp_ok($singles1 - $singles0, '<', $calls1 - $calls0, 'bodies were grouped into batches');
# a forged body costs its batch one more call, not one call per body
cmp_ok($calls1 - $calls0, '<', 60, 'a forged body does not split its batch into single calls');

#
# 3. Slow loris: connections that dribble a request byte by byte
#
my @loris;
my $head = "POST /partoo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{";
for (1 .. 20)
{
	my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')
	  or die "connect: $!";
	push @loris, $s;
}
my $quiet = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp')
  or die "connect: $!";
$quiet->syswrite("POST /partoo HTTP/1.1\r\n");
my $lsent = $node->safe_psql('postgres', "SELECT partoo_send(90, 'loris')");
my $lbody = event($lsent, 'Success');
my $lsig = sign($lbody);
my $lkid = fork();
if ($lkid == 0)
{
	# dribble one byte a connection every 200 ms for 4 s
	for my $i (0 .. 19)
	{
		$_->syswrite(substr($head, $i, 1)) for @loris;
		usleep(200_000);
	}
	POSIX::_exit(0);
}
usleep(500_000);
$t0 = time();
$r = post('/partoo', $lbody, 'x-partoo-signature-v1' => $lsig);
my $took = time() - $t0;
is($r->{status}, 200, 'a webhook is answered while 20 slow-loris connections dribble');
cmp_ok($took, '<', 2, 'promptly');
is(status_of($lsent), 'delivered Success', 'and committed');
waitpid($lkid, 0);
# the quiet one wrote nothing for more than --connection-timeout (2 s)
$quiet->blocking(0);
my $closed = 0;
for (1 .. 40)
{
	my $n = $quiet->sysread(my $buf, 1024);
	if ((defined $n && $n == 0) || (!defined $n && !$!{EAGAIN}))
	{
		$closed = 1;
		last;
	}
	usleep(100_000);
}
ok($closed, 'a connection that goes quiet is closed after the timeout');
close $_ for @loris, $quiet;

#
# 4. The database goes away and comes back
#
my $rsent = $node->safe_psql('postgres', "SELECT partoo_send(91, 'restart')");
my $rbody = event($rsent, 'Success');
my $rsig = sign($rbody);
$node->stop('fast');
is($http->get("$base/healthz")->{status}, 503, 'cluster stopped: /healthz 503');
$r = post('/partoo', $rbody, 'x-partoo-signature-v1' => $rsig);
is($r->{status}, 503, 'cluster stopped: POST 503');
$node->start;
$r = post('/partoo', $rbody, 'x-partoo-signature-v1' => $rsig);
is($r->{status}, 200, 'cluster started again: the daemon reconnects, 200');
is($http->get("$base/healthz")->{status}, 200, '/healthz 200 again');
is(status_of($rsent), 'delivered Success', 'the webhook is committed');
$r = $http->get("$base/metrics");
like($r->{content}, qr/^partoo_webhookd_db_errors_total [1-9]\d*$/m, 'database errors counted');
like($r->{content}, qr/^partoo_webhookd_requests_total\{route="partoo",code="503"\} 1$/m,
	'the 503 counted');

#
# 5. SIGTERM
#
kill 'TERM', $pid;
waitpid($pid, 0);
is($?, 0, 'SIGTERM: exit 0');
my $text = slurp_file($log);
like($text, qr/received SIGTERM, stopping\n.*stopped\n\z/s, 'it says it stopped');
like($text, qr/database connection lost|could not connect/, 'the database trouble was logged');
ok(index($text, $sig) < 0 && index($text, 'dispatch-sekrit') < 0 && index($text, 'hello') < 0,
	'no body, signature or key in the log');
note($text);
$pid = 0;

$node->stop;
done_testing();
