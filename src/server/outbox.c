/*-------------------------------------------------------------------------
 *
 * outbox.c
 *		The statements the worker runs on partoo's outbox, messages and
 *		accounts: recovery, claims, recording outcomes, the next due time,
 *		and reading accounts.
 *
 * Not here: the statements applying webhook events, which the worker
 * also runs (after recording outcomes, and for the owed buckets), live
 * with the rest of webhook application in webhook_apply.c.
 *
 * Every function here expects to be called inside a transaction the
 * worker started, with SPI connected and a snapshot pushed (see
 * worker.c's begin_txn/end_txn).  Nothing here makes network calls, so no
 * transaction is ever open during HTTP.
 *
 * Claims lease rows by moving their run_at to now() + partoo.lease; a
 * worker that dies leaves them to become due again by themselves.  The
 * claim, the outcome recording and the per-account quotas work on whole
 * batches with arrays, one statement each, with plans kept across
 * iterations.
 *
 * NB: no statement here waits for a row another session holds (a
 * SELECT ... FOR UPDATE, an open transaction that updated a message, an
 * ingest holding the messages its webhooks name): claims and recordings
 * lock their rows with SKIP LOCKED and leave the rows they cannot have
 * for a later transaction.  Table locks are bounded by the worker's
 * lock_timeout (worker.c).
 *
 * Outbox actions: 'send' and 'retry' make a request; 'record' (0.3)
 * holds the Partoo id of a message Partoo accepted whose outcome could
 * not be recorded, to be recorded later without sending anything.
 *
 * src/server/outbox.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "server/db.h"
#include "server/outbox.h"
#include "server/webhook.h"

/*
 * Cursor options of the plans here.  NB: custom plans only.  The outbox
 * is empty most of the time, and a generic plan made then (a sequential
 * scan costs nothing on an empty table, and merge joins that read an index
 * from its start look cheap) stays in use until the next relcache
 * invalidation, however large the outbox has grown: every claim then
 * reads and sorts the whole outbox.  A custom plan sees the table's
 * current size; planning costs far less than that.
 */
#define OUTBOX_PLAN CURSOR_OPT_CUSTOM_PLAN

/*
 * Except the recording of outcomes, which the worker runs for every few
 * dozen messages and whose planning took about a tenth of the worker's
 * CPU: it reads rows by their ids only (arrays through the primary keys),
 * but a plan made on a nearly empty outbox could still join by reading
 * the whole table.  So its generic plan is made again every
 * RECORD_PLAN_MAX_AGE_MS (partoo_plan_fresh): such a plan is used for at
 * most that long after the outbox grew.
 */
#define RECORD_PLAN_MAX_AGE_MS 1000

/*
 * The oid of extension partoo in this database, InvalidOid when it is not
 * installed.  The worker serves one installation: a new oid means the
 * extension was dropped and created again (see the worker's loop).
 */
Oid
partoo_outbox_extension_oid(void)
{
	return get_extension_oid("partoo", true);
}

/*
 * At worker start every lease belongs to a dead predecessor (one worker
 * per database, held by an advisory lock): make those rows due now rather
 * than at lease expiry.  Returns how many.
 */
uint64
partoo_outbox_recover(void)
{
	int			rc;

	rc = SPI_execute("WITH o AS ("
					 "  UPDATE partoo.outbox SET run_at = now(), leased_at = NULL"
					 "   WHERE leased_at IS NOT NULL RETURNING message_id, action)"
					 " UPDATE partoo.messages m SET state = 'queued', updated_at = now()"
					 "   FROM o WHERE m.id = o.message_id AND m.state = 'sending'"
					 "    AND o.action = 'send'",
					 false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not recover leased outbox rows: %s", SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * Read every account into the callback (name, api_key, base_url,
 * requests_per_minute).  Runs as the worker's superuser.
 */
void
partoo_outbox_load_accounts(void (*cb) (const char *name, const char *key,
										const char *base_url, int rpm, void *arg),
							void *arg)
{
	int			rc;
	uint64		i;

	rc = SPI_execute("SELECT name, api_key, base_url, requests_per_minute"
					 "  FROM partoo.accounts", true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.accounts: %s", SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		int			rpm;

		rpm = DatumGetInt32(SPI_getbinval(t, d, 4, &isnull));
		cb(SPI_getvalue(t, d, 1), SPI_getvalue(t, d, 2), SPI_getvalue(t, d, 3),
		   rpm, arg);
	}
}

/*
 * Does this database's schema know the 'record' action (partoo 0.3)?
 * Looked up in the catalogs once per transaction.
 */
bool
partoo_outbox_has_record(void)
{
	static bool has = false;
	static LocalTransactionId lxid = InvalidLocalTransactionId;
	Oid			nsp;
	Oid			rel;

	if (lxid == PartooMyLocalTransactionId())
		return has;
	nsp = get_namespace_oid("partoo", true);
	rel = OidIsValid(nsp) ? get_relname_relid("outbox", nsp) : InvalidOid;
	has = OidIsValid(rel) && get_attnum(rel, "partoo_id") != InvalidAttrNumber;
	lxid = PartooMyLocalTransactionId();
	return has;
}

/*
 * The claim, written once: PICK is a query of (id, message_id) of due
 * outbox rows, each locked FOR UPDATE SKIP LOCKED together with its
 * message (FOR NO KEY UPDATE SKIP LOCKED): a row whose message another
 * session holds waits for a later claim, and takes no place in this one's
 * LIMIT.  PID is the outbox's partoo_id column, or NULL before 0.3.
 */
#define CLAIM_SQL(PICK, PID) \
	"WITH pick AS MATERIALIZED (" PICK ")," \
	" upd AS (" \
	"  UPDATE partoo.outbox o SET run_at = now() + $4 * interval '1 second'," \
	"         leased_at = now()" \
	"    FROM pick WHERE o.id = pick.id" \
	"  RETURNING o.id, o.message_id, o.action, o.account, o.attempts, " PID " AS record_pid)," \
	" st AS (" \
	"  UPDATE partoo.messages m SET state = 'sending', updated_at = now()" \
	"    FROM upd WHERE m.id = upd.message_id AND upd.action = 'send'" \
	"     AND m.state = 'queued')" \
	" SELECT u.id,"					/* PARTOO_CLAIM_OUTBOX_ID */ \
	"        u.message_id,"			/* PARTOO_CLAIM_MESSAGE_ID */ \
	"        u.action,"				/* PARTOO_CLAIM_ACTION */ \
	"        u.account,"				/* PARTOO_CLAIM_ACCOUNT */ \
	"        u.attempts,"			/* PARTOO_CLAIM_ATTEMPTS */ \
	"        m.id IS NOT NULL,"		/* PARTOO_CLAIM_MESSAGE_EXISTS */ \
	"        m.conversation_id,"		/* PARTOO_CLAIM_CONVERSATION_ID */ \
	"        m.content_type,"		/* PARTOO_CLAIM_CONTENT_TYPE */ \
	"        m.content,"				/* PARTOO_CLAIM_CONTENT */ \
	"        m.url,"					/* PARTOO_CLAIM_URL */ \
	"        m.image,"				/* PARTOO_CLAIM_IMAGE */ \
	"        m.filename,"			/* PARTOO_CLAIM_FILENAME */ \
	"        m.channel,"				/* PARTOO_CLAIM_CHANNEL */ \
	"        m.created_at,"			/* PARTOO_CLAIM_CREATED_AT */ \
	"        m.partoo_id,"			/* PARTOO_CLAIM_PARTOO_ID */ \
	"        u.record_pid"			/* PARTOO_CLAIM_RECORD_PID */ \
	"   FROM upd u LEFT JOIN partoo.messages m ON m.id = u.message_id"

/*
 * Outbox rows (alias o) whose message can be locked now, or has no
 * message at all (it was deleted: the worker marks the row dead).
 */
#define MESSAGE_FREE \
	" LEFT JOIN LATERAL (SELECT m.id FROM partoo.messages m WHERE m.id = o.message_id" \
	"                     FOR NO KEY UPDATE SKIP LOCKED) lm ON true"
#define MESSAGE_FREE_WHERE \
	" AND (lm.id IS NOT NULL" \
	"      OR NOT EXISTS (SELECT 1 FROM partoo.messages m2 WHERE m2.id = o.message_id))"

/* Due rows of the accounts $2 with quotas $3, at most $1, not in $5 */
#define PICK_BY_QUOTA \
	"SELECT c.id, c.message_id FROM unnest($2, $3) WITH ORDINALITY AS q(account, quota, n)," \
	" LATERAL (SELECT o.id, o.message_id FROM partoo.outbox o" MESSAGE_FREE \
	"           WHERE o.account = q.account AND o.run_at <= now()" \
	"             AND o.id <> ALL ($5)" MESSAGE_FREE_WHERE \
	"           ORDER BY o.run_at LIMIT q.quota FOR UPDATE OF o SKIP LOCKED) c" \
	" LIMIT $1"

/* The ids of what PICK_BY_QUOTA would pick, without locking anything */
#define CANDIDATES \
	"SELECT c.id FROM unnest($2, $3) WITH ORDINALITY AS q(account, quota, n)," \
	" LATERAL (SELECT o.id FROM partoo.outbox o" \
	"           WHERE o.account = q.account AND o.run_at <= now()" \
	"             AND o.id <> ALL ($5)" \
	"           ORDER BY o.run_at LIMIT q.quota) c" \
	" LIMIT $1"

/* Due rows among the ids $1 */
#define PICK_BY_ID \
	"SELECT o.id, o.message_id FROM partoo.outbox o" MESSAGE_FREE \
	" WHERE o.id = ANY ($1) AND o.run_at <= now()" MESSAGE_FREE_WHERE \
	" FOR UPDATE OF o SKIP LOCKED"

/*
 * Claim at most limit due rows, at most quota[i] of account accounts[i]
 * (accounts are served in the order given; the caller rotates it for
 * fairness), none of the nheld outbox ids held (the worker's own rows,
 * whose lease may have run out while they wait to be recorded); lease
 * them for lease_s seconds and mark their messages 'sending'.  The rows
 * are left in SPI_tuptable, with the columns PartooClaimColumn names
 * (outbox.h).  Returns the number of rows.
 *
 * NB: each account is read through the (account, run_at) index, so an
 * account with a long throttled backlog never hides another account's
 * rows from the claim.
 */
uint64
partoo_outbox_claim(int limit, Datum *accounts, Datum *quotas, int naccounts,
					int lease_s, Datum *held, int nheld)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	Oid			argtypes[5] = {INT4OID, TEXTARRAYOID, INT4ARRAYOID, INT4OID, INT8ARRAYOID};
	Datum		args[5];
	bool		rec = partoo_outbox_has_record();
	int			rc;

	if (rec)
		partoo_plan_once(&plans[1], CLAIM_SQL(PICK_BY_QUOTA, "o.partoo_id"),
						 5, argtypes, OUTBOX_PLAN);
	else
		partoo_plan_once(&plans[0], CLAIM_SQL(PICK_BY_QUOTA, "NULL::bigint"),
						 5, argtypes, OUTBOX_PLAN);

	args[0] = Int32GetDatum(limit);
	args[1] = partoo_make_array(accounts, NULL, naccounts, TEXTOID);
	args[2] = partoo_make_array(quotas, NULL, naccounts, INT4OID);
	args[3] = Int32GetDatum(lease_s);
	args[4] = partoo_make_array(held, NULL, nheld, INT8OID);
	rc = SPI_execute_plan(plans[rec ? 1 : 0], args, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not claim outbox rows: %s", SPI_result_code_string(rc));
	Assert(SPI_tuptable->tupdesc->natts == PARTOO_CLAIM_NCOLUMNS);
	return SPI_processed;
}

/*
 * The outbox ids partoo_outbox_claim would try with the same arguments,
 * without locking or changing anything: the candidates of a claim made
 * row by row after a batch claim failed.  Returns them palloc'd, and
 * their number in *ncandidates.
 */
int64 *
partoo_outbox_claim_candidates(int limit, Datum *accounts, Datum *quotas,
							   int naccounts, Datum *held, int nheld,
							   uint64 *ncandidates)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[5] = {INT4OID, TEXTARRAYOID, INT4ARRAYOID, INT4OID, INT8ARRAYOID};
	Datum		args[5];
	int64	   *ids;
	uint64		i;
	int			rc;

	partoo_plan_once(&plan, CANDIDATES, 5, argtypes, OUTBOX_PLAN);
	args[0] = Int32GetDatum(limit);
	args[1] = partoo_make_array(accounts, NULL, naccounts, TEXTOID);
	args[2] = partoo_make_array(quotas, NULL, naccounts, INT4OID);
	args[3] = Int32GetDatum(0);	/* unused */
	args[4] = partoo_make_array(held, NULL, nheld, INT8OID);
	rc = SPI_execute_plan(plan, args, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read outbox rows: %s", SPI_result_code_string(rc));
	ids = palloc(sizeof(int64) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		ids[i] = partoo_spi_int64(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
	}
	*ncandidates = SPI_processed;
	return ids;
}

/* Claim the one outbox row id, if it is due; as partoo_outbox_claim */
uint64
partoo_outbox_claim_id(int64 id, int lease_s)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	Oid			argtypes[4] = {INT8ARRAYOID, INT4OID, INT4OID, INT4OID};
	Datum		args[4];
	Datum		idd = Int64GetDatum(id);
	bool		rec = partoo_outbox_has_record();
	int			rc;

	/* $2 and $3 are unused: the same $4 as the batch claim */
	if (rec)
		partoo_plan_once(&plans[1], CLAIM_SQL(PICK_BY_ID, "o.partoo_id"),
						 4, argtypes, OUTBOX_PLAN);
	else
		partoo_plan_once(&plans[0], CLAIM_SQL(PICK_BY_ID, "NULL::bigint"),
						 4, argtypes, OUTBOX_PLAN);
	args[0] = partoo_make_array(&idd, NULL, 1, INT8OID);
	args[1] = Int32GetDatum(0);
	args[2] = Int32GetDatum(0);
	args[3] = Int32GetDatum(lease_s);
	rc = SPI_execute_plan(plans[rec ? 1 : 0], args, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not claim outbox rows: %s", SPI_result_code_string(rc));
	Assert(SPI_tuptable->tupdesc->natts == PARTOO_CLAIM_NCOLUMNS);
	return SPI_processed;
}

/*
 * An outbox row whose claim fails (a trigger, bad data): its message
 * becomes dead with the reason and the row leaves.  Returns false when
 * the row is gone already.
 */
bool
partoo_outbox_claim_failed(int64 id, const char *reason)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {INT8OID, TEXTOID};
	Datum		args[2];
	bool		isnull;
	int			rc;

	partoo_plan_once(&plan,
					 "WITH d AS (DELETE FROM partoo.outbox o WHERE o.id = $1 RETURNING o.message_id),"
					 " m AS (UPDATE partoo.messages m SET state = 'dead', last_error = $2,"
					 "          updated_at = now()"
					 "        FROM d WHERE m.id = d.message_id)"
					 " SELECT count(*) FROM d",
					 2, argtypes, OUTBOX_PLAN);
	args[0] = Int64GetDatum(id);
	args[1] = CStringGetTextDatum(reason);
	rc = SPI_execute_plan(plan, args, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not update outbox: %s", SPI_result_code_string(rc));
	return SPI_processed == 1 &&
		partoo_spi_int64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull) > 0;
}

/*
 * Put an outbox row aside for delay_ms without touching its message: the
 * fallback for a row that can be neither claimed nor marked dead.
 */
void
partoo_outbox_put_aside(int64 id, int64 delay_ms)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2];
	int			rc;

	partoo_plan_once(&plan,
					 "UPDATE partoo.outbox SET run_at = now() + $2 * interval '1 millisecond',"
					 "       leased_at = NULL WHERE id = $1",
					 2, argtypes, OUTBOX_PLAN);
	args[0] = Int64GetDatum(id);
	args[1] = Int64GetDatum(delay_ms);
	rc = SPI_execute_plan(plan, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not update outbox: %s", SPI_result_code_string(rc));
}

/*
 * Keep the Partoo id of a message Partoo accepted whose outcome could not
 * be recorded: its outbox row becomes a 'record' action, due in delay_ms,
 * so that the message is recorded later and never sent again, also by
 * another worker.  Returns false when the schema predates 'record' (0.1,
 * 0.2) or the row is gone; the caller then keeps the outcome in memory.
 */
bool
partoo_outbox_keep_accepted(int64 id, int64 partoo_id, int64 delay_ms,
							int attempts)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[4] = {INT8OID, INT8OID, INT8OID, INT4OID};
	Datum		args[4];
	int			rc;

	if (!partoo_outbox_has_record())
		return false;
	partoo_plan_once(&plan,
					 "UPDATE partoo.outbox SET action = 'record', partoo_id = $2,"
					 "       run_at = now() + $3 * interval '1 millisecond',"
					 "       leased_at = NULL, attempts = $4"
					 " WHERE id = $1",
					 4, argtypes, OUTBOX_PLAN);
	args[0] = Int64GetDatum(id);
	args[1] = Int64GetDatum(partoo_id);
	args[2] = Int64GetDatum(delay_ms);
	args[3] = Int32GetDatum(attempts);
	rc = SPI_execute_plan(plan, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not update outbox: %s", SPI_result_code_string(rc));
	return SPI_processed == 1;
}

/*
 * Milliseconds until the earliest outbox row of one of the given accounts
 * is due (0 if one is due now), or -1 when they have none.
 */
int64
partoo_outbox_next_due_ms(Datum *accounts, int naccounts)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		args[1];
	bool		isnull;
	Datum		d;
	int			rc;
	float8		ms;

	if (naccounts == 0)
		return -1;
	partoo_plan_once(&plan,
			  "SELECT extract(epoch FROM min(f.run_at) - clock_timestamp()) * 1000"
			  "  FROM unnest($1) AS a(account),"
			  "   LATERAL (SELECT o.run_at FROM partoo.outbox o WHERE o.account = a.account"
			  "             ORDER BY o.run_at LIMIT 1) f",
			  1, argtypes, OUTBOX_PLAN);
	args[0] = partoo_make_array(accounts, NULL, naccounts, TEXTOID);
	/* NB: not read-only, so that it sees this transaction's own updates */
	rc = SPI_execute_plan(plan, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read outbox: %s", SPI_result_code_string(rc));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return -1;
	ms = DatumGetFloat8(DirectFunctionCall1(numeric_float8, d));
	return ms <= 0 ? 0 : (int64) ms + 1;
}

/* qsort and bsearch order of int64 */
static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * Make o a batch of n outcomes, its arrays palloc'd in the current memory
 * context for the caller to fill.
 */
void
partoo_outbox_outcomes_init(PartooOutboxOutcomes *o, int n)
{
	o->n = n;
	o->outbox_id = palloc(sizeof(Datum) * n);
	o->message_id = palloc(sizeof(Datum) * n);
	o->state = palloc(sizeof(Datum) * n);
	o->final = palloc(sizeof(Datum) * n);
	o->delay_ms = palloc(sizeof(Datum) * n);
	o->attempts = palloc(sizeof(Datum) * n);
	o->counted = palloc(sizeof(Datum) * n);
	o->partoo_id = palloc(sizeof(Datum) * n);
	o->partoo_id_null = palloc(sizeof(bool) * n);
	o->http = palloc(sizeof(Datum) * n);
	o->http_null = palloc(sizeof(bool) * n);
	o->error = palloc(sizeof(Datum) * n);
	o->error_null = palloc(sizeof(bool) * n);
	o->is_retry = palloc(sizeof(Datum) * n);
}

/*
 * Record a batch of outcomes (see PartooOutboxOutcomes) in one statement.
 * Sets recorded[i] for each outcome recorded; the others are of rows
 * another session holds (an outbox row or a message locked, or being
 * updated, by an open transaction), left for a later transaction.
 * Returns how many were recorded.  Applies the webhook events that were
 * waiting for the Partoo ids recorded.
 */
int
partoo_outbox_record(const PartooOutboxOutcomes *o, bool *recorded)
{
	int			n = o->n;
	static SPIPlanPtr plan = NULL;
	static TimestampTz plan_made_at = 0;
	Oid			argtypes[11] = {INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID,
		BOOLARRAYOID, INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, INT8ARRAYOID,
	INT4ARRAYOID, TEXTARRAYOID, BOOLARRAYOID};
	Datum		args[11];
	int64	   *done;
	int64	   *pids;
	int			ndone;
	int			npids = 0;
	int			i;
	int			rc;

	partoo_plan_fresh(&plan, &plan_made_at,
			  "WITH r0 AS ("
			  "  SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
			  "    AS r(oid, mid, state, final, delay_ms, attempts, counted, pid,"
			  "         http, err, is_retry)),"
			  " lo AS MATERIALIZED ("
			  "  SELECT o.id FROM partoo.outbox o WHERE o.id = ANY ($1)"
			  "     FOR UPDATE SKIP LOCKED),"
			  " lm AS MATERIALIZED ("
			  "  SELECT m.id FROM partoo.messages m WHERE m.id = ANY ($2)"
			  "     FOR NO KEY UPDATE SKIP LOCKED),"
			  " r AS MATERIALIZED ("
			  "  SELECT r0.* FROM r0"
			  "   WHERE (r0.oid IN (SELECT id FROM lo)"
			  "          OR NOT EXISTS (SELECT 1 FROM partoo.outbox o WHERE o.id = r0.oid))"
			  "     AND (r0.mid IN (SELECT id FROM lm)"
			  "          OR NOT EXISTS (SELECT 1 FROM partoo.messages m WHERE m.id = r0.mid))),"
			  " d AS (DELETE FROM partoo.outbox o USING r WHERE o.id = r.oid AND r.final),"
			  " u AS (UPDATE partoo.outbox o"
			  "          SET run_at = now() + r.delay_ms * interval '1 millisecond',"
			  "              leased_at = NULL, attempts = r.attempts"
			  "         FROM r WHERE o.id = r.oid AND NOT r.final),"
			  " w AS (UPDATE partoo.messages m SET"
			  "   state = r.state,"
			  "   partoo_id = coalesce(r.pid, m.partoo_id),"
			  "   partoo_status = CASE WHEN r.state = 'sent' THEN 'Sending' ELSE m.partoo_status END,"
			  "   status_at = CASE WHEN r.state = 'sent' THEN now() ELSE m.status_at END,"
			  "   attempts = m.attempts + r.counted,"
			  "   last_http_status = r.http,"
			  "   last_error = r.err,"
			  "   sent_at = CASE WHEN r.state = 'sent' AND NOT r.is_retry THEN now() ELSE m.sent_at END,"
			  "   retry_requested_at = CASE WHEN r.state = 'sent' AND r.is_retry"
			  "                             THEN clock_timestamp() ELSE m.retry_requested_at END,"
			  "   updated_at = now()"
			  "  FROM r WHERE m.id = r.mid)"
			  " SELECT r.oid FROM r",
			  11, argtypes, RECORD_PLAN_MAX_AGE_MS);

	args[0] = partoo_make_array(o->outbox_id, NULL, n, INT8OID);
	args[1] = partoo_make_array(o->message_id, NULL, n, INT8OID);
	args[2] = partoo_make_array(o->state, NULL, n, TEXTOID);
	args[3] = partoo_make_array(o->final, NULL, n, BOOLOID);
	args[4] = partoo_make_array(o->delay_ms, NULL, n, INT8OID);
	args[5] = partoo_make_array(o->attempts, NULL, n, INT4OID);
	args[6] = partoo_make_array(o->counted, NULL, n, INT4OID);
	args[7] = partoo_make_array(o->partoo_id, o->partoo_id_null, n, INT8OID);
	args[8] = partoo_make_array(o->http, o->http_null, n, INT4OID);
	args[9] = partoo_make_array(o->error, o->error_null, n, TEXTOID);
	args[10] = partoo_make_array(o->is_retry, NULL, n, BOOLOID);
	rc = SPI_execute_plan(plan, args, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not record outcomes: %s", SPI_result_code_string(rc));

	ndone = (int) SPI_processed;
	done = palloc(sizeof(int64) * Max(ndone, 1));
	for (i = 0; i < ndone; i++)
	{
		bool		isnull;

		done[i] = partoo_spi_int64(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
	}
	qsort(done, ndone, sizeof(int64), cmp_int64);

	/*
	 * Webhook events that arrived before these ids were recorded wait for
	 * them.  A retry's id was recorded by its first send.
	 */
	pids = palloc(sizeof(int64) * n);
	for (i = 0; i < n; i++)
	{
		int64		id = DatumGetInt64(o->outbox_id[i]);

		recorded[i] = bsearch(&id, done, ndone, sizeof(int64), cmp_int64) != NULL;
		if (recorded[i] && !o->partoo_id_null[i] && !DatumGetBool(o->is_retry[i]))
			pids[npids++] = DatumGetInt64(o->partoo_id[i]);
	}
	if (npids > 0)
		partoo_webhook_apply_recorded(pids, npids);
	pfree(pids);
	pfree(done);
	return ndone;
}
