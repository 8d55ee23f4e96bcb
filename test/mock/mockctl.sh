#!/bin/bash
# test/mock/mockctl.sh: the mock Partoo server around `make installcheck`
# (the Makefile's mock-* and installcheck-mock targets call it).
#
#   mockctl.sh start PORT PIDFILE   start a mock in the background on
#                                   127.0.0.1:PORT and write its pid and port
#                                   to PIDFILE; does nothing when the one
#                                   PIDFILE names already runs on PORT
#   mockctl.sh stop PIDFILE         stop the mock PIDFILE names
#   mockctl.sh check PORT           succeed when a mock answers on PORT
#   mockctl.sh run CMD...           start a mock on a free port, run CMD with
#                                   MOCK_PORT and PARTOO_MOCK_URL set to it,
#                                   stop the mock (also when CMD fails or is
#                                   interrupted); exit with CMD's status
#
# The mock accepts the API keys the regress tests use (test-key and
# other-key) and listens on 127.0.0.1 only.  It must be built first
# (make -C test/mock).  Uses bash's /dev/tcp, so no curl is needed here.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
MOCK=$here/partoo-mock
MOCK_ARGS=(--api-key test-key --api-key other-key --quiet)

die() { echo "mockctl.sh: $*" >&2; exit 1; }

# alive PID: PID is a running partoo-mock (not a reused pid)
alive() {
	[ -n "$1" ] && kill -0 "$1" 2>/dev/null &&
		tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q partoo-mock
}

# answers PORT: a GET /_mock/stats on 127.0.0.1:PORT gets an HTTP 200
answers() {
	local status
	status=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
		printf 'GET /_mock/stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
		timeout 5 head -n 1 <&3) 2>/dev/null) || return 1
	[[ $status == HTTP/1.?\ 200* ]]
}

# launch PORT: start a mock in the background; sets PID and PORT (the port
# it listens on, PORT 0 meaning a free one)
launch() {
	local portfile i
	[ -x "$MOCK" ] || die "$MOCK is not built (make -C test/mock)"
	portfile=$(mktemp "${TMPDIR:-/tmp}/partoo-mock-port.XXXXXX")
	rm -f "$portfile"
	"$MOCK" --port "$1" --port-file "$portfile" "${MOCK_ARGS[@]}" \
		</dev/null >/dev/null 2>&1 &
	PID=$!
	for i in $(seq 1 100); do
		[ -s "$portfile" ] && break
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.05
	done
	if [ ! -s "$portfile" ]; then
		kill "$PID" 2>/dev/null || true
		rm -f "$portfile"
		die "the mock did not start on port $1 (in use?)"
	fi
	PORT=$(cat "$portfile")
	rm -f "$portfile"
}

# halt PID: stop a mock and wait (up to 5 s) until it is gone
halt() {
	local i
	alive "$1" || return 0
	kill "$1" 2>/dev/null || return 0
	for i in $(seq 1 100); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.05
	done
	kill -9 "$1" 2>/dev/null || true
}

case "${1:-}" in
start)
	[ $# = 3 ] || die "usage: mockctl.sh start PORT PIDFILE"
	port=$2 pidfile=$3 old_pid="" old_port=""
	[ -f "$pidfile" ] && read -r old_pid old_port <"$pidfile" || true
	if alive "$old_pid"; then
		[ "$old_port" = "$port" ] ||
			die "a mock already runs on port $old_port (pid $old_pid): make mock-stop first"
		echo "mock Partoo server already running at http://127.0.0.1:$port/v2 (pid $old_pid)"
		exit 0
	fi
	launch "$port"
	echo "$PID $PORT" >"$pidfile"
	echo "mock Partoo server at http://127.0.0.1:$PORT/v2 (pid $PID; make mock-stop stops it)"
	;;
stop)
	[ $# = 2 ] || die "usage: mockctl.sh stop PIDFILE"
	pidfile=$2 pid=""
	[ -f "$pidfile" ] || { echo "no mock Partoo server started ($pidfile is missing)"; exit 0; }
	read -r pid _ <"$pidfile" || true
	halt "$pid"
	rm -f "$pidfile"
	echo "mock Partoo server stopped"
	;;
check)
	[ $# = 2 ] || die "usage: mockctl.sh check PORT"
	answers "$2" || die "no mock Partoo server answers on 127.0.0.1:$2: start one with make mock-start, or run make installcheck-mock"
	;;
run)
	[ $# -ge 2 ] || die "usage: mockctl.sh run CMD..."
	shift
	PID=""
	trap 'halt "$PID"' EXIT
	trap 'exit 130' INT TERM
	launch 0
	export MOCK_PORT=$PORT PARTOO_MOCK_URL=http://127.0.0.1:$PORT
	echo "mock Partoo server at $PARTOO_MOCK_URL/v2 (pid $PID), stopped after: $*"
	rc=0
	"$@" || rc=$?
	exit $rc
	;;
*)
	die "usage: mockctl.sh start PORT PIDFILE | stop PIDFILE | check PORT | run CMD..."
	;;
esac
