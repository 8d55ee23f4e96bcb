/*-------------------------------------------------------------------------
 *
 * api.h
 *		The API's answers: response parsing, failure classes, Retry-After
 *		and backoff (response.c).
 *
 * Part of the protocol core (src/core/): plain C99 on top of libc, cJSON
 * and libcrypto, never postgres.h, so that it is unit-tested and fuzzed
 * without a server.  Memory handed out comes from malloc() and is released
 * with the matching *_free() function; nothing throws, nothing keeps
 * global state.
 *
 * src/core/api.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_CORE_API_H
#define PARTOO_CORE_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parsed answer from the API */
typedef struct PartooApiResult
{
	long		http_status;	/* 0 when the transport failed */
	bool		body_is_json;
	bool		success;		/* 2xx and "status": "success" */
	bool		has_message_id;
	int64_t		message_id;
	char	   *error_text;		/* malloc'd one-line summary of an "errors"
								 * or "error" object, e.g.
								 * "authentication: User not authenticated";
								 * NULL if the body has none */
} PartooApiResult;

/*
 * Parse a response body of any size and content (it may be empty, not
 * JSON, or hostile).  Never fails; out is always initialised.  Free with
 * partoo_api_result_free().
 */
extern void partoo_parse_api_response(long http_status, const char *body,
									  size_t len, PartooApiResult *out);
extern void partoo_api_result_free(PartooApiResult *r);

/* How the outbox treats an outcome (DESIGN.md section 5) */
typedef enum PartooFailureClass
{
	PARTOO_FC_OK,				/* 2xx */
	PARTOO_FC_RETRYABLE,		/* transport failure (status 0), timeout,
								 * 408, 5xx, and any status not listed */
	PARTOO_FC_RATE_LIMITED,		/* 429 */
	PARTOO_FC_REJECTED			/* 400, 401, 403, 404, 409, 410, 413, 415,
								 * 422: retrying cannot fix it */
} PartooFailureClass;

extern PartooFailureClass partoo_classify_status(long http_status);

/*
 * Parse a Retry-After header value: delta-seconds or an IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT") relative to now_unix.  Returns seconds
 * to wait (>= 0, capped at 86400), or -1 when the value is unusable.
 */
extern long partoo_parse_retry_after(const char *value, int64_t now_unix);

/*
 * Exponential backoff with full jitter: a delay uniformly drawn from
 * [0, min(max_ms, base_ms * 2^(attempt-1))], using random as the source
 * (any 64-bit value).  attempt >= 1.  Never overflows.
 */
extern int64_t partoo_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms,
								 uint64_t random);

#endif							/* PARTOO_CORE_API_H */
