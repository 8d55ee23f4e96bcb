#!/usr/bin/perl
# test/bench/report.pl OUTDIR: turn the benchmark's OUTDIR/results.tsv and
# OUTDIR/meta.tsv (written by test/bench/run.sh) into the table printed at
# the end of the run, OUTDIR/results.txt (the same table) and
# OUTDIR/results.json.  Core Perl only.
use strict;
use warnings;
use JSON::PP;
use Encode ();

my $dir = shift or die "usage: report.pl OUTDIR\n";
my @cols = qw(scenario name figure value unit baseline baseline_value ratio target verdict note);

my (@meta, %meta);
if (open my $m, '<', "$dir/meta.tsv") {
	while (<$m>) {
		chomp;
		my ($k, $v) = split /\t/, $_, 2;
		next unless defined $k && $k ne '';
		push @meta, $k unless exists $meta{$k};
		$meta{$k} = $v // '';
	}
}

my @rows;
open my $r, '<', "$dir/results.tsv" or die "no $dir/results.tsv\n";
while (<$r>) {
	chomp;
	my @f = split /\t/, $_, -1;
	my %row;
	@row{@cols} = map { defined $_ ? $_ : '' } @f[0 .. $#cols];
	push @rows, \%row;
}
close $r;

my %order = (chart => 8.5, error => 9);
# by scenario; within one, in the order recorded, the correctness check last
my $seq = 0;
@rows = map { $_->[2] } sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] }
	map { [($_->{scenario} =~ /^\d+$/ ? $_->{scenario} : ($order{$_->{scenario}} // 9)),
		   ($_->{figure} =~ /^check:/ ? 1e6 : 0) + $seq++, $_] } @rows;

# a number for people: thousands separators, 3 significant digits below 100
sub human {
	my ($v) = @_;
	return $v unless defined $v && $v =~ /^-?\d+(\.\d+)?(e[-+]?\d+)?$/i;
	my $s;
	if ($v =~ /^-?\d+$/) {
		$s = $v;
		1 while $s =~ s/^(-?\d+)(\d{3})/$1,$2/;
	} elsif (abs($v) >= 100) {
		$s = sprintf '%.0f', $v;
		1 while $s =~ s/^(-?\d+)(\d{3})/$1,$2/;
	} elsif (abs($v) >= 10) {
		$s = sprintf '%.1f', $v;
	} elsif ($v == 0) {
		$s = '0';
	} else {
		$s = sprintf '%.3g', $v;
	}
	return $s;
}

sub ratio {
	my ($v) = @_;
	return '' unless defined $v && $v =~ /^-?[\d.]+(e[-+]?\d+)?$/i;
	return sprintf '%.2f', $v;
}

my @head = ('#', 'figure', 'value', 'baseline (same run)', 'baseline', 'ratio', 'target', 'verdict');
my @table;
for my $row (@rows) {
	my $val = human($row->{value});
	$val .= " $row->{unit}" if $row->{unit} ne '' && $row->{value} =~ /^-?[\d.]/;
	my $bval = join ' -> ', map { human($_) } split / -> /, $row->{baseline_value};
	$bval .= " $row->{unit}" if $bval =~ /^[\d,.]+$/ && $row->{unit} ne '' && $row->{unit} ne '%';
	push @table, [$row->{scenario}, $row->{figure}, $val, $row->{baseline}, $bval,
		ratio($row->{ratio}), $row->{target}, $row->{verdict}, $row->{note}];
}

my @w = map { length $head[$_] } 0 .. $#head;
for my $t (@table) {
	for my $i (0 .. $#head) {
		my $l = length(Encode::decode('UTF-8', $t->[$i] // ''));
		$w[$i] = $l if $l > $w[$i];
	}
}

sub line {
	my @c = @_;
	my $s = '';
	for my $i (0 .. $#head) {
		my $cell = $c[$i] // '';
		my $pad = $w[$i] - length(Encode::decode('UTF-8', $cell));
		my $right = ($i == 2 || $i == 4 || $i == 5);
		$s .= ($right ? (' ' x $pad) . $cell : $cell . (' ' x $pad));
		$s .= $i < $#head ? '  ' : '';
	}
	$s =~ s/\s+$//;
	return "$s\n";
}

my $out = '';
$out .= "partoo benchmark: $meta{started}, commit $meta{commit}\n" if exists $meta{started};
$out .= "machine: $meta{cpus}, $meta{memory}, kernel $meta{kernel}; PostgreSQL $meta{postgresql}, libcurl $meta{libcurl}\n"
	if exists $meta{cpus};
$out .= "settings: $meta{settings}\n" if exists $meta{settings};
$out .= "load average (1/5/15 min) at start $meta{load_at_start}, at end " . ($meta{load_at_end} // '?') . "\n"
	if exists $meta{load_at_start};
$out .= "\n" . line(@head) . line(map { '-' x $_ } @w);
for my $t (@table) {
	$out .= line(@$t[0 .. 7]);
	$out .= (' ' x ($w[0] + 2)) . "  ($t->[8])\n" if $t->[8] ne '';
}
my @secs = map {
	my ($s) = /^seconds_(.+)$/;
	my $o = $meta{"other_cpu_$s"};
	"$s: " . sprintf('%.0f s', $meta{$_}) . (defined $o && $o =~ /^-?[\d.]/ ? sprintf(' (%.0f%%)', $o < 0 ? 0 : $o) : '')
} grep { /^seconds_(?!total)/ } @meta;
$out .= "\nscenario durations, and in brackets the CPU other processes on the machine took meanwhile\n"
	. "(share of all cores; noise): " . join(', ', @secs) . "\n" if @secs;
$out .= "worker errors logged: $meta{worker_errors}\n" if exists $meta{worker_errors};
$out .= "whole bench: $meta{seconds_total} s (build included when run as root)\n" if exists $meta{seconds_total};
my $missed = grep { $_->{verdict} eq 'MISSED' } @rows;
my $met = grep { $_->{verdict} eq 'met' } @rows;
my $failed = grep { $_->{verdict} eq 'FAIL' } @rows;
my $ok = grep { $_->{verdict} eq 'OK' } @rows;
$out .= "targets: $met met, $missed missed; correctness checks: $ok OK, $failed failed\n";

binmode STDOUT;
print $out;
open my $t, '>', "$dir/results.txt" or die;
print $t $out;
close $t;

my @json_rows;
for my $row (@rows) {
	my %j = %$row;
	for my $k (qw(value baseline_value ratio)) {
		$j{$k} = $j{$k} + 0 if $j{$k} =~ /^-?\d+(\.\d+)?(e[-+]?\d+)?$/i;
		$j{$k} = undef if $j{$k} eq '';
	}
	push @json_rows, \%j;
}
my %jmeta = map { my $v = $meta{$_}; ($_ => ($v =~ /^-?\d+(\.\d+)?$/ ? $v + 0 : $v)) } keys %meta;
open my $j, '>', "$dir/results.json" or die;
print $j JSON::PP->new->canonical->pretty->encode({meta => \%jmeta, results => \@json_rows});
close $j;
