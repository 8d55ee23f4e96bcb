/*-------------------------------------------------------------------------
 *
 * webhook_partoo.c
 *		The Partoo webhook format: message_updated and message_created
 *		events, signed with Ed25519 (X-Partoo-Signature-v1), that change the
 *		status of a message partoo sent; and the setting
 *		partoo.webhook_public_key.
 *
 * An event names its message by Partoo id (partoo.messages.partoo_id).
 * Partoo sends no event time, so the protocol core's life-cycle rules
 * decide (partoo_status_apply); the state of a message whose outbox row
 * is queued or in flight stays the worker's.  Partoo resends identical
 * bodies for every attempt of a message, so once a retry is recorded the
 * event's dedup key gets the suffix "/r<retry_requested_at>".
 *
 * An event for a Partoo id not recorded yet is 'pending': the ingest then
 * takes the id's bucket (webhook_bucket.c) and looks again NOWAIT.  Such
 * an event is applied later from its stored columns (restore(), called by
 * webhook_apply.c), never parsed again: its status column, its partoo_id,
 * and is_deleted as its dedup key records it.
 *
 * A second format, "reconcile", is the same events read by the worker
 * from GET /messages instead of a webhook (server/reconcile.c): the same
 * messages, fetched, decided and written by the same functions, stored
 * in partoo.events with source 'reconcile'.  It never recognises a body.
 *
 * Implements PartooWebhookFormat (webhook_format.h); calls only the
 * protocol core, server/db.c and webhook_bucket.c.
 *
 * src/server/webhook_partoo.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"

#include "core/signature.h"
#include "core/webhook.h"
#include "server/db.h"
#include "server/webhook.h"
#include "server/webhook_format.h"

/* Partoo's published keys (base64 SubjectPublicKeyInfo, Ed25519) */
#define PARTOO_WEBHOOK_KEY_PRODUCTION "MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQ="
#define PARTOO_WEBHOOK_KEY_SANDBOX "MCowBQYDK2VwAyEALsyvX2yVnG3ZKRIFfEvYk2nkzanoNgAqBSqdeNub4sM="

/* Room for an error from partoo_public_key_load() */
#define KEY_ERRBUF_SIZE		256
/* Initial size of a batch's message table */
#define MSG_TABLE_SIZE		256

char	   *partoo_webhook_public_key = NULL;

/* The public key, loaded from partoo.webhook_public_key when it changes */
static PartooPublicKey *cached_key = NULL;
static char *cached_key_text = NULL;

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

/* The Partoo events of a batch and their messages */
typedef struct PartooBatch
{
	int64	   *pids;			/* the Partoo ids named, sorted, distinct */
	int			npids;
	PartooIngestEvent **evs;
	int			n;
	HTAB	   *msgs;			/* MsgState by partoo_id */
} PartooBatch;

/* ----------------------------------------------------------------
 * The setting, recognition, parsing, authentication
 * ----------------------------------------------------------------
 */

static bool
check_public_key(char **newval, void **extra, GucSource source)
{
	char		errbuf[KEY_ERRBUF_SIZE];
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

static void
partoo_define_gucs(void)
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
}

static bool
partoo_recognise(const struct cJSON *root)
{
	return partoo_webhook_is_partoo(root);
}

static PartooWebhookEvent *
partoo_parse(const struct cJSON *root, const char *body, size_t len,
			 PartooWebhookError *err)
{
	return partoo_webhook_parse_partoo(root, body, len, err);
}

static const PartooPublicKey *
public_key(void)
{
	char		errbuf[KEY_ERRBUF_SIZE];

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
 * signature is X-Partoo-Signature-v1, a base64 Ed25519 signature of the
 * raw body.  55000 when a signature came and there is no key to check it.
 */
static void
partoo_authenticate(const PartooIngestEvent *ev, text *signature, bool required)
{
	text	   *body = DatumGetTextPP(ev->payload);
	const PartooPublicKey *key;
	PartooSignatureResult r;

	if (signature == NULL)
	{
		if (required)
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
}

/*
 * A pending event from its columns: the status as received, and
 * is_deleted from the dedup key (see PartooWebhookEvent.dedup_key).
 */
static bool
partoo_restore(PartooIngestEvent *ev)
{
	ev->status = partoo_status_from_name(ev->status_raw);
	ev->concerns_status = true;
	return ev->partoo_id != 0 && ev->status != PARTOO_STATUS_UNKNOWN &&
		partoo_webhook_key_is_deleted(ev->dedup_key, &ev->is_deleted);
}

/* ----------------------------------------------------------------
 * Messages
 * ----------------------------------------------------------------
 */

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
fetch_messages(HTAB *msgs, int64 *ids, int n, bool lock, bool nowait)
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
	args[0] = partoo_int64_array(ids, n);
	rc = partoo_run_plan_latest(plan, args, NULL);
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

static MsgState *
found_message(PartooBatch *b, int64 partoo_id)
{
	MsgState   *m = hash_search(b->msgs, &partoo_id, HASH_FIND, NULL);

	return (m != NULL && m->found) ? m : NULL;
}

/*
 * Ingest: lock the messages; for the ids not found, take their buckets
 * (so that the transaction recording them, if any, applies our pending
 * events once we commit, see webhook_bucket.c) and look again, NOWAIT.
 */
static void
lock_messages(PartooBatch *b)
{
	int64	   *missing;
	int			nmissing = 0;
	int			i;

	fetch_messages(b->msgs, b->pids, b->npids, true, false);
	if (hash_get_num_entries(b->msgs) == b->npids)
		return;
	missing = palloc(sizeof(int64) * b->npids);
	for (i = 0; i < b->npids; i++)
		if (found_message(b, b->pids[i]) == NULL)
			missing[nmissing++] = b->pids[i];
	partoo_webhook_lock_buckets_exclusive(partoo_webhook_buckets_of(missing, nmissing));
	fetch_messages(b->msgs, missing, nmissing, true, true);
}

/* The final dedup keys: a retry recorded makes the next attempt's events new */
static void
add_retry_suffixes(PartooBatch *b)
{
	int			i;

	for (i = 0; i < b->n; i++)
	{
		PartooIngestEvent *ev = b->evs[i];
		MsgState   *m;

		if (!ev->concerns_status)
			continue;
		m = found_message(b, ev->partoo_id);
		if (m != NULL && m->has_retry)
			ev->dedup_key = psprintf("%s/r" INT64_FORMAT, ev->dedup_key,
									 (int64) m->retry_requested_at);
	}
}

/*
 * Decide a Partoo status event against its message (found) and record
 * the change in memory.  Returns the outcome.
 */
static const char *
decide_against(MsgState *m, PartooIngestEvent *ev)
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
 * the statement that recorded them), so all of them must be found.
 */
static void
write_messages(HTAB *msgs)
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
	rc = partoo_run_plan_latest(plan, args, NULL);
	if (rc != SPI_OK_UPDATE || SPI_processed != (uint64) k)
		elog(ERROR, "could not update partoo.messages: %s, " UINT64_FORMAT " of %d rows",
			 SPI_result_code_string(rc), SPI_processed, k);
}

/* ----------------------------------------------------------------
 * The batch steps (PartooWebhookFormat)
 * ----------------------------------------------------------------
 */

/* The Partoo ids the status events name, sorted and distinct */
static void *
partoo_begin(PartooIngestEvent **evs, int n)
{
	PartooBatch *b = palloc0(sizeof(PartooBatch));
	HASHCTL		ctl;
	int			i;

	b->evs = evs;
	b->n = n;
	b->pids = palloc(sizeof(int64) * n);
	for (i = 0; i < n; i++)
		if (evs[i]->concerns_status)
			b->pids[b->npids++] = evs[i]->partoo_id;
	if (b->npids > 1)
	{
		int			j = 0;

		qsort(b->pids, b->npids, sizeof(int64), cmp_int64);
		for (i = 1; i < b->npids; i++)
			if (b->pids[i] != b->pids[j])
				b->pids[++j] = b->pids[i];
		b->npids = j + 1;
	}

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(MsgState);
	ctl.hcxt = CurrentMemoryContext;
	b->msgs = hash_create("partoo webhook messages", MSG_TABLE_SIZE, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	return b;
}

static void
partoo_fetch(void *batch, PartooFetchMode mode, const char *created_by)
{
	PartooBatch *b = (PartooBatch *) batch;

	if (mode == PARTOO_FETCH_PENDING)
	{
		fetch_messages(b->msgs, b->pids, b->npids, false, false);
		return;
	}
	lock_messages(b);
	add_retry_suffixes(b);
}

/* pending when the message is not recorded (yet) */
static const char *
partoo_decide(void *batch, PartooIngestEvent *ev)
{
	MsgState   *m = found_message((PartooBatch *) batch, ev->partoo_id);

	return m == NULL ? "pending" : decide_against(m, ev);
}

static void
partoo_write(void *batch)
{
	write_messages(((PartooBatch *) batch)->msgs);
}

const PartooWebhookFormat partoo_webhook_format_partoo = {
	.name = "partoo",
	.shape = "a Partoo event has the fields \"type\" and \"payload\"",
	.define_gucs = partoo_define_gucs,
	.recognise = partoo_recognise,
	.parse = partoo_parse,
	.authenticate = partoo_authenticate,
	.restore = partoo_restore,
	.begin = partoo_begin,
	.fetch = partoo_fetch,
	.decide = partoo_decide,
	.write = partoo_write,
};

/* ----------------------------------------------------------------
 * Statuses read from GET /messages (reconciliation)
 * ----------------------------------------------------------------
 */

/* Never a webhook body: reconcile.c makes these events itself */
static bool
reconcile_recognise(const struct cJSON *root)
{
	return false;
}

/*
 * As a webhook of the Partoo format would be decided.  The worker asks
 * only about messages it found recorded, so none is pending; one that
 * vanished since (purged) is ignored, never left pending: a reconcile
 * event is not restored later.
 */
static const char *
reconcile_decide(void *batch, PartooIngestEvent *ev)
{
	const char *outcome = partoo_decide(batch, ev);

	return strcmp(outcome, "pending") == 0 ? "ignored" : outcome;
}

const PartooWebhookFormat partoo_webhook_format_reconcile = {
	.name = "reconcile",
	.shape = NULL,
	.define_gucs = NULL,
	.recognise = reconcile_recognise,
	.parse = NULL,
	.authenticate = NULL,
	.restore = NULL,
	.begin = partoo_begin,
	.fetch = partoo_fetch,
	.decide = reconcile_decide,
	.write = partoo_write,
};
