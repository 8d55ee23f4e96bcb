/*-------------------------------------------------------------------------
 *
 * webhook.c
 *		Webhook ingestion: partoo_ingest_webhook(), partoo_ingest_webhooks()
 *		and the trigger that applies events waiting for their message.
 *
 * A webhook body is parsed and authenticated by the protocol core
 * (webhook_parse.c, signature.c) before anything is read or written, so
 * a malformed or unauthenticated body changes nothing.  Then, in the
 * caller's transaction, as the extension owner (partoo_store_begin):
 *
 *	 1. the messages the events name are locked (FOR UPDATE, in id order)
 *		and read; dispatch messages not seen before are created;
 *	 2. the duplicate-recognition keys already in partoo.events are read;
 *	 3. the events are decided one by one, in order, in memory, with the
 *		core's ordering rules (partoo_status_apply, partoo_dispatch_*);
 *	 4. the events, the messages and the dispatch parts are written back
 *		with one set-based statement each.
 * Every statement is prepared once per backend, whatever the number of
 * events; a batch costs the same nine statements as a single event.
 *
 * An event for a Partoo message id not recorded yet is kept as 'pending'.
 * When that id is recorded (INSERT by partoo_send, UPDATE by the worker),
 * the statement-level triggers on partoo.messages run
 * partoo_webhook_apply_pending() in the same transaction.  NB: the two
 * sides race: an ingest may look for the message while the transaction
 * recording it is still open, and that transaction's trigger cannot see
 * the ingest's uncommitted pending event.  So they meet on advisory locks
 * on PARTOO_WEBHOOK_BUCKETS buckets of Partoo ids: the trigger takes the
 * buckets of the ids it recorded in share mode (waiting) before looking
 * for pending events; an ingest takes the buckets of ids it did not find
 * in exclusive mode before looking again and keeping the event pending.
 * Whichever comes second sees the other's committed work.  The ingest
 * never queues for these locks (it polls, then fails with 55P03), so a
 * waiting ingest never holds up the worker behind it, and it takes them
 * only after its row locks, so the worker is never chosen as the victim
 * of a deadlock with an ingest.
 *
 * Under REPEATABLE READ or SERIALIZABLE, these statements read the latest
 * committed state (as foreign-key checks do), so that the handshake above
 * holds whatever the caller's isolation level.
 *
 * src/webhook.c
 *
 *-------------------------------------------------------------------------
 */
#include "partoo.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(partoo_ingest_webhook);
PG_FUNCTION_INFO_V1(partoo_ingest_webhooks);
PG_FUNCTION_INFO_V1(partoo_webhook_apply_pending);

/* Partoo's published keys (base64 SubjectPublicKeyInfo, Ed25519) */
#define PARTOO_WEBHOOK_KEY_PRODUCTION "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQ="
#define PARTOO_WEBHOOK_KEY_SANDBOX "MCowBQYDK2VwAyEALsyvX2yVnG3ZKRIFfEvYk2nkzanoNgAqBSqdeNub4sM="

/*
 * The pending-event handshake locks: advisory locks of this database with
 * keys (PARTOO_LOCK_KEY, bucket) and a field4 no SQL function uses, so
 * they never collide with an application's pg_advisory_lock calls.
 */
#define PARTOO_WEBHOOK_BUCKETS	64
#define PARTOO_LOCK_KEY			0x7061726fU /* "paro" */
#define PARTOO_LOCK_CLASS		0x5057	/* "PW" */
/* How long an ingest polls for a bucket before giving up */
#define PARTOO_BUCKET_WAIT_MS	5000

char	   *partoo_webhook_public_key = NULL;
bool		partoo_webhook_require_signature = true;
char	   *partoo_dispatch_webhook_key = NULL;
int			partoo_webhook_max_bytes = 1024 * 1024;

/* > 0 while this backend writes partoo.messages itself: the trigger skips */
static int	applying = 0;

/* The public key, loaded from partoo.webhook_public_key when it changes */
static PartooPublicKey *cached_key = NULL;
static char *cached_key_text = NULL;

/* One event, as decided; palloc'd */
typedef struct WhEvent
{
	PartooWebhookSource source;
	bool		concerns_status;
	char	   *event_type;
	char	   *status_raw;
	char	   *channel;
	char	   *content_type;
	char	   *sender_type;
	bool		has_event_at;
	TimestampTz event_at;
	char	   *dedup_key;		/* final: Partoo keys get the retry suffix */
	char	   *order_key;

	int64		partoo_id;
	PartooStatus status;
	int			is_deleted;

	char	   *dispatch_id;
	char	   *recipient;
	int32		part;
	int32		total_parts;
	int32		status_order;
	PartooDispatchStatus dstatus;
	char	   *dispatch_metadata;

	Datum		payload;		/* text, the body as received */
	int64		event_id;		/* partoo.events.id (pending application) */

	/* the decision */
	const char *outcome;		/* applied, stale, pending, ignored,
								 * duplicate */
	bool		has_message_id;
	int64		message_id;
} WhEvent;

/* A Partoo message as the events see it; key partoo_id */
typedef struct WhPartooMsg
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
} WhPartooMsg;

typedef struct WhPart
{
	int32		part;
	int32		total_parts;
	char	   *channel;
	char	   *status_raw;
	PartooDispatchStatus status;
	TimestampTz status_date;
	int32		status_order;
	bool		dirty;
} WhPart;

/* A dispatch message */
typedef struct WhDispatchMsg
{
	char	   *external_id;
	char	   *recipient;
	char	   *first_channel;
	char	   *first_metadata;
	bool		found;
	int64		id;
	bool		has_metadata;
	char	   *new_metadata;
	int32		total_parts;
	WhPart	   *parts;
	int			nparts;
	int			maxparts;
	bool		dirty;
} WhDispatchMsg;

/*
 * The dispatch messages of a batch: a list, and a map from
 * "<len>:<dispatchId><channelIdentifier>" to the list's entries.  The map
 * is dynahash with HASH_STRINGS, which keeps the key inline at the start
 * of each entry, so an entry is the key (keysize bytes, longer than any
 * key of the batch) followed by a pointer.
 */
typedef struct DispatchSet
{
	HTAB	   *map;
	Size		keysize;
	WhDispatchMsg **all;
	int			n;
	int			max;
} DispatchSet;

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

static TimestampTz
unix_usec_to_timestamptz(int64 usec)
{
	return (TimestampTz) (usec -
						  (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
						  SECS_PER_DAY * USECS_PER_SEC);
}

static char *
pstrdup_or_null(const char *s)
{
	return s == NULL ? NULL : pstrdup(s);
}

/* Every string we store must be valid in the database encoding (22021) */
static void
verify_encoding(const char *s)
{
	if (s != NULL)
		(void) pg_verifymbstr(s, strlen(s), false);
}

/*
 * Parse one body into a palloc'd WhEvent, or raise the error for it.  The
 * core's malloc'd event is freed before anything here can throw.
 */
static WhEvent *
parse_event(Datum payload)
{
	text	   *t = DatumGetTextPP(payload);
	PartooWebhookError err;
	PartooWebhookEvent *pe;
	WhEvent    *ev;

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

	ev = palloc0(sizeof(WhEvent));
	ev->source = pe->source;
	ev->concerns_status = pe->concerns_status;
	ev->event_type = pstrdup_or_null(pe->event_type);
	ev->status_raw = pstrdup_or_null(pe->status_raw);
	ev->channel = pstrdup_or_null(pe->channel);
	ev->content_type = pstrdup_or_null(pe->content_type);
	ev->sender_type = pstrdup_or_null(pe->sender_type);
	ev->has_event_at = pe->has_event_at;
	if (pe->has_event_at)
		ev->event_at = unix_usec_to_timestamptz(pe->event_at);
	ev->dedup_key = pstrdup(pe->dedup_key);
	ev->partoo_id = pe->partoo_id;
	ev->status = pe->status;
	ev->is_deleted = pe->is_deleted;
	if (pe->source == PARTOO_SOURCE_DISPATCH)
	{
		ev->order_key = pstrdup(pe->order_key);
		ev->dispatch_id = pstrdup(pe->dispatch_id);
		ev->recipient = pstrdup(pe->recipient);
		ev->part = pe->part;
		ev->total_parts = pe->total_parts;
		ev->status_order = pe->status_order;
		ev->dstatus = pe->dispatch_status;
		ev->dispatch_metadata = pstrdup_or_null(pe->dispatch_metadata);
	}
	ev->payload = payload;
	partoo_webhook_event_free(pe);

	verify_encoding(ev->event_type);
	verify_encoding(ev->status_raw);
	verify_encoding(ev->channel);
	verify_encoding(ev->content_type);
	verify_encoding(ev->sender_type);
	verify_encoding(ev->dedup_key);
	return ev;
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
authenticate(const WhEvent *ev, text *signature)
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

/* ----------------------------------------------------------------
 * SQL helpers
 * ----------------------------------------------------------------
 */

/*
 * Prepare sql once per backend and keep the plan.  NB: always a generic
 * plan: a custom plan would copy the (possibly huge) array parameters
 * into the plan as constants and make the planner read them, which costs
 * more than the whole statement for a large batch.
 */
static SPIPlanPtr
keep_plan(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes,
											  CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*slot = plan;
	}
	return *slot;
}

/*
 * Run a kept plan on the latest committed state: a fresh snapshot per
 * statement under READ COMMITTED (what SPI does anyway), the latest
 * snapshot under REPEATABLE READ and SERIALIZABLE.  Never read-only, so
 * that it sees this transaction's own earlier writes.
 */
static int
run_plan(SPIPlanPtr plan, Datum *args, const char *nulls)
{
	if (IsolationUsesXactSnapshot())
		return SPI_execute_snapshot(plan, args, nulls, GetLatestSnapshot(),
									InvalidSnapshot, false, true, 0);
	return SPI_execute_plan(plan, args, nulls, false, 0);
}

/* A one-dimensional array of n Datums; nulls may be NULL */
static Datum
make_array(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1];
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	dims[0] = n;
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval,
											  typalign));
}

static Datum
int64_array(const int64 *v, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(v[i]);
	return make_array(elems, NULL, n, INT8OID);
}

static Datum
text_or_null(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s == NULL ? (Datum) 0 : CStringGetTextDatum(s);
}

static int64
col_int64(HeapTuple t, TupleDesc d, int col, bool *isnull)
{
	Datum		v = SPI_getbinval(t, d, col, isnull);

	return *isnull ? 0 : DatumGetInt64(v);
}

/* A text column copied into the current context, or NULL */
static char *
col_text(HeapTuple t, TupleDesc d, int col)
{
	bool		isnull;
	Datum		v = SPI_getbinval(t, d, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(v);
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

/* Trigger side: share-lock the buckets of recorded ids, waiting if need be */
static void
lock_buckets_shared(uint64 mask)
{
	int			b;

	for (b = 0; b < PARTOO_WEBHOOK_BUCKETS; b++)
	{
		LOCKTAG		tag;

		if ((mask & (UINT64CONST(1) << b)) == 0)
			continue;
		bucket_tag(&tag, b);
		(void) LockAcquire(&tag, ShareLock, false, false);
	}
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
	ctl.entrysize = sizeof(WhPartooMsg);
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
 * Read (and lock, unless for_trigger) the Partoo messages with the given
 * ids into msgs.  Columns: partoo_id, id, state, partoo_status,
 * status_at, retry_requested_at, is_deleted.  nowait: fail rather than
 * wait for a row lock (used while holding bucket locks).
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
	"  FROM partoo.messages m WHERE m.partoo_id = ANY ($1) ORDER BY m.id"

	if (n == 0)
		return;
	if (!lock)
		plan = keep_plan(&plan_read, FETCH_PARTOO_SQL, 1, argtypes);
	else if (nowait)
		plan = keep_plan(&plan_nowait, FETCH_PARTOO_SQL " FOR UPDATE NOWAIT", 1, argtypes);
	else
		plan = keep_plan(&plan_lock, FETCH_PARTOO_SQL " FOR UPDATE", 1, argtypes);
	args[0] = int64_array(ids, n);
	rc = run_plan(plan, args, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.messages: %s", SPI_result_code_string(rc));

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		pid = col_int64(t, d, 1, &isnull);
		WhPartooMsg *m = hash_search(msgs, &pid, HASH_ENTER, NULL);
		char	   *state = col_text(t, d, 3);
		char	   *status = col_text(t, d, 4);
		TimestampTz status_at = 0;
		bool		has_status_at;
		Datum		v;

		m->found = true;
		m->id = col_int64(t, d, 2, &isnull);
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
decide_partoo(WhPartooMsg *m, WhEvent *ev)
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

/* Write back every changed Partoo message in one statement */
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
	WhPartooMsg *m;
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

	keep_plan(&plan,
			  "UPDATE partoo.messages m"
			  "   SET state = u.state, partoo_status = u.status,"
			  "       status_at = CASE WHEN u.touch THEN clock_timestamp() ELSE m.status_at END,"
			  "       is_deleted = u.is_deleted, updated_at = now()"
			  "  FROM unnest($1, $2, $3, $4, $5) AS u(id, state, status, touch, is_deleted)"
			  " WHERE m.id = u.id",
			  5, argtypes);
	args[0] = make_array(ids, NULL, k, INT8OID);
	args[1] = make_array(states, NULL, k, TEXTOID);
	args[2] = make_array(statuses, NULL, k, TEXTOID);
	args[3] = make_array(touch, NULL, k, BOOLOID);
	args[4] = make_array(deleted, NULL, k, BOOLOID);
	rc = run_plan(plan, args, NULL);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not update partoo.messages: %s", SPI_result_code_string(rc));
}

/* ----------------------------------------------------------------
 * Dispatch messages
 * ----------------------------------------------------------------
 */

static char *
dispatch_key(const char *external_id, const char *recipient)
{
	return psprintf("%zu:%s%s", strlen(external_id), external_id, recipient);
}

static void
dispatch_set_init(DispatchSet *ds, Size maxkeylen)
{
	HASHCTL		ctl;

	memset(ds, 0, sizeof(DispatchSet));
	ds->keysize = maxkeylen + 1;
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = ds->keysize;
	ctl.entrysize = MAXALIGN(ds->keysize) + sizeof(WhDispatchMsg *);
	ctl.hcxt = CurrentMemoryContext;
	ds->map = hash_create("partoo webhook dispatch messages", 64, &ctl,
						  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
}

/*
 * The map's slot for (external_id, recipient), entered (NULL) if new;
 * *found tells which.
 */
static WhDispatchMsg **
dispatch_set_lookup(DispatchSet *ds, const char *external_id,
					const char *recipient, bool *found)
{
	char	   *key = dispatch_key(external_id, recipient);
	char	   *entry;

	if (strlen(key) >= ds->keysize)
		elog(ERROR, "dispatch key longer than expected");
	entry = hash_search(ds->map, key, HASH_ENTER, found);
	pfree(key);
	if (!*found)
		*(WhDispatchMsg **) (entry + MAXALIGN(ds->keysize)) = NULL;
	return (WhDispatchMsg **) (entry + MAXALIGN(ds->keysize));
}

/* The slot of (external_id, recipient), for a map used as an index */
static WhDispatchMsg **
dispatch_set_slot(DispatchSet *ds, const char *external_id, const char *recipient)
{
	bool		found;

	return dispatch_set_lookup(ds, external_id, recipient, &found);
}

/*
 * The message of (external_id, recipient), created and added to the list
 * when create is true; NULL if absent otherwise.
 */
static WhDispatchMsg *
dispatch_set_get(DispatchSet *ds, const char *external_id,
				 const char *recipient, bool create)
{
	bool		found;
	WhDispatchMsg **slot;

	slot = dispatch_set_lookup(ds, external_id, recipient, &found);
	if (!found && !create)
		return NULL;
	if (!found)
	{
		WhDispatchMsg *m = palloc0(sizeof(WhDispatchMsg));

		m->external_id = pstrdup(external_id);
		m->recipient = pstrdup(recipient);
		*slot = m;
		if (ds->n == ds->max)
		{
			ds->max = Max(16, ds->max * 2);
			ds->all = ds->all == NULL ?
				palloc(sizeof(WhDispatchMsg *) * ds->max) :
				repalloc(ds->all, sizeof(WhDispatchMsg *) * ds->max);
		}
		ds->all[ds->n++] = m;
	}
	return *slot;
}

static int
cmp_dispatch(const void *a, const void *b)
{
	const WhDispatchMsg *x = *(WhDispatchMsg *const *) a;
	const WhDispatchMsg *y = *(WhDispatchMsg *const *) b;
	int			c = strcmp(x->external_id, y->external_id);

	return c != 0 ? c : strcmp(x->recipient, y->recipient);
}

static WhPart *
find_part(WhDispatchMsg *m, int32 part)
{
	int			i;

	for (i = 0; i < m->nparts; i++)
		if (m->parts[i].part == part)
			return &m->parts[i];
	return NULL;
}

static WhPart *
add_part(WhDispatchMsg *m, int32 part)
{
	WhPart	   *p;

	if (m->nparts == m->maxparts)
	{
		m->maxparts = Max(4, m->maxparts * 2);
		m->parts = m->parts == NULL ?
			palloc(sizeof(WhPart) * m->maxparts) :
			repalloc(m->parts, sizeof(WhPart) * m->maxparts);
	}
	p = &m->parts[m->nparts++];
	memset(p, 0, sizeof(WhPart));
	p->part = part;
	return p;
}

/*
 * Lock and read the dispatch messages of sorted[0..k) that exist, with
 * their parts; mark them found.  Returns how many were found.
 */
static int
lock_dispatch_messages(WhDispatchMsg **sorted, int k)
{
	static SPIPlanPtr plan_lock = NULL;
	static SPIPlanPtr plan_parts = NULL;
	Oid			lock_types[2] = {TEXTARRAYOID, TEXTARRAYOID};
	Oid			parts_types[1] = {INT8ARRAYOID};
	Datum		args[2];
	Datum	   *ext = palloc(sizeof(Datum) * k);
	Datum	   *rcpt = palloc(sizeof(Datum) * k);
	Datum	   *ids;
	HTAB	   *by_id;
	HASHCTL		ctl;
	DispatchSet ds;
	Size		maxkey = 16;
	int			nfound;
	int			i;
	uint64		r;
	int			rc;

	/* a map of this subset, to find a returned row's message */
	for (i = 0; i < k; i++)
	{
		ext[i] = CStringGetTextDatum(sorted[i]->external_id);
		rcpt[i] = CStringGetTextDatum(sorted[i]->recipient);
		maxkey = Max(maxkey, strlen(sorted[i]->external_id) +
					 strlen(sorted[i]->recipient) + 24);
	}
	dispatch_set_init(&ds, maxkey);
	for (i = 0; i < k; i++)
		*dispatch_set_slot(&ds, sorted[i]->external_id, sorted[i]->recipient) = sorted[i];

	keep_plan(&plan_lock,
			  "SELECT m.external_id, m.recipient, m.id, m.metadata IS NOT NULL"
			  "  FROM partoo.messages m"
			  "  JOIN unnest($1, $2) AS u(e, r) ON m.external_id = u.e AND m.recipient = u.r"
			  " WHERE m.provider = 'dispatch'"
			  " ORDER BY m.id FOR UPDATE OF m",
			  2, lock_types);
	args[0] = make_array(ext, NULL, k, TEXTOID);
	args[1] = make_array(rcpt, NULL, k, TEXTOID);
	rc = run_plan(plan_lock, args, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not lock dispatch messages: %s", SPI_result_code_string(rc));
	nfound = (int) SPI_processed;
	if (nfound == 0)
		return 0;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(int64) + sizeof(WhDispatchMsg *);
	ctl.hcxt = CurrentMemoryContext;
	by_id = hash_create("partoo dispatch ids", Max(nfound, 16), &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ids = palloc(sizeof(Datum) * nfound);
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *e = col_text(t, d, 1);
		char	   *rc2 = col_text(t, d, 2);
		bool		isnull;
		WhDispatchMsg **pm = dispatch_set_slot(&ds, e, rc2);
		WhDispatchMsg *dm = *pm;
		int64		id = col_int64(t, d, 3, &isnull);
		char	   *slot;

		if (dm == NULL)
			elog(ERROR, "dispatch message was not asked for");
		dm->found = true;
		dm->id = id;
		dm->has_metadata = DatumGetBool(SPI_getbinval(t, d, 4, &isnull));
		ids[r] = Int64GetDatum(id);
		slot = hash_search(by_id, &id, HASH_ENTER, NULL);
		memcpy(slot + sizeof(int64), &dm, sizeof(WhDispatchMsg *));
	}

	keep_plan(&plan_parts,
			  "SELECT message_id, part, total_parts, channel, status, status_date, status_order"
			  "  FROM partoo.message_parts WHERE message_id = ANY ($1)",
			  1, parts_types);
	args[0] = make_array(ids, NULL, nfound, INT8OID);
	rc = run_plan(plan_parts, args, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.message_parts: %s", SPI_result_code_string(rc));
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = col_int64(t, d, 1, &isnull);
		char	   *slot = hash_search(by_id, &id, HASH_FIND, NULL);
		WhDispatchMsg *dm;
		WhPart	   *p;
		Datum		v;

		if (slot == NULL)
			continue;
		memcpy(&dm, slot + sizeof(int64), sizeof(WhDispatchMsg *));
		p = add_part(dm, DatumGetInt32(SPI_getbinval(t, d, 2, &isnull)));
		v = SPI_getbinval(t, d, 3, &isnull);
		p->total_parts = isnull ? p->part : DatumGetInt32(v);
		dm->total_parts = Max(dm->total_parts, p->total_parts);
		p->channel = col_text(t, d, 4);
		p->status_raw = col_text(t, d, 5);
		p->status = partoo_dispatch_status_from_name(p->status_raw);
		p->status_date = DatumGetTimestampTz(SPI_getbinval(t, d, 6, &isnull));
		p->status_order = DatumGetInt32(SPI_getbinval(t, d, 7, &isnull));
	}
	return nfound;
}

/*
 * Lock and read every dispatch message of the batch with its parts,
 * creating those not seen before first (ON CONFLICT DO NOTHING, so that
 * concurrent ingests agree on one row).  Messages are handled in a stable
 * order so that concurrent batches do not deadlock.
 */
static void
fetch_dispatch_messages(DispatchSet *ds, const char *created_by)
{
	static SPIPlanPtr plan_create = NULL;
	Oid			create_types[5] = {TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTOID};
	Datum		args[5];
	int			n = ds->n;
	WhDispatchMsg **sorted;
	WhDispatchMsg **missing;
	Datum	   *ext,
			   *rcpt,
			   *chan,
			   *meta;
	bool	   *chan_null,
			   *meta_null;
	int			nmissing = 0;
	int			i;
	int			rc;

	if (n == 0)
		return;
	sorted = palloc(sizeof(WhDispatchMsg *) * n);
	memcpy(sorted, ds->all, sizeof(WhDispatchMsg *) * n);
	qsort(sorted, n, sizeof(WhDispatchMsg *), cmp_dispatch);
	if (lock_dispatch_messages(sorted, n) == n)
		return;

	missing = palloc(sizeof(WhDispatchMsg *) * n);
	for (i = 0; i < n; i++)
		if (!sorted[i]->found)
			missing[nmissing++] = sorted[i];
	ext = palloc(sizeof(Datum) * nmissing);
	rcpt = palloc(sizeof(Datum) * nmissing);
	chan = palloc(sizeof(Datum) * nmissing);
	meta = palloc(sizeof(Datum) * nmissing);
	chan_null = palloc(sizeof(bool) * nmissing);
	meta_null = palloc(sizeof(bool) * nmissing);
	for (i = 0; i < nmissing; i++)
	{
		ext[i] = CStringGetTextDatum(missing[i]->external_id);
		rcpt[i] = CStringGetTextDatum(missing[i]->recipient);
		chan[i] = text_or_null(missing[i]->first_channel, &chan_null[i]);
		meta[i] = text_or_null(missing[i]->first_metadata, &meta_null[i]);
	}
	keep_plan(&plan_create,
			  "INSERT INTO partoo.messages"
			  "  (provider, external_id, recipient, state, channel, metadata, created_by)"
			  " SELECT 'dispatch', u.e, u.r, 'sent', u.c, u.meta::jsonb, $5"
			  "   FROM unnest($1, $2, $3, $4) AS u(e, r, c, meta)"
			  " ON CONFLICT (external_id, recipient) WHERE provider = 'dispatch' DO NOTHING",
			  5, create_types);
	args[0] = make_array(ext, NULL, nmissing, TEXTOID);
	args[1] = make_array(rcpt, NULL, nmissing, TEXTOID);
	args[2] = make_array(chan, chan_null, nmissing, TEXTOID);
	args[3] = make_array(meta, meta_null, nmissing, TEXTOID);
	args[4] = CStringGetTextDatum(created_by);
	rc = run_plan(plan_create, args, NULL);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not create dispatch messages: %s", SPI_result_code_string(rc));
	if (lock_dispatch_messages(missing, nmissing) != nmissing)
		elog(ERROR, "could not find dispatch messages just created");
}

static void
part_order(const WhPart *p, PartooDispatchOrder *o)
{
	o->status_date = p->status_date;
	o->status_order = p->status_order;
	o->status = p->status;
	o->status_raw = p->status_raw;
}

/* Decide a dispatch event against its part; record the change in memory */
static const char *
decide_dispatch(WhDispatchMsg *m, WhEvent *ev)
{
	WhPart	   *p = find_part(m, ev->part);
	bool		newer;

	ev->has_message_id = true;
	ev->message_id = m->id;
	m->total_parts = Max(m->total_parts, ev->total_parts);
	if (!m->has_metadata && m->new_metadata == NULL && ev->dispatch_metadata != NULL)
	{
		m->new_metadata = ev->dispatch_metadata;
		m->dirty = true;
	}

	if (p == NULL)
		newer = true;
	else
	{
		PartooDispatchOrder cur;
		PartooDispatchOrder in;

		part_order(p, &cur);
		in.status_date = ev->event_at;
		in.status_order = ev->status_order;
		in.status = ev->dstatus;
		in.status_raw = ev->status_raw;
		newer = partoo_dispatch_order_cmp(&in, &cur) > 0;
	}
	if (!newer)
		return "stale";
	if (p == NULL)
		p = add_part(m, ev->part);
	p->total_parts = ev->total_parts;
	p->channel = ev->channel;
	p->status_raw = ev->status_raw;
	p->status = ev->dstatus;
	p->status_date = ev->event_at;
	p->status_order = ev->status_order;
	p->dirty = true;
	m->dirty = true;
	return "applied";
}

/*
 * Write back changed parts and the state of their messages: the state
 * from every part's newest status, and partoo_status, status_at and
 * channel from the newest status of all parts.
 */
static void
write_dispatch_messages(DispatchSet *ds)
{
	static SPIPlanPtr plan_parts = NULL;
	static SPIPlanPtr plan_msgs = NULL;
	Oid			part_types[7] = {INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID};
	Oid			msg_types[6] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		args[7];
	int			n = ds->n;
	int			np = 0;
	int			nm = 0;
	int			maxp = 16;
	Datum	   *p_mid = palloc(sizeof(Datum) * maxp),
			   *p_part = palloc(sizeof(Datum) * maxp),
			   *p_total = palloc(sizeof(Datum) * maxp),
			   *p_chan = palloc(sizeof(Datum) * maxp),
			   *p_status = palloc(sizeof(Datum) * maxp),
			   *p_date = palloc(sizeof(Datum) * maxp),
			   *p_order = palloc(sizeof(Datum) * maxp);
	bool	   *p_chan_null = palloc(sizeof(bool) * maxp);
	Datum	   *m_id = palloc(sizeof(Datum) * Max(n, 1)),
			   *m_state = palloc(sizeof(Datum) * Max(n, 1)),
			   *m_status = palloc(sizeof(Datum) * Max(n, 1)),
			   *m_at = palloc(sizeof(Datum) * Max(n, 1)),
			   *m_chan = palloc(sizeof(Datum) * Max(n, 1)),
			   *m_meta = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *m_chan_null = palloc(sizeof(bool) * Max(n, 1));
	bool	   *m_meta_null = palloc(sizeof(bool) * Max(n, 1));
	int			mi;
	int			rc;

	for (mi = 0; mi < n; mi++)
	{
		WhDispatchMsg *m = ds->all[mi];
		PartooDispatchStatus *st;
		int32	   *parts;
		WhPart	   *newest = NULL;
		int			i;

		if (!m->dirty)
			continue;
		st = palloc(sizeof(PartooDispatchStatus) * Max(m->nparts, 1));
		parts = palloc(sizeof(int32) * Max(m->nparts, 1));
		for (i = 0; i < m->nparts; i++)
		{
			WhPart	   *p = &m->parts[i];

			st[i] = p->status;
			parts[i] = p->part;
			if (newest == NULL)
				newest = p;
			else
			{
				PartooDispatchOrder a,
							b;
				int			c;

				part_order(p, &a);
				part_order(newest, &b);
				c = partoo_dispatch_order_cmp(&a, &b);
				if (c > 0 || (c == 0 && p->part > newest->part))
					newest = p;
			}
			if (!p->dirty)
				continue;
			if (np == maxp)
			{
				maxp *= 2;
				p_mid = repalloc(p_mid, sizeof(Datum) * maxp);
				p_part = repalloc(p_part, sizeof(Datum) * maxp);
				p_total = repalloc(p_total, sizeof(Datum) * maxp);
				p_chan = repalloc(p_chan, sizeof(Datum) * maxp);
				p_status = repalloc(p_status, sizeof(Datum) * maxp);
				p_date = repalloc(p_date, sizeof(Datum) * maxp);
				p_order = repalloc(p_order, sizeof(Datum) * maxp);
				p_chan_null = repalloc(p_chan_null, sizeof(bool) * maxp);
			}
			p_mid[np] = Int64GetDatum(m->id);
			p_part[np] = Int32GetDatum(p->part);
			p_total[np] = Int32GetDatum(p->total_parts);
			p_chan[np] = text_or_null(p->channel, &p_chan_null[np]);
			p_status[np] = CStringGetTextDatum(p->status_raw);
			p_date[np] = TimestampTzGetDatum(p->status_date);
			p_order[np] = Int32GetDatum(p->status_order);
			np++;
		}
		m_id[nm] = Int64GetDatum(m->id);
		m_state[nm] = CStringGetTextDatum(partoo_dispatch_state(st, parts, m->nparts,
																m->total_parts));
		m_status[nm] = CStringGetTextDatum(newest ? newest->status_raw : "");
		m_at[nm] = TimestampTzGetDatum(newest ? newest->status_date : GetCurrentTimestamp());
		m_chan[nm] = text_or_null(newest ? newest->channel : NULL, &m_chan_null[nm]);
		m_meta[nm] = text_or_null(m->new_metadata, &m_meta_null[nm]);
		nm++;
	}

	if (np > 0)
	{
		keep_plan(&plan_parts,
				  "INSERT INTO partoo.message_parts AS p"
				  "  (message_id, part, total_parts, channel, status, status_date, status_order)"
				  " SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7)"
				  " ON CONFLICT (message_id, part) DO UPDATE"
				  "   SET total_parts = EXCLUDED.total_parts, channel = EXCLUDED.channel,"
				  "       status = EXCLUDED.status, status_date = EXCLUDED.status_date,"
				  "       status_order = EXCLUDED.status_order",
				  7, part_types);
		args[0] = make_array(p_mid, NULL, np, INT8OID);
		args[1] = make_array(p_part, NULL, np, INT4OID);
		args[2] = make_array(p_total, NULL, np, INT4OID);
		args[3] = make_array(p_chan, p_chan_null, np, TEXTOID);
		args[4] = make_array(p_status, NULL, np, TEXTOID);
		args[5] = make_array(p_date, NULL, np, TIMESTAMPTZOID);
		args[6] = make_array(p_order, NULL, np, INT4OID);
		rc = run_plan(plan_parts, args, NULL);
		if (rc != SPI_OK_INSERT)
			elog(ERROR, "could not write partoo.message_parts: %s", SPI_result_code_string(rc));
	}
	if (nm > 0)
	{
		keep_plan(&plan_msgs,
				  "UPDATE partoo.messages m"
				  "   SET state = u.state, partoo_status = u.status, status_at = u.status_at,"
				  "       channel = coalesce(u.channel, m.channel),"
				  "       metadata = coalesce(m.metadata, u.meta::jsonb), updated_at = now()"
				  "  FROM unnest($1, $2, $3, $4, $5, $6) AS u(id, state, status, status_at, channel, meta)"
				  " WHERE m.id = u.id",
				  6, msg_types);
		args[0] = make_array(m_id, NULL, nm, INT8OID);
		args[1] = make_array(m_state, NULL, nm, TEXTOID);
		args[2] = make_array(m_status, NULL, nm, TEXTOID);
		args[3] = make_array(m_at, NULL, nm, TIMESTAMPTZOID);
		args[4] = make_array(m_chan, m_chan_null, nm, TEXTOID);
		args[5] = make_array(m_meta, m_meta_null, nm, TEXTOID);
		rc = run_plan(plan_msgs, args, NULL);
		if (rc != SPI_OK_UPDATE)
			elog(ERROR, "could not update dispatch messages: %s", SPI_result_code_string(rc));
	}
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
	keep_plan(&plan, "SELECT dedup_key FROM partoo.events WHERE dedup_key = ANY ($1)",
			  1, argtypes);
	args[0] = make_array(elems, NULL, n, TEXTOID);
	rc = run_plan(plan, args, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.events: %s", SPI_result_code_string(rc));
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *k = col_text(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		(void) hash_search(set, k, HASH_ENTER, NULL);
	}
	return set;
}

/*
 * Insert the events that are not duplicates.  Status events cannot
 * conflict (their messages are locked, and a pending event's bucket is),
 * so a conflict there means the locking is broken: 40001, try again.
 * Events that concern no status take no lock: a conflict makes them
 * duplicates.
 */
static void
insert_events(WhEvent **evs, int n)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_ignored = NULL;
	Oid			argtypes[16] = {TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TEXTARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID};
	int			pass;

#define INSERT_EVENTS_SQL \
	"INSERT INTO partoo.events" \
	"  (source, event_type, partoo_id, external_id, recipient, message_part," \
	"   channel, content_type, sender_type, status, event_at, order_key," \
	"   dedup_key, payload, outcome, message_id, applied_at)" \
	" SELECT u.source, u.event_type, u.partoo_id, u.external_id, u.recipient," \
	"        u.part, u.channel, u.content_type, u.sender_type, u.status," \
	"        u.event_at, u.order_key, u.dedup_key, u.payload, u.outcome," \
	"        u.message_id, CASE WHEN u.outcome = 'applied' THEN now() END" \
	"   FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13," \
	"               $14, $15, $16)" \
	"     AS u(source, event_type, partoo_id, external_id, recipient, part," \
	"          channel, content_type, sender_type, status, event_at, order_key," \
	"          dedup_key, payload, outcome, message_id)" \
	"  ON CONFLICT (dedup_key) DO NOTHING"

	/* pass 0: status events; pass 1: ignored events */
	for (pass = 0; pass < 2; pass++)
	{
		Datum	   *cols[16];
		bool	   *nulls[16];
		Datum		args[16];
		Oid			elemtypes[16] = {TEXTOID, TEXTOID, INT8OID, TEXTOID, TEXTOID,
			INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID,
		TEXTOID, TEXTOID, TEXTOID, INT8OID};
		int			k = 0;
		int			i,
					c,
					rc;

		for (c = 0; c < 16; c++)
		{
			cols[c] = palloc(sizeof(Datum) * Max(n, 1));
			nulls[c] = palloc0(sizeof(bool) * Max(n, 1));
		}
		for (i = 0; i < n; i++)
		{
			WhEvent    *ev = evs[i];

			if (strcmp(ev->outcome, "duplicate") == 0 ||
				(strcmp(ev->outcome, "ignored") == 0) != (pass == 1))
				continue;
			cols[0][k] = CStringGetTextDatum(ev->source == PARTOO_SOURCE_PARTOO ?
											 "partoo" : "dispatch");
			cols[1][k] = text_or_null(ev->event_type, &nulls[1][k]);
			cols[2][k] = Int64GetDatum(ev->partoo_id);
			nulls[2][k] = ev->partoo_id == 0;
			cols[3][k] = text_or_null(ev->dispatch_id, &nulls[3][k]);
			cols[4][k] = text_or_null(ev->recipient, &nulls[4][k]);
			cols[5][k] = Int32GetDatum(ev->part);
			nulls[5][k] = ev->source != PARTOO_SOURCE_DISPATCH;
			cols[6][k] = text_or_null(ev->channel, &nulls[6][k]);
			cols[7][k] = text_or_null(ev->content_type, &nulls[7][k]);
			cols[8][k] = text_or_null(ev->sender_type, &nulls[8][k]);
			cols[9][k] = text_or_null(ev->status_raw, &nulls[9][k]);
			cols[10][k] = TimestampTzGetDatum(ev->event_at);
			nulls[10][k] = !ev->has_event_at;
			cols[11][k] = text_or_null(ev->order_key, &nulls[11][k]);
			cols[12][k] = CStringGetTextDatum(ev->dedup_key);
			cols[13][k] = ev->payload;
			cols[14][k] = CStringGetTextDatum(ev->outcome);
			cols[15][k] = Int64GetDatum(ev->message_id);
			nulls[15][k] = !ev->has_message_id;
			k++;
		}
		if (k == 0)
			continue;
		for (c = 0; c < 16; c++)
			args[c] = make_array(cols[c], nulls[c], k, elemtypes[c]);

		if (pass == 0)
		{
			keep_plan(&plan, INSERT_EVENTS_SQL, 16, argtypes);
			rc = run_plan(plan, args, NULL);
			if (rc != SPI_OK_INSERT)
				elog(ERROR, "could not insert into partoo.events: %s", SPI_result_code_string(rc));
			if (SPI_processed != (uint64) k)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not record webhook events because of a concurrent ingestion"),
						 errdetail("Another transaction recorded the same event meanwhile."),
						 errhint("Retry the call.")));
		}
		else
		{
			HTAB	   *inserted;
			HASHCTL		ctl;
			Size		keysize = 0;
			uint64		r;

			keep_plan(&plan_ignored, INSERT_EVENTS_SQL " RETURNING dedup_key", 16, argtypes);
			rc = run_plan(plan_ignored, args, NULL);
			if (rc != SPI_OK_INSERT_RETURNING)
				elog(ERROR, "could not insert into partoo.events: %s", SPI_result_code_string(rc));
			if (SPI_processed == (uint64) k)
				continue;
			for (i = 0; i < n; i++)
				keysize = Max(keysize, strlen(evs[i]->dedup_key) + 1);
			memset(&ctl, 0, sizeof(ctl));
			ctl.keysize = keysize;
			ctl.entrysize = keysize;
			ctl.hcxt = CurrentMemoryContext;
			inserted = hash_create("partoo inserted keys", Max(k, 16), &ctl,
								   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
			for (r = 0; r < SPI_processed; r++)
				(void) hash_search(inserted,
								   col_text(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1),
								   HASH_ENTER, NULL);
			for (i = 0; i < n; i++)
				if (strcmp(evs[i]->outcome, "ignored") == 0 &&
					hash_search(inserted, evs[i]->dedup_key, HASH_FIND, NULL) == NULL)
					evs[i]->outcome = "duplicate";
		}
	}
}

/* ----------------------------------------------------------------
 * Ingestion
 * ----------------------------------------------------------------
 */

/*
 * Apply n parsed and authenticated events, in order, in the caller's
 * transaction; fills each event's outcome.
 */
static void
ingest_events(WhEvent **evs, int n)
{
	PartooStoreContext sc;
	char	   *created_by = GetUserNameFromId(GetUserId(), false);
	HTAB	   *pmsgs = partoo_msg_table();
	DispatchSet ds;
	HTAB	   *seen;
	int64	   *pids = palloc(sizeof(int64) * Max(n, 1));
	int			npids = 0;
	char	  **keys = palloc(sizeof(char *) * Max(n, 1));
	Size		maxkey = 0;
	Size		maxdkey = 16;
	int			i;

	/* the messages the events name */
	for (i = 0; i < n; i++)
	{
		WhEvent    *ev = evs[i];

		if (ev->concerns_status && ev->source == PARTOO_SOURCE_PARTOO)
			pids[npids++] = ev->partoo_id;
		else if (ev->source == PARTOO_SOURCE_DISPATCH)
			maxdkey = Max(maxdkey, strlen(ev->dispatch_id) + strlen(ev->recipient) + 24);
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
	dispatch_set_init(&ds, maxdkey);
	for (i = 0; i < n; i++)
	{
		WhEvent    *ev = evs[i];
		WhDispatchMsg *m;

		if (ev->source != PARTOO_SOURCE_DISPATCH)
			continue;
		m = dispatch_set_get(&ds, ev->dispatch_id, ev->recipient, true);
		if (m->first_channel == NULL)
			m->first_channel = ev->channel;
		if (m->first_metadata == NULL)
			m->first_metadata = ev->dispatch_metadata;
	}

	partoo_store_begin(&sc);
	PG_TRY();
	{
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
		fetch_dispatch_messages(&ds, created_by);

		/* 2. final keys, and those already recorded */
		for (i = 0; i < n; i++)
		{
			WhEvent    *ev = evs[i];

			if (ev->concerns_status && ev->source == PARTOO_SOURCE_PARTOO)
			{
				WhPartooMsg *m = hash_search(pmsgs, &ev->partoo_id, HASH_FIND, NULL);

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
			WhEvent    *ev = evs[i];
			bool		dup;

			(void) hash_search(seen, ev->dedup_key, HASH_ENTER, &dup);
			if (dup)
				ev->outcome = "duplicate";
			else if (!ev->concerns_status)
				ev->outcome = "ignored";
			else if (ev->source == PARTOO_SOURCE_DISPATCH)
				ev->outcome = decide_dispatch(dispatch_set_get(&ds, ev->dispatch_id,
															   ev->recipient, false),
											  ev);
			else
			{
				WhPartooMsg *m = hash_search(pmsgs, &ev->partoo_id, HASH_FIND, NULL);

				ev->outcome = (m == NULL || !m->found) ? "pending" : decide_partoo(m, ev);
			}
		}

		/* 4. write */
		insert_events(evs, n);
		applying++;
		write_partoo_messages(pmsgs);
		write_dispatch_messages(&ds);
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
	WhEvent    *ev;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("webhook payload must not be null")));
	ev = parse_event(PG_GETARG_DATUM(0));
	authenticate(ev, arg_signature(fcinfo, 1));
	ingest_events(&ev, 1);
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
	WhEvent   **evs;
	TupleDesc	tupdesc;
	Tuplestorestate *tupstore;
	MemoryContext oldcxt;
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

	/* parse and authenticate everything before touching anything */
	evs = palloc(sizeof(WhEvent *) * Max(n, 1));
	bctx.count = n;
	errcb.callback = batch_error_callback;
	errcb.arg = &bctx;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;
	for (i = 0; i < n; i++)
	{
		bctx.index = i;
		if (pnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("webhook payload must not be null")));
		evs[i] = parse_event(pvals[i]);
		authenticate(evs[i], (svals != NULL && !snulls[i]) ?
					 DatumGetTextPP(svals[i]) : NULL);
	}
	error_context_stack = errcb.previous;

	if (n > 0)
		ingest_events(evs, n);

	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	tupdesc = CreateTemplateTupleDesc(1);
	TupleDescInitEntry(tupdesc, (AttrNumber) 1, "partoo_ingest_webhooks", TEXTOID, -1, 0);
	tupstore = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tupstore;
	rsinfo->setDesc = tupdesc;
	MemoryContextSwitchTo(oldcxt);

	for (i = 0; i < n; i++)
	{
		Datum		value = CStringGetTextDatum(evs[i]->outcome);
		bool		isnull = false;

		tuplestore_putvalues(tupstore, tupdesc, &value, &isnull);
	}
	return (Datum) 0;
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
	WhEvent   **evs;
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
	keep_plan(&plan_any,
			  "SELECT EXISTS (SELECT 1 FROM partoo.events WHERE outcome = 'pending')",
			  0, NULL);
	rc = run_plan(plan_any, NULL, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.events: %s", SPI_result_code_string(rc));
	{
		bool		isnull;

		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
										1, &isnull)))
			return;
	}

	keep_plan(&plan_pending,
			  "SELECT id, partoo_id, payload FROM partoo.events"
			  " WHERE outcome = 'pending' AND partoo_id = ANY ($1) ORDER BY id",
			  1, any_types);
	args[0] = int64_array(pids, n);
	rc = run_plan(plan_pending, args, NULL);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.events: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return;

	evs = palloc(sizeof(WhEvent *) * SPI_processed);
	found_pids = palloc(sizeof(int64) * SPI_processed);
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		id = col_int64(t, d, 1, &isnull);
		Datum		payload = SPI_getbinval(t, d, 3, &isnull);
		text	   *body = DatumGetTextPP(payload);
		PartooWebhookError err;
		PartooWebhookEvent *pe;
		WhEvent    *ev;

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
		ev = palloc0(sizeof(WhEvent));
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
		WhEvent    *ev = evs[i];
		WhPartooMsg *m = hash_search(pmsgs, &ev->partoo_id, HASH_FIND, NULL);

		if (m == NULL || !m->found)
			elog(ERROR, "message with partoo_id " INT64_FORMAT " vanished", ev->partoo_id);
		ev->outcome = decide_partoo(m, ev);
		ids[i] = Int64GetDatum(ev->event_id);
		outcomes[i] = CStringGetTextDatum(ev->outcome);
		mids[i] = Int64GetDatum(m->id);
	}

	keep_plan(&plan_update,
			  "UPDATE partoo.events e"
			  "   SET outcome = u.outcome, message_id = u.message_id,"
			  "       applied_at = CASE WHEN u.outcome = 'applied' THEN now() END"
			  "  FROM unnest($1, $2, $3) AS u(id, outcome, message_id)"
			  " WHERE e.id = u.id AND e.outcome = 'pending'",
			  3, upd_types);
	args[0] = make_array(ids, NULL, nev, INT8OID);
	args[1] = make_array(outcomes, NULL, nev, TEXTOID);
	args[2] = make_array(mids, NULL, nev, INT8OID);
	rc = run_plan(plan_update, args, NULL);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not update partoo.events: %s", SPI_result_code_string(rc));
	write_partoo_messages(pmsgs);
}

/*
 * partoo.webhook_apply_pending(): AFTER INSERT and AFTER UPDATE statement
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
	uint64		mask = 0;
	int			ptr;
	PartooStoreContext sc;

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
	if (applying > 0)
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
		pids[npids] = DatumGetInt64(v);
		mask |= UINT64CONST(1) << bucket_of(pids[npids]);
		npids++;
	}
	tuplestore_select_read_pointer(ts, 0);
	ExecDropSingleTupleTableSlot(slot);
	if (npids == 0)
		return PointerGetDatum(NULL);

	lock_buckets_shared(mask);
	partoo_store_begin(&sc);
	PG_TRY();
	{
		applying++;
		apply_pending(pids, npids);
		applying--;
	}
	PG_CATCH();
	{
		applying = 0;
		PG_RE_THROW();
	}
	PG_END_TRY();
	partoo_store_end(&sc);
	return PointerGetDatum(NULL);
}
