/*-------------------------------------------------------------------------
 *
 * reconcile.h
 *		Status reconciliation as the worker sees it: its settings, which
 *		messages are due, one conversation's fetch (GET /messages, page by
 *		page), and recording what it found (reconcile.c).
 *
 * The worker (worker.c) decides when a fetch may take a slot and a rate
 * token, and drives its requests on the HTTP client; reconcile.c owns the
 * SQL and turns answers into events.
 *
 * src/server/reconcile.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_RECONCILE_H
#define PARTOO_SERVER_RECONCILE_H

#include "http/http.h"

/* The settings (partoo.reconcile_after, partoo.reconcile_max_age) */
extern int	partoo_reconcile_after_ms;
extern int	partoo_reconcile_max_age_s;

extern void partoo_reconcile_define_gucs(void);

/* Messages per page asked for, and most pages read for one fetch */
#define PARTOO_RECONCILE_PER_PAGE	100
#define PARTOO_RECONCILE_MAX_PAGES	10
/* Most reconciliation requests in flight for one account */
#define PARTOO_RECONCILE_PER_ACCOUNT 2
/* Longest time between two checks of a message */
#define PARTOO_RECONCILE_BACKOFF_CAP_MS (6 * 3600 * 1000)

/* How a fetch ended */
typedef enum PartooReconcileEnd
{
	PARTOO_RECONCILE_RUNNING = 0,
	PARTOO_RECONCILE_DONE,		/* read: every due id seen, or the last
								 * page, or the page cap */
	PARTOO_RECONCILE_RATE_LIMITED,	/* a 429: try again after retry_after_ms */
	PARTOO_RECONCILE_FAILED		/* transport error, non-2xx, bad answer */
} PartooReconcileEnd;

/* What the worker does after an answer (partoo_reconcile_take_answer) */
typedef enum PartooReconcileStep
{
	PARTOO_RECONCILE_STEP_END,	/* the fetch has ended (f->end) */
	PARTOO_RECONCILE_STEP_NEXT_PAGE /* make the next page's request */
} PartooReconcileStep;

/*
 * One conversation's check: the due messages of one (account,
 * conversation), what GET /messages said of them, and the request of the
 * page in flight.  malloc'd (it outlives transactions); freed with
 * partoo_reconcile_fetch_free().
 */
typedef struct PartooReconcileFetch
{
	uint32		generation;		/* the worker's installation served */
	char	   *account;		/* "" for the default account */
	int64		conversation_id;
	int			n;				/* due messages */
	int64	   *message_ids;	/* partoo.messages.id */
	int64	   *partoo_ids;
	char	  **status;			/* found, per due message; NULL: not seen */
	char	  **json;			/* the message object as listed */
	int			nseen;
	char	   *cursor;			/* of the next page; NULL: the first */
	int			pages;			/* answered so far */
	PartooHttpRequest *req;		/* the page in flight, or NULL */
	PartooReconcileEnd end;
	int64		retry_after_ms; /* for RATE_LIMITED */
	char		error[200];		/* for FAILED, logged at DEBUG1 */
} PartooReconcileFetch;

/*
 * The INSERT of the partoo.reconcile rows of messages just recorded sent
 * for the first time: FROM names a relation whose column id holds their
 * ids, AFTER_MS the parameter holding partoo.reconcile_after in
 * milliseconds.  Written once for partoo_reconcile_track (reconcile.c)
 * and for the statements that write a sent message and its reconcile row
 * together (store.c, batch.c).
 */
#define PARTOO_RECONCILE_INSERT(FROM, AFTER_MS) \
	"INSERT INTO partoo.reconcile (message_id, since, next_check_at)" \
	" SELECT id, now(), now() + " AFTER_MS " * interval '1 millisecond' FROM " FROM

extern bool partoo_reconcile_available(void);
extern bool partoo_reconcile_tracking(void);
extern void partoo_reconcile_track(const int64 *message_ids, int n);
extern int	partoo_reconcile_pick(Datum *excluded, int nexcluded, int limit,
								  PartooReconcileFetch ***fetches);
extern void partoo_reconcile_lease(PartooReconcileFetch **fetches, int n,
								   int lease_s);
extern int64 partoo_reconcile_next_due_ms(void);
extern PartooHttpRequest *partoo_reconcile_request(PartooReconcileFetch *f,
												   const char *base_url,
												   const char *api_key);
extern PartooReconcileStep partoo_reconcile_take_answer(PartooReconcileFetch *f);
extern int	partoo_reconcile_record(PartooReconcileFetch **fetches, int n);
extern void partoo_reconcile_fetch_free(PartooReconcileFetch *f);

#endif							/* PARTOO_SERVER_RECONCILE_H */
