/*-------------------------------------------------------------------------
 *
 * http.h
 *		The HTTP client: libcurl's multi interface driven from a
 *		PostgreSQL wait event set, so that every wait honours query cancel,
 *		SIGTERM and the latch.
 *
 * Knows requests and bodies (core/message.h), not messages, tables or
 * accounts.  The .c file that includes this has included postgres.h.
 *
 * src/http/http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_HTTP_H
#define PARTOO_HTTP_H

#include "core/message.h"

/*
 * The extension's version: EXTVERSION in the Makefile, the one place it is
 * written, passed as -DPARTOO_VERSION.
 */
#ifndef PARTOO_VERSION
#error "PARTOO_VERSION is not defined: build with the Makefile, which sets it from EXTVERSION"
#endif
#define PARTOO_USER_AGENT "partoo-pg/" PARTOO_VERSION

/* Largest response body we keep; larger ones fail the request */
#define PARTOO_MAX_RESPONSE_BYTES (1024 * 1024)

/* The settings of the HTTP client (partoo.ca_file, partoo.timeout, partoo.connect_timeout) */
extern char *partoo_ca_file;
extern int	partoo_timeout_ms;
extern int	partoo_connect_timeout_ms;

extern void partoo_http_define_gucs(void);

/*
 * One HTTP request and, once done, its outcome.  Allocated with malloc()
 * (libcurl's world, outside any memory context) so that it can outlive a
 * transaction in the worker; the caller owns it and frees it with
 * partoo_http_request_free(), also on error paths.
 */
typedef struct PartooHttpRequest
{
	/* set up by partoo_http_request_new() */
	char	   *url;
	PartooBody	body;
	char	   *auth_header;	/* "x-APIKey: ..."; wiped before free */
	void	   *user;			/* the caller's cookie */
	bool		is_get;			/* GET (no body) instead of POST */

	/* outcome, valid once done is true */
	bool		done;
	long		status;			/* HTTP status, 0 when the transport failed */
	int			curl_code;		/* CURLcode */
	bool		timed_out;
	bool		connect_failed;
	bool		too_large;		/* response exceeded the limit */
	char		errbuf[256];	/* libcurl's error text, never the key */
	char	   *resp;			/* response body, NUL-terminated */
	size_t		resp_len;
	size_t		resp_cap;
	char		retry_after[64];	/* raw Retry-After header value */
	int64		elapsed_us;		/* from start to done, libcurl's clock */

	/* private to http.c */
	void	   *easy;
	int			agent;			/* the multi handle it is attached to */
	int			origin;			/* its host in http.c's table, or -1 */
	bool		probe;			/* the first request to a new host */
	bool		waiting;		/* attached to nothing until the probe ends */
	uint32		easy_generation;	/* of the handle's fixed options */
	void	   *headers;
	int			timeout_ms;
	int			connect_timeout_ms;
	int64		deadline_us;	/* on http.c's attended clock */
	int64		connect_deadline_us;
	struct PartooHttpRequest *next; /* in the done list */
	struct PartooHttpRequest *run_prev; /* in the running list */
	struct PartooHttpRequest *run_next;
} PartooHttpRequest;

/* wake-up reasons returned by partoo_http_wait() */
#define PARTOO_WAKE_LATCH	0x01
#define PARTOO_WAKE_IO		0x02
#define PARTOO_WAKE_TIMEOUT 0x04

extern PartooHttpRequest *partoo_http_request_new(const char *base_url,
												  const char *path,
												  const char *api_key,
												  PartooBody *body);
extern PartooHttpRequest *partoo_http_request_new_get(const char *base_url,
													  const char *path,
													  const char *api_key);
extern void partoo_http_request_free(PartooHttpRequest *req);
extern void partoo_http_start(PartooHttpRequest *req, int timeout_ms,
							  int connect_timeout_ms);
extern void partoo_http_abort(PartooHttpRequest *req);
extern int	partoo_http_wait(long timeout_ms);
extern PartooHttpRequest *partoo_http_next_done(void);
extern void partoo_http_perform(PartooHttpRequest *req);
extern int64 partoo_monotonic_us(void);
/* Idle connections kept open for reuse (at least 64) */
extern void partoo_http_set_max_connections(long n);

#endif							/* PARTOO_HTTP_H */
