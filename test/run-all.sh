#!/bin/bash
# test/run-all.sh: the whole partoo test suite.
#
# Run as root on a Debian machine (it installs what it needs, builds and
# installs the extension, then runs every test as the unprivileged user
# partoo_test), or as a normal user once the extension is installed.
#
#   sudo test/run-all.sh            everything
#   sudo test/run-all.sh regress    only some stages: demo unit mock regress tap
#                                   fuzz asan
#
# Stage demo runs test/demo.sh (README's first command) and checks that it
# ends well and that the tables it prints show the status loop: queued,
# sent (Sending), delivered (Success); failed, retried, delivered.
# Stage fuzz runs every libFuzzer target (test/core/fuzz/run.sh).  Stage asan
# (also "make check-asan") runs regress and tap again against a partoo.so
# built with -fsanitize=address,undefined, installed into a private copy
# of the PostgreSQL installation; it fails on any failed test and on any
# sanitizer report (see stage_asan).
#
# The last line is "N passed, N failed"; the exit status is non-zero when
# anything failed.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/test/lib.sh"
STAGES=${*:-demo unit mock regress tap fuzz asan}

if [ "$(id -u)" = 0 ] && [ -z "${PARTOO_AS_TEST_USER:-}" ]; then
	partoo_install_packages $STAGES || { echo "could not install packages"; echo "0 passed, 1 failed"; exit 1; }
	partoo_log "building and installing the extension"
	if ! (cd "$repo" && make -s clean >/dev/null && make -s ${PG_CFLAGS:+PG_CFLAGS="$PG_CFLAGS"} >/dev/null && make -s install >/dev/null); then
		echo "build failed"; echo "0 passed, 1 failed"; exit 1
	fi
	partoo_ensure_test_user
	work=$(mktemp -d /tmp/partoo-test.XXXXXX)
	partoo_copy_tree "$repo" "$work/repo"
	chown -R "$PARTOO_TEST_USER" "$work"
	runuser -u "$PARTOO_TEST_USER" -- env PARTOO_AS_TEST_USER=1 PARTOO_WORK="$work" \
		PATH="$PATH" bash "$work/repo/test/run-all.sh" $STAGES
	rc=$?
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
record() {
	printf '%-10s %5d passed, %d failed\n' "$1" "$2" "$3" >>"$W/summary"
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

stage_demo() {
	partoo_log "the demo (test/demo.sh)"
	bash test/demo.sh >"$W/demo.log" 2>&1
	local rc=$? p=0 f=0
	tail -n 40 "$W/demo.log"
	# demo_check DESCRIPTION MIN REGEX: the log has at least MIN lines
	# matching REGEX
	demo_check() {
		if [ "$(grep -cE "$3" "$W/demo.log")" -ge "$2" ]; then
			p=$((p + 1))
		else
			f=$((f + 1)); echo "not ok: demo: $1"
		fi
	}
	# it exits 0 only when every statement worked and every status it
	# waited for came; the tables it prints show the status loop
	if [ $rc = 0 ]; then p=$((p + 1)); else f=$((f + 1)); echo "not ok: demo exited $rc"; fi
	demo_check "partoo-webhookd connected as the role webhooks" 1 \
		'connected to database "postgres" as "webhooks"'
	demo_check "three messages queued in the transaction" 3 '\| +\| queued +\| +\| *$'
	demo_check "the three sent by the worker, Partoo's Sending webhook in" 3 \
		'\| +[0-9]+ \| sent +\| Sending +\| Sending [a-z]+ *$'
	demo_check "delivered by Partoo's Success webhooks" 3 \
		'\| +[0-9]+ \| delivered +\| Success +\| Sending [a-z]+, Success applied *$'
	demo_check "one message failed by Partoo's Failed webhook" 1 \
		'^ +[0-9]+ \| +47 \|.*\| failed +\| Failed +\| .*Failed applied *$'
	demo_check "the failed message delivered after its retry" 1 \
		'^ +[0-9]+ \| +47 \|.*\| delivered +\| Success +\| .*Failed applied, .*Success applied *$'
	demo_check "partoo-webhookd answered every webhook 200" 1 '^ +webhooks_given_up:0$'
	demo_check "the demo says it finished" 1 '^== demo finished'
	record demo $p $f
}

stage_unit() {
	partoo_log "unit tests of the protocol core"
	make -s -C test/core/unit >"$W/unit.log" 2>&1
	local rc=$?
	cat "$W/unit.log"
	record_summary_line unit "$W/unit.log" $rc
	partoo_log "the layers of src/ (test/layers.sh)"
	bash test/layers.sh >"$W/layers.log" 2>&1
	rc=$?
	cat "$W/layers.log"
	record_summary_line layers "$W/layers.log" $rc
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
	# the settings of make installcheck (test/regress.conf), then this mock's port
	echo "partoo.base_url = '$MOCK_URL/v2'" >"$W/regress-port.conf"
	export PARTOO_MOCK_URL=$MOCK_URL
	local tests
	tests=${PARTOO_REGRESS:-$(sed -n 's/^REGRESS = //p' Makefile)}
	"$PGXS_DIR/test/regress/pg_regress" \
		--temp-instance="$W/tmp_check" --temp-config=test/regress.conf \
		--temp-config="$W/regress-port.conf" \
		--inputdir=. --outputdir="$W/regress" --bindir="$BINDIR" \
		--dbname=contrib_regression $tests >"$W/regress.log" 2>&1
	local rc=$?
	cat "$W/regress.log"
	[ -f "$W/regress/regression.diffs" ] && head -n 200 "$W/regress/regression.diffs"
	local p f
	# pg_regress prints "test name ... ok" up to 15 and TAP-style
	# "ok N - name" / "not ok N - name" from 16 on
	p=$(grep -cE '^ok [0-9]+ |\.\.\. ok' "$W/regress.log")
	f=$(grep -cE '^not ok [0-9]+ |\.\.\. FAILED|failed \(ignored\)' "$W/regress.log")
	[ "$rc" != 0 ] && [ "$f" = 0 ] && f=1
	record regress "$p" "$f"
	partoo_stop_mock
}

stage_tap() {
	partoo_log "TAP tests"
	make -s -C test/mock >/dev/null 2>&1 || { record tap 0 1; return; }
	local t p=0 f=0 out rc t0
	for t in test/t/${PARTOO_TAP:-*}.pl; do
		[ -e "$t" ] || continue
		case " ${PARTOO_TAP_SKIP:-} " in *" $(basename "$t" .pl) "*) continue ;; esac
		out="$W/$(basename "$t" .pl).tap"
		mkdir -p "$W/tap/$(basename "$t" .pl)"
		t0=$(date +%s)
		PERL5LIB="$PGXS_DIR/test/perl:$W/repo/test/t" \
			PG_REGRESS="$PGXS_DIR/test/regress/pg_regress" \
			PARTOO_REPO="$W/repo" TESTDIR="$W/tap/$(basename "$t" .pl)" \
			perl "$t" >"$out" 2>&1
		rc=$?
		local tp tf
		tp=$(grep -cE '^ok ' "$out")
		tf=$(grep -cE '^not ok ' "$out")
		[ "$rc" != 0 ] && [ "$tf" = 0 ] && tf=1
		echo "$t: $tp passed, $tf failed ($(($(date +%s) - t0)) s)"
		[ "$tf" != 0 ] && { grep -E '^not ok|^#' "$out" | head -n 60; tail -n 20 "$out"; }
		p=$((p + tp)); f=$((f + tf))
	done
	record tap "$p" "$f"
}

stage_fuzz() {
	partoo_log "fuzz targets (test/core/fuzz/run.sh)"
	FUZZ_WORK="$W/fuzz" bash test/core/fuzz/run.sh >"$W/fuzz.log" 2>&1
	local rc=$?
	cat "$W/fuzz.log"
	record_summary_line fuzz "$W/fuzz.log" $rc
}

# regress and tap again, against partoo built with ASan and UBSan and
# installed into a private copy of the PostgreSQL installation (PostgreSQL
# finds its files relative to its binaries), so that nothing outside $W
# changes and no root is needed.  Its postgres is a wrapper that preloads
# the ASan runtime partoo.so was linked with, so only servers run with it
# (psql, pg_regress, perl and the mock server do not), and
# test/asan_preload.c, without which no postgres would start (see there).
# One record: the tests, plus one failure per sanitizer report, whether in
# a report file or, as the runtimes do in backends, in a server's log.
stage_asan() {
	partoo_log "regress and TAP against partoo built with ASan and UBSan"
	local pg=$W/asan-pg run=$W/asan-run d p f rt files inlog
	rm -rf "$pg" "$W/asan-build" "$run"
	for d in bindir pkglibdir sharedir; do
		d=$(pg_config --$d)
		mkdir -p "$pg$d" && cp -a "$d/." "$pg$d/" || { record asan 0 1; return; }
	done
	partoo_copy_tree . "$W/asan-build"
	if ! (cd "$W/asan-build" && make -s clean >/dev/null &&
		make -s PG_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer" >"$W/asan-build.log" 2>&1 &&
		make -s install DESTDIR="$pg" >/dev/null &&
		cc -shared -fPIC -O1 -o "$pg/asan_preload.so" test/asan_preload.c); then
		echo "build with sanitizers failed:"
		tail -n 30 "$W/asan-build.log"
		record asan 0 1
		return
	fi
	rt=$(ldd "$pg$(pg_config --pkglibdir)/partoo.so" | awk '/libasan/ { print $3 }')
	d=$pg$BINDIR
	mv "$d/postgres" "$d/postgres.bin"
	printf '#!/bin/sh\nLD_PRELOAD=%s exec %s "$@"\n' "$rt:$pg/asan_preload.so" "$d/postgres.bin" >"$d/postgres"
	chmod 755 "$d/postgres"

	mkdir -p "$run/reports"
	ln -s "$W/repo" "$run/repo"
	(
		W=$run
		BINDIR=$pg$BINDIR
		export PATH="$BINDIR:$PATH"
		export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$run/reports/asan"
		export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$run/reports/ubsan"
		# valgrind cannot run code built with ASan
		export PARTOO_TAP_SKIP="${PARTOO_TAP_SKIP:-} 070_valgrind"
		# TAP 020 with fewer messages (the same faults, each still many
		# times), to keep CI within its time
		export PARTOO_FAULT_MESSAGES=${PARTOO_FAULT_MESSAGES:-4000}
		: >"$W/summary"
		stage_regress
		stage_tap
	)
	p=$(awk '{ p += $2 } END { print p + 0 }' "$run/summary")
	f=$(awk '{ f += $4 } END { print f + 0 }' "$run/summary")
	files=$(find "$run/reports" -type f | wc -l)
	for d in "$run"/reports/*; do
		[ -e "$d" ] || continue
		echo "--- sanitizer report $d"
		head -n 60 "$d"
	done
	inlog=$(grep -rhcE 'ERROR: AddressSanitizer|runtime error: ' "$run" --include='*.log' |
		awk '{ n += $1 } END { print n + 0 }')
	if [ "$inlog" != 0 ]; then
		echo "--- sanitizer reports in server logs"
		grep -rE -A 25 'ERROR: AddressSanitizer|runtime error: ' "$run" --include='*.log' | head -n 200
	fi
	record asan "$p" $((f + files + inlog))
}

: >"$W/summary"
for s in $STAGES; do
	t0=$(date +%s)
	"stage_$s"
	partoo_log "stage $s: $(($(date +%s) - t0)) s"
done
echo
echo "== summary"
cat "$W/summary"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
