/*-------------------------------------------------------------------------
 *
 * enqueue.c
 *		partoo_enqueue() and partoo.enqueue_trigger(): the transactional
 *		path into the outbox.
 *
 * Both validate the message exactly like partoo_send (message.c), then
 * insert the message row and its outbox row in the caller's transaction
 * and ask for the worker to be woken when that transaction commits.  If
 * it rolls back, both rows vanish and nobody is woken: nothing is sent.
 *
 * The trigger builds its message from the new row: a column holding the
 * conversation id and a template whose {{column}} placeholders take the
 * row's values.  Values are always passed as query parameters, never
 * spliced into SQL.
 *
 * src/server/enqueue.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "server/batch.h"
#include "server/message.h"
#include "server/store.h"
#include "server/shmem.h"

PG_FUNCTION_INFO_V1(partoo_enqueue);
PG_FUNCTION_INFO_V1(partoo_enqueue_trigger);

/*
 * Check that a named account exists, at most once per account name and
 * transaction (a trigger on a bulk load would otherwise read
 * partoo.accounts once per row).
 */
static void
check_account(const char *name)
{
	static char *last_name = NULL;	/* in TopMemoryContext; any length */
	static LocalTransactionId last_lxid = InvalidLocalTransactionId;
	char	   *copy;

	if (name == NULL)
	{
		/* the default account needs a key, now rather than in the worker */
		(void) partoo_store_get_account(NULL);
		return;
	}
	if (last_lxid == PartooMyLocalTransactionId() && last_name != NULL &&
		strcmp(last_name, name) == 0)
		return;
	(void) partoo_store_get_account(name);
	copy = MemoryContextStrdup(TopMemoryContext, name);
	if (last_name != NULL)
		pfree(last_name);
	last_name = copy;
	last_lxid = PartooMyLocalTransactionId();
}

/*
 * Validate, store, wake at commit; returns partoo.messages.id.  The row is
 * buffered (batch.c) unless it has an idempotency key, which must be
 * looked up: then the buffer is written first and the row goes in alone.
 */
static int64
enqueue(PartooMessageInput *in, const char *idempotency_key,
		bool has_send_at, TimestampTz send_at)
{
	int64		id;

	partoo_message_prepare(in);
	if (idempotency_key != NULL &&
		(idempotency_key[0] == '\0' || strlen(idempotency_key) > 200))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("idempotency_key must be between 1 and 200 bytes long"),
				 errhint("Pass NULL when the message needs no idempotency key.")));
	if (has_send_at && TIMESTAMP_NOT_FINITE(send_at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("send_at must be a finite time"),
				 errhint("Pass NULL to send as soon as the transaction commits.")));
	check_account(in->account);
	if (idempotency_key == NULL && partoo_batch_usable())
		id = partoo_batch_add(in, has_send_at, send_at);
	else
	{
		if (partoo_batch_usable())
			partoo_batch_flush();
		id = partoo_store_enqueue(in, idempotency_key, has_send_at, send_at);
	}
	partoo_wake_at_commit();
	return id;
}

/*
 * partoo_enqueue(conversation_id bigint, content text, content_type text,
 *				  url text, image bytea, filename text, channel text,
 *				  account text, idempotency_key text, send_at timestamptz,
 *				  metadata jsonb) RETURNS bigint
 */
Datum
partoo_enqueue(PG_FUNCTION_ARGS)
{
	PartooMessageInput in;

	partoo_message_from_args(fcinfo, 10, &in);

	PG_RETURN_INT64(enqueue(&in, partoo_arg_cstring(fcinfo, 8),
							!PG_ARGISNULL(9),
							PG_ARGISNULL(9) ? 0 : PG_GETARG_TIMESTAMPTZ(9)));
}

/* Column number of name in tupdesc, or an error naming what it was for */
static int
column_or_error(TupleDesc tupdesc, Relation rel, const char *name,
				const char *role)
{
	int			attnum = SPI_fnumber(tupdesc, name);

	if (attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" does not exist in table \"%s\"",
						name, RelationGetRelationName(rel)),
				 errdetail("partoo.enqueue_trigger uses it as %s.", role),
				 errhint("Fix the arguments of trigger on table \"%s\".",
						 RelationGetRelationName(rel))));
	return attnum;
}

/*
 * Replace each {{column}} of template with that column's value in tuple
 * (its text output; NULL gives the empty string).  An unmatched "{{" is
 * kept as it is.
 */
static char *
render_template(const char *template, HeapTuple tuple, TupleDesc tupdesc,
				Relation rel)
{
	StringInfoData buf;
	const char *p = template;

	initStringInfo(&buf);
	while (*p)
	{
		const char *open = strstr(p, "{{");
		const char *close;
		char	   *name;
		char	   *value;
		int			attnum;

		if (open == NULL || (close = strstr(open + 2, "}}")) == NULL)
		{
			appendStringInfoString(&buf, p);
			break;
		}
		appendBinaryStringInfo(&buf, p, open - p);
		name = pnstrdup(open + 2, close - open - 2);
		/* allow {{ name }} */
		while (*name == ' ')
			name++;
		while (*name && name[strlen(name) - 1] == ' ')
			name[strlen(name) - 1] = '\0';
		attnum = column_or_error(tupdesc, rel, name, "a template placeholder");
		value = SPI_getvalue(tuple, tupdesc, attnum);
		if (value != NULL)
			appendStringInfoString(&buf, value);
		p = close + 2;
	}
	return buf.data;
}

/*
 * partoo.enqueue_trigger(): AFTER INSERT OR UPDATE ... FOR EACH ROW.
 *
 * Arguments: conversation id column, template [, content_type
 * [, url column [, account]]].  For Text the rendered template is the
 * content; for media types the url column gives the URL and the template
 * is not used.
 */
Datum
partoo_enqueue_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	char	  **args;
	int			nargs;
	int			attnum;
	bool		isnull;
	Datum		value;
	Oid			typid;
	PartooMessageInput in;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("partoo.enqueue_trigger() must be called as a trigger")));
	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		  TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("partoo.enqueue_trigger() must be fired AFTER INSERT OR UPDATE FOR EACH ROW")));

	trigger = trigdata->tg_trigger;
	rel = trigdata->tg_relation;
	tupdesc = RelationGetDescr(rel);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	nargs = trigger->tgnargs;
	args = trigger->tgargs;
	if (nargs < 2 || nargs > 5)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("wrong number of arguments for partoo.enqueue_trigger()"),
				 errdetail("Trigger \"%s\" on table \"%s\" gives %d arguments; partoo.enqueue_trigger() takes 2 to 5.",
						   trigger->tgname, RelationGetRelationName(rel), nargs),
				 errhint("Arguments: conversation id column, template, and optionally content type, URL column, account.")));

	memset(&in, 0, sizeof(in));

	attnum = column_or_error(tupdesc, rel, args[0], "the conversation id");
	value = SPI_getbinval(tuple, tupdesc, attnum, &isnull);
	typid = SPI_gettypeid(tupdesc, attnum);
	in.conversation_id_isnull = isnull;
	if (!isnull)
	{
		if (typid == INT8OID)
			in.conversation_id = DatumGetInt64(value);
		else if (typid == INT4OID)
			in.conversation_id = DatumGetInt32(value);
		else if (typid == INT2OID)
			in.conversation_id = DatumGetInt16(value);
		else
			in.conversation_id =
				DatumGetInt64(DirectFunctionCall1(int8in,
												  CStringGetDatum(SPI_getvalue(tuple, tupdesc, attnum))));
	}

	in.content_type_arg = nargs >= 3 ? args[2] : "Text";
	if (pg_strcasecmp(in.content_type_arg, "Text") == 0)
		in.content = cstring_to_text(render_template(args[1], tuple, tupdesc, rel));
	if (nargs >= 4 && args[3][0] != '\0')
	{
		char	   *url;

		attnum = column_or_error(tupdesc, rel, args[3], "the media URL");
		url = SPI_getvalue(tuple, tupdesc, attnum);
		if (url != NULL)
			in.url = cstring_to_text(url);
	}
	if (nargs >= 5 && args[4][0] != '\0')
		in.account = args[4];

	(void) enqueue(&in, NULL, false, 0);
	return PointerGetDatum(tuple);
}
