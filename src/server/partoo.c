/*-------------------------------------------------------------------------
 *
 * partoo.c
 *		Module entry point: settings (GUCs) and start-up.
 *
 * _PG_init() has every partoo.* setting defined (each next to the code it
 * tunes, from the list partoo_setting_groups), initialises libcurl once per
 * process, and, when the library is preloaded through
 * shared_preload_libraries, asks for shared memory and registers the
 * background workers.  Loaded lazily (LOAD or a first function call), the
 * SQL functions work but no worker runs; that is reported, not an error.
 *
 * src/server/partoo.c
 *
 *-------------------------------------------------------------------------
 */
#include "server/partoo.h"

#include <curl/curl.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "http/http.h"
#include "server/batch.h"
#include "server/notify.h"
#include "server/reconcile.h"
#include "server/redact_log.h"
#include "server/store.h"
#include "server/webhook.h"
#include "server/worker.h"
#include "server/worker_job.h"

PARTOO_MODULE_MAGIC(PARTOO_VERSION);

void		_PG_init(void);

/*
 * Each setting is defined next to the code it tunes; _PG_init calls these
 * in this order.
 */
static void (*const partoo_setting_groups[]) (void) = {
	partoo_account_define_gucs,	/* store.c: the default account */
	partoo_http_define_gucs,	/* http.c: CA file, timeouts */
	partoo_worker_define_gucs,	/* worker.c: the outbox worker */
	partoo_job_define_gucs,		/* worker_job.c: the retry policy */
	partoo_reconcile_define_gucs,	/* reconcile.c: status reconciliation */
	partoo_webhook_define_gucs, /* webhook.c: webhook ingest */
	partoo_notify_define_gucs,	/* notify.c: NOTIFY partoo_status */
};

void
_PG_init(void)
{
	CURLcode	rc;
	int			i;

	/*
	 * NB: curl_global_init is not thread-safe and must run before any other
	 * libcurl call; a PostgreSQL process is single-threaded and loads us
	 * once, so here is the place.  With preloading it runs in the
	 * postmaster and children inherit it.
	 */
	rc = curl_global_init(CURL_GLOBAL_ALL);
	if (rc != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl: %s", curl_easy_strerror(rc))));

	for (i = 0; i < lengthof(partoo_setting_groups); i++)
		partoo_setting_groups[i] ();

	MarkGUCPrefixReserved("partoo");

	/*
	 * Keys out of the server log, in every process that loads us (the
	 * postmaster too, which logs the settings a reload changes); see
	 * redact_log.c.
	 */
	partoo_log_redaction_install();

	/* the points where buffered partoo_enqueue calls are written (batch.c) */
	partoo_batch_install_hooks();

	if (process_shared_preload_libraries_in_progress)
		partoo_worker_register();
}
