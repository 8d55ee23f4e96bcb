# 070_valgrind.pl: the worker drains 20,000 messages, with faults injected,
# under valgrind; no block allocated by partoo's code is definitely lost.
#
# The server runs from a private bin directory whose "postgres" is a
# wrapper that execs the real one under valgrind (forked backends and the
# worker are followed), started by a copy of pg_ctl in that directory.  Skipped when valgrind is missing.
use strict;
use Cwd ();
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;
use lib $ENV{PARTOO_REPO} . '/test/t';
use PartooTest;

my $n = $ENV{PARTOO_VALGRIND_MESSAGES} // 20000;
if (system('valgrind --version >/dev/null 2>&1') != 0)
{
	plan skip_all => 'valgrind is not installed';
}

# absolute: from 17 on tempdir() is relative to the test's directory, and the
# server, which reads these files, runs in its data directory
my $tmp = Cwd::abs_path(PostgreSQL::Test::Utils::tempdir());
my $real = `pg_config --bindir`;
chomp $real;
mkdir "$tmp/bin";
for my $f (glob("$real/*"))
{
	my $name = (split m{/}, $f)[-1];
	next if $name eq 'postgres';
	# NB: pg_ctl looks for postgres next to its own resolved path, so it
	# must be a copy, not a link; the others may stay links
	if ($name eq 'pg_ctl')
	{
		system('cp', $f, "$tmp/bin/$name") == 0 or die "cp failed";
	}
	else
	{
		symlink($f, "$tmp/bin/$name") or die "symlink: $!";
	}
}
open(my $w, '>', "$tmp/bin/postgres") or die;
print $w "#!/bin/sh\n"
  . "case \"\$1\" in -V|--version|-C|--describe-config|--single|--boot) exec $real/postgres \"\$@\";; esac\n"
  . "exec valgrind --quiet --trace-children=yes --leak-check=full --show-leak-kinds=definite "
  . "--errors-for-leak-kinds=definite --num-callers=30 --child-silent-after-fork=no "
  . "--log-file=$tmp/vg.%p.log $real/postgres \"\$@\"\n";
close $w;
chmod 0755, "$tmp/bin/postgres";
$ENV{PATH} = "$tmp/bin:$ENV{PATH}";

my $mock = start_mock('--api-key', 'test-key');
my $node = partoo_node('valgrind', $mock,
	"partoo.max_in_flight = 32",
	"partoo.max_attempts = 100",
	"partoo.timeout = '20s'",
	"partoo.lease = '120s'");
ok(wait_for($node, "SELECT count(*) = 1 FROM partoo.worker_status() WHERE pid IS NOT NULL", 120),
	'worker runs under valgrind');
mock_post($mock, '/_mock/faults', '{"rate_5xx":0.1,"rate_429":0.002,"retry_after":1,"rate_drop":0.02,"rate_delay":0.02,"delay_ms":50}');
$node->safe_psql('postgres',
	"SELECT count(partoo_enqueue(11, 'valgrind ' || i)) FROM generate_series(1, $n) i");
ok(wait_for($node, "SELECT count(*) = $n FROM partoo.messages WHERE state = 'sent'", 900),
	"all $n messages sent under valgrind");
my $worker = worker_pid($node);
$node->stop('fast');

# A record counts against partoo when, walking its stack from the top,
# partoo's own code comes before PostgreSQL's: the fault or the lost
# allocation is in partoo or in a library partoo called (libcurl, cJSON,
# OpenSSL), not in PostgreSQL code that merely runs inside the worker.
my $ours = qr/\((?:validate|request|response|ratelimit|partoo|http|message|store|send|enqueue|shmem|outbox|worker|webhook|webhook_parse|signature)\.c:\d+\)/;
my $report = '';
my $files = 0;
for my $f (glob("$tmp/vg.*.log"))
{
	$files++;
	my $text = slurp_file($f);
	for my $rec (split /\n(?===\d+== \n)/, $text)
	{
		next unless $rec =~ /definitely lost|Invalid (read|write|free)|uninitialised|Mismatched free/;
		for my $frame ($rec =~ /^==\d+==\s+(?:at|by) (.*)$/mg)
		{
			if ($frame =~ $ours)
			{
				$report .= "$f:\n$rec\n";
				last;
			}
			last if $frame =~ m{/bin/postgres\)};
		}
	}
}
ok(-e "$tmp/vg.$worker.log", "the worker's valgrind log exists ($files logs)");
note("worker log: " . (-s "$tmp/vg.$worker.log") . " bytes");
is($report, '', 'no definitely-lost block allocated by partoo');
diag($report) if $report;
done_testing();
