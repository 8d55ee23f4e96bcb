/*-------------------------------------------------------------------------
 *
 * webhook_apply.c
 *		Applying parsed, authenticated webhook events: locking and reading
 *		the messages they name, recognising duplicates, deciding each event
 *		with the protocol core's ordering rules, and writing events and
 *		messages back; and applying pending events once their message's
 *		Partoo id is recorded.
 *
 * Everything runs in the caller's transaction as the extension owner
 * (partoo_store_begin), in four steps:
 *
 *	 1. the messages the events name are locked (FOR UPDATE, in a fixed
 *		order) and read; dispatch messages not seen before are created
 *		(webhook_dispatch.c);
 *	 2. the duplicate-recognition keys already in partoo.events are read;
 *	 3. the events are decided one by one, in order, in memory
 *		(partoo_status_apply, partoo_dispatch_order_cmp, ...);
 *	 4. the events, the messages and the dispatch parts are written back,
 *		one set-based statement each.
 * Every statement is prepared once per backend: a batch of 100,000 events
 * costs the same handful of statements as a single one.
 *
 * An event for a Partoo id not recorded yet is kept as 'pending'.  When
 * the id is recorded (INSERT by partoo_send, UPDATE by the worker), the
 * recording code calls partoo_webhook_apply_recorded() in that
 * transaction, after its statement (in a 0.1 schema, statement triggers
 * on partoo.messages call it too).  NB: the two sides race: an ingest may
 * look for the message while the transaction recording it is still open,
 * and the recording side cannot see the ingest's uncommitted pending
 * event.  So they meet on advisory locks on PARTOO_WEBHOOK_BUCKETS
 * buckets of Partoo ids: the recording side takes the buckets of the ids
 * it recorded in share mode before it looks for pending events; an
 * ingest takes the buckets of the ids it did not find in exclusive mode
 * before it looks again and keeps the event pending.  Whichever comes
 * second sees the other's committed work.  The ingest never queues for
 * these locks (it polls, then fails with 55P03), so a recording
 * transaction never waits behind a waiting ingest; and it takes them only
 * after its row locks, and then reads rows NOWAIT, so a deadlock between
 * the two never makes the recording side the victim.
 *
 * The recording side never waits for a bucket either, when a worker
 * serves the database: an ingest may hold one for as long as its
 * transaction stays open, and the worker must go on sending and
 * recording meanwhile.  A bucket it cannot have at once is owed: the
 * recording commits without applying those ids' events, and at commit
 * the bucket is added to the worker's owed mask (shmem.c); the worker
 * then applies the pending events of recorded messages in those buckets
 * (partoo_webhook_apply_owed) once it can take them, that is, once the
 * ingest has committed (its event is then visible) or rolled back.  A
 * worker starts owing every bucket, so a crash between the two loses
 * nothing.  Without a worker (not preloaded), the recording side waits
 * for the bucket as it always did.
 *
 * Under REPEATABLE READ or SERIALIZABLE, these statements read the latest
 * committed state (as foreign-key checks do), so that the handshake holds
 * whatever the caller's isolation level.
 *
 * src/server/webhook_apply.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

#include "core/webhook.h"
#include "server/db.h"
#include "server/shmem.h"
#include "server/webhook.h"

/*
 * The pending-event handshake locks: advisory locks of this database with
 * keys (PARTOO_LOCK_KEY, bucket) and a field4 no SQL function uses, so
 * they never collide with an application's pg_advisory_lock calls.
 */
#define PARTOO_WEBHOOK_BUCKETS	64
#define PARTOO_LOCK_KEY			((uint32) PARTOO_LOCK_CLASS_ID)
#define PARTOO_LOCK_CLASS		0x5057	/* "PW" */
/* How long an ingest polls for a bucket before giving up */
#define PARTOO_BUCKET_WAIT_MS	5000

/* > 0 while this backend writes partoo.messages itself: the trigger skips */
static int	applying = 0;

/* A Partoo message as the events see it; key partoo_id */
typedef struct MsgState
{
	int64		partoo_id;
	bool		found;
	int64		id;
	char		state[16];
	PartooStatusState st;
	bool		has_retry;
	TimestampTz retry_requested_at;
	bool		dirty;
	bool		touch;			/* stamp status_at */
} MsgState;

/* ----------------------------------------------------------------
 * SQL helpers
 * ----------------------------------------------------------------
 */

/*
 * partoo_store_begin() for the statements here, which all look rows up by
 * key.  NB: their generic plans are made once per backend, possibly when
 * a table is empty (just created or truncated): a sequential scan
 * comparing each row with an array of 100,000 keys would then be kept
 * for good.  With sequential scans disabled while they are planned, they
 * always use their index, whatever the statistics say.
 */
static void
webhook_store_begin(PartooStoreContext *sc)
{
	partoo_store_begin(sc);
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Run fn(arg) as the extension owner (webhook_store_begin), with this
 * backend's own writes of partoo.messages marked as such for the 0.1
 * triggers (partoo_webhook_applying).
 */
static void
run_applying(void (*fn) (void *arg), void *arg)
{
	PartooStoreContext sc;

	webhook_store_begin(&sc);
	PG_TRY();
	{
		applying++;
		fn(arg);
		applying--;
	}
	PG_CATCH();
	{
		applying = 0;
		PG_RE_THROW();
	}
	PG_END_TRY();
	partoo_store_end(&sc);
}

/*
 * Run a kept plan on the latest committed state: a fresh snapshot per
 * statement under READ COMMITTED (what SPI does anyway), the latest
 * snapshot under REPEATABLE READ and SERIALIZABLE.  Never read-only, so
 * that it sees this transaction's own earlier writes.
 */
int
partoo_webhook_run_plan(SPIPlanPtr plan, Datum *args, const char *nulls)
{
	if (IsolationUsesXactSnapshot())
		return SPI_execute_snapshot(plan, args, nulls, GetLatestSnapshot(),
									InvalidSnapshot, false, true, 0);
	return SPI_execute_plan(plan, args, nulls, false, 0);
}

static Datum
int64_array(const int64 *v, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(v[i]);
	return partoo_make_array(elems, NULL, n, INT8OID);
}

/* ----------------------------------------------------------------
 * The pending-event handshake (see the file banner)
 * ----------------------------------------------------------------
 */

static int
bucket_of(int64 partoo_id)
{
	uint64		h = (uint64) partoo_id * UINT64CONST(0x9E3779B97F4A7C15);

	return (int) (h >> 58);		/* 64 buckets */
}

static void
bucket_tag(LOCKTAG *tag, int bucket)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, PARTOO_LOCK_KEY, (uint32) bucket,
						 PARTOO_LOCK_CLASS);
}

/*
 * Recording side: share-lock the buckets of mask.  With dont_wait, only
 * those free now; returns the buckets not taken (0 when waiting).
 */
static uint64
lock_buckets_shared(uint64 mask, bool dont_wait)
{
	uint64		busy = 0;
	int			b;

	for (b = 0; b < PARTOO_WEBHOOK_BUCKETS; b++)
	{
		LOCKTAG		tag;

		if ((mask & (UINT64CONST(1) << b)) == 0)
			continue;
		bucket_tag(&tag, b);
		if (LockAcquire(&tag, ShareLock, false, dont_wait) == LOCKACQUIRE_NOT_AVAIL)
			busy |= UINT64CONST(1) << b;
	}
	return busy;
}

/*
 * Ingest side: exclusive-lock the buckets of ids not found.  Polls instead
 * of queueing, so that recording transactions never wait behind us while
 * we wait; gives up with 55P03 after PARTOO_BUCKET_WAIT_MS.
 */
static void
lock_buckets_exclusive(uint64 mask)
{
	int			b;

	for (b = 0; b < PARTOO_WEBHOOK_BUCKETS; b++)
	{
		LOCKTAG		tag;
		long		waited = 0;
		long		nap = 1;

		if ((mask & (UINT64CONST(1) << b)) == 0)
			continue;
		bucket_tag(&tag, b);
		while (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		{
			if (waited >= PARTOO_BUCKET_WAIT_MS)
				ereport(ERROR,
						(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
						 errmsg("could not keep webhook event for a message being recorded"),
						 errdetail("A transaction recording Partoo message ids stayed open for more than %d ms.",
								   PARTOO_BUCKET_WAIT_MS),
						 errhint("Retry the webhook; the sender usually retries by itself on an error.")));
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 nap, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			waited += nap;
			nap = Min(nap * 2, 20);
		}
	}
}

/* ----------------------------------------------------------------
 * Partoo messages
 * ----------------------------------------------------------------
 */

static HTAB *
partoo_msg_table(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(MsgState);
	ctl.hcxt = CurrentMemoryContext;
	return hash_create("partoo webhook messages", 256, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * Read (and lock, if lock) the Partoo messages with the given ids into
 * msgs, in partoo_id order (the index's, so no sort; and one order for
 * every ingest, so two batches never deadlock on each other).  nowait:
 * fail rather than wait for a row lock (used while holding bucket locks).
 */
static void
fetch_partoo_messages(HTAB *msgs, int64 *ids, int n, bool lock, bool nowait)
{
	static SPIPlanPtr plan_lock = NULL;
	static SPIPlanPtr plan_nowait = NULL;
	static SPIPlanPtr plan_read = NULL;
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		args[1];
	SPIPlanPtr	plan;
	uint64		i;
	int			rc;

#define FETCH_PARTOO_SQL \
	"SELECT m.partoo_id, m.id, m.state, m.partoo_status, m.status_at," \
	"       m.retry_requested_at, m.is_deleted" \
	"  FROM partoo.messages m WHERE m.partoo_id = ANY ($1) ORDER BY m.partoo_id"

	if (n == 0)
		return;
	if (!lock)
		plan = partoo_plan_once(&plan_read, FETCH_PARTOO_SQL, 1, argtypes, PARTOO_WEBHOOK_PLAN);
	else if (nowait)
		plan = partoo_plan_once(&plan_nowait, FETCH_PARTOO_SQL " FOR UPDATE NOWAIT", 1, argtypes, PARTOO_WEBHOOK_PLAN);
	else
		plan = partoo_plan_once(&plan_lock, FETCH_PARTOO_SQL " FOR UPDATE", 1, argtypes, PARTOO_WEBHOOK_PLAN);
	args[0] = int64_array(ids, n);
	rc = partoo_webhook_run_plan(plan, args, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.messages: %s", SPI_result_code_string(rc));

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		pid = partoo_spi_int64(t, d, 1, &isnull);
		MsgState   *m = hash_search(msgs, &pid, HASH_ENTER, NULL);
		char	   *state = partoo_spi_text(t, d, 3);
		char	   *status = partoo_spi_text(t, d, 4);
		TimestampTz status_at = 0;
		bool		has_status_at;
		Datum		v;

		m->found = true;
		m->id = partoo_spi_int64(t, d, 2, &isnull);
		strlcpy(m->state, state ? state : "", sizeof(m->state));
		m->st.status = partoo_status_from_name(status);
		v = SPI_getbinval(t, d, 5, &isnull);
		has_status_at = !isnull;
		if (has_status_at)
			status_at = DatumGetTimestampTz(v);
		v = SPI_getbinval(t, d, 6, &isnull);
		m->has_retry = !isnull;
		if (m->has_retry)
			m->retry_requested_at = DatumGetTimestampTz(v);
		v = SPI_getbinval(t, d, 7, &isnull);
		m->st.is_deleted = !isnull && DatumGetBool(v);
		m->st.retried = m->has_retry &&
			(!has_status_at || m->retry_requested_at > status_at);
		m->dirty = false;
		m->touch = false;
	}
}

/*
 * Decide a Partoo status event against its message (found) and record
 * the change in memory.  Returns the outcome.
 */
static const char *
decide_partoo(MsgState   *m, PartooIngestEvent *ev)
{
	bool		deleted_changed;
	PartooVerdict v;

	v = partoo_status_apply(&m->st, ev->status, ev->is_deleted, &deleted_changed);
	ev->has_message_id = true;
	ev->message_id = m->id;
	if (v == PARTOO_VERDICT_APPLY)
	{
		m->touch = true;
		m->dirty = true;

		/*
		 * While the outbox holds an action for the message (a retry
		 * queued or in flight) its local state belongs to the worker,
		 * which records it next; only the provider's status changes.
		 */
		if (strcmp(m->state, "queued") != 0 && strcmp(m->state, "sending") != 0)
			strlcpy(m->state, partoo_status_local_state(m->st.status), sizeof(m->state));
	}
	if (deleted_changed)
		m->dirty = true;
	return (v != PARTOO_VERDICT_STALE || deleted_changed) ? "applied" : "stale";
}

/*
 * Write back every changed Partoo message in one statement.  This
 * transaction holds the rows (locked by the ingest, or just written by
 * the statement whose trigger runs us), so all of them must be found.
 */
static void
write_partoo_messages(HTAB *msgs)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[5] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	BOOLARRAYOID, BOOLARRAYOID};
	Datum		args[5];
	long		n = hash_get_num_entries(msgs);
	Datum	   *ids = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *states = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *statuses = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *touch = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *deleted = palloc(sizeof(Datum) * Max(n, 1));
	int			k = 0;
	HASH_SEQ_STATUS seq;
	MsgState   *m;
	int			rc;

	hash_seq_init(&seq, msgs);
	while ((m = hash_seq_search(&seq)) != NULL)
	{
		if (!m->found || !m->dirty)
			continue;
		ids[k] = Int64GetDatum(m->id);
		states[k] = CStringGetTextDatum(m->state);
		statuses[k] = CStringGetTextDatum(partoo_status_name(m->st.status));
		touch[k] = BoolGetDatum(m->touch);
		deleted[k] = BoolGetDatum(m->st.is_deleted);
		k++;
	}
	if (k == 0)
		return;

	partoo_plan_once(&plan,
							 "UPDATE partoo.messages m"
							 "   SET state = u.state, partoo_status = u.status,"
							 "       status_at = CASE WHEN u.touch THEN clock_timestamp() ELSE m.status_at END,"
							 "       is_deleted = u.is_deleted, updated_at = now()"
							 "  FROM (SELECT unnest($1) AS id, unnest($2) AS state, unnest($3) AS status,"
							 "               unnest($4) AS touch, unnest($5) AS is_deleted) AS u"
							 " WHERE m.id = u.id",
							 5, argtypes, PARTOO_WEBHOOK_PLAN);
	args[0] = partoo_make_array(ids, NULL, k, INT8OID);
	args[1] = partoo_make_array(states, NULL, k, TEXTOID);
	args[2] = partoo_make_array(statuses, NULL, k, TEXTOID);
	args[3] = partoo_make_array(touch, NULL, k, BOOLOID);
	args[4] = partoo_make_array(deleted, NULL, k, BOOLOID);
	rc = partoo_webhook_run_plan(plan, args, NULL);
	if (rc != SPI_OK_UPDATE || SPI_processed != (uint64) k)
		elog(ERROR, "could not update partoo.messages: %s, " UINT64_FORMAT " of %d rows",
			 SPI_result_code_string(rc), SPI_processed, k);
}

/* ----------------------------------------------------------------
 * Events
 * ----------------------------------------------------------------
 */

/* Which of keys[0..n) are already in partoo.events, as a string set */
static HTAB *
existing_keys(char **keys, int n, Size keysize)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		args[1];
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	HASHCTL		ctl;
	HTAB	   *set;
	uint64		i;
	int			rc;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = keysize;
	ctl.entrysize = keysize;
	ctl.hcxt = CurrentMemoryContext;
	set = hash_create("partoo webhook keys", Max(n, 16), &ctl,
					  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (i = 0; i < (uint64) n; i++)
		elems[i] = CStringGetTextDatum(keys[i]);
	partoo_plan_once(&plan,
							 "SELECT dedup_key FROM partoo.events"
							 " WHERE dedup_key = ANY ($1::text[] COLLATE \"C\")",
							 1, argtypes, PARTOO_WEBHOOK_PLAN);
	args[0] = partoo_make_array(elems, NULL, n, TEXTOID);
	rc = partoo_webhook_run_plan(plan, args, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.events: %s", SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *k = partoo_spi_text(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		(void) hash_search(set, k, HASH_ENTER, NULL);
	}
	return set;
}

/*
 * Insert the events that are not duplicates.  Status events cannot
 * conflict: their messages are locked (or, for a pending event, its
 * bucket), and existing_keys() read the keys after those locks; so they
 * go in with a plain INSERT, which costs a third less than ON CONFLICT's
 * speculative insertion (a conflict would be a bug, reported as the
 * unique violation it is).  Events that concern no status take no lock:
 * for them a conflict means a concurrent duplicate.
 *
 * payloads is the text[] of the n bodies in order (the caller's own array
 * for a batch: it is not copied); the other columns are built here for
 * all n events, and SQL keeps those of the pass.  NB: the arrays go
 * through set-returning functions in the target list, which stream;
 * unnest() in FROM would first copy every row into a tuplestore.
 */
static void
insert_events(PartooIngestEvent **evs, int n, Datum payloads)
{
	static SPIPlanPtr plans[2] = {NULL, NULL};
	Oid			argtypes[16] = {TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
	Oid			elemtypes[16] = {TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID,
		INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID,
	TEXTOID, TEXTOID, TEXTOID, INT8OID};
	Datum	   *cols[16];
	bool	   *nulls[16];
	Datum		args[16];
	Datum		src_text[2];
	int			nstatus = 0;
	int			nignored = 0;
	int			i,
				c,
				rc;

#define INSERT_EVENTS_SQL(filter, conflict) \
	"INSERT INTO partoo.events" \
	"  (source, event_type, partoo_id, external_id, recipient, message_part," \
	"   channel, content_type, sender_type, status, event_at, order_key," \
	"   dedup_key, payload, outcome, message_id, applied_at)" \
	" SELECT u.source, u.event_type, u.partoo_id, u.external_id, u.recipient," \
	"        u.part, u.channel, u.content_type, u.sender_type, u.status," \
	"        u.event_at, u.order_key, u.dedup_key, u.payload, u.outcome," \
	"        u.message_id, CASE WHEN u.outcome = 'applied' THEN now() END" \
	"   FROM (SELECT unnest($1) AS source, unnest($2) AS event_type," \
	"                unnest($3) AS partoo_id, unnest($4) AS external_id," \
	"                unnest($5) AS recipient, unnest($6) AS part," \
	"                unnest($7) AS channel, unnest($8) AS content_type," \
	"                unnest($9) AS sender_type, unnest($10) AS status," \
	"                unnest($11) AS event_at, unnest($12) AS order_key," \
	"                unnest($13) AS dedup_key, unnest($14) AS payload," \
	"                unnest($15) AS outcome, unnest($16) AS message_id) AS u" \
	"  WHERE " filter conflict

	for (i = 0; i < n; i++)
	{
		if (strcmp(evs[i]->outcome, "ignored") == 0)
			nignored++;
		else if (strcmp(evs[i]->outcome, "duplicate") != 0)
			nstatus++;
	}
	if (nstatus + nignored == 0)
		return;

	for (c = 0; c < 16; c++)
	{
		if (c == 13)
			continue;
		cols[c] = palloc(sizeof(Datum) * n);
		nulls[c] = palloc(sizeof(bool) * n);
	}
	src_text[0] = CStringGetTextDatum("partoo");
	src_text[1] = CStringGetTextDatum("dispatch");
	for (i = 0; i < n; i++)
	{
		PartooIngestEvent *ev = evs[i];
		PartooIngestEvent *pv = i > 0 ? evs[i - 1] : NULL;

		/* strings shared with the previous event share its datum */
#define SHARED_TEXT(c, field) \
		do { \
			if (pv != NULL && ev->field != NULL && ev->field == pv->field) \
			{ \
				cols[c][i] = cols[c][i - 1]; \
				nulls[c][i] = false; \
			} \
			else \
				cols[c][i] = partoo_text_datum(ev->field, &nulls[c][i]); \
		} while (0)

		cols[0][i] = src_text[ev->source == PARTOO_SOURCE_PARTOO ? 0 : 1];
		nulls[0][i] = false;
		SHARED_TEXT(1, event_type);
		cols[2][i] = Int64GetDatum(ev->partoo_id);
		nulls[2][i] = ev->partoo_id == 0;
		cols[3][i] = partoo_text_datum(ev->dispatch_id, &nulls[3][i]);
		cols[4][i] = partoo_text_datum(ev->recipient, &nulls[4][i]);
		cols[5][i] = Int32GetDatum(ev->part);
		nulls[5][i] = ev->source != PARTOO_SOURCE_DISPATCH;
		SHARED_TEXT(6, channel);
		SHARED_TEXT(7, content_type);
		SHARED_TEXT(8, sender_type);
		SHARED_TEXT(9, status_raw);
		cols[10][i] = TimestampTzGetDatum(ev->event_at);
		nulls[10][i] = !ev->has_event_at;
		cols[11][i] = partoo_text_datum(ev->order_key, &nulls[11][i]);
		cols[12][i] = CStringGetTextDatum(ev->dedup_key);
		nulls[12][i] = false;
		if (pv != NULL && ev->outcome == pv->outcome)
			cols[14][i] = cols[14][i - 1];
		else
			cols[14][i] = CStringGetTextDatum(ev->outcome);
		nulls[14][i] = false;
		cols[15][i] = Int64GetDatum(ev->message_id);
		nulls[15][i] = !ev->has_message_id;
	}
	for (c = 0; c < 16; c++)
		args[c] = c == 13 ? payloads : partoo_make_array(cols[c], nulls[c], n, elemtypes[c]);

	if (nstatus > 0)
	{
		partoo_plan_once(&plans[0],
								 INSERT_EVENTS_SQL("u.outcome IN ('applied', 'stale', 'pending')", ""),
								 16, argtypes, PARTOO_WEBHOOK_PLAN);
		rc = partoo_webhook_run_plan(plans[0], args, NULL);
		if (rc != SPI_OK_INSERT || SPI_processed != (uint64) nstatus)
			elog(ERROR, "could not insert into partoo.events: %s",
				 SPI_result_code_string(rc));
	}
	if (nignored > 0)
	{
		HTAB	   *inserted;
		HASHCTL		ctl;
		Size		keysize = 0;
		uint64		r;

		partoo_plan_once(&plans[1],
								 INSERT_EVENTS_SQL("u.outcome = 'ignored'",
								 " ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key"),
								 16, argtypes, PARTOO_WEBHOOK_PLAN);
		rc = partoo_webhook_run_plan(plans[1], args, NULL);
		if (rc != SPI_OK_INSERT_RETURNING)
			elog(ERROR, "could not insert into partoo.events: %s", SPI_result_code_string(rc));
		if (SPI_processed == (uint64) nignored)
			return;
		for (i = 0; i < n; i++)
			keysize = Max(keysize, strlen(evs[i]->dedup_key) + 1);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = keysize;
		ctl.entrysize = keysize;
		ctl.hcxt = CurrentMemoryContext;
		inserted = hash_create("partoo inserted keys", Max(nignored, 16), &ctl,
							   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		for (r = 0; r < SPI_processed; r++)
			(void) hash_search(inserted,
							   partoo_spi_text(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1),
							   HASH_ENTER, NULL);
		for (i = 0; i < n; i++)
			if (strcmp(evs[i]->outcome, "ignored") == 0 &&
				hash_search(inserted, evs[i]->dedup_key, HASH_FIND, NULL) == NULL)
				evs[i]->outcome = "duplicate";
	}
}

/* ----------------------------------------------------------------
 * Ingestion
 * ----------------------------------------------------------------
 */

/* What the steps of an ingest share */
typedef struct IngestBatch
{
	PartooIngestEvent **evs;
	int			n;
	Datum		payloads;
	int64	   *pids;			/* the Partoo ids named, sorted, distinct */
	int			npids;
	HTAB	   *pmsgs;
	PartooDispatchSet *ds;
	char	   *created_by;
} IngestBatch;

/* The four steps of the banner, as the extension owner */
static void
ingest_steps(void *arg)
{
	IngestBatch *b = (IngestBatch *) arg;
	PartooIngestEvent **evs = b->evs;
	int			n = b->n;
	HTAB	   *pmsgs = b->pmsgs;
	int64	   *pids = b->pids;
	int			npids = b->npids;
	HTAB	   *seen;
	char	  **keys = palloc(sizeof(char *) * Max(n, 1));
	Size		maxkey = 0;
	int			i;

	/* 1. lock and read the messages; create dispatch messages */
	fetch_partoo_messages(pmsgs, pids, npids, true, false);
	if (hash_get_num_entries(pmsgs) < npids)
	{
		int64	   *missing = palloc(sizeof(int64) * npids);
		int			nmissing = 0;
		uint64		mask = 0;

		for (i = 0; i < npids; i++)
			if (hash_search(pmsgs, &pids[i], HASH_FIND, NULL) == NULL)
			{
				missing[nmissing++] = pids[i];
				mask |= UINT64CONST(1) << bucket_of(pids[i]);
			}
		lock_buckets_exclusive(mask);
		fetch_partoo_messages(pmsgs, missing, nmissing, true, true);
	}
	partoo_dispatch_fetch(b->ds, b->created_by);

	/* 2. final keys, and those already recorded */
	for (i = 0; i < n; i++)
	{
		PartooIngestEvent *ev = evs[i];

		if (ev->concerns_status && ev->source == PARTOO_SOURCE_PARTOO)
		{
			MsgState   *m = hash_search(pmsgs, &ev->partoo_id, HASH_FIND, NULL);

			if (m != NULL && m->found && m->has_retry)
				ev->dedup_key = psprintf("%s/r" INT64_FORMAT, ev->dedup_key,
										 (int64) m->retry_requested_at);
		}
		keys[i] = ev->dedup_key;
		maxkey = Max(maxkey, strlen(ev->dedup_key) + 1);
	}
	seen = existing_keys(keys, n, maxkey);

	/* 3. decide, in order */
	for (i = 0; i < n; i++)
	{
		PartooIngestEvent *ev = evs[i];
		bool		dup;

		(void) hash_search(seen, ev->dedup_key, HASH_ENTER, &dup);
		if (dup)
			ev->outcome = "duplicate";
		else if (!ev->concerns_status)
			ev->outcome = "ignored";
		else if (ev->source == PARTOO_SOURCE_DISPATCH)
			ev->outcome = partoo_dispatch_decide(b->ds, ev);
		else
		{
			MsgState   *m = hash_search(pmsgs, &ev->partoo_id, HASH_FIND, NULL);

			ev->outcome = (m == NULL || !m->found) ? "pending" : decide_partoo(m, ev);
		}
	}

	/* 4. write */
	insert_events(evs, n, b->payloads);
	write_partoo_messages(pmsgs);
	partoo_dispatch_write(b->ds);
}

/*
 * Apply n parsed and authenticated events, in order, in the caller's
 * transaction; fills each event's outcome.  payloads is the text[] of
 * their bodies, in the same order.
 */
void
partoo_webhook_ingest(PartooIngestEvent **evs, int n, Datum payloads)
{
	IngestBatch b;
	int64	   *pids = palloc(sizeof(int64) * Max(n, 1));
	int			npids = 0;
	int			i;

	/* the Partoo messages the events name */
	for (i = 0; i < n; i++)
	{
		PartooIngestEvent *ev = evs[i];

		if (ev->concerns_status && ev->source == PARTOO_SOURCE_PARTOO)
			pids[npids++] = ev->partoo_id;
	}
	if (npids > 1)
	{
		int			j = 0;

		qsort(pids, npids, sizeof(int64), cmp_int64);
		for (i = 1; i < npids; i++)
			if (pids[i] != pids[j])
				pids[++j] = pids[i];
		npids = j + 1;
	}
	b.evs = evs;
	b.n = n;
	b.payloads = payloads;
	b.pids = pids;
	b.npids = npids;
	b.pmsgs = partoo_msg_table();
	b.ds = partoo_dispatch_set_create(evs, n);
	b.created_by = GetUserNameFromId(GetUserId(), false);	/* the caller */
	run_applying(ingest_steps, &b);
}

/* ----------------------------------------------------------------
 * Pending events
 * ----------------------------------------------------------------
 */

/*
 * Apply the pending events of the Partoo ids in pids[0..n): read them in
 * the order they were received, decide them against their (now recorded)
 * messages, and write outcomes and messages back.  Runs inside
 * partoo_store_begin/end, after the bucket locks.
 */
static void
apply_pending(int64 *pids, int n)
{
	static SPIPlanPtr plan_any = NULL;
	static SPIPlanPtr plan_pending = NULL;
	static SPIPlanPtr plan_update = NULL;
	Oid			any_types[1] = {INT8ARRAYOID};
	Oid			upd_types[3] = {INT8ARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
	Datum		args[3];
	PartooIngestEvent **evs;
	int			nev = 0;
	int64	   *found_pids;
	int			nfound = 0;
	HTAB	   *pmsgs;
	Datum	   *ids,
			   *outcomes,
			   *mids;
	uint64		r;
	int			i,
				rc;

	/* the cheap way out: no event waits at all */
	partoo_plan_once(&plan_any,
							 "SELECT EXISTS (SELECT 1 FROM partoo.events WHERE outcome = 'pending')",
							 0, NULL, PARTOO_WEBHOOK_PLAN);
	rc = partoo_webhook_run_plan(plan_any, NULL, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.events: %s", SPI_result_code_string(rc));
	{
		bool		isnull;

		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										1, &isnull)))
			return;
	}

	partoo_plan_once(&plan_pending,
							 "SELECT id, partoo_id, payload FROM partoo.events"
							 " WHERE outcome = 'pending' AND partoo_id = ANY ($1) ORDER BY id",
							 1, any_types, PARTOO_WEBHOOK_PLAN);
	args[0] = int64_array(pids, n);
	rc = partoo_webhook_run_plan(plan_pending, args, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.events: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return;

	evs = palloc(sizeof(PartooIngestEvent *) * SPI_processed);
	found_pids = palloc(sizeof(int64) * SPI_processed);
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = partoo_spi_int64(t, d, 1, &isnull);
		Datum		payload = SPI_getbinval(t, d, 3, &isnull);
		text	   *body = DatumGetTextPP(payload);
		PartooWebhookError err;
		PartooWebhookEvent *pe;
		PartooIngestEvent *ev;

		/*
		 * Parsed already when it was received; but this runs in the
		 * transaction recording a sent message, which must not fail for a
		 * stored event, so a surprise is a warning and the event waits.
		 */
		pe = partoo_webhook_parse(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), 0, &err);
		if (pe == NULL || pe->source != PARTOO_SOURCE_PARTOO || !pe->concerns_status)
		{
			partoo_webhook_event_free(pe);
			ereport(WARNING,
					(errmsg("pending webhook event %lld cannot be applied", (long long) id),
					 errdetail("Its payload no longer parses as a Partoo status event.")));
			continue;
		}
		ev = palloc0(sizeof(PartooIngestEvent));
		ev->source = PARTOO_SOURCE_PARTOO;
		ev->partoo_id = pe->partoo_id;
		ev->status = pe->status;
		ev->is_deleted = pe->is_deleted;
		ev->event_id = id;
		partoo_webhook_event_free(pe);
		evs[nev++] = ev;
		found_pids[nfound++] = ev->partoo_id;
	}
	if (nev == 0)
		return;

	pmsgs = partoo_msg_table();
	fetch_partoo_messages(pmsgs, found_pids, nfound, false, false);
	ids = palloc(sizeof(Datum) * nev);
	outcomes = palloc(sizeof(Datum) * nev);
	mids = palloc(sizeof(Datum) * nev);
	for (i = 0; i < nev; i++)
	{
		PartooIngestEvent *ev = evs[i];
		MsgState   *m = hash_search(pmsgs, &ev->partoo_id, HASH_FIND, NULL);

		if (m == NULL || !m->found)
			elog(ERROR, "message with partoo_id " INT64_FORMAT " vanished", ev->partoo_id);
		ev->outcome = decide_partoo(m, ev);
		ids[i] = Int64GetDatum(ev->event_id);
		outcomes[i] = CStringGetTextDatum(ev->outcome);
		mids[i] = Int64GetDatum(m->id);
	}

	partoo_plan_once(&plan_update,
							 "UPDATE partoo.events e"
							 "   SET outcome = u.outcome, message_id = u.message_id,"
							 "       applied_at = CASE WHEN u.outcome = 'applied' THEN now() END"
							 "  FROM (SELECT unnest($1) AS id, unnest($2) AS outcome,"
							 "               unnest($3) AS message_id) AS u"
							 " WHERE e.id = u.id AND e.outcome = 'pending'",
							 3, upd_types, PARTOO_WEBHOOK_PLAN);
	args[0] = partoo_make_array(ids, NULL, nev, INT8OID);
	args[1] = partoo_make_array(outcomes, NULL, nev, TEXTOID);
	args[2] = partoo_make_array(mids, NULL, nev, INT8OID);
	rc = partoo_webhook_run_plan(plan_update, args, NULL);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not update partoo.events: %s", SPI_result_code_string(rc));
	write_partoo_messages(pmsgs);
}

/*
 * Apply the pending events of the Partoo ids pids[0..n) that a statement
 * has just recorded, in the recording transaction: called by
 * partoo_store_sent_message and partoo_outbox_record (and, in a 0.1
 * schema, by the triggers on partoo.messages, see webhook.c).  Takes the ids' buckets in
 * share mode first (see the banner).  Costs the locks and one index probe
 * when no event is pending.
 */
typedef struct PendingIds
{
	int64	   *pids;
	int			n;
} PendingIds;

static void
apply_pending_steps(void *arg)
{
	PendingIds *p = (PendingIds *) arg;

	apply_pending(p->pids, p->n);
}

void
partoo_webhook_apply_recorded(int64 *pids, int n)
{
	PendingIds	pending;
	uint64		mask = 0;
	uint64		busy;
	int			i;

	for (i = 0; i < n; i++)
		mask |= UINT64CONST(1) << bucket_of(pids[i]);
	busy = lock_buckets_shared(mask, true);
	if (busy != 0 && !partoo_owe_pending_at_commit(busy))
		busy = lock_buckets_shared(busy, false);	/* no worker: wait */

	pending.pids = pids;
	pending.n = n;
	if (busy != 0)
	{
		/* the owed ones are left to the worker */
		int64	   *now = palloc(sizeof(int64) * Max(n, 1));
		int			k = 0;

		for (i = 0; i < n; i++)
			if ((busy & (UINT64CONST(1) << bucket_of(pids[i]))) == 0)
				now[k++] = pids[i];
		pending.pids = now;
		pending.n = k;
		if (k == 0)
			return;
	}
	run_applying(apply_pending_steps, &pending);
}

/*
 * Worker side of owed buckets (see the banner): apply the pending events
 * of recorded Partoo messages whose bucket is in mask and free now.
 * Returns the buckets still owed: taken by an ingest, or not reached
 * because more events wait than one pass reads.  In the worker's
 * transaction; can ereport.
 */
#define OWED_PASS_LIMIT 10000

uint64
partoo_webhook_apply_owed(uint64 mask)
{
	static SPIPlanPtr plan_any = NULL;
	static SPIPlanPtr plan = NULL;
	PartooStoreContext sc;
	MemoryContext cxt = CurrentMemoryContext;
	uint64		busy;
	uint64		taken;
	uint64		still = 0;
	int64	   *pids = NULL;
	int			npids = 0;
	uint64		r;
	bool		isnull;
	int			rc;

	if (mask == 0)
		return 0;
	busy = lock_buckets_shared(mask, true);
	taken = mask & ~busy;
	if (taken == 0)
		return busy;

	webhook_store_begin(&sc);
	partoo_plan_once(&plan_any,
					 "SELECT EXISTS (SELECT 1 FROM partoo.events WHERE outcome = 'pending')",
					 0, NULL, PARTOO_WEBHOOK_PLAN);
	rc = partoo_webhook_run_plan(plan_any, NULL, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.events: %s", SPI_result_code_string(rc));
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
	{
		partoo_plan_once(&plan,
						 "SELECT DISTINCT e.partoo_id FROM partoo.events e"
						 "  JOIN partoo.messages m ON m.partoo_id = e.partoo_id"
						 " WHERE e.outcome = 'pending'"
						 " ORDER BY e.partoo_id LIMIT " CppAsString2(OWED_PASS_LIMIT),
						 0, NULL, PARTOO_WEBHOOK_PLAN);
		rc = partoo_webhook_run_plan(plan, NULL, NULL);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "could not read partoo.events: %s", SPI_result_code_string(rc));
		if (SPI_processed >= OWED_PASS_LIMIT)
			still = taken;		/* come back for the rest */
		/* NB: out of SPI's memory, which partoo_store_end frees */
		pids = MemoryContextAlloc(cxt, sizeof(int64) * Max(SPI_processed, 1));
		for (r = 0; r < SPI_processed; r++)
		{
			int64		pid = partoo_spi_int64(SPI_tuptable->vals[r],
											   SPI_tuptable->tupdesc, 1, &isnull);

			if (taken & (UINT64CONST(1) << bucket_of(pid)))
				pids[npids++] = pid;
		}
	}
	partoo_store_end(&sc);

	if (npids > 0)
	{
		PendingIds	pending;

		pending.pids = pids;
		pending.n = npids;
		run_applying(apply_pending_steps, &pending);
	}
	return busy | still;
}

/* Is this backend writing partoo.messages for a webhook right now? */
bool
partoo_webhook_applying(void)
{
	return applying > 0;
}
