# test/lib.sh: shared shell functions for the test suite, the demo and the
# benchmarks.  Sourced, never run.  Everything here is idempotent.

PARTOO_TEST_USER=${PARTOO_TEST_USER:-partoo_test}
# The distribution's own PostgreSQL (whichever major it ships: 15 on Debian
# 12, 17 on Debian 13) and its server headers, so that the same commands
# work on either; what the build, the demo and the regress and TAP tests
# need.  The tools of some stages come on top (partoo_install_packages).
PARTOO_DEB_PACKAGES="build-essential postgresql postgresql-server-dev-all \
libcurl4-openssl-dev libcjson-dev libmicrohttpd-dev libssl-dev libpq-dev curl \
libipc-run-perl openssl"
PARTOO_DEB_FUZZ="clang libclang-rt-dev"
PARTOO_DEB_TAP="valgrind nginx"
PARTOO_DEB_BENCH="wrk gnuplot-nox nginx"

partoo_log() { printf '== %s\n' "$*" >&2; }

# Install the Debian packages the build and the tests need (root only):
# partoo_install_packages [STAGE...] adds the tools of the stages named
# (fuzz and asan: clang; tap: valgrind, for TAP 070, and nginx, for HTTP/2
# in TAP 360; bench: wrk, gnuplot, nginx for HTTP/2 in scenario 10b).
partoo_install_packages() {
	local missing="" want=$PARTOO_DEB_PACKAGES stage
	for stage in "$@"; do
		case $stage in
		fuzz | asan) want="$want $PARTOO_DEB_FUZZ" ;;
		tap) want="$want $PARTOO_DEB_TAP" ;;
		bench) want="$want $PARTOO_DEB_BENCH" ;;
		esac
	done
	for p in $want; do
		dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
	done
	if [ -n "$missing" ]; then
		partoo_log "installing:$missing"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null || return 1
	fi
	# the Debian package starts a cluster of its own; we never use it
	return 0
}

partoo_bindir() { pg_config --bindir; }

# Create the unprivileged user that runs servers in tests (root only).
partoo_ensure_test_user() {
	id "$PARTOO_TEST_USER" >/dev/null 2>&1 ||
		useradd --system --create-home --shell /bin/bash "$PARTOO_TEST_USER"
}

# Copy what the tests read into directory $1 (owned by the test user later).
partoo_copy_tree() {
	local src=$1 dst=$2
	mkdir -p "$dst"
	(cd "$src" && tar cf - Makefile partoo.control sql expected src test) | (cd "$dst" && tar xf -)
}

# Start the mock server: partoo_start_mock DIR [ARGS...].  Sets MOCK_PID,
# MOCK_PORT, MOCK_URL.  The binary must already be built in DIR/test/mock.
partoo_start_mock() {
	local dir=$1; shift
	local portfile
	portfile=$(mktemp)
	rm -f "$portfile"
	"$dir/test/mock/partoo-mock" --port 0 --port-file "$portfile" --quiet "$@" \
		>"${MOCK_LOG:-/dev/null}" 2>&1 &
	MOCK_PID=$!
	for _ in $(seq 1 100); do
		[ -s "$portfile" ] && break
		sleep 0.05
	done
	if [ ! -s "$portfile" ]; then
		echo "mock server did not start" >&2
		return 1
	fi
	MOCK_PORT=$(cat "$portfile")
	rm -f "$portfile"
	MOCK_URL="http://127.0.0.1:$MOCK_PORT"
	export MOCK_PID MOCK_PORT MOCK_URL
}

partoo_stop_mock() {
	[ -n "${MOCK_PID:-}" ] && kill "$MOCK_PID" 2>/dev/null && wait "$MOCK_PID" 2>/dev/null
	MOCK_PID=""
}
