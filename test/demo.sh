#!/bin/bash
# test/demo.sh: partoo end to end in a throwaway cluster, against the mock
# Partoo server.  Run as root on Debian 12 or 13: installs the packages, builds
# and installs the extension, then, as the unprivileged user partoo_test,
# starts a private PostgreSQL on a Unix socket and the mock on 127.0.0.1,
# sends and queues messages, and removes everything again.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/test/lib.sh"

if [ "$(id -u)" = 0 ] && [ -z "${PARTOO_AS_TEST_USER:-}" ]; then
	partoo_install_packages || exit 1
	partoo_log "building and installing the extension"
	(cd "$repo" && make -s >/dev/null && make -s install >/dev/null) || exit 1
	partoo_ensure_test_user
	work=$(mktemp -d /tmp/partoo-demo.XXXXXX)
	partoo_copy_tree "$repo" "$work/repo"
	chown -R "$PARTOO_TEST_USER" "$work"
	runuser -u "$PARTOO_TEST_USER" -- env PARTOO_AS_TEST_USER=1 PARTOO_WORK="$work" \
		PATH="$PATH" bash "$work/repo/test/demo.sh"
	rc=$?
	rm -rf "$work"
	exit $rc
fi

W=${PARTOO_WORK:-$(mktemp -d /tmp/partoo-demo.XXXXXX)}
[ -d "$W/repo" ] || partoo_copy_tree "$repo" "$W/repo"
cd "$W/repo" || exit 1
BINDIR=$(partoo_bindir)
make -s -C test/mock >/dev/null || exit 1

cleanup() {
	"$BINDIR/pg_ctl" -D "$W/data" -m fast stop >/dev/null 2>&1
	partoo_stop_mock
}
trap cleanup EXIT

partoo_log "starting the mock Partoo server"
partoo_start_mock "$W/repo" --api-key demo-key || exit 1
echo "   mock Partoo API at $MOCK_URL/v2"

partoo_log "starting a throwaway PostgreSQL cluster with partoo preloaded"
"$BINDIR/initdb" -D "$W/data" -A trust >/dev/null || exit 1
cat >>"$W/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$W'
shared_preload_libraries = 'partoo'
partoo.database = 'postgres'
partoo.base_url = '$MOCK_URL/v2'
partoo.api_key = 'demo-key'
CONF
"$BINDIR/pg_ctl" -D "$W/data" -l "$W/server.log" -w start >/dev/null || exit 1

psql_demo() { "$BINDIR/psql" -X -h "$W" -d postgres -v ON_ERROR_STOP=1 "$@"; }

psql_demo -e <<'SQL'
CREATE EXTENSION partoo;

-- send now, synchronously: returns Partoo's message_id
SELECT partoo_send(conversation_id => 42, content => 'Hello from PostgreSQL!');

-- the transactional way: queued with the order, sent by the worker after COMMIT
CREATE TABLE orders (id int PRIMARY KEY, customer text, conversation_id bigint, shipped boolean DEFAULT false);
CREATE TRIGGER order_shipped AFTER UPDATE ON orders FOR EACH ROW WHEN (NEW.shipped AND NOT OLD.shipped)
  EXECUTE FUNCTION partoo.enqueue_trigger('conversation_id', 'Hi {{customer}}, order {{id}} has shipped!');
INSERT INTO orders VALUES (1, 'Ada', 43), (2, 'Grace', 44);
BEGIN;
UPDATE orders SET shipped = true;
SELECT partoo_enqueue(45, content_type => 'Image', url => 'https://example.com/receipt.png');
COMMIT;

-- a rolled-back transaction sends nothing
BEGIN;
SELECT partoo_enqueue(46, 'this one is never sent');
ROLLBACK;

-- the worker sends within milliseconds; wait for it (10 s at most)
DO $$ BEGIN
  FOR i IN 1..200 LOOP
    EXIT WHEN NOT EXISTS (SELECT FROM partoo.messages WHERE state IN ('queued', 'sending'));
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SELECT id, conversation_id, content_type, coalesce(content, url) AS content, state, partoo_id, attempts
  FROM partoo.messages ORDER BY id;
SELECT * FROM partoo.queue_stats;
SELECT database, pid IS NOT NULL AS running, in_flight, sent, failed, rejected FROM partoo.worker_status();

-- invalid messages are refused before anything is sent
SELECT partoo_enqueue(47, content_type => 'Document', url => 'https://example.com/a.pdf', channel => 'Instagram');
SQL
rc=$?
# the last statement fails on purpose; everything before it must have worked
if [ $rc -ne 3 ] && [ $rc -ne 0 ]; then
	echo "demo failed (psql exit $rc)"; exit 1
fi
sent=$(curl -s "$MOCK_URL/_mock/stats")
echo
echo "== the mock Partoo server saw: $sent"
echo "== demo finished: the cluster and the mock server are stopped and removed"
