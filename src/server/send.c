/*-------------------------------------------------------------------------
 *
 * send.c
 *		partoo_send() and partoo_retry(): synchronous calls to the API.
 *
 * Both run the request in the calling backend, inside the caller's
 * transaction, through the same HTTP client as the worker.  The request is
 * made first and recorded only when it succeeded, so a failure leaves no
 * trace but the error.  NB: the message is sent whatever the caller's
 * transaction does afterwards; partoo_enqueue() is the transactional path.
 *
 * HTTP outcomes that are not success become errors here, with the SQLSTATE
 * mapping documented in README.md (partoo_report_http_failure).
 *
 * src/server/send.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "core/message.h"
#include "core/api.h"
#include "http/http.h"
#include "server/message.h"
#include "server/store.h"
#include "server/batch.h"
#include "server/send.h"

PG_FUNCTION_INFO_V1(partoo_send);
PG_FUNCTION_INFO_V1(partoo_retry);

/* What the API said, safe to print: its error summary or the raw body */
static char *
response_summary(PartooHttpRequest *req, const PartooApiResult *res)
{
	if (res != NULL && res->error_text != NULL)
		return partoo_printable(res->error_text, strlen(res->error_text), 512);
	if (req->resp_len == 0)
		return pstrdup("(empty body)");
	return partoo_printable(req->resp, req->resp_len, 512);
}

/*
 * Raise the error for a request that did not succeed.  path names the
 * endpoint in the detail.  Never returns.  Neither the URL's credentials
 * nor the API key can appear: the key only travels in a header, and only
 * the path is printed.
 */
void
partoo_report_http_failure(PartooHttpRequest *req, const PartooApiResult *res,
						   const char *path)
{
	long		status = req->status;
	char	   *summary;

	if (req->too_large)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("response from Partoo API exceeds %d bytes",
						PARTOO_MAX_RESPONSE_BYTES),
				 errdetail("POST %s answered HTTP %ld with a body larger than the limit.",
						   path, status)));

	if (status == 0)
	{
		char	   *why = partoo_printable(req->errbuf, strlen(req->errbuf), 256);

		if (req->connect_failed)
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("could not connect to Partoo API"),
					 errdetail("POST %s failed: %s.", path, why),
					 errhint("Check partoo.base_url (or the account's base_url) and the network.")));
		if (req->timed_out)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("request to Partoo API timed out"),
					 errdetail("POST %s got no complete answer within partoo.timeout (%d ms).",
							   path, partoo_timeout_ms),
					 errhint("The message may have been created anyway. partoo_enqueue retries automatically.")));
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not complete request to Partoo API"),
				 errdetail("POST %s failed: %s.", path, why)));
	}

	summary = response_summary(req, res);

	switch (status)
	{
		case 400:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("request rejected by Partoo API as invalid"),
					 errdetail("POST %s answered HTTP 400, saying \"%s\".", path, summary)));
			break;
		case 401:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("authentication with Partoo API failed"),
					 errdetail("POST %s answered HTTP 401, saying \"%s\".", path, summary),
					 errhint("Check partoo.api_key, or the api_key of the account in partoo.accounts.")));
			break;
		case 403:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("operation not allowed by Partoo API"),
					 errdetail("POST %s answered HTTP 403, saying \"%s\".", path, summary),
					 errhint("The user owning the API key may not act in this conversation.")));
			break;
		case 404:
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("conversation or message not found by Partoo API"),
					 errdetail("POST %s answered HTTP 404, saying \"%s\".", path, summary)));
			break;
		case 415:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("media type not supported by Partoo API"),
					 errdetail("POST %s answered HTTP 415, saying \"%s\".", path, summary)));
			break;
		case 429:
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("rate limit of Partoo API exceeded"),
					 errdetail("POST %s answered HTTP 429 with Retry-After: %s, saying \"%s\".",
							   path, req->retry_after[0] ? req->retry_after : "(none)",
							   summary),
					 errhint("Partoo allows 300 requests per minute per organisation by default; partoo_enqueue paces requests for you.")));
			break;
		default:
			break;
	}

	if (status >= 500)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("server error from Partoo API"),
				 errdetail("POST %s answered HTTP %ld, saying \"%s\".", path, status, summary),
				 errhint("This is usually temporary; partoo_enqueue retries automatically.")));
	if (status >= 400)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("request rejected by Partoo API"),
				 errdetail("POST %s answered HTTP %ld, saying \"%s\".", path, status, summary)));
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("unexpected response from Partoo API"),
			 errdetail("POST %s answered HTTP %ld, saying \"%s\".", path, status, summary)));
}

/*
 * Run a POST to an account's API synchronously and parse its answer into
 * *res (malloc'd parts, owned by the caller).  Raises the mapped error for
 * anything but a 2xx.  The request is freed on every path.
 */
static void
post_sync(PartooAccount *acct, const char *path, PartooBody *body,
		  PartooApiResult *res)
{
	PartooHttpRequest *volatile req;

	req = partoo_http_request_new(acct->base_url, path, acct->api_key, body);
	if (req == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	PG_TRY();
	{
		partoo_http_perform(req);
		partoo_parse_api_response(req->status, req->resp, req->resp_len, res);
		if (req->too_large || partoo_classify_status(req->status) != PARTOO_FC_OK)
			partoo_report_http_failure(req, res, path);
	}
	PG_FINALLY();
	{
		partoo_http_request_free(req);
	}
	PG_END_TRY();
}

/*
 * partoo_send(conversation_id bigint, content text, content_type text,
 *			   url text, image bytea, filename text, channel text,
 *			   account text, metadata jsonb) RETURNS bigint
 *
 * Validate, POST /messages now, record the message; returns Partoo's id.
 */
Datum
partoo_send(PG_FUNCTION_ARGS)
{
	PartooMessageInput in;
	PartooAccount *acct;
	PartooBody	body;
	PartooApiResult res;
	char		path[64];
	volatile int64 partoo_id = 0;

	partoo_message_from_args(fcinfo, 8, &in);

	partoo_message_prepare(&in);
	acct = partoo_store_get_account(in.account);

	if (partoo_build_send_body(&in.msg, &body) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Could not build the request body.")));

	memset(&res, 0, sizeof(res));
	partoo_path_send(path, sizeof(path));
	PG_TRY();
	{
		post_sync(acct, path, &body, &res);
		if (!res.success || !res.has_message_id)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("unexpected response from Partoo API"),
					 errdetail("POST %s answered HTTP %ld without a message_id.",
							   path, res.http_status),
					 errhint("The message may have been created; check the conversation before sending again.")));
		partoo_id = res.message_id;
	}
	PG_FINALLY();
	{
		partoo_api_result_free(&res);
	}
	PG_END_TRY();

	/*
	 * Record it: buffered with partoo_enqueue's calls and written with the
	 * next ones (batch.c), at the latest before anything can read the
	 * table; at once where the buffer cannot be used.
	 */
	if (partoo_batch_usable())
		partoo_batch_add_sent(&in, partoo_id, 200);
	else
		(void) partoo_store_sent_message(&in, partoo_id, 200);
	PG_RETURN_INT64(partoo_id);
}

/*
 * partoo_retry(message_id bigint) RETURNS boolean
 *
 * POST /messages/{message_id}/retry now, with the account the message was
 * sent with when it is recorded here (the default account otherwise).
 * Returns true when the API answered {"status": "success"}, false for a
 * 2xx without it; errors otherwise.  Updates the recorded message.
 */
Datum
partoo_retry(PG_FUNCTION_ARGS)
{
	int64		message_id;
	char	   *account;
	bool		found;
	PartooAccount *acct;
	PartooApiResult res;
	char		path[64];
	volatile bool ok = false;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("message_id must not be null"),
				 errhint("Pass Partoo's message_id, as returned by partoo_send or recorded in partoo.messages.partoo_id.")));
	message_id = PG_GETARG_INT64(0);
	if (message_id <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("message_id must be positive"),
				 errdetail("Partoo's message ids are positive; %lld was given.", (long long) message_id)));

	account = partoo_store_account_of(message_id, &found);
	acct = partoo_store_get_account(account);
	partoo_path_retry(message_id, path, sizeof(path));

	memset(&res, 0, sizeof(res));
	PG_TRY();
	{
		post_sync(acct, path, NULL, &res);
		ok = res.success;
	}
	PG_FINALLY();
	{
		partoo_api_result_free(&res);
	}
	PG_END_TRY();

	if (ok && found)
		partoo_store_retried(message_id);
	PG_RETURN_BOOL(ok);
}
