/*-------------------------------------------------------------------------
 *
 * db.h
 *		Statements on partoo's tables: running them as the extension's
 *		owner, plans kept per backend, Datum helpers (db.c).
 *
 * src/server/db.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_DB_H
#define PARTOO_SERVER_DB_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"

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
extern struct _SPI_plan *partoo_plan_fresh(struct _SPI_plan **slot,
										   TimestampTz *made_at,
										   const char *sql, int nargs,
										   Oid *argtypes, int max_age_ms);
extern int	partoo_run_plan_latest(struct _SPI_plan *plan, Datum *args,
								   const char *nulls);
extern Datum partoo_make_array(Datum *elems, bool *nulls, int n, Oid elemtype);
extern Datum partoo_int64_array(const int64 *v, int n);
extern Datum partoo_text_datum(const char *s, bool *isnull);
extern int64 partoo_spi_int64(HeapTuple t, TupleDesc d, int col, bool *isnull);
extern char *partoo_spi_text(HeapTuple t, TupleDesc d, int col);

#endif							/* PARTOO_SERVER_DB_H */
