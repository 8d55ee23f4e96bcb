/*-------------------------------------------------------------------------
 *
 * store.c
 *		The SQL the partoo_* functions run on partoo's tables.
 *
 * Every statement runs as the extension's owner between
 * partoo_store_begin() and partoo_store_end() (db.c, which says why).
 * Recording a sent message hands its Partoo id to webhook application
 * (partoo_webhook_apply_recorded), the one call from here into the webhook
 * code, which never calls back.
 *
 * src/server/store.c
 *
 *-------------------------------------------------------------------------
 */
#include "server/partoo.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "server/db.h"
#include "server/message.h"
#include "server/reconcile.h"
#include "server/store.h"
#include "server/webhook.h"

char	   *partoo_api_key = NULL;
char	   *partoo_base_url = NULL;
int			partoo_requests_per_minute = 300;

/*
 * A base URL must be http or https with a host.  Anything else (file://,
 * gopher://, a bare host) is refused before it can reach libcurl.
 */
bool
partoo_valid_base_url(const char *url)
{
	const char *rest;

	if (url == NULL)
		return false;
	if (pg_strncasecmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (pg_strncasecmp(url, "http://", 7) == 0)
		rest = url + 7;
	else
		return false;
	if (*rest == '\0' || *rest == '/')
		return false;
	for (; *rest; rest++)
	{
		if ((unsigned char) *rest <= ' ' || *rest == 0x7f)
			return false;
	}
	return true;
}

static bool
check_base_url(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || partoo_valid_base_url(*newval))
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("The base URL must start with http:// or https:// and name a host.");
	return false;
}

/*
 * Define the default account's settings: partoo.api_key, partoo.base_url,
 * partoo.requests_per_minute.  NB: partoo.api_key and partoo.base_url
 * together decide where an API key is sent, so both are PGC_SUSET, and the
 * key is GUC_SUPERUSER_ONLY so that SHOW and pg_settings hide it from
 * everybody else.
 * Called once from _PG_init (partoo.c).
 */
void
partoo_account_define_gucs(void)
{
	DefineCustomStringVariable("partoo.api_key",
							   "API key of the default Partoo account.",
							   "Sent in the x-APIKey header when a function is called with account => NULL. "
							   "Only superusers can set or see it.",
							   &partoo_api_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("partoo.base_url",
							   "Base URL of the Partoo API for the default account.",
							   "Must start with http:// or https://. The sandbox is https://api.sandbox.partoo.co/v2.",
							   &partoo_base_url,
							   "https://api.partoo.co/v2",
							   PGC_SUSET,
							   0,
							   check_base_url, NULL, NULL);

	DefineCustomIntVariable("partoo.requests_per_minute",
							"Rate limit of the default account, in requests per minute; 0 means unlimited.",
							"Partoo allows 300 requests per minute per organisation by default.",
							&partoo_requests_per_minute,
							300, 0, 10000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);
}

PG_FUNCTION_INFO_V1(partoo_message_state_valid);

/* Copy a text column of the first result row, or NULL, out of SPI memory */
static char *
result_text(int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  col, &isnull);
	MemoryContext old;
	char	   *s;

	if (isnull)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	s = TextDatumGetCString(d);
	MemoryContextSwitchTo(old);
	return s;
}

/*
 * The credentials of an account: name NULL is the default account made of
 * partoo.api_key, partoo.base_url and partoo.requests_per_minute.  The
 * result is palloc'd in the caller's context.  ereports when the account
 * does not exist or has no key.
 */
PartooAccount *
partoo_store_get_account(const char *name)
{
	static SPIPlanPtr plan = NULL;
	PartooAccount *acct = palloc0(sizeof(PartooAccount));
	MemoryContext cxt = CurrentMemoryContext;
	PartooStoreContext sc;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1];
	int			rc;

	if (name == NULL)
	{
		if (partoo_api_key == NULL || partoo_api_key[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("partoo.api_key is not set"),
					 errdetail("The default account (account => NULL) takes its API key from partoo.api_key."),
					 errhint("Have a superuser set partoo.api_key, or pass the name of a row of partoo.accounts as account.")));
		acct->api_key = pstrdup(partoo_api_key);
		acct->base_url = pstrdup(partoo_base_url);
		acct->requests_per_minute = partoo_requests_per_minute;
		return acct;
	}

	partoo_store_begin(&sc);
	partoo_plan_once(&plan,
			  "SELECT api_key, base_url, requests_per_minute"
			  "  FROM partoo.accounts WHERE name = $1",
			  1, argtypes, 0);
	args[0] = CStringGetTextDatum(name);
	rc = SPI_execute_plan(plan, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.accounts: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("account \"%s\" does not exist", name),
				 errhint("Accounts are rows of partoo.accounts; pass NULL for the default account.")));
	acct->name = MemoryContextStrdup(cxt, name);
	acct->api_key = result_text(1, cxt);
	acct->base_url = result_text(2, cxt);
	{
		bool		isnull;

		acct->requests_per_minute =
			DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 3, &isnull));
	}
	partoo_store_end(&sc);

	if (acct->base_url == NULL)
		acct->base_url = pstrdup(partoo_base_url);
	return acct;
}

static Datum
text_or_null(text *t, char *nulls, int i)
{
	if (t == NULL)
	{
		nulls[i] = 'n';
		return (Datum) 0;
	}
	return PointerGetDatum(t);
}

static Datum
cstring_or_null(const char *s, char *nulls, int i)
{
	if (s == NULL)
	{
		nulls[i] = 'n';
		return (Datum) 0;
	}
	return CStringGetTextDatum(s);
}

/*
 * The columns both INSERTs of a message start with, parameters $1 to $9,
 * and their values from in.  args and nulls have room for more.
 */
#define MESSAGE_NARGS 9
#define MESSAGE_COLUMNS \
	"account, conversation_id, content_type, content, url, image," \
	" filename, channel, metadata"

static void
message_args(PartooMessageInput *in, Oid *argtypes, Datum *args, char *nulls)
{
	static const Oid types[MESSAGE_NARGS] = {TEXTOID, INT8OID, TEXTOID,
	TEXTOID, TEXTOID, BYTEAOID, TEXTOID, TEXTOID, JSONBOID};

	memcpy(argtypes, types, sizeof(types));
	args[0] = cstring_or_null(in->account, nulls, 0);
	args[1] = Int64GetDatum(in->conversation_id);
	args[2] = CStringGetTextDatum(in->content_type);
	args[3] = text_or_null(in->content, nulls, 3);
	args[4] = text_or_null(in->url, nulls, 4);
	args[5] = text_or_null((text *) in->image, nulls, 5);
	args[6] = text_or_null(in->filename, nulls, 6);
	args[7] = cstring_or_null(in->channel, nulls, 7);
	args[8] = in->has_metadata ? in->metadata : (Datum) 0;
	if (!in->has_metadata)
		nulls[8] = 'n';
}

/*
 * Record a message partoo_send has just sent: state 'sent', Partoo's id,
 * status 'Sending', and, when reconciliation is on, its partoo.reconcile
 * row (what partoo_reconcile_track would insert for it), in one statement
 * of the caller's transaction.  Returns the local id.
 *
 * partoo_send runs this only where the enqueue buffer cannot be used
 * (batch.c: a read-only transaction, a call made while the buffer is being
 * written); the buffer writes the same rows for many calls at once.  One
 * statement: the message's id is new, so its reconcile row is a plain
 * INSERT, not partoo_reconcile_track's upsert of an array.
 */
int64
partoo_store_sent_message(PartooMessageInput *in, int64 partoo_id, long http_status)
{
	static SPIPlanPtr plan = NULL;			/* the message alone */
	static SPIPlanPtr plan_tracked = NULL;	/* and its reconcile row */
	Oid			argtypes[14];
	Datum		args[14];
	char		nulls[15];
	PartooStoreContext sc;
	bool		track;
	int			rc;
	bool		isnull;
	int64		id;

	memset(nulls, ' ', sizeof(nulls));
	nulls[14] = '\0';
	message_args(in, argtypes, args, nulls);
	argtypes[9] = INT8OID;
	args[9] = Int64GetDatum(partoo_id);
	argtypes[10] = INT4OID;
	args[10] = Int32GetDatum((int32) http_status);
	argtypes[11] = TEXTOID;
	args[11] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	argtypes[12] = TIMESTAMPTZOID;
	args[12] = TimestampTzGetDatum(in->created_at);
	argtypes[13] = INT8OID;
	args[13] = Int64GetDatum((int64) partoo_reconcile_after_ms);

#define SENT_MESSAGE_INSERT \
	"INSERT INTO partoo.messages" \
	" (" MESSAGE_COLUMNS ", partoo_id, last_http_status," \
	"  created_by, created_at, state, partoo_status, status_at," \
	"  attempts, sent_at)" \
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13," \
	"  'sent', 'Sending', now(), 1, now())" \
	" RETURNING id"

	partoo_store_begin(&sc);
	/* its status is read from the API if no webhook brings it */
	track = partoo_reconcile_tracking();
	if (track)
	{
		partoo_plan_once(&plan_tracked,
						 "WITH m AS (" SENT_MESSAGE_INSERT ") "
						 PARTOO_RECONCILE_INSERT("m", "$14")
						 " RETURNING message_id",
						 14, argtypes, CURSOR_OPT_GENERIC_PLAN);
		rc = SPI_execute_plan(plan_tracked, args, nulls, false, 0);
	}
	else
	{
		partoo_plan_once(&plan, SENT_MESSAGE_INSERT,
						 13, argtypes, CURSOR_OPT_GENERIC_PLAN);
		rc = SPI_execute_plan(plan, args, nulls, false, 0);
	}
#undef SENT_MESSAGE_INSERT
	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "could not record message in partoo.messages: %s",
			 SPI_result_code_string(rc));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1, &isnull));
	partoo_store_end(&sc);

	/* webhook events that beat the response to us wait for this id */
	partoo_webhook_apply_recorded(&partoo_id, 1);
	return id;
}

/*
 * The account a message with Partoo id partoo_id was sent with.  *found
 * tells whether such a message is recorded here at all; the result is
 * NULL for the default account.
 */
char *
partoo_store_account_of(int64 partoo_id, bool *found)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	PartooStoreContext sc;
	MemoryContext cxt = CurrentMemoryContext;
	char	   *account = NULL;
	int			rc;

	args[0] = Int64GetDatum(partoo_id);
	partoo_store_begin(&sc);
	partoo_plan_once(&plan,
			  "SELECT account FROM partoo.messages WHERE partoo_id = $1",
			  1, argtypes, 0);
	rc = SPI_execute_plan(plan, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.messages: %s", SPI_result_code_string(rc));
	*found = (SPI_processed > 0);
	if (*found)
		account = result_text(1, cxt);
	partoo_store_end(&sc);
	return account;
}

/* A retry of the message with Partoo id partoo_id was accepted */
void
partoo_store_retried(int64 partoo_id)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	PartooStoreContext sc;
	int			rc;

	args[0] = Int64GetDatum(partoo_id);
	partoo_store_begin(&sc);
	partoo_plan_once(&plan,
			  "UPDATE partoo.messages"
			  "   SET state = 'sent', partoo_status = 'Sending', status_at = now(),"
			  "       attempts = attempts + 1, retry_requested_at = clock_timestamp(),"
			  "       last_http_status = 200, last_error = NULL, updated_at = now()"
			  " WHERE partoo_id = $1"
			  " RETURNING id",
			  1, argtypes, 0);
	rc = SPI_execute_plan(plan, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not update partoo.messages: %s", SPI_result_code_string(rc));
	if (SPI_processed == 1)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 1, &isnull));

		/* the retry's status is read from the API if no webhook brings it */
		partoo_reconcile_track(&id, 1);
	}
	partoo_store_end(&sc);
}

/*
 * Insert a queued message and its outbox row in the caller's transaction.
 * With an idempotency key already used for the same account, nothing is
 * inserted and the first message's id is returned.
 */
int64
partoo_store_enqueue(PartooMessageInput *in, const char *idempotency_key,
					 bool has_send_at, TimestampTz send_at)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr plan_existing = NULL;
	Oid			argtypes[14];
	Datum		args[14];
	char		nulls[15];
	PartooStoreContext sc;
	int			rc;
	bool		isnull;
	int64		id;

	memset(nulls, ' ', sizeof(nulls));
	nulls[14] = '\0';
	message_args(in, argtypes, args, nulls);
	argtypes[9] = TEXTOID;
	args[9] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	argtypes[10] = TIMESTAMPTZOID;
	args[10] = TimestampTzGetDatum(in->created_at);
	argtypes[11] = TEXTOID;
	args[11] = cstring_or_null(idempotency_key, nulls, 11);
	argtypes[12] = TIMESTAMPTZOID;
	args[12] = TimestampTzGetDatum(send_at);
	if (!has_send_at)
		nulls[12] = 'n';
	argtypes[13] = TEXTOID;
	args[13] = CStringGetTextDatum(in->account ? in->account : "");

	partoo_store_begin(&sc);
	partoo_plan_once(&plan,
			  "WITH m AS ("
			  "  INSERT INTO partoo.messages"
			  "   (" MESSAGE_COLUMNS ", created_by, created_at,"
			  "    idempotency_key, send_at, state)"
			  "  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'queued')"
			  "  ON CONFLICT ((coalesce(account, '')), idempotency_key)"
			  "    WHERE idempotency_key IS NOT NULL DO NOTHING"
			  "  RETURNING id),"
			  " o AS ("
			  "  INSERT INTO partoo.outbox (message_id, account, run_at)"
			  "  SELECT id, $14, coalesce($13, now()) FROM m)"
			  " SELECT id FROM m",
			  14, argtypes, 0);
	rc = SPI_execute_plan(plan, args, nulls, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not queue message: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
	{
		Oid			types2[2] = {TEXTOID, TEXTOID};
		Datum		args2[2];

		/* the idempotency key was used before: return that message */
		args2[0] = args[13];
		args2[1] = args[11];
		partoo_plan_once(&plan_existing,
				  "SELECT id FROM partoo.messages"
				  " WHERE coalesce(account, '') = $1 AND idempotency_key = $2",
				  2, types2, 0);
		rc = SPI_execute_plan(plan_existing, args2, NULL, false, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not find message with idempotency key");
	}
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									 SPI_tuptable->tupdesc, 1, &isnull));
	partoo_store_end(&sc);
	return id;
}

/*
 * partoo.message_state_valid(text): the CHECK constraint of
 * partoo.messages.state.  The list is README.md's.
 */
Datum
partoo_message_state_valid(PG_FUNCTION_ARGS)
{
	static const char *const states[] = {
		"queued", "sending", "sent", "delivered", "failed", "read",
		"rejected", "dead", "canceled"
	};
	text	   *t = PG_GETARG_TEXT_PP(0);
	const char *s = VARDATA_ANY(t);
	size_t		len = VARSIZE_ANY_EXHDR(t);
	int			i;

	for (i = 0; i < lengthof(states); i++)
	{
		if (strlen(states[i]) == len && memcmp(states[i], s, len) == 0)
			PG_RETURN_BOOL(true);
	}
	PG_RETURN_BOOL(false);
}
