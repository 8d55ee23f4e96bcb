/*-------------------------------------------------------------------------
 *
 * webhook.c
 *		The SQL surface of webhook ingestion: partoo_ingest_webhook(),
 *		partoo_ingest_webhooks(), the 0.1 trigger
 *		partoo.webhook_apply_pending(), and the partoo.webhook_* settings.
 *
 * A body is parsed by the first format of the table (webhook_format.h,
 * webhook_apply.c) that recognises it, and authenticated by that format
 * (its signature or API key), here, before anything is read or written,
 * so that a malformed or unauthenticated body changes nothing: for a
 * batch, every element is parsed and authenticated before the first is
 * applied.  Applying the events is webhook_apply.c's business.  The
 * settings here are those of every format; each format defines its own
 * (its key) through the table.
 *
 * Strings copied out of a body must be valid in the database encoding
 * (22021 otherwise); the raw body is stored as received, which is also
 * what its signature covers.
 *
 * src/server/webhook.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "core/webhook.h"
#include "server/db.h"
#include "server/webhook.h"
#include "server/webhook_format.h"

PG_FUNCTION_INFO_V1(partoo_ingest_webhook);
PG_FUNCTION_INFO_V1(partoo_ingest_webhooks);
PG_FUNCTION_INFO_V1(partoo_webhook_apply_pending);

bool		partoo_webhook_require_signature = true;
int			partoo_webhook_max_bytes = 1024 * 1024;

/* Context for errors while a batch is parsed and authenticated */
typedef struct BatchErrorContext
{
	int			index;
	int			count;
} BatchErrorContext;

/* ----------------------------------------------------------------
 * Settings
 * ----------------------------------------------------------------
 */

/*
 * Define the partoo.webhook_* settings; called from _PG_init() before
 * MarkGUCPrefixReserved("partoo").
 */
void
partoo_webhook_define_gucs(void)
{
	int			i;

	DefineCustomBoolVariable("partoo.webhook_require_signature",
							 "Refuse webhook payloads that come without a signature or API key.",
							 "When off, a payload without one is accepted; one that comes with a wrong one is still refused.",
							 &partoo_webhook_require_signature,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.webhook_max_bytes",
							"Largest webhook payload accepted.",
							NULL,
							&partoo_webhook_max_bytes,
							1024 * 1024, 256, 64 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	/* those of the formats: their keys */
	for (i = 0; i < partoo_webhook_nformats; i++)
		if (partoo_webhook_formats[i]->define_gucs != NULL)
			partoo_webhook_formats[i]->define_gucs();
}

/* ----------------------------------------------------------------
 * Parsing and authentication (no SQL, no writes)
 * ----------------------------------------------------------------
 */

static void
batch_error_callback(void *arg)
{
	BatchErrorContext *c = (BatchErrorContext *) arg;

	if (c->count > 1 || c->index > 0)
		errcontext("webhook payload %d of %d", c->index + 1, c->count);
}

/*
 * A copy of s valid in the database encoding (22021 otherwise), or NULL.
 * Consecutive events of a batch mostly carry the same type, status,
 * channel, content type and sender type: when s equals prev (the previous
 * event's copy), prev itself is returned, which saves the copy, the
 * check, and later the text datum (see insert_events).
 */
static char *
copy_field(const char *s, char *prev)
{
	size_t		len;

	if (s == NULL)
		return NULL;
	if (prev != NULL && strcmp(s, prev) == 0)
		return prev;
	len = strlen(s);
	(void) pg_verifymbstr(s, len, false);
	return pnstrdup(s, len);
}

PARTOO_NORETURN static void raise_parse_error(const PartooWebhookError *err);
PARTOO_NORETURN static void raise_no_format(void);

/* Raise the error the protocol core found in a body */
static void
raise_parse_error(const PartooWebhookError *err)
{
	int			code;

	switch (err->kind)
	{
		case PARTOO_WHE_SYNTAX:
			code = ERRCODE_INVALID_TEXT_REPRESENTATION;
			break;
		case PARTOO_WHE_TOO_LARGE:
			code = ERRCODE_PROGRAM_LIMIT_EXCEEDED;
			break;
		case PARTOO_WHE_NO_MEMORY:
			code = ERRCODE_OUT_OF_MEMORY;
			break;
		default:
			code = ERRCODE_INVALID_PARAMETER_VALUE;
			break;
	}
	ereport(ERROR,
			(errcode(code),
			 errmsg("%s", err->message),
			 errdetail("%s", err->detail),
			 err->kind == PARTOO_WHE_TOO_LARGE ?
			 errhint("A superuser can raise partoo.webhook_max_bytes.") : 0));
}

/* Raise the error for a JSON object no format recognises: their shapes */
static void
raise_no_format(void)
{
	StringInfoData detail;
	int			i;

	initStringInfo(&detail);
	for (i = 0; i < partoo_webhook_nformats; i++)
		if (partoo_webhook_formats[i]->shape != NULL)	/* NULL: never a body */
			appendStringInfo(&detail, "%s%s", detail.len > 0 ? "; " : "",
							 partoo_webhook_formats[i]->shape);
	appendStringInfoChar(&detail, '.');
	detail.data[0] = pg_ascii_toupper((unsigned char) detail.data[0]);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("webhook payload is in no known format"),
			 errdetail("%s", detail.data)));
}

/*
 * Parse a body with the first format of the table that recognises it:
 * returns the core's malloc'd event (the caller frees it) and sets
 * *format, or raises the error for the body.  NB: nothing between
 * opening the JSON and freeing it can throw.
 */
static PartooWebhookEvent *
parse_body(text *body, const PartooWebhookFormat **format)
{
	const char *data = VARDATA_ANY(body);
	size_t		len = VARSIZE_ANY_EXHDR(body);
	PartooWebhookError err;
	struct cJSON *root;
	const PartooWebhookFormat *f = NULL;
	PartooWebhookEvent *pe = NULL;
	int			i;

	root = partoo_webhook_json_open(data, len, (size_t) partoo_webhook_max_bytes, &err);
	if (root == NULL)
		raise_parse_error(&err);
	for (i = 0; i < partoo_webhook_nformats && f == NULL; i++)
		if (partoo_webhook_formats[i]->recognise(root))
			f = partoo_webhook_formats[i];
	if (f != NULL)
		pe = f->parse(root, data, len, &err);
	partoo_webhook_json_free(root);
	if (f == NULL)
		raise_no_format();
	if (pe == NULL)
		raise_parse_error(&err);
	*format = f;
	return pe;
}

/*
 * Copy what the parser found into *ev; prev is the previous event of the
 * batch, or NULL.  Fields a format does not have are NULL or zero in pe,
 * and stay so.  Can throw (22021).
 */
static void
copy_event(const PartooWebhookEvent *pe, PartooIngestEvent *ev,
		   const PartooIngestEvent *prev)
{
	ev->concerns_status = pe->concerns_status;
	ev->has_event_at = pe->has_event_at;
	if (pe->has_event_at)
		ev->event_at = partoo_unix_us_to_timestamptz(pe->event_at);
	ev->partoo_id = pe->partoo_id;
	ev->status = pe->status;
	ev->is_deleted = pe->is_deleted;
	ev->part = pe->part;
	ev->total_parts = pe->total_parts;
	ev->status_order = pe->status_order;
	ev->dstatus = pe->dispatch_status;

	ev->event_type = copy_field(pe->event_type, prev ? prev->event_type : NULL);
	ev->status_raw = copy_field(pe->status_raw, prev ? prev->status_raw : NULL);
	ev->channel = copy_field(pe->channel, prev ? prev->channel : NULL);
	ev->content_type = copy_field(pe->content_type, prev ? prev->content_type : NULL);
	ev->sender_type = copy_field(pe->sender_type, prev ? prev->sender_type : NULL);
	ev->dedup_key = copy_field(pe->dedup_key, NULL);
	if (pe->order_key[0] != '\0')
		ev->order_key = pstrdup(pe->order_key);
	ev->dispatch_id = copy_field(pe->dispatch_id, NULL);
	ev->recipient = copy_field(pe->recipient, NULL);
	ev->dispatch_metadata = copy_field(pe->dispatch_metadata, NULL);
}

/*
 * Parse one body into *ev (zeroed by the caller), or raise the error for
 * it.  prev is the previous event of the batch, or NULL.  The core's
 * malloc'd event is freed whatever happens.
 */
static void
parse_event(Datum payload, PartooIngestEvent *ev, const PartooIngestEvent *prev)
{
	const PartooWebhookFormat *format;
	PartooWebhookEvent *volatile pe;

	pe = parse_body(DatumGetTextPP(payload), &format);
	ev->format = format;
	ev->payload = payload;
	PG_TRY();
	{
		copy_event(pe, ev, prev);
	}
	PG_FINALLY();
	{
		partoo_webhook_event_free(pe);
	}
	PG_END_TRY();
}

/*
 * Authenticate one event: its format checks signature (NULL if none came)
 * against the body.  Raises 28000 for a missing or wrong one, 55000 when
 * the setting needed to check it is empty.
 */
static void
authenticate(const PartooIngestEvent *ev, text *signature)
{
	ev->format->authenticate(ev, signature, partoo_webhook_require_signature);
}

static text *
arg_signature(FunctionCallInfo fcinfo, int i)
{
	return (PG_NARGS() > i && !PG_ARGISNULL(i)) ? PG_GETARG_TEXT_PP(i) : NULL;
}

/*
 * partoo_ingest_webhook(payload text, signature text DEFAULT NULL)
 * RETURNS text
 *
 * One webhook body, exactly as received; returns applied, duplicate,
 * stale, pending or ignored.  Errors change nothing.
 */
Datum
partoo_ingest_webhook(PG_FUNCTION_ARGS)
{
	PartooIngestEvent *ev;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("webhook payload must not be null")));
	ev = palloc0(sizeof(PartooIngestEvent));
	parse_event(PG_GETARG_DATUM(0), ev, NULL);
	authenticate(ev, arg_signature(fcinfo, 1));
	partoo_webhook_ingest(&ev, 1, partoo_make_array(&ev->payload, NULL, 1, TEXTOID));
	PG_RETURN_TEXT_P(cstring_to_text(ev->outcome));
}

/*
 * partoo_ingest_webhooks(payloads text[], signatures text[] DEFAULT NULL)
 * RETURNS SETOF text
 *
 * Many bodies in one call, with the same rules, one outcome per payload
 * in order.  A malformed or unauthenticated element fails the whole call,
 * which then changes nothing (the error context names the element).
 */
Datum
partoo_ingest_webhooks(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ArrayType  *payloads;
	Datum	   *pvals;
	bool	   *pnulls;
	int			n;
	Datum	   *svals = NULL;
	bool	   *snulls = NULL;
	int			ns = 0;
	PartooIngestEvent **evs;
	PartooIngestEvent *block;
	TupleDesc	tupdesc;
	Tuplestorestate *tupstore;
	MemoryContext oldcxt;
	MemoryContext callcxt;
	MemoryContext elemcxt;
	ErrorContextCallback errcb;
	BatchErrorContext bctx;
	int			i;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("webhook payloads must not be null")));

	payloads = PG_GETARG_ARRAYTYPE_P(0);
	deconstruct_array(payloads, TEXTOID, -1, false, TYPALIGN_INT, &pvals, &pnulls, &n);
	if (PG_NARGS() > 1 && !PG_ARGISNULL(1))
	{
		deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
						  &svals, &snulls, &ns);
		if (ns != n)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("signatures must have as many elements as payloads"),
					 errdetail("Got %d payloads and %d signatures.", n, ns),
					 errhint("Pass NULL for a payload that comes without a signature.")));
	}

	/*
	 * Everything the call makes (the events, their strings, the
	 * statements' arrays) lives in a context of its own, deleted before it
	 * returns: a call of 100,000 payloads must not leave them in the
	 * caller's context for the rest of its query.  Signatures are checked
	 * in a context reset for each payload.
	 */
	callcxt = AllocSetContextCreate(CurrentMemoryContext, "partoo_ingest_webhooks",
									ALLOCSET_DEFAULT_SIZES);
	elemcxt = AllocSetContextCreate(callcxt, "partoo_ingest_webhooks payload",
									ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(callcxt);

	/* parse and authenticate everything before touching anything */
	evs = palloc(sizeof(PartooIngestEvent *) * Max(n, 1));
	block = palloc0(sizeof(PartooIngestEvent) * Max(n, 1));
	bctx.count = n;
	errcb.callback = batch_error_callback;
	errcb.arg = &bctx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	for (i = 0; i < n; i++)
	{
		/* a batch of many signed payloads takes seconds: cancel works */
		CHECK_FOR_INTERRUPTS();
		bctx.index = i;
		if (pnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("webhook payload must not be null")));
		evs[i] = &block[i];
		parse_event(pvals[i], evs[i], i > 0 ? evs[i - 1] : NULL);
		MemoryContextSwitchTo(elemcxt);
		authenticate(evs[i], (svals != NULL && !snulls[i]) ?
					 DatumGetTextPP(svals[i]) : NULL);
		MemoryContextSwitchTo(callcxt);
		MemoryContextReset(elemcxt);
	}
	error_context_stack = errcb.previous;

	if (n > 0)
		partoo_webhook_ingest(evs, n, PointerGetDatum(payloads));

	MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	tupdesc = CreateTemplateTupleDesc(1);
	TupleDescInitEntry(tupdesc, (AttrNumber) 1, "partoo_ingest_webhooks", TEXTOID, -1, 0);
	tupstore = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tupstore;
	rsinfo->setDesc = tupdesc;
	MemoryContextSwitchTo(callcxt);

	for (i = 0; i < n; i++)
	{
		Datum		value = CStringGetTextDatum(evs[i]->outcome);
		bool		isnull = false;

		tuplestore_putvalues(tupstore, tupdesc, &value, &isnull);
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(callcxt);
	return (Datum) 0;
}

/*
 * partoo.webhook_apply_pending(), a 0.1 function kept for schemas not
 * updated yet (0.2 dropped it: the code that records an id applies the
 * events itself, and running both is harmless, the second finds nothing
 * pending).  AFTER INSERT and AFTER UPDATE statement
 * triggers on partoo.messages, with the new rows as transition table
 * "new_rows".  Applies the pending events of the Partoo ids the statement
 * recorded, in its transaction.  Costs one scan of the transition table
 * when no row has a partoo_id; otherwise the bucket locks and one index
 * probe when no event is pending.
 */
Datum
partoo_webhook_apply_pending(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Tuplestorestate *ts;
	TupleDesc	tupdesc;
	TupleTableSlot *slot;
	AttrNumber	attnum;
	int64	   *pids;
	int			npids = 0;
	int			maxpids = 64;
	int			ptr;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		  TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)) ||
		trigdata->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("partoo.webhook_apply_pending() must be an AFTER INSERT or UPDATE statement trigger with a NEW TABLE")));

	/* our own writes of partoo.messages: nothing to apply */
	if (partoo_webhook_applying())
		return PointerGetDatum(NULL);

	tupdesc = RelationGetDescr(trigdata->tg_relation);
	attnum = SPI_fnumber(tupdesc, "partoo_id");
	if (attnum <= 0)
		elog(ERROR, "partoo.messages has no column partoo_id");

	ts = trigdata->tg_newtable;
	pids = palloc(sizeof(int64) * maxpids);
	slot = MakeSingleTupleTableSlot(tupdesc, &TTSOpsMinimalTuple);
	ptr = tuplestore_alloc_read_pointer(ts, EXEC_FLAG_REWIND);
	tuplestore_select_read_pointer(ts, ptr);
	tuplestore_rescan(ts);
	while (tuplestore_gettupleslot(ts, true, false, slot))
	{
		bool		isnull;
		Datum		v = slot_getattr(slot, attnum, &isnull);

		if (isnull)
			continue;
		if (npids == maxpids)
		{
			maxpids *= 2;
			pids = repalloc(pids, sizeof(int64) * maxpids);
		}
		pids[npids++] = DatumGetInt64(v);
	}
	tuplestore_select_read_pointer(ts, 0);
	ExecDropSingleTupleTableSlot(slot);
	if (npids == 0)
		return PointerGetDatum(NULL);

	partoo_webhook_apply_recorded(pids, npids);
	return PointerGetDatum(NULL);
}
