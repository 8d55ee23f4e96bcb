/*-------------------------------------------------------------------------
 *
 * reconcile.c
 *		Status reconciliation: the statuses of messages left 'sent', read
 *		by the worker from GET /messages?conversation_id=... and applied
 *		through the same rules as a Partoo webhook.
 *
 * A webhook can be lost.  When a message is recorded 'sent' (or its
 * retry), by the worker or by partoo_send()/partoo_retry() (store.c), it
 * is tracked in partoo.reconcile (partoo_reconcile_track), due
 * partoo.reconcile_after later.  The worker then, in its own transaction
 * and only with spare slots and rate tokens (worker.c decides):
 *
 *	 1. picks the due messages still 'sent', younger than
 *		partoo.reconcile_max_age, of accounts with no outbox row due
 *		(sends come first), grouped by (account, conversation): one
 *		PartooReconcileFetch each (partoo_reconcile_pick), deleting on the
 *		way the due rows whose message is no longer waiting or too old;
 *	 2. leases the rows of the fetches it starts (next_check_at moves to
 *		the end of the lease, so a crash only delays a check);
 *	 3. after commit, reads the conversation page by page (at most
 *		PARTOO_RECONCILE_MAX_PAGES of PARTOO_RECONCILE_PER_PAGE), until it
 *		has seen every due id or the last page (partoo_reconcile_request,
 *		partoo_reconcile_take_answer; the protocol core builds the path
 *		and parses the answer, core/message_list.c);
 *	 4. records what it found in a later transaction
 *		(partoo_reconcile_record): each status becomes an event of source
 *		'reconcile' (dedup key "reconcile:<partoo_id>:<status>", plus
 *		"/r<usec>" once a retry is recorded, as the Partoo format does),
 *		applied by the ingest pipeline (partoo_webhook_ingest) with the
 *		Partoo format's own functions; then each row still 'sent' is due
 *		again after reconcile_after * 2^checks (capped), and the others go.
 *
 * A 429 on a GET puts its rows back for Retry-After, without counting a
 * check; worker.c pauses that account's reconciliation, never its sends.
 *
 * Memory: fetches and their strings are malloc'd (they live across
 * transactions) and freed with partoo_reconcile_fetch_free(); SQL results
 * are palloc'd in the caller's context.  Every function may ereport
 * except the fetch helpers, which never do.
 *
 * src/server/reconcile.c
 *
 *-------------------------------------------------------------------------
 */
#include "server/partoo.h"

#include <limits.h>
#include <time.h>

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "core/api.h"
#include "core/message_list.h"
#include "core/webhook.h"
#include "server/compat.h"
#include "server/db.h"
#include "server/reconcile.h"
#include "server/webhook_format.h"

int			partoo_reconcile_after_ms = 10 * 60 * 1000;
int			partoo_reconcile_max_age_s = 48 * 3600;

/* Due rows deleted (finished or too old) per pick, at most */
#define SWEEP_LIMIT 5000
/* Retry-After when a 429 says none usable */
#define DEFAULT_RETRY_AFTER_MS 60000

/*
 * Define the settings of reconciliation.
 * Called once from _PG_init (partoo.c).
 */
void
partoo_reconcile_define_gucs(void)
{
	DefineCustomIntVariable("partoo.reconcile_after",
							"How long a message may stay sent before the worker reads its status from GET /messages.",
							"0 turns reconciliation off. Checks of the same message then back off, doubling.",
							&partoo_reconcile_after_ms,
							10 * 60 * 1000, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("partoo.reconcile_max_age",
							"Age of a sent message after which the worker stops reading its status.",
							"Counted from when the message (or its retry) was recorded sent; the message then stays sent.",
							&partoo_reconcile_max_age_s,
							48 * 3600, 1, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);
}

/*
 * Does this database's schema have partoo.reconcile (partoo 0.4)?  Looked
 * up in the catalogs once per transaction.
 */
bool
partoo_reconcile_available(void)
{
	static bool has = false;
	static LocalTransactionId lxid = InvalidLocalTransactionId;
	Oid			nsp;

	if (lxid == PartooMyLocalTransactionId())
		return has;
	nsp = get_namespace_oid("partoo", true);
	has = OidIsValid(nsp) && OidIsValid(get_relname_relid("reconcile", nsp));
	lxid = PartooMyLocalTransactionId();
	return has;
}

/*
 * Is reconciliation on here: partoo.reconcile_after set and the schema
 * has partoo.reconcile?  Messages recorded sent are then tracked.
 */
bool
partoo_reconcile_tracking(void)
{
	return partoo_reconcile_after_ms > 0 && partoo_reconcile_available();
}

/* The longest wait between two checks: 6 hours, or a quarter of max age */
static int64
backoff_cap_ms(void)
{
	return Max((int64) partoo_reconcile_after_ms,
			   Min((int64) PARTOO_RECONCILE_BACKOFF_CAP_MS,
				   (int64) partoo_reconcile_max_age_s * 1000 / 4));
}

/*
 * Track messages_ids[0..n), just recorded sent (or their retry): due
 * partoo.reconcile_after from now, their checks counted from zero.  Does
 * nothing when reconciliation is off or the schema predates it.
 */
void
partoo_reconcile_track(const int64 *message_ids, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {INT8ARRAYOID, INT8OID};
	Datum		args[2];
	int			rc;

	if (n == 0 || !partoo_reconcile_tracking())
		return;
	partoo_plan_once(&plan,
					 PARTOO_RECONCILE_INSERT("(SELECT DISTINCT u.id FROM unnest($1) AS u(id)) u", "$2")
					 " ON CONFLICT (message_id) DO UPDATE"
					 "   SET since = EXCLUDED.since, checks = 0,"
					 "       next_check_at = EXCLUDED.next_check_at, last_checked_at = NULL",
					 2, argtypes, CURSOR_OPT_GENERIC_PLAN);
	args[0] = partoo_int64_array(message_ids, n);
	args[1] = Int64GetDatum((int64) partoo_reconcile_after_ms);
	rc = SPI_execute_plan(plan, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not track messages for reconciliation: %s",
			 SPI_result_code_string(rc));
}

/*
 * Delete the due rows of messages that no longer wait for a status
 * (delivered, failed, retried, purged...) or that reached
 * partoo.reconcile_max_age, at most SWEEP_LIMIT; the latter are logged at
 * DEBUG1, once each (their row goes).
 */
static void
sweep(void)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	bool		isnull;
	int64		too_old;
	int			rc;

	partoo_plan_once(&plan,
					 "WITH d AS ("
					 "  DELETE FROM partoo.reconcile r"
					 "   WHERE r.message_id IN ("
					 "     SELECT r2.message_id FROM partoo.reconcile r2"
					 "      WHERE r2.next_check_at <= now()"
					 "        AND (r2.since < now() - $1 * interval '1 millisecond'"
					 "             OR NOT EXISTS (SELECT 1 FROM partoo.messages m"
					 "                             WHERE m.id = r2.message_id AND m.provider = 'partoo'"
					 "                               AND m.state = 'sent' AND m.partoo_id IS NOT NULL"
					 "                               AND m.conversation_id > 0))"
					 "      ORDER BY r2.next_check_at LIMIT " CppAsString2(SWEEP_LIMIT)
					 "        FOR UPDATE SKIP LOCKED)"
					 "  RETURNING r.message_id,"
					 "            r.since < now() - $1 * interval '1 millisecond' AS too_old)"
					 " SELECT count(*) FILTER (WHERE too_old),"
					 "        min(message_id) FILTER (WHERE too_old) FROM d",
					 1, argtypes, CURSOR_OPT_GENERIC_PLAN);
	args[0] = Int64GetDatum((int64) partoo_reconcile_max_age_s * 1000);
	rc = SPI_execute_plan(plan, args, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not sweep partoo.reconcile: %s", SPI_result_code_string(rc));
	too_old = partoo_spi_int64(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (too_old > 0)
		ereport(DEBUG1,
				(errmsg_internal("partoo worker stops reading the status of %lld messages left sent longer than partoo.reconcile_max_age (the first is message %lld)",
								 (long long) too_old,
								 (long long) partoo_spi_int64(SPI_tuptable->vals[0],
															  SPI_tuptable->tupdesc, 2, &isnull))));
}

static void *
xcalloc(size_t n, size_t size)
{
	void	   *p = calloc(n > 0 ? n : 1, size);

	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return p;
}

void
partoo_reconcile_fetch_free(PartooReconcileFetch *f)
{
	int			i;

	if (f == NULL)
		return;
	partoo_http_request_free(f->req);
	for (i = 0; i < f->n; i++)
	{
		if (f->status)
			free(f->status[i]);
		if (f->json)
			free(f->json[i]);
	}
	free(f->status);
	free(f->json);
	free(f->message_ids);
	free(f->partoo_ids);
	free(f->account);
	free(f->cursor);
	free(f);
}

/*
 * The due messages, oldest due first, at most limit, grouped into one
 * fetch per (account, conversation) in the order their first message
 * comes: those still 'sent' with a Partoo id and a conversation, younger
 * than partoo.reconcile_max_age, of an account not in excluded[0..n)
 * (text) and without an outbox row due.  Their rows stay locked (FOR
 * UPDATE SKIP LOCKED) until the transaction ends.  Returns how many
 * fetches, malloc'd into *fetches (an array palloc'd in the current
 * context); the caller leases those it starts and frees every one.
 */
int
partoo_reconcile_pick(Datum *excluded, int nexcluded, int limit,
					  PartooReconcileFetch ***fetches)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {INT8OID, TEXTARRAYOID, INT4OID};
	Datum		args[3];
	PartooReconcileFetch **out;
	int			nout = 0;
	uint64		r;
	int			rc;

	*fetches = NULL;
	sweep();
	partoo_plan_once(&plan,
					 "SELECT coalesce(m.account, '') AS account, m.conversation_id, m.id, m.partoo_id"
					 "  FROM partoo.reconcile r JOIN partoo.messages m ON m.id = r.message_id"
					 " WHERE r.next_check_at <= now()"
					 "   AND r.since >= now() - $1 * interval '1 millisecond'"
					 "   AND m.provider = 'partoo' AND m.state = 'sent'"
					 "   AND m.partoo_id IS NOT NULL AND m.conversation_id > 0"
					 "   AND coalesce(m.account, '') <> ALL ($2)"
					 "   AND NOT EXISTS (SELECT 1 FROM partoo.outbox o"
					 "                    WHERE o.account = coalesce(m.account, '')"
					 "                      AND o.run_at <= now())"
					 " ORDER BY r.next_check_at, m.account, m.conversation_id"
					 " LIMIT $3"
					 "   FOR UPDATE OF r SKIP LOCKED",
					 3, argtypes, CURSOR_OPT_GENERIC_PLAN);
	args[0] = Int64GetDatum((int64) partoo_reconcile_max_age_s * 1000);
	args[1] = partoo_make_array(excluded, NULL, nexcluded, TEXTOID);
	args[2] = Int32GetDatum(limit);
	rc = SPI_execute_plan(plan, args, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.reconcile: %s", SPI_result_code_string(rc));

	out = palloc0(sizeof(PartooReconcileFetch *) * Max(SPI_processed, 1));
	*fetches = out;
	for (r = 0; r < SPI_processed; r++)
	{
		HeapTuple	t = SPI_tuptable->vals[r];
		TupleDesc	d = SPI_tuptable->tupdesc;
		char	   *account = partoo_spi_text(t, d, 1);
		bool		isnull;
		int64		conv = partoo_spi_int64(t, d, 2, &isnull);
		PartooReconcileFetch *f = NULL;
		int			k;

		/* NB: a few fetches per transaction; a linear search is enough */
		for (k = 0; k < nout; k++)
			if (out[k]->conversation_id == conv && strcmp(out[k]->account, account) == 0)
			{
				f = out[k];
				break;
			}
		if (f == NULL)
		{
			f = xcalloc(1, sizeof(PartooReconcileFetch));
			out[nout++] = f;	/* freed by the caller, also on error */
			f->account = strdup(account);
			f->conversation_id = conv;
			f->message_ids = xcalloc(SPI_processed, sizeof(int64));
			f->partoo_ids = xcalloc(SPI_processed, sizeof(int64));
			f->status = xcalloc(SPI_processed, sizeof(char *));
			f->json = xcalloc(SPI_processed, sizeof(char *));
			if (f->account == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("out of memory")));
		}
		f->message_ids[f->n] = partoo_spi_int64(t, d, 3, &isnull);
		f->partoo_ids[f->n] = partoo_spi_int64(t, d, 4, &isnull);
		f->n++;
	}
	return nout;
}

/* All the message ids of fetches[0..n) */
static Datum
message_ids_of(PartooReconcileFetch **fetches, int n)
{
	int			total = 0;
	int64	   *ids;
	int			i,
				k;

	for (i = 0; i < n; i++)
		total += fetches[i]->n;
	ids = palloc(sizeof(int64) * Max(total, 1));
	total = 0;
	for (i = 0; i < n; i++)
		for (k = 0; k < fetches[i]->n; k++)
			ids[total++] = fetches[i]->message_ids[k];
	return partoo_int64_array(ids, total);
}

/* Move the rows of the given message ids to now() + delay_ms */
static void
postpone(Datum ids, int64 delay_ms)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {INT8ARRAYOID, INT8OID};
	Datum		args[2];
	int			rc;

	partoo_plan_once(&plan,
					 "UPDATE partoo.reconcile SET next_check_at = now() + $2 * interval '1 millisecond'"
					 " WHERE message_id = ANY ($1)",
					 2, argtypes, CURSOR_OPT_GENERIC_PLAN);
	args[0] = ids;
	args[1] = Int64GetDatum(delay_ms);
	rc = SPI_execute_plan(plan, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not update partoo.reconcile: %s", SPI_result_code_string(rc));
}

/*
 * Lease the rows of fetches[0..n), which the worker starts once this
 * transaction commits: not due again before lease_s, so that a worker
 * that dies with them in flight only delays their check.
 */
void
partoo_reconcile_lease(PartooReconcileFetch **fetches, int n, int lease_s)
{
	if (n > 0)
		postpone(message_ids_of(fetches, n), (int64) lease_s * 1000);
}

/*
 * Milliseconds until the next row is due (0: now), or -1 when there is
 * none.
 */
int64
partoo_reconcile_next_due_ms(void)
{
	int			rc;
	bool		isnull;
	Datum		d;
	double		ms;

	rc = SPI_execute("SELECT extract(epoch FROM min(next_check_at) - now()) * 1000"
					 "  FROM partoo.reconcile", true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "could not read partoo.reconcile: %s", SPI_result_code_string(rc));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return -1;
	ms = DatumGetFloat8(DirectFunctionCall1(numeric_float8, d));
	return ms <= 0 ? 0 : (int64) Min(ms + 1, (double) INT64CONST(86400000));
}

/*
 * The request of f's next page (the first when f->cursor is NULL), kept
 * in f->req with f as its cookie; NULL when it cannot be made (out of
 * memory, a cursor the path builder refuses), f then ended FAILED.
 * Never ereports.
 */
PartooHttpRequest *
partoo_reconcile_request(PartooReconcileFetch *f, const char *base_url,
						 const char *api_key)
{
	char		path[PARTOO_LIST_PATH_BUFLEN];

	if (partoo_path_list_messages(f->conversation_id, PARTOO_RECONCILE_PER_PAGE,
								  f->cursor, path, sizeof(path)) < 0)
	{
		f->end = PARTOO_RECONCILE_FAILED;
		snprintf(f->error, sizeof(f->error), "could not build the path of page %d", f->pages + 1);
		return NULL;
	}
	f->req = partoo_http_request_new_get(base_url, path, api_key);
	if (f->req == NULL)
	{
		f->end = PARTOO_RECONCILE_FAILED;
		snprintf(f->error, sizeof(f->error), "out of memory");
		return NULL;
	}
	f->req->user = f;
	return f->req;
}

/* Keep what a page says of f's due messages; true when all are seen */
static bool
take_page(PartooReconcileFetch *f, const PartooMessageList *l)
{
	int			i,
				k;

	for (i = 0; i < l->n; i++)
	{
		const PartooListedMessage *m = &l->messages[i];

		if (m->status == NULL)
			continue;
		for (k = 0; k < f->n; k++)
		{
			if (f->partoo_ids[k] != m->id || f->status[k] != NULL)
				continue;
			f->status[k] = strdup(m->status);
			f->json[k] = strdup(m->json);
			if (f->status[k] == NULL || f->json[k] == NULL)
			{
				free(f->status[k]);
				free(f->json[k]);
				f->status[k] = f->json[k] = NULL;
				continue;		/* out of memory: as if not seen */
			}
			f->nseen++;
		}
	}
	return f->nseen == f->n;
}

/*
 * Take the answer of f's page in flight (f->req, done), and free the
 * request.  Returns NEXT_PAGE when another page should be read (the
 * caller makes its request with partoo_reconcile_request, or ends the
 * fetch DONE), otherwise END with f->end set.  Never ereports.
 */
PartooReconcileStep
partoo_reconcile_take_answer(PartooReconcileFetch *f)
{
	PartooHttpRequest *req = f->req;
	PartooMessageList l;
	char		err[160];
	bool		all;

	f->req = NULL;
	f->pages++;
	if (req->status == 429)
	{
		long		s = partoo_parse_retry_after(req->retry_after, (int64) time(NULL));

		f->end = PARTOO_RECONCILE_RATE_LIMITED;
		f->retry_after_ms = s >= 0 ? Max((int64) s * 1000, 1000) : DEFAULT_RETRY_AFTER_MS;
		partoo_http_request_free(req);
		return PARTOO_RECONCILE_STEP_END;
	}
	if (req->status < 200 || req->status > 299)
	{
		f->end = PARTOO_RECONCILE_FAILED;
		if (req->status == 0)
			snprintf(f->error, sizeof(f->error), "GET /messages failed: %s", req->errbuf);
		else
			snprintf(f->error, sizeof(f->error), "GET /messages answered HTTP %ld", req->status);
		partoo_http_request_free(req);
		return PARTOO_RECONCILE_STEP_END;
	}
	if (partoo_parse_message_list(req->resp, req->resp_len, &l, err, sizeof(err)) != 0)
	{
		f->end = PARTOO_RECONCILE_FAILED;
		snprintf(f->error, sizeof(f->error), "GET /messages gave an answer partoo cannot read: %s", err);
		partoo_http_request_free(req);
		return PARTOO_RECONCILE_STEP_END;
	}
	partoo_http_request_free(req);
	all = take_page(f, &l);
	free(f->cursor);
	f->cursor = NULL;
	if (!all && l.next_cursor != NULL && f->pages < PARTOO_RECONCILE_MAX_PAGES)
	{
		f->cursor = strdup(l.next_cursor);
		if (f->cursor != NULL)
		{
			partoo_message_list_free(&l);
			return PARTOO_RECONCILE_STEP_NEXT_PAGE;
		}
	}
	partoo_message_list_free(&l);
	f->end = PARTOO_RECONCILE_DONE;
	return PARTOO_RECONCILE_STEP_END;
}

/*
 * The statuses found by the fetches that ended DONE, as events of the
 * reconcile format, ingested like webhooks (webhook_apply.c).  Returns
 * how many applied a final status (Success or Failed).
 */
static int
ingest_found(PartooReconcileFetch **fetches, int n)
{
	PartooIngestEvent **evs;
	Datum	   *payloads;
	int			nev = 0;
	int			total = 0;
	int			applied = 0;
	int			i,
				k;

	for (i = 0; i < n; i++)
		if (fetches[i]->end == PARTOO_RECONCILE_DONE)
			total += fetches[i]->nseen;
	if (total == 0)
		return 0;
	evs = palloc(sizeof(PartooIngestEvent *) * total);
	payloads = palloc(sizeof(Datum) * total);
	for (i = 0; i < n; i++)
	{
		PartooReconcileFetch *f = fetches[i];

		if (f->end != PARTOO_RECONCILE_DONE)
			continue;
		for (k = 0; k < f->n; k++)
		{
			PartooIngestEvent *ev;

			if (f->status[k] == NULL)
				continue;
			ev = palloc0(sizeof(PartooIngestEvent));
			ev->format = &partoo_webhook_format_reconcile;
			ev->partoo_id = f->partoo_ids[k];
			ev->status = partoo_status_from_name(f->status[k]);
			ev->concerns_status = ev->status != PARTOO_STATUS_UNKNOWN;
			ev->status_raw = pstrdup(f->status[k]);
			ev->is_deleted = -1;
			ev->dedup_key = psprintf("reconcile:" INT64_FORMAT ":%s",
									 f->partoo_ids[k], f->status[k]);
			payloads[nev] = CStringGetTextDatum(f->json[k]);
			ev->payload = payloads[nev];
			evs[nev++] = ev;
		}
	}
	partoo_webhook_ingest(evs, nev, partoo_make_array(payloads, NULL, nev, TEXTOID));
	for (i = 0; i < nev; i++)
		if (strcmp(evs[i]->outcome, "applied") == 0 &&
			(evs[i]->status == PARTOO_STATUS_SUCCESS || evs[i]->status == PARTOO_STATUS_FAILED))
			applied++;
	return applied;
}

/*
 * After a check of the given messages: those no longer 'sent' leave
 * partoo.reconcile, the others are due again after
 * partoo.reconcile_after * 2^checks (capped, see backoff_cap_ms).
 */
static void
back_off(Datum ids)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[3] = {INT8ARRAYOID, FLOAT8OID, FLOAT8OID};
	Datum		args[3];
	int			rc;

	partoo_plan_once(&plan,
					 "WITH u AS (SELECT DISTINCT unnest($1) AS id),"
					 " d AS (DELETE FROM partoo.reconcile r USING u"
					 "        WHERE r.message_id = u.id"
					 "          AND NOT EXISTS (SELECT 1 FROM partoo.messages m"
					 "                           WHERE m.id = u.id AND m.state = 'sent'))"
					 " UPDATE partoo.reconcile r"
					 "    SET checks = r.checks + 1, last_checked_at = now(),"
					 "        next_check_at = now() + least($3, $2 * power(2::float8, least(r.checks + 1, 40)))"
					 "                                * interval '1 millisecond'"
					 "   FROM u WHERE r.message_id = u.id"
					 "    AND EXISTS (SELECT 1 FROM partoo.messages m WHERE m.id = u.id AND m.state = 'sent')",
					 3, argtypes, CURSOR_OPT_GENERIC_PLAN);
	args[0] = ids;
	args[1] = Float8GetDatum((double) partoo_reconcile_after_ms);
	args[2] = Float8GetDatum((double) backoff_cap_ms());
	rc = SPI_execute_plan(plan, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "could not update partoo.reconcile: %s", SPI_result_code_string(rc));
}

/*
 * Record what fetches[0..n) found, every one ended, in the current
 * transaction: the statuses become events and are applied; the checked
 * rows back off (or go); the rate-limited ones are due again after their
 * Retry-After, their check not counted.  A failed fetch counts as a check
 * that found nothing.  Returns how many final statuses were applied.
 */
int
partoo_reconcile_record(PartooReconcileFetch **fetches, int n)
{
	PartooReconcileFetch **checked = palloc(sizeof(PartooReconcileFetch *) * Max(n, 1));
	int			nchecked = 0;
	int			applied;
	int			i;

	if (!partoo_reconcile_available())
		return 0;
	applied = ingest_found(fetches, n);
	for (i = 0; i < n; i++)
	{
		PartooReconcileFetch *f = fetches[i];

		if (f->end == PARTOO_RECONCILE_RATE_LIMITED)
			postpone(message_ids_of(&f, 1), f->retry_after_ms);
		else
		{
			if (f->end == PARTOO_RECONCILE_FAILED)
				ereport(DEBUG1,
						(errmsg_internal("partoo worker could not read the statuses of conversation %lld: %s",
										 (long long) f->conversation_id, f->error)));
			checked[nchecked++] = f;
		}
	}
	if (nchecked > 0)
		back_off(message_ids_of(checked, nchecked));
	return applied;
}
