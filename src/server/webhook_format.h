/*-------------------------------------------------------------------------
 *
 * webhook_format.h
 *		What a webhook format implements (webhook_partoo.c,
 *		webhook_dispatch.c), the event it fills in, the table of formats
 *		(webhook_apply.c), and the helpers every webhook file may use
 *		(webhook_bucket.c, server/db.h).
 *
 * The ingest pipeline (webhook.c's SQL functions, then webhook_apply.c)
 * knows nothing of any format: it asks the table which format recognises
 * a body, and calls that format's functions.  A format calls only the
 * protocol core, server/db.h and webhook_bucket.c, never the pipeline.
 *
 * src/server/webhook_format.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_WEBHOOK_FORMAT_H
#define PARTOO_SERVER_WEBHOOK_FORMAT_H

#include "datatype/timestamp.h"
#include "nodes/parsenodes.h"	/* CURSOR_OPT_GENERIC_PLAN */

#include "core/webhook.h"

typedef struct PartooWebhookFormat PartooWebhookFormat;

/*
 * One webhook event on its way into the tables: what the format's parser
 * found (strings copied into palloc'd memory, checked to be valid in the
 * database encoding), then what was decided.  Strings may be shared with
 * the previous event of a batch.  A field a format does not have stays
 * zero or NULL (and its partoo.events column NULL).
 */
typedef struct PartooIngestEvent
{
	const PartooWebhookFormat *format;
	bool		concerns_status;	/* false: the outcome is "ignored" */
	char	   *event_type;
	char	   *status_raw;
	char	   *channel;
	char	   *content_type;
	char	   *sender_type;
	bool		has_event_at;
	TimestampTz event_at;
	char	   *dedup_key;		/* final once the format has fetched */
	char	   *order_key;

	/* Partoo format */
	int64		partoo_id;
	PartooStatus status;
	int			is_deleted;

	/* dispatch format */
	char	   *dispatch_id;
	char	   *recipient;
	int32		part;			/* 0: none */
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

/* What fetch() is for */
typedef enum PartooFetchMode
{
	/*
	 * An ingest: lock the messages the events name (FOR UPDATE, in a fixed
	 * order), create those the format creates, and complete the events'
	 * dedup keys.
	 */
	PARTOO_FETCH_INGEST,

	/*
	 * Pending events being applied (webhook_apply.c): read the messages,
	 * which the recording transaction has just written and so holds.
	 */
	PARTOO_FETCH_PENDING
} PartooFetchMode;

/*
 * A webhook format.  Every function runs in the caller's transaction and
 * may ereport; the batch functions run as the extension owner inside
 * SPI (partoo_store_begin), where every statement should be a kept plan
 * (partoo_plan_once with PARTOO_WEBHOOK_PLAN) run with
 * partoo_run_plan_latest().
 */
struct PartooWebhookFormat
{
	/* partoo.events.source of its events */
	const char *name;

	/*
	 * How recognise() tells it, as a clause of the error a body that no
	 * format recognises gets ("a dispatch status notification has
	 * \"dispatchId\""), or NULL for a format whose events never come as
	 * a body (reconcile: the worker makes them); such a format's
	 * recognise() says false, and its parse, authenticate and restore are
	 * NULL.
	 */
	const char *shape;

	/* Define its settings, from _PG_init (may be NULL) */
	void		(*define_gucs) (void);

	/* Is root (a JSON object) a body of this format?  Never throws. */
	bool		(*recognise) (const struct cJSON *root);

	/*
	 * Parse a body that recognise() accepted, like partoo_webhook_parse():
	 * a malloc'd event or NULL with *err filled.  Never throws.
	 */
	PartooWebhookEvent *(*parse) (const struct cJSON *root, const char *body,
								  size_t len, PartooWebhookError *err);

	/*
	 * Raise 28000 unless signature (NULL if none came) authenticates
	 * ev->payload; required: refuse a missing one
	 * (partoo.webhook_require_signature).  No message shows a key or a
	 * signature.
	 */
	void		(*authenticate) (const PartooIngestEvent *ev, text *signature,
								 bool required);

	/*
	 * Complete an event read back from partoo.events for application
	 * (partoo_id, status_raw, dedup_key and event_id set); false if the
	 * stored columns do not describe one.  NULL: the format's events are
	 * never pending.
	 */
	bool		(*restore) (PartooIngestEvent *ev);

	/*
	 * The four steps of a batch, on this format's events of it (evs[0..n),
	 * in the order received, n > 0): begin() makes the batch state the
	 * others take; fetch() reads what the events are decided against;
	 * decide() decides one event that concerns a status and is not a
	 * duplicate, recording the change in memory, and returns its outcome
	 * (applied, stale or pending), setting its message_id when known;
	 * write() writes the changed messages back.
	 */
	void	   *(*begin) (PartooIngestEvent **evs, int n);
	void		(*fetch) (void *batch, PartooFetchMode mode, const char *created_by);
	const char *(*decide) (void *batch, PartooIngestEvent *ev);
	void		(*write) (void *batch);
};

/* in webhook_apply.c: the table, in the order formats are tried */
extern const PartooWebhookFormat *const partoo_webhook_formats[];
extern const int partoo_webhook_nformats;

/*
 * in webhook_apply.c: apply n parsed and authenticated events (webhook.c;
 * reconcile.c for the statuses it reads from GET /messages)
 */
extern void partoo_webhook_ingest(PartooIngestEvent **evs, int n, Datum payloads);

/* in webhook_partoo.c and webhook_dispatch.c */
extern const PartooWebhookFormat partoo_webhook_format_partoo;
extern const PartooWebhookFormat partoo_webhook_format_reconcile;
extern const PartooWebhookFormat partoo_webhook_format_dispatch;

/*
 * Cursor options of the webhook statements' plans (partoo_plan_once).
 * NB: always generic plans: a custom plan would copy the (possibly huge)
 * array parameters into the plan as constants and make the planner read
 * them, which costs more than the whole statement for a large batch.
 * (Sequential scans are off while they run, see webhook_apply.c.)
 */
#define PARTOO_WEBHOOK_PLAN		CURSOR_OPT_GENERIC_PLAN

/* in webhook_bucket.c: the pending-event handshake's locks */
extern int	partoo_webhook_bucket_of(int64 partoo_id);
extern uint64 partoo_webhook_buckets_of(const int64 *pids, int n);
extern uint64 partoo_webhook_lock_buckets_shared(uint64 mask, bool dont_wait);
extern void partoo_webhook_lock_buckets_exclusive(uint64 mask);

#endif							/* PARTOO_SERVER_WEBHOOK_FORMAT_H */
