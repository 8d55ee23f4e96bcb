#!/bin/bash
# test/layers.sh: the layering of src/ holds (docs/architecture.md).
#
#   bash test/layers.sh [BUILD_DIR]    BUILD_DIR: a tree where make has run
#                                      (default: a temporary copy of this one)
#
# Checks, each printed as "ok" or "not ok":
#   - src/core/ (the protocol core) includes no PostgreSQL header and no
#     header of another layer, and its objects call nothing outside it;
#   - src/http/ includes no header of src/server/ but compat.h (the
#     PostgreSQL version shims), and its objects call nothing in src/server/;
#   - no cycle among the objects: file A calling file B (a symbol B
#     defines) while B, directly or through others, calls A.
# Ends with "N passed, N failed"; exits non-zero on a failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

passed=0
failed=0
check() {
	local name=$1 problems=$2
	if [ -z "$problems" ]; then
		echo "ok - $name"
		passed=$((passed + 1))
	else
		echo "not ok - $name"
		printf '%s\n' "$problems" | sed 's/^/    /'
		failed=$((failed + 1))
	fi
}

# Source level: what each layer includes
core_bad=$(grep -HnE '^\s*#\s*include\s+"' "$repo"/src/core/*.[ch] |
	grep -vE '#\s*include\s+"core/[a-z_]+\.h"' | sed "s|$repo/||")
core_pg=$(grep -HnE '^\s*#\s*include\s+[<"](postgres|postgres_fe|c|fmgr)\.h[>"]' \
	"$repo"/src/core/*.[ch] | sed "s|$repo/||")
check "src/core includes only its own headers" "$core_bad"
check "src/core includes no PostgreSQL header" "$core_pg"
http_bad=$(grep -HnE '^\s*#\s*include\s+"server/' "$repo"/src/http/*.[ch] |
	grep -v '"server/compat.h"' | sed "s|$repo/||")
check "src/http includes no server header but compat.h" "$http_bad"

# Object level: who calls whom
build=${1:-}
if [ -z "$build" ]; then
	build=$(mktemp -d "${TMPDIR:-/tmp}/partoo-layers.XXXXXX")
	trap 'rm -rf "$build"' EXIT
	(cd "$repo" && tar --exclude=.git --exclude='*.o' --exclude='*.so' -cf - .) |
		tar -xf - -C "$build"
	if ! make -s -C "$build" >"$build/make.log" 2>&1; then
		check "the extension builds" "$(tail -20 "$build/make.log")"
		echo "$passed passed, $failed failed"
		exit 1
	fi
fi

objs=$(cd "$build" && ls src/*/*.o 2>/dev/null)
if [ -z "$objs" ]; then
	check "objects to inspect in $build/src" "none: build first"
	echo "$passed passed, $failed failed"
	exit 1
fi

# "A B" for each object A that uses a symbol object B defines (A != B)
edges=$(cd "$build" && for o in $objs; do nm "$o" | sed "s|^|$o |"; done |
	awk '
		NF == 4 && $3 ~ /^[TDBRC]$/ { def[$4] = $1; next }
		NF == 3 && $2 == "U" { use[$1 " " $3] = 1 }
		END {
			for (k in use) {
				split(k, p, " ")
				if ((p[2] in def) && def[p[2]] != p[1])
					print p[1], def[p[2]]
			}
		}' | sort -u)

core_calls=$(printf '%s\n' "$edges" | awk '$1 ~ /^src\/core\// && $2 !~ /^src\/core\//')
check "src/core calls nothing outside src/core" "$core_calls"
http_calls=$(printf '%s\n' "$edges" | awk '$1 ~ /^src\/http\// && $2 ~ /^src\/server\//')
check "src/http calls nothing in src/server" "$http_calls"

# Cycles: repeatedly drop objects that call nobody left (or that nobody
# left calls); whatever remains lies on a cycle.
cycle=$(printf '%s\n' "$edges" | awk '
	NF == 2 { from[NR] = $1; to[NR] = $2; n = NR; node[$1]; node[$2] }
	END {
		do {
			changed = 0
			for (v in node) { outd[v] = 0; ind[v] = 0 }
			for (i = 1; i <= n; i++)
				if ((from[i] in node) && (to[i] in node)) { outd[from[i]]++; ind[to[i]]++ }
			for (v in node)
				if (outd[v] == 0 || ind[v] == 0) { delete node[v]; changed = 1 }
		} while (changed)
		for (i = 1; i <= n; i++)
			if ((from[i] in node) && (to[i] in node)) print from[i] " -> " to[i]
	}' | sort)
check "no cycle among the objects of src/" "$cycle"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
