# 065_log_redaction.pl: no API key reaches the server log, however a DBA
# sets it, at log_statement = all, log_min_error_statement = debug5 and
# log_min_messages = debug5, with each log destination (stderr without the
# collector, csvlog and jsonlog with it).  Every way of setting a key is
# followed by a use of that key (the mock accepts only the keys listed
# here, and records which one came), so redaction cannot work by breaking
# the key; and the statements must still be in the log, so the test cannot
# pass by logging nothing.
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my @dests = ('stderr', 'csvlog', 'jsonlog');

# key($dest, $way): a distinctive key; bare words (SET ... TO word) need an
# identifier, the others have dashes like real keys
sub key
{
	my ($dest, $way) = @_;
	my $k = "zk-$dest-$way-7f3q";
	$k =~ tr/-/_/ if $way =~ /bare/;
	return $k;
}

# the ways that store a key, each followed by a use of it below
my @set_ways = qw(alter_system set set_e set_bare set_config alter_database
  alter_role insert update update_dollar prepared do_block insert_search_path
  dispatch_set dispatch_alter_system);
# statements that fail and carry a key (nothing is stored)
my @fail_ways = qw(syntax trigger_check check unique not_null wrong_type
  dq_mistake do_unique);

my $lazy_key = 'zk-lazy-load-7f3q';
my @mock_keys = ('test-key', $lazy_key);
for my $d (@dests)
{
	push @mock_keys, key($d, $_) for @set_ways;
}
my $mock = start_mock(map { ('--api-key', $_) } @mock_keys);
my $url = "$mock->{url}/v2";

my $conv = 6500;

# send($node, $key, $sql_prefix, $account): send one message in a session
# that first runs $sql_prefix; true when the mock accepted it with $key
sub sent_with
{
	my ($node, $key, $prefix, $account) = @_;
	$conv++;
	my $acct = defined $account ? ", account => '$account'" : '';
	my ($ret, $out, $err) = $node->psql('postgres',
		"$prefix SELECT partoo_send($conv, 'redaction test $conv'$acct) > 0");
	return 0 unless $ret == 0 && $out =~ /t$/;
	my @rows = grep { $_->{conversation_id} eq $conv } @{ mock_accepted($mock) };
	return @rows == 1 && $rows[0]->{key} eq $key;
}

# a dispatch status notification, accepted only with the right key
sub dispatch_body
{
	my ($id) = @_;
	return '{"event":"MESSAGE_STATUS","module":"DISPATCH_API","dispatchId":"'
	  . $id
	  . '","messageId":"m-1","messagePart":1,"messageTotalParts":1,"channel":"WHATSAPP",'
	  . '"channelIdentifier":"+33600000065","status":"DELIVERED","statusOrder":0,'
	  . '"statusDate":"2024-05-01T10:00:00Z"}';
}

sub setting_is
{
	my ($node, $name, $value) = @_;
	return wait_for($node,
		"SELECT md5(current_setting('$name')) = '" . md5_hex($value) . "'", 30);
}

for my $dest (@dests)
{
	my $node = partoo_node(
		"redact_$dest", $mock,
		"log_statement = 'all'",
		"log_min_error_statement = debug5",
		"log_min_messages = debug5",
		"log_destination = '$dest'",
		"logging_collector = " . ($dest eq 'stderr' ? 'off' : 'on'),
		"log_directory = 'log'");
	my %k = map { ($_ => key($dest, $_)) } @set_ways, @fail_ways;
	my ($ret, $out, $err);

	# ALTER SYSTEM, then the reload (the postmaster logs "parameter ...
	# changed to ..." for it)
	$node->safe_psql('postgres', "ALTER SYSTEM SET partoo.api_key = '$k{alter_system}'");
	$node->safe_psql('postgres', "SELECT pg_reload_conf()");
	ok(setting_is($node, 'partoo.api_key', $k{alter_system}), "$dest: ALTER SYSTEM and reload set the key");
	ok(sent_with($node, $k{alter_system}, ''), "$dest: a message is sent with the key set by ALTER SYSTEM");

	# SET, in every spelling, in the session that sends
	ok(sent_with($node, $k{set}, "SET partoo.api_key = '$k{set}';"), "$dest: SET");
	ok(sent_with($node, $k{set_e}, "SET partoo.api_key = E'$k{set_e}';"), "$dest: SET with an E'' string");
	ok(sent_with($node, $k{set_bare}, "SET partoo.api_key TO $k{set_bare};"), "$dest: SET with a bare word");
	ok(sent_with($node, $k{set_config}, "SELECT set_config('partoo.api_key', '$k{set_config}', false);"),
		"$dest: set_config()");

	# a per-database setting, used by a new session
	$node->safe_psql('postgres', "ALTER DATABASE postgres SET partoo.api_key = '$k{alter_database}'");
	ok(sent_with($node, $k{alter_database}, ''), "$dest: ALTER DATABASE SET");
	$node->safe_psql('postgres', "ALTER DATABASE postgres RESET partoo.api_key");
	$node->safe_psql('postgres', "ALTER ROLE CURRENT_USER SET partoo.api_key = '$k{alter_role}'");
	ok(sent_with($node, $k{alter_role}, ''), "$dest: ALTER ROLE SET");
	$node->safe_psql('postgres', "ALTER ROLE CURRENT_USER RESET partoo.api_key");

	# account keys
	$node->safe_psql('postgres',
		"INSERT INTO partoo.accounts (name, api_key, base_url) VALUES ('acct', '$k{insert}', '$url')");
	ok(sent_with($node, $k{insert}, '', 'acct'), "$dest: INSERT INTO partoo.accounts");
	$node->safe_psql('postgres', "UPDATE partoo.accounts SET api_key = '$k{update}' WHERE name = 'acct'");
	ok(sent_with($node, $k{update}, '', 'acct'), "$dest: UPDATE partoo.accounts");
	$node->safe_psql('postgres',
		"UPDATE partoo.accounts SET api_key = \$k\$$k{update_dollar}\$k\$ WHERE name = 'acct'");
	ok(sent_with($node, $k{update_dollar}, '', 'acct'), "$dest: UPDATE with a dollar-quoted key");
	# psql sends these as two statements: the EXECUTE names no key column
	$node->safe_psql('postgres',
		"PREPARE set_key(text) AS UPDATE partoo.accounts SET api_key = \$1 WHERE name = 'acct';
		 EXECUTE set_key('$k{prepared}');");
	ok(sent_with($node, $k{prepared}, '', 'acct'), "$dest: EXECUTE of a prepared UPDATE");
	$node->safe_psql('postgres',
		"DO \$\$ BEGIN UPDATE partoo.accounts SET api_key = '$k{do_block}' WHERE name = 'acct'; END \$\$");
	ok(sent_with($node, $k{do_block}, '', 'acct'), "$dest: UPDATE in a DO block");
	$node->safe_psql('postgres',
		"SET search_path = partoo, public;
		 INSERT INTO accounts VALUES ('acct2', '$k{insert_search_path}', '$url');");
	ok(sent_with($node, $k{insert_search_path}, '', 'acct2'),
		"$dest: INSERT INTO accounts without a column list, partoo on the search path");

	# the dispatch webhook's key: set, then used as the signature argument
	is( $node->safe_psql('postgres',
			"SET partoo.dispatch_webhook_key = '$k{dispatch_set}';
			 SELECT partoo_ingest_webhook('" . dispatch_body("d-$dest-1") . "', '$k{dispatch_set}');"),
		'applied', "$dest: SET partoo.dispatch_webhook_key, and the key accepted");
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET partoo.dispatch_webhook_key = '$k{dispatch_alter_system}'");
	$node->safe_psql('postgres', "SELECT pg_reload_conf()");
	ok(setting_is($node, 'partoo.dispatch_webhook_key', $k{dispatch_alter_system}),
		"$dest: ALTER SYSTEM SET partoo.dispatch_webhook_key and reload");
	is( $node->safe_psql('postgres',
			"SELECT partoo_ingest_webhook('" . dispatch_body("d-$dest-2") . "', '$k{dispatch_alter_system}')"),
		'applied', "$dest: the dispatch key set by ALTER SYSTEM is accepted");

	# failing statements that carry a key
	my %fail = (
		syntax => "INSERT INTO partoo.accounts (name, api_key, base_url) VALUES ('bad1', '$k{syntax}', '$url'",
		trigger_check => "INSERT INTO partoo.accounts (name, api_key, base_url) VALUES ('bad2', '$k{trigger_check}', 'ftp://nowhere')",
		# without triggers (as pg_restore --disable-triggers or a logical
		# replica runs), the CHECK constraint's DETAIL shows the row
		check => "SET session_replication_role = replica;
			INSERT INTO partoo.accounts (name, api_key, base_url) VALUES ('bad5', '$k{check}', 'ftp://nowhere')",
		unique => "INSERT INTO partoo.accounts (name, api_key, base_url) VALUES ('acct', '$k{unique}', '$url')",
		not_null => "INSERT INTO partoo.accounts (name, api_key) VALUES (NULL, '$k{not_null}')",
		wrong_type => "INSERT INTO partoo.accounts (name, requests_per_minute, api_key) VALUES ('bad3', '$k{wrong_type}', 'x')",
		dq_mistake => "INSERT INTO partoo.accounts (name, api_key) VALUES ('bad4', \"$k{dq_mistake}\")",
		do_unique => "DO \$\$ BEGIN INSERT INTO partoo.accounts (name, api_key, base_url) VALUES ('acct', '$k{do_unique}', '$url'); END \$\$");
	for my $way (@fail_ways)
	{
		($ret, $out, $err) = $node->psql('postgres', $fail{$way});
		isnt($ret, 0, "$dest: the $way statement fails");
		ok(index($err, $k{$way}) < 0, "$dest: and its error does not show the key")
		  if $way =~ /check|not_null|unique/;
	}

	# the default key still works after all that
	ok(sent_with($node, $k{alter_system}, ''), "$dest: the ALTER SYSTEM key is still the default");

	$node->stop;

	# every file the server logged to
	my @files = ($node->logfile);
	my $logdir = $node->data_dir . '/log';
	push @files, glob("$logdir/*") if -d $logdir;
	my $log = '';
	$log .= slurp_file($_) for @files;
	my $ext = { stderr => qr/\.log$/, csvlog => qr/\.csv$/, jsonlog => qr/\.json$/ }->{$dest};
	ok((grep { $_ =~ $ext } @files), "$dest: the server wrote a $dest file") if $dest ne 'stderr';

	my @found = grep { index($log, $k{$_}) >= 0 } sort keys %k;
	is("@found", '', "$dest: no key in any log file (" . scalar(@files) . " files)");
	ok($log !~ /zk[-_]\Q$dest\E/, "$dest: not even part of one");

	# the statements were logged, keys and all redacted
	ok($log =~ qr/statement: ALTER SYSTEM SET partoo\.api_key/, "$dest: ALTER SYSTEM was logged");
	ok($log =~ qr/parameter \W*partoo\.api_key\W* changed to/, "$dest: the reload's change was logged");
	ok($log =~ qr/statement: SET partoo\.api_key = /, "$dest: SET was logged");
	ok($log =~ qr/statement: INSERT INTO partoo\.accounts \(name, api_key, base_url\) VALUES/, "$dest: INSERT was logged");
	ok($log =~ qr/statement: UPDATE partoo\.accounts SET api_key = /, "$dest: UPDATE was logged");
	ok($log =~ qr/statement: EXECUTE set_key\(/, "$dest: EXECUTE was logged");
	ok($log =~ qr/Failing row contains/, "$dest: the check violation was logged");
	ok($log =~ qr/duplicate key value violates unique constraint/, "$dest: the unique violation was logged");
	ok($log =~ qr/\[redacted\]/, "$dest: with its keys redacted");
	ok($log =~ qr/redacted statement: INSERT INTO partoo\.accounts \(name, api_key, base_url\) VALUES/,
		"$dest: and the STATEMENT of an error on partoo.accounts logged redacted");
}

# Not preloaded: only a session that has loaded partoo (LOAD, CREATE
# EXTENSION, a first call) is covered, from then on; README says so
{
	my $node = PostgreSQL::Test::Cluster->new('redact_lazy');
	$node->init;
	$node->append_conf(
		'postgresql.conf', join("\n",
			"log_statement = 'all'",
			"log_min_error_statement = debug5",
			"log_min_messages = debug5",
			"partoo.base_url = '$url'",
			"partoo.requests_per_minute = 0")
		  . "\n");
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION partoo');
	ok(sent_with($node, $lazy_key, "LOAD 'partoo'; SET partoo.api_key = '$lazy_key';"),
		'not preloaded: a session that loaded partoo sets a key and sends with it');
	$node->stop;
	my $log = slurp_file($node->logfile);
	ok(index($log, $lazy_key) < 0, 'not preloaded: that session logged no key');
	ok($log =~ /statement: SET partoo\.api_key = /, 'not preloaded: while its statements were logged');
}

done_testing();
