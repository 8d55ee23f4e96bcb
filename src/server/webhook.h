/*-------------------------------------------------------------------------
 *
 * webhook.h
 *		Webhook events on their way into the tables: the ingest pipeline,
 *		pending events, the partoo.webhook_* settings (webhook.c,
 *		webhook_apply.c, webhook_dispatch.c).
 *
 * src/server/webhook.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_WEBHOOK_H
#define PARTOO_SERVER_WEBHOOK_H

#include "datatype/timestamp.h"

#include "core/webhook.h"
#include "server/db.h"

extern char *partoo_webhook_public_key;
extern bool partoo_webhook_require_signature;
extern char *partoo_dispatch_webhook_key;
extern int	partoo_webhook_max_bytes;

extern void partoo_webhook_define_gucs(void);

/* in webhook_apply.c */

/*
 * One webhook event on its way into the tables: what the protocol core
 * parsed (strings copied into palloc'd memory, checked to be valid in the
 * database encoding), then what was decided.  Strings may be shared with
 * the previous event of a batch.
 */
typedef struct PartooIngestEvent
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
} PartooIngestEvent;

/*
 * Cursor options of the webhook statements' plans (partoo_plan_once).
 * NB: always generic plans: a custom plan would copy the (possibly huge)
 * array parameters into the plan as constants and make the planner read
 * them, which costs more than the whole statement for a large batch.
 * (Sequential scans are off while they run, see webhook_apply.c.)  The
 * macro needs executor/spi.h.
 */
#define PARTOO_WEBHOOK_PLAN		CURSOR_OPT_GENERIC_PLAN

extern void partoo_webhook_ingest(PartooIngestEvent **evs, int n, Datum payloads);
extern void partoo_webhook_apply_recorded(int64 *pids, int n);
extern uint64 partoo_webhook_apply_owed(uint64 mask);
extern bool partoo_webhook_applying(void);
extern int	partoo_webhook_run_plan(struct _SPI_plan *plan, Datum *args,
									const char *nulls);

/* in webhook_dispatch.c */
typedef struct PartooDispatchSet PartooDispatchSet;

extern PartooDispatchSet *partoo_dispatch_set_create(PartooIngestEvent **evs, int n);
extern void partoo_dispatch_fetch(PartooDispatchSet *ds, const char *created_by);
extern const char *partoo_dispatch_decide(PartooDispatchSet *ds,
										  PartooIngestEvent *ev);
extern void partoo_dispatch_write(PartooDispatchSet *ds);

#endif							/* PARTOO_SERVER_WEBHOOK_H */
