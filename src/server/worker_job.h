/*-------------------------------------------------------------------------
 *
 * worker_job.h
 *		What worker.c and worker_job.c share: the worker's view of an
 *		account and of a job (one outbox row on its way).
 *
 * Included after server/partoo.h (postgres.h), like every header of
 * src/server/.
 *
 * src/server/worker_job.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_WORKER_JOB_H
#define PARTOO_SERVER_WORKER_JOB_H

#include "access/htup.h"
#include "access/tupdesc.h"

#include "core/ratelimit.h"
#include "http/http.h"

/* The partoo.worker_status() counter an outcome adds to */
typedef enum PartooJobCount
{
	PARTOO_JOB_COUNT_NONE = 0,
	PARTOO_JOB_COUNT_SENT,
	PARTOO_JOB_COUNT_RETRIED,
	PARTOO_JOB_COUNT_FAILED,
	PARTOO_JOB_COUNT_DEAD,
	PARTOO_JOB_COUNT_REJECTED,
	PARTOO_JOB_COUNT_RATE_LIMITED
} PartooJobCount;

typedef struct PartooWorkerAccount
{
	char	   *name;			/* hash key, malloc'd; "" is the default
								 * account.  Any length: the names of
								 * partoo.accounts as they are. */
	char	   *api_key;		/* malloc'd */
	char	   *base_url;		/* malloc'd */
	int			rpm;
	PartooRateLimiter *rl;
	bool		present;		/* seen in the last reload */
	int			reserved;		/* tokens taken for the current claim */
	int			used;			/* of those, used by claimed rows */
	int			reconcile_in_flight;	/* reconciliation fetches running */
	int64		reconcile_paused_until; /* a GET's 429: no reconciliation
										 * before (worker.c's clock, ms) */
} PartooWorkerAccount;

typedef struct PartooJob
{
	uint32		generation;		/* the installation it was claimed from */
	int64		outbox_id;
	int64		message_id;
	bool		is_retry;
	int			attempts;		/* outbox attempts before this one */
	char	   *account;		/* malloc'd, freed with the job */
	PartooHttpRequest *req;
	int			inflight_index;
	int64		done_ms;
	int64		record_at_ms;	/* not recorded before (a row held by
								 * another session, or a failed recording) */
	int			record_tries;	/* recordings deferred or failed so far */
	bool		recorded;		/* in the current transaction: freed once
								 * it commits, recorded again if not */
	/* outcome */
	const char *state;
	bool		final;
	int64		delay_ms;
	int			new_attempts;
	int			counted;
	bool		has_pid;
	int64		pid;
	long		http;
	char		err[600];
	PartooJobCount count;		/* which worker_status() counter it adds to */
} PartooJob;

/* The retry policy's settings, defined in worker_job.c */
extern int	partoo_max_attempts;
extern int	partoo_retry_base_ms;
extern int	partoo_retry_max_ms;

extern void partoo_job_define_gucs(void);
extern void partoo_job_fill(PartooJob *job, HeapTuple t, TupleDesc d, PartooWorkerAccount *a);
extern void partoo_job_outcome(PartooJob *job, const char *state, bool final,
							   int64 delay_ms, int new_attempts, int counted,
							   long http, const char *fmt,...) pg_attribute_printf(8, 9);
extern void partoo_job_classify(PartooJob *job, PartooRateLimiter *rl);
extern int	partoo_job_record(PartooJob **jobs, int n, bool *recorded);
extern bool partoo_job_accepted(const PartooJob *job);

#endif							/* PARTOO_SERVER_WORKER_JOB_H */
