/*-------------------------------------------------------------------------
 *
 * shmem.h
 *		The workers' slots in shared memory: counters shown by
 *		partoo.worker_status(), latches, owed webhook buckets (shmem.c).
 *
 * src/server/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_SHMEM_H
#define PARTOO_SERVER_SHMEM_H

#include "datatype/timestamp.h"
#include "nodes/pg_list.h"
#include "storage/latch.h"
#include "storage/spin.h"

#define PARTOO_MAX_WORKERS 32

typedef struct PartooWorkerSlot
{
	slock_t		mutex;
	char		dbname[NAMEDATALEN];	/* fixed at postmaster start */
	Oid			dboid;			/* set by the worker once connected */
	pid_t		pid;			/* 0 when not running */
	Latch	   *latch;
	int			in_flight;
	int			window;			/* requests it may have in flight now */
	int64		latency_us;		/* the API's observed latency, -1: none yet */
	int64		sent;
	int64		retried;
	int64		failed;			/* retryable failures */
	int64		rejected;
	int64		dead;
	int64		rate_limited;
	int64		reconcile_requests; /* GET /messages made */
	int64		reconcile_applied;	/* final statuses they applied */
	int64		reconcile_rate_limited; /* 429s they got */
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

#endif							/* PARTOO_SERVER_SHMEM_H */
