/*-------------------------------------------------------------------------
 *
 * db.c
 *		The base every statement partoo runs on its tables stands on: the
 *		switch to the extension's owner, plans kept per backend, and a few
 *		Datum helpers.
 *
 * The tables in schema partoo belong to the extension's owner and are not
 * granted to anybody: a role that may call partoo_send (EXECUTE granted by
 * an administrator) must not need INSERT on partoo.messages, and must never
 * be able to read partoo.accounts.  So every query runs between
 * partoo_store_begin() and partoo_store_end(), which switch to the
 * extension owner the way a SECURITY DEFINER function does: the user id
 * changes with SECURITY_LOCAL_USERID_CHANGE and
 * SECURITY_RESTRICTED_OPERATION, and search_path is pinned to
 * "pg_catalog, pg_temp" so that no operator or function the caller
 * created can be picked up.  Both are undone by transaction or
 * subtransaction abort if an error escapes.
 *
 * This file calls nothing else of partoo's server side: storage
 * (store.c, outbox.c) and webhook application (webhook_*.c) both build on
 * it, never on each other's internals.
 *
 * src/server/db.c
 *
 *-------------------------------------------------------------------------
 */
#include "server/partoo.h"
#include "server/db.h"

#include "access/genam.h"
#include "access/xact.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

/*
 * The extension's owner, looked up once per transaction (the extension
 * can be dropped and created again by another owner between two).
 */
Oid
partoo_extension_owner(void)
{
	static Oid	owner = InvalidOid;
	static LocalTransactionId owner_lxid = InvalidLocalTransactionId;
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	if (OidIsValid(owner) && owner_lxid == PartooMyLocalTransactionId())
		return owner;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("partoo"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"partoo\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION partoo.")));
	owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	owner_lxid = PartooMyLocalTransactionId();
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return owner;
}

void
partoo_store_begin(PartooStoreContext *cxt)
{
	Oid			owner = partoo_extension_owner();

	GetUserIdAndSecContext(&cxt->save_userid, &cxt->save_sec_context);
	SetUserIdAndSecContext(owner, cxt->save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	cxt->save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

void
partoo_store_end(PartooStoreContext *cxt)
{
	SPI_finish();
	AtEOXact_GUC(true, cxt->save_nestlevel);
	SetUserIdAndSecContext(cxt->save_userid, cxt->save_sec_context);
}

/*
 * Prepare sql once per backend and keep the plan in *slot.  cursor_options
 * 0 lets PostgreSQL choose between custom and generic plans; the worker
 * and the webhook statements choose (see outbox.c and webhook_format.h).
 */
SPIPlanPtr
partoo_plan_once(SPIPlanPtr *slot, const char *sql, int nargs, Oid *argtypes,
				 int cursor_options)
{
	if (*slot == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, cursor_options);

		if (plan == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "SPI_keepplan failed");
		*slot = plan;
	}
	return *slot;
}

/*
 * Like partoo_plan_once with a generic plan, made again once it is older
 * than max_age_ms (*made_at is when it was made; 0 at first).  For
 * statements run many times a second whose planning costs as much as
 * their execution, but whose best plan depends on the size of the tables
 * they read: a generic plan is made once at the sizes of the moment (an
 * empty outbox, say) and kept until a relcache invalidation, which
 * autovacuum may be slow to bring; re-made every max_age_ms it follows
 * the tables' sizes within that time, at a cost of one planning per
 * max_age_ms instead of one per execution.
 */
SPIPlanPtr
partoo_plan_fresh(SPIPlanPtr *slot, TimestampTz *made_at, const char *sql,
				  int nargs, Oid *argtypes, int max_age_ms)
{
	TimestampTz now = GetCurrentTimestamp();

	if (*slot != NULL &&
		TimestampDifferenceExceeds(*made_at, now, max_age_ms))
	{
		SPIPlanPtr	old = *slot;

		*slot = NULL;
		SPI_freeplan(old);
	}
	if (*slot == NULL)
	{
		partoo_plan_once(slot, sql, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
		*made_at = now;
	}
	return *slot;
}

/*
 * Run a kept plan on the latest committed state: a fresh snapshot per
 * statement under READ COMMITTED (what SPI does anyway), the latest
 * snapshot under REPEATABLE READ and SERIALIZABLE, as foreign-key checks
 * do.  Never read-only, so that it sees this transaction's own earlier
 * writes.  Returns SPI's result code.
 */
int
partoo_run_plan_latest(SPIPlanPtr plan, Datum *args, const char *nulls)
{
	if (IsolationUsesXactSnapshot())
		return SPI_execute_snapshot(plan, args, nulls, GetLatestSnapshot(),
									InvalidSnapshot, false, true, 0);
	return SPI_execute_plan(plan, args, nulls, false, 0);
}

/* A one-dimensional array of n Datums of type elemtype; nulls may be NULL */
Datum
partoo_make_array(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1];
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	dims[0] = n;
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs,
											  elemtype, typlen, typbyval,
											  typalign));
}

/* An int8[] of v[0..n) */
Datum
partoo_int64_array(const int64 *v, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(v[i]);
	return partoo_make_array(elems, NULL, n, INT8OID);
}

/* A text Datum of s, or a null (*isnull) for NULL */
Datum
partoo_text_datum(const char *s, bool *isnull)
{
	*isnull = (s == NULL);
	return s == NULL ? (Datum) 0 : CStringGetTextDatum(s);
}

/* A bigint column of an SPI result row; 0 when null */
int64
partoo_spi_int64(HeapTuple t, TupleDesc d, int col, bool *isnull)
{
	Datum		v = SPI_getbinval(t, d, col, isnull);

	return *isnull ? 0 : DatumGetInt64(v);
}

/* A text column of an SPI result row copied into the current context, or NULL */
char *
partoo_spi_text(HeapTuple t, TupleDesc d, int col)
{
	bool		isnull;
	Datum		v = SPI_getbinval(t, d, col, &isnull);

	return isnull ? NULL : TextDatumGetCString(v);
}
