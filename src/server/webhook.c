/*-------------------------------------------------------------------------
 *
 * webhook.c
 *		The SQL surface of webhook ingestion: partoo_ingest_webhook(),
 *		partoo_ingest_webhooks(), the 0.1 trigger
 *		partoo.webhook_apply_pending(), and the partoo.webhook_* settings.
 *
 * A body is parsed by the protocol core (webhook_parse.c) and
 * authenticated (signature.c) here, before anything is read or written,
 * so that a malformed or unauthenticated body changes nothing: for a
 * batch, every element is parsed and authenticated before the first is
 * applied.  Applying the events is webhook_apply.c's business.
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
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "core/webhook.h"
#include "core/signature.h"
#include "server/db.h"
#include "server/webhook.h"

PG_FUNCTION_INFO_V1(partoo_ingest_webhook);
PG_FUNCTION_INFO_V1(partoo_ingest_webhooks);
PG_FUNCTION_INFO_V1(partoo_webhook_apply_pending);

/* Partoo's published keys (base64 SubjectPublicKeyInfo, Ed25519) */
#define PARTOO_WEBHOOK_KEY_PRODUCTION "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQ="
#define PARTOO_WEBHOOK_KEY_SANDBOX "MCowBQYDK2VwAyEALsyvX2yVnG3ZKRIFfEvYk2nkzanoNgAqBSqdeNub4sM="

char	   *partoo_webhook_public_key = NULL;
bool		partoo_webhook_require_signature = true;
char	   *partoo_dispatch_webhook_key = NULL;
int			partoo_webhook_max_bytes = 1024 * 1024;

/* The public key, loaded from partoo.webhook_public_key when it changes */
static PartooPublicKey *cached_key = NULL;
static char *cached_key_text = NULL;

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

static bool
check_public_key(char **newval, void **extra, GucSource source)
{
	char		errbuf[256];
	PartooPublicKey *key;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	key = partoo_public_key_load(*newval, errbuf, sizeof(errbuf));
	if (key == NULL)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errdetail("%s", errbuf);
		GUC_check_errhint("Partoo publishes its keys as base64 SubjectPublicKeyInfo, such as \"%s\".",
						  PARTOO_WEBHOOK_KEY_SANDBOX);
		return false;
	}
	partoo_public_key_free(key);
	return true;
}

/*
 * Define the partoo.webhook_* settings; called from _PG_init() before
 * MarkGUCPrefixReserved("partoo").
 */
void
partoo_webhook_define_gucs(void)
{
	DefineCustomStringVariable("partoo.webhook_public_key",
							   "Public key that verifies the signatures of Partoo webhooks (X-Partoo-Signature-v1).",
							   "Base64 SubjectPublicKeyInfo of an Ed25519 key. The default is Partoo's production key; "
							   "the sandbox key is " PARTOO_WEBHOOK_KEY_SANDBOX ".",
							   &partoo_webhook_public_key,
							   PARTOO_WEBHOOK_KEY_PRODUCTION,
							   PGC_SUSET,
							   0,
							   check_public_key, NULL, NULL);

	DefineCustomBoolVariable("partoo.webhook_require_signature",
							 "Refuse webhook payloads that come without a signature or API key.",
							 "When off, a payload without one is accepted; one that comes with a wrong one is still refused.",
							 &partoo_webhook_require_signature,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("partoo.dispatch_webhook_key",
							   "API key the dispatch status webhook must present.",
							   "Compared in constant time with the signature argument for dispatch payloads. "
							   "Only superusers can set or see it.",
							   &partoo_dispatch_webhook_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.webhook_max_bytes",
							"Largest webhook payload accepted.",
							NULL,
							&partoo_webhook_max_bytes,
							1024 * 1024, 256, 64 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);
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

/*
 * Parse one body into *ev (zeroed by the caller), or raise the error for
 * it.  prev is the previous event of the batch, or NULL.  The core's
 * malloc'd event is freed whatever happens.
 */
static void
parse_event(Datum payload, PartooIngestEvent *ev, const PartooIngestEvent *prev)
{
	text	   *t = DatumGetTextPP(payload);
	PartooWebhookError err;
	PartooWebhookEvent *volatile pe;

	pe = partoo_webhook_parse(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t),
							  (size_t) partoo_webhook_max_bytes, &err);
	if (pe == NULL)
	{
		int			code;

		switch (err.kind)
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
				 errmsg("%s", err.message),
				 errdetail("%s", err.detail),
				 err.kind == PARTOO_WHE_TOO_LARGE ?
				 errhint("A superuser can raise partoo.webhook_max_bytes.") : 0));
	}

	ev->source = pe->source;
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
	ev->payload = payload;

	PG_TRY();
	{
		ev->event_type = copy_field(pe->event_type, prev ? prev->event_type : NULL);
		ev->status_raw = copy_field(pe->status_raw, prev ? prev->status_raw : NULL);
		ev->channel = copy_field(pe->channel, prev ? prev->channel : NULL);
		ev->content_type = copy_field(pe->content_type, prev ? prev->content_type : NULL);
		ev->sender_type = copy_field(pe->sender_type, prev ? prev->sender_type : NULL);
		ev->dedup_key = copy_field(pe->dedup_key, NULL);
		if (pe->source == PARTOO_SOURCE_DISPATCH)
		{
			ev->order_key = pstrdup(pe->order_key);
			ev->dispatch_id = copy_field(pe->dispatch_id, NULL);
			ev->recipient = copy_field(pe->recipient, NULL);
			ev->dispatch_metadata = copy_field(pe->dispatch_metadata, NULL);
		}
	}
	PG_FINALLY();
	{
		partoo_webhook_event_free(pe);
	}
	PG_END_TRY();
}

static const PartooPublicKey *
public_key(void)
{
	char		errbuf[256];

	if (partoo_webhook_public_key == NULL || partoo_webhook_public_key[0] == '\0')
		return NULL;
	if (cached_key_text != NULL && strcmp(cached_key_text, partoo_webhook_public_key) == 0)
		return cached_key;

	partoo_public_key_free(cached_key);
	cached_key = NULL;
	free(cached_key_text);
	cached_key_text = NULL;
	cached_key = partoo_public_key_load(partoo_webhook_public_key, errbuf, sizeof(errbuf));
	if (cached_key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("partoo.webhook_public_key is not usable"),
				 errdetail("%s", errbuf)));
	cached_key_text = strdup(partoo_webhook_public_key);
	if (cached_key_text == NULL)
	{
		partoo_public_key_free(cached_key);
		cached_key = NULL;
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	}
	return cached_key;
}

/*
 * Authenticate one event: for Partoo, signature is X-Partoo-Signature-v1
 * (base64 Ed25519 over the raw body); for dispatch, it is the webhook's
 * API key.  Raises 28000 for a missing or wrong one, 55000 when the
 * setting needed to check it is empty.  No message shows a key, a
 * signature or what was expected.
 */
static void
authenticate(const PartooIngestEvent *ev, text *signature)
{
	text	   *body = DatumGetTextPP(ev->payload);

	if (ev->source == PARTOO_SOURCE_PARTOO)
	{
		const PartooPublicKey *key;
		PartooSignatureResult r;

		if (signature == NULL)
		{
			if (partoo_webhook_require_signature)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
						 errmsg("webhook signature missing"),
						 errdetail("Partoo signs every webhook in the X-Partoo-Signature-v1 header."),
						 errhint("Pass that header's value as signature. A superuser can turn off partoo.webhook_require_signature for tests.")));
			return;
		}
		key = public_key();
		if (key == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("partoo.webhook_public_key is not set"),
					 errdetail("A signature was given, but there is no key to check it with."),
					 errhint("Have a superuser set partoo.webhook_public_key to Partoo's production or sandbox key.")));
		r = partoo_signature_verify(key, VARDATA_ANY(signature),
									VARSIZE_ANY_EXHDR(signature),
									VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body));
		if (r == PARTOO_SIG_ERROR)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not verify the webhook signature.")));
		if (r != PARTOO_SIG_VALID)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("invalid webhook signature"),
					 r == PARTOO_SIG_MALFORMED ?
					 errdetail("The signature is not a base64 Ed25519 signature.") :
					 errdetail("The signature does not match the payload and partoo.webhook_public_key."),
					 errhint("Pass the body exactly as received, and check that partoo.webhook_public_key is the key of the Partoo environment (production or sandbox) that sent it.")));
		return;
	}

	/* dispatch: a shared API key */
	if (partoo_dispatch_webhook_key == NULL || partoo_dispatch_webhook_key[0] == '\0')
	{
		if (partoo_webhook_require_signature || signature != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("partoo.dispatch_webhook_key is not set"),
					 errdetail("Dispatch status notifications are authenticated by their API key, and no key is configured to compare it with."),
					 errhint("Have a superuser set partoo.dispatch_webhook_key to the API key configured for the dispatch webhook.")));
		return;
	}
	if (signature == NULL)
	{
		if (partoo_webhook_require_signature)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("webhook API key missing"),
					 errdetail("Dispatch status notifications carry their API key in a header."),
					 errhint("Pass that header's value as signature.")));
		return;
	}
	if (!partoo_secret_equal(VARDATA_ANY(signature), VARSIZE_ANY_EXHDR(signature),
							 partoo_dispatch_webhook_key,
							 strlen(partoo_dispatch_webhook_key)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("invalid webhook API key"),
				 errdetail("The API key does not match partoo.dispatch_webhook_key.")));
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
