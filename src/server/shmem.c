/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		Shared state of the partoo workers: one slot per worker, the
 *		commit-time wake-up, and partoo.worker_status().
 *
 * Each database named in partoo.database gets a slot, fixed at postmaster
 * start.  The worker owns its slot's counters and publishes its latch; any
 * backend may read the slot and set the latch.  A spinlock guards each
 * slot, its counters included; nothing that can ereport runs while it is
 * held.
 *
 * Wake-up at commit: partoo_wake_at_commit() only raises a flag; the
 * transaction callback sets the worker's latch when (and only when) the
 * transaction commits, so a rolled-back enqueue never wakes anybody and a
 * committed one is seen by the worker's next claim.  Buckets of pending
 * webhook events a recording transaction could not apply at once
 * (webhook_apply.c) are handed to the worker the same way, at commit.
 *
 * src/server/shmem.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "server/shmem.h"

PG_FUNCTION_INFO_V1(partoo_worker_status);
PG_FUNCTION_INFO_V1(partoo_wake_worker);
PG_FUNCTION_INFO_V1(partoo_accounts_changed);

List	   *partoo_worker_names = NIL;
static PartooShared *shared = NULL;
static int	partoo_nslots = 0;
static bool wake_pending = false;
static bool accounts_changed_pending = false;
static uint64 owed_pending = 0;	/* webhook buckets owed at commit */
static bool xact_callback_registered = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
shared_size(void)
{
	return add_size(offsetof(PartooShared, slots),
					mul_size(partoo_nslots, sizeof(PartooWorkerSlot)));
}

static void
partoo_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(shared_size());
}

static void
partoo_shmem_startup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("partoo", shared_size(), &found);
	if (!found)
	{
		memset(shared, 0, shared_size());
		shared->nslots = partoo_nslots;
		for (i = 0; i < partoo_nslots; i++)
		{
			SpinLockInit(&shared->slots[i].mutex);
			strlcpy(shared->slots[i].dbname,
					(char *) list_nth(partoo_worker_names, i), NAMEDATALEN);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Called from _PG_init while preloading, with the number of workers */
void
partoo_shmem_init(int nslots)
{
	partoo_nslots = nslots;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = partoo_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = partoo_shmem_startup;
}

/* The slot of worker i, or NULL when not preloaded */
PartooWorkerSlot *
partoo_slot(int i)
{
	if (shared == NULL || i < 0 || i >= shared->nslots)
		return NULL;
	return &shared->slots[i];
}

/* The slot of the worker serving database dboid, or NULL */
static PartooWorkerSlot *
slot_for_database(Oid dboid)
{
	int			i;

	if (shared == NULL)
		return NULL;
	for (i = 0; i < shared->nslots; i++)
	{
		if (shared->slots[i].dboid == dboid)
			return &shared->slots[i];
	}
	return NULL;
}

/* Set the latch of this database's worker now, if it runs */
void
partoo_wake_worker_now(void)
{
	PartooWorkerSlot *slot = slot_for_database(MyDatabaseId);
	Latch	   *latch = NULL;

	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	if (slot->pid != 0)
		latch = slot->latch;
	SpinLockRelease(&slot->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

static void
xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (accounts_changed_pending)
			{
				PartooWorkerSlot *slot = slot_for_database(MyDatabaseId);

				if (slot != NULL)
				{
					SpinLockAcquire(&slot->mutex);
					slot->accounts_generation++;
					SpinLockRelease(&slot->mutex);
				}
			}
			if (owed_pending != 0)
			{
				PartooWorkerSlot *slot = slot_for_database(MyDatabaseId);

				if (slot != NULL)
				{
					SpinLockAcquire(&slot->mutex);
					slot->owed_pending |= owed_pending;
					SpinLockRelease(&slot->mutex);
				}
			}
			if (wake_pending)
				partoo_wake_worker_now();
			wake_pending = false;
			accounts_changed_pending = false;
			owed_pending = 0;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			/* NB: COMMIT PREPARED elsewhere wakes nobody; see README */
			wake_pending = false;
			accounts_changed_pending = false;
			owed_pending = 0;
			break;
		default:
			break;
	}
}

/* Wake this database's worker if and when the current transaction commits */
void
partoo_wake_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_pending = true;
}

/*
 * Hand the webhook buckets of mask to this database's worker when the
 * current transaction commits (see webhook_apply.c).  Returns false when
 * no worker serves this database: the caller must do the work itself.
 * NB: in a transaction that rolls back, nothing was recorded, so nothing
 * is owed.
 */
bool
partoo_owe_pending_at_commit(uint64 mask)
{
	if (slot_for_database(MyDatabaseId) == NULL)
		return false;
	partoo_wake_at_commit();
	owed_pending |= mask;
	return true;
}

/* The worker's side: take (and clear) the buckets owed to it */
uint64
partoo_take_owed_pending(PartooWorkerSlot *slot)
{
	uint64		mask;

	SpinLockAcquire(&slot->mutex);
	mask = slot->owed_pending;
	slot->owed_pending = 0;
	SpinLockRelease(&slot->mutex);
	return mask;
}

/*
 * partoo.wake_worker() RETURNS void: wake the worker at commit.  Used by
 * the SQL administration functions that make rows due.
 */
Datum
partoo_wake_worker(PG_FUNCTION_ARGS)
{
	partoo_wake_at_commit();
	PG_RETURN_VOID();
}

/*
 * partoo.worker_status(): one row per configured worker.
 */
Datum
partoo_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (shared == NULL)
		PG_RETURN_VOID();

	for (i = 0; i < shared->nslots; i++)
	{
		PartooWorkerSlot *slot = &shared->slots[i];
		PartooWorkerSlot copy;
		Datum		values[18];
		bool		nulls[18];

		SpinLockAcquire(&slot->mutex);
		memcpy(&copy, slot, sizeof(copy));
		SpinLockRelease(&slot->mutex);

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(copy.dbname);
		values[1] = Int32GetDatum(copy.pid);
		nulls[1] = (copy.pid == 0);
		values[2] = Int32GetDatum(copy.in_flight);
		values[3] = Int64GetDatum(copy.sent);
		values[4] = Int64GetDatum(copy.retried);
		values[5] = Int64GetDatum(copy.failed);
		values[6] = Int64GetDatum(copy.rejected);
		values[7] = Int64GetDatum(copy.dead);
		values[8] = Int64GetDatum(copy.rate_limited);
		values[9] = TimestampTzGetDatum(copy.started_at);
		nulls[9] = (copy.started_at == 0);
		copy.last_error[sizeof(copy.last_error) - 1] = '\0';
		values[10] = CStringGetTextDatum(copy.last_error);
		nulls[10] = (copy.last_error[0] == '\0');
		values[11] = TimestampTzGetDatum(copy.last_error_at);
		nulls[11] = (copy.last_error_at == 0);
		copy.paused[sizeof(copy.paused) - 1] = '\0';
		values[12] = CStringGetTextDatum(copy.paused);
		nulls[12] = (copy.paused[0] == '\0');
		/*
		 * From 0.4: the reconciliation counters.  A 0.1 or 0.2 schema
		 * declares loops there instead (gone in 0.3): null; a 0.3 schema
		 * has neither, and the columns beyond its own (here and below) are
		 * not read.
		 */
		values[13] = Int64GetDatum(copy.reconcile_requests);
		values[14] = Int64GetDatum(copy.reconcile_applied);
		values[15] = Int64GetDatum(copy.reconcile_rate_limited);
		if (rsinfo->setDesc->natts == 14)
			nulls[13] = true;
		/* From 0.5: the window and the latency it was sized for */
		values[16] = Int32GetDatum(copy.window);
		nulls[16] = (copy.pid == 0);
		values[17] = Float8GetDatum(copy.latency_us / 1000.0);
		nulls[17] = (copy.pid == 0 || copy.latency_us < 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/*
 * partoo.accounts_changed(): statement trigger on partoo.accounts.  Tells
 * this database's worker, when the transaction commits, to reload its
 * accounts (keys, URLs, limits).
 */
Datum
partoo_accounts_changed(PG_FUNCTION_ARGS)
{
	PartooWorkerSlot *slot = slot_for_database(MyDatabaseId);

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("partoo.accounts_changed() must be called as a trigger")));
	if (slot != NULL)
	{
		/* NB: bumped at commit, so that the worker's reload sees the rows */
		partoo_wake_at_commit();
		accounts_changed_pending = true;
	}
	return PointerGetDatum(NULL);
}
