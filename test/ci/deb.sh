#!/bin/bash
# test/ci/deb.sh: build partoo's Debian package on a fresh Debian system,
# install it on another one that has no source tree, and see it work.  As
# root, on the machine that runs CI:
#
#   bash test/ci/deb.sh bookworm       (Debian 12, PostgreSQL 15)
#   bash test/ci/deb.sh trixie         (Debian 13, PostgreSQL 17)
#
# 1. build: in a throwaway copy of the cached SUITE system
#    (test/ci/rootfs.sh run), with the source tree: installs the package's
#    build dependencies (apt-get build-dep, so debian/control must name them
#    all), runs dpkg-buildpackage -us -uc -b (one postgresql-NN-partoo per
#    major installed there: the distribution's), and builds the mock Partoo
#    server.  The packages and the mock come out as a tar on stdout.
# 2. install: in a second, fresh copy of the same system, with only the
#    packages, the mock, its runtime library list and this script:
#    apt-get install ./postgresql-NN-partoo_*.deb must pull PostgreSQL NN
#    and the libraries itself; then, as an unprivileged user, a cluster on a
#    Unix socket only (no TCP port: the network is the host's) preloading
#    partoo and pointed at the mock on 127.0.0.1, CREATE EXTENSION partoo,
#    partoo_enqueue(), and the worker must send the message within 30 s.
#
# One "ok"/"not ok" line per check, each stage's time, then
# "N passed, N failed"; the exit status is non-zero when a check failed.
# Servers are stopped and temporary directories removed on every exit
# (PARTOO_KEEP=1 keeps the one with the logs); rootfs.sh undoes its own
# mounts.  When the build fails, the tail of its log is shown and the log
# kept in /tmp/partoo-deb-SUITE-build.log.
#
# The same file is the script run inside both systems ("inside-build" and
# "inside-install" below); those modes are not meant to be called by hand.
set -euo pipefail

die() { echo "deb.sh: $*" >&2; exit 2; }

# ---------------------------------------------------------------------------
# Shared by the host and the install stage: the check counters.
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }
check() { # check DESCRIPTION CMD...
	local what=$1; shift
	if "$@"; then ok "$what"; else not_ok "$what"; fi
}

# apt_get ARGS...: apt-get in a throwaway system (no questions, no
# recommends, no fsync per file), its output on stderr.  Runs of the same
# suite share rootfs.sh's cache of downloaded packages, and apt does not
# wait for its lock: while another run holds it, try again (up to 10 min).
apt_get() {
	local i rc log
	log=$(mktemp /tmp/partoo-apt.XXXXXX)
	for i in $(seq 1 120); do
		rc=0
		apt-get -y -q -o Dpkg::Options::=--force-unsafe-io -o APT::Install-Recommends=false \
			"$@" >"$log" 2>&1 || rc=$?
		[ "$rc" != 0 ] && grep -q 'Could not get lock' "$log" || break
		sleep 5
	done
	cat "$log" >&2
	rm -f "$log"
	return "$rc"
}

# ---------------------------------------------------------------------------
# Stage 1, inside the build system, in /src (a copy of the source tree).
# Everything but the final tar goes to stderr.
inside_build() {
	exec 3>&1 1>&2
	local build=/build/partoo
	export DEBIAN_FRONTEND=noninteractive
	apt_get update
	mkdir -p /build
	cp -a /src "$build"
	cd "$build"
	# the package's build dependencies from debian/control (plus
	# build-essential), and the mock server's own
	apt_get build-dep "$build"
	apt_get install libmicrohttpd-dev
	dpkg-buildpackage -us -uc -b
	make -C test/mock
	mkdir -p /out
	cp /build/postgresql-*-partoo_*.deb test/mock/partoo-mock /out/
	# the mock's runtime libraries, as package names, for stage 2
	dpkg-shlibdeps -O -e test/mock/partoo-mock |
		sed -e 's/^shlibs:Depends=//' -e 's/([^)]*)//g' -e 's/,/ /g' >/out/mock-depends
	sed -n 's/^EXTVERSION[[:space:]]*=[[:space:]]*//p' Makefile >/out/extversion
	tar cf - -C /out . >&3
}

# ---------------------------------------------------------------------------
# Stage 2, inside the install system, in /src (the packages, the mock, the
# list of its libraries, the version, and this script; no source tree).
TEST_USER=partoo_deb
inside_install() {
	export DEBIAN_FRONTEND=noninteractive
	trap 'exit 130' INT TERM # so that run_cluster's EXIT trap stops the servers
	local extversion deb pkg major bindir log
	extversion=$(cat extversion)
	log=$(mktemp /tmp/partoo-apt.XXXXXX)
	apt_get update 2>"$log" || { cat "$log"; not_ok "apt-get update"; summary; }

	for deb in ./postgresql-*-partoo_*.deb; do
		pkg=$(dpkg-deb -f "$deb" Package)
		major=${pkg#postgresql-}
		major=${major%-partoo}
		check "postgresql-$major is not installed yet" not installed "postgresql-$major"
		if apt_get install "$deb" 2>"$log"; then
			ok "apt-get install $deb"
		else
			tail -n 30 "$log"
			not_ok "apt-get install $deb"
			continue
		fi
		check "it pulled in postgresql-$major" installed "postgresql-$major"
		bindir=/usr/lib/postgresql/$major/bin
		check "partoo.so finds every library it needs" \
			bash -c "! ldd /usr/lib/postgresql/$major/lib/partoo.so | grep -q 'not found'"
		check "the installed partoo.control names version $extversion" \
			grep -qx "default_version = '$extversion'" "/usr/share/postgresql/$major/extension/partoo.control"
		check "the package's version is $extversion-*" \
			bash -c "[[ \$(dpkg-query -W -f='\${Version}' $pkg) == $extversion-* ]]"
		run_cluster "$major" "$bindir" "$extversion"
	done
	rm -f "$log"
	summary
}

not() { ! "$@"; }
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

# run_cluster MAJOR BINDIR EXTVERSION: the cluster, the mock and the checks
# that need them; stops both on return
run_cluster() {
	local major=$1 bindir=$2 extversion=$3 home sock data portfile port mock_pid="" i id state
	id "$TEST_USER" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$TEST_USER"
	home=$(getent passwd "$TEST_USER" | cut -d: -f6)
	sock=$home/sock-$major
	data=$home/data-$major
	portfile=$(mktemp -u /tmp/partoo-mock-port.XXXXXX)

	# the mock's runtime libraries (not the package's business)
	apt_get install $(cat mock-depends) 2>/dev/null ||
		{ not_ok "install the mock's libraries: $(cat mock-depends)"; return; }
	./partoo-mock --port 0 --port-file "$portfile" --api-key deb-key --quiet >/dev/null 2>&1 &
	mock_pid=$!
	stop_all() {
		runuser -u "$TEST_USER" -- "$bindir/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
		[ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
		mock_pid=""
		rm -f "$portfile"
	}
	trap stop_all EXIT
	for i in $(seq 1 100); do
		[ -s "$portfile" ] && break
		sleep 0.05
	done
	if [ ! -s "$portfile" ]; then
		not_ok "the mock Partoo server starts"
		stop_all
		return
	fi
	port=$(cat "$portfile")
	ok "the mock Partoo server listens on 127.0.0.1:$port"

	runuser -u "$TEST_USER" -- mkdir -p "$sock"
	if ! runuser -u "$TEST_USER" -- "$bindir/initdb" -D "$data" -A trust -N >/dev/null 2>&1; then
		not_ok "initdb (PostgreSQL $major) as $TEST_USER"
		stop_all
		return
	fi
	# listen on the Unix socket only; settings as in test/demo.sh
	cat >>"$data/postgresql.conf" <<-CONF
	listen_addresses = ''
	unix_socket_directories = '$sock'
	shared_preload_libraries = 'partoo'
	partoo.database = 'postgres'
	partoo.base_url = 'http://127.0.0.1:$port/v2'
	partoo.api_key = 'deb-key'
	CONF
	if runuser -u "$TEST_USER" -- "$bindir/pg_ctl" -D "$data" -l "$home/server-$major.log" -w start >/dev/null 2>&1; then
		ok "PostgreSQL $major starts with shared_preload_libraries = 'partoo'"
	else
		tail -n 20 "$home/server-$major.log"
		not_ok "PostgreSQL $major starts with shared_preload_libraries = 'partoo'"
		stop_all
		return
	fi
	sql() { runuser -u "$TEST_USER" -- "$bindir/psql" -X -A -t -q -v ON_ERROR_STOP=1 -h "$sock" -d postgres -c "$1"; }

	check "CREATE EXTENSION partoo" sql "CREATE EXTENSION partoo"
	check "the extension's version is $extversion" \
		bash -c "[ \"\$1\" = '$extversion' ]" _ "$(sql "SELECT extversion FROM pg_extension WHERE extname = 'partoo'" 2>&1)"
	id=$(sql "SELECT partoo_enqueue(42, 'hello from the Debian package')" 2>&1) || id=""
	check "partoo_enqueue() queues a message (id ${id:-none})" [ -n "$id" ]
	state=""
	if [ -n "$id" ]; then
		# bounded: the worker sends right after COMMIT; 30 s is plenty
		for i in $(seq 1 300); do
			state=$(sql "SELECT state FROM partoo.messages WHERE id = $id" 2>/dev/null) || state=""
			[ "$state" = sent ] && break
			sleep 0.1
		done
	fi
	check "the worker sent it (state '${state:-unknown}')" [ "$state" = sent ]
	check "the mock Partoo server accepted one message" mock_accepted_one "$port"
	stop_all
	trap - EXIT
}

# mock_accepted_one PORT: the mock's stats say one accepted message (bash's
# /dev/tcp: the install system has no curl)
mock_accepted_one() {
	local body
	body=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" &&
		printf 'GET /_mock/stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 &&
		timeout 5 cat <&3) 2>/dev/null) || return 1
	[[ $body =~ \"accepted\":[[:space:]]*1[,}] ]]
}

summary() {
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ] && exit 0
	exit 1
}

# ---------------------------------------------------------------------------
# On the host.
host() {
	local suite=$1 repo t0 t1 t2 build_rc=0 install_rc=0 deb line
	repo=$(cd "$(dirname "$0")/../.." && pwd)
	[ "$(id -u)" = 0 ] || die "run as root (it mounts and chroots)"
	# global: the EXIT trap needs it after host() returns
	work=$(mktemp -d "/tmp/partoo-deb-$suite.XXXXXX")
	if [ -n "${PARTOO_KEEP:-}" ]; then
		trap 'echo "== kept $work (build.log, install.log)"' EXIT
	else
		trap 'rm -rf "$work"' EXIT
	fi
	trap 'exit 130' INT TERM

	# rootfs.sh copies the source tree as git sees it, so that build
	# products of the working tree (another release's mock binary,
	# objects) never reach the build system
	mkdir -p "$work/out" "$work/install"

	echo "== $suite: building the package (test/ci/rootfs.sh run $suite)"
	t0=$(date +%s)
	bash "$repo/test/ci/rootfs.sh" run "$suite" "$repo" bash test/ci/deb.sh inside-build \
		>"$work/build.tar" 2>"$work/build.log" || build_rc=$?
	t1=$(date +%s)
	if [ "$build_rc" = 0 ] && tar xf "$work/build.tar" -C "$work/out" 2>/dev/null &&
		ls "$work"/out/postgresql-*-partoo_*.deb >/dev/null 2>&1; then
		for deb in "$work"/out/postgresql-*-partoo_*.deb; do
			ok "built $(basename "$deb") on $suite"
			check "$(basename "$deb") holds partoo.so, partoo.control and the SQL scripts" \
				deb_holds_files "$deb"
			line=$(dpkg-deb -f "$deb" Depends)
			check "$(basename "$deb") depends on its PostgreSQL and libcurl ($line)" \
				bash -c '[[ $1 == *postgresql-[0-9]* && $1 == *libcurl* ]]' _ "$line"
		done
	else
		tail -n 40 "$work/build.log"
		cp "$work/build.log" "/tmp/partoo-deb-$suite-build.log"
		not_ok "build the package on $suite (rootfs.sh exit $build_rc; log in /tmp/partoo-deb-$suite-build.log)"
		echo "== $suite: build $((t1 - t0)) s"
		echo "$passed passed, $failed failed"
		exit 1
	fi
	echo "== $suite: build $((t1 - t0)) s"

	echo "== $suite: installing it on a system without the source tree"
	cp "$work"/out/postgresql-*-partoo_*.deb "$work/out/partoo-mock" "$work/out/mock-depends" \
		"$work/out/extversion" "$work/install/"
	mkdir -p "$work/install/test/ci"
	cp "$repo/test/ci/deb.sh" "$work/install/test/ci/deb.sh"
	bash "$repo/test/ci/rootfs.sh" run "$suite" "$work/install" bash test/ci/deb.sh inside-install \
		>"$work/install.out" 2>"$work/install.log" || install_rc=$?
	t2=$(date +%s)
	# the install stage's own checks, then its summary line folded into ours
	grep -vE '^[0-9]+ passed, [0-9]+ failed$' "$work/install.out" || true
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$work/install.out" | tail -n 1 || true)
	if [ -n "$line" ]; then
		passed=$((passed + ${line%% passed*}))
		line=${line#*passed, }
		failed=$((failed + ${line%% failed*}))
	fi
	if [ -z "$line" ] || { [ "$install_rc" != 0 ] && [ "$failed" = 0 ]; }; then
		tail -n 30 "$work/install.log"
		not_ok "the install stage ran to its end (rootfs.sh exit $install_rc)"
	fi
	echo "== $suite: install and test $((t2 - t1)) s, total $((t2 - t0)) s"
	echo "$passed passed, $failed failed"
	[ "$failed" = 0 ]
}

# deb_holds_files DEB: partoo.so, the control file and every install script
deb_holds_files() {
	local list
	list=$(dpkg-deb -c "$1" | awk '{ print $NF }')
	grep -qE '^\./usr/lib/postgresql/[0-9]+/lib/partoo\.so$' <<<"$list" &&
		grep -qE '^\./usr/share/postgresql/[0-9]+/extension/partoo\.control$' <<<"$list" &&
		grep -qE '^\./usr/share/postgresql/[0-9]+/extension/partoo--[0-9.]+\.sql$' <<<"$list"
}

case "${1:-}" in
inside-build) inside_build ;;
inside-install) inside_install ;;
bookworm | trixie | forky) host "$1" ;;
*) die "usage: test/ci/deb.sh bookworm|trixie" ;;
esac
