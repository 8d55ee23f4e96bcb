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
 * Outcomes are row data, never errors (worker_job.c turns a claimed row
 * into a request, and a response into an outcome).  An ERROR inside the
 * loop is caught, logged and reported in partoo.worker_status(); the loop
 * goes on.  A batch whose recording fails is recorded row by row so that
 * one poison row cannot stop the others.
 *
 * Memory: jobs and requests are malloc'd (they live across transactions)
 * and freed once recorded; everything palloc'd in an iteration lives in a
 * loop context reset at the top of each iteration.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "worker.h"

#include <malloc.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#define RECORD_DELAY_MS 20		/* longest a finished request waits to be
								 * recorded while others are in flight */
#define NEVER INT64_MAX
/* outcomes waiting to be recorded that trigger a recording transaction */
#define RECORD_BATCH Max(1, partoo_max_in_flight / 4)

static volatile sig_atomic_t got_sigterm = false;
static PartooWorkerSlot *slot = NULL;
static HTAB *accounts = NULL;
static uint32 accounts_generation = 0;
static bool accounts_loaded = false;
static Job **inflight = NULL;	/* jobs whose request is in flight */
static int	ninflight = 0;
static Job **results = NULL;	/* finished jobs not yet recorded */
static int	nresults = 0;
static Job **fresh = NULL;		/* claimed in the current transaction */
static int	nfresh = 0;
static Job **waiting = NULL;	/* claimed, waiting for an in-flight slot */
static int	nwaiting = 0;
static int	jobs_cap = 0;

static int64
now_ms(void)
{
	return partoo_monotonic_us() / 1000;
}

static void
handle_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
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
free_job(Job *job)
{
	if (job == NULL)
		return;
	partoo_http_request_free(job->req);
	free(job);
}

/* Make room for cap jobs in each list; the lists never hold more */
static void
ensure_job_lists(int cap)
{
	if (cap <= jobs_cap)
		return;
	inflight = realloc(inflight, sizeof(Job *) * cap);
	results = realloc(results, sizeof(Job *) * cap);
	fresh = realloc(fresh, sizeof(Job *) * cap);
	waiting = realloc(waiting, sizeof(Job *) * cap);
	if (!inflight || !results || !fresh || !waiting)
		ereport(FATAL,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	jobs_cap = cap;
}

static void
begin_txn(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_txn(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* ---------------------------------------------------------------------
 * Accounts
 * ---------------------------------------------------------------------
 */

static WorkerAccount *
account_get(const char *name, bool create)
{
	bool		found;
	WorkerAccount *a;
	char		key[NAMEDATALEN];

	memset(key, 0, sizeof(key));
	strlcpy(key, name, sizeof(key));
	a = hash_search(accounts, key, create ? HASH_ENTER : HASH_FIND, &found);
	if (a != NULL && create && !found)
	{
		a->api_key = NULL;
		a->base_url = NULL;
		a->rpm = -1;
		a->rl = NULL;
		a->present = false;
		a->reserved = 0;
		a->used = 0;
	}
	return a;
}

static void
account_set(WorkerAccount *a, const char *key, const char *base_url, int rpm)
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
	WorkerAccount *a;
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
		if (a->present)
			continue;
		free(a->api_key);
		free(a->base_url);
		partoo_ratelimit_free(a->rl);
		hash_search(accounts, a->name, HASH_REMOVE, NULL);
	}
	accounts_generation = gen;
	accounts_loaded = true;
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

/* A job with its outcome, to be recorded; counts it in worker_status() */
static void
add_result(Job *job)
{
	switch (job->count)
	{
		case JOB_COUNT_NONE:
			break;
		case JOB_COUNT_SENT:
			slot->sent++;
			break;
		case JOB_COUNT_RETRIED:
			slot->retried++;
			break;
		case JOB_COUNT_FAILED:
			slot->failed++;
			break;
		case JOB_COUNT_DEAD:
			slot->dead++;
			break;
		case JOB_COUNT_REJECTED:
			slot->rejected++;
			break;
		case JOB_COUNT_RATE_LIMITED:
			slot->rate_limited++;
			break;
	}
	job->count = JOB_COUNT_NONE;
	job->done_ms = now_ms();
	results[nresults++] = job;
}

/* Take finished requests from the HTTP client */
static void
collect(void)
{
	PartooHttpRequest *req;

	while ((req = partoo_http_next_done()) != NULL)
	{
		Job		   *job = (Job *) req->user;
		int			i = job->inflight_index;
		WorkerAccount *a = account_get(job->account, false);

		/* swap-remove from the in-flight list */
		inflight[i] = inflight[--ninflight];
		inflight[i]->inflight_index = i;
		partoo_job_classify(job, a != NULL ? a->rl : NULL);
		add_result(job);
	}
}

/*
 * Record jobs[0..n) in a subtransaction.  Returns NULL, or the error
 * (copied into cxt) after rolling the subtransaction back; either way
 * back in cxt and owner.
 */
static ErrorData *
record_in_subxact(Job **jobs, int n, MemoryContext cxt, ResourceOwner owner)
{
	ErrorData  *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	PG_TRY();
	{
		partoo_job_record(jobs, n);
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
 * Record every finished job, in a subtransaction; if the batch fails,
 * record job by job, and a job that cannot be recorded becomes dead with
 * the reason (failing that, it stays leased and comes back later).
 * Frees the jobs.
 */
static int64
record_results(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *edata;
	int			i;
	int64		soonest = NEVER;

	if (nresults == 0)
		return NEVER;
	pgstat_report_activity(STATE_RUNNING, "recording outcomes");

	edata = record_in_subxact(results, nresults, cxt, owner);
	if (edata != NULL)
	{
		ereport(LOG,
				(errmsg("partoo worker could not record a batch of %d outcomes, recording them one by one: %s",
						nresults, edata->message)));
		FreeErrorData(edata);
		for (i = 0; i < nresults; i++)
		{
			Job		   *job = results[i];

			edata = record_in_subxact(&job, 1, cxt, owner);
			if (edata == NULL)
				continue;
			ereport(LOG,
					(errmsg("partoo worker could not record the outcome of message %lld: %s",
							(long long) job->message_id, edata->message)));
			/* second try: mark it dead with the reason */
			partoo_job_outcome(job, "dead", true, 0, job->new_attempts, 0, job->http,
						"could not record outcome: %.500s", edata->message);
			job->has_pid = false;
			FreeErrorData(edata);
			edata = record_in_subxact(&job, 1, cxt, owner);
			if (edata != NULL)
			{
				ereport(LOG,
						(errmsg("partoo worker could not mark message %lld dead, it stays leased: %s",
								(long long) job->message_id, edata->message)));
				FreeErrorData(edata);
			}
		}
	}

	for (i = 0; i < nresults; i++)
	{
		if (!results[i]->final)
			soonest = Min(soonest, results[i]->delay_ms);
		free_job(results[i]);
	}
	nresults = 0;
	return soonest;
}

/* ---------------------------------------------------------------------
 * Claims
 * ---------------------------------------------------------------------
 */

/*
 * Claim up to limit rows in the current transaction, taking rate-limit
 * tokens for them: each account may take what its bucket holds now, and
 * the accounts are offered in an order that rotates from one claim to the
 * next so that none is always served last.  Returns the number claimed;
 * *next_ms gets how long until a claim may find more (0: at once, NEVER:
 * only on a wake-up).
 */
static int
claim(int limit, int64 *next_ms)
{
	static uint32 rotation = 0;
	HASH_SEQ_STATUS seq;
	WorkerAccount *a;
	long		nacc = hash_get_num_entries(accounts);
	WorkerAccount **all = palloc(sizeof(WorkerAccount *) * (nacc + 1));
	Datum	   *names = palloc(sizeof(Datum) * (nacc + 1));
	Datum	   *quotas = palloc(sizeof(Datum) * (nacc + 1));
	Datum	   *open = palloc(sizeof(Datum) * (nacc + 1));
	int			nall = 0;
	int			nnames = 0;
	int			nopen = 0;
	int64		now = now_ms();
	int64		token_wait = NEVER;
	uint64		n;
	uint64		i;
	int			k;
	StringInfoData paused;

	initStringInfo(&paused);
	pgstat_report_activity(STATE_RUNNING, "claiming outbox rows");

	hash_seq_init(&seq, accounts);
	while ((a = hash_seq_search(&seq)) != NULL)
		all[nall++] = a;

	for (k = 0; k < nall; k++)
	{
		int64		paused_until;
		int64		wait = 0;

		a = all[(k + rotation) % nall];
		paused_until = partoo_ratelimit_paused_until(a->rl);
		a->reserved = 0;
		a->used = 0;
		if (paused_until > now)
		{
			appendStringInfo(&paused, "%s%s (%lld s)", paused.len ? ", " : "",
							 a->name[0] ? a->name : "(default)",
							 (long long) ((paused_until - now + 999) / 1000));
			wait = paused_until - now;
		}
		else if (a->rpm == 0)
			a->reserved = limit;
		else
		{
			while (a->reserved < limit &&
				   (wait = partoo_ratelimit_acquire(a->rl, now)) == 0)
				a->reserved++;
		}
		if (a->reserved == 0)
			token_wait = Min(token_wait, Max(wait, 1));
		else
		{
			names[nnames] = CStringGetTextDatum(a->name);
			quotas[nnames++] = Int32GetDatum(a->reserved);
		}
	}
	rotation++;
	SpinLockAcquire(&slot->mutex);
	strlcpy(slot->paused, paused.data, sizeof(slot->paused));
	SpinLockRelease(&slot->mutex);

	n = (nnames > 0) ?
		partoo_outbox_claim(limit, names, quotas, nnames, partoo_lease_s) : 0;
	ensure_job_lists(ninflight + nwaiting + nresults + (int) n + 1);
	for (i = 0; i < n; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		Job		   *job = xmalloc0(sizeof(Job));

		fresh[nfresh++] = job;	/* freed by discard_fresh() on error */
		a = account_get(SPI_getvalue(t, d, 4), false);
		if (a == NULL)
		{
			/* an account created since our last reload */
			reload_accounts();
			a = account_get(SPI_getvalue(t, d, 4), false);
		}
		partoo_job_fill(job, t, d, a);
		if (a != NULL && a->reserved > a->used)
			a->used++;			/* paid for by a reserved token */
	}

	/*
	 * Give back the tokens not used.  Accounts that used all they had may
	 * have more rows due, but get tokens back only later; the others tell
	 * when their next row is due.
	 */
	for (k = 0; k < nall; k++)
	{
		int			had;

		a = all[k];
		had = a->reserved;
		if (a->rpm > 0)
		{
			while (a->reserved > a->used)
			{
				partoo_ratelimit_release(a->rl, now);
				a->reserved--;
			}
		}
		if (had == 0)
			continue;			/* paused or out of tokens: token_wait */
		if (a->rpm > 0 && a->used == had)
		{
			int64		w = partoo_ratelimit_acquire(a->rl, now);

			if (w == 0)
			{
				partoo_ratelimit_release(a->rl, now);
				w = 1;
			}
			token_wait = Min(token_wait, w);
			continue;
		}
		open[nopen++] = CStringGetTextDatum(a->name);
	}

	if ((int) n >= limit)
		*next_ms = 0;
	else
	{
		int64		due = partoo_outbox_next_due_ms(open, nopen);

		*next_ms = Min(due < 0 ? NEVER : due, token_wait);
	}
	return (int) n;
}

/*
 * Start waiting jobs, oldest first, while slots are free.  NB: a finished
 * request keeps its slot until its outcome is recorded, so that no more
 * than partoo.max_in_flight messages are ever sent and not yet recorded:
 * those are the ones a crash sends twice.  (Measured: no slower, since
 * outcomes are recorded within RECORD_DELAY_MS anyway.)
 */
static void
start_waiting(void)
{
	int			started = 0;

	while (started < nwaiting && ninflight + nresults < partoo_max_in_flight)
	{
		Job		   *job = waiting[started++];

		job->inflight_index = ninflight;
		inflight[ninflight++] = job;
		partoo_http_start(job->req, partoo_timeout_ms, partoo_connect_timeout_ms);
	}
	if (started > 0)
	{
		nwaiting -= started;
		memmove(waiting, waiting + started, sizeof(Job *) * nwaiting);
	}
}

/* Queue freshly claimed jobs (after their commit) and start what fits */
static void
start_fresh(void)
{
	int			i;

	for (i = 0; i < nfresh; i++)
	{
		Job		   *job = fresh[i];

		if (job->req == NULL)
			add_result(job);	/* outcome known without a request */
		else
			waiting[nwaiting++] = job;
	}
	nfresh = 0;
	start_waiting();
}

static void
discard_fresh(void)
{
	int			i;

	for (i = 0; i < nfresh; i++)
		free_job(fresh[i]);
	nfresh = 0;
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

static void
report_error(void)
{
	ErrorData  *edata;

	edata = CopyErrorData();
	FlushErrorState();
	SpinLockAcquire(&slot->mutex);
	strlcpy(slot->last_error, edata->message ? edata->message : "", sizeof(slot->last_error));
	slot->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&slot->mutex);
	ereport(LOG,
			(errmsg("partoo worker caught an error and continues: %s",
					edata->message ? edata->message : "")));
	FreeErrorData(edata);
}

/*
 * Wait until another partoo worker for this database is gone (a restart
 * racing with its predecessor); the lock is session-level and dies with
 * the process.
 */
static bool
take_database_lock(void)
{
	int			rc;
	bool		isnull;

	rc = SPI_execute("SELECT pg_catalog.pg_try_advisory_lock(-7306514891325683221)",
					 false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not take the partoo worker lock");
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									  SPI_tuptable->tupdesc, 1, &isnull));
}

void
partoo_worker_main(Datum main_arg)
{
	int			index = DatumGetInt32(main_arg);
	MemoryContext loop_cxt;
	HASHCTL		ctl;
	volatile bool ready = false;
	volatile bool locked = false;
	volatile int64 next_claim_at = 0;
	int64		shutdown_deadline;

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

	/*
	 * NB: every iteration allocates and frees the same few megabytes
	 * (batches, SPI results, executor state).  glibc's default adaptive
	 * thresholds hand that memory back to the kernel at each free and
	 * fault it in again at the next allocation: that cost the worker a
	 * tenth of its CPU (page faults and brk, measured with perf).  Keep up
	 * to 64 MB of free heap instead; a steady size, not a growing one.
	 */
#ifdef M_TRIM_THRESHOLD
	mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
	mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024);
#endif

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "partoo worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = NAMEDATALEN;
	ctl.entrysize = sizeof(WorkerAccount);
	accounts = hash_create("partoo accounts", 64, &ctl, HASH_ELEM | HASH_STRINGS);
	ensure_job_lists(Max(partoo_max_in_flight, partoo_batch_size) * 2 + 16);

	ereport(LOG,
			(errmsg("partoo worker started for database \"%s\"", slot->dbname)));

	while (!got_sigterm)
	{
		volatile long timeout = -1;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			accounts_loaded = false;	/* the default account may change */
			next_claim_at = 0;
		}
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);

		PG_TRY();
		{
			int64		now = now_ms();
			bool		need_record;
			bool		can_claim;

			if (!ready)
			{
				begin_txn("starting");
				ready = partoo_outbox_ready();
				if (ready && !locked)
				{
					locked = take_database_lock();
					if (!locked)
						ready = false;
				}
				if (ready)
				{
					uint64		n = partoo_outbox_recover();

					if (n > 0)
						ereport(LOG,
								(errmsg("partoo worker made %llu rows leased by a previous worker due again",
										(unsigned long long) n)));
				}
				end_txn();
				if (!ready)
					timeout = 10000;	/* CREATE EXTENSION partoo not run yet */
			}

			if (ready)
			{
				collect();
				start_waiting();
				need_record = nresults > 0 &&
					(ninflight == 0 ||
					 nresults >= RECORD_BATCH ||
					 now - results[0]->done_ms >= RECORD_DELAY_MS);
				can_claim = ninflight + nwaiting <= partoo_max_in_flight &&
					now >= next_claim_at;

				if (need_record || can_claim || accounts_changed())
				{
					begin_txn("partoo worker");

					/*
					 * A transaction that only claims need not wait for its
					 * WAL flush: if a crash loses it, its rows are simply
					 * still due, just as partoo_outbox_recover makes leased
					 * rows due again at start.  Waiting put an fsync between
					 * every enqueue's commit and its request.  Outcomes stay
					 * synchronous: losing one would re-send a sent message.
					 */
					if (!need_record)
						(void) set_config_option("synchronous_commit", "off",
												 PGC_SUSET, PGC_S_SESSION,
												 GUC_ACTION_LOCAL, true, 0, false);
					if (accounts_changed())
						reload_accounts();
					if (need_record)
					{
						int64		soonest = record_results();

						/* a row put back for a later attempt is due then */
						if (soonest != NEVER)
							next_claim_at = Min(next_claim_at, now + soonest);
					}
					if (can_claim)
					{
						int64		next_ms;
						int			limit = Min(partoo_batch_size,
												2 * partoo_max_in_flight - ninflight - nwaiting);

						(void) claim(limit, &next_ms);
						next_claim_at = (next_ms == NEVER) ? NEVER : now + next_ms;
					}
					end_txn();
					start_fresh();
				}

				/* how long may we sleep? */
				if (nresults > 0)
					timeout = Max(0, results[0]->done_ms + RECORD_DELAY_MS - now_ms());
				if (ninflight + nwaiting <= partoo_max_in_flight && next_claim_at != NEVER)
				{
					long		t = (long) Max(0, next_claim_at - now_ms());

					timeout = (timeout < 0) ? t : Min(timeout, t);
				}
			}
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(loop_cxt);
			report_error();
			AbortOutOfAnyTransaction();
			discard_fresh();
			pgstat_report_activity(STATE_IDLE, NULL);
			timeout = 1000;
			next_claim_at = 0;
		}
		PG_END_TRY();

		SpinLockAcquire(&slot->mutex);
		slot->in_flight = ninflight;
		slot->loops++;
		SpinLockRelease(&slot->mutex);

		rc = partoo_http_wait(timeout);
		if (rc & PARTOO_WAKE_LATCH)
		{
			ResetLatch(MyLatch);
			next_claim_at = 0;	/* an enqueue committed, or a signal */
		}
	}

	/*
	 * SIGTERM: claim nothing more, start nothing more, give requests in
	 * flight a bounded time, record what finished.  Requests still running
	 * and waiting jobs are abandoned; their rows stay leased and the next
	 * worker makes them due again.
	 */
	shutdown_deadline = now_ms() + partoo_shutdown_timeout_ms;
	while (ninflight > 0 && now_ms() < shutdown_deadline)
	{
		int			rc = partoo_http_wait((long) (shutdown_deadline - now_ms()));

		if (rc & PARTOO_WAKE_LATCH)
			ResetLatch(MyLatch);
		collect();
	}
	while (ninflight > 0)
		free_job(inflight[--ninflight]);
	while (nwaiting > 0)
		free_job(waiting[--nwaiting]);
	if (nresults > 0)
	{
		PG_TRY();
		{
			begin_txn("recording outcomes before exit");
			(void) record_results();
			end_txn();
		}
		PG_CATCH();
		{
			report_error();
			AbortOutOfAnyTransaction();
		}
		PG_END_TRY();
	}
	ereport(LOG,
			(errmsg("partoo worker for database \"%s\" stopped", slot->dbname)));
	proc_exit(1);				/* restarted after bgw_restart_time if the
								 * server keeps running */
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
