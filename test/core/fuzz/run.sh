#!/bin/bash
# test/core/fuzz/run.sh: build and run every libFuzzer target test/core/fuzz/fuzz_*.c.
#
#   bash test/core/fuzz/run.sh                  every target, FUZZ_SECONDS each
#   bash test/core/fuzz/run.sh fuzz_response    only some targets
#
# Each target is built with clang's libFuzzer, ASan and UBSan against the
# protocol core (and the webhook parser, signature code and log redactor
# once they exist), then run for FUZZ_SECONDS (default 60, but at most
# 150 s over all targets, to keep CI within its time) on a scratch copy of its seed corpus
# test/core/fuzz/corpus/NAME,
# so generated inputs never land in the repository.  Builds, logs and
# crash inputs go to FUZZ_WORK (default: a new temporary directory, kept
# when something failed).
#
# One line per target, then "N passed, N failed" (one check per target);
# the exit status is non-zero when a target failed to build, crashed,
# leaked, hit a timeout or broke an invariant.  Works as any user, from
# any directory; needs clang, libclang-rt-dev, libcjson-dev, libssl-dev.
#
# Environment: FUZZ_SECONDS, FUZZ_WORK, FUZZ_CC (default clang),
# FUZZ_CFLAGS (added to the compile, e.g. -Werror), FUZZ_ARGS (added to
# every libFuzzer run, e.g. -jobs=2 or -seed=1).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cc=${FUZZ_CC:-clang}

targets=()
if [ $# -gt 0 ]; then
	for t in "$@"; do targets+=("$here/${t%.c}.c"); done
else
	for t in "$here"/fuzz_*.c; do [ -e "$t" ] && targets+=("$t"); done
fi
if [ ${#targets[@]} -eq 0 ]; then
	echo "no fuzz targets in $here"
	echo "0 passed, 1 failed"
	exit 1
fi

if [ -n "${FUZZ_SECONDS:-}" ]; then
	seconds=$FUZZ_SECONDS
else
	seconds=$((150 / ${#targets[@]}))
	[ "$seconds" -gt 60 ] && seconds=60
fi

work=${FUZZ_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/partoo-fuzz.XXXXXX")}
mkdir -p "$work"

# The plain-C sources a target may call; the others are optional so that
# this runner works before and after they are written.
core=()
for f in "$repo"/src/core/*.c; do
	[ -e "$f" ] && core+=("$f")
done

cflags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
-fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter \
-Wno-sign-compare -Wno-missing-field-initializers ${FUZZ_CFLAGS:-}"
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}

passed=0
failed=0
for src in "${targets[@]}"; do
	name=$(basename "$src" .c)
	bin="$work/$name"
	log="$work/$name.log"
	corpus="$work/corpus/$name"
	artifacts="$work/artifacts/$name"

	if [ ! -e "$src" ] ||
		! $cc $cflags -I"$repo/src" -o "$bin" "$src" "${core[@]}" \
			-lcjson -lcrypto >"$work/$name.build.log" 2>&1; then
		printf '%-18s FAILED to build\n' "$name"
		tail -n 30 "$work/$name.build.log" 2>/dev/null | sed 's/^/    /'
		failed=$((failed + 1))
		continue
	fi

	rm -rf "$corpus" "$artifacts"
	mkdir -p "$corpus" "$artifacts"
	[ -d "$here/corpus/$name" ] && cp -R "$here/corpus/$name/." "$corpus/"

	start=$(date +%s)
	"$bin" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
		-artifact_prefix="$artifacts/" ${FUZZ_ARGS:-} "$corpus" >"$log" 2>&1
	rc=$?
	elapsed=$(($(date +%s) - start))

	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	cov=$(grep -oE ' cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 | sed -E 's/ cov: ([0-9]+) ft: ([0-9]+)/cov \1, ft \2/')
	units=$(find "$corpus" -type f | wc -l)
	crashes=$(find "$artifacts" -type f | wc -l)
	if [ "$rc" = 0 ] && [ "$crashes" = 0 ]; then
		printf '%-18s ok      %s runs, %s, corpus %s, %s s\n' \
			"$name" "${runs:-?}" "${cov:-cov ?}" "$units" "$elapsed"
		passed=$((passed + 1))
	else
		printf '%-18s FAILED  exit %s after %s runs, %s s; inputs in %s\n' \
			"$name" "$rc" "${runs:-?}" "$elapsed" "$artifacts"
		grep -E 'ERROR: |SUMMARY: |^    #[0-9]+ .* in .*(/src/|/test/core/fuzz/)|^Base64: ' "$log" |
			head -n 30 | sed 's/^/    /'
		failed=$((failed + 1))
	fi
done

[ -z "${FUZZ_WORK:-}" ] && [ "$failed" = 0 ] && rm -rf "$work"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
