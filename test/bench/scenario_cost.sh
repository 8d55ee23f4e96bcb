# test/bench/scenario_cost.sh: scenario 11 of `make bench`, the cost of one
# message on the database server (issue 16, target 5).  Sourced by run.sh
# (its helpers q, qf, record, calc... are in scope); never run alone.
#
# What one message costs over its life (enqueue, claim, send, record, one
# message_updated webhook, and the writes that end its tracking): the WAL
# bytes it makes, and the worker's CPU time per message sent.  Each phase
# runs alone, on messages of its own, with nothing else writing:
#
#  - autovacuum is off for the scenario (ALTER SYSTEM, reloaded, reset at
#    the end), so that no vacuum of another table lands in a phase;
#  - the worker is stopped (SIGSTOP, while idle in its wait) for the
#    phases it takes no part in, and for the CHECKPOINT before its drain,
#    then continued (SIGCONT): the latch an enqueue set wakes it;
#  - a CHECKPOINT opens every phase, so that each page's first change in a
#    phase carries a full-page image: those bytes (FPI) are reported apart,
#    since how many there are depends on checkpoint timing.
#
# Phases (WAL between pg_current_wal_insert_lsn() before and after, broken
# down with contrib pg_walinspect by relation and record type; written to
# OUT/cost-wal.txt):
#   enqueue    one statement of N partoo_enqueue calls
#   drain      the worker claims, sends (mock on loopback, no latency) and
#              records all N (with their partoo.reconcile rows)
#   webhook    one message_updated (Success) each, partoo_ingest_webhooks()
#              in calls of 1,000, a transaction each
#   untrack    the partoo.reconcile rows of the delivered messages deleted,
#              as the worker's pick deletes them once they are due
#   vacuum     VACUUM of partoo.outbox, messages, reconcile and events: the
#              dead row versions the phases left
#
# CPU: utime + stime of the worker (/proc/PID/stat) over a separate drain
# of NCPU messages with nothing attached, per message sent; and, for
# information, the backend that enqueued them, and the cluster's other
# processes and the mock during the drain.  The breakdown by step comes
# from perf (cpu-clock, user space: perf_event_paranoid allows no more
# here) over the WAL round's drain: each sample is put in the step of the
# partoo function on its stack (OUT/cost-perf.txt).
#
# The baseline is today's figures, measured at commit COST_BASE_COMMIT on
# this machine (3 runs, the mean; README.md, Performance) and kept here as
# constants; the target is two thirds of each (ratio <= 0.667).

COST_BASE_COMMIT=7200b9a
# measured there with this scenario, 3 runs on 2026-12-05 (the means; the
# ranges in README.md, Performance)
# WAL bytes per message, excluding full-page images: total and per phase
COST_BASE_WAL=3881
COST_BASE_WAL_enqueue=713
COST_BASE_WAL_drain=1855
COST_BASE_WAL_webhook=1223
COST_BASE_WAL_untrack=56.4
COST_BASE_WAL_vacuum=33.6
# full-page images per message, all phases
COST_BASE_FPI=780
# worker CPU per message sent, microseconds
COST_BASE_CPU=135

# cost_lsn: the current WAL insert position
cost_lsn() { q "SELECT pg_current_wal_insert_lsn()"; }

# cost_ticks PID...: utime + stime of the processes, in clock ticks
cost_ticks() {
	local p
	for p in "$@"; do [ -r "/proc/$p/stat" ] && sed 's/.*) //' "/proc/$p/stat"; done |
		awk '{ s += $12 + $13 } END { print s + 0 }'
}

# cost_wal PHASE LSN0 LSN1 N: WAL of a phase, per message; prints
# "bytes fpi" (per message) and appends its breakdown to OUT/cost-wal.txt
cost_wal() {
	local phase=$1 l0=$2 l1=$3 n=$4
	# pg_walinspect reads only flushed WAL: a commit that wrote some flushes
	# it (a VACUUM, or a transaction that wrote nothing, does not wait)
	q "INSERT INTO bench.cost_flush VALUES (1)" >/dev/null
	{
		echo "== $phase: $(q "SELECT pg_wal_lsn_diff('$l1', '$l0')") bytes for $n messages ($l0 .. $l1)"
		echo "relation or record kind	records/msg	bytes/msg (no FPI)	FPI bytes/msg"
		q "WITH r AS (
			 SELECT rmgr, record_type, record_length, fpi_length, fn,
					CASE WHEN fn IS NULL THEN rmgr || '/' || record_type
						 ELSE coalesce(pg_filenode_relation(0, fn)::text, 'relfilenode ' || fn) END AS what
			   FROM (SELECT resource_manager AS rmgr, record_type, record_length, fpi_length,
							(regexp_match(block_ref, 'rel \d+/\d+/(\d+)'))[1]::oid AS fn
					   FROM pg_get_wal_records_info('$l0', '$l1')) r0)
		   SELECT what || ' [' || rmgr || ' ' || string_agg(DISTINCT record_type, ',') || ']'
				  || E'\t' || round(count(*)::numeric / $n, 3)
				  || E'\t' || round(sum(record_length - fpi_length)::numeric / $n, 1)
				  || E'\t' || round(sum(fpi_length)::numeric / $n, 1)
			 FROM r GROUP BY what, rmgr
			 ORDER BY sum(record_length) DESC"
		echo
	} >>"$OUT/cost-wal.txt"
	q "SELECT round((pg_wal_lsn_diff('$l1', '$l0') - coalesce(sum(fpi_length), 0))::numeric / $n, 1)
			  || ' ' || round(coalesce(sum(fpi_length), 0)::numeric / $n, 1)
		 FROM pg_get_wal_records_info('$l0', '$l1')"
}

# cost_top PHASE N: the three relations that took most of a phase's bytes
cost_top() {
	awk -F'\t' -v p="== $1:" '
		index($0, p) == 1 { on = 1; next }
		on && /^$/ { exit }
		on && $3 ~ /^[0-9.]+$/ { sub(/ \[.*/, "", $1); printf "%s%s %s B", (k++ ? ", " : ""), $1, $3; if (k == 3) exit }
	' "$OUT/cost-wal.txt"
}

# cost_round N PREFIX PERF: the WAL phases on N messages; PERF: profile
# the drain into OUT/cost-perf.data.  Sets COST_WAL_<phase> and
# COST_FPI_<phase> (bytes per message).
cost_round() {
	local n=$1 prefix=$2 perf=$3 wpid base l0 l1 set_sig="" r perf_pid=""
	wpid=$(worker_pid)
	mock_reset

	# enqueue: the worker stopped, so that it claims nothing yet
	kill -STOP "$wpid" || return 1
	q "CHECKPOINT" >/dev/null
	base=$(worker_done)
	l0=$(cost_lsn)
	q "SELECT count(partoo_enqueue(12345, '$prefix-' || i)) FROM generate_series(1, $n) i" >/dev/null ||
		{ kill -CONT "$wpid"; return 1; }
	l1=$(cost_lsn)
	set -- $(cost_wal enqueue "$l0" "$l1" "$n")
	COST_WAL_enqueue=$1 COST_FPI_enqueue=$2

	# drain: CHECKPOINT with the worker still stopped, then let it go
	q "CHECKPOINT" >/dev/null
	l0=$(cost_lsn)
	if [ "$perf" = 1 ] && command -v perf >/dev/null; then
		perf record -q -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$wpid" \
			-o "$OUT/cost-perf.data" >"$W/cost-perf.log" 2>&1 &
		perf_pid=$!
		BG_PIDS="$BG_PIDS $perf_pid"
		sleep 0.3
	fi
	kill -CONT "$wpid"
	if ! wait_drained $((base + n)) "$(budget 120 60)"; then
		[ -n "$perf_pid" ] && kill -INT "$perf_pid"
		return 1
	fi
	l1=$(cost_lsn)
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" 2>/dev/null
		wait "$perf_pid" 2>/dev/null
		BG_PIDS=${BG_PIDS/ $perf_pid/}
	fi
	set -- $(cost_wal drain "$l0" "$l1" "$n")
	COST_WAL_drain=$1 COST_FPI_drain=$2
	check_once 11 cost "$prefix" "$n" || return 1

	# webhook: one message_updated each, in calls of 1,000
	[ "$(q "SELECT count(*) FROM pg_settings WHERE name = 'partoo.webhook_require_signature'")" = 1 ] &&
		set_sig="SET partoo.webhook_require_signature = off;"
	q "DROP TABLE IF EXISTS bench.cost_hooks;
	   CREATE TABLE bench.cost_hooks AS
	   SELECT batch, array_agg(payload ORDER BY id) AS payloads FROM (
		SELECT (row_number() OVER (ORDER BY id) - 1) / 1000 AS batch, id,
			   json_build_object('type', 'message_updated', 'payload', json_build_object(
				'message', json_build_object('id', partoo_id, 'conversation_id', conversation_id,
					'date', to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
					'content_type', content_type, 'sender_type', 'User', 'sender_label', 'Bench',
					'status', 'Success', 'is_deleted', false, 'content', content,
					'user_id', 'bench-user', 'custom_channel', NULL),
				'conversation', json_build_object('id', conversation_id, 'messaging_partner', 'Whatsapp'),
				'org_id', 1))::text AS payload
		 FROM partoo.messages WHERE content LIKE '$prefix-%' AND state = 'sent') s
	   GROUP BY batch" >/dev/null || return 1
	kill -STOP "$wpid"
	q "CHECKPOINT" >/dev/null
	l0=$(cost_lsn)
	qf >/dev/null <<-SQL || { kill -CONT "$wpid"; return 1; }
	$set_sig
	DO \$\$
	DECLARE
		b record;
	BEGIN
		FOR b IN SELECT payloads FROM bench.cost_hooks ORDER BY batch LOOP
			PERFORM count(*) FROM partoo_ingest_webhooks(b.payloads);
			COMMIT;
		END LOOP;
	END \$\$;
	SQL
	l1=$(cost_lsn)
	set -- $(cost_wal webhook "$l0" "$l1" "$n")
	COST_WAL_webhook=$1 COST_FPI_webhook=$2
	r=$(q "SELECT count(*) FROM partoo.messages WHERE content LIKE '$prefix-%' AND state = 'delivered'")
	if [ "$r" != "$n" ]; then
		kill -CONT "$wpid"
		record 11 cost "check: every webhook applied" FAIL "" "" "" "" "" FAIL "$r of $n delivered"
		checks_failed=$((checks_failed + 1))
		return 1
	fi

	# untrack: the reconcile rows of delivered messages go (the pick's
	# delete of rows that no longer wait, without waiting for them to be due)
	q "CHECKPOINT" >/dev/null
	l0=$(cost_lsn)
	q "DELETE FROM partoo.reconcile r USING partoo.messages m
		WHERE r.message_id = m.id AND m.content LIKE '$prefix-%' AND m.state <> 'sent'" >/dev/null
	l1=$(cost_lsn)
	set -- $(cost_wal untrack "$l0" "$l1" "$n")
	COST_WAL_untrack=$1 COST_FPI_untrack=$2

	# vacuum: the dead row versions all of that left
	q "CHECKPOINT" >/dev/null
	l0=$(cost_lsn)
	q "VACUUM partoo.outbox, partoo.messages, partoo.reconcile, partoo.events" >/dev/null
	l1=$(cost_lsn)
	set -- $(cost_wal vacuum "$l0" "$l1" "$n")
	COST_WAL_vacuum=$1 COST_FPI_vacuum=$2
	kill -CONT "$wpid"
	q "DROP TABLE bench.cost_hooks" >/dev/null
}

# cost_perf_steps: the perf samples of OUT/cost-perf.data by step, as
# "step percent" lines (empty when there is no profile)
cost_perf_steps() {
	[ -s "$OUT/cost-perf.data" ] || return 0
	perf script -i "$OUT/cost-perf.data" -F ip,sym 2>/dev/null | awk '
		function flush() {
			if (!insample) return
			step = "other"
			if (s ~ /partoo_outbox_record|partoo_job_record|partoo_reconcile_track|partoo_webhook_apply_recorded/) step = "record SQL"
			else if (s ~ /partoo_outbox_claim|partoo_outbox_next_due/) step = "claim SQL"
			else if (s ~ /partoo_job_fill|partoo_build_send_body|partoo_http_|curl_|Curl_|partoo_parse_api|partoo_job_classify|cJSON_/) step = "HTTP + JSON"
			else if (s ~ /CommitTransaction|StartTransaction|AbortTransaction/) step = "transaction start/commit"
			else if (s ~ /partoo_/) step = "other partoo"
			c[step]++; total++; insample = 0; s = ""
		}
		/^$/ { flush(); next }
		{ insample = 1; s = s " " $0 }
		END { flush(); for (k in c) printf "%s\t%.1f\n", k, 100 * c[k] / total; printf "samples\t%d\n", total }'
}

scenario_11() {
	local n=20000 ncpu=50000 wpid base l0 l1 t0 t1 e0 e1 o0 o1 ticks backend_ticks others phase
	local tot fpi cpu note steps
	if [ "$(q "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_walinspect'")" = 0 ]; then
		record 11 cost "WAL per message" "not available" "" "" "" "" "" "n/a" "contrib pg_walinspect is not installed"
		return 0
	fi
	q "CREATE EXTENSION IF NOT EXISTS pg_walinspect" >/dev/null || return 1
	q "CREATE TABLE IF NOT EXISTS bench.cost_flush (i int)" >/dev/null
	q "ALTER SYSTEM SET autovacuum = off" >/dev/null
	q "SELECT pg_reload_conf()" >/dev/null
	# no check due during the scenario; a clean slate for VACUUM to measure
	q "DELETE FROM partoo.reconcile" >/dev/null
	q "VACUUM ANALYZE partoo.outbox, partoo.messages, partoo.reconcile, partoo.events" >/dev/null
	: >"$OUT/cost-wal.txt"

	cost_round $n s11 1 || { cost_restore; return 1; }
	tot=$(calc "$COST_WAL_enqueue + $COST_WAL_drain + $COST_WAL_webhook + $COST_WAL_untrack + $COST_WAL_vacuum")
	fpi=$(calc "$COST_FPI_enqueue + $COST_FPI_drain + $COST_FPI_webhook + $COST_FPI_untrack + $COST_FPI_vacuum")

	# CPU: a drain of ncpu messages, nothing attached
	wpid=$(worker_pid)
	mock_reset
	base=$(worker_done)
	kill -STOP "$wpid"
	set -- $(qf <<-SQL
	SELECT pg_backend_pid();
	SELECT count(partoo_enqueue(12345, 's11c-' || i)) FROM generate_series(1, $ncpu) i \\g /dev/null
	SELECT pg_read_file('/proc/' || pg_backend_pid() || '/stat');
	SQL
	)
	local bpid=$1
	backend_ticks=$(echo "$*" | sed 's/.*) //' | awk '{ print $12 + $13 }')
	others=$(ps -o pid= --ppid "$PM_PID" | grep -vw "$wpid" | tr '\n' ' ')
	o0=$(cost_ticks $others $MOCK_PID)
	t0=$(sed 's/.*) //' "/proc/$wpid/stat" | awk '{ print $12 " " $13 }')
	kill -CONT "$wpid"
	if ! wait_drained $((base + ncpu)) "$(budget 120 40)"; then
		cost_restore
		return 1
	fi
	t1=$(sed 's/.*) //' "/proc/$wpid/stat" | awk '{ print $12 " " $13 }')
	o1=$(cost_ticks $others $MOCK_PID)
	CHECK_QUIET=1 check_once 11 "cost (CPU drain)" s11c $ncpu
	set -- $t0 $t1
	# ticks of 1/100 s -> microseconds per message
	cpu=$(calc "(($3 + $4) - ($1 + $2)) * 10000 / $ncpu")
	note="user $(calc "($3 - $1) * 10000 / $ncpu") us, system $(calc "($4 - $2) * 10000 / $ncpu") us"
	cost_restore

	# the lines: total, then each phase
	record 11 cost "WAL per message, whole life (excl. full-page images)" "$tot" bytes \
		"today's figure (commit $COST_BASE_COMMIT)" "$COST_BASE_WAL" "$(calc "$tot / $COST_BASE_WAL")" \
		"ratio ≤ 0.667" "$(met "$(calc "$tot / $COST_BASE_WAL")" '<=' 0.667)" \
		"$n messages; enqueue $COST_WAL_enqueue + drain $COST_WAL_drain + webhook $COST_WAL_webhook + untrack $COST_WAL_untrack + vacuum $COST_WAL_vacuum; breakdown in cost-wal.txt"
	for phase in enqueue drain webhook untrack vacuum; do
		local v b fp
		eval "v=\$COST_WAL_$phase b=\$COST_BASE_WAL_$phase fp=\$COST_FPI_$phase"
		record 11 cost "  WAL per message: $phase" "$v" bytes \
			"today's figure (commit $COST_BASE_COMMIT)" "$b" "$(calc "$v / $b")" "" "" \
			"FPI $fp B; $(cost_top "$phase")"
	done
	record 11 cost "full-page images per message, all phases (checkpoint before each)" "$fpi" bytes \
		"today's figure (commit $COST_BASE_COMMIT)" "$COST_BASE_FPI" "$(calc "$fpi / $COST_BASE_FPI")" "" "" \
		"informative: depends on checkpoint timing"
	record 11 cost "worker CPU per message sent ($ncpu msgs drained)" "$cpu" us \
		"today's figure (commit $COST_BASE_COMMIT)" "$COST_BASE_CPU" "$(calc "$cpu / $COST_BASE_CPU")" \
		"ratio ≤ 0.667" "$(met "$(calc "$cpu / $COST_BASE_CPU")" '<=' 0.667)" "$note"
	steps=$(cost_perf_steps)
	if [ -n "$steps" ]; then
		echo "$steps" >"$OUT/cost-perf.txt"
		local st pct
		while IFS=$'\t' read -r st pct; do
			[ "$st" = samples ] && continue
			record 11 cost "  worker CPU: $st" "$(calc "$cpu * $pct / 100")" us "" "" "" "" "" \
				"$pct % of perf samples (user space) of the $n-message drain"
		done <<<"$(echo "$steps" | sort -t$'\t' -k2 -gr)"
	else
		record 11 cost "  worker CPU by step" "not measured" "" "" "" "" "" "n/a" "perf unavailable: $(head -c 200 "$W/cost-perf.log" 2>/dev/null)"
	fi
	record 11 cost "  for information: enqueueing backend CPU per message" "$(calc "$backend_ticks * 10000 / $ncpu")" us \
		"" "" "" "" "" "utime + stime of the session's backend over its life, $ncpu enqueues in one statement"
	record 11 cost "  for information: other cluster processes + mock CPU per message during the drain" \
		"$(calc "($o1 - $o0) * 10000 / $ncpu")" us "" "" "" "" "" "walwriter, checkpointer, bgwriter, ... and the mock"
}

# cost_restore: autovacuum back on
cost_restore() {
	local wpid
	wpid=$(worker_pid)
	[ -n "$wpid" ] && kill -CONT "$wpid" 2>/dev/null
	q "ALTER SYSTEM RESET autovacuum" >/dev/null
	q "SELECT pg_reload_conf()" >/dev/null
}
