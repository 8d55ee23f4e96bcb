/*-------------------------------------------------------------------------
 *
 * partoo.c
 *		Module entry point: settings (GUCs) and start-up.
 *
 * _PG_init() defines every partoo.* setting, initialises libcurl once per
 * process, and, when the library is preloaded through
 * shared_preload_libraries, asks for shared memory and registers the
 * background workers.  Loaded lazily (LOAD or a first function call), the
 * SQL functions work but no worker runs; that is reported, not an error.
 *
 * NB: partoo.api_key and partoo.base_url together decide where an API key
 * is sent, so both are PGC_SUSET, and the key is GUC_SUPERUSER_ONLY so that
 * SHOW and pg_settings hide it from everybody else.
 *
 * src/partoo.c
 *
 *-------------------------------------------------------------------------
 */
#include "partoo.h"

#include <curl/curl.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

PARTOO_MODULE_MAGIC(PARTOO_VERSION);

void		_PG_init(void);

char	   *partoo_api_key = NULL;
char	   *partoo_base_url = NULL;
char	   *partoo_ca_file = NULL;
int			partoo_timeout_ms = 10000;
int			partoo_connect_timeout_ms = 5000;
char	   *partoo_databases = NULL;
int			partoo_batch_size = 500;
int			partoo_max_in_flight = 64;
int			partoo_max_attempts = 10;
int			partoo_retry_base_ms = 1000;
int			partoo_retry_max_ms = 3600 * 1000;
int			partoo_lease_s = 120;
int			partoo_requests_per_minute = 300;
int			partoo_shutdown_timeout_ms = 5000;

/*
 * A base URL must be http or https with a host.  Anything else (file://,
 * gopher://, a bare host) is refused before it can reach libcurl.
 */
bool
partoo_valid_base_url(const char *url)
{
	const char *rest;

	if (url == NULL)
		return false;
	if (pg_strncasecmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (pg_strncasecmp(url, "http://", 7) == 0)
		rest = url + 7;
	else
		return false;
	if (*rest == '\0' || *rest == '/')
		return false;
	for (; *rest; rest++)
	{
		if ((unsigned char) *rest <= ' ' || *rest == 0x7f)
			return false;
	}
	return true;
}

static bool
check_base_url(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || partoo_valid_base_url(*newval))
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("The base URL must start with http:// or https:// and name a host.");
	return false;
}

void
_PG_init(void)
{
	CURLcode	rc;

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

	DefineCustomStringVariable("partoo.api_key",
							   "API key of the default Partoo account.",
							   "Sent in the x-APIKey header when a function is called with account => NULL. "
							   "Only superusers can set or see it.",
							   &partoo_api_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("partoo.base_url",
							   "Base URL of the Partoo API for the default account.",
							   "Must start with http:// or https://. The sandbox is https://api.sandbox.partoo.co/v2.",
							   &partoo_base_url,
							   "https://api.partoo.co/v2",
							   PGC_SUSET,
							   0,
							   check_base_url, NULL, NULL);

	DefineCustomStringVariable("partoo.ca_file",
							   "File of CA certificates used to verify the Partoo API's TLS certificate.",
							   "Empty means the system's default CA store. Verification is never turned off.",
							   &partoo_ca_file,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.timeout",
							"Longest time one request to the Partoo API may take.",
							NULL,
							&partoo_timeout_ms,
							10000, 100, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.connect_timeout",
							"Longest time to wait for a connection to the Partoo API.",
							NULL,
							&partoo_connect_timeout_ms,
							5000, 100, 600000,
							PGC_USERSET,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	/*
	 * NB: PostgreSQL ends the session (FATAL) when a PGC_POSTMASTER setting
	 * is defined after startup, so this one, which only the workers use,
	 * exists only when the library is preloaded.  Loaded by one session
	 * alone, partoo still sends and queues.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomStringVariable("partoo.database",
								   "Comma-separated list of databases in which a partoo worker drains the outbox.",
								   "One worker runs per database; an empty list runs none.",
								   &partoo_databases,
								   "postgres",
								   PGC_POSTMASTER,
								   GUC_LIST_INPUT,
								   NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.batch_size",
							"Largest number of outbox rows the worker claims in one transaction.",
							NULL,
							&partoo_batch_size,
							500, 1, 100000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.max_in_flight",
							"Largest number of requests the worker has in flight at once.",
							"Each may hold a connection; keep it well below the open-file limit.",
							&partoo_max_in_flight,
							64, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.max_attempts",
							"Number of attempts after which a message that keeps failing becomes dead.",
							NULL,
							&partoo_max_attempts,
							10, 1, 1000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.retry_base",
							"Base delay of the exponential backoff between attempts.",
							"The n-th retry waits a random time between zero and min(partoo.retry_max, partoo.retry_base * 2^(n-1)).",
							&partoo_retry_base_ms,
							1000, 1, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.retry_max",
							"Longest delay between two attempts of one message.",
							NULL,
							&partoo_retry_max_ms,
							3600 * 1000, 1, 86400000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.lease",
							"How long a claimed outbox row stays reserved for the worker that claimed it.",
							"A row whose worker died is claimed again after this time. Keep it above partoo.timeout.",
							&partoo_lease_s,
							120, 5, 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.requests_per_minute",
							"Rate limit of the default account, in requests per minute; 0 means unlimited.",
							"Partoo allows 300 requests per minute per organisation by default.",
							&partoo_requests_per_minute,
							300, 0, 10000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.shutdown_timeout",
							"How long a stopping worker waits for requests in flight before abandoning them.",
							"Abandoned rows are claimed again after their lease expires.",
							&partoo_shutdown_timeout_ms,
							5000, 0, 600000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	partoo_webhook_define_gucs();

	MarkGUCPrefixReserved("partoo");

	/*
	 * Keys out of the server log, in every process that loads us (the
	 * postmaster too, which logs the settings a reload changes); see
	 * redact_log.c.
	 */
	partoo_log_redaction_install();

	if (process_shared_preload_libraries_in_progress)
		partoo_worker_register();
}
