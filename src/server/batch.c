/*-------------------------------------------------------------------------
 *
 * batch.c
 *		The enqueue buffer: partoo_enqueue() and partoo.enqueue_trigger()
 *		calls kept in backend memory, then written as one set-based INSERT
 *		into partoo.messages and partoo.outbox; and partoo_send()'s
 *		recordings of the messages it has sent, written the same way into
 *		partoo.messages and partoo.reconcile.
 *
 * One statement per call costs most of an enqueue (planning, executor
 * start and end, a command counter step); one statement for thousands of
 * rows costs about what a plain INSERT ... SELECT does.  So a call is
 * validated at once (message.c, the account, as before: a bad call raises
 * its error then and changes nothing), takes its message id from the
 * identity sequence of partoo.messages at once (so it can return it, and
 * ids follow call order), and leaves its row here.  The rows are written,
 * through SPI as the extension's owner (db.c) so that CHECK constraints
 * and the messages_notify triggers apply as to any INSERT, at the first
 * of these points (the "flush points"):
 *
 *	- PARTOO_BATCH_ROWS rows, or PARTOO_BATCH_BYTES of their values, are
 *	  waiting (the bound on the buffer's memory);
 *	- the end of any query (ExecutorEnd): the statement that made the calls,
 *	  a PERFORM, and a row trigger's statement, whose AFTER triggers fire in
 *	  ExecutorFinish, before ExecutorEnd;
 *	- the start of any query (ExecutorStart), before the query reads
 *	  anything: this covers calls made outside the executor (a PL/pgSQL
 *	  "x := partoo_enqueue(...)" is a simple expression, evaluated without
 *	  ExecutorStart/End), and an open cursor's calls.  The query's snapshot
 *	  was taken before the rows were written: it is extended to them when
 *	  nothing else was written in between (see flush_for_query);
 *	- before and after any utility statement (so CALL, DO, COPY FROM into a
 *	  table with the trigger);
 *	- PRE_COMMIT and PRE_PREPARE, the last net (AFTER triggers deferred
 *	  to commit fire before it; no trigger of partoo's tables is deferred).
 *
 * partoo_send's rows ("sent" rows; the POST is made during the call) are
 * written by the same flushes, in a statement of their own, after which
 * the webhook events waiting for their Partoo ids are applied.  While only
 * sent rows wait, the end of a query and the start of one are flush
 * points only for a top-level statement (exec_depth 0) and for a query
 * with a table in its range table: no query can read a table without one,
 * and a PL/pgSQL loop of "PERFORM partoo_send(...)" (a query per call)
 * then writes 4,096 rows at a time instead of one.  partoo_send takes the
 * one-row path (store.c) where the buffer cannot be used.
 *
 * A call with an idempotency key flushes the buffer and takes the one-row
 * path (store.c), which looks the key up; so does a call made while the
 * buffer is being written (a trigger on partoo.messages calling
 * partoo_enqueue), and any call in a parallel worker (never: the function
 * is PARALLEL UNSAFE).
 *
 * Subtransactions.  Each row remembers the subtransaction that made it
 * (its owner); a committed subtransaction hands its rows to its parent, an
 * aborted one drops them.  A flush writes every waiting row in the current
 * subtransaction, which may be deeper than a row's owner (a PL/pgSQL
 * EXCEPTION block entered right after "x := partoo_enqueue(...)"): if that
 * deeper subtransaction aborts, the row's INSERT is undone although the
 * call that made it was not.  So such a row is also kept (a copy, with the
 * subtransaction it was written in) until that subtransaction commits into
 * the owner's level; if it aborts first, the row goes back into the buffer
 * under its id and is written again at the next flush point.  Rows owned
 * by the subtransaction that flushes them are forgotten at once.
 *
 * Memory: everything lives in contexts under TopTransactionContext, freed
 * with the transaction; the values of waiting rows in one context that
 * every flush resets.
 *
 * src/server/batch.c
 *
 *-------------------------------------------------------------------------
 */
#include "server/partoo.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "server/batch.h"
#include "server/db.h"
#include "server/reconcile.h"
#include "server/webhook.h"

/* A call waiting to be written; varlenas have 4-byte headers */
typedef struct BatchRow
{
	int64		id;
	SubTransactionId owner;		/* the subtransaction the call was made in */
	SubTransactionId flushed_in;	/* kept rows: where the INSERT was made */
	int64		conversation_id;
	text	   *account;		/* NULL: the default account */
	const char *content_type;	/* static canonical name */
	text	   *content;
	text	   *url;
	bytea	   *image;
	text	   *filename;
	const char *channel;		/* static canonical name, or NULL */
	struct varlena *metadata;	/* jsonb, or NULL */
	text	   *created_by;
	TimestampTz created_at;
	TimestampTz send_at;
	bool		has_send_at;
	bool		sent;			/* partoo_send's: recorded sent, no outbox row */
	int64		partoo_id;		/* sent rows: Partoo's id */
	int32		http_status;	/* sent rows: the POST's status */
} BatchRow;

/*
 * The columns of the INSERT (batch_columns), parameters $1 to $15; the
 * last two only in the INSERT of sent rows.
 */
#define BATCH_NARGS 15
#define BATCH_QUEUED_NARGS 13

static MemoryContext batch_cxt = NULL;	/* under TopTransactionContext */
static MemoryContext values_cxt = NULL; /* values of pending rows; reset by a flush */
static MemoryContext kept_cxt = NULL;	/* kept rows, each freed alone */
static BatchRow *pending = NULL;	/* in batch_cxt */
static int	npending = 0;
static int	maxpending = 0;
static Size pending_bytes = 0;	/* of their values */
static BatchRow **kept = NULL;	/* in batch_cxt */
static int	nkept = 0;
static int	maxkept = 0;
static bool flushing = false;
static int	nqueued = 0;		/* pending rows of partoo_enqueue */
static bool pending_track = false;	/* sent rows pending get reconcile rows */

/*
 * Executor runs, executor finishes and utility statements in progress
 * (see must_flush_in_query): 0 in a top-level statement's ExecutorStart
 * and ExecutorEnd.
 */
static int	exec_depth = 0;

/* Looked up once per transaction */
static LocalTransactionId cache_lxid = InvalidLocalTransactionId;
static Oid	id_sequence = InvalidOid;
static Oid	cached_userid = InvalidOid;
static text *cached_username = NULL;	/* in batch_cxt */

static bool callbacks_registered = false;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;

static int64 batch_add(PartooMessageInput *in, bool has_send_at,
					   TimestampTz send_at, bool sent, int64 partoo_id,
					   int32 http_status);
static void batch_xact_callback(XactEvent event, void *arg);
static void batch_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
								   SubTransactionId parentSubid, void *arg);

/* Forget everything: the contexts go with the transaction */
static void
batch_reset(void)
{
	batch_cxt = values_cxt = kept_cxt = NULL;
	pending = NULL;
	npending = maxpending = 0;
	pending_bytes = 0;
	kept = NULL;
	nkept = maxkept = 0;
	flushing = false;
	nqueued = 0;
	cache_lxid = InvalidLocalTransactionId;
	cached_username = NULL;
}

/* The buffer of this transaction, made on first use */
static void
batch_start(void)
{
	if (!callbacks_registered)
	{
		RegisterXactCallback(batch_xact_callback, NULL);
		RegisterSubXactCallback(batch_subxact_callback, NULL);
		callbacks_registered = true;
	}
	if (batch_cxt != NULL)
		return;
	batch_cxt = AllocSetContextCreate(TopTransactionContext,
									  "partoo enqueue buffer",
									  ALLOCSET_DEFAULT_SIZES);
	values_cxt = AllocSetContextCreate(batch_cxt,
									   "partoo enqueue buffer values",
									   ALLOCSET_DEFAULT_SIZES);
	kept_cxt = AllocSetContextCreate(batch_cxt,
									 "partoo enqueue buffer kept rows",
									 ALLOCSET_SMALL_SIZES);
}

/*
 * Whether a call may be buffered now.  Not while the buffer is being
 * written, nor in parallel mode or a read-only transaction (where nothing
 * may be inserted anyway: the one-row path raises the error it always
 * did).
 */
bool
partoo_batch_usable(void)
{
	return !flushing && !IsParallelWorker() && !IsInParallelMode() &&
		!XactReadOnly;
}

/* Whether a flush point may write the buffer now */
static bool
batch_flush_possible(void)
{
	return npending > 0 && !flushing && IsTransactionState() &&
		!IsInParallelMode();
}

/* A copy of v in cxt with a 4-byte header, or NULL */
static struct varlena *
copy_varlena(MemoryContext cxt, struct varlena *v)
{
	struct varlena *copy;
	Size		len;

	if (v == NULL)
		return NULL;
	v = pg_detoast_datum_packed(v);
	len = VARSIZE_ANY_EXHDR(v);
	copy = MemoryContextAlloc(cxt, len + VARHDRSZ);
	SET_VARSIZE(copy, len + VARHDRSZ);
	memcpy(VARDATA(copy), VARDATA_ANY(v), len);
	return copy;
}

/* Copy the values of row (not the shared user name) into cxt; their size */
static Size
copy_row_values(MemoryContext cxt, BatchRow *row)
{
	Size		size = 0;

	row->account = (text *) copy_varlena(cxt, (struct varlena *) row->account);
	row->content = (text *) copy_varlena(cxt, (struct varlena *) row->content);
	row->url = (text *) copy_varlena(cxt, (struct varlena *) row->url);
	row->image = (bytea *) copy_varlena(cxt, (struct varlena *) row->image);
	row->filename = (text *) copy_varlena(cxt, (struct varlena *) row->filename);
	row->metadata = copy_varlena(cxt, row->metadata);
	if (row->account)
		size += VARSIZE(row->account);
	if (row->content)
		size += VARSIZE(row->content);
	if (row->url)
		size += VARSIZE(row->url);
	if (row->image)
		size += VARSIZE(row->image);
	if (row->filename)
		size += VARSIZE(row->filename);
	if (row->metadata)
		size += VARSIZE(row->metadata);
	return size;
}

static void
free_row_values(BatchRow *row)
{
	if (row->account)
		pfree(row->account);
	if (row->content)
		pfree(row->content);
	if (row->url)
		pfree(row->url);
	if (row->image)
		pfree(row->image);
	if (row->filename)
		pfree(row->filename);
	if (row->metadata)
		pfree(row->metadata);
}

/*
 * The identity sequence of partoo.messages.id, and the caller's user name
 * as created_by records it, looked up once per transaction (the
 * extension may be dropped and created again between two).
 */
static void
batch_lookups(void)
{
	if (cache_lxid != PartooMyLocalTransactionId())
	{
		Oid			nsp = get_namespace_oid("partoo", true);
		Oid			relid = OidIsValid(nsp) ? get_relname_relid("messages", nsp) : InvalidOid;
		AttrNumber	attnum;

		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("extension \"partoo\" is not installed in this database"),
					 errhint("Run CREATE EXTENSION partoo.")));
		attnum = get_attnum(relid, "id");
		if (attnum == InvalidAttrNumber)
			elog(ERROR, "partoo.messages has no column \"id\"");
		id_sequence = PartooGetIdentitySequence(relid, attnum);
		cached_userid = InvalidOid;
		cache_lxid = PartooMyLocalTransactionId();
	}
	if (cached_userid != GetUserId())
	{
		char	   *name = GetUserNameFromId(GetUserId(), false);

		cached_username = (text *) copy_varlena(batch_cxt,
												(struct varlena *) cstring_to_text(name));
		cached_userid = GetUserId();
	}
}

/*
 * Buffer the message in (validated by the caller: partoo_message_prepare,
 * the account) and return its id, taken now from the identity sequence.
 * The values are copied; the caller keeps in.  May flush (and so raise
 * whatever the INSERT raises).
 */
int64
partoo_batch_add(PartooMessageInput *in, bool has_send_at, TimestampTz send_at)
{
	return batch_add(in, has_send_at, send_at, false, 0, 0);
}

static int64
batch_add(PartooMessageInput *in, bool has_send_at, TimestampTz send_at,
		  bool sent, int64 partoo_id, int32 http_status)
{
	BatchRow   *row;
	int64		id;

	batch_start();
	batch_lookups();
	id = nextval_internal(id_sequence, false);

	if (npending == maxpending)
	{
		int			newmax = maxpending == 0 ? 256 : maxpending * 2;

		if (pending == NULL)
			pending = MemoryContextAlloc(batch_cxt, sizeof(BatchRow) * newmax);
		else
			pending = repalloc(pending, sizeof(BatchRow) * newmax);
		maxpending = newmax;
	}
	row = &pending[npending];
	memset(row, 0, sizeof(*row));
	row->id = id;
	row->owner = GetCurrentSubTransactionId();
	row->conversation_id = in->conversation_id;
	row->account = in->account ? cstring_to_text(in->account) : NULL;
	row->content_type = in->content_type;
	row->content = in->content;
	row->url = in->url;
	row->image = in->image;
	row->filename = in->filename;
	row->channel = in->channel;
	row->metadata = in->has_metadata ?
		(struct varlena *) DatumGetPointer(in->metadata) : NULL;
	row->created_by = cached_username;
	row->created_at = in->created_at;
	row->send_at = send_at;
	row->has_send_at = has_send_at;
	row->sent = sent;
	row->partoo_id = partoo_id;
	row->http_status = http_status;
	pending_bytes += copy_row_values(values_cxt, row);
	npending++;
	if (!sent)
		nqueued++;

	if (npending >= PARTOO_BATCH_ROWS || pending_bytes >= PARTOO_BATCH_BYTES)
		partoo_batch_flush();
	return id;
}

/*
 * Buffer the recording of a message partoo_send has just sent (validated
 * and POSTed by the caller): its row is written like a queued one, with
 * state 'sent', Partoo's id and status 'Sending', and, when reconciliation
 * is on, its partoo.reconcile row; the webhook events that were waiting
 * for its Partoo id are applied then.  May flush.
 */
void
partoo_batch_add_sent(PartooMessageInput *in, int64 partoo_id, long http_status)
{
	bool		track;

	track = partoo_reconcile_tracking();
	/* one statement per flush tracks all its sent rows or none */
	if (npending > nqueued && track != pending_track)
		partoo_batch_flush();
	pending_track = track;
	(void) batch_add(in, false, 0, true, partoo_id, (int32) http_status);
}

/* Keep a copy of a row written in a deeper subtransaction than its owner */
static void
keep_row(BatchRow *row, SubTransactionId flushed_in)
{
	BatchRow   *copy = MemoryContextAlloc(kept_cxt, sizeof(BatchRow));

	*copy = *row;
	copy->flushed_in = flushed_in;
	(void) copy_row_values(kept_cxt, copy);
	if (nkept == maxkept)
	{
		int			newmax = maxkept == 0 ? 64 : maxkept * 2;

		if (kept == NULL)
			kept = MemoryContextAlloc(batch_cxt, sizeof(BatchRow *) * newmax);
		else
			kept = repalloc(kept, sizeof(BatchRow *) * newmax);
		maxkept = newmax;
	}
	kept[nkept++] = copy;
}

static int
row_id_cmp(const void *a, const void *b)
{
	int64		x = ((const BatchRow *) a)->id;
	int64		y = ((const BatchRow *) b)->id;

	return (x > y) - (x < y);
}

/*
 * The columns of the INSERT, in the order of BatchRow.  For each, the
 * statement takes either an array ($n, unnest'ed with the others in ROWS
 * FROM), one value for every row ($n), or nothing (NULL): each array costs
 * a tuplestore per flush, and most columns are the same or NULL in every
 * row of a batch (the content type, the user, the URL...).
 */
typedef struct BatchColumn
{
	const char *name;
	Oid			type;
	Oid			arraytype;
	bool		byval;			/* int8 and timestamptz; else varlena */
} BatchColumn;

static const BatchColumn batch_columns[BATCH_NARGS] = {
	{"id", INT8OID, INT8ARRAYOID, true},
	{"account", TEXTOID, TEXTARRAYOID, false},
	{"conversation_id", INT8OID, INT8ARRAYOID, true},
	{"content_type", TEXTOID, TEXTARRAYOID, false},
	{"content", TEXTOID, TEXTARRAYOID, false},
	{"url", TEXTOID, TEXTARRAYOID, false},
	{"image", BYTEAOID, BYTEAARRAYOID, false},
	{"filename", TEXTOID, TEXTARRAYOID, false},
	{"channel", TEXTOID, TEXTARRAYOID, false},
	{"metadata", JSONBOID, JSONBARRAYOID, false},
	{"created_by", TEXTOID, TEXTARRAYOID, false},
	{"created_at", TIMESTAMPTZOID, TIMESTAMPTZARRAYOID, true},
	{"send_at", TIMESTAMPTZOID, TIMESTAMPTZARRAYOID, true},
	{"partoo_id", INT8OID, INT8ARRAYOID, true},
	{"last_http_status", INT4OID, INT4ARRAYOID, true},
};

/* How a column is passed: see BatchColumn */
#define COL_ARRAY	'a'
#define COL_CONST	'c'
#define COL_NULL	'n'

/*
 * What a flush writes, the last letter of a shape: queued rows and their
 * outbox rows; sent rows; sent rows and their reconcile rows.
 */
#define KIND_QUEUED	'q'
#define KIND_SENT	's'
#define KIND_TRACKED 't'

/*
 * Plans by shape (one COL_* letter per column, then the KIND_*); the
 * all-array one of each kind is the fallback
 */
#define BATCH_MAX_PLANS 32
typedef struct BatchPlan
{
	char		shape[BATCH_NARGS + 2];
	SPIPlanPtr	plan;
} BatchPlan;

static BatchPlan batch_plans[BATCH_MAX_PLANS];
static int	batch_nplans = 0;

/* A text Datum of a static name, made once per flush and name */
static Datum
name_datum(const char *name, const char **last_name, Datum *last)
{
	if (name != *last_name)
	{
		*last = CStringGetTextDatum(name);
		*last_name = name;
	}
	return *last;
}

/*
 * The value of column c of r (varlenas: pointers into the buffer, or to
 * text made once per flush for the static names).
 */
static Datum
row_value(BatchRow *r, int c, bool *isnull, const char **last_ct, Datum *ct,
		  const char **last_ch, Datum *ch)
{
	void	   *p = NULL;

	*isnull = false;
	switch (c)
	{
		case 0:
			return Int64GetDatum(r->id);
		case 1:
			p = r->account;
			break;
		case 2:
			return Int64GetDatum(r->conversation_id);
		case 3:
			return name_datum(r->content_type, last_ct, ct);
		case 4:
			p = r->content;
			break;
		case 5:
			p = r->url;
			break;
		case 6:
			p = r->image;
			break;
		case 7:
			p = r->filename;
			break;
		case 8:
			if (r->channel == NULL)
				break;
			return name_datum(r->channel, last_ch, ch);
		case 9:
			p = r->metadata;
			break;
		case 10:
			p = r->created_by;
			break;
		case 11:
			return TimestampTzGetDatum(r->created_at);
		case 12:
			if (!r->has_send_at)
				break;
			return TimestampTzGetDatum(r->send_at);
		case 13:
			if (!r->sent)
				break;
			return Int64GetDatum(r->partoo_id);
		case 14:
			if (!r->sent)
				break;
			return Int32GetDatum(r->http_status);
	}
	*isnull = (p == NULL);
	return PointerGetDatum(p);
}

static bool
same_value(Datum a, Datum b, bool byval)
{
	if (byval || a == b)
		return a == b;
	return VARSIZE(DatumGetPointer(a)) == VARSIZE(DatumGetPointer(b)) &&
		memcmp(DatumGetPointer(a), DatumGetPointer(b),
			   VARSIZE(DatumGetPointer(a))) == 0;
}

static bool
batch_plan_known(const char *shape)
{
	int			i;

	for (i = 0; i < batch_nplans; i++)
	{
		if (strcmp(batch_plans[i].shape, shape) == 0)
			return true;
	}
	return false;
}

/* The plan of one shape, prepared and kept on first use */
static SPIPlanPtr
batch_plan(const char *shape)
{
	StringInfoData sql;
	Oid			argtypes[BATCH_NARGS + 1];
	SPIPlanPtr	plan = NULL;
	char		kind = shape[BATCH_NARGS];
	int			ncols = kind == KIND_QUEUED ? BATCH_QUEUED_NARGS : BATCH_NARGS;
	int			nargs = ncols;
	int			c;
	int			i;
	bool		first;

	for (i = 0; i < batch_nplans; i++)
	{
		if (strcmp(batch_plans[i].shape, shape) == 0)
			return batch_plans[i].plan;
	}
	if (batch_nplans >= BATCH_MAX_PLANS)
		elog(ERROR, "partoo: too many enqueue plans");

	initStringInfo(&sql);
	if (kind != KIND_SENT)
		appendStringInfoString(&sql, "WITH m AS (");
	appendStringInfoString(&sql, " INSERT INTO partoo.messages (");
	for (c = 0; c < ncols; c++)
		appendStringInfo(&sql, "%s, ", batch_columns[c].name);
	if (kind == KIND_QUEUED)
		appendStringInfoString(&sql, "state) OVERRIDING SYSTEM VALUE SELECT ");
	else
		appendStringInfoString(&sql, "state, partoo_status, status_at, attempts,"
							   " sent_at) OVERRIDING SYSTEM VALUE SELECT ");
	for (c = 0; c < ncols; c++)
	{
		const char *typname = format_type_be(batch_columns[c].type);

		if (shape[c] == COL_ARRAY)
			appendStringInfo(&sql, "u.%s, ", batch_columns[c].name);
		else if (shape[c] == COL_CONST)
			appendStringInfo(&sql, "$%d::%s, ", c + 1, typname);
		else
			appendStringInfo(&sql, "NULL::%s, ", typname);
		argtypes[c] = shape[c] == COL_ARRAY ? batch_columns[c].arraytype :
			batch_columns[c].type;
	}
	if (kind == KIND_QUEUED)
		appendStringInfoString(&sql, "'queued' FROM ROWS FROM (");
	else
		appendStringInfoString(&sql, "'sent', 'Sending', now(), 1, now() FROM ROWS FROM (");
	first = true;
	for (c = 0; c < ncols; c++)
	{
		if (shape[c] != COL_ARRAY)
			continue;
		appendStringInfo(&sql, "%spg_catalog.unnest($%d)", first ? "" : ", ", c + 1);
		first = false;
	}
	appendStringInfoString(&sql, ") AS u(");
	first = true;
	for (c = 0; c < ncols; c++)
	{
		if (shape[c] != COL_ARRAY)
			continue;
		appendStringInfo(&sql, "%s%s", first ? "" : ", ", batch_columns[c].name);
		first = false;
	}
	if (kind == KIND_QUEUED)
		appendStringInfoString(&sql,
							   ") RETURNING id, account, send_at)"
							   " INSERT INTO partoo.outbox (message_id, account, run_at)"
							   " SELECT id, coalesce(account, ''), coalesce(send_at, now()) FROM m");
	else if (kind == KIND_SENT)
		appendStringInfoString(&sql, ")");
	else
	{
		/* what partoo_reconcile_track inserts for a new id */
		appendStringInfo(&sql,
						 ") RETURNING id) " PARTOO_RECONCILE_INSERT("m", "$%d"),
						 BATCH_NARGS + 1);
		argtypes[BATCH_NARGS] = INT8OID;
		nargs = BATCH_NARGS + 1;
	}

	(void) partoo_plan_once(&plan, sql.data, nargs, argtypes,
							CURSOR_OPT_GENERIC_PLAN);
	pfree(sql.data);
	strlcpy(batch_plans[batch_nplans].shape, shape, BATCH_NARGS + 2);
	batch_plans[batch_nplans].plan = plan;
	batch_nplans++;
	return plan;
}

/*
 * Write rows[0..n), all of one kind: one statement inserting the messages
 * (with their ids: OVERRIDING SYSTEM VALUE) and their outbox rows (queued)
 * or their reconcile rows (sent, when tracked), in call order, as the
 * extension's owner; then, for sent rows, apply the webhook events that
 * were waiting for their Partoo ids.  Memory in cxt.
 */
static void
write_rows(BatchRow *rows, int n, char kind, MemoryContext cxt)
{
	MemoryContext old;
	Datum	   *elems;
	bool	   *elemnulls;
	Datum		args[BATCH_NARGS + 1];
	char		argnulls[BATCH_NARGS + 2];
	char		shape[BATCH_NARGS + 2];
	const char *last_ct = NULL;
	const char *last_ch = NULL;
	Datum		ct_datum = (Datum) 0;
	Datum		ch_datum = (Datum) 0;
	int			ncols = kind == KIND_QUEUED ? BATCH_QUEUED_NARGS : BATCH_NARGS;
	SPIPlanPtr	plan;
	PartooStoreContext sc;
	int64	   *pids = NULL;
	int			i;
	int			c;
	int			rc;

	old = MemoryContextSwitchTo(cxt);
	elems = palloc(sizeof(Datum) * n);
	elemnulls = palloc(sizeof(bool) * n);
	memset(argnulls, ' ', BATCH_NARGS + 1);
	argnulls[BATCH_NARGS + 1] = '\0';
	memset(shape, COL_NULL, BATCH_NARGS);
	for (c = 0; c < ncols; c++)
	{
		bool		any_null = false;
		bool		all_null = true;
		bool		all_same = true;

		for (i = 0; i < n; i++)
		{
			elems[i] = row_value(&rows[i], c, &elemnulls[i], &last_ct,
								 &ct_datum, &last_ch, &ch_datum);
			any_null |= elemnulls[i];
			all_null &= elemnulls[i];
			if (i > 0 && all_same &&
				(elemnulls[i] != elemnulls[0] ||
				 (!elemnulls[i] &&
				  !same_value(elems[i], elems[0], batch_columns[c].byval))))
				all_same = false;
		}
		/* the ids always come as an array: ROWS FROM needs one */
		if (c == 0 || (!all_same && !all_null))
		{
			shape[c] = COL_ARRAY;
			args[c] = partoo_make_array(elems, any_null ? elemnulls : NULL, n,
										batch_columns[c].type);
		}
		else if (all_null)
		{
			shape[c] = COL_NULL;
			args[c] = (Datum) 0;
			argnulls[c] = 'n';
		}
		else
		{
			shape[c] = COL_CONST;
			args[c] = elems[0];
		}
	}
	shape[BATCH_NARGS] = kind;
	shape[BATCH_NARGS + 1] = '\0';

	/*
	 * A shape never seen when the plans are all taken: every column as an
	 * array, the shape kept in the last slots.
	 */
	if (batch_nplans >= BATCH_MAX_PLANS - 3 && !batch_plan_known(shape))
	{
		for (c = 0; c < ncols; c++)
		{
			if (shape[c] == COL_ARRAY)
				continue;
			for (i = 0; i < n; i++)
				elems[i] = row_value(&rows[i], c, &elemnulls[i], &last_ct,
									 &ct_datum, &last_ch, &ch_datum);
			args[c] = partoo_make_array(elems, elemnulls, n,
										batch_columns[c].type);
			argnulls[c] = ' ';
			shape[c] = COL_ARRAY;
		}
	}
	if (kind == KIND_TRACKED)
		args[BATCH_NARGS] = Int64GetDatum((int64) partoo_reconcile_after_ms);
	if (kind != KIND_QUEUED)
	{
		pids = palloc(sizeof(int64) * n);
		for (i = 0; i < n; i++)
			pids[i] = rows[i].partoo_id;
	}
	MemoryContextSwitchTo(old);

	partoo_store_begin(&sc);
	plan = batch_plan(shape);
	rc = SPI_execute_plan(plan, args, argnulls, false, 0);
	if (rc != SPI_OK_INSERT || SPI_processed != (uint64) n)
		elog(ERROR, "could not %s messages: %s",
			 kind == KIND_QUEUED ? "queue" : "record sent",
			 SPI_result_code_string(rc));
	partoo_store_end(&sc);

	/* webhook events that beat the responses to us wait for these ids */
	if (pids != NULL)
		partoo_webhook_apply_recorded(pids, n);
}

/*
 * Write every waiting row: queued ones (partoo_enqueue) and sent ones
 * (partoo_send) in one statement each.  Raises what the INSERTs raise;
 * the rows then stay buffered (the error aborts the (sub)transaction,
 * whose callbacks drop what it owned).
 */
void
partoo_batch_flush(void)
{
	MemoryContext flush_cxt;
	SubTransactionId cur;
	volatile bool pushed_snapshot = false;
	int			n = npending;
	int			i;

	if (n == 0 || flushing)
		return;

	/* in batch_cxt: freed with the transaction if an INSERT fails */
	flush_cxt = AllocSetContextCreate(batch_cxt,
									  "partoo enqueue flush",
									  ALLOCSET_DEFAULT_SIZES);

	/*
	 * SPI takes a snapshot for the INSERT but wants an outer one: there is
	 * none at some flush points (a portal's ExecutorEnd, a utility
	 * statement, pre-commit).
	 */
	if (!ActiveSnapshotSet())
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		pushed_snapshot = true;
	}
	flushing = true;
	PG_TRY();
	{
		char		sent_kind = pending_track ? KIND_TRACKED : KIND_SENT;

		if (nqueued == n)
			write_rows(pending, n, KIND_QUEUED, flush_cxt);
		else if (nqueued == 0)
			write_rows(pending, n, sent_kind, flush_cxt);
		else
		{
			/* both kinds: each in call order */
			BatchRow   *q = MemoryContextAlloc(flush_cxt, sizeof(BatchRow) * n);
			BatchRow   *snt = MemoryContextAlloc(flush_cxt, sizeof(BatchRow) * n);
			int			nq = 0;
			int			ns = 0;

			for (i = 0; i < n; i++)
			{
				if (pending[i].sent)
					snt[ns++] = pending[i];
				else
					q[nq++] = pending[i];
			}
			write_rows(q, nq, KIND_QUEUED, flush_cxt);
			write_rows(snt, ns, sent_kind, flush_cxt);
		}
	}
	PG_FINALLY();
	{
		flushing = false;
	}
	PG_END_TRY();
	if (pushed_snapshot)
		PopActiveSnapshot();
	MemoryContextDelete(flush_cxt);

	/*
	 * The rows of the subtransactions above this one must outlive an abort
	 * of this one.  (pending is sorted by owner: they come first.)
	 */
	cur = GetCurrentSubTransactionId();
	for (i = 0; i < n && pending[i].owner != cur; i++)
		keep_row(&pending[i], cur);
	npending = 0;
	nqueued = 0;
	pending_bytes = 0;
	MemoryContextReset(values_cxt);
}

/*
 * Flush before queryDesc starts, and let it see the rows: its snapshot was
 * taken before they were written.  When nothing else was written between
 * that snapshot and the INSERT (the INSERT's command id is the snapshot's
 * own), the query gets a copy of its snapshot that also sees the INSERT:
 * what it would have seen had the calls written their rows at once.
 * Otherwise (a STABLE function's query, which must not see its caller's
 * writes) it keeps its snapshot.
 */
static void
flush_for_query(QueryDesc *queryDesc)
{
	CommandId	insert_cid;
	Snapshot	snap = queryDesc->snapshot;

	partoo_batch_flush();
	/* the INSERT used the command id before this one */
	CommandCounterIncrement();
	insert_cid = GetCurrentCommandId(false) - 1;
	if (snap == InvalidSnapshot || !IsMVCCSnapshot(snap) ||
		snap->curcid != insert_cid)
		return;
	PushCopiedSnapshot(snap);
	UpdateActiveSnapshotCommandId();
	UnregisterSnapshot(queryDesc->snapshot);
	queryDesc->snapshot = RegisterSnapshot(GetActiveSnapshot());
	PopActiveSnapshot();
}

/*
 * Whether a query may read a table: a relation in its range table (views,
 * subqueries and inlined SQL functions included).  Anything else it calls
 * that reads a table runs a query of its own, which comes here too.
 */
static bool
query_reads_tables(QueryDesc *queryDesc)
{
	ListCell   *lc;

	if (queryDesc->plannedstmt == NULL)
		return true;
	foreach(lc, queryDesc->plannedstmt->rtable)
	{
		RangeTblEntry *rte = lfirst_node(RangeTblEntry, lc);

		if (rte->rtekind == RTE_RELATION)
			return true;
	}
	return false;
}

/*
 * Whether a flush point inside a statement must write the buffer.  Queued
 * rows (partoo_enqueue) are written at every flush point, as documented.
 * Sent rows alone (partoo_send) wait for the end of the top-level
 * statement, or for the first query that may read a table, or any other
 * flush point: so a PL/pgSQL loop of "PERFORM partoo_send(...)" writes
 * them 4,096 at a time, and no query can miss a row (every table read
 * goes through a query's ExecutorStart).
 */
static bool
must_flush_in_query(QueryDesc *queryDesc)
{
	if (!batch_flush_possible())
		return false;
	if (nqueued > 0 || exec_depth == 0)
		return true;
	return queryDesc != NULL && query_reads_tables(queryDesc);
}

static void
batch_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (must_flush_in_query(queryDesc))
		flush_for_query(queryDesc);
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
batch_ExecutorEnd(QueryDesc *queryDesc)
{
	/* NB: not while a transaction aborts (a cursor closed by the abort) */
	if (must_flush_in_query(NULL))
		partoo_batch_flush();
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
}

static void
batch_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	if (batch_flush_possible())
		partoo_batch_flush();
	exec_depth++;
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		exec_depth--;
	}
	PG_END_TRY();
	if (batch_flush_possible())
		partoo_batch_flush();
}

static void
batch_ExecutorRun(PARTOO_EXECUTOR_RUN_PARAMS)
{
	exec_depth++;
	PG_TRY();
	{
		if (prev_ExecutorRun)
			PARTOO_EXECUTOR_RUN_CALL(prev_ExecutorRun);
		else
			PARTOO_EXECUTOR_RUN_CALL(standard_ExecutorRun);
	}
	PG_FINALLY();
	{
		exec_depth--;
	}
	PG_END_TRY();
}

static void
batch_ExecutorFinish(QueryDesc *queryDesc)
{
	exec_depth++;
	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		exec_depth--;
	}
	PG_END_TRY();
}

/* pending rows of partoo_enqueue, after pending changed under us */
static void
count_queued(void)
{
	int			i;

	nqueued = 0;
	for (i = 0; i < npending; i++)
		if (!pending[i].sent)
			nqueued++;
}

static void
batch_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			if (batch_flush_possible())
				partoo_batch_flush();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			if (npending > 0)
				elog(WARNING, "partoo: %d queued messages were not written", npending);
			batch_reset();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
			batch_reset();
			break;
		default:
			break;
	}
}

static void
batch_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	int			i;
	int			j;

	if (batch_cxt == NULL)
		return;
	switch (event)
	{
		case SUBXACT_EVENT_COMMIT_SUB:
			/* its rows are its parent's now; they come last */
			for (i = npending - 1; i >= 0 && pending[i].owner == mySubid; i--)
				pending[i].owner = parentSubid;
			for (i = j = 0; i < nkept; i++)
			{
				BatchRow   *row = kept[i];

				if (row->flushed_in == mySubid)
					row->flushed_in = parentSubid;
				if (row->flushed_in == row->owner)
				{
					/* written in its owner's own subtransaction: safe now */
					free_row_values(row);
					pfree(row);
					continue;
				}
				kept[j++] = row;
			}
			nkept = j;
			break;
		case SUBXACT_EVENT_ABORT_SUB:
			flushing = false;
			/* its calls are undone */
			while (npending > 0 && pending[npending - 1].owner >= mySubid)
				npending--;
			/* its INSERTs of its ancestors' rows too: they wait again */
			for (i = j = 0; i < nkept; i++)
			{
				BatchRow   *row = kept[i];

				if (row->flushed_in != mySubid)
				{
					kept[j++] = row;
					continue;
				}
				Assert(row->owner < mySubid);
				if (npending == maxpending)
				{
					maxpending = Max(maxpending * 2, 256);
					pending = pending == NULL ?
						MemoryContextAlloc(batch_cxt, sizeof(BatchRow) * maxpending) :
						repalloc(pending, sizeof(BatchRow) * maxpending);
				}
				pending[npending] = *row;
				pending[npending].flushed_in = InvalidSubTransactionId;
				pending_bytes += copy_row_values(values_cxt, &pending[npending]);
				npending++;
				free_row_values(row);
				pfree(row);
			}
			nkept = j;

			/*
			 * NB: rows are put back only when every waiting row of its
			 * ancestors was written in it (so, kept): the buffer then holds
			 * only those, which in id order are in owner order again.
			 */
			if (npending > 1)
				qsort(pending, npending, sizeof(BatchRow), row_id_cmp);
			if (npending == 0)
			{
				pending_bytes = 0;
				MemoryContextReset(values_cxt);
			}
			count_queued();
			break;
		default:
			break;
	}
}

/*
 * Install the flush points.  Called from _PG_init: with preloading, in
 * the postmaster; loaded on first call, in the backend, in the middle of
 * a query (whose ExecutorEnd is then the first flush point).
 */
void
partoo_batch_install_hooks(void)
{
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = batch_ExecutorStart;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = batch_ExecutorEnd;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = batch_ProcessUtility;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = batch_ExecutorRun;
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = batch_ExecutorFinish;
}
