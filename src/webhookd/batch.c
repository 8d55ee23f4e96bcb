/*-------------------------------------------------------------------------
 *
 * batch.c
 *		The batcher: groups the webhook bodies that arrive together into one
 *		partoo_ingest_webhooks() call, over the daemon's only database
 *		connection.
 *
 * HTTP threads queue a WhdItem (whd_submit) and sleep until it is done.
 * The batcher thread takes up to batch_max items, waiting at most
 * batch_wait_ms after the first one for more, and ingests them in one
 * statement; while that statement runs, the next batch fills up, so the
 * batches grow with the load by themselves.  Only this thread touches
 * the PGconn (and whd_batch_start, before the thread exists).
 *
 * An answer of 200 means the statement returned, and so its implicit
 * transaction committed.  partoo_ingest_webhooks() fails as a whole for
 * one bad element (a forged signature, a malformed body): the batch is
 * then ingested one body at a time, so that a bad body only fails its own
 * request.  Ingesting is idempotent (a body seen before is a "duplicate"),
 * so a call whose connection broke is made again once on a new
 * connection, whether or not the first one committed; that is also how
 * the daemon comes back after a server restart.
 *
 * src/webhookd/batch.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "webhookd.h"

#define DEFAULT_MAX_BODY (1024 * 1024)

static WhdConfig cfg;
static atomic_size_t max_body = DEFAULT_MAX_BODY;

/* the queue, under lock */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_cv;		/* an item was queued, or stopping */
static pthread_cond_t done_cv;		/* items were answered */
static WhdItem *head;
static WhdItem *tail;
static int	qlen;
static bool stopping;
static pthread_t thread;

/* the batcher thread's own */
static PGconn *conn;
static char *fn_many;			/* schema-qualified partoo_ingest_webhooks */
static char *fn_one;			/* schema-qualified partoo_ingest_webhook */
static bool trouble_logged;		/* a connection failure was logged, not its end */
static char last_logged_sqlstate[6];

typedef enum CallResult
{
	CALL_OK,
	CALL_SQL_ERROR,				/* the statement failed; the connection works */
	CALL_CONN_ERROR				/* no connection, or it broke */
} CallResult;

size_t
whd_max_body(void)
{
	return atomic_load(&max_body);
}

/* The first line of a libpq message, without its newline, into buf */
static const char *
first_line(const char *msg, char *buf, size_t size)
{
	size_t		n = strcspn(msg, "\n");

	if (n >= size)
		n = size - 1;
	memcpy(buf, msg, n);
	buf[n] = '\0';
	return buf;
}

static void
drop_connection(void)
{
	if (conn != NULL)
		PQfinish(conn);
	conn = NULL;
	whd_metrics_db_connected(false);
}

/*
 * After connecting: find the schema the extension lives in (the functions
 * are called by qualified name, whatever the role's search_path), and the
 * server's partoo.webhook_max_bytes when --max-body was not given.  False,
 * with the reason in why, when the extension is not there.
 */
static bool
setup_connection(char *why, size_t size)
{
	PGresult   *res;
	const char *schema;

	res = PQexec(conn,
				 "SELECT pg_catalog.quote_ident(n.nspname),"
				 " (SELECT s.setting FROM pg_catalog.pg_settings s"
				 "   WHERE s.name = 'partoo.webhook_max_bytes' AND s.unit = 'B')"
				 " FROM pg_catalog.pg_extension e"
				 " JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace"
				 " WHERE e.extname = 'partoo'");
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		snprintf(why, size, "could not look up extension partoo: %s",
				 PQresultErrorMessage(res));
		PQclear(res);
		return false;
	}
	if (PQntuples(res) != 1)
	{
		snprintf(why, size, "extension partoo is not installed in database \"%s\"",
				 PQdb(conn));
		PQclear(res);
		return false;
	}
	schema = PQgetvalue(res, 0, 0);
	free(fn_many);
	free(fn_one);
	fn_many = malloc(strlen(schema) + 32);
	fn_one = malloc(strlen(schema) + 32);
	if (fn_many == NULL || fn_one == NULL)
	{
		snprintf(why, size, "out of memory");
		PQclear(res);
		return false;
	}
	sprintf(fn_many, "%s.partoo_ingest_webhooks", schema);
	sprintf(fn_one, "%s.partoo_ingest_webhook", schema);
	if (cfg.max_body == 0 && !PQgetisnull(res, 0, 1))
	{
		unsigned long long v = strtoull(PQgetvalue(res, 0, 1), NULL, 10);

		if (v > 0)
			atomic_store(&max_body, (size_t) v);
	}
	PQclear(res);
	return true;
}

/*
 * A working connection, made now if there is none.  Logs one line when
 * the database becomes unreachable and one when it is back, not one per
 * request in between.
 */
static bool
ensure_connection(void)
{
	const char *keys[4];
	const char *vals[4];
	int			k = 0;
	char		why[512];
	char		line[480];

	if (conn != NULL && PQstatus(conn) == CONNECTION_OK)
		return true;
	drop_connection();

	keys[k] = "fallback_application_name";
	vals[k++] = "partoo-webhookd";
	if (getenv("PGCONNECT_TIMEOUT") == NULL)
	{
		/* NB: before dbname, so that a connect_timeout in CONNINFO wins */
		keys[k] = "connect_timeout";
		vals[k++] = "5";
	}
	keys[k] = "dbname";
	vals[k++] = cfg.conninfo;
	keys[k] = NULL;
	vals[k] = NULL;

	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL)
		snprintf(why, sizeof(why), "out of memory");
	else if (PQstatus(conn) != CONNECTION_OK)
		snprintf(why, sizeof(why), "%s",
				 first_line(PQerrorMessage(conn), line, sizeof(line)));
	else if (setup_connection(why, sizeof(why)))
	{
		whd_log("connected to database \"%s\" as \"%s\"%s",
				PQdb(conn), PQuser(conn), trouble_logged ? " again" : "");
		trouble_logged = false;
		whd_metrics_db_connected(true);
		return true;
	}
	whd_metrics_db_error();
	if (!trouble_logged)
		whd_log("could not connect to the database: %s", why);
	trouble_logged = true;
	drop_connection();
	return false;
}

/* After a failed statement: a broken connection, or an SQL error? */
static CallResult
classify_failure(PGresult *res)
{
	char		line[480];

	if (PQstatus(conn) != CONNECTION_OK)
	{
		whd_metrics_db_error();
		if (!trouble_logged)
			whd_log("database connection lost: %s",
					first_line(PQerrorMessage(conn), line, sizeof(line)));
		trouble_logged = true;
		drop_connection();
		return CALL_CONN_ERROR;
	}
	(void) res;
	return CALL_SQL_ERROR;
}

/*
 * The answer for an SQL error: the ingest functions raise 28000 for a
 * missing or wrong signature or key, 22xxx for a malformed body (22P02
 * not JSON, 22023 not a webhook, 22021 bad encoding), 54000 for a body
 * over partoo.webhook_max_bytes.  Anything else (55000: a setting missing
 * on the server, 42501: a missing grant, 55P03: a lock, 40001...) is the
 * receiver's trouble, not the sender's: 503, which Partoo retries.
 */
static int
status_for_sqlstate(const char *s)
{
	if (strncmp(s, "28", 2) == 0)
		return 401;
	if (strcmp(s, "54000") == 0)
		return 413;
	if (strncmp(s, "22", 2) == 0 || strcmp(s, "23502") == 0)
		return 400;
	return 503;
}

static void
set_error(WhdItem *item, PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char		line[480];

	if (s == NULL)
		s = "";
	snprintf(item->sqlstate, sizeof(item->sqlstate), "%s", s);
	item->http_status = s[0] ? status_for_sqlstate(s) : 503;
	item->outcome[0] = '\0';
	if (item->http_status == 503)
	{
		const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

		/* a server-side problem: say so once, not for every request */
		whd_metrics_db_error();
		if (strcmp(last_logged_sqlstate, item->sqlstate) != 0)
			whd_log("webhook ingest failed: SQLSTATE %s: %s", item->sqlstate,
					first_line(msg ? msg : "", line, sizeof(line)));
		snprintf(last_logged_sqlstate, sizeof(last_logged_sqlstate), "%s", item->sqlstate);
	}
}

static void
set_outcome(WhdItem *item, const char *outcome)
{
	item->http_status = 200;
	item->sqlstate[0] = '\0';
	snprintf(item->outcome, sizeof(item->outcome), "%s", outcome);
	last_logged_sqlstate[0] = '\0';
}

static void
set_unavailable(WhdItem *item)
{
	item->http_status = 503;
	item->outcome[0] = '\0';
	item->sqlstate[0] = '\0';
}

/*
 * One body alone, through partoo_ingest_webhook().  Sets the item's
 * result; CALL_CONN_ERROR when there was no connection to call it on.
 */
static CallResult
call_one(WhdItem *item)
{
	const char *params[2];
	PGresult   *res;
	char		sql[256];
	CallResult	r;

	if (!ensure_connection())
		return CALL_CONN_ERROR;
	whd_metrics_batch(1);
	snprintf(sql, sizeof(sql), "SELECT %s($1, $2)", fn_one);
	params[0] = item->body;
	params[1] = item->signature;
	res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		!PQgetisnull(res, 0, 0))
	{
		set_outcome(item, PQgetvalue(res, 0, 0));
		PQclear(res);
		return CALL_OK;
	}
	r = classify_failure(res);
	if (r == CALL_SQL_ERROR)
		set_error(item, res);
	PQclear(res);
	return r;
}

/* Append s to p as an element of an array literal, quoted; returns the end */
static char *
quote_element(char *p, const char *s)
{
	*p++ = '"';
	for (; *s; s++)
	{
		if (*s == '"' || *s == '\\')
			*p++ = '\\';
		*p++ = *s;
	}
	*p++ = '"';
	return p;
}

/*
 * The bodies (which is 0) or signatures (1) of items as a text[] literal,
 * malloc'd, or NULL when out of memory.
 */
static char *
array_literal(WhdItem **items, int n, int which)
{
	size_t		size = 3;
	char	   *lit,
			   *p;
	int			i;

	for (i = 0; i < n; i++)
	{
		const char *s = which == 0 ? items[i]->body : items[i]->signature;

		size += (s ? strlen(s) * 2 + 3 : 5);
	}
	lit = malloc(size);
	if (lit == NULL)
		return NULL;
	p = lit;
	*p++ = '{';
	for (i = 0; i < n; i++)
	{
		const char *s = which == 0 ? items[i]->body : items[i]->signature;

		if (i > 0)
			*p++ = ',';
		if (s == NULL)
		{
			memcpy(p, "NULL", 4);
			p += 4;
		}
		else
			p = quote_element(p, s);
	}
	*p++ = '}';
	*p = '\0';
	return lit;
}

/*
 * All of items in one partoo_ingest_webhooks() call.  On CALL_OK every
 * item has its outcome; otherwise none is set, and on CALL_SQL_ERROR
 * *failed is the error's result (the caller clears it) or NULL.
 */
static CallResult
call_many(WhdItem **items, int n, PGresult **failed)
{
	const char *params[2];
	char	   *bodies,
			   *sigs;
	PGresult   *res;
	char		sql[320];
	CallResult	r;
	int			i;

	*failed = NULL;
	if (!ensure_connection())
		return CALL_CONN_ERROR;
	whd_metrics_batch(n);
	bodies = array_literal(items, n, 0);
	sigs = array_literal(items, n, 1);
	if (bodies == NULL || sigs == NULL)
	{
		free(bodies);
		free(sigs);
		return CALL_SQL_ERROR;
	}
	snprintf(sql, sizeof(sql),
			 "SELECT o FROM %s($1::text[], $2::text[]) WITH ORDINALITY AS t(o, i) ORDER BY i",
			 fn_many);
	params[0] = bodies;
	params[1] = sigs;
	res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
	free(bodies);
	free(sigs);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == n)
	{
		for (i = 0; i < n; i++)
			set_outcome(items[i], PQgetvalue(res, i, 0));
		PQclear(res);
		return CALL_OK;
	}
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		r = CALL_SQL_ERROR;		/* cannot happen: not one row per body */
	else
		r = classify_failure(res);
	if (r == CALL_SQL_ERROR && PQresultStatus(res) != PGRES_TUPLES_OK)
		*failed = res;
	else
		PQclear(res);
	return r;
}

/* One body, with one more try on a new connection if the first broke */
static void
ingest_one(WhdItem *item)
{
	if (call_one(item) == CALL_CONN_ERROR && call_one(item) == CALL_CONN_ERROR)
		set_unavailable(item);
}

/*
 * Which element of a failed batch the error is about: the ingest
 * functions say "webhook payload K of N" in the error's context when the
 * body is the sender's fault (28xxx, 22xxx, 54000).  -1 when the error is
 * of another kind or the context does not say (another lc_messages).
 */
static int
bad_element(PGresult *res, int n)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *ctx = PQresultErrorField(res, PG_DIAG_CONTEXT);
	const char *p;
	int			k,
				total;

	if (state == NULL || ctx == NULL || status_for_sqlstate(state) == 503)
		return -1;
	p = strstr(ctx, "webhook payload ");
	if (p == NULL || sscanf(p, "webhook payload %d of %d", &k, &total) != 2 ||
		total != n || k < 1 || k > n)
		return -1;
	return k - 1;
}

/*
 * Ingest items (n >= 1), setting each one's result.  One call for them
 * all; when it fails for one bad element that the error names, that
 * element gets the error and the others are tried again without it;
 * when it fails otherwise, each goes alone.  NB: items is reordered
 * (the same pointers).
 */
static void
ingest(WhdItem **items, int n)
{
	while (n > 1)
	{
		PGresult   *failed = NULL;
		CallResult	r;
		int			k,
					i;

		r = call_many(items, n, &failed);
		if (r == CALL_CONN_ERROR)
			r = call_many(items, n, &failed);
		if (r == CALL_OK)
			return;
		if (r == CALL_CONN_ERROR)
		{
			for (i = 0; i < n; i++)
				set_unavailable(items[i]);
			return;
		}
		k = failed ? bad_element(failed, n) : -1;
		if (k < 0)
		{
			PQclear(failed);
			for (i = 0; i < n; i++)
				ingest_one(items[i]);
			return;
		}
		set_error(items[k], failed);
		PQclear(failed);
		/* swap it out of the way: the caller still needs every pointer */
		{
			WhdItem    *bad = items[k];

			items[k] = items[n - 1];
			items[n - 1] = bad;
		}
		n--;
	}
	if (n == 1)
		ingest_one(items[0]);
}

/* /healthz: a working connection answers a query */
static bool
ping(void)
{
	int			attempt;

	for (attempt = 0; attempt < 2; attempt++)
	{
		PGresult   *res;

		if (!ensure_connection())
			return false;
		res = PQexec(conn, "SELECT 1");
		if (PQresultStatus(res) == PGRES_TUPLES_OK)
		{
			PQclear(res);
			return true;
		}
		if (classify_failure(res) == CALL_SQL_ERROR)
		{
			whd_metrics_db_error();
			PQclear(res);
			return false;
		}
		PQclear(res);
	}
	return false;
}

static void
monotonic_deadline(struct timespec *ts, double seconds_from_now)
{
	long long	ns;

	clock_gettime(CLOCK_MONOTONIC, ts);
	ns = ts->tv_nsec + (long long) (seconds_from_now * 1e9);
	ts->tv_sec += ns / 1000000000;
	ts->tv_nsec = ns % 1000000000;
}

static void *
batcher_main(void *arg)
{
	WhdItem   **batch = malloc(sizeof(WhdItem *) * cfg.batch_max);
	WhdItem   **pings = malloc(sizeof(WhdItem *) * cfg.batch_max);

	if (batch == NULL || pings == NULL)
	{
		whd_log("out of memory");
		exit(1);
	}
	pthread_mutex_lock(&lock);
	for (;;)
	{
		int			n = 0,
					np = 0,
					i;
		double		now;

		while (head == NULL && !stopping)
			pthread_cond_wait(&queue_cv, &lock);
		if (head == NULL)
			break;

		/* give the first body's companions batch_wait_ms to arrive */
		while (qlen < cfg.batch_max && !stopping &&
			   (now = whd_now()) < head->enqueued_at + cfg.batch_wait_ms / 1000.0)
		{
			struct timespec ts;

			monotonic_deadline(&ts, head->enqueued_at + cfg.batch_wait_ms / 1000.0 - now);
			pthread_cond_timedwait(&queue_cv, &lock, &ts);
		}

		while (head != NULL && n < cfg.batch_max && np < cfg.batch_max)
		{
			WhdItem    *it = head;

			head = it->next;
			if (head == NULL)
				tail = NULL;
			qlen--;
			if (it->kind == WHD_PING)
				pings[np++] = it;
			else
				batch[n++] = it;
		}
		pthread_mutex_unlock(&lock);

		if (n > 0)
			ingest(batch, n);
		if (np > 0)
		{
			bool		ok = ping();

			for (i = 0; i < np; i++)
			{
				if (ok)
					set_outcome(pings[i], "ok");
				else
					set_unavailable(pings[i]);
			}
		}

		now = whd_now();
		pthread_mutex_lock(&lock);
		for (i = 0; i < n; i++)
		{
			whd_metrics_latency(now - batch[i]->enqueued_at);
			if (batch[i]->http_status == 200)
				whd_metrics_outcome(batch[i]->outcome);
			batch[i]->done = true;
		}
		for (i = 0; i < np; i++)
			pings[i]->done = true;
		pthread_cond_broadcast(&done_cv);
	}
	pthread_mutex_unlock(&lock);
	free(batch);
	free(pings);
	return arg;
}

/*
 * Queue item and wait until the batcher has answered it (item's result
 * fields are then set).  Called from HTTP threads.
 */
void
whd_submit(WhdItem *item)
{
	item->done = false;
	item->next = NULL;
	item->enqueued_at = whd_now();
	pthread_mutex_lock(&lock);
	if (stopping)
	{
		set_unavailable(item);
		pthread_mutex_unlock(&lock);
		return;
	}
	if (tail != NULL)
		tail->next = item;
	else
		head = item;
	tail = item;
	qlen++;
	pthread_cond_signal(&queue_cv);
	while (!item->done)
		pthread_cond_wait(&done_cv, &lock);
	pthread_mutex_unlock(&lock);
}

/*
 * Connect once (a failure is logged, not fatal: requests get 503 until
 * the database answers) and start the batcher thread.
 */
void
whd_batch_start(const WhdConfig *config)
{
	pthread_condattr_t attr;
	int			rc;

	cfg = *config;
	if (cfg.max_body > 0)
		atomic_store(&max_body, cfg.max_body);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&queue_cv, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&done_cv, NULL);

	(void) ensure_connection();

	rc = pthread_create(&thread, NULL, batcher_main, NULL);
	if (rc != 0)
	{
		whd_log("could not start the batcher thread: %s", strerror(rc));
		exit(1);
	}
}

/*
 * Ingest what is queued, stop the batcher thread, close the connection.
 * The HTTP side is stopped first, so nothing is queued after this.
 */
void
whd_batch_stop(void)
{
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_broadcast(&queue_cv);
	pthread_mutex_unlock(&lock);
	pthread_join(thread, NULL);
	drop_connection();
	free(fn_many);
	free(fn_one);
	fn_many = fn_one = NULL;
}
