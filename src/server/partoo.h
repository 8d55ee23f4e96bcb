/*-------------------------------------------------------------------------
 *
 * partoo.h
 *		The first include of every file of the PostgreSQL side (src/server/,
 *		src/http/): postgres.h, the version differences (compat.h), and the
 *		few facts every layer above the protocol core shares.
 *
 * Interfaces live in one header per file (server/store.h, http/http.h,
 * core/message.h, ...); a file includes this one first, then the ones
 * whose functions it calls.  See docs/architecture.md.
 *
 * src/server/partoo.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_H
#define PARTOO_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "server/compat.h"

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

/*
 * partoo's advisory locks take the two-key form with this first key (the
 * class id, "paro"), never one of the bigint keys an application may use
 * with pg_advisory_lock(bigint).  Second keys: PARTOO_LOCK_WORKER, the
 * worker's lock on its database (worker.c); webhook_bucket.c's buckets use
 * a field4 of their own.
 */
#define PARTOO_LOCK_CLASS_ID	1885434479	/* 0x7061726f */
#define PARTOO_LOCK_WORKER		1

#endif							/* PARTOO_H */
