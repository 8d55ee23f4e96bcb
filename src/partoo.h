/*-------------------------------------------------------------------------
 *
 * partoo.h
 *		Private declarations shared by the PostgreSQL side of partoo.
 *
 * The protocol core (protocol.h) knows nothing of PostgreSQL; everything
 * declared here may palloc, use SPI or ereport.  Sections are grouped by
 * the file that defines them.
 *
 * src/partoo.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_H
#define PARTOO_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "storage/latch.h"
#include "storage/spin.h"

#include "compat.h"

#include "protocol.h"

/*
 * The extension's version: EXTVERSION in the Makefile, the one place it is
 * written, passed as -DPARTOO_VERSION.  Only the Makefile builds the files
 * that include this header.
 */
#ifndef PARTOO_VERSION
#error "PARTOO_VERSION is not defined: build with the Makefile, which sets it from EXTVERSION"
#endif
#define PARTOO_USER_AGENT "partoo-pg/" PARTOO_VERSION

/* Largest response body we keep; larger ones fail the request */
#define PARTOO_MAX_RESPONSE_BYTES (1024 * 1024)

/*
 * The protocol core counts time in microseconds since the Unix epoch
 * (1970), PostgreSQL's timestamptz since 2000: the one offset between them.
 */
#define PARTOO_UNIX_TO_PG_EPOCH_US \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

static inline int64
partoo_timestamptz_to_unix_us(TimestampTz t)
{
	return (int64) t + PARTOO_UNIX_TO_PG_EPOCH_US;
}

static inline TimestampTz
partoo_unix_us_to_timestamptz(int64 unix_us)
{
	return (TimestampTz) (unix_us - PARTOO_UNIX_TO_PG_EPOCH_US);
}

/* in partoo.c */
extern char *partoo_api_key;
extern char *partoo_base_url;
extern char *partoo_ca_file;
extern int	partoo_timeout_ms;
extern int	partoo_connect_timeout_ms;
extern char *partoo_databases;
extern int	partoo_batch_size;
extern int	partoo_max_in_flight;
extern int	partoo_max_attempts;
extern int	partoo_retry_base_ms;
extern int	partoo_retry_max_ms;
extern int	partoo_lease_s;
extern int	partoo_requests_per_minute;
extern int	partoo_shutdown_timeout_ms;

extern bool partoo_valid_base_url(const char *url);

/* in http.c */

/*
 * One HTTP request and, once done, its outcome.  Allocated with malloc()
 * (libcurl's world, outside any memory context) so that it can outlive a
 * transaction in the worker; the caller owns it and frees it with
 * partoo_http_request_free(), also on error paths.
 */
typedef struct PartooHttpRequest
{
	/* set up by partoo_http_request_new() */
	char	   *url;
	PartooBody	body;
	char	   *auth_header;	/* "x-APIKey: ..."; wiped before free */
	void	   *user;			/* the caller's cookie */

	/* outcome, valid once done is true */
	bool		done;
	long		status;			/* HTTP status, 0 when the transport failed */
	int			curl_code;		/* CURLcode */
	bool		timed_out;
	bool		connect_failed;
	bool		too_large;		/* response exceeded the limit */
	char		errbuf[256];	/* libcurl's error text, never the key */
	char	   *resp;			/* response body, NUL-terminated */
	size_t		resp_len;
	size_t		resp_cap;
	char		retry_after[64];	/* raw Retry-After header value */

	/* private to http.c */
	void	   *easy;
	uint32		easy_generation;	/* of the handle's fixed options */
	void	   *headers;
	int			timeout_ms;
	int			connect_timeout_ms;
	int64		deadline_us;	/* on http.c's attended clock */
	int64		connect_deadline_us;
	struct PartooHttpRequest *next; /* in the done list */
	struct PartooHttpRequest *run_prev; /* in the running list */
	struct PartooHttpRequest *run_next;
} PartooHttpRequest;

/* wake-up reasons returned by partoo_http_wait() */
#define PARTOO_WAKE_LATCH	0x01
#define PARTOO_WAKE_IO		0x02
#define PARTOO_WAKE_TIMEOUT 0x04

extern PartooHttpRequest *partoo_http_request_new(const char *base_url,
												  const char *path,
												  const char *api_key,
												  PartooBody *body);
extern void partoo_http_request_free(PartooHttpRequest *req);
extern void partoo_http_start(PartooHttpRequest *req, int timeout_ms,
							  int connect_timeout_ms);
extern void partoo_http_abort(PartooHttpRequest *req);
extern int	partoo_http_wait(long timeout_ms);
extern PartooHttpRequest *partoo_http_next_done(void);
extern void partoo_http_perform(PartooHttpRequest *req);
extern int64 partoo_monotonic_us(void);

/* in message.c */

/*
 * A message as the SQL functions receive it.  The caller fills the "as
 * given" fields (NULL for SQL NULL); partoo_message_prepare() checks them,
 * converts the strings to UTF-8 for the wire and fills msg, names and date.
 */
typedef struct PartooMessageInput
{
	/* as given */
	int64		conversation_id;
	bool		conversation_id_isnull;
	text	   *content;
	char	   *content_type_arg;
	text	   *url;
	bytea	   *image;
	text	   *filename;
	char	   *channel_arg;
	char	   *account;		/* NULL: the default account */
	Datum		metadata;		/* jsonb */
	bool		has_metadata;

	/* filled by partoo_message_prepare() */
	PartooMessage msg;			/* what goes on the wire, UTF-8 */
	const char *content_type;	/* canonical name */
	const char *channel;		/* canonical name, or NULL */
	TimestampTz created_at;
	char		date[PARTOO_DATE_BUFLEN];
} PartooMessageInput;

extern char *partoo_arg_cstring(FunctionCallInfo fcinfo, int i);
extern void partoo_message_from_args(FunctionCallInfo fcinfo, int metadata_arg,
									 PartooMessageInput *in);
extern void partoo_message_prepare(PartooMessageInput *in);
extern void partoo_report_problem(int elevel, const PartooProblem *p);
extern char *partoo_printable(const char *s, size_t len, size_t max);

/* in store.c */
typedef struct PartooAccount
{
	char	   *name;			/* NULL for the default account */
	char	   *api_key;		/* never print it */
	char	   *base_url;
	int			requests_per_minute;
} PartooAccount;

typedef struct PartooStoreContext
{
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
} PartooStoreContext;

/* SPI plans, without executor/spi.h here */
struct _SPI_plan;

extern Oid	partoo_extension_owner(void);
extern void partoo_store_begin(PartooStoreContext *cxt);
extern void partoo_store_end(PartooStoreContext *cxt);
extern struct _SPI_plan *partoo_plan_once(struct _SPI_plan **slot,
										  const char *sql, int nargs,
										  Oid *argtypes, int cursor_options);
extern Datum partoo_make_array(Datum *elems, bool *nulls, int n, Oid elemtype);
extern Datum partoo_text_datum(const char *s, bool *isnull);
extern int64 partoo_spi_int64(HeapTuple t, TupleDesc d, int col, bool *isnull);
extern char *partoo_spi_text(HeapTuple t, TupleDesc d, int col);
extern PartooAccount *partoo_store_get_account(const char *name);
extern int64 partoo_store_sent_message(PartooMessageInput *in, int64 partoo_id,
									   long http_status);
extern char *partoo_store_account_of(int64 partoo_id, bool *found);
extern void partoo_store_retried(int64 partoo_id);
extern int64 partoo_store_enqueue(PartooMessageInput *in,
								  const char *idempotency_key,
								  bool has_send_at, TimestampTz send_at);

/* in send.c */
extern void partoo_report_http_failure(PartooHttpRequest *req,
									   const PartooApiResult *res,
									   const char *path);

/* in outbox.c */
extern Oid	partoo_outbox_extension_oid(void);
extern uint64 partoo_outbox_recover(void);
extern void partoo_outbox_load_accounts(void (*cb) (const char *name,
												   const char *key,
												   const char *base_url,
												   int rpm, void *arg),
										void *arg);
extern bool partoo_outbox_has_record(void);
extern uint64 partoo_outbox_claim(int limit, Datum *accounts, Datum *quotas,
								  int naccounts, int lease_s,
								  Datum *held, int nheld);
extern uint64 partoo_outbox_claim_candidates(int limit, Datum *accounts,
											 Datum *quotas, int naccounts,
											 Datum *held, int nheld);
extern uint64 partoo_outbox_claim_id(int64 id, int lease_s);
extern bool partoo_outbox_claim_failed(int64 id, const char *reason);
extern void partoo_outbox_put_aside(int64 id, int64 delay_ms);
extern bool partoo_outbox_keep_accepted(int64 id, int64 partoo_id,
										int64 delay_ms, int attempts);
extern int64 partoo_outbox_next_due_ms(Datum *accounts, int naccounts);
extern int	partoo_outbox_record(int n, Datum *oid, Datum *mid, Datum *state,
								 Datum *final, Datum *delay_ms,
								 Datum *attempts, Datum *counted,
								 Datum *pid, bool *pid_null,
								 Datum *http, bool *http_null,
								 Datum *err, bool *err_null,
								 Datum *is_retry, bool *recorded);

/* in worker.c */

/*
 * partoo's advisory locks take the two-key form with this first key (the
 * class id, "paro"), never one of the bigint keys an application may use
 * with pg_advisory_lock(bigint).  Second keys: PARTOO_LOCK_WORKER, the
 * worker's lock on its database; webhook_apply.c's buckets use a field4
 * of their own.
 */
#define PARTOO_LOCK_CLASS_ID	1885434479	/* 0x7061726f */
#define PARTOO_LOCK_WORKER		1

extern void partoo_worker_register(void);
PGDLLEXPORT extern void partoo_worker_main(Datum main_arg);

/* in shmem.c */
#define PARTOO_MAX_WORKERS 32

typedef struct PartooWorkerSlot
{
	slock_t		mutex;
	char		dbname[NAMEDATALEN];	/* fixed at postmaster start */
	Oid			dboid;			/* set by the worker once connected */
	pid_t		pid;			/* 0 when not running */
	Latch	   *latch;
	int			in_flight;
	int64		sent;
	int64		retried;
	int64		failed;			/* retryable failures */
	int64		rejected;
	int64		dead;
	int64		rate_limited;
	uint32		accounts_generation;	/* bumped when partoo.accounts changes */
	uint64		owed_pending;	/* webhook buckets the worker owes a pass */
	TimestampTz started_at;
	TimestampTz last_error_at;
	char		last_error[256];
	char		paused[256];	/* accounts paused by a 429, and until when */
} PartooWorkerSlot;

typedef struct PartooShared
{
	int			nslots;
	PartooWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} PartooShared;

extern List *partoo_worker_names;
extern void partoo_shmem_init(int nslots);
extern PartooWorkerSlot *partoo_slot(int i);
extern void partoo_wake_worker_now(void);
extern void partoo_wake_at_commit(void);
extern bool partoo_owe_pending_at_commit(uint64 mask);
extern uint64 partoo_take_owed_pending(PartooWorkerSlot *slot);

/* in webhook.c */
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

/* in redact_log.c */
extern void partoo_log_redaction_install(void);

#endif							/* PARTOO_H */
