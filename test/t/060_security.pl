# 060_security.pl: the API key never reaches the server log, even at
# log_min_messages = debug5 with log_statement = all, when keys are set the
# documented way; TLS verification is on and partoo.ca_file makes a
# self-signed server trusted; the privilege matrix holds.
use strict;
use Cwd ();
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $key = 'sekrit-default-key-5a7e';
my $acct_key = 'sekrit-account-key-93c1';
# absolute: from 17 on tempdir() is relative to the test's directory, and the
# server, which reads these files, runs in its data directory
my $tmp = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir());

# a self-signed certificate for 127.0.0.1
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
	  . "-addext subjectAltName=IP:127.0.0.1 -keyout $tmp/key.pem -out $tmp/cert.pem "
	  . ">/dev/null 2>&1") == 0 or die "openssl failed";

my $mock = start_mock('--api-key', $key, '--api-key', $acct_key);
my $tls = start_mock('--api-key', $key, '--tls-cert', "$tmp/cert.pem", '--tls-key', "$tmp/key.pem",
	'--first-id', '9000001');
(my $tls_url = $tls->{url}) =~ s/^http:/https:/;

my $node = partoo_node('security', $mock,
	"partoo.api_key = '$key'",
	"log_min_messages = debug5",
	"log_statement = 'all'",
	"log_error_verbosity = verbose");

# the documented way to store an account key: no logging in that session
$node->safe_psql('postgres', qq{
	SET log_statement = 'none';
	INSERT INTO partoo.accounts (name, api_key, base_url) VALUES ('acct', '$acct_key', '$mock->{url}/v2');
	INSERT INTO partoo.accounts (name, api_key, base_url) VALUES ('tls', '$key', '$tls_url/v2');
	INSERT INTO partoo.accounts (name, api_key, base_url) VALUES ('wrong', 'sekrit-wrong-key-0000', '$mock->{url}/v2');
});

# use the keys every way: sync, async, errors, a 401, an in-flight cancel
ok($node->safe_psql('postgres', "SELECT partoo_send(100, 'sync default') > 0") eq 't', 'sync send with the default key');
ok($node->safe_psql('postgres', "SELECT partoo_send(101, 'sync account', account => 'acct') > 0") eq 't', 'sync send with an account key');
$node->safe_psql('postgres', "SELECT partoo_enqueue(102, 'async ' || i, account => CASE WHEN i % 2 = 0 THEN 'acct' END) FROM generate_series(1, 20) i");
ok(wait_for($node, "SELECT count(*) = 20 FROM partoo.messages WHERE content LIKE 'async%' AND state = 'sent'", 30), 'worker sends with both keys');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT partoo_send(103, 'x', account => 'wrong')");
like($err, qr/authentication with Partoo API failed/, 'a wrong key is a 401 error');
($ret, $out, $err) = $node->psql('postgres', "SET statement_timeout = '100ms'; SELECT partoo_send(5003000, 'slow')");
like($err, qr/canceling statement due to statement timeout/, 'cancel mid-request');

# pg_stat_activity while a request is in flight
my $bg = $node->background_psql('postgres');
$bg->query_until(qr/start/, "\\echo start\nSELECT partoo_send(5001500, 'in flight');\n");
sleep(0.5);
my $activity = $node->safe_psql('postgres', "SELECT string_agg(coalesce(query, '') || ' ' || coalesce(application_name, ''), ' ') FROM pg_stat_activity");
unlike($activity, qr/sekrit/, 'pg_stat_activity never shows a key');
$bg->quit;

# TLS: refused without the CA, accepted with partoo.ca_file
($ret, $out, $err) = $node->psql('postgres', "SELECT partoo_send(104, 'tls', account => 'tls')");
like($err, qr/(could not complete request|could not connect) to Partoo API/, 'a self-signed server is refused by default');
like($err, qr/certificate/i, 'because of its certificate');
($ret, $out, $err) = $node->psql('postgres', "SET partoo.ca_file = '$tmp/cert.pem'; SELECT partoo_send(104, 'tls', account => 'tls') >= 9000001");
is($out, 't', 'trusted with partoo.ca_file') or diag($err);

# the settings hide the key from others
$node->safe_psql('postgres', "CREATE ROLE plain LOGIN; CREATE ROLE sender LOGIN;
	GRANT EXECUTE ON FUNCTION partoo_send(bigint, text, text, text, bytea, text, text, text, jsonb) TO sender;
	GRANT EXECUTE ON FUNCTION partoo_enqueue(bigint, text, text, text, bytea, text, text, text, text, timestamptz, jsonb) TO sender;");
($ret, $out, $err) = $node->psql('postgres', "SELECT setting FROM pg_settings WHERE name = 'partoo.api_key'", extra_params => ['-U', 'plain']);
is($out, '', 'pg_settings hides partoo.api_key from a plain role');
($ret, $out, $err) = $node->psql('postgres', "SHOW partoo.api_key", extra_params => ['-U', 'sender']);
like($err, qr/must be superuser|permission denied to examine/, 'SHOW refuses it to a sender');
($ret, $out, $err) = $node->psql('postgres', "SELECT partoo_enqueue(105, 'by sender') > 0", extra_params => ['-U', 'sender']);
is($out, 't', 'a role granted EXECUTE can enqueue without table privileges');

# invalid UTF-8 can only come from a SQL_ASCII database: refused, not sent
$node->safe_psql('postgres', "CREATE DATABASE ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
$node->safe_psql('ascii', 'CREATE EXTENSION partoo');
{
	local $ENV{PGCLIENTENCODING} = 'SQL_ASCII';
	($ret, $out, $err) = $node->psql('ascii', "SELECT partoo_send(106, E'caf\\xe9 ok')");
}
like($err, qr/invalid byte sequence for encoding "UTF8"|not valid UTF-8/, 'invalid UTF-8 is refused before anything is sent');
($ret, $out, $err) = $node->psql('ascii', "SELECT count(*) FROM partoo.messages");
is($out, '0', 'and nothing was recorded');

$node->stop;
my $log = slurp_file($node->logfile);
unlike($log, qr/sekrit/, 'no API key anywhere in the server log at debug5 with log_statement = all');
like($log, qr/partoo_send/, 'while statements were logged');
done_testing();
