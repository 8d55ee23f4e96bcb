# 110_account_names.pl: every account name partoo.accounts accepts is one
# the worker serves, with its own key, including multibyte names that share
# long prefixes; names it cannot serve are refused when inserted, with a
# clear error that never shows the key.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $mock = start_mock('--api-key', 'test-key', '--api-key-prefix', 'key-');
my $node = partoo_node('names', $mock);
ok(wait_for($node, "SELECT count(*) = 1 FROM partoo.worker_status() WHERE pid IS NOT NULL", 30),
	'worker is running');

# name => key.  The first two are the names of the report (81 bytes each,
# the same first 80); then 63 characters of 4 bytes that differ only in the
# last one (249 bytes, the same first 248), and short ones.
my %accounts = (
	"repeat('é', 40) || 'A'" => 'key-e40a',
	"repeat('é', 40) || 'B'" => 'key-e40b',
	"repeat(U&'\\+01F600', 62) || 'A'" => 'key-smiley-a',
	"repeat(U&'\\+01F600', 62) || 'B'" => 'key-smiley-b',
	"repeat('x', 63)" => 'key-x63',
	"'short'" => 'key-short');
my $i = 0;
my %key_of;    # content prefix => key
for my $name (sort keys %accounts)
{
	$i++;
	$node->safe_psql('postgres', "INSERT INTO partoo.accounts (name, api_key, base_url)
		VALUES ($name, '$accounts{$name}', '$mock->{url}/v2')");
	$node->safe_psql('postgres',
		"SELECT count(partoo_enqueue(20, 'acct$i msg ' || g, account => $name)) FROM generate_series(1, 20) g");
	$key_of{"acct$i"} = $accounts{$name};
}
is($node->safe_psql('postgres', "SELECT max(octet_length(name)) FROM partoo.accounts"),
	'249', 'the longest name has 249 bytes');
ok(wait_for($node, "SELECT count(*) = 120 FROM partoo.messages WHERE content LIKE 'acct%' AND state = 'sent'", 30),
	'every message of every account was sent');
is($node->safe_psql('postgres', "SELECT count(*) FROM partoo.outbox"), '0', 'nothing is left queued');
is($node->safe_psql('postgres', "SELECT coalesce(last_error, '') FROM partoo.worker_status()"),
	'', 'the worker reports no error');

my ($right, $wrong) = (0, 0);
for my $r (@{ mock_accepted($mock) })
{
	next unless $r->{content} =~ /^(acct\d+) msg /;
	if ($r->{key} eq $key_of{$1}) { $right++ } else { $wrong++ }
}
is("$right/$wrong", '120/0', 'each message went out with its own account\'s key');

# messages to accounts that share a long prefix, in one transaction: the
# existence of each is checked, not assumed from the previous name
my ($ret, $out, $err) = $node->psql('postgres', "BEGIN;
	SELECT partoo_enqueue(20, 'exists', account => repeat(U&'\\+01F600', 62) || 'A');
	SELECT partoo_enqueue(20, 'does not exist', account => repeat(U&'\\+01F600', 62) || 'C');
	COMMIT;");
like($err, qr/account ".*C" does not exist/, 'an account that does not exist is refused, whatever the previous name');

# what cannot be served is refused at INSERT, with a clear error
($ret, $out, $err) = $node->psql('postgres',
	"INSERT INTO partoo.accounts (name, api_key) VALUES (repeat('é', 64), 'key-secret-64')",
	extra_params => ['-v', 'VERBOSITY=verbose']);
like($err, qr/ERROR:  22023: account name is too long/, 'a name of 64 characters is refused (22023)');
like($err, qr/DETAIL:  Account names have at most 63 characters; this one has 64\./, 'the detail says how long it is');
like($err, qr/HINT:  /, 'with a hint');
unlike($err, qr/key-secret/, 'the error never shows the API key');
for my $bad (
	[ "'', 'key-secret-1'", 'empty name' ],
	[ "'n1', ''", 'empty key' ],
	[ "'n2', 'key-secret-2', 'ftp://example.com'", 'base URL that is not http(s)' ])
{
	($ret, $out, $err) = $node->psql('postgres',
		"INSERT INTO partoo.accounts (name, api_key" . ($bad->[0] =~ /ftp/ ? ', base_url' : '') . ") VALUES ($bad->[0])");
	like($err, qr/ERROR:  /, "$bad->[1] is refused");
	unlike($err, qr/key-secret/, "and the error does not show the key ($bad->[1])");
}
($ret, $out, $err) = $node->psql('postgres',
	"INSERT INTO partoo.accounts (name, api_key, requests_per_minute) VALUES ('n3', 'key-secret-3', -1)");
unlike($err, qr/key-secret/, 'a negative rate limit is refused without showing the key');
($ret, $out, $err) = $node->psql('postgres',
	"UPDATE partoo.accounts SET name = repeat('z', 70) WHERE name = 'short'");
like($err, qr/account name is too long/, 'renaming to a name too long is refused too');

$node->stop;
done_testing();
