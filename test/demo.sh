#!/bin/bash
# test/demo.sh: partoo end to end in a throwaway cluster, against the mock
# Partoo server, with the status loop closed by partoo-webhookd.  Run as
# root on Debian 12 or 13: installs the packages, builds and installs the
# extension and the daemon, then, as the unprivileged user partoo_test,
# starts a private PostgreSQL on a Unix socket, the mock on 127.0.0.1 and
# partoo-webhookd on 127.0.0.1, queues and sends messages, and shows their
# statuses coming back from the mock's signed webhooks:
#
#   queued (in the transaction) -> sent (after COMMIT, Partoo said Sending)
#   -> delivered (Partoo said Success); and one message that Partoo reports
#   Failed, retried with partoo.retry_later(), then delivered.
#
# Every wait polls a condition, for 15 s at most.  Everything started here
# (daemon, mock, cluster) is stopped and removed on exit, failure or not.
# Stage demo of test/run-all.sh runs this and checks what it prints.
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/test/lib.sh"

if [ "$(id -u)" = 0 ] && [ -z "${PARTOO_AS_TEST_USER:-}" ]; then
	partoo_install_packages || exit 1
	partoo_log "building and installing the extension and partoo-webhookd"
	(cd "$repo" && make -s >/dev/null && make -s install >/dev/null) || exit 1
	partoo_ensure_test_user
	work=$(mktemp -d /tmp/partoo-demo.XXXXXX)
	# NB: on a signal, runuser passes it on and waits for the demo's own
	# clean-up; then this removes the directory
	trap 'rm -rf "$work"' EXIT
	trap 'exit 130' INT TERM
	partoo_copy_tree "$repo" "$work/repo"
	chown -R "$PARTOO_TEST_USER" "$work"
	runuser -u "$PARTOO_TEST_USER" -- env PARTOO_AS_TEST_USER=1 PARTOO_WORK="$work" \
		PATH="$PATH" bash "$work/repo/test/demo.sh"
	exit $?
fi

W=${PARTOO_WORK:-$(mktemp -d /tmp/partoo-demo.XXXXXX)}
[ -d "$W/repo" ] || partoo_copy_tree "$repo" "$W/repo"
cd "$W/repo" || exit 1
BINDIR=$(partoo_bindir)
WEBHOOKD=$BINDIR/partoo-webhookd
make -s -C test/mock >/dev/null || exit 1
[ -x "$WEBHOOKD" ] || { echo "$WEBHOOKD is missing: run make install first"; exit 1; }

WEBHOOKD_PID=""
cleanup() {
	if [ -n "$WEBHOOKD_PID" ]; then
		kill "$WEBHOOKD_PID" 2>/dev/null
		wait "$WEBHOOKD_PID" 2>/dev/null
	fi
	"$BINDIR/pg_ctl" -D "$W/data" -m fast stop >/dev/null 2>&1
	partoo_stop_mock
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '\n== %s\n' "$*"; }
fail() { echo "demo failed: $*"; exit 1; }
psql_demo() { "$BINDIR/psql" -X -h "$W" -d postgres -v ON_ERROR_STOP=1 "$@"; }
# one value, for the demo's own bookkeeping (not shown)
value() { psql_demo -At -c "$1"; }

# wait_until WHAT SQL: poll SQL (a boolean) every 50 ms, 15 s at most
wait_until() {
	local i
	for i in $(seq 1 300); do
		[ "$(value "$2" 2>/dev/null)" = t ] && return 0
		sleep 0.05
	done
	fail "timed out waiting until $1"
}

# the messages, as a user looks at them
MESSAGES="SELECT id, conversation_id AS conv, coalesce(content, url) AS content, partoo_id, state, partoo_status,
       (SELECT string_agg(e.status || ' ' || e.outcome, ', ' ORDER BY e.id) FROM partoo.events e
         WHERE e.partoo_id = m.partoo_id) AS \"webhooks received: status outcome\"
  FROM partoo.messages m ORDER BY id;"

say "starting the mock Partoo server (an API, and signed webhooks like Partoo's)"
partoo_start_mock "$W/repo" --api-key demo-key || exit 1
PUBLIC_KEY=$(curl -sf "$MOCK_URL/_mock/webhooks" | sed -nE 's/.*"public_key":"([^"]+)".*/\1/p')
[ -n "$PUBLIC_KEY" ] || fail "no public key from the mock"
echo "   API at $MOCK_URL/v2; its webhooks are signed with the key $PUBLIC_KEY"

say "starting a throwaway PostgreSQL cluster with partoo preloaded"
"$BINDIR/initdb" -D "$W/data" -A trust >/dev/null || exit 1
cat >>"$W/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$W'
shared_preload_libraries = 'partoo'
partoo.database = 'postgres'
partoo.base_url = '$MOCK_URL/v2'
partoo.api_key = 'demo-key'
partoo.webhook_public_key = '$PUBLIC_KEY'
CONF
# the daemon's role logs in with a password; everybody else: trust (a demo)
printf 'local all webhooks scram-sha-256\nlocal all all trust\n' >"$W/data/pg_hba.conf"
echo "   partoo.webhook_public_key = the mock's public key (Partoo's own in production)"
"$BINDIR/pg_ctl" -D "$W/data" -l "$W/server.log" -w start >/dev/null || exit 1

say "the extension, and a role for partoo-webhookd that may only ingest webhooks"
psql_demo -q -e <<'SQL' || fail "setting up the database"
CREATE EXTENSION partoo;
CREATE ROLE webhooks LOGIN;
GRANT EXECUTE ON FUNCTION partoo_ingest_webhook(text, text),
      partoo_ingest_webhooks(text[], text[]) TO webhooks;
SQL
# Its password goes to the server on stdin and to the daemon in a password
# file (libpq's PGPASSFILE): never on a command line, where ps shows it.
password=$(openssl rand -hex 16) || fail "openssl rand"
printf "ALTER ROLE webhooks PASSWORD '%s';\n" "$password" | psql_demo -q || fail "setting the password"
(umask 077 && printf '%s:*:*:webhooks:%s\n' "$W" "$password" >"$W/pgpass")
unset password

say "starting partoo-webhookd (as role webhooks, password from $W/pgpass)"
PGPASSFILE=$W/pgpass "$WEBHOOKD" --listen 127.0.0.1:0 \
	--dbname "host=$W dbname=postgres user=webhooks" 2>"$W/webhookd.log" &
WEBHOOKD_PID=$!
for _ in $(seq 1 300); do
	WEBHOOKD_PORT=$(sed -nE 's|.*listening on http://127\.0\.0\.1:([0-9]+).*|\1|p' "$W/webhookd.log")
	[ -n "$WEBHOOKD_PORT" ] && break
	kill -0 "$WEBHOOKD_PID" 2>/dev/null || break
	sleep 0.05
done
[ -n "$WEBHOOKD_PORT" ] || { cat "$W/webhookd.log"; fail "partoo-webhookd did not start"; }
sed 's/^/   /' "$W/webhookd.log"
curl -sf "http://127.0.0.1:$WEBHOOKD_PORT/healthz" >/dev/null || fail "partoo-webhookd is not healthy"

say "telling the mock where to post its webhooks (Partoo's webhook settings, in production)"
# Sending at once, then Success a second later (rate_failed 0: none fails)
curl -sf -X POST -d "{\"url\":\"http://127.0.0.1:$WEBHOOKD_PORT/partoo\",\"delay_ms\":1000,\"rate_failed\":0}" \
	"$MOCK_URL/_mock/webhooks" >/dev/null || fail "configuring the mock's webhooks"
echo "   message_updated webhooks -> http://127.0.0.1:$WEBHOOKD_PORT/partoo: Sending at once, Success 1 s later"

say "1. queue messages in a transaction: sent if and only if it commits"
psql_demo -e <<SQL || fail "queueing the messages"
-- when an order ships, message the customer
CREATE TABLE orders (id int PRIMARY KEY, customer text, conversation_id bigint, shipped boolean DEFAULT false);
CREATE TRIGGER order_shipped AFTER UPDATE ON orders FOR EACH ROW WHEN (NEW.shipped AND NOT OLD.shipped)
  EXECUTE FUNCTION partoo.enqueue_trigger('conversation_id', 'Hi {{customer}}, order {{id}} has shipped!');
INSERT INTO orders VALUES (1, 'Ada', 43), (2, 'Grace', 44);
BEGIN;
UPDATE orders SET shipped = true;
SELECT partoo_enqueue(45, content_type => 'Image', url => 'https://example.com/receipt.png');
-- inside the transaction: queued (the worker sees nothing before COMMIT)
$MESSAGES
COMMIT;

-- a rolled-back transaction sends nothing
BEGIN;
SELECT partoo_enqueue(46, 'this one is never sent');
ROLLBACK;
SQL

wait_until "the worker has sent the three messages and Partoo's Sending webhooks are in" \
	"SELECT count(*) = 3 AND bool_and(state = 'sent' AND EXISTS (SELECT 1 FROM partoo.events e
	   WHERE e.partoo_id = m.partoo_id AND e.status = 'Sending')) FROM partoo.messages m"
say "2. after COMMIT: the worker sent them and Partoo answered with their ids (state sent);
   Partoo's first webhook, status Sending, came back through partoo-webhookd"
psql_demo -c "$MESSAGES" || fail "reading the messages"

wait_until "Partoo's Success webhooks are in" \
	"SELECT bool_and(state = 'delivered') FROM partoo.messages"
say "3. a second later Partoo posts Success for each: state delivered"
psql_demo -c "$MESSAGES" || fail "reading the messages"

say "4. a message to a phone that is switched off: Partoo will report it Failed"
echo "   (the mock decides each message's fate when it accepts it: rate_failed 1 for this one)"
curl -sf -X POST -d '{"rate_failed":1,"delay_ms":1000}' "$MOCK_URL/_mock/webhooks" >/dev/null ||
	fail "configuring the mock's webhooks"
psql_demo -e -c "SELECT partoo_send(47, 'Your code is 1234') AS partoo_id;" || fail "sending"
curl -sf -X POST -d '{"rate_failed":0,"delay_ms":1000}' "$MOCK_URL/_mock/webhooks" >/dev/null ||
	fail "configuring the mock's webhooks"
FAILED_ID=$(value "SELECT id FROM partoo.messages WHERE conversation_id = 47")
wait_until "Partoo's Failed webhook is in" \
	"SELECT state = 'failed' FROM partoo.messages WHERE id = $FAILED_ID"
say "   a second later Partoo posts Failed: state failed, and the message shows in partoo.problems"
psql_demo -e <<SQL || fail "retrying"
$MESSAGES
SELECT id, conversation_id, state, attempts FROM partoo.problems;
-- ask Partoo to retry it (queued for the worker, which calls POST /messages/{id}/retry)
SELECT partoo.retry_later($FAILED_ID);
SQL

wait_until "the retried message is delivered" \
	"SELECT state = 'delivered' FROM partoo.messages WHERE id = $FAILED_ID"
say "5. Partoo retried it (Sending, then Success): everything delivered"
psql_demo -e <<SQL || fail "reading the messages"
$MESSAGES
SELECT * FROM partoo.queue_stats;
SELECT database, pid IS NOT NULL AS running, in_flight, sent, retried, failed, rejected FROM partoo.worker_status();
SQL

say "invalid messages are refused before anything is sent or queued"
psql_demo -e -c "SELECT partoo_enqueue(48, content_type => 'Document', url => 'https://example.com/a.pdf', channel => 'Instagram');" 2>&1
[ "$(value "SELECT count(*) FROM partoo.messages WHERE conversation_id = 48")" = 0 ] ||
	fail "the invalid message was queued"

# Every webhook the mock posted was answered 200: none waits for a retry
for _ in $(seq 1 300); do
	stats=$(curl -sf "$MOCK_URL/_mock/stats")
	case $stats in *'"webhooks_pending":0'*) break ;; esac
	sleep 0.05
done
say "what partoo-webhookd counted (GET /metrics)"
curl -sf "http://127.0.0.1:$WEBHOOKD_PORT/metrics" |
	grep -E '^partoo_webhookd_(requests_total\{route="partoo"|outcomes_total|db_errors_total)' | sed 's/^/   /'
say "what the mock Partoo server did"
echo "$stats" | tr ',' '\n' | grep -E '"(accepted|retries_ok|webhooks_sent|webhooks_2xx|webhooks_5xx|webhooks_given_up|webhooks_pending)"' |
	tr -d '{}"' | sed 's/^/   /'
case $stats in
*'"webhooks_given_up":0'*'"webhooks_pending":0'*) ;;
*) fail "the mock could not deliver every webhook: $stats" ;;
esac

kill "$WEBHOOKD_PID" && wait "$WEBHOOKD_PID"
rc=$?
WEBHOOKD_PID=""
[ $rc = 0 ] || fail "partoo-webhookd exited $rc"
say "partoo-webhookd's log (never a body, a signature or a key)"
sed 's/^/   /' "$W/webhookd.log"
echo
echo "== demo finished: the status loop closed (queued -> sent -> delivered; failed -> retried -> delivered);"
echo "== the daemon, the cluster and the mock server are stopped and removed"
