#!/bin/bash
# test/ci/version.sh: the extension's version is written once, as EXTVERSION
# in the Makefile, and everything else agrees with it (make check-version).
#
#   bash test/ci/version.sh
#
# Checks that partoo.control and META.json are exactly what make makes of
# their .in templates, that META.json is valid PGXN metadata (meta-spec
# 1.0.0) naming EXTVERSION, that the SQL scripts lead to EXTVERSION, that no
# C file writes a version of its own, and, when partoo.so is built, that it
# carries EXTVERSION.  One "ok"/"not ok" line per check, then
# "N passed, N failed"; the exit status is non-zero when a check failed.
# Needs only bash, sed and perl (JSON::PP is in perl's core); runs as any
# user, from any directory, without pg_config.
set -euo pipefail
cd "$(dirname "$0")/../.."

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
check() { # check DESCRIPTION CMD...: ok when CMD succeeds
	local what=$1; shift
	if "$@"; then ok "$what"; else not_ok "$what"; fi
}

version=$(sed -n 's/^EXTVERSION[[:space:]]*=[[:space:]]*\([^[:space:]]*\).*/\1/p' Makefile)
if [[ $version =~ ^[0-9]+(\.[0-9]+)+$ ]]; then
	ok "EXTVERSION is $version"
else
	not_ok "EXTVERSION in the Makefile is a version ('$version')"
	echo "$passed passed, $failed failed"
	exit 1
fi

# same_as_template FILE: FILE is FILE.in with @EXTVERSION@ replaced
same_as_template() {
	[ -f "$1" ] && [ -f "$1.in" ] &&
		diff -u "$1" <(sed "s/@EXTVERSION@/$version/g" "$1.in") >&2
}
check "partoo.control is made from partoo.control.in (run make after changing either)" \
	same_as_template partoo.control
check "partoo.control's default_version is $version" \
	grep -qx "default_version = '$version'" partoo.control
check "META.json is made from META.json.in (run make after changing either)" \
	same_as_template META.json

# META.json: valid JSON, the fields PGXN requires, the version everywhere
meta_errors=$(perl -MJSON::PP -e '
	my $version = shift;
	local $/;
	open(my $fh, "<", "META.json") or die "META.json: $!\n";
	my $m = eval { JSON::PP->new->decode(<$fh>) };
	if (!$m) { print "not valid JSON: $@"; exit 0; }
	my @e;
	for my $k (qw(name abstract version maintainer license provides meta-spec)) {
		push @e, "no $k" unless defined $m->{$k};
	}
	push @e, "meta-spec version is not 1.0.0"
	  unless ($m->{"meta-spec"}{version} // "") eq "1.0.0";
	push @e, "name is not partoo" unless ($m->{name} // "") eq "partoo";
	push @e, "version is not $version" unless ($m->{version} // "") eq $version;
	my $p = $m->{provides}{partoo};
	if (!$p) { push @e, "provides no partoo"; }
	else {
		push @e, "provides partoo $p->{version}, not $version"
		  unless ($p->{version} // "") eq $version;
		push @e, "provides.partoo.file $p->{file} does not exist"
		  unless defined $p->{file} && -f $p->{file};
	}
	push @e, "no runtime prerequisite on PostgreSQL 15.0.0"
	  unless ($m->{prereqs}{runtime}{requires}{PostgreSQL} // "") eq "15.0.0";
	my %licenses = map { $_ => 1 } qw(agpl_3 apache_1_1 apache_2_0 artistic_1
	  artistic_2 bsd freebsd gfdl_1_2 gfdl_1_3 gpl_1 gpl_2 gpl_3 lgpl_2_1
	  lgpl_3_0 mit mozilla_1_0 mozilla_1_1 openssl perl_5 postgresql qpl_1_0
	  ssleay sun zlib open_source restricted unrestricted unknown);
	for my $l (ref $m->{license} eq "ARRAY" ? @{ $m->{license} } : ref $m->{license} ? () : ($m->{license} // ())) {
		push @e, "license $l is not a meta-spec license name" unless $licenses{$l};
	}
	print join("; ", @e);
' "$version" 2>&1) || meta_errors="perl failed: $meta_errors"
if [ -z "$meta_errors" ]; then
	ok "META.json is valid PGXN metadata (meta-spec 1.0.0) for partoo $version"
else
	not_ok "META.json: $meta_errors"
fi

# The install and upgrade scripts lead from some base script to EXTVERSION
# (CREATE EXTENSION partoo installs default_version through that path).
reachable=$(perl -e '
	my ($want, @files) = @ARGV;
	my (%have, %edge);
	for (@files) {
		s{.*/}{};
		if (/^partoo--([^-]+)\.sql$/) { $have{$1} = 1; }
		elsif (/^partoo--([^-]+)--([^-]+)\.sql$/) { push @{ $edge{$1} }, $2; }
	}
	my @todo = keys %have;
	while (defined(my $v = shift @todo)) {
		for my $to (@{ $edge{$v} || [] }) { push @todo, $to unless $have{$to}++; }
	}
	print $have{$want} ? "yes" : "no";
' "$version" sql/partoo--*.sql)
check "sql/partoo--*.sql install version $version (a base script, then upgrade scripts)" \
	[ "$reachable" = yes ]

check "no C file writes a version of its own (PARTOO_VERSION comes from the Makefile)" \
	bash -c '! grep -rnE "^[[:space:]]*#[[:space:]]*define[[:space:]]+PARTOO_VERSION" src >&2'

if [ -f partoo.so ]; then
	check "partoo.so is $version (its User-Agent says partoo-pg/$version)" \
		env LC_ALL=C grep -qaP "partoo-pg/${version//./\\.}\\x00" partoo.so
else
	ok "partoo.so is not built: its version is not checked # skip"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
