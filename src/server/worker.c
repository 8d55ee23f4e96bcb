/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The partoo background worker: drains partoo.outbox through the
 *		HTTP client, paced per account, and records what happened.
 *
 * One worker per database listed in partoo.database.  Its loop follows
 * worker_spi: wait on the latch (and here, on libcurl's sockets through
 * http.c), reset it, reload settings on SIGHUP, then do the work in short
 * transactions.  A transaction either records finished requests, or
 * claims new rows, or both; HTTP happens only between transactions, so no
 * transaction or row lock is ever held while waiting for the network.
 * One iteration (run_iteration, near the end of this file) reads as that
 * story, one named step each: reload_config_if_pending, start_serving,
 * collect, start_waiting, decide_work, run_transaction, sleep_time.
 *
 * Pipeline: claimed jobs wait in a queue and start as soon as a slot is
 * free (a slot is freed when its outcome is recorded, within
 * RECORD_DELAY_MS), so one slow request never holds up the rest and the
 * slots stay full while the next claim is made.  The worker claims
 * when it holds no more than partoo.max_in_flight jobs (in flight and
 * waiting), up to twice that: claims are large (their cost is per
 * statement, not per row) without leaving slots idle between them, which
 * matters most when the API is far away.  It sleeps only when nothing is
 * due (until the earliest run_at, or until partoo_enqueue's commit sets
 * the latch) or when every account with due rows is out of tokens (until
 * the first one has some again).
 *
 * Nothing another session does stalls the loop.  Claims and recordings
 * skip the rows another session holds (outbox.c) and come back for them
 * later; pending webhook events whose bucket an open ingest holds are
 * applied later (webhook_apply.c, the owed buckets); any other lock wait
 * is bounded by lock_timeout (LOCK_WAIT_MS) and retried.  And no stall
 * of the worker's own turns an answered request into a timeout: request
 * deadlines count only the time spent waiting for the network (http.c).
 *
 * Outcomes are row data, never errors (worker_job.c turns a claimed row
 * into a request, and a response into an outcome).  An ERROR inside the
 * loop is caught, logged and reported in partoo.worker_status(); the loop
 * goes on.  A batch whose claim or recording fails is redone row by row,
 * so that one poison row cannot stop the others: a row that cannot be
 * claimed becomes dead with the reason; an outcome that cannot be
 * recorded is recorded later if Partoo accepted the message (its Partoo
 * id kept in the outbox, action 'record', so that it is never sent
 * again), and otherwise becomes dead with the reason.
 *
 * SIGTERM: no more claims or requests; the statement running, if any, is
 * canceled (a lock wait, a slow trigger); requests in flight get until
 * partoo.shutdown_timeout after the signal to finish; what finished is
 * recorded within the same bound; the rest stays leased for the next
 * worker.
 *
 * Reconciliation (reconcile.c) rides on the same loop: when
 * partoo.reconcile_after is on and a pick is due, the iteration's
 * transaction also picks the messages due a status check, in the slots
 * and rate tokens the sends leave (never while a claimed send waits for a
 * slot, and only for accounts without an outbox row due), and leases
 * them; their GET /messages requests go through the same HTTP client,
 * counted in the same slots, and what they found is recorded in a later
 * iteration's transaction.  A 429 on a GET pauses that account's
 * reconciliation only.
 *
 * Memory: jobs and requests are malloc'd (they live across transactions)
 * and freed once recorded; everything palloc'd in an iteration lives in a
 * loop context reset at the top of each iteration.
 *
 * src/server/worker.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include <malloc.h>
#include <sys/resource.h>

#include "access/xact.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "core/ratelimit.h"
#include "core/window.h"
#include "http/http.h"
#include "server/db.h"
#include "server/store.h"
#include "server/outbox.h"
#include "server/reconcile.h"
#include "server/worker.h"
#include "server/worker_job.h"
#include "server/shmem.h"
#include "server/webhook.h"

char	   *partoo_databases = NULL;
int			partoo_batch_size = 500;
int			partoo_max_in_flight = 1000;
int			partoo_lease_s = 120;
int			partoo_shutdown_timeout_ms = 5000;

/*
 * Define the worker's settings.
 * Called once from _PG_init (partoo.c).
 */
void
partoo_worker_define_gucs(void)
{
	/*
	 * NB: PostgreSQL ends the session (FATAL) when a PGC_POSTMASTER setting
	 * is defined after startup, so this one, which only the workers use,
	 * exists only when the library is preloaded.  Loaded by one session
	 * alone, partoo still sends and queues.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("partoo.database",
								   "Comma-separated list of databases in which a partoo worker drains the outbox.",
								   "One worker runs per database; an empty list runs none.",
								   &partoo_databases,
								   "postgres",
								   PGC_POSTMASTER,
								   GUC_LIST_INPUT,
								   NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.batch_size",
							"Largest number of outbox rows the worker claims in one transaction.",
							NULL,
							&partoo_batch_size,
							500, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.max_in_flight",
							"Most requests the worker may have in flight at once (a cap: the worker sizes its window itself).",
							"The window is what the accounts' rate limits need at the latency observed, or this cap with an account without limit; never more than the sockets the worker can open.",
							&partoo_max_in_flight,
							1000, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);




	DefineCustomIntVariable("partoo.lease",
							"How long a claimed outbox row stays reserved for the worker that claimed it.",
							"A row whose worker died is claimed again after this time. Keep it above partoo.timeout.",
							&partoo_lease_s,
							120, 5, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.shutdown_timeout",
							"How long a stopping worker waits for requests in flight before abandoning them.",
							"Abandoned rows are claimed again after their lease expires.",
							&partoo_shutdown_timeout_ms,
							5000, 0, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
}

#define RECORD_DELAY_MS 20		/* longest a finished request waits to be
								 * recorded while others are in flight */
/* a time that never comes: no next claim, no recording due */
#define NEVER INT64_MAX
/* outcomes waiting to be recorded that trigger a recording transaction */
#define RECORD_BATCH Max(1, window / 4)
/* longest the worker waits for a lock before giving up for now */
#define LOCK_WAIT_MS 100
/* when to come back for what another session holds: 50 ms, doubling to 2 s */
#define HELD_RETRY_MIN_MS 50
#define HELD_RETRY_MAX_MS 2000
/* the webhook buckets, all owed when a worker starts (webhook_apply.c) */
#define ALL_BUCKETS (~UINT64CONST(0))
/*
 * how often a worker that does not serve yet looks again for CREATE
 * EXTENSION partoo, or for its predecessor's exit (the database lock)
 */
#define EXTENSION_WAIT_MS 10000
/* pause after an error the loop caught, or a claim that failed on its rows */
#define ERROR_PAUSE_MS 1000
/*
 * an outcome Partoo accepted that cannot be recorded is tried again after
 * max(this, partoo.retry_base) doubling with each try, up to
 * partoo.retry_max
 */
#define UNRECORDABLE_RETRY_MIN_MS 1000
#define UNRECORDABLE_RETRY_MAX_DOUBLINGS 16

static volatile sig_atomic_t got_sigterm = false;
static volatile sig_atomic_t in_db_work = false;	/* between begin_txn and
													 * its commit or abort */
static volatile int64 sigterm_at_ms = 0;
static PartooWorkerSlot *slot = NULL;
static HTAB *accounts = NULL;
static uint32 accounts_generation = 0;
static bool accounts_loaded = false;

/*
 * The in-flight window (core/window.c): how many requests may be in
 * flight now, from the accounts' limits (summed when they are loaded) and
 * the latency observed, within partoo.max_in_flight and fd_room, the
 * sockets the process can open besides PostgreSQL's own files.
 */
static int	window = PARTOO_WINDOW_SPARE;
static double accounts_per_second = 0;	/* the limited accounts' rates */
static bool any_unlimited = false;	/* an account has no rate limit */
static PartooLatency latency;
static int	fd_room = 0;
static int	fds_reserved = 0;	/* taken from fd.c's share (ReserveExternalFD) */
static PartooJob **inflight = NULL;	/* jobs whose request is in flight */
static int	ninflight = 0;
static PartooJob **results = NULL;	/* finished jobs not yet recorded */
static int	nresults = 0;
static PartooJob **fresh = NULL;		/* claimed in the current transaction */
static int	nfresh = 0;
static PartooJob **waiting = NULL;	/* claimed, waiting for an in-flight slot */
static int	nwaiting = 0;
static int	jobs_cap = 0;

/*
 * The installation of the extension this worker serves (its pg_extension
 * oid) and a number that changes each time it goes away.  A job carries
 * the number it was claimed under: an answer to a request made for a
 * dropped extension is never recorded into a new one's tables, whose ids
 * start again at 1.
 */
static Oid	served_oid = InvalidOid;
static uint32 served_generation = 1;

/*
 * The loop's state across iterations.  Statics, so that what an iteration
 * changed before an error it threw is kept (see partoo_worker_main).
 */
static bool serving = false;	/* the extension is there, the database
								 * lock taken, leases recovered */
static bool db_locked = false;	/* take_database_lock succeeded */
static int64 next_claim_at = 0; /* when to claim next (NEVER: on a wake-up) */
static uint64 owed = ALL_BUCKETS;	/* webhook buckets owed a pass */
static int64 owed_at = 0;		/* when to make that pass */
static int	owed_tries = 0;		/* passes that left buckets owed */

/*
 * Reconciliation's fetches (reconcile.h): picked in the current
 * transaction and started once it commits; with a page in flight; ended,
 * waiting to be recorded.  Each list malloc'd, grown as needed.
 */
typedef struct FetchList
{
	PartooReconcileFetch **v;
	int			n;
	int			cap;
} FetchList;
static FetchList rpicked = {NULL, 0, 0};
static FetchList rflight = {NULL, 0, 0};
static FetchList rdone = {NULL, 0, 0};
static int64 next_reconcile_at = 0;	/* when to pick due checks next */

static void track_recorded_sent(PartooJob **jobs, int n, const bool *done);
static void update_window(void);
static void size_fd_room(void);

/* most due messages one pick reads */
#define RECONCILE_PICK_LIMIT 1000
/* shortest time between two picks */
#define RECONCILE_PICK_MIN_MS 1000
/* a worker woken while no check is due looks again this soon at most */
#define RECONCILE_IDLE_MS 60000

/* outbox rows that could be neither claimed nor put aside: not claimed */
typedef struct SkippedRow
{
	int64		id;
	int64		until_ms;
} SkippedRow;
static SkippedRow *skipped = NULL;
static int	nskipped = 0;
static int	skipped_cap = 0;

static int64
now_ms(void)
{
	return partoo_monotonic_us() / 1000;
}

static int64
held_retry_ms(int tries)
{
	return Min(HELD_RETRY_MAX_MS, (int64) HELD_RETRY_MIN_MS << Min(tries, 10));
}

/*
 * SIGTERM.  NB: a statement running now (a lock wait, a slow trigger) is
 * canceled the way a query cancel is, so that the worker can stop within
 * partoo.shutdown_timeout; the loop catches the error.  Only while the
 * worker is inside a transaction (in_db_work): anywhere else a pending
 * cancel would be thrown at a point that expects none.
 */
static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	if (!got_sigterm)
		sigterm_at_ms = now_ms();	/* clock_gettime is async-signal-safe */
	got_sigterm = true;
	if (in_db_work)
	{
		QueryCancelPending = true;
		InterruptPending = true;
	}
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Milliseconds left before partoo.shutdown_timeout after SIGTERM runs out */
static int64
shutdown_left_ms(void)
{
	return got_sigterm ? sigterm_at_ms + partoo_shutdown_timeout_ms - now_ms() : NEVER;
}

/* Out of a transaction: forget the cancel SIGTERM may have asked for */
static void
leave_db_work(void)
{
	in_db_work = false;
	if (got_sigterm)
		QueryCancelPending = false;
}

static void *
xmalloc0(size_t n)
{
	void	   *p = calloc(1, n);

	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return p;
}

static char *
xstrdup(const char *s)
{
	char	   *p;

	if (s == NULL)
		return NULL;
	p = strdup(s);
	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return p;
}

static void
free_job(PartooJob *job)
{
	if (job == NULL)
		return;
	partoo_http_request_free(job->req);
	free(job->account);
	free(job);
}

/* Make room for cap jobs in each list; the lists never hold more */
static void
ensure_job_lists(int cap)
{
	if (cap <= jobs_cap)
		return;
	inflight = realloc(inflight, sizeof(PartooJob *) * cap);
	results = realloc(results, sizeof(PartooJob *) * cap);
	fresh = realloc(fresh, sizeof(PartooJob *) * cap);
	waiting = realloc(waiting, sizeof(PartooJob *) * cap);
	if (!inflight || !results || !fresh || !waiting)
		ereport(FATAL,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	jobs_cap = cap;
}

/* Copy s into a fixed buffer of the slot, cut on a character boundary */
static void
slot_text(char *dst, size_t size, const char *s)
{
	int			len = strlen(s);

	if (len >= (int) size)
		len = pg_mbcliplen(s, len, (int) size - 1);
	memcpy(dst, s, len);
	dst[len] = '\0';
}

/*
 * Start a transaction of the worker.  Its lock waits end after
 * LOCK_WAIT_MS (a lock another session holds is tried again later), and
 * after SIGTERM when partoo.shutdown_timeout runs out.
 */
static void
begin_txn(const char *activity)
{
	char		buf[32];
	int64		wait_ms = Min(LOCK_WAIT_MS, Max(1, partoo_shutdown_timeout_ms));

	if (got_sigterm)
		wait_ms = Max(1, Min(wait_ms, shutdown_left_ms()));
	SetCurrentStatementStartTimestamp();
	in_db_work = true;
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	snprintf(buf, sizeof(buf), "%lld", (long long) wait_ms);
	(void) set_config_option("lock_timeout", buf, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_txn(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	leave_db_work();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Errors that say nothing about the rows: a lock not available now, a
 * cancel (SIGTERM, or an administrator's), a deadlock or serialization
 * failure.  The work is tried again later as it is.
 */
static bool
transient_error(const ErrorData *edata)
{
	switch (edata->sqlerrcode)
	{
		case ERRCODE_LOCK_NOT_AVAILABLE:
		case ERRCODE_QUERY_CANCELED:
		case ERRCODE_T_R_DEADLOCK_DETECTED:
		case ERRCODE_T_R_SERIALIZATION_FAILURE:
			return true;
		default:
			return false;
	}
}

/*
 * Run fn(arg) in a subtransaction.  Returns NULL, or the error (copied
 * into the caller's memory context) after rolling the subtransaction
 * back; either way back in the caller's context and resource owner.
 */
static ErrorData *
in_subxact(void (*fn) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return edata;
}

/*
 * Log a caught error under msg: its text goes in the detail, its SQLSTATE
 * stays its own.
 */
static void
log_caught(const ErrorData *edata, const char *msg)
{
	ereport(LOG,
			(errcode(edata->sqlerrcode),
			 errmsg_internal("%s", msg),
			 errdetail("The error was: %s.", edata->message ? edata->message : "")));
}

/* Show an error in partoo.worker_status() */
static void
slot_error(const char *message)
{
	SpinLockAcquire(&slot->mutex);
	slot_text(slot->last_error, sizeof(slot->last_error), message);
	slot->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&slot->mutex);
}

/* ---------------------------------------------------------------------
 * Accounts: a hash on the account name, of any length
 * ---------------------------------------------------------------------
 */

static uint32
account_hash(const void *key, Size keysize)
{
	const char *name = *(const char *const *) key;

	return hash_bytes((const unsigned char *) name, strlen(name));
}

static int
account_match(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(const char *const *) key1, *(const char *const *) key2);
}

static PartooWorkerAccount *
account_get(const char *name, bool create)
{
	PartooWorkerAccount *a;
	char	   *copy;
	bool		found;

	a = hash_search(accounts, &name, HASH_FIND, NULL);
	if (a != NULL || !create)
		return a;
	copy = xstrdup(name);
	a = hash_search(accounts, &copy, HASH_ENTER, &found);
	a->name = copy;				/* the key: our own copy */
	a->api_key = NULL;
	a->base_url = NULL;
	a->rpm = -1;
	a->rl = NULL;
	a->present = false;
	a->reserved = 0;
	a->used = 0;
	a->reconcile_in_flight = 0;
	a->reconcile_paused_until = 0;
	return a;
}

static void
account_set(PartooWorkerAccount *a, const char *key, const char *base_url, int rpm)
{
	int64		now = now_ms();

	free(a->api_key);
	free(a->base_url);
	a->api_key = NULL;
	a->base_url = NULL;
	a->api_key = xstrdup(key ? key : "");
	a->base_url = xstrdup(base_url ? base_url : partoo_base_url);
	if (a->rl == NULL)
	{
		a->rl = partoo_ratelimit_create(rpm, 0, now);
		if (a->rl == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
	}
	else if (a->rpm != rpm)
		partoo_ratelimit_configure(a->rl, rpm, 0, now);
	a->rpm = rpm;
	a->present = true;
}

static void
load_account_cb(const char *name, const char *key, const char *base_url,
				int rpm, void *arg)
{
	account_set(account_get(name, true), key, base_url, rpm);
}

/* Reload partoo.accounts and the default account from the settings */
static void
reload_accounts(void)
{
	HASH_SEQ_STATUS seq;
	PartooWorkerAccount *a;
	uint32		gen;

	SpinLockAcquire(&slot->mutex);
	gen = slot->accounts_generation;
	SpinLockRelease(&slot->mutex);

	hash_seq_init(&seq, accounts);
	while ((a = hash_seq_search(&seq)) != NULL)
		a->present = false;

	account_set(account_get("", true), partoo_api_key, partoo_base_url,
				partoo_requests_per_minute);
	partoo_outbox_load_accounts(load_account_cb, NULL);

	/* forget accounts that are gone (no job points into the hash) */
	hash_seq_init(&seq, accounts);
	while ((a = hash_seq_search(&seq)) != NULL)
	{
		char	   *name = a->name;

		if (a->present)
			continue;
		free(a->api_key);
		free(a->base_url);
		partoo_ratelimit_free(a->rl);
		hash_search(accounts, &name, HASH_REMOVE, NULL);
		free(name);
	}
	accounts_generation = gen;
	accounts_loaded = true;

	accounts_per_second = 0;
	any_unlimited = false;
	hash_seq_init(&seq, accounts);
	while ((a = hash_seq_search(&seq)) != NULL)
	{
		if (a->rpm == 0)
			any_unlimited = true;
		else if (a->rpm > 0)
			accounts_per_second += a->rpm / 60.0;
	}
	update_window();
}

static bool
accounts_changed(void)
{
	uint32		gen;

	SpinLockAcquire(&slot->mutex);
	gen = slot->accounts_generation;
	SpinLockRelease(&slot->mutex);
	return !accounts_loaded || gen != accounts_generation;
}

/* ---------------------------------------------------------------------
 * Outcomes
 * ---------------------------------------------------------------------
 */

/*
 * Add the worker_status() counters of jobs[0..n) to the slot, under its
 * lock (shmem.c), and clear them so that nothing is counted twice.
 */
static void
count_jobs(PartooJob **jobs, int n)
{
	int64		c[PARTOO_JOB_COUNT_RATE_LIMITED + 1];
	int			i;

	memset(c, 0, sizeof(c));
	for (i = 0; i < n; i++)
	{
		c[jobs[i]->count]++;
		jobs[i]->count = PARTOO_JOB_COUNT_NONE;
	}
	if (n == c[PARTOO_JOB_COUNT_NONE])
		return;
	SpinLockAcquire(&slot->mutex);
	slot->sent += c[PARTOO_JOB_COUNT_SENT];
	slot->retried += c[PARTOO_JOB_COUNT_RETRIED];
	slot->failed += c[PARTOO_JOB_COUNT_FAILED];
	slot->dead += c[PARTOO_JOB_COUNT_DEAD];
	slot->rejected += c[PARTOO_JOB_COUNT_REJECTED];
	slot->rate_limited += c[PARTOO_JOB_COUNT_RATE_LIMITED];
	SpinLockRelease(&slot->mutex);
}

/* A job with its outcome, to be recorded */
static void
add_result(PartooJob *job)
{
	job->done_ms = now_ms();
	job->record_at_ms = job->done_ms;
	results[nresults++] = job;
}

/* ---------------------------------------------------------------------
 * Reconciliation's fetches (see reconcile.c)
 * ---------------------------------------------------------------------
 */

/* Add f to l; out of memory, f is freed and the error thrown */
static void
fetch_list_push(FetchList *l, PartooReconcileFetch *f)
{
	if (l->n == l->cap)
	{
		int			cap = Max(16, l->cap * 2);
		PartooReconcileFetch **v = realloc(l->v, sizeof(PartooReconcileFetch *) * cap);

		if (v == NULL)
		{
			partoo_reconcile_fetch_free(f);
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n++] = f;
}

/* Free every fetch of l; their accounts' running counts go down */
static void
fetch_list_clear(FetchList *l)
{
	while (l->n > 0)
	{
		PartooReconcileFetch *f = l->v[--l->n];
		PartooWorkerAccount *a = account_get(f->account, false);

		if (a != NULL && a->reconcile_in_flight > 0 && l != &rdone)
			a->reconcile_in_flight--;
		partoo_reconcile_fetch_free(f);
	}
}

static void
count_reconcile(int64 requests, int64 applied, int64 rate_limited)
{
	SpinLockAcquire(&slot->mutex);
	slot->reconcile_requests += requests;
	slot->reconcile_applied += applied;
	slot->reconcile_rate_limited += rate_limited;
	SpinLockRelease(&slot->mutex);
}

/*
 * May account a make one more reconciliation request now?  Only when no
 * claimed send waits for a slot (sends come first), and a whole rate token
 * is there, which it takes.
 */
static bool
reconcile_token(PartooWorkerAccount *a, int64 now)
{
	if (a == NULL || a->rl == NULL || nwaiting > 0 || nfresh > 0)
		return false;
	return partoo_ratelimit_acquire(a->rl, now) == 0;
}

/* Start the request of f's next page; false when it could not be made */
static bool
start_reconcile_request(PartooReconcileFetch *f, PartooWorkerAccount *a)
{
	if (partoo_reconcile_request(f, a->base_url, a->api_key) == NULL)
		return false;
	fetch_list_push(&rflight, f);
	partoo_http_start(f->req, partoo_timeout_ms, partoo_connect_timeout_ms);
	count_reconcile(1, 0, 0);
	return true;
}

/* A fetch has ended: it waits to be recorded, its account runs one less */
static void
end_fetch(PartooReconcileFetch *f, PartooWorkerAccount *a)
{
	if (a != NULL && a->reconcile_in_flight > 0)
		a->reconcile_in_flight--;
	fetch_list_push(&rdone, f);
}

/*
 * If req is a reconciliation request, take its answer: another page (if
 * a token and no waiting send allow it), or the end of its fetch (a 429
 * pausing the account's reconciliation for Retry-After).  Returns false
 * for any other request.
 */
static bool
take_reconcile_answer(PartooHttpRequest *req)
{
	PartooReconcileFetch *f = NULL;
	PartooWorkerAccount *a;
	int			i;

	for (i = 0; i < rflight.n; i++)
		if (rflight.v[i]->req == req)
		{
			f = rflight.v[i];
			rflight.v[i] = rflight.v[--rflight.n];
			break;
		}
	if (f == NULL)
		return false;
	a = account_get(f->account, false);
	if (f->generation != served_generation)
	{
		if (a != NULL && a->reconcile_in_flight > 0)
			a->reconcile_in_flight--;
		partoo_reconcile_fetch_free(f);	/* made for a dropped extension */
		return true;
	}
	if (partoo_reconcile_take_answer(f) == PARTOO_RECONCILE_STEP_NEXT_PAGE)
	{
		if (reconcile_token(a, now_ms()) && start_reconcile_request(f, a))
			return true;
		f->end = PARTOO_RECONCILE_DONE; /* what the pages read say */
	}
	if (f->end == PARTOO_RECONCILE_RATE_LIMITED)
	{
		if (a != NULL)
			a->reconcile_paused_until = now_ms() + f->retry_after_ms;
		count_reconcile(0, 0, 1);
	}
	end_fetch(f, a);
	return true;
}

/* Take finished requests from the HTTP client */
static void
collect(void)
{
	PartooHttpRequest *req;
	int			first = nresults;

	while ((req = partoo_http_next_done()) != NULL)
	{
		PartooJob		   *job;
		int			i;
		PartooWorkerAccount *a;

		/* the API's latency: only requests it answered */
		if (req->status > 0)
			partoo_latency_add(&latency, req->elapsed_us);
		if (take_reconcile_answer(req))
			continue;
		job = (PartooJob *) req->user;
		i = job->inflight_index;
		a = account_get(job->account, false);

		/* swap-remove from the in-flight list */
		inflight[i] = inflight[--ninflight];
		inflight[i]->inflight_index = i;
		if (job->generation != served_generation)
		{
			free_job(job);		/* made for a dropped extension */
			continue;
		}
		partoo_job_classify(job, a != NULL ? a->rl : NULL);
		add_result(job);
	}
	count_jobs(results + first, nresults - first);
	update_window();
}

/*
 * What the recording of the due results shares with its subtransactions:
 * the jobs and which of them were recorded.
 */
typedef struct RecordBatch
{
	PartooJob		  **jobs;
	int			n;
	bool	   *recorded;
} RecordBatch;

static void
record_batch(void *arg)
{
	RecordBatch *b = (RecordBatch *) arg;

	(void) partoo_job_record(b->jobs, b->n, b->recorded);
}

/* A job not recorded this time: try again after delay_ms */
static void
defer_job(PartooJob *job, int64 delay_ms)
{
	job->record_tries++;
	job->record_at_ms = now_ms() + delay_ms;
}

/* Keep the Partoo id of an accepted message in its outbox row */
typedef struct KeepAccepted
{
	PartooJob		   *job;
	int64		delay_ms;
	bool		kept;
} KeepAccepted;

static void
keep_accepted(void *arg)
{
	KeepAccepted *k = (KeepAccepted *) arg;

	k->kept = partoo_outbox_keep_accepted(k->job->outbox_id, k->job->pid,
										  k->delay_ms, k->job->record_tries);
}

/*
 * A job whose outcome cannot be recorded (its own recording failed with
 * edata).  If Partoo accepted it, it must end sent with its Partoo id and
 * never be sent again: the id is kept in its outbox row (a 'record'
 * action, see outbox.c), or, failing that, in memory, and recorded later.
 * Otherwise its message becomes dead with the reason; failing that, the
 * row stays leased and comes back when the lease runs out.  Returns true
 * when the job is done with (the caller frees it); *soonest gets when a
 * row kept in the outbox is due.
 */
static bool
unrecordable(PartooJob *job, ErrorData *edata, int64 *soonest)
{
	char		msg[200];
	int64		delay = Min((int64) partoo_retry_max_ms,
							(int64) Max(UNRECORDABLE_RETRY_MIN_MS, partoo_retry_base_ms)
							<< Min(job->record_tries, UNRECORDABLE_RETRY_MAX_DOUBLINGS));

	if (partoo_job_accepted(job))
	{
		KeepAccepted k;
		ErrorData  *e2;

		snprintf(msg, sizeof(msg),
				 "partoo worker could not record the outcome of message %lld, recording it later",
				 (long long) job->message_id);
		log_caught(edata, msg);
		slot_error(edata->message ? edata->message : "");
		job->record_tries++;
		k.job = job;
		k.delay_ms = delay;
		k.kept = false;
		/* a retry's id is recorded already; its outcome waits in memory */
		if (job->has_pid && !job->is_retry)
		{
			e2 = in_subxact(keep_accepted, &k);
			if (e2 != NULL)
			{
				log_caught(e2, "partoo worker could not keep the Partoo id of a message in partoo.outbox");
				FreeErrorData(e2);
				k.kept = false;
			}
		}
		if (k.kept)
		{
			*soonest = Min(*soonest, delay);
			return true;
		}
		job->record_at_ms = now_ms() + delay;
		return false;
	}

	snprintf(msg, sizeof(msg),
			 "partoo worker could not record the outcome of message %lld, marking it dead",
			 (long long) job->message_id);
	log_caught(edata, msg);
	partoo_job_outcome(job, "dead", true, 0, job->new_attempts, 0, job->http,
					   "could not record outcome: %.500s", edata->message);
	job->has_pid = false;
	{
		RecordBatch b;
		bool		rec = false;
		ErrorData  *e2;

		b.jobs = &job;
		b.n = 1;
		b.recorded = &rec;
		e2 = in_subxact(record_batch, &b);
		if (e2 != NULL)
		{
			snprintf(msg, sizeof(msg),
					 "partoo worker could not mark message %lld dead, it stays leased",
					 (long long) job->message_id);
			log_caught(e2, msg);
			FreeErrorData(e2);
		}
		else if (!rec)
		{
			defer_job(job, held_retry_ms(job->record_tries));
			return false;
		}
	}
	return true;
}

/*
 * Record the finished jobs that are due (record_at_ms), in a
 * subtransaction.  Outcomes of rows another session holds wait for a
 * later transaction.  If the batch fails, it is recorded job by job (see
 * unrecordable()); an error that says nothing about the rows (a lock
 * timeout, a cancel) leaves them all for later.  The jobs done with are
 * marked recorded, and freed only once the transaction has committed
 * (release_recorded).  Returns the earliest delay before a row put back
 * for a later attempt is due, or NEVER.
 */
static int64
record_results(void)
{
	int64		now = now_ms();
	PartooJob		  **due = palloc(sizeof(PartooJob *) * Max(nresults, 1));
	bool	   *recorded = palloc0(sizeof(bool) * Max(nresults, 1));
	bool	   *done = palloc0(sizeof(bool) * Max(nresults, 1));
	int			ndue = 0;
	int64		soonest = NEVER;
	ErrorData  *edata;
	RecordBatch b;
	int			i;

	for (i = 0; i < nresults; i++)
		if (results[i]->record_at_ms <= now && !results[i]->recorded)
			due[ndue++] = results[i];
	if (ndue == 0)
		return NEVER;
	pgstat_report_activity(STATE_RUNNING, "recording outcomes");

	b.jobs = due;
	b.n = ndue;
	b.recorded = recorded;
	edata = in_subxact(record_batch, &b);
	if (edata == NULL)
	{
		for (i = 0; i < ndue; i++)
		{
			if (recorded[i])
				done[i] = true;
			else
				defer_job(due[i], held_retry_ms(due[i]->record_tries));
		}
	}
	else if (transient_error(edata))
	{
		log_caught(edata, "partoo worker could not record outcomes now, trying again later");
		for (i = 0; i < ndue; i++)
			defer_job(due[i], held_retry_ms(due[i]->record_tries));
		FreeErrorData(edata);
	}
	else
	{
		char		msg[120];

		snprintf(msg, sizeof(msg),
				 "partoo worker could not record a batch of %d outcomes, recording them one by one",
				 ndue);
		log_caught(edata, msg);
		FreeErrorData(edata);
		for (i = 0; i < ndue; i++)
		{
			PartooJob		   *job = due[i];

			if (got_sigterm && shutdown_left_ms() <= 0)
			{
				defer_job(job, 0);
				continue;
			}
			b.jobs = &due[i];
			b.n = 1;
			b.recorded = &recorded[i];
			edata = in_subxact(record_batch, &b);
			if (edata == NULL)
			{
				if (recorded[i])
					done[i] = true;
				else
					defer_job(job, held_retry_ms(job->record_tries));
				continue;
			}
			if (transient_error(edata))
				defer_job(job, held_retry_ms(job->record_tries));
			else
				done[i] = unrecordable(job, edata, &soonest);
			FreeErrorData(edata);
		}
	}

	track_recorded_sent(due, ndue, done);

	/* freed once the transaction commits (release_recorded) */
	for (i = 0; i < ndue; i++)
	{
		if (!done[i])
			continue;
		if (!due[i]->final)
			soonest = Min(soonest, due[i]->delay_ms);
		due[i]->recorded = true;
	}
	return soonest;
}

/*
 * After the commit of a transaction that recorded outcomes: free the jobs
 * it recorded (or dealt with otherwise), keeping the others in order.
 */
static void
release_recorded(void)
{
	int			i,
				k;

	for (i = 0, k = 0; i < nresults; i++)
	{
		if (results[i]->recorded)
			free_job(results[i]);
		else
			results[k++] = results[i];
	}
	nresults = k;
}

/* After an abort: what it recorded was not, and is recorded again */
static void
unmark_recorded(void)
{
	int			i;

	for (i = 0; i < nresults; i++)
		results[i]->recorded = false;
}

/* ---------------------------------------------------------------------
 * Claims
 * ---------------------------------------------------------------------
 */

/*
 * The outbox ids the worker holds (claimed, in flight, or waiting to be
 * recorded) and those it skips: a claim must not take them again, even
 * once their lease has run out.
 */
static Datum *
held_ids(int *n)
{
	Datum	   *ids = palloc(sizeof(Datum) * (ninflight + nwaiting + nresults + nskipped + 1));
	int64		now = now_ms();
	int			k = 0;
	int			i;

	for (i = 0; i < ninflight; i++)
		ids[k++] = Int64GetDatum(inflight[i]->outbox_id);
	for (i = 0; i < nwaiting; i++)
		ids[k++] = Int64GetDatum(waiting[i]->outbox_id);
	for (i = 0; i < nresults; i++)
		ids[k++] = Int64GetDatum(results[i]->outbox_id);
	for (i = 0; i < nskipped;)
	{
		if (skipped[i].until_ms <= now)
		{
			skipped[i] = skipped[--nskipped];
			continue;
		}
		ids[k++] = Int64GetDatum(skipped[i].id);
		i++;
	}
	*n = k;
	return ids;
}

static void
skip_row(int64 id, int64 for_ms)
{
	if (nskipped == skipped_cap)
	{
		int			cap = Max(16, skipped_cap * 2);
		SkippedRow *p = realloc(skipped, sizeof(SkippedRow) * cap);

		if (p == NULL)
			return;				/* then it is tried again; no harm */
		skipped = p;
		skipped_cap = cap;
	}
	skipped[nskipped].id = id;
	skipped[nskipped].until_ms = now_ms() + for_ms;
	nskipped++;
}

/* Jobs for the rows a claim left in SPI_tuptable, into fresh */
static void
fill_fresh(uint64 n)
{
	uint64		i;

	ensure_job_lists(ninflight + nwaiting + nresults + nfresh + (int) n + 1);
	for (i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		PartooJob		   *job = xmalloc0(sizeof(PartooJob));

		fresh[nfresh++] = job;	/* freed by discard_fresh() on error */
		job->generation = served_generation;
		partoo_job_fill(job, t, d,
						account_get(SPI_getvalue(t, d, PARTOO_CLAIM_ACCOUNT), false));
	}
}

/* Forget the jobs of fresh[first..): their claim was rolled back */
static void
discard_fresh_from(int first)
{
	while (nfresh > first)
		free_job(fresh[--nfresh]);
}

static void
discard_fresh(void)
{
	discard_fresh_from(0);
}

/*
 * What a claim shares with its subtransactions: the accounts and their
 * quotas, the ids not to claim again, and what was claimed.
 */
typedef struct ClaimArgs
{
	int			limit;
	Datum	   *names;
	Datum	   *quotas;
	int			nnames;
	Datum	   *held;
	int			nheld;
	int64		id;				/* for a claim of one row */
	uint64		n;
} ClaimArgs;

static void
claim_batch(void *arg)
{
	ClaimArgs  *c = (ClaimArgs *) arg;

	c->n = partoo_outbox_claim(c->limit, c->names, c->quotas, c->nnames,
							   partoo_lease_s, c->held, c->nheld);
	fill_fresh(c->n);
}

static void
claim_one(void *arg)
{
	ClaimArgs  *c = (ClaimArgs *) arg;

	c->n = partoo_outbox_claim_id(c->id, partoo_lease_s);
	fill_fresh(c->n);
}

typedef struct PoisonRow
{
	int64		id;
	const char *reason;
	bool		gone;
} PoisonRow;

static void
poison_dead(void *arg)
{
	PoisonRow  *p = (PoisonRow *) arg;

	p->gone = !partoo_outbox_claim_failed(p->id, p->reason);
}

static void
poison_aside(void *arg)
{
	PoisonRow  *p = (PoisonRow *) arg;

	partoo_outbox_put_aside(p->id, partoo_retry_max_ms);
}

/*
 * An outbox row whose claim failed with edata: its message becomes dead
 * with the reason, so that the others keep flowing.  Failing that (a
 * trigger that refuses that too), the row is put aside for
 * partoo.retry_max; failing that, this worker skips it for as long.
 */
static void
isolate_poison(int64 id, ErrorData *edata)
{
	PoisonRow	p;
	ErrorData  *e2;
	char		msg[120];

	snprintf(msg, sizeof(msg),
			 "partoo worker could not claim outbox row %lld, marking its message dead",
			 (long long) id);
	log_caught(edata, msg);
	slot_error(edata->message ? edata->message : "");
	p.id = id;
	p.reason = psprintf("could not claim: %.500s", edata->message ? edata->message : "");
	p.gone = false;
	e2 = in_subxact(poison_dead, &p);
	if (e2 == NULL)
		return;
	if (transient_error(e2))
		ReThrowError(e2);
	log_caught(e2, "partoo worker could not mark the message dead, putting its outbox row aside");
	FreeErrorData(e2);
	e2 = in_subxact(poison_aside, &p);
	if (e2 == NULL)
		return;
	if (transient_error(e2))
		ReThrowError(e2);
	log_caught(e2, "partoo worker could not put the outbox row aside, skipping it");
	FreeErrorData(e2);
	skip_row(id, partoo_retry_max_ms);
}

/*
 * Claim what the accounts' quotas allow, in a subtransaction.  If the
 * claim fails for a reason of its rows (a trigger, bad data), the rows
 * are claimed one by one, and the one that fails is isolated
 * (isolate_poison).  An error that says nothing about the rows is thrown.
 */
static uint64
claim_rows(ClaimArgs *c)
{
	ErrorData  *edata;
	int			first = nfresh;
	uint64		total = 0;
	uint64		ncand;
	uint64		i;
	int64	   *cand;

	edata = in_subxact(claim_batch, c);
	if (edata == NULL)
		return c->n;
	discard_fresh_from(first);
	if (transient_error(edata))
		ReThrowError(edata);
	log_caught(edata, "partoo worker could not claim a batch of outbox rows, claiming them one by one");
	FreeErrorData(edata);

	cand = partoo_outbox_claim_candidates(c->limit, c->names, c->quotas, c->nnames,
										  c->held, c->nheld, &ncand);
	for (i = 0; i < ncand; i++)
	{
		first = nfresh;
		c->id = cand[i];
		edata = in_subxact(claim_one, c);
		if (edata == NULL)
		{
			total += c->n;
			continue;
		}
		discard_fresh_from(first);
		if (transient_error(edata))
			ReThrowError(edata);
		isolate_poison(cand[i], edata);
		FreeErrorData(edata);
	}
	return total;
}

static void
claim_all(void *arg)
{
	ClaimArgs  *c = (ClaimArgs *) arg;

	c->n = claim_rows(c);
}

/*
 * One claim's view of the accounts: the rows each may take (the tokens it
 * reserved), which may have more rows due than it took, and how long until
 * one out of tokens has some again.
 */
typedef struct ClaimRound
{
	int			limit;			/* rows the claim may take in all */
	int64		now;
	PartooWorkerAccount **all;	/* every account, in hash order */
	int			nall;
	Datum	   *names;			/* accounts with tokens (text) ... */
	Datum	   *quotas;			/* ... and how many rows each may take */
	int			nnames;
	Datum	   *open;			/* accounts whose next due row says when to
								 * claim again */
	int			nopen;
	int64		token_wait;		/* until an account out of tokens has one */
} ClaimRound;

/* Start a round with every account, none of them given tokens yet */
static void
begin_claim_round(ClaimRound *r, int limit)
{
	HASH_SEQ_STATUS seq;
	PartooWorkerAccount *a;
	long		nacc = hash_get_num_entries(accounts);

	r->limit = limit;
	r->now = now_ms();
	r->all = palloc(sizeof(PartooWorkerAccount *) * (nacc + 1));
	r->names = palloc(sizeof(Datum) * (nacc + 1));
	r->quotas = palloc(sizeof(Datum) * (nacc + 1));
	r->open = palloc(sizeof(Datum) * (nacc + 1));
	r->nall = 0;
	r->nnames = 0;
	r->nopen = 0;
	r->token_wait = NEVER;
	hash_seq_init(&seq, accounts);
	while ((a = hash_seq_search(&seq)) != NULL)
		r->all[r->nall++] = a;
}

/*
 * Reserve rate-limit tokens: each account may take what its bucket holds
 * now (all it likes without a limit, none while a 429 pauses it), and the
 * accounts are offered in an order that rotates from one claim to the
 * next so that none is always served last.  The paused accounts are shown
 * in partoo.worker_status().
 */
static void
reserve_tokens(ClaimRound *r)
{
	static uint32 rotation = 0;
	StringInfoData paused;
	int			k;

	initStringInfo(&paused);
	for (k = 0; k < r->nall; k++)
	{
		PartooWorkerAccount *a = r->all[(k + rotation) % r->nall];
		int64		paused_until = partoo_ratelimit_paused_until(a->rl);
		int64		wait = 0;

		a->reserved = 0;
		a->used = 0;
		if (paused_until > r->now)
		{
			/* in whole seconds, rounded up */
			appendStringInfo(&paused, "%s%s (%lld s)", paused.len ? ", " : "",
							 a->name[0] ? a->name : "(default)",
							 (long long) ((paused_until - r->now + 999) / 1000));
			wait = paused_until - r->now;
		}
		else if (a->rpm == 0)
			a->reserved = r->limit;
		else
		{
			while (a->reserved < r->limit &&
				   (wait = partoo_ratelimit_acquire(a->rl, r->now)) == 0)
				a->reserved++;
		}
		if (a->reserved == 0)
			r->token_wait = Min(r->token_wait, Max(wait, 1));
		else
		{
			r->names[r->nnames] = CStringGetTextDatum(a->name);
			r->quotas[r->nnames++] = Int32GetDatum(a->reserved);
		}
	}
	rotation++;
	SpinLockAcquire(&slot->mutex);
	slot_text(slot->paused, sizeof(slot->paused), paused.data);
	SpinLockRelease(&slot->mutex);
}

/*
 * Claim what the reserved tokens allow, into fresh[first..), in a
 * subtransaction of its own, so that a claim that fails (a lock it could
 * not have, a bug) does not take the outcomes this transaction recorded
 * with it.  Returns NULL and the number claimed in *n, or the error (the
 * caller frees it), logged unless it is a cancel, and nothing claimed.
 */
static ErrorData *
claim_reserved(ClaimRound *r, int first, uint64 *n)
{
	ClaimArgs	c;
	ErrorData  *failed;

	memset(&c, 0, sizeof(c));
	c.limit = r->limit;
	c.names = r->names;
	c.quotas = r->quotas;
	c.nnames = r->nnames;
	c.held = held_ids(&c.nheld);
	failed = in_subxact(claim_all, &c);
	if (failed == NULL)
	{
		*n = c.n;
		return NULL;
	}
	discard_fresh_from(first);
	if (failed->sqlerrcode != ERRCODE_QUERY_CANCELED)
	{
		log_caught(failed, "partoo worker could not claim outbox rows, trying again later");
		if (!transient_error(failed))
			slot_error(failed->message ? failed->message : "");
	}
	return failed;
}

/* Count the tokens the jobs of fresh[first..) used, each its account's */
static void
count_used_tokens(int first)
{
	int			k;

	for (k = first; k < nfresh; k++)
	{
		PartooWorkerAccount *a = account_get(fresh[k]->account, false);

		if (a != NULL && a->reserved > a->used)
			a->used++;			/* paid for by a reserved token */
	}
}

/*
 * Give back the tokens not used.  Accounts that used all they had may
 * have more rows due, but get tokens back only later (token_wait); the
 * others tell when their next row is due (open).
 */
static void
return_unused_tokens(ClaimRound *r)
{
	int			k;

	for (k = 0; k < r->nall; k++)
	{
		PartooWorkerAccount *a = r->all[k];
		int			had = a->reserved;

		if (a->rpm > 0)
		{
			while (a->reserved > a->used)
			{
				partoo_ratelimit_release(a->rl, r->now);
				a->reserved--;
			}
		}
		if (had == 0)
			continue;			/* paused or out of tokens: token_wait */
		if (a->rpm > 0 && a->used == had)
		{
			int64		w = partoo_ratelimit_acquire(a->rl, r->now);

			if (w == 0)
			{
				partoo_ratelimit_release(a->rl, r->now);
				w = 1;
			}
			r->token_wait = Min(r->token_wait, w);
			continue;
		}
		r->open[r->nopen++] = CStringGetTextDatum(a->name);
	}
}

/*
 * How long until a claim may find more, after one that took n rows or
 * failed: 0 (at once) when it took all it could, otherwise until the open
 * accounts' next row is due or an account has tokens again (NEVER: only
 * on a wake-up).
 */
static int64
next_claim_delay(ClaimRound *r, ErrorData *failed, uint64 n)
{
	static int	held_tries = 0;
	int64		due;

	if (failed != NULL)
		return transient_error(failed) ? held_retry_ms(held_tries++) : ERROR_PAUSE_MS;
	if ((int) n >= r->limit)
	{
		held_tries = 0;
		return 0;
	}
	due = partoo_outbox_next_due_ms(r->open, r->nopen);

	/*
	 * Rows due now that this claim did not take are held by another session
	 * (locked, or their message is), or by this worker: come back for them a
	 * little later, not at once.
	 */
	if (due == 0)
		due = held_retry_ms(held_tries++);
	else
		held_tries = 0;
	return Min(due < 0 ? NEVER : due, r->token_wait);
}

/*
 * Claim up to limit rows in the current transaction, taking rate-limit
 * tokens for them (reserve them, claim, pay for the rows claimed, give the
 * rest back).  Returns the number claimed; *next_ms gets how long until a
 * claim may find more (0: at once, NEVER: only on a wake-up).
 */
static int
claim(int limit, int64 *next_ms)
{
	ClaimRound	r;
	int			first = nfresh;
	uint64		n = 0;
	ErrorData  *failed = NULL;

	pgstat_report_activity(STATE_RUNNING, "claiming outbox rows");
	begin_claim_round(&r, limit);
	reserve_tokens(&r);
	if (r.nnames > 0)
		failed = claim_reserved(&r, first, &n);
	count_used_tokens(first);
	return_unused_tokens(&r);
	*next_ms = next_claim_delay(&r, failed, n);
	if (failed != NULL)
		FreeErrorData(failed);
	return (int) n;
}

/*
 * Start waiting jobs, oldest first, while the window has room.  The
 * window counts requests in flight: a finished request gives its slot
 * back at once, so that the time its outcome waits to be recorded (up to
 * RECORD_DELAY_MS and a commit) does not idle the slot; at a distance
 * that wait was a sixth of each slot's time.  What a crash would send
 * twice, the messages sent and not yet recorded, stays bounded: at most
 * twice the window, counting the outcomes waiting.  An outcome put off
 * (its row held by another session, or its recording failed) is not
 * counted, or a session that holds that many messages would stop all
 * sending.
 */
static void
start_waiting(void)
{
	int			started = 0;
	int			busy = ninflight + rflight.n;
	int			unrecorded = 0;
	int			i;

	for (i = 0; i < nresults; i++)
		if (results[i]->record_tries == 0 && !results[i]->recorded)
			unrecorded++;
	while (started < nwaiting && busy + started < window &&
		   busy + unrecorded + started < 2 * window)
	{
		PartooJob		   *job = waiting[started++];

		job->inflight_index = ninflight;
		inflight[ninflight++] = job;
		partoo_http_start(job->req, partoo_timeout_ms, partoo_connect_timeout_ms);
	}
	if (started > 0)
	{
		nwaiting -= started;
		memmove(waiting, waiting + started, sizeof(PartooJob *) * nwaiting);
	}
}

/* Queue freshly claimed jobs (after their commit) and start what fits */
static void
start_fresh(void)
{
	int			first = nresults;
	int			i;

	for (i = 0; i < nfresh; i++)
	{
		PartooJob		   *job = fresh[i];

		if (job->req == NULL)
			add_result(job);	/* outcome known without a request */
		else
			waiting[nwaiting++] = job;
	}
	nfresh = 0;
	count_jobs(results + first, nresults - first);
	start_waiting();
}

/* ---------------------------------------------------------------------
 * The loop
 * ---------------------------------------------------------------------
 */

static void
clear_slot(int code, Datum arg)
{
	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	slot->pid = 0;
	slot->latch = NULL;
	slot->in_flight = 0;
	SpinLockRelease(&slot->mutex);
}

/* An error caught by the loop: logged, and shown in worker_status() */
static void
report_error(void)
{
	ErrorData  *edata;

	edata = CopyErrorData();
	FlushErrorState();
	slot_error(edata->message ? edata->message : "");
	log_caught(edata, "partoo worker caught an error and continues");
	FreeErrorData(edata);
}

/*
 * Forget every reconciliation fetch: picked, in flight (its request
 * abandoned) or ended.  Their rows stay leased and are checked again when
 * the lease runs out.
 */
static void
discard_reconcile(void)
{
	HASH_SEQ_STATUS seq;
	PartooWorkerAccount *a;

	fetch_list_clear(&rpicked);
	fetch_list_clear(&rflight);
	fetch_list_clear(&rdone);
	if (accounts == NULL)
		return;
	hash_seq_init(&seq, accounts);
	while ((a = hash_seq_search(&seq)) != NULL)
		a->reconcile_in_flight = 0;
}

/*
 * The extension we served is gone (DROP EXTENSION, perhaps followed by a
 * new CREATE EXTENSION): forget everything claimed from it, and look for
 * the extension again at once.  Answers not recorded yet are thrown away,
 * and so will be those of the requests still in flight (collect());
 * nothing was recorded for them and their tables are gone.  Says so in
 * one line.
 */
static void
forget_extension(void)
{
	int			discarded = nresults + nwaiting;
	int			in_flight = ninflight;

	while (nresults > 0)
		free_job(results[--nresults]);
	while (nwaiting > 0)
		free_job(waiting[--nwaiting]);
	discard_fresh();
	discard_reconcile();
	nskipped = 0;
	served_generation++;
	served_oid = InvalidOid;
	serving = false;
	next_claim_at = 0;
	accounts_loaded = false;
	ereport(LOG,
			(errmsg("partoo worker stopped serving database \"%s\": extension partoo was dropped",
					slot->dbname),
			 errdetail("%d claimed messages and the answers of %d requests in flight are discarded; the worker waits for CREATE EXTENSION partoo.",
					   discarded, in_flight)));
}

/*
 * Take the worker's lock on its database, without waiting: another
 * partoo worker for this database may still be exiting (a restart racing
 * with its predecessor).  A session lock, gone with the process.  NB: the
 * two-key form with partoo's own class id (PARTOO_LOCK_CLASS_ID), so that
 * no application's pg_advisory_lock(bigint) can collide with it.
 */
static bool
take_database_lock(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, PARTOO_LOCK_CLASS_ID,
						 PARTOO_LOCK_WORKER, 2);
	return LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL;
}

/* Apply the pending webhook events of the owed buckets in *arg */
static void
apply_owed(void *arg)
{
	uint64	   *mask = (uint64 *) arg;

	*mask = partoo_webhook_apply_owed(*mask);
}

/*
 * SIGTERM: claim nothing more, start nothing more, give requests in
 * flight until partoo.shutdown_timeout after the signal, and record what
 * finished within the same bound (its statements are canceled when the
 * time is up).  Requests still running and waiting jobs are abandoned:
 * their rows stay leased and the next worker makes them due again.
 */
static void
shutdown_worker(void)
{
	int			i;

	while (ninflight > 0 && shutdown_left_ms() > 0)
	{
		int			rc = partoo_http_wait((long) shutdown_left_ms());

		if (rc & PARTOO_WAKE_LATCH)
			ResetLatch(MyLatch);
		collect();
	}
	while (ninflight > 0)
		free_job(inflight[--ninflight]);
	while (nwaiting > 0)
		free_job(waiting[--nwaiting]);
	discard_fresh();
	discard_reconcile();		/* only statuses: checked again later */
	if (nresults > 0)
	{
		for (i = 0; i < nresults; i++)
			results[i]->record_at_ms = 0;
		PG_TRY();
		{
			begin_txn("recording outcomes before exit");
			enable_timeout_after(STATEMENT_TIMEOUT, (int) Max(1, Min(shutdown_left_ms(), INT_MAX)));
			(void) record_results();
			disable_timeout(STATEMENT_TIMEOUT, false);
			end_txn();
			release_recorded();
		}
		PG_CATCH();
		{
			disable_timeout(STATEMENT_TIMEOUT, false);
			HOLD_INTERRUPTS();
			report_error();
			AbortOutOfAnyTransaction();
			leave_db_work();
			RESUME_INTERRUPTS();
		}
		PG_END_TRY();
	}
	ereport(LOG,
			(errmsg("partoo worker for database \"%s\" stopped", slot->dbname)));
	proc_exit(1);				/* restarted after bgw_restart_time if the
								 * server keeps running */
}

/*
 * When the results want recording: *need when due ones should be
 * recorded now; returns the delay until they should (-1: no results).
 */
static long
results_timing(int64 now, bool *need)
{
	int64		oldest_due = NEVER;
	int64		next = NEVER;
	int			ndue = 0;
	int			i;

	*need = false;
	for (i = 0; i < nresults; i++)
	{
		int64		at = results[i]->record_at_ms;

		if (results[i]->recorded)
			continue;
		if (at <= now)
		{
			ndue++;
			oldest_due = Min(oldest_due, at);
		}
		else
			next = Min(next, at);
	}
	if (ndue > 0)
	{
		*need = ninflight == 0 || ndue >= RECORD_BATCH ||
			now - oldest_due >= RECORD_DELAY_MS;
		next = Min(next, oldest_due + RECORD_DELAY_MS);
	}
	if (next == NEVER)
		return -1;
	return (long) Max(0, next - now);
}

/*
 * Take slot index, set up signals, connect to the slot's database, and
 * show this process in the slot until it exits.
 */
static void
attach_to_slot(int index)
{
	slot = partoo_slot(index);
	if (slot == NULL)
		ereport(FATAL,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("partoo worker started without shared memory")));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, handle_sigterm);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(slot->dbname, NULL, 0);
	pgstat_report_appname("partoo worker");
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	SpinLockAcquire(&slot->mutex);
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	slot->dboid = MyDatabaseId;
	slot->in_flight = 0;
	slot->started_at = GetCurrentTimestamp();
	SpinLockRelease(&slot->mutex);
	before_shmem_exit(clear_slot, (Datum) 0);
}

/*
 * NB: every iteration allocates and frees the same few megabytes
 * (batches, SPI results, executor state).  glibc's default adaptive
 * thresholds hand that memory back to the kernel at each free and fault
 * it in again at the next allocation: that cost the worker a tenth of its
 * CPU (page faults and brk, measured with perf).  Keep up to
 * FREE_HEAP_KEPT of free heap instead, and take blocks below
 * MMAP_THRESHOLD from the heap (fixed thresholds, no longer adaptive); a
 * steady size, not a growing one.
 */
#define FREE_HEAP_KEPT (64 * 1024 * 1024)
#define MMAP_THRESHOLD (16 * 1024 * 1024)

static void
keep_free_heap(void)
{
#ifdef M_TRIM_THRESHOLD
	mallopt(M_TRIM_THRESHOLD, FREE_HEAP_KEPT);
	mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
#endif
}

/*
 * The accounts' hash and the job lists, for the life of the process; the
 * lists sized for what a worker holds at most with the settings at start
 * (twice the larger of a claim and the slots), and grown if they change.
 */
static void
create_local_state(void)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(PartooWorkerAccount);
	ctl.hash = account_hash;
	ctl.match = account_match;
	accounts = hash_create("partoo accounts", 64, &ctl,
						   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE);
	ensure_job_lists(Max(partoo_max_in_flight, partoo_batch_size) * 2 + 16);
	partoo_latency_init(&latency);
	size_fd_room();
}

/* SIGHUP: reload the settings; the default account and the pace may change */
static void
reload_config_if_pending(void)
{
	if (!ConfigReloadPending)
		return;
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	size_fd_room();				/* the cap may have changed */
	accounts_loaded = false;	/* the default account may change */
	next_claim_at = 0;
	next_reconcile_at = 0;		/* reconciliation may have been turned on */
}

/*
 * Begin serving an installation of the extension, in a transaction of
 * its own: find the extension, take the database lock (once), and make
 * the rows a dead predecessor leased due again.  Returns whether the
 * worker serves now.
 */
static bool
start_serving(void)
{
	bool		installed;
	Oid			oid;

	begin_txn("starting");
	oid = partoo_outbox_extension_oid();
	installed = OidIsValid(oid);
	if (installed && !db_locked)
		db_locked = take_database_lock();
	if (installed && db_locked)
	{
		uint64		n = partoo_outbox_recover();

		if (n > 0)
			ereport(LOG,
					(errmsg("partoo worker made %llu rows leased by a previous worker due again",
							(unsigned long long) n)));
	}
	end_txn();
	serving = installed && db_locked;
	if (serving)
		served_oid = oid;
	return serving;
}

/* What an iteration's transaction has to do */
typedef struct LoopWork
{
	bool		record;			/* outcomes want recording now */
	bool		claim;			/* slots are free and a claim is due */
	bool		owed;			/* owed webhook buckets are due a pass */
	bool		reconcile;		/* a pick of due status checks is due */
	bool		reconciled;		/* ended fetches want recording */
} LoopWork;

/*
 * Decide what is due at now into *work.  Returns when the results want
 * recording (as results_timing).
 */
static long
decide_work(int64 now, LoopWork *work)
{
	long		t = results_timing(now, &work->record);

	work->claim = ninflight + nwaiting <= window &&
		now >= next_claim_at;
	owed |= partoo_take_owed_pending(slot);
	work->owed = owed != 0 && now >= owed_at;
	work->reconcile = partoo_reconcile_after_ms > 0 && now >= next_reconcile_at &&
		!got_sigterm;
	work->reconciled = rdone.n > 0;
	return t;
}

/*
 * A transaction that only claims need not wait for its WAL flush: if a
 * crash loses it, its rows are simply still due, just as
 * partoo_outbox_recover makes leased rows due again at start.  Waiting put
 * an fsync between every enqueue's commit and its request.  Outcomes stay
 * synchronous: losing one would re-send a sent message.
 */
static void
commit_without_flush(void)
{
	(void) set_config_option("synchronous_commit", "off",
							 PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/* Record the due outcomes; a row put back for a later attempt is due then */
static void
record_due_results(int64 now)
{
	int64		soonest = record_results();

	if (soonest != NEVER)
		next_claim_at = Min(next_claim_at, now + soonest);
}

/*
 * Apply the pending webhook events of the owed buckets, in a
 * subtransaction.  Buckets left owed (held by an open ingest, or an
 * error) get another pass later, backing off.
 */
static void
apply_owed_events(int64 now)
{
	uint64		todo = owed;
	ErrorData  *edata;

	owed = 0;
	edata = in_subxact(apply_owed, &todo);
	if (edata != NULL)
	{
		if (edata->sqlerrcode != ERRCODE_QUERY_CANCELED)
			log_caught(edata, "partoo worker could not apply pending webhook events, trying again later");
		FreeErrorData(edata);
	}
	owed |= todo;
	if (owed != 0)
		owed_at = now + held_retry_ms(owed_tries++);
	else
		owed_tries = 0;
}

/* What recording the ended fetches shares with its subtransaction */
typedef struct ReconcileRecord
{
	int			applied;
} ReconcileRecord;

static void
record_reconciled_batch(void *arg)
{
	((ReconcileRecord *) arg)->applied = partoo_reconcile_record(rdone.v, rdone.n);
}

/*
 * Record what the ended fetches found, in a subtransaction; they are
 * freed once the transaction commits (or aborts: their rows stay leased,
 * and are checked again when the lease runs out).  Their rows are due
 * again after reconcile_after at the soonest: pick then.
 */
static void
record_reconciled(int64 now)
{
	ReconcileRecord r = {0};
	ErrorData  *edata;

	pgstat_report_activity(STATE_RUNNING, "recording reconciled statuses");
	edata = in_subxact(record_reconciled_batch, &r);
	if (edata != NULL)
	{
		if (edata->sqlerrcode != ERRCODE_QUERY_CANCELED)
			log_caught(edata, "partoo worker could not record reconciled statuses, checking them again later");
		FreeErrorData(edata);
	}
	else if (r.applied > 0)
		count_reconcile(0, r.applied, 0);
	next_reconcile_at = Min(next_reconcile_at, now + partoo_reconcile_after_ms);
}

/*
 * Track the messages the recording just made 'sent' for reconciliation
 * (reconcile.c), in a subtransaction of its own: a failure there never
 * undoes the recording; its messages are only not checked.
 */
typedef struct TrackArgs
{
	int64	   *ids;
	int			n;
} TrackArgs;

static void
track_sent(void *arg)
{
	TrackArgs  *t = (TrackArgs *) arg;

	partoo_reconcile_track(t->ids, t->n);
}

static void
track_recorded_sent(PartooJob **jobs, int n, const bool *done)
{
	TrackArgs	t;
	ErrorData  *edata;
	int			i;

	if (partoo_reconcile_after_ms <= 0)
		return;
	t.ids = palloc(sizeof(int64) * Max(n, 1));
	t.n = 0;
	for (i = 0; i < n; i++)
		if (done[i] && jobs[i]->state != NULL && strcmp(jobs[i]->state, "sent") == 0)
			t.ids[t.n++] = jobs[i]->message_id;
	if (t.n == 0)
		return;
	edata = in_subxact(track_sent, &t);
	if (edata != NULL)
	{
		if (edata->sqlerrcode != ERRCODE_QUERY_CANCELED)
			log_caught(edata, "partoo worker could not track sent messages for reconciliation");
		FreeErrorData(edata);
		return;
	}
	next_reconcile_at = Min(next_reconcile_at, now_ms() + partoo_reconcile_after_ms);
}

/* What a pick shares with its subtransaction */
typedef struct ReconcilePick
{
	Datum	   *excluded;
	int			nexcluded;
	int			free_slots;
	int64		now;
	bool		more;			/* due checks left for lack of slots or tokens */
} ReconcilePick;

/*
 * Pick the due checks and keep, into rpicked, the fetches the slots, the
 * accounts' caps and their spare tokens allow; lease their rows.  Every
 * other fetch is freed (its rows stay due).
 */
static void
pick_reconcile_batch(void *arg)
{
	ReconcilePick *p = (ReconcilePick *) arg;
	PartooReconcileFetch **picked;
	MemoryContext cxt = CurrentMemoryContext;
	int			n;
	int			i;
	int			first = rpicked.n;

	PartooReconcileFetch **orphans;
	int			norphans = 0;

	/*
	 * XXX: an error inside partoo_reconcile_pick leaks the fetches it had
	 * made (malloc'd); it can only be out of memory or a broken table.
	 */
	n = partoo_reconcile_pick(p->excluded, p->nexcluded, RECONCILE_PICK_LIMIT, &picked);
	orphans = palloc(sizeof(PartooReconcileFetch *) * Max(n, 1));
	/* NB: picked lives in SPI's memory: the fetches move to rpicked now */
	for (i = 0; i < n; i++)
	{
		PartooReconcileFetch *f = picked[i];
		PartooWorkerAccount *a = account_get(f->account, false);

		picked[i] = NULL;
		if (a == NULL)
		{
			/*
			 * An account that is gone: its rows wait a lease, like its
			 * queued messages wait for the account to come back.
			 */
			orphans[norphans++] = f;
			continue;
		}
		if (rpicked.n - first >= p->free_slots ||
			a->reconcile_in_flight >= PARTOO_RECONCILE_PER_ACCOUNT ||
			a->reconcile_paused_until > p->now || !reconcile_token(a, p->now))
		{
			p->more = true;
			partoo_reconcile_fetch_free(f);
			continue;
		}
		f->generation = served_generation;
		a->reconcile_in_flight++;
		fetch_list_push(&rpicked, f);
	}
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		partoo_reconcile_lease(orphans, norphans, partoo_lease_s);
	}
	PG_FINALLY();
	{
		for (i = 0; i < norphans; i++)
			partoo_reconcile_fetch_free(orphans[i]);
	}
	PG_END_TRY();
	partoo_reconcile_lease(rpicked.v + first, rpicked.n - first, partoo_lease_s);
}

/*
 * Pick due status checks for the slots and rate tokens the sends leave
 * (none while a claimed send waits), in a subtransaction; set when to
 * pick next: at once if checks were left over (after
 * RECONCILE_PICK_MIN_MS), otherwise when the next row is due or after
 * RECONCILE_IDLE_MS, whichever comes first.
 */
static void
pick_reconcile(int64 now)
{
	ReconcilePick p;
	HASH_SEQ_STATUS seq;
	PartooWorkerAccount *a;
	ErrorData  *edata;
	int			busy = ninflight + rflight.n;
	int			i;
	int64		due = -1;

	next_reconcile_at = now + RECONCILE_PICK_MIN_MS;
	if (!partoo_reconcile_available())
	{
		next_reconcile_at = NEVER;	/* a schema before 0.4 */
		return;
	}
	for (i = 0; i < nresults; i++)
		if (results[i]->record_tries == 0)
			busy++;
	memset(&p, 0, sizeof(p));
	p.now = now;
	p.free_slots = window - busy - nwaiting - nfresh;
	if (nwaiting + nfresh > 0 || p.free_slots <= 0)
		return;					/* sends first */
	pgstat_report_activity(STATE_RUNNING, "picking status checks");
	p.excluded = palloc(sizeof(Datum) * (hash_get_num_entries(accounts) + 1));
	hash_seq_init(&seq, accounts);
	while ((a = hash_seq_search(&seq)) != NULL)
		if (a->reconcile_in_flight >= PARTOO_RECONCILE_PER_ACCOUNT ||
			a->reconcile_paused_until > now ||
			partoo_ratelimit_paused_until(a->rl) > now)
			p.excluded[p.nexcluded++] = CStringGetTextDatum(a->name);
	edata = in_subxact(pick_reconcile_batch, &p);
	if (edata != NULL)
	{
		if (edata->sqlerrcode != ERRCODE_QUERY_CANCELED)
			log_caught(edata, "partoo worker could not pick status checks, trying again later");
		FreeErrorData(edata);
		fetch_list_clear(&rpicked);
		next_reconcile_at = now + ERROR_PAUSE_MS;
		return;
	}
	if (p.more || p.nexcluded > 0)
		return;
	/*
	 * Look again when the next row is due, but at least every
	 * RECONCILE_IDLE_MS (or reconcile_after, if shorter): partoo_send()
	 * and partoo_retry() in other sessions track messages without waking
	 * the worker.
	 */
	due = partoo_reconcile_next_due_ms();
	if (due < 0 || due > RECONCILE_IDLE_MS)
		due = Min((int64) partoo_reconcile_after_ms, RECONCILE_IDLE_MS);
	next_reconcile_at = now + Max(due, RECONCILE_PICK_MIN_MS);
}

/* After the commit of a pick: start the picked fetches' first pages */
static void
start_picked(void)
{
	int			i;

	for (i = 0; i < rpicked.n; i++)
	{
		PartooReconcileFetch *f = rpicked.v[i];
		PartooWorkerAccount *a = account_get(f->account, false);

		rpicked.v[i] = NULL;
		if (a == NULL || !start_reconcile_request(f, a))
		{
			if (a != NULL && f->end == PARTOO_RECONCILE_RUNNING)
				f->end = PARTOO_RECONCILE_FAILED;
			if (a == NULL)
			{
				partoo_reconcile_fetch_free(f);
				continue;
			}
			end_fetch(f, a);
		}
	}
	rpicked.n = 0;
}

/* After the commit of a recording: free the fetches it recorded */
static void
release_reconciled(void)
{
	while (rdone.n > 0)
		partoo_reconcile_fetch_free(rdone.v[--rdone.n]);
}

/*
 * Claim as many rows as keep the jobs held (in flight and waiting) within
 * twice partoo.max_in_flight, and at most partoo.batch_size; set when to
 * claim next.
 */
static void
claim_more(int64 now)
{
	int64		next_ms;
	int			limit = Min(partoo_batch_size,
							2 * window - ninflight - nwaiting);

	(void) claim(limit, &next_ms);
	next_claim_at = (next_ms == NEVER) ? NEVER : now + next_ms;
}

/*
 * The iteration's one short transaction: record outcomes, apply owed
 * webhook events, claim, as each is due; then, once it has committed,
 * free what it recorded and queue and start what it claimed.  If the
 * extension is no longer the one served, nothing of that: the worker
 * forgets it.  Returns when the remaining results want recording (as
 * results_timing).
 */
static long
run_transaction(int64 now, const LoopWork *work)
{
	bool		record_now;

	begin_txn("partoo worker");
	if (partoo_outbox_extension_oid() != served_oid)
	{
		/* dropped, perhaps created again: start over */
		end_txn();
		forget_extension();
		return 0;
	}
	if (!work->record)
		commit_without_flush();
	if (accounts_changed())
		reload_accounts();
	if (work->record)
		record_due_results(now);
	if (work->owed && !got_sigterm)
		apply_owed_events(now);
	if (work->claim && !got_sigterm)
		claim_more(now);
	if (work->reconciled)
		record_reconciled(now);
	if (work->reconcile && !got_sigterm)
		pick_reconcile(now);
	end_txn();
	release_recorded();
	release_reconciled();
	start_fresh();
	start_picked();
	return results_timing(now_ms(), &record_now);
}

/*
 * How long the worker may sleep (-1: until woken): until the results want
 * recording (results_wait), the next claim (if slots are free), or the
 * owed webhook buckets' next pass, whichever comes first.
 */
static long
sleep_time(long results_wait)
{
	long		timeout = results_wait;

	if (ninflight + nwaiting <= window && next_claim_at != NEVER)
	{
		long		c = (long) Max(0, next_claim_at - now_ms());

		timeout = (timeout < 0) ? c : Min(timeout, c);
	}
	if (owed != 0)
	{
		long		o = (long) Max(0, owed_at - now_ms());

		timeout = (timeout < 0) ? o : Min(timeout, o);
	}
	if (rdone.n > 0)
		timeout = 0;			/* record them now */
	else if (partoo_reconcile_after_ms > 0 && next_reconcile_at != NEVER)
	{
		long		r = (long) Max(0, Min(next_reconcile_at - now_ms(), LONG_MAX));

		timeout = (timeout < 0) ? r : Min(timeout, r);
	}
	return timeout;
}

/*
 * One iteration of the loop: reload the settings if asked; begin serving
 * the extension if not yet; take what the network finished and start
 * waiting jobs in the slots it freed; decide what is due and do it in one
 * short transaction.  Returns how long the worker may sleep (-1: until
 * woken).  May throw: the loop catches.
 */
static long
run_iteration(void)
{
	int64		now;
	LoopWork	work;
	long		results_wait;

	CHECK_FOR_INTERRUPTS();
	reload_config_if_pending();
	now = now_ms();
	if (!serving && !start_serving())
		return EXTENSION_WAIT_MS;

	collect();
	start_waiting();
	results_wait = decide_work(now, &work);
	if (work.record || work.claim || work.owed || work.reconcile ||
		work.reconciled || accounts_changed())
		results_wait = run_transaction(now, &work);
	return sleep_time(results_wait);
}

/*
 * After an error the loop caught: log it, abort the transaction, forget
 * what it did (the outcomes it recorded are recorded again, the rows it
 * claimed were not claimed), and claim again after the pause.
 */
static void
recover_from_error(void)
{
	HOLD_INTERRUPTS();
	report_error();
	AbortOutOfAnyTransaction();
	leave_db_work();
	RESUME_INTERRUPTS();
	unmark_recorded();
	discard_fresh();
	fetch_list_clear(&rpicked);
	pgstat_report_activity(STATE_IDLE, NULL);
	next_claim_at = 0;
	next_reconcile_at = now_ms() + ERROR_PAUSE_MS;
}

/*
 * Descriptors PostgreSQL holds beyond fd.c's max_safe_fds: fd.c's own
 * reserve (NUM_RESERVED_FDS, 10) and those opened outside fd.c (standard
 * streams, the postmaster pipe, latches, wait sets), with room to spare
 * for libcurl's resolver pipes.
 */
#define FDS_BEYOND_SAFE 64

/*
 * Of fd.c's share for external descriptors (a third of max_safe_fds, what
 * AcquireExternalFD grants), what the worker leaves to others in this
 * process: the epoll set of every WaitEventSet, its own included, takes
 * one, and AcquireExternalFD fails (EMFILE) past the share.
 */
#define FDS_EXTERNAL_KEEP 16

/*
 * Find how many sockets this process can open for requests (fd_room):
 * raise the soft open-file limit as far as the cap needs and the hard
 * limit allows, count what fd.c does not keep for PostgreSQL's files
 * (max_safe_fds), and if that is short of the cap, take part of fd.c's
 * share as external descriptors (ReserveExternalFD, as postgres_fdw does
 * for its connections: fd.c then keeps fewer files open), at most the
 * third AcquireExternalFD grants, less FDS_EXTERNAL_KEEP.  Logged when
 * the room bounds the window below the cap.  Called at start and when the
 * settings change (the cap may have).
 */
static void
size_fd_room(void)
{
	struct rlimit rl;
	int64		want = (int64) max_safe_fds + FDS_BEYOND_SAFE + partoo_max_in_flight;
	int64		room;
	int			before = fd_room;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		rl.rlim_cur = rl.rlim_max = RLIM_INFINITY;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t) want &&
		(rl.rlim_max == RLIM_INFINITY || rl.rlim_cur < rl.rlim_max))
	{
		struct rlimit raised = rl;

		raised.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t) want) ?
			(rlim_t) want : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
			rl = raised;
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (rlim_t) want)
		room = partoo_max_in_flight;
	else
		room = (int64) rl.rlim_cur - max_safe_fds - FDS_BEYOND_SAFE;
	room = Max(room, 0);
	while (room + fds_reserved < partoo_max_in_flight &&
		   fds_reserved < max_safe_fds / 3 - FDS_EXTERNAL_KEEP)
	{
		ReserveExternalFD();
		fds_reserved++;
	}
	fd_room = (int) Max(room + fds_reserved, 1);
	partoo_http_set_max_connections(Min(fd_room, partoo_max_in_flight));
	if (fd_room < partoo_max_in_flight && fd_room != before)
		ereport(LOG,
				(errmsg("partoo worker can have at most %d requests in flight, fewer than partoo.max_in_flight (%d)",
						fd_room, partoo_max_in_flight),
				 errdetail("The open-file limit is %lld (hard limit %lld), and PostgreSQL keeps up to %d files open.",
						   rl.rlim_cur == RLIM_INFINITY ? -1LL : (long long) rl.rlim_cur,
						   rl.rlim_max == RLIM_INFINITY ? -1LL : (long long) rl.rlim_max,
						   max_safe_fds),
				 errhint("Raise the open-file limit of the server (LimitNOFILE in its systemd unit, or ulimit -n), or lower max_files_per_process.")));
	update_window();
}

/* Size the window for what the accounts need at the latency observed */
static void
update_window(void)
{
	window = partoo_window_size(accounts_per_second, any_unlimited,
								partoo_latency_us(&latency),
								partoo_latency_floor_us(&latency),
								partoo_max_in_flight, fd_room);
}

/*
 * Show the requests in flight, the window and the latency in
 * partoo.worker_status()
 */
static void
publish_in_flight(void)
{
	SpinLockAcquire(&slot->mutex);
	slot->in_flight = ninflight + rflight.n;
	slot->window = window;
	slot->latency_us = latency.samples > 0 ? partoo_latency_us(&latency) : -1;
	SpinLockRelease(&slot->mutex);
}

/*
 * Sleep until timeout (-1: no timeout), the latch, or one of libcurl's
 * sockets; a latch set (an enqueue committed, or a signal) makes the next
 * claim due at once.
 */
static void
wait_for_work(long timeout)
{
	int			rc = partoo_http_wait(timeout);

	if (rc & PARTOO_WAKE_LATCH)
	{
		ResetLatch(MyLatch);
		next_claim_at = 0;
		/* checks made due by others (an update to 0.4, say), soon enough */
		if (next_reconcile_at == NEVER)
			next_reconcile_at = now_ms() + Min(partoo_reconcile_after_ms, RECONCILE_IDLE_MS);
	}
}

/*
 * The worker's entry point: set up, run iterations until SIGTERM, an
 * error in one logged and followed by a pause, then shut down.  Every
 * iteration's palloc'd memory lives in loop_cxt, reset at its top.
 */
void
partoo_worker_main(Datum main_arg)
{
	MemoryContext loop_cxt;

	attach_to_slot(DatumGetInt32(main_arg));
	keep_free_heap();
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "partoo worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	create_local_state();

	ereport(LOG,
			(errmsg("partoo worker started for database \"%s\"", slot->dbname)));

	while (!got_sigterm)
	{
		volatile long timeout = -1;

		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);
		PG_TRY();
		{
			timeout = run_iteration();
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(loop_cxt);
			recover_from_error();
			timeout = ERROR_PAUSE_MS;
		}
		PG_END_TRY();

		publish_in_flight();
		if (got_sigterm)
			break;
		wait_for_work(timeout);
	}

	shutdown_worker();
}

/*
 * Register one worker per database of partoo.database; called from
 * _PG_init while preloading.
 */
void
partoo_worker_register(void)
{
	char	   *rawstring = pstrdup(partoo_databases ? partoo_databases : "");
	List	   *names = NIL;
	int			i;

	if (!SplitIdentifierString(rawstring, ',', &names))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid list syntax in parameter \"partoo.database\"")));
	if (list_length(names) > PARTOO_MAX_WORKERS)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("partoo.database names %d databases, more than the limit of %d",
						list_length(names), PARTOO_MAX_WORKERS)));

	partoo_shmem_init(list_length(names));
	partoo_worker_names = names;
	for (i = 0; i < list_length(names); i++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 5;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "partoo");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "partoo_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "partoo worker");
		snprintf(worker.bgw_type, BGW_MAXLEN, "partoo worker");
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
}
