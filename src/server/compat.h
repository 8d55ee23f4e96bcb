/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every difference between the PostgreSQL majors partoo supports.
 *
 * partoo builds against PostgreSQL 15, 16, 17 and 18.  Code elsewhere uses
 * the names defined here and never tests PG_VERSION_NUM itself, so that a
 * new major means reading this one file.  Each guard names the release that
 * changed the API.
 *
 * src/server/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_COMPAT_H
#define PARTOO_COMPAT_H

#include "postgres.h"

#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/memutils.h"

#if PG_VERSION_NUM < 150000
#error "partoo requires PostgreSQL 15 or later"
#endif

/*
 * 16 moved the varlena macros (VARDATA_ANY, VARSIZE_ANY_EXHDR, ...) out of
 * postgres.h into varatt.h.
 */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

/*
 * 17 made CreateWaitEventSet() take a ResourceOwner instead of a memory
 * context; the set is then always allocated in TopMemoryContext.  partoo's
 * sets live as long as the process, so no owner releases them.
 */
#if PG_VERSION_NUM >= 170000
#define PartooCreateWaitEventSet(nevents) \
	CreateWaitEventSet(NULL, (nevents))
#else
#define PartooCreateWaitEventSet(nevents) \
	CreateWaitEventSet(TopMemoryContext, (nevents))
#endif

/*
 * 17 moved the local transaction id of a backend from PGPROC.lxid into
 * PGPROC.vxid.lxid.
 */
#if PG_VERSION_NUM >= 170000
#define PartooMyLocalTransactionId() (MyProc->vxid.lxid)
#else
#define PartooMyLocalTransactionId() (MyProc->lxid)
#endif

/*
 * ExecutorRun lost its execute_once argument in PostgreSQL 18: a hook's
 * parameters, and the call passing them on.
 */
#if PG_VERSION_NUM >= 180000
#define PARTOO_EXECUTOR_RUN_PARAMS \
	QueryDesc *queryDesc, ScanDirection direction, uint64 count
#define PARTOO_EXECUTOR_RUN_CALL(fn) fn(queryDesc, direction, count)
#else
#define PARTOO_EXECUTOR_RUN_PARAMS \
	QueryDesc *queryDesc, ScanDirection direction, uint64 count, \
	bool execute_once
#define PARTOO_EXECUTOR_RUN_CALL(fn) \
	fn(queryDesc, direction, count, execute_once)
#endif

/*
 * 18 lets a module say its name and version in its magic block; they show
 * in pg_get_loaded_modules().
 */
#if PG_VERSION_NUM >= 180000
#define PARTOO_MODULE_MAGIC(ver) \
	PG_MODULE_MAGIC_EXT(.name = "partoo", .version = (ver))
#else
#define PARTOO_MODULE_MAGIC(ver) PG_MODULE_MAGIC
#endif

/*
 * 18 replaced the suffix pg_attribute_noreturn() with the prefix
 * pg_noreturn: declare a function that never returns as
 * "PARTOO_NORETURN static void f(...);".
 */
#if PG_VERSION_NUM >= 180000
#define PARTOO_NORETURN pg_noreturn
#else
#define PARTOO_NORETURN pg_attribute_noreturn()
#endif

/*
 * 17 made getIdentitySequence() take the relation instead of its OID (for
 * identity columns of partitions, whose sequence is the parent's).
 */
#if PG_VERSION_NUM >= 170000
#include "access/relation.h"
#include "catalog/dependency.h"
static inline Oid
PartooGetIdentitySequence(Oid relid, AttrNumber attnum)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	Oid			seq = getIdentitySequence(rel, attnum, false);

	relation_close(rel, AccessShareLock);
	return seq;
}
#else
#include "catalog/dependency.h"
#define PartooGetIdentitySequence(relid, attnum) \
	getIdentitySequence((relid), (attnum), false)
#endif

#endif							/* PARTOO_COMPAT_H */
