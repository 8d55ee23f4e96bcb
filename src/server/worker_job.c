/*-------------------------------------------------------------------------
 *
 * worker_job.c
 *		The life of one job of the background worker: built from a
 *		claimed outbox row (its request, or an outcome known at once),
 *		its HTTP result turned into an outcome, and outcomes recorded.
 *
 * Outcomes are row data, never errors: 2xx -> sent; 429 -> the account is
 * paused for Retry-After and the row waits, without counting an attempt;
 * 400/401/403/404/415... -> rejected; anything else -> retried with
 * exponential backoff and full jitter until partoo.max_attempts, then
 * dead.  Nothing here touches shared memory: a job says which
 * worker_status() counter it adds to (job->count) and worker.c counts.
 *
 * src/server/worker_job.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include <time.h>

#include "common/pg_prng.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "core/message.h"
#include "core/api.h"
#include "core/ratelimit.h"
#include "http/http.h"
#include "server/message.h"
#include "server/outbox.h"
#include "server/worker.h"
#include "server/worker_job.h"

/* The retry policy's settings (partoo.max_attempts, partoo.retry_base, partoo.retry_max) */
int			partoo_max_attempts = 10;
int			partoo_retry_base_ms = 1000;
int			partoo_retry_max_ms = 3600 * 1000;

/*
 * Define the settings of the retry policy, which partoo_job_outcome
 * applies.  Called once from _PG_init (partoo.c).
 */
void
partoo_job_define_gucs(void)
{
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
}

/*
 * The HTTP status recorded for a 'record' action: Partoo accepted its
 * message (its real 2xx status was not kept with its Partoo id).
 */
#define RECORD_ACTION_HTTP 200

/* Longest error text recorded in messages.last_error, in bytes */
#define RECORDED_ERROR_MAX 512

/*
 * Set a job's outcome: its message's new state, whether the outbox row
 * leaves (final) or waits delay_ms, the outbox and message attempt counts,
 * the HTTP status (0: none) and the error text (fmt NULL: none).
 */
void
partoo_job_outcome(PartooJob *job, const char *state, bool final, int64 delay_ms,
				   int new_attempts, int counted, long http, const char *fmt,...)
{
	job->state = state;
	job->final = final;
	job->delay_ms = delay_ms;
	job->new_attempts = new_attempts;
	job->counted = counted;
	job->http = http;
	job->err[0] = '\0';
	if (fmt != NULL)
	{
		va_list		ap;

		va_start(ap, fmt);
		vsnprintf(job->err, sizeof(job->err), fmt, ap);
		va_end(ap);
	}
}

/* A failure that may succeed later: back off, or give up at max_attempts */
static void
retry_later(PartooJob *job, long http, const char *what)
{
	int			attempts = job->attempts + 1;

	if (attempts >= partoo_max_attempts)
	{
		partoo_job_outcome(job, "dead", true, 0, attempts, 1, http,
					"%s (attempt %d of %d)", what, attempts, partoo_max_attempts);
		job->count = PARTOO_JOB_COUNT_DEAD;
		return;
	}
	partoo_job_outcome(job, "queued", false,
				partoo_backoff_ms(attempts, partoo_retry_base_ms,
								  partoo_retry_max_ms,
								  pg_prng_uint64(&pg_global_prng_state)),
				attempts, 1, http, "%s (attempt %d of %d)", what, attempts,
				partoo_max_attempts);
	job->count = PARTOO_JOB_COUNT_FAILED;
}

/*
 * Turn a finished request into its job's outcome, and free the request.
 * rl: the job's account's rate limiter (a 429 pauses it), or NULL.
 */
void
partoo_job_classify(PartooJob *job, PartooRateLimiter *rl)
{
	PartooHttpRequest *req = job->req;
	PartooApiResult res;
	char		what[520];
	const char *body;

	partoo_parse_api_response(req->status, req->resp, req->resp_len, &res);
	body = res.error_text ? res.error_text :
		(req->resp_len > 0 ? req->resp : "(empty body)");
	if (req->status == 0)
		snprintf(what, sizeof(what), "%s", req->errbuf[0] ? req->errbuf : "transport failure");
	else
		snprintf(what, sizeof(what), "HTTP %ld: %.480s", req->status, body);

	if (req->too_large)
		retry_later(job, req->status, "response body over the size limit");
	else
	{
		switch (partoo_classify_status(req->status))
		{
			case PARTOO_FC_OK:
				if (job->is_retry)
				{
					partoo_job_outcome(job, "sent", true, 0, job->attempts, 1, req->status, NULL);
					job->count = PARTOO_JOB_COUNT_RETRIED;
				}
				else
				{
					partoo_job_outcome(job, "sent", true, 0, job->attempts, 1, req->status,
								res.has_message_id ? NULL :
								"Partoo answered without a message_id");
					job->has_pid = res.has_message_id;
					job->pid = res.message_id;
					job->count = PARTOO_JOB_COUNT_SENT;
				}
				break;
			case PARTOO_FC_RATE_LIMITED:
				{
					long		secs = partoo_parse_retry_after(req->retry_after,
																(int64) time(NULL));

					if (secs < 1)
						secs = 1;
					if (rl != NULL)
						partoo_ratelimit_pause_until(rl, partoo_monotonic_us() / 1000 +
													 secs * 1000);
					partoo_job_outcome(job, "queued", false, secs * 1000, job->attempts, 0,
								req->status, "%s (account paused for %ld s)", what, secs);
					job->count = PARTOO_JOB_COUNT_RATE_LIMITED;
				}
				break;
			case PARTOO_FC_REJECTED:
				partoo_job_outcome(job, "rejected", true, 0, job->attempts + 1, 1,
							req->status, "%s", what);
				job->count = PARTOO_JOB_COUNT_REJECTED;
				break;
			case PARTOO_FC_RETRYABLE:
				retry_later(job, req->status, what);
				break;
		}
	}
	partoo_api_result_free(&res);
	partoo_http_request_free(req);
	job->req = NULL;
}

/*
 * Did Partoo accept the job's request?  Then its outcome must be
 * recorded as it is, whatever happens: the message is sent, and sending
 * it again would be a duplicate.
 */
bool
partoo_job_accepted(const PartooJob *job)
{
	return strcmp(job->state, "sent") == 0;
}

/*
 * Write the outcomes of jobs[0..n) in one statement.  Strings are made
 * safe for the database encoding first.  recorded[i] tells which were
 * written (see partoo_outbox_record); returns how many.
 */
int
partoo_job_record(PartooJob **jobs, int n, bool *recorded)
{
	PartooOutboxOutcomes o;
	int			i;

	partoo_outbox_outcomes_init(&o, n);
	for (i = 0; i < n; i++)
	{
		PartooJob  *j = jobs[i];

		o.outbox_id[i] = Int64GetDatum(j->outbox_id);
		o.message_id[i] = Int64GetDatum(j->message_id);
		o.state[i] = CStringGetTextDatum(j->state);
		o.final[i] = BoolGetDatum(j->final);
		o.delay_ms[i] = Int64GetDatum(j->delay_ms);
		o.attempts[i] = Int32GetDatum(j->new_attempts);
		o.counted[i] = Int32GetDatum(j->counted);
		o.partoo_id[i] = Int64GetDatum(j->pid);
		o.partoo_id_null[i] = !j->has_pid;
		o.http[i] = Int32GetDatum((int32) j->http);
		o.http_null[i] = (j->http == 0);
		o.error[i] = CStringGetTextDatum(partoo_printable(j->err, strlen(j->err),
														  RECORDED_ERROR_MAX));
		o.error_null[i] = (j->err[0] == '\0');
		o.is_retry[i] = BoolGetDatum(j->is_retry);
	}
	return partoo_outbox_record(&o, recorded);
}

/* A text column of a claimed row, converted to UTF-8, or NULL */
static const char *
utf8_or_null(HeapTuple t, TupleDesc d, int col)
{
	char	   *s = SPI_getvalue(t, d, col);

	if (s == NULL)
		return NULL;
	return pg_server_to_any(s, strlen(s), PG_UTF8);
}

/*
 * Fill a job (zeroed) from a claimed row: its request ready to start, or
 * its outcome already known (an account that does not exist, a message
 * that cannot be built).  a: the row's account, or NULL if there is none.
 */
void
partoo_job_fill(PartooJob *job, HeapTuple t, TupleDesc d, PartooWorkerAccount *a)
{
	bool		isnull;
	char	   *action;
	PartooBody	body;
	char		path[64];
	Datum		record_pid;

	job->outbox_id = DatumGetInt64(SPI_getbinval(t, d, PARTOO_CLAIM_OUTBOX_ID, &isnull));
	job->message_id = DatumGetInt64(SPI_getbinval(t, d, PARTOO_CLAIM_MESSAGE_ID, &isnull));
	action = SPI_getvalue(t, d, PARTOO_CLAIM_ACTION);
	job->is_retry = (strcmp(action, "retry") == 0);
	job->account = strdup(SPI_getvalue(t, d, PARTOO_CLAIM_ACCOUNT));
	if (job->account == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	job->attempts = DatumGetInt32(SPI_getbinval(t, d, PARTOO_CLAIM_ATTEMPTS, &isnull));

	if (!DatumGetBool(SPI_getbinval(t, d, PARTOO_CLAIM_MESSAGE_EXISTS, &isnull)))
	{
		partoo_job_outcome(job, "dead", true, 0, job->attempts, 0, 0,
					"message row no longer exists");
		return;
	}

	/*
	 * A message Partoo accepted, whose outcome could not be recorded then
	 * (partoo_outbox_keep_accepted): record it now, send nothing.
	 */
	record_pid = SPI_getbinval(t, d, PARTOO_CLAIM_RECORD_PID, &isnull);
	if (strcmp(action, "record") == 0 && !isnull)
	{
		partoo_job_outcome(job, "sent", true, 0, 0, 1, RECORD_ACTION_HTTP, NULL);
		job->has_pid = true;
		job->pid = DatumGetInt64(record_pid);
		job->record_tries = job->attempts;	/* recordings tried so far */
		job->count = PARTOO_JOB_COUNT_NONE;	/* counted when it was sent */
		return;
	}

	if (a == NULL || (a->name[0] == '\0' && a->api_key[0] == '\0'))
	{
		retry_later(job, 0, a == NULL ?
					"account does not exist in partoo.accounts" :
					"partoo.api_key is not set");
		return;
	}

	if (job->is_retry)
	{
		Datum		pid = SPI_getbinval(t, d, PARTOO_CLAIM_PARTOO_ID, &isnull);

		if (isnull)
		{
			partoo_job_outcome(job, "rejected", true, 0, job->attempts, 0, 0,
						"cannot retry a message that has no Partoo message_id");
			return;
		}
		partoo_path_retry(DatumGetInt64(pid), path, sizeof(path));
		memset(&body, 0, sizeof(body));
	}
	else
	{
		PartooMessage m;
		bytea	   *image = NULL;
		Datum		created;
		char		date[PARTOO_DATE_BUFLEN];
		Datum		img;

		memset(&m, 0, sizeof(m));
		m.conversation_id = DatumGetInt64(SPI_getbinval(t, d, PARTOO_CLAIM_CONVERSATION_ID, &isnull));
		m.content_type = partoo_content_type_from_name(SPI_getvalue(t, d, PARTOO_CLAIM_CONTENT_TYPE));
		m.content = utf8_or_null(t, d, PARTOO_CLAIM_CONTENT);
		m.url = utf8_or_null(t, d, PARTOO_CLAIM_URL);
		img = SPI_getbinval(t, d, PARTOO_CLAIM_IMAGE, &isnull);
		if (!isnull)
		{
			image = DatumGetByteaPP(img);
			m.image = (const unsigned char *) VARDATA_ANY(image);
			m.image_len = VARSIZE_ANY_EXHDR(image);
		}
		m.filename = utf8_or_null(t, d, PARTOO_CLAIM_FILENAME);
		m.channel = partoo_channel_from_name(SPI_getvalue(t, d, PARTOO_CLAIM_CHANNEL));
		created = SPI_getbinval(t, d, PARTOO_CLAIM_CREATED_AT, &isnull);
		partoo_format_date(partoo_timestamptz_to_unix_us(DatumGetTimestampTz(created)), date);
		m.date = date;
		partoo_path_send(path, sizeof(path));
		if (partoo_build_send_body(&m, &body) != 0)
		{
			partoo_job_outcome(job, "rejected", true, 0, job->attempts, 0, 0,
						"the stored message is not valid and cannot be sent");
			return;
		}
	}

	job->req = partoo_http_request_new(a->base_url, path, a->api_key, &body);
	if (job->req == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	job->req->user = job;
}

