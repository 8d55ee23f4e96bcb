/*-------------------------------------------------------------------------
 *
 * worker.h
 *		The background worker as the rest of the extension sees it: its
 *		settings, its registration, its advisory lock (worker.c).
 *
 * src/server/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_WORKER_H
#define PARTOO_SERVER_WORKER_H

#include "fmgr.h"

/* The worker's settings (partoo.database, partoo.batch_size, ...) */
extern char *partoo_databases;
extern int	partoo_batch_size;
extern int	partoo_max_in_flight;
extern int	partoo_lease_s;
extern int	partoo_shutdown_timeout_ms;

extern void partoo_worker_define_gucs(void);

extern void partoo_worker_register(void);
PGDLLEXPORT extern void partoo_worker_main(Datum main_arg);

#endif							/* PARTOO_SERVER_WORKER_H */
