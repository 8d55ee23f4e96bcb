/*-------------------------------------------------------------------------
 *
 * webhook_bucket.c
 *		The pending-event handshake's locks: advisory locks on
 *		PARTOO_WEBHOOK_BUCKETS buckets of Partoo ids, taken by the side that
 *		records Partoo ids (webhook_apply.c) and by an ingest that keeps an
 *		event pending (webhook_partoo.c).
 *
 * An event for a Partoo id not recorded yet is kept as 'pending'.  When
 * the id is recorded (INSERT by partoo_send, UPDATE by the worker), the
 * recording code calls partoo_webhook_apply_recorded() in that
 * transaction, after its statement.  NB: the two sides race: an ingest may
 * look for the message while the transaction recording it is still open,
 * and the recording side cannot see the ingest's uncommitted pending
 * event.  So they meet on these locks: the recording side takes the
 * buckets of the ids it recorded in share mode before it looks for pending
 * events; an ingest takes the buckets of the ids it did not find in
 * exclusive mode before it looks again and keeps the event pending.
 * Whichever comes second sees the other's committed work.  The ingest
 * never queues for these locks (it polls, then fails with 55P03), so a
 * recording transaction never waits behind a waiting ingest; and it takes
 * them only after its row locks, and then reads rows NOWAIT, so a deadlock
 * between the two never makes the recording side the victim.
 *
 * This file takes and tests locks, nothing else; it calls no other file
 * of partoo's.  The locks are held to the end of the transaction.
 *
 * src/server/webhook_bucket.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "utils/wait_event.h"

#include "server/webhook_format.h"

/*
 * The locks are advisory locks of this database with keys
 * (PARTOO_LOCK_KEY, bucket) and a field4 no SQL function uses, so they
 * never collide with an application's pg_advisory_lock calls.
 */
#define PARTOO_WEBHOOK_BUCKET_BITS	6	/* one bit each in a uint64 mask */
#define PARTOO_WEBHOOK_BUCKETS		(1 << PARTOO_WEBHOOK_BUCKET_BITS)
#define PARTOO_LOCK_KEY				((uint32) PARTOO_LOCK_CLASS_ID)
#define PARTOO_LOCK_CLASS			0x5057	/* "PW" */

/* How long an ingest polls for a bucket before giving up, and its naps */
#define PARTOO_BUCKET_WAIT_MS		5000
#define PARTOO_BUCKET_MAX_NAP_MS	20

/* Fibonacci hashing: the top bits of the id times 2^64 / phi */
int
partoo_webhook_bucket_of(int64 partoo_id)
{
	uint64		h = (uint64) partoo_id * UINT64CONST(0x9E3779B97F4A7C15);

	return (int) (h >> (64 - PARTOO_WEBHOOK_BUCKET_BITS));
}

/* The mask of the buckets of pids[0..n) */
uint64
partoo_webhook_buckets_of(const int64 *pids, int n)
{
	uint64		mask = 0;
	int			i;

	for (i = 0; i < n; i++)
		mask |= UINT64CONST(1) << partoo_webhook_bucket_of(pids[i]);
	return mask;
}

static void
bucket_tag(LOCKTAG *tag, int bucket)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, PARTOO_LOCK_KEY, (uint32) bucket,
						 PARTOO_LOCK_CLASS);
}

/*
 * Recording side: share-lock the buckets of mask.  With dont_wait, only
 * those free now; returns the buckets not taken (0 when waiting).
 */
uint64
partoo_webhook_lock_buckets_shared(uint64 mask, bool dont_wait)
{
	uint64		busy = 0;
	int			b;

	for (b = 0; b < PARTOO_WEBHOOK_BUCKETS; b++)
	{
		LOCKTAG		tag;

		if ((mask & (UINT64CONST(1) << b)) == 0)
			continue;
		bucket_tag(&tag, b);
		if (LockAcquire(&tag, ShareLock, false, dont_wait) == LOCKACQUIRE_NOT_AVAIL)
			busy |= UINT64CONST(1) << b;
	}
	return busy;
}

/*
 * Ingest side: exclusive-lock the buckets of mask (those of the ids not
 * found).  Polls instead of queueing, so that recording transactions never
 * wait behind us while we wait; gives up with 55P03 after
 * PARTOO_BUCKET_WAIT_MS.
 */
void
partoo_webhook_lock_buckets_exclusive(uint64 mask)
{
	int			b;

	for (b = 0; b < PARTOO_WEBHOOK_BUCKETS; b++)
	{
		LOCKTAG		tag;
		long		waited = 0;
		long		nap = 1;

		if ((mask & (UINT64CONST(1) << b)) == 0)
			continue;
		bucket_tag(&tag, b);
		while (LockAcquire(&tag, ExclusiveLock, false, true) == LOCKACQUIRE_NOT_AVAIL)
		{
			if (waited >= PARTOO_BUCKET_WAIT_MS)
				ereport(ERROR,
						(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
						 errmsg("could not keep webhook event for a message being recorded"),
						 errdetail("A transaction recording Partoo message ids stayed open for more than %d ms.",
								   PARTOO_BUCKET_WAIT_MS),
						 errhint("Retry the webhook; the sender usually retries by itself on an error.")));
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 nap, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			waited += nap;
			nap = Min(nap * 2, PARTOO_BUCKET_MAX_NAP_MS);
		}
	}
}
