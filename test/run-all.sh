#!/bin/bash
# test/run-all.sh: the whole partoo test suite.
#
# Run as root on a Debian machine (it installs what it needs, builds and
# installs the extension, then runs every test as the unprivileged user
# partoo_test), or as a normal user once the extension is installed.
#
#   sudo test/run-all.sh            everything
#   sudo test/run-all.sh regress    only some stages: unit mock regress tap fuzz asan
#
# Stage fuzz runs every libFuzzer target (test/fuzz/run.sh).  Stage asan
# (also "make check-asan") runs regress and tap again against a partoo.so
# built with -fsanitize=address,undefined, in servers started with the
# ASan runtime preloaded; it fails on any failed test and on any report.
# As root it builds and installs that library after the other stages and
# reinstalls the normal one afterwards; as a normal user it needs the
# sanitized library already installed.
#
# The last line is "N passed, N failed"; the exit status is non-zero when
# anything failed.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/test/lib.sh"
STAGES=${*:-unit mock regress tap fuzz asan}
# Compiler flags of the asan stage's build (PGXS compiles with gcc)
ASAN_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer"

# Print the summary file $1 and, last, its totals
print_summary() {
	echo
	echo "== summary"
	cat "$1"
	awk '{ p += $2; f += $4 } END { printf "%d passed, %d failed\n", p, f }' "$1"
}

if [ "$(id -u)" = 0 ] && [ -z "${PARTOO_AS_TEST_USER:-}" ]; then
	partoo_install_packages || { echo "could not install packages"; echo "0 passed, 1 failed"; exit 1; }
	partoo_log "building and installing the extension"
	if ! (cd "$repo" && make -s clean >/dev/null && make -s ${PG_CFLAGS:+PG_CFLAGS="$PG_CFLAGS"} >/dev/null && make -s install >/dev/null); then
		echo "build failed"; echo "0 passed, 1 failed"; exit 1
	fi
	partoo_ensure_test_user
	work=$(mktemp -d /tmp/partoo-test.XXXXXX)
	partoo_copy_tree "$repo" "$work/repo"
	chown -R "$PARTOO_TEST_USER" "$work"
	# as_test_user EXTRA_ENV STAGE...
	as_test_user() {
		local extra=$1
		shift
		runuser -u "$PARTOO_TEST_USER" -- env PARTOO_AS_TEST_USER=1 PARTOO_WORK="$work" \
			PATH="$PATH" $extra bash "$work/repo/test/run-all.sh" "$@"
	}
	normal=$(echo " $STAGES " | sed 's/ asan / /g')
	rc=0
	if [ -n "${normal// /}" ]; then
		as_test_user "" $normal
		rc=$?
	fi
	if [[ " $STAGES " == *" asan "* ]]; then
		# a private copy, so the working tree keeps its normal objects
		partoo_log "building and installing partoo.so with $ASAN_CFLAGS"
		partoo_copy_tree "$repo" "$work/asan-build"
		if (cd "$work/asan-build" && make -s clean >/dev/null &&
			make -s PG_CFLAGS="$ASAN_CFLAGS" >/dev/null && make -s install >/dev/null); then
			as_test_user PARTOO_APPEND_SUMMARY=1 asan
			rc=$?
		else
			echo "asan build failed"
			printf '%-10s %5d passed, %d failed\n' asan 0 1 >>"$work/summary"
			print_summary "$work/summary"
			rc=1
		fi
		partoo_log "reinstalling the normal build"
		(cd "$repo" && make -s install >/dev/null) || { echo "reinstall failed"; rc=1; }
	fi
	[ -n "${PARTOO_KEEP:-}" ] || rm -rf "$work"
	exit $rc
fi

# From here on: an unprivileged user, in a private copy of the tree.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
if [ -z "${PARTOO_WORK:-}" ]; then
	PARTOO_WORK=$(mktemp -d /tmp/partoo-test.XXXXXX)
	partoo_copy_tree "$repo" "$PARTOO_WORK/repo"
fi
W=$PARTOO_WORK
cd "$W/repo" || exit 1
BINDIR=$(partoo_bindir)
PGXS_DIR=$(dirname "$(pg_config --pgxs)")/..
export PATH="$BINDIR:$PATH"
total_pass=0
total_fail=0
trap 'partoo_stop_mock' EXIT

# record NAME PASSED FAILED
SUMMARY=$W/summary
record() {
	printf '%-10s %5d passed, %d failed\n' "$1" "$2" "$3" >>"$SUMMARY"
	total_pass=$((total_pass + $2))
	total_fail=$((total_fail + $3))
}

# Read the "N passed, N failed" last line of a log into a record.
record_summary_line() {
	local name=$1 log=$2 rc=$3 line p f
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -z "$line" ]; then
		record "$name" 0 1
		return
	fi
	p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
	f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
	[ "$rc" != 0 ] && [ "$f" = 0 ] && f=1
	record "$name" "$p" "$f"
}

stage_unit() {
	partoo_log "unit tests of the protocol core"
	make -s -C test/unit >"$W/unit.log" 2>&1
	local rc=$?
	cat "$W/unit.log"
	record_summary_line unit "$W/unit.log" $rc
}

stage_mock() {
	partoo_log "mock server self-test"
	make -s -C test/mock >/dev/null 2>&1 || { record mock 0 1; return; }
	bash test/mock/selftest.sh >"$W/mock.log" 2>&1
	local rc=$?
	tail -n 5 "$W/mock.log"
	record_summary_line mock "$W/mock.log" $rc
}

stage_regress() {
	partoo_log "pg_regress"
	make -s -C test/mock >/dev/null 2>&1 || { record regress 0 1; return; }
	partoo_start_mock "$W/repo" --api-key test-key --api-key other-key || { record regress 0 1; return; }
	sed "s|@MOCK_URL@|$MOCK_URL|g" test/regress.conf.in >"$W/regress.conf"
	export PARTOO_MOCK_URL=$MOCK_URL
	local tests
	tests=${PARTOO_REGRESS:-$(sed -n 's/^REGRESS = //p' Makefile)}
	"$PGXS_DIR/test/regress/pg_regress" \
		--temp-instance="$W/tmp_check" --temp-config="$W/regress.conf" \
		--inputdir=. --outputdir="$W/regress" --bindir="$BINDIR" \
		--dbname=contrib_regression $tests >"$W/regress.log" 2>&1
	local rc=$?
	cat "$W/regress.log"
	[ -f "$W/regress/regression.diffs" ] && head -n 200 "$W/regress/regression.diffs"
	local p f
	p=$(grep -cE '^(ok|test ).* ok( |$)|\.\.\. ok' "$W/regress.log")
	f=$(grep -cE 'FAILED|failed \(ignored\)' "$W/regress.log")
	[ "$rc" != 0 ] && [ "$f" = 0 ] && f=1
	record regress "$p" "$f"
	partoo_stop_mock
}

stage_tap() {
	partoo_log "TAP tests"
	make -s -C test/mock >/dev/null 2>&1 || { record tap 0 1; return; }
	local t p=0 f=0 out rc
	for t in test/t/${PARTOO_TAP:-*}.pl; do
		[ -e "$t" ] || continue
		out="$W/$(basename "$t" .pl).tap"
		mkdir -p "$W/tap/$(basename "$t" .pl)"
		PERL5LIB="$PGXS_DIR/test/perl:$W/repo/test/t" \
			PG_REGRESS="$PGXS_DIR/test/regress/pg_regress" \
			PARTOO_REPO="$W/repo" TESTDIR="$W/tap/$(basename "$t" .pl)" \
			perl "$t" >"$out" 2>&1
		rc=$?
		local tp tf
		tp=$(grep -cE '^ok ' "$out")
		tf=$(grep -cE '^not ok ' "$out")
		[ "$rc" != 0 ] && [ "$tf" = 0 ] && tf=1
		echo "$t: $tp passed, $tf failed"
		[ "$tf" != 0 ] && { grep -E '^not ok|^#' "$out" | head -n 60; tail -n 20 "$out"; }
		p=$((p + tp)); f=$((f + tf))
	done
	record tap "$p" "$f"
}

stage_fuzz() {
	partoo_log "fuzz targets (test/fuzz/run.sh)"
	FUZZ_WORK="$W/fuzz" bash test/fuzz/run.sh >"$W/fuzz.log" 2>&1
	local rc=$?
	cat "$W/fuzz.log"
	record_summary_line fuzz "$W/fuzz.log" $rc
}

# regress and tap against the installed sanitized partoo.so, in servers
# whose environment preloads the ASan runtime that library was linked
# with; every process started here inherits it, which psql, pg_regress and
# perl tolerate with leak detection off.  Their records go to a summary of
# their own: this stage records one line, failing on any failed test and
# on any ASan or UBSan report.
stage_asan() {
	partoo_log "regress and TAP under AddressSanitizer and UBSan"
	local lib rt p f reports
	lib="$(pg_config --pkglibdir)/partoo.so"
	rt=$(ldd "$lib" 2>/dev/null | awk '/libasan/ { print $3 }')
	if [ -z "$rt" ]; then
		echo "$lib is not built with ASan: run test/run-all.sh asan (or make check-asan) as root"
		record asan 0 1
		return
	fi
	# built now, so that no compiler runs with the runtime preloaded
	make -s -C test/mock >/dev/null 2>&1 || { record asan 0 1; return; }
	rm -rf "$W/asan"
	mkdir -p "$W/asan"
	(
		SUMMARY=$W/asan.summary
		: >"$SUMMARY"
		export LD_PRELOAD=$rt
		export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$W/asan/asan"
		export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$W/asan/ubsan"
		stage_regress
		stage_tap
	)
	p=$(awk '{ p += $2 } END { print p + 0 }' "$W/asan.summary")
	f=$(awk '{ f += $4 } END { print f + 0 }' "$W/asan.summary")
	reports=$(find "$W/asan" -type f | wc -l)
	if [ "$reports" != 0 ]; then
		echo "$reports sanitizer report(s):"
		for r in "$W"/asan/*; do
			echo "--- $r"
			head -n 40 "$r"
		done
	fi
	record asan "$p" $((f + reports))
}

# root's asan pass adds to the summary of the stages run before it
[ -n "${PARTOO_APPEND_SUMMARY:-}" ] || : >"$SUMMARY"
for s in $STAGES; do
	"stage_$s"
done
print_summary "$SUMMARY"
! grep -qvE ' 0 failed$' "$SUMMARY"
