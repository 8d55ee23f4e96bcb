#!/bin/bash
# test/ci/rootfs.sh: fresh Debian root file systems for testing partoo on
# other Debian releases (and so other PostgreSQL majors), as root.
#
#   test/ci/rootfs.sh base SUITE         make (or reuse) the cached base system
#                                        of SUITE and print its path
#   test/ci/rootfs.sh run SUITE DIR CMD  run CMD as root inside a throwaway
#                                        copy of that base system, with the
#                                        directory DIR copied to /src (as
#                                        git sees it, if it is a work tree)
#
# A base system is what `debootstrap` makes of SUITE (required and important
# packages: what a new Debian machine has), plus a policy-rc.d that keeps
# package scripts from starting services and an apt setting that accepts an
# expired Release file (see base()).  It is cached under
# $PARTOO_CI_CACHE (default /var/cache/partoo-ci) and rebuilt when it is
# missing, incomplete, made by another version of this script, or older than
# $PARTOO_CI_MAX_AGE days (default 14: a testing suite moves).
#
# "run" never changes the cached base: it mounts an overlay on it (the
# changes go to a temporary directory that is removed afterwards), mounts
# /proc, /dev and a private /dev/shm, copies in /etc/resolv.conf, and shares
# a cache of downloaded .deb files between runs of the same suite (so they
# run one at a time: a second waits for the first).  Every
# mount is undone on exit, failure and signals included.
#
# The Debian mirror is the one this machine's apt already uses, read from
# its sources (no host name is written here).
set -euo pipefail

CACHE=${PARTOO_CI_CACHE:-/var/cache/partoo-ci}
MAX_AGE=${PARTOO_CI_MAX_AGE:-14}
STAMP_VERSION="partoo-rootfs 2"

die() { echo "rootfs.sh: $*" >&2; exit 1; }
say() { printf '== %s\n' "$*" >&2; }

# The URI of the main Debian archive in this machine's apt sources: the
# first one that serves this release's own suite (not -security/-updates).
debian_mirror() {
	local codename uri
	codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[ -n "$codename" ] || die "cannot tell this machine's Debian release"
	uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v want="$codename" '
		function flush() { if (!done && uris != "" && (" " suites " ") ~ (" " want " ")) { split(uris, u, " "); print u[1]; done = 1 } uris = ""; suites = "" }
		/^[[:space:]]*$/ { flush(); next }
		/^URIs:/ { sub(/^URIs:[[:space:]]*/, ""); uris = $0 }
		/^Suites:/ { sub(/^Suites:[[:space:]]*/, ""); suites = $0 }
		END { flush() }')
	if [ -z "$uri" ]; then
		uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v want="$codename" '
			$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			              if ($(i + 1) == want) { print $i; exit } }')
	fi
	[ -n "$uri" ] || die "no Debian archive for '$codename' in this machine's apt sources"
	echo "${uri%/}"
}

stamp_of() { echo "$STAMP_VERSION $1 $(debian_mirror)"; }

base_is_fresh() {
	local root=$1 suite=$2 stamp=$1/etc/partoo-rootfs-stamp
	[ -f "$stamp" ] && [ -x "$root/usr/bin/apt-get" ] || return 1
	[ "$(head -n 1 "$stamp")" = "$(stamp_of "$suite")" ] || return 1
	[ -z "$(find "$stamp" -mtime +"$MAX_AGE")" ]
}

# One user of a suite at a time (held until this script exits): runs share
# its .deb cache, which apt locks, and a stale base must not be replaced
# under a run's overlay.
lock_suite() {
	local fd
	mkdir -p "$CACHE"
	exec {fd}>"$CACHE/$1.lock"
	flock "$fd"
}

base() {
	local suite=$1 root=$CACHE/$1
	if base_is_fresh "$root" "$suite"; then
		echo "$root"
		return
	fi
	command -v debootstrap >/dev/null || {
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null ||
			die "cannot install debootstrap"
	}
	local mirror tmp
	mirror=$(debian_mirror)
	mkdir -p "$CACHE"
	tmp=$(mktemp -d "$CACHE/.$suite.XXXXXX")
	say "debootstrap $suite (cache $root is missing or stale)"
	# a suite debootstrap has no script for yet (a new testing release) is
	# made like sid
	local script=/usr/share/debootstrap/scripts/$suite
	[ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
	if ! debootstrap --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
		"$suite" "$tmp" "$mirror" "$script" >"$tmp.log" 2>&1; then
		tail -n 30 "$tmp.log" >&2
		rm -rf "$tmp" "$tmp.log"
		die "debootstrap $suite failed"
	fi
	rm -f "$tmp.log"
	# package scripts must not start services inside the chroot
	printf '#!/bin/sh\nexit 101\n' >"$tmp/usr/sbin/policy-rc.d"
	chmod 755 "$tmp/usr/sbin/policy-rc.d"
	# A testing suite's Release file is valid for a week only; the registry
	# this machine reaches may be a copy older than that.  These systems
	# exist only to run tests, so apt accepts an expired (still signed)
	# Release file.
	echo 'Acquire::Check-Valid-Until "false";' >"$tmp/etc/apt/apt.conf.d/99partoo-ci"
	rm -rf "$tmp/var/cache/apt/archives"/*.deb "$tmp/var/lib/apt/lists"/*_Packages
	stamp_of "$suite" >"$tmp/etc/partoo-rootfs-stamp"
	rm -rf "$root"
	mv "$tmp" "$root"
	echo "$root"
}

MOUNTS=()
# Undo a run: stop what is still running inside it (a server a failed test
# left behind keeps its mounts busy), unmount in reverse order, and remove
# the run's directory only when nothing is mounted below it any more (so
# that a bind mount of /dev can never be emptied by rm -rf).
cleanup() {
	local i p root=${RUN_DIR:-}/root
	if [ -n "${RUN_DIR:-}" ]; then
		for p in /proc/[0-9]*; do
			[ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && kill -KILL "${p#/proc/}" 2>/dev/null || true
		done
	fi
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
	done
	MOUNTS=()
	if [ -n "${RUN_DIR:-}" ]; then
		if grep -qF " $RUN_DIR/" /proc/mounts; then
			echo "rootfs.sh: still mounted below $RUN_DIR; left in place" >&2
		else
			rm -rf "$RUN_DIR"
		fi
		RUN_DIR=
	fi
	return 0
}
mnt() { mount "$@" && MOUNTS+=("${@: -1}"); }

# copy_source DIR DEST: a git work tree as git sees it (tracked files and
# new ones not ignored), any other directory whole.  Build products are
# never read: another build may be writing them meanwhile (CI builds on 15
# in the clone it copies for 18) and they are made again inside anyway.
copy_source() {
	local src=$1 dst=$2
	if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		(cd "$src" && git ls-files -z -c -o --exclude-standard |
			while IFS= read -r -d '' f; do if [ -e "$f" ]; then printf '%s\0' "$f"; fi; done |
			tar cf - --null -T -) | (cd "$dst" && tar xf -)
	else
		(cd "$src" && tar cf - --exclude=.git .) | (cd "$dst" && tar xf -)
	fi
}

run() {
	local suite=$1 src=$2; shift 2
	local lower
	lock_suite "$suite"
	lower=$(base "$suite")
	RUN_DIR=$(mktemp -d "/tmp/partoo-rootfs-$suite.XXXXXX")
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	local root=$RUN_DIR/root debs=$CACHE/debs-$suite
	mkdir -p "$root" "$RUN_DIR/upper" "$RUN_DIR/work" "$debs/partial"

	mnt -t overlay overlay -o "lowerdir=$lower,upperdir=$RUN_DIR/upper,workdir=$RUN_DIR/work" "$root"
	mnt -t proc proc "$root/proc"
	mnt --bind /dev "$root/dev"
	mnt -t tmpfs -o mode=1777,size=1g shm "$root/dev/shm"
	mnt -t devpts -o newinstance,ptmxmode=0666 devpts "$root/dev/pts" 2>/dev/null || true
	mnt --bind "$debs" "$root/var/cache/apt/archives"
	cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
	mkdir -p "$root/src"
	copy_source "$src" "$root/src"
	# the copy takes the mode of DIR (mktemp -d makes it 0700); the tests'
	# unprivileged user reads files in it
	chmod 755 "$root/src"
	local rc=0
	chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		CI="${CI:-}" DEBIAN_FRONTEND=noninteractive \
		${PARTOO_CI_ENV:-} /bin/bash -c 'cd /src && "$@"' bash "$@" || rc=$?
	cleanup
	return $rc
}

case "${1:-}" in
base) [ $# = 2 ] || die "usage: rootfs.sh base SUITE"; lock_suite "$2"; base "$2" ;;
run) [ $# -ge 4 ] || die "usage: rootfs.sh run SUITE DIR CMD..."; shift; run "$@" ;;
mirror) debian_mirror ;;
*) die "usage: rootfs.sh base SUITE | run SUITE DIR CMD... | mirror" ;;
esac
