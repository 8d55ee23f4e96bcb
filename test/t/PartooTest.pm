# test/t/PartooTest.pm: helpers for partoo's TAP tests.
#
# Starts the mock Partoo server, makes PostgreSQL::Test::Cluster nodes with
# partoo preloaded and pointed at it, and reads what the mock received.
# Every process started here is stopped at exit.
package PartooTest;

use strict;
use warnings;

use Exporter 'import';
use File::Temp qw(tempfile);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(start_mock mock_get mock_post mock_stats mock_accepted
  partoo_conf partoo_node wait_for worker_pid);

my $repo = $ENV{PARTOO_REPO} or die "PARTOO_REPO is not set";
my @mocks;

END
{
	kill 'TERM', $_->{pid} for @mocks;
}

# start_mock(@args): a mock server on 127.0.0.1, returned as a hash
sub start_mock
{
	my (@args) = @_;
	my (undef, $portfile) = tempfile();
	unlink $portfile;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>', '/dev/null');
		exec("$repo/test/mock/partoo-mock", '--port', '0', '--port-file',
			$portfile, '--quiet', @args)
		  or die "exec: $!";
	}
	for (1 .. 200)
	{
		last if -s $portfile;
		usleep(25_000);
	}
	die "mock server did not start" unless -s $portfile;
	open(my $fh, '<', $portfile) or die;
	my $port = <$fh>;
	close $fh;
	unlink $portfile;
	chomp $port;
	my $mock = { pid => $pid, port => $port, url => "http://127.0.0.1:$port" };
	push @mocks, $mock;
	return $mock;
}

sub mock_get
{
	my ($mock, $path) = @_;
	my $out = `curl -s --max-time 30 $mock->{url}$path`;
	die "curl failed for $path" if $? != 0;
	return $out;
}

sub mock_post
{
	my ($mock, $path, $json) = @_;
	$json //= '{}';
	my ($fh, $file) = tempfile();
	print $fh $json;
	close $fh;
	my $out = `curl -s --max-time 30 -X POST -H 'Content-Type: application/json' --data-binary \@$file $mock->{url}$path`;
	unlink $file;
	die "curl failed for $path" if $? != 0;
	return $out;
}

sub mock_stats
{
	my ($mock) = @_;
	return decode_json(mock_get($mock, '/_mock/stats'));
}

# The accepted records: list of hashes (kind, message_id, conversation_id,
# content_type, key, time_us, content)
sub mock_accepted
{
	my ($mock) = @_;
	my @rows;
	for my $line (split /\n/, mock_get($mock, '/_mock/accepted'))
	{
		my @f = split /\t/, $line, -1;
		push @rows,
		  {
			kind => $f[0],
			message_id => $f[1],
			conversation_id => $f[2],
			content_type => $f[3],
			key => $f[4],
			time_us => $f[5],
			content => $f[6]
		  };
	}
	return \@rows;
}

# partoo_conf($mock, extra conf lines...): the postgresql.conf lines of a
# node with partoo preloaded and pointed at the mock
sub partoo_conf
{
	my ($mock, @conf) = @_;
	return join("\n",
		"shared_preload_libraries = 'partoo'",
		"partoo.base_url = '$mock->{url}/v2'",
		"partoo.api_key = 'test-key'",
		"partoo.database = 'postgres'",
		"partoo.requests_per_minute = 0",
		"partoo.retry_base = '20ms'",
		"partoo.retry_max = '200ms'",
		"partoo.timeout = '5s'",
		"partoo.lease = '10s'",
		@conf) . "\n";
}

# partoo_node($name, $mock, extra conf lines...): a started node with the
# extension created in database postgres
sub partoo_node
{
	my ($name, $mock, @conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', partoo_conf($mock, @conf));
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION partoo');
	return $node;
}

# wait_for($node, $sql, $timeout_s): poll until $sql returns 't'
sub wait_for
{
	my ($node, $sql, $timeout) = @_;
	$timeout //= 120;
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		my ($ret, $out) = $node->psql('postgres', $sql);
		return 1 if $ret == 0 && $out eq 't';
		usleep(100_000);
	}
	return 0;
}

sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM partoo.worker_status() WHERE pid IS NOT NULL");
}

1;
