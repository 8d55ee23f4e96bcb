# 360_http2.pl: over HTTP/2 the worker multiplexes its window onto a few
# connections, and over HTTP/1.1 it still opens one per request in flight.
#
# The mock speaks HTTP/1.1 only, so nginx (Debian's, TLS and HTTP/2) stands
# in front of it; its access log gives each request's protocol and client
# connection.  libcurl opens a connection for every request that finds the
# connections of a host known to multiplex full of streams: without a
# limit, a window of 400 started at once opened hundreds of connections,
# each used once.  The worker limits the connections to a host whose
# answers come over HTTP/2 (max_in_flight / 32 + 1), and not those to a
# host that speaks HTTP/1.1, whether that one answered before or after.
# Skipped when nginx is not installed.
use strict;
use warnings;
use Cwd;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my ($nginx) = grep { -x $_ } ('/usr/sbin/nginx', '/usr/bin/nginx');
plan skip_all => 'nginx is not installed' unless $nginx;

my $cap = 400;
my $limit = int(($cap + 31) / 32) + 1;
my $tmp = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir());
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
	  . "-addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout $tmp/key.pem -out $tmp/cert.pem "
	  . ">/dev/null 2>&1") == 0 or die "openssl failed";

my $mock = start_mock('--api-key', 'test-key', '--api-key-prefix', 'key-', '--threads', '4');
my $behind = start_mock('--api-key-prefix', 'key-', '--threads', '4', '--latency-ms', '50',
	'--first-id', '7000000001');
my $far = start_mock('--api-key-prefix', 'key-', '--threads', '4', '--latency-ms', '200',
	'--first-id', '8000000001');

# nginx: TLS and HTTP/2 on a free port, proxying to $behind over keep-alive
my $port = PostgreSQL::Test::Cluster::get_free_port();
mkdir "$tmp/nginx";
mkdir "$tmp/nginx/tmp";
my $conf = slurp_file("$ENV{PARTOO_REPO}/test/nginx-h2.conf.in");
my %at = (DIR => "$tmp/nginx", PORT => $port, UPSTREAM_PORT => $behind->{port},
	CERT => "$tmp/cert.pem", KEY => "$tmp/key.pem");
$conf =~ s/@(\w+)@/$at{$1} \/\/ die "no value for \@$1\@"/ge;
open(my $fh, '>', "$tmp/nginx/nginx.conf") or die;
print $fh $conf;
close $fh;
my $nginx_pid = fork();
die "fork: $!" unless defined $nginx_pid;
if ($nginx_pid == 0)
{
	open(STDERR, '>>', "$tmp/nginx/stderr.log");
	exec($nginx, '-e', "$tmp/nginx/error.log", '-p', "$tmp/nginx", '-c', "$tmp/nginx/nginx.conf")
	  or die "exec: $!";
}
END { kill 'TERM', $nginx_pid if $nginx_pid; }
my $up = 0;
for (1 .. 100)
{
	$up = system("curl -s -o /dev/null --cacert $tmp/cert.pem https://127.0.0.1:$port/_mock/health") == 0;
	last if $up;
	usleep(50_000);
}
ok($up, 'nginx answers over TLS') or BAIL_OUT('nginx did not start: ' . slurp_file("$tmp/nginx/error.log"));

my $node = partoo_node('http2', $mock,
	"partoo.max_in_flight = $cap",
	"partoo.ca_file = '$tmp/cert.pem'");
$node->safe_psql('postgres', qq{
	INSERT INTO partoo.accounts (name, api_key, base_url, requests_per_minute) VALUES
	  ('h2', 'key-h2', 'https://127.0.0.1:$port/v2', 0),
	  ('h2-new', 'key-h2new', 'https://localhost:$port/v2', 0),
	  ('h1', 'key-h1', '$far->{url}/v2', 0);
});
sleep(1);

# distinct client connections nginx saw and the protocols of the requests,
# from line $from of its log on
my $nginx_log = sub {
	my ($from) = @_;
	my (%conns, %protos);
	my @lines = split /\n/, slurp_file("$tmp/nginx/access.log");
	for my $line (@lines[ ($from // 0) .. $#lines ])
	{
		my ($proto, $conn, $status, $uri) = split ' ', $line;
		next unless defined $uri && $uri eq '/v2/messages';
		$conns{$conn}++;
		$protos{$proto}++;
	}
	return (scalar(keys %conns), \%protos, scalar(@lines));
};

# the largest in_flight seen until $done_sql holds
my $watch = sub {
	my ($done_sql, $timeout) = @_;
	my $max = 0;
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		my $row = $node->safe_psql('postgres',
			"SELECT in_flight || ' ' || ($done_sql) FROM partoo.worker_status() WHERE pid IS NOT NULL");
		my ($in, $done) = split ' ', $row;
		next unless defined $done;
		$max = $in if $in > $max;
		return ($max, 1) if $done eq 'true';
		usleep(20_000);
	}
	return ($max, 0);
};

# 0. an answer over HTTP/1.1 first, from another host (the limit used to be
# lifted for every host by one)
$node->safe_psql('postgres', "SELECT partoo_enqueue(12345, 'h1-first', account => 'h1')");
ok(wait_for($node, "SELECT state = 'sent' FROM partoo.messages WHERE content = 'h1-first'", 60),
	'a first message over HTTP/1.1');

# 1. HTTP/2: a first message, so that the protocol is known, then a window
# of $cap at once, over and over
$node->safe_psql('postgres', "SELECT partoo_enqueue(12345, 'h2-first', account => 'h2')");
ok(wait_for($node, "SELECT state = 'sent' FROM partoo.messages WHERE content = 'h2-first'", 60),
	'the first message went through nginx');
my $n = 4000;
$node->safe_psql('postgres',
	"SELECT count(partoo_enqueue(12345, 'h2-' || i, account => 'h2')) FROM generate_series(1, $n) i");
my ($max, $done) = $watch->(
	"(SELECT count(*) FROM partoo.messages WHERE content LIKE 'h2-%' AND state = 'sent') = $n + 1", 120);
ok($done, "all $n messages sent over HTTP/2");
cmp_ok($max, '>', 128, "more requests in flight at once ($max) than one connection carries (128 streams)");
my ($conns, $protos, $lines) = $nginx_log->();
is_deeply($protos, { 'HTTP/2.0' => $n + 1 }, 'every request was HTTP/2')
  or diag(explain($protos));
cmp_ok($conns, '<=', $limit + 1,
	"over at most $limit connections, plus the one the protocol was learnt on ($conns)");
my $stats = mock_stats($behind);
is($stats->{accepted_distinct_content}, $n + 1, 'each message accepted once');

# 1b. a host not answered yet, with the window already large: the first
# request goes alone, and the others wait for its answer (else each would
# open a connection before the protocol is known)
my $m = 2000;
$node->safe_psql('postgres',
	"SELECT count(partoo_enqueue(12345, 'new-' || i, account => 'h2-new')) FROM generate_series(1, $m) i");
($max, $done) = $watch->(
	"(SELECT count(*) FROM partoo.messages WHERE content LIKE 'new-%' AND state = 'sent') = $m", 120);
ok($done, "all $m messages to a new host sent");
cmp_ok($max, '>', 128, "with more requests in flight at once ($max) than one connection carries");
($conns, $protos) = $nginx_log->($lines);
is_deeply($protos, { 'HTTP/2.0' => $m }, 'every request was HTTP/2') or diag(explain($protos));
cmp_ok($conns, '<=', $limit + 1, "over at most $limit connections, plus the probe's ($conns)");
is(mock_stats($behind)->{accepted_distinct_content}, $n + 1 + $m, 'each message accepted once');

# 2. HTTP/1.1 again, after HTTP/2: the requests in flight get a connection
# each
$n = 1000;
$node->safe_psql('postgres',
	"SELECT count(partoo_enqueue(12345, 'h1-' || i, account => 'h1')) FROM generate_series(1, $n) i");
($max, $done) = $watch->(
	"(SELECT count(*) FROM partoo.messages WHERE content LIKE 'h1-%' AND state = 'sent') = $n + 1", 120);
ok($done, "all $n messages sent over HTTP/1.1");
$stats = mock_stats($far);
is($stats->{accepted_distinct_content}, $n + 1, 'each message accepted once');
cmp_ok($stats->{v2_connections}, '>', 2 * $limit,
	"over HTTP/1.1 no such limit: $stats->{v2_connections} connections, more than $limit");
cmp_ok($stats->{v2_connections}, '<=', $cap + 1, 'and no more than the window');

is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.messages WHERE state <> 'sent'"),
	'0', 'nothing failed');
$node->stop;
done_testing();
