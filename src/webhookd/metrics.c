/*-------------------------------------------------------------------------
 *
 * metrics.c
 *		partoo-webhookd's counters, and GET /metrics in Prometheus's text
 *		format.
 *
 * Every counter is a C11 atomic, bumped by whichever thread sees the
 * event (HTTP threads for requests, the batcher for the rest); a scrape
 * reads them one by one, so its totals may be a few events apart from
 * each other, as Prometheus allows.
 *
 * src/webhookd/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "webhookd.h"

typedef atomic_ullong counter;

static const char *const route_names[WHD_ROUTE_COUNT] = {
	"partoo", "dispatch", "healthz", "metrics", "other"
};

/* the statuses the daemon answers with; anything else counts as "other" */
static const unsigned codes[] = {200, 400, 401, 404, 405, 413, 500, 503};
#define NCODES (sizeof(codes) / sizeof(codes[0]))
static counter requests[WHD_ROUTE_COUNT][NCODES + 1];

static const char *const outcome_names[] = {
	"applied", "duplicate", "stale", "pending", "ignored", "other"
};
#define NOUTCOMES (sizeof(outcome_names) / sizeof(outcome_names[0]))
static counter outcomes[NOUTCOMES];

/* histograms: cumulative at render time, per bucket here (+Inf last) */
static const double batch_bounds[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};
#define NBATCH (sizeof(batch_bounds) / sizeof(batch_bounds[0]))
static counter batch_buckets[NBATCH + 1];
static counter batch_sum;

static const double latency_bounds[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10
};
#define NLATENCY (sizeof(latency_bounds) / sizeof(latency_bounds[0]))
static counter latency_buckets[NLATENCY + 1];
static atomic_ullong latency_sum_us;

static counter db_errors;
static atomic_int db_connected;

void
whd_metrics_request(WhdRoute route, unsigned status)
{
	size_t		i;

	for (i = 0; i < NCODES; i++)
		if (codes[i] == status)
			break;
	atomic_fetch_add(&requests[route][i], 1);
}

void
whd_metrics_outcome(const char *outcome)
{
	size_t		i;

	for (i = 0; i < NOUTCOMES - 1; i++)
		if (strcmp(outcome_names[i], outcome) == 0)
			break;
	atomic_fetch_add(&outcomes[i], 1);
}

void
whd_metrics_batch(int size)
{
	size_t		i;

	for (i = 0; i < NBATCH; i++)
		if (size <= batch_bounds[i])
			break;
	atomic_fetch_add(&batch_buckets[i], 1);
	atomic_fetch_add(&batch_sum, (unsigned long long) size);
}

void
whd_metrics_latency(double seconds)
{
	size_t		i;

	for (i = 0; i < NLATENCY; i++)
		if (seconds <= latency_bounds[i])
			break;
	atomic_fetch_add(&latency_buckets[i], 1);
	atomic_fetch_add(&latency_sum_us, (unsigned long long) (seconds * 1e6));
}

void
whd_metrics_db_error(void)
{
	atomic_fetch_add(&db_errors, 1);
}

void
whd_metrics_db_connected(bool connected)
{
	atomic_store(&db_connected, connected ? 1 : 0);
}

/* A growing buffer; on allocation failure it is dropped and stays NULL */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

static void
buf_printf(Buf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
buf_printf(Buf *b, const char *fmt,...)
{
	va_list		ap;
	int			n;

	if (b->data == NULL)
		return;
	for (;;)
	{
		va_start(ap, fmt);
		n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t) n < b->cap - b->len)
		{
			b->len += n;
			return;
		}
		{
			char	   *p = realloc(b->data, b->cap * 2 + n);

			if (p == NULL)
			{
				free(b->data);
				b->data = NULL;
				return;
			}
			b->data = p;
			b->cap = b->cap * 2 + n;
		}
	}
}

static void
render_histogram(Buf *b, const char *name, const char *help,
				 const double *bounds, size_t n, counter *buckets, const char *sum)
{
	unsigned long long cum = 0;
	size_t		i;

	buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (i = 0; i < n; i++)
	{
		cum += atomic_load(&buckets[i]);
		buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], cum);
	}
	cum += atomic_load(&buckets[n]);
	buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, cum);
	buf_printf(b, "%s_sum %s\n%s_count %llu\n", name, sum, name, cum);
}

/*
 * The whole exposition, malloc'd (the caller frees it), or NULL when out
 * of memory.
 */
char *
whd_metrics_render(size_t *len)
{
	Buf			b;
	size_t		r,
				i;
	char		sum[64];

	b.cap = 8192;
	b.len = 0;
	b.data = malloc(b.cap);

	buf_printf(&b, "# HELP partoo_webhookd_requests_total HTTP requests answered, by route and status.\n"
			   "# TYPE partoo_webhookd_requests_total counter\n");
	for (r = 0; r < WHD_ROUTE_COUNT; r++)
		for (i = 0; i <= NCODES; i++)
		{
			unsigned long long v = atomic_load(&requests[r][i]);

			if (v == 0)
				continue;
			if (i < NCODES)
				buf_printf(&b, "partoo_webhookd_requests_total{route=\"%s\",code=\"%u\"} %llu\n",
						   route_names[r], codes[i], v);
			else
				buf_printf(&b, "partoo_webhookd_requests_total{route=\"%s\",code=\"other\"} %llu\n",
						   route_names[r], v);
		}

	buf_printf(&b, "# HELP partoo_webhookd_outcomes_total Webhook events ingested, by the outcome partoo_ingest_webhooks() returned.\n"
			   "# TYPE partoo_webhookd_outcomes_total counter\n");
	for (i = 0; i < NOUTCOMES; i++)
		buf_printf(&b, "partoo_webhookd_outcomes_total{outcome=\"%s\"} %llu\n",
				   outcome_names[i], atomic_load(&outcomes[i]));

	snprintf(sum, sizeof(sum), "%llu", atomic_load(&batch_sum));
	render_histogram(&b, "partoo_webhookd_batch_size",
					 "Webhook bodies per database call (partoo_ingest_webhooks(), or partoo_ingest_webhook() for one).",
					 batch_bounds, NBATCH, batch_buckets, sum);
	snprintf(sum, sizeof(sum), "%.6f", atomic_load(&latency_sum_us) / 1e6);
	render_histogram(&b, "partoo_webhookd_ingest_seconds",
					 "Time from a complete webhook body to its answer from the database.",
					 latency_bounds, NLATENCY, latency_buckets, sum);

	buf_printf(&b, "# HELP partoo_webhookd_db_errors_total Database connections that failed or broke, and statements that failed for another reason than the webhook itself.\n"
			   "# TYPE partoo_webhookd_db_errors_total counter\n"
			   "partoo_webhookd_db_errors_total %llu\n",
			   atomic_load(&db_errors));
	buf_printf(&b, "# HELP partoo_webhookd_db_connected Whether the daemon holds a working database connection.\n"
			   "# TYPE partoo_webhookd_db_connected gauge\n"
			   "partoo_webhookd_db_connected %d\n",
			   atomic_load(&db_connected));
	if (b.data != NULL)
		*len = b.len;
	return b.data;
}
