/*-------------------------------------------------------------------------
 *
 * notify.c
 *		partoo.notify_status: NOTIFY partoo_status with the message's id,
 *		state and partoo_status whenever a message's state changes.
 *
 * Two AFTER ROW triggers on partoo.messages call partoo_messages_notify():
 * one on INSERT, one on UPDATE OF state whose WHEN clause keeps only rows
 * whose state really changed.  Both WHEN clauses also call
 * partoo.notify_status_enabled(), so that with the setting off (the
 * default) no trigger event is even queued: a bulk enqueue pays one
 * function call per row, not an after-trigger event.  Being AFTER
 * triggers, they see the row as it was finally written, whatever other
 * triggers did to it.
 *
 * NOTIFY is transactional: the notification goes out when the transaction
 * that changed the state commits, and not at all if it (or the
 * subtransaction) rolls back.  It also takes a lock at commit that orders
 * the commits of every notifying transaction of the cluster, which is
 * why the setting is off by default.
 *
 * src/server/notify.c
 *
 *-------------------------------------------------------------------------
 */
#include "server/partoo.h"

#include "access/htup_details.h"
#include "commands/async.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/rel.h"

#include "server/notify.h"

PG_FUNCTION_INFO_V1(partoo_messages_notify);
PG_FUNCTION_INFO_V1(partoo_notify_status_enabled);

static bool partoo_notify_status = false;

/*
 * A partoo_status longer than this (in characters) is cut in the payload: it comes from
 * Partoo and is not bounded, while a NOTIFY payload must stay under 8000
 * bytes.  Real statuses are short words.
 */
#define PARTOO_NOTIFY_STATUS_MAX	200

void
partoo_notify_define_gucs(void)
{
	DefineCustomBoolVariable("partoo.notify_status",
							 "Send NOTIFY partoo_status whenever a message's state changes.",
							 "The payload is {\"id\": ..., \"state\": ..., \"partoo_status\": ...}, "
							 "sent when the transaction that changed the state commits.",
							 &partoo_notify_status,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
}

/*
 * partoo.notify_status_enabled(): the triggers' WHEN clause.
 */
Datum
partoo_notify_status_enabled(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(partoo_notify_status);
}

/*
 * The text of column "name" of the row, or NULL.
 */
static char *
row_text(HeapTuple tuple, TupleDesc desc, const char *name)
{
	int			attnum = SPI_fnumber(desc, name);

	if (attnum <= 0)
		elog(ERROR, "partoo.messages has no column \"%s\"", name);
	return SPI_getvalue(tuple, desc, attnum);
}

/*
 * partoo.messages_notify(): the AFTER ROW trigger of partoo.messages.
 */
Datum
partoo_messages_notify(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;
	TupleDesc	desc;
	char	   *id;
	char	   *state;
	char	   *status;
	StringInfoData payload;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		  TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("partoo.messages_notify() must be an AFTER INSERT or UPDATE trigger FOR EACH ROW")));

	/* Turned off between the WHEN clause and now (SET in a later statement) */
	if (!partoo_notify_status)
		return PointerGetDatum(NULL);

	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ?
		trigdata->tg_newtuple : trigdata->tg_trigtuple;
	desc = RelationGetDescr(trigdata->tg_relation);

	id = row_text(tuple, desc, "id");
	state = row_text(tuple, desc, "state");
	status = row_text(tuple, desc, "partoo_status");
	if (id == NULL || state == NULL)
		return PointerGetDatum(NULL);
	if (status != NULL)
		status[pg_mbcharcliplen(status, strlen(status), PARTOO_NOTIFY_STATUS_MAX)] = '\0';

	initStringInfo(&payload);
	appendStringInfo(&payload, "{\"id\": %s, \"state\": ", id);
	escape_json(&payload, state);
	appendStringInfoString(&payload, ", \"partoo_status\": ");
	if (status != NULL)
		escape_json(&payload, status);
	else
		appendStringInfoString(&payload, "null");
	appendStringInfoChar(&payload, '}');

	Async_Notify(PARTOO_NOTIFY_CHANNEL, payload.data);

	pfree(payload.data);
	return PointerGetDatum(NULL);
}
