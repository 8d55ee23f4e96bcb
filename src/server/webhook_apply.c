/*-------------------------------------------------------------------------
 *
 * webhook_apply.c
 *		The ingest pipeline: the table of webhook formats, and applying
 *		parsed, authenticated events through them: recognising duplicates,
 *		letting each format fetch, decide and write, and recording the
 *		events in partoo.events; then applying pending events once their
 *		message's Partoo id is recorded.
 *
 * The pipeline knows no format: it calls the functions of
 * PartooWebhookFormat (webhook_format.h) through the table below, and the
 * formats never call back.  Everything runs in the caller's transaction
 * as the extension owner (partoo_store_begin), in four steps:
 *
 *	 1. each format locks and reads the messages its events name, creating
 *		those it creates, and completes its events' dedup keys (fetch);
 *	 2. the duplicate-recognition keys already in partoo.events are read;
 *	 3. the events are decided one by one, in order, in memory: a
 *		duplicate, an event that concerns no status (ignored), or what its
 *		format decides (decide);
 *	 4. the events are inserted, then each format writes its messages back
 *		(write), one set-based statement each.
 * Every statement is prepared once per backend: a batch of 100,000 events
 * costs the same handful of statements as a single one.
 *
 * An event whose message is not recorded yet is kept as 'pending' (only
 * Partoo events can be: their message is the one partoo sent, whose
 * Partoo id the response brings).  When the id is recorded, the recording
 * code (store.c, outbox.c; in a 0.1 schema, statement triggers on
 * partoo.messages, see webhook.c) calls partoo_webhook_apply_recorded()
 * in that transaction, after its statement: the pending events are read
 * back from their columns, restored by their format, and decided and
 * written through the same functions of their format.  The two sides meet
 * on the bucket locks of webhook_bucket.c, whose banner tells how.
 *
 * The recording side never waits for a bucket, when a worker serves the
 * database: an ingest may hold one for as long as its transaction stays
 * open, and the worker must go on sending and recording meanwhile.  A
 * bucket it cannot have at once is owed: the recording commits without
 * applying those ids' events, and at commit the bucket is added to the
 * worker's owed mask (shmem.c); the worker then applies the pending
 * events of recorded messages in those buckets
 * (partoo_webhook_apply_owed) once it can take them, that is, once the
 * ingest has committed (its event is then visible) or rolled back.  A
 * worker starts owing every bucket, so a crash between the two loses
 * nothing.  Without a worker (not preloaded), the recording side waits
 * for the bucket.
 *
 * Under REPEATABLE READ or SERIALIZABLE, every statement reads the latest
 * committed state (partoo_run_plan_latest, as foreign-key checks do), so
 * that the handshake holds whatever the caller's isolation level.
 *
 * src/server/webhook_apply.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "core/webhook.h"
#include "server/db.h"
#include "server/shmem.h"
#include "server/webhook.h"
#include "server/webhook_format.h"

/*
 * The webhook formats, in the order they are tried on a body (the first
 * that recognises it parses it, webhook.c) and the order the steps of a
 * batch run them in (so messages are always locked in the same order, and
 * two ingests never deadlock).  To add a format, write one file that
 * implements PartooWebhookFormat (its parse() may call the protocol core)
 * and add one line here: nothing else of the pipeline, webhook.c or the
 * other formats changes.
 */
const PartooWebhookFormat *const partoo_webhook_formats[] = {
	&partoo_webhook_format_partoo,
	&partoo_webhook_format_dispatch,
	&partoo_webhook_format_reconcile,	/* statuses read by the worker */
};
const int	partoo_webhook_nformats = lengthof(partoo_webhook_formats);

/* Most pending ids the worker reads in one pass over owed buckets */
#define OWED_PASS_LIMIT 10000

/* Smallest hash table made here */
#define MIN_TABLE_SIZE	16

/* > 0 while this backend writes partoo.messages itself: the trigger skips */
static int	applying = 0;

/* The events of a batch that belong to one format, and its batch state */
typedef struct FormatBatch
{
	PartooIngestEvent **evs;
	int			n;
	void	   *state;			/* from its begin(), when n > 0 */
} FormatBatch;

/* ----------------------------------------------------------------
 * Running as the extension owner
 * ----------------------------------------------------------------
 */

/*
 * partoo_store_begin() for the statements here and in the formats, which
 * all look rows up by key.  NB: their generic plans are made once per
 * backend, possibly when a table is empty (just created or truncated): a
 * sequential scan comparing each row with an array of 100,000 keys would
 * then be kept for good.  With sequential scans disabled while they are
 * planned, they always use their index, whatever the statistics say.
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

/* ----------------------------------------------------------------
 * The formats' steps over a batch
 * ----------------------------------------------------------------
 */

static int
format_index(const PartooWebhookFormat *format)
{
	int			f;

	for (f = 0; f < partoo_webhook_nformats; f++)
		if (partoo_webhook_formats[f] == format)
			return f;
	elog(ERROR, "webhook event of a format not in the table");
	return -1;					/* keep compiler quiet */
}

/* The format named name (partoo.events.source), or NULL */
static const PartooWebhookFormat *
format_named(const char *name)
{
	int			f;

	for (f = 0; f < partoo_webhook_nformats; f++)
		if (name != NULL && strcmp(partoo_webhook_formats[f]->name, name) == 0)
			return partoo_webhook_formats[f];
	return NULL;
}

/*
 * evs[0..n) split by format, in order, one FormatBatch per entry of the
 * table; begin() of each format that has events
 */
static FormatBatch *
begin_formats(PartooIngestEvent **evs, int n)
{
	FormatBatch *fb = palloc0(sizeof(FormatBatch) * partoo_webhook_nformats);
	int			f;
	int			i;

	for (i = 0; i < n; i++)
	{
		FormatBatch *b = &fb[format_index(evs[i]->format)];

		if (b->evs == NULL)
			b->evs = palloc(sizeof(PartooIngestEvent *) * n);
		b->evs[b->n++] = evs[i];
	}
	for (f = 0; f < partoo_webhook_nformats; f++)
		if (fb[f].n > 0)
			fb[f].state = partoo_webhook_formats[f]->begin(fb[f].evs, fb[f].n);
	return fb;
}

static void
fetch_formats(FormatBatch *fb, PartooFetchMode mode, const char *created_by)
{
	int			f;

	for (f = 0; f < partoo_webhook_nformats; f++)
		if (fb[f].n > 0)
			partoo_webhook_formats[f]->fetch(fb[f].state, mode, created_by);
}

/* What the event's format decides for it */
static const char *
format_decide(FormatBatch *fb, PartooIngestEvent *ev)
{
	return ev->format->decide(fb[format_index(ev->format)].state, ev);
}

static void
write_formats(FormatBatch *fb)
{
	int			f;

	for (f = 0; f < partoo_webhook_nformats; f++)
		if (fb[f].n > 0)
			partoo_webhook_formats[f]->write(fb[f].state);
}

/* ----------------------------------------------------------------
 * Events
 * ----------------------------------------------------------------
 */

/* The columns of partoo.events an ingest inserts, in the order of $1.. */
typedef enum EventColumn
{
	COL_SOURCE,
	COL_EVENT_TYPE,
	COL_PARTOO_ID,
	COL_EXTERNAL_ID,
	COL_RECIPIENT,
	COL_PART,
	COL_CHANNEL,
	COL_CONTENT_TYPE,
	COL_SENDER_TYPE,
	COL_STATUS,
	COL_EVENT_AT,
	COL_ORDER_KEY,
	COL_DEDUP_KEY,
	COL_PAYLOAD,				/* the caller's text[], passed as is */
	COL_OUTCOME,
	COL_MESSAGE_ID,
	NUM_EVENT_COLUMNS
} EventColumn;

/* Each column's element type and array type (not const: SPI's argtypes) */
static const Oid event_column_type[NUM_EVENT_COLUMNS] = {
	[COL_SOURCE] = TEXTOID,[COL_EVENT_TYPE] = TEXTOID,
	[COL_PARTOO_ID] = INT8OID,[COL_EXTERNAL_ID] = TEXTOID,
	[COL_RECIPIENT] = TEXTOID,[COL_PART] = INT4OID,
	[COL_CHANNEL] = TEXTOID,[COL_CONTENT_TYPE] = TEXTOID,
	[COL_SENDER_TYPE] = TEXTOID,[COL_STATUS] = TEXTOID,
	[COL_EVENT_AT] = TIMESTAMPTZOID,[COL_ORDER_KEY] = TEXTOID,
	[COL_DEDUP_KEY] = TEXTOID,[COL_PAYLOAD] = TEXTOID,
	[COL_OUTCOME] = TEXTOID,[COL_MESSAGE_ID] = INT8OID,
};
static Oid event_column_array_type[NUM_EVENT_COLUMNS] = {
	[COL_SOURCE] = TEXTARRAYOID,[COL_EVENT_TYPE] = TEXTARRAYOID,
	[COL_PARTOO_ID] = INT8ARRAYOID,[COL_EXTERNAL_ID] = TEXTARRAYOID,
	[COL_RECIPIENT] = TEXTARRAYOID,[COL_PART] = INT4ARRAYOID,
	[COL_CHANNEL] = TEXTARRAYOID,[COL_CONTENT_TYPE] = TEXTARRAYOID,
	[COL_SENDER_TYPE] = TEXTARRAYOID,[COL_STATUS] = TEXTARRAYOID,
	[COL_EVENT_AT] = TIMESTAMPTZARRAYOID,[COL_ORDER_KEY] = TEXTARRAYOID,
	[COL_DEDUP_KEY] = TEXTARRAYOID,[COL_PAYLOAD] = TEXTARRAYOID,
	[COL_OUTCOME] = TEXTARRAYOID,[COL_MESSAGE_ID] = INT8ARRAYOID,
};

/*
 * The INSERT of an ingest's events, keeping those of the pass (filter).
 * NB: the arrays go through set-returning functions in the target list,
 * which stream; unnest() in FROM would first copy every row into a
 * tuplestore.
 */
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

/* A string set of n strings shorter than keysize, in this context */
static HTAB *
string_set(Size keysize, long n, const char *name)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = keysize;
	ctl.entrysize = keysize;
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, Max(n, MIN_TABLE_SIZE), &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/* Room for the longest dedup key of evs[0..n) */
static Size
dedup_key_size(PartooIngestEvent **evs, int n)
{
	Size		keysize = 0;
	int			i;

	for (i = 0; i < n; i++)
		keysize = Max(keysize, strlen(evs[i]->dedup_key) + 1);
	return keysize;
}

/* Which of the events' (final) keys are already in partoo.events */
static HTAB *
existing_keys(PartooIngestEvent **evs, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum		args[1];
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	HTAB	   *set = string_set(dedup_key_size(evs, n), n, "partoo webhook keys");
	uint64		i;
	int			rc;

	for (i = 0; i < (uint64) n; i++)
		elems[i] = CStringGetTextDatum(evs[i]->dedup_key);
	partoo_plan_once(&plan,
					 "SELECT dedup_key FROM partoo.events"
					 " WHERE dedup_key = ANY ($1::text[] COLLATE \"C\")",
					 1, argtypes, PARTOO_WEBHOOK_PLAN);
	args[0] = partoo_make_array(elems, NULL, n, TEXTOID);
	rc = partoo_run_plan_latest(plan, args, NULL);
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
 * Decide evs[0..n) in order: a key seen before (in partoo.events or
 * earlier in the batch) is a duplicate, an event that concerns no status
 * is ignored, any other is its format's to decide.
 */
static void
decide_in_order(FormatBatch *fb, PartooIngestEvent **evs, int n, HTAB *seen)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		PartooIngestEvent *ev = evs[i];
		bool		dup;

		(void) hash_search(seen, ev->dedup_key, HASH_ENTER, &dup);
		if (dup)
			ev->outcome = "duplicate";
		else if (!ev->concerns_status)
			ev->outcome = "ignored";
		else
			ev->outcome = format_decide(fb, ev);
	}
}

/*
 * vals[i] = the text of s; when s is the very string of the previous
 * event (prev, webhook.c shares them), its datum is shared too
 */
static void
shared_text(Datum *vals, bool *nulls, int i, const char *s, const char *prev)
{
	if (i > 0 && s != NULL && s == prev)
	{
		vals[i] = vals[i - 1];
		nulls[i] = false;
	}
	else
		vals[i] = partoo_text_datum(s, &nulls[i]);
}

/* Row i of the columns: event ev, after pv (NULL for the first) */
static void
event_row(Datum **vals, bool **nulls, int i, const PartooIngestEvent *ev,
		  const PartooIngestEvent *pv)
{
#define SHARED(col, field) \
	shared_text(vals[col], nulls[col], i, ev->field, pv ? pv->field : NULL)

	SHARED(COL_SOURCE, format->name);
	SHARED(COL_EVENT_TYPE, event_type);
	vals[COL_PARTOO_ID][i] = Int64GetDatum(ev->partoo_id);
	nulls[COL_PARTOO_ID][i] = ev->partoo_id == 0;
	vals[COL_EXTERNAL_ID][i] = partoo_text_datum(ev->dispatch_id, &nulls[COL_EXTERNAL_ID][i]);
	vals[COL_RECIPIENT][i] = partoo_text_datum(ev->recipient, &nulls[COL_RECIPIENT][i]);
	vals[COL_PART][i] = Int32GetDatum(ev->part);
	nulls[COL_PART][i] = ev->part == 0;
	SHARED(COL_CHANNEL, channel);
	SHARED(COL_CONTENT_TYPE, content_type);
	SHARED(COL_SENDER_TYPE, sender_type);
	SHARED(COL_STATUS, status_raw);
	vals[COL_EVENT_AT][i] = TimestampTzGetDatum(ev->event_at);
	nulls[COL_EVENT_AT][i] = !ev->has_event_at;
	vals[COL_ORDER_KEY][i] = partoo_text_datum(ev->order_key, &nulls[COL_ORDER_KEY][i]);
	vals[COL_DEDUP_KEY][i] = partoo_text_datum(ev->dedup_key, &nulls[COL_DEDUP_KEY][i]);
	SHARED(COL_OUTCOME, outcome);
	vals[COL_MESSAGE_ID][i] = Int64GetDatum(ev->message_id);
	nulls[COL_MESSAGE_ID][i] = !ev->has_message_id;
#undef SHARED
}

/*
 * args[] of INSERT_EVENTS_SQL for all n events: one array per column,
 * payloads (the text[] of the n bodies, the caller's own array for a
 * batch: it is not copied) for COL_PAYLOAD
 */
static void
event_columns(PartooIngestEvent **evs, int n, Datum payloads, Datum *args)
{
	Datum	   *vals[NUM_EVENT_COLUMNS];
	bool	   *nulls[NUM_EVENT_COLUMNS];
	int			c;
	int			i;

	for (c = 0; c < NUM_EVENT_COLUMNS; c++)
	{
		vals[c] = palloc(sizeof(Datum) * n);
		nulls[c] = palloc(sizeof(bool) * n);
	}
	for (i = 0; i < n; i++)
		event_row(vals, nulls, i, evs[i], i > 0 ? evs[i - 1] : NULL);
	for (c = 0; c < NUM_EVENT_COLUMNS; c++)
		args[c] = c == COL_PAYLOAD ? payloads :
			partoo_make_array(vals[c], nulls[c], n, event_column_type[c]);
}

/*
 * The status events (applied, stale, pending).  They cannot conflict:
 * their messages are locked (or, for a pending event, its bucket), and
 * existing_keys() read the keys after those locks; so they go in with a
 * plain INSERT, which costs a third less than ON CONFLICT's speculative
 * insertion (a conflict would be a bug, reported as the unique violation
 * it is).
 */
static void
insert_status_events(Datum *args, int nstatus)
{
	static SPIPlanPtr plan = NULL;
	int			rc;

	partoo_plan_once(&plan,
					 INSERT_EVENTS_SQL("u.outcome IN ('applied', 'stale', 'pending')", ""),
					 NUM_EVENT_COLUMNS, event_column_array_type,
					 PARTOO_WEBHOOK_PLAN);
	rc = partoo_run_plan_latest(plan, args, NULL);
	if (rc != SPI_OK_INSERT || SPI_processed != (uint64) nstatus)
		elog(ERROR, "could not insert into partoo.events: %s",
			 SPI_result_code_string(rc));
}

/*
 * The events that concern no status.  They take no lock, so a conflict
 * means a concurrent duplicate: those not inserted become duplicates.
 */
static void
insert_ignored_events(PartooIngestEvent **evs, int n, Datum *args, int nignored)
{
	static SPIPlanPtr plan = NULL;
	HTAB	   *inserted;
	uint64		r;
	int			i;
	int			rc;

	partoo_plan_once(&plan,
					 INSERT_EVENTS_SQL("u.outcome = 'ignored'",
									   " ON CONFLICT (dedup_key) DO NOTHING RETURNING dedup_key"),
					 NUM_EVENT_COLUMNS, event_column_array_type,
					 PARTOO_WEBHOOK_PLAN);
	rc = partoo_run_plan_latest(plan, args, NULL);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not insert into partoo.events: %s", SPI_result_code_string(rc));
	if (SPI_processed == (uint64) nignored)
		return;

	inserted = string_set(dedup_key_size(evs, n), nignored, "partoo inserted keys");
	for (r = 0; r < SPI_processed; r++)
		(void) hash_search(inserted,
						   partoo_spi_text(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1),
						   HASH_ENTER, NULL);
	for (i = 0; i < n; i++)
		if (strcmp(evs[i]->outcome, "ignored") == 0 &&
			hash_search(inserted, evs[i]->dedup_key, HASH_FIND, NULL) == NULL)
			evs[i]->outcome = "duplicate";
}

/*
 * Insert the events that are not duplicates, in two passes over the same
 * columns: the status events, then those that concern no status.
 */
static void
insert_events(PartooIngestEvent **evs, int n, Datum payloads)
{
	Datum		args[NUM_EVENT_COLUMNS];
	int			nstatus = 0;
	int			nignored = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (strcmp(evs[i]->outcome, "ignored") == 0)
			nignored++;
		else if (strcmp(evs[i]->outcome, "duplicate") != 0)
			nstatus++;
	}
	if (nstatus + nignored == 0)
		return;

	event_columns(evs, n, payloads, args);
	if (nstatus > 0)
		insert_status_events(args, nstatus);
	if (nignored > 0)
		insert_ignored_events(evs, n, args, nignored);
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
	FormatBatch *formats;
	char	   *created_by;
} IngestBatch;

/* The four steps of the banner, as the extension owner */
static void
ingest_steps(void *arg)
{
	IngestBatch *b = (IngestBatch *) arg;
	HTAB	   *seen;

	fetch_formats(b->formats, PARTOO_FETCH_INGEST, b->created_by);
	seen = existing_keys(b->evs, b->n);
	decide_in_order(b->formats, b->evs, b->n, seen);
	insert_events(b->evs, b->n, b->payloads);
	write_formats(b->formats);
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

	b.evs = evs;
	b.n = n;
	b.payloads = payloads;
	b.formats = begin_formats(evs, n);
	b.created_by = GetUserNameFromId(GetUserId(), false);	/* the caller */
	run_applying(ingest_steps, &b);
}

/* ----------------------------------------------------------------
 * Pending events
 * ----------------------------------------------------------------
 */

/* The cheap way out: does any event wait at all? */
static bool
any_pending(void)
{
	static SPIPlanPtr plan = NULL;
	bool		isnull;
	int			rc;

	partoo_plan_once(&plan,
					 "SELECT EXISTS (SELECT 1 FROM partoo.events WHERE outcome = 'pending')",
					 0, NULL, PARTOO_WEBHOOK_PLAN);
	rc = partoo_run_plan_latest(plan, NULL, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.events: %s", SPI_result_code_string(rc));
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									  1, &isnull));
}

/*
 * A pending event from its row (id, source, partoo_id, status,
 * dedup_key), restored by its format; NULL with a WARNING when its columns
 * do not make one.  NB: this runs in the transaction recording a sent
 * message, which must not fail for a stored event, so a surprise is a
 * warning and the event waits.
 */
static PartooIngestEvent *
pending_event(HeapTuple t, TupleDesc d)
{
	PartooIngestEvent *ev = palloc0(sizeof(PartooIngestEvent));
	bool		isnull;

	ev->event_id = partoo_spi_int64(t, d, 1, &isnull);
	ev->format = format_named(partoo_spi_text(t, d, 2));
	ev->partoo_id = partoo_spi_int64(t, d, 3, &isnull);
	ev->status_raw = partoo_spi_text(t, d, 4);
	ev->dedup_key = partoo_spi_text(t, d, 5);
	if (ev->format == NULL || ev->format->restore == NULL || !ev->format->restore(ev))
	{
		ereport(WARNING,
				(errmsg("pending webhook event %lld cannot be applied", (long long) ev->event_id),
				 errdetail("Its source, status and duplicate-recognition key do not describe a status event of a known format.")));
		return NULL;
	}
	return ev;
}

/*
 * The pending events of the Partoo ids pids[0..n), in the order they were
 * received, into *evs; returns how many.
 */
static int
read_pending(int64 *pids, int n, PartooIngestEvent ***evs)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		args[1];
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	uint64		r;
	int			nev = 0;
	int			i;
	int			rc;

	partoo_plan_once(&plan,
					 "SELECT id, source, partoo_id, status, dedup_key FROM partoo.events"
					 " WHERE outcome = 'pending' AND partoo_id = ANY ($1) ORDER BY id",
					 1, argtypes, PARTOO_WEBHOOK_PLAN);
	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(pids[i]);
	args[0] = partoo_make_array(elems, NULL, n, INT8OID);
	rc = partoo_run_plan_latest(plan, args, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.events: %s", SPI_result_code_string(rc));

	*evs = palloc(sizeof(PartooIngestEvent *) * Max(SPI_processed, 1));
	for (r = 0; r < SPI_processed; r++)
	{
		PartooIngestEvent *ev = pending_event(SPI_tuptable->vals[r], SPI_tuptable->tupdesc);

		if (ev != NULL)
			(*evs)[nev++] = ev;
	}
	return nev;
}

/*
 * Decide pending events against their (now recorded) messages, in order.
 * The recording transaction holds the messages, so each is found.
 */
static void
decide_pending(FormatBatch *fb, PartooIngestEvent **evs, int n)
{
	int			i;

	for (i = 0; i < n; i++)
	{
		evs[i]->outcome = format_decide(fb, evs[i]);
		if (strcmp(evs[i]->outcome, "pending") == 0)
			elog(ERROR, "message with partoo_id " INT64_FORMAT " vanished", evs[i]->partoo_id);
	}
}

/* Write the outcomes of pending events back to partoo.events */
static void
record_pending_outcomes(PartooIngestEvent **evs, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {INT8ARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
	Datum		args[3];
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *outcomes = palloc(sizeof(Datum) * n);
	Datum	   *mids = palloc(sizeof(Datum) * n);
	bool	   *mids_null = palloc(sizeof(bool) * n);
	int			i;
	int			rc;

	for (i = 0; i < n; i++)
	{
		ids[i] = Int64GetDatum(evs[i]->event_id);
		outcomes[i] = CStringGetTextDatum(evs[i]->outcome);
		mids[i] = Int64GetDatum(evs[i]->message_id);
		mids_null[i] = !evs[i]->has_message_id;
	}
	partoo_plan_once(&plan,
					 "UPDATE partoo.events e"
					 "   SET outcome = u.outcome, message_id = u.message_id,"
					 "       applied_at = CASE WHEN u.outcome = 'applied' THEN now() END"
					 "  FROM (SELECT unnest($1) AS id, unnest($2) AS outcome,"
					 "               unnest($3) AS message_id) AS u"
					 " WHERE e.id = u.id AND e.outcome = 'pending'",
					 3, argtypes, PARTOO_WEBHOOK_PLAN);
	args[0] = partoo_make_array(ids, NULL, n, INT8OID);
	args[1] = partoo_make_array(outcomes, NULL, n, TEXTOID);
	args[2] = partoo_make_array(mids, mids_null, n, INT8OID);
	rc = partoo_run_plan_latest(plan, args, NULL);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not update partoo.events: %s", SPI_result_code_string(rc));
}

/*
 * Apply the pending events of the Partoo ids in pids[0..n): read them back
 * from their columns, let their format fetch their messages and decide
 * them, and write outcomes and messages back.  Runs inside
 * partoo_store_begin/end, after the bucket locks.
 */
static void
apply_pending(int64 *pids, int n)
{
	PartooIngestEvent **evs;
	FormatBatch *fb;
	int			nev;

	if (!any_pending())
		return;
	nev = read_pending(pids, n, &evs);
	if (nev == 0)
		return;
	fb = begin_formats(evs, nev);
	fetch_formats(fb, PARTOO_FETCH_PENDING, NULL);
	decide_pending(fb, evs, nev);
	record_pending_outcomes(evs, nev);
	write_formats(fb);
}

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

/*
 * Apply the pending events of the Partoo ids pids[0..n) that a statement
 * has just recorded, in the recording transaction: called by
 * partoo_store_sent_message and partoo_outbox_record (and, in a 0.1
 * schema, by the triggers on partoo.messages, see webhook.c).  Takes the
 * ids' buckets in share mode first (see webhook_bucket.c); those an
 * ingest holds are owed to the worker (see the banner).  Costs the locks
 * and one index probe when no event is pending.
 */
void
partoo_webhook_apply_recorded(int64 *pids, int n)
{
	PendingIds	pending;
	uint64		busy;
	int			i;

	busy = partoo_webhook_lock_buckets_shared(partoo_webhook_buckets_of(pids, n), true);
	if (busy != 0 && !partoo_owe_pending_at_commit(busy))
		busy = partoo_webhook_lock_buckets_shared(busy, false); /* no worker: wait */

	pending.pids = pids;
	pending.n = n;
	if (busy != 0)
	{
		/* the owed ones are left to the worker */
		pending.pids = palloc(sizeof(int64) * Max(n, 1));
		pending.n = 0;
		for (i = 0; i < n; i++)
			if ((busy & (UINT64CONST(1) << partoo_webhook_bucket_of(pids[i]))) == 0)
				pending.pids[pending.n++] = pids[i];
		if (pending.n == 0)
			return;
	}
	run_applying(apply_pending_steps, &pending);
}

/*
 * The Partoo ids of recorded messages with pending events whose bucket is
 * in taken, at most OWED_PASS_LIMIT of them, allocated in cxt; *more:
 * there may be others.  Inside webhook_store_begin/end.
 */
static int
owed_pending_ids(uint64 taken, MemoryContext cxt, int64 **pids, bool *more)
{
	static SPIPlanPtr plan = NULL;
	uint64		r;
	bool		isnull;
	int			n = 0;
	int			rc;

	partoo_plan_once(&plan,
					 "SELECT DISTINCT e.partoo_id FROM partoo.events e"
					 "  JOIN partoo.messages m ON m.partoo_id = e.partoo_id"
					 " WHERE e.outcome = 'pending'"
					 " ORDER BY e.partoo_id LIMIT " CppAsString2(OWED_PASS_LIMIT),
					 0, NULL, PARTOO_WEBHOOK_PLAN);
	rc = partoo_run_plan_latest(plan, NULL, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.events: %s", SPI_result_code_string(rc));
	*more = SPI_processed >= OWED_PASS_LIMIT;
	/* NB: out of SPI's memory, which partoo_store_end frees */
	*pids = MemoryContextAlloc(cxt, sizeof(int64) * Max(SPI_processed, 1));
	for (r = 0; r < SPI_processed; r++)
	{
		int64		pid = partoo_spi_int64(SPI_tuptable->vals[r],
										   SPI_tuptable->tupdesc, 1, &isnull);

		if (taken & (UINT64CONST(1) << partoo_webhook_bucket_of(pid)))
			(*pids)[n++] = pid;
	}
	return n;
}

/*
 * Worker side of owed buckets (see the banner): apply the pending events
 * of recorded Partoo messages whose bucket is in mask and free now.
 * Returns the buckets still owed: taken by an ingest, or not reached
 * because more events wait than one pass reads.  In the worker's
 * transaction; can ereport.
 */
uint64
partoo_webhook_apply_owed(uint64 mask)
{
	PartooStoreContext sc;
	MemoryContext cxt = CurrentMemoryContext;
	PendingIds	pending = {NULL, 0};
	uint64		busy;
	uint64		taken;
	bool		more = false;

	if (mask == 0)
		return 0;
	busy = partoo_webhook_lock_buckets_shared(mask, true);
	taken = mask & ~busy;
	if (taken == 0)
		return busy;

	webhook_store_begin(&sc);
	if (any_pending())
		pending.n = owed_pending_ids(taken, cxt, &pending.pids, &more);
	partoo_store_end(&sc);

	if (pending.n > 0)
		run_applying(apply_pending_steps, &pending);
	return busy | (more ? taken : 0);
}

/* Is this backend writing partoo.messages for a webhook right now? */
bool
partoo_webhook_applying(void)
{
	return applying > 0;
}
