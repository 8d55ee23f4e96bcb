/*-------------------------------------------------------------------------
 *
 * http.c
 *		partoo-webhookd's HTTP(S) side: the routes, the body limit, and the
 *		answers (libmicrohttpd, one thread per connection).
 *
 *   POST /partoo     a Partoo webhook; X-Partoo-Signature-v1 is its signature
 *   POST /dispatch   a dispatch status webhook; X-API-Key is its key
 *   GET  /healthz    200 when a database connection works, 503 otherwise
 *   GET  /metrics    Prometheus text format (metrics.c)
 *
 * A webhook's body is read into memory up to the limit (whd_max_body):
 * a Content-Length over it is answered 413 before any of the body is
 * read, and a chunked body that grows over it closes the connection.
 * The thread then hands the body to the batcher and sleeps until it is
 * ingested (batch.c): a 200 is only sent once the event is committed.
 * Slow clients only hold their own thread, for at most the connection
 * timeout between two reads; --max-connections bounds the threads.
 *
 * Nothing of a body, a signature or a key is ever logged.
 *
 * src/webhookd/http.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "webhookd.h"

/* What a POST collects between the calls of the access handler */
typedef struct Request
{
	WhdRoute	route;
	char	   *body;			/* NUL-terminated */
	size_t		len;
	size_t		cap;
	bool		in_flight;		/* counted in in_flight */
} Request;

/* requests whose body is complete and whose answer is not sent yet */
static atomic_int in_flight;

static WhdRoute
route_of(const char *url)
{
	if (strcmp(url, "/partoo") == 0)
		return WHD_ROUTE_PARTOO;
	if (strcmp(url, "/dispatch") == 0)
		return WHD_ROUTE_DISPATCH;
	if (strcmp(url, "/healthz") == 0)
		return WHD_ROUTE_HEALTHZ;
	if (strcmp(url, "/metrics") == 0)
		return WHD_ROUTE_METRICS;
	return WHD_ROUTE_OTHER;
}

/*
 * Queue an answer (body copied) and count it.  allow, when not NULL, is
 * the Allow header of a 405.
 */
static enum MHD_Result
reply(struct MHD_Connection *c, WhdRoute route, unsigned status,
	  const char *body, const char *content_type, const char *allow)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(strlen(body), (void *) body,
										   MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (allow != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
	ret = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	whd_metrics_request(route, status);
	return ret;
}

static enum MHD_Result
reply_json(struct MHD_Connection *c, WhdRoute route, unsigned status,
		   const char *body)
{
	return reply(c, route, status, body, "application/json", NULL);
}

static enum MHD_Result
healthz(struct MHD_Connection *c)
{
	WhdItem		item;

	memset(&item, 0, sizeof(item));
	item.kind = WHD_PING;
	whd_submit(&item);
	if (item.http_status == 200)
		return reply_json(c, WHD_ROUTE_HEALTHZ, 200, "{\"status\":\"ok\"}\n");
	return reply_json(c, WHD_ROUTE_HEALTHZ, 503,
					  "{\"status\":\"database unavailable\"}\n");
}

static enum MHD_Result
metrics(struct MHD_Connection *c)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	size_t		len = 0;
	char	   *text = whd_metrics_render(&len);

	if (text == NULL)
		return reply(c, WHD_ROUTE_METRICS, 500, "out of memory\n", "text/plain", NULL);
	/* counted before rendering would be nicer; counted before sending is enough */
	whd_metrics_request(WHD_ROUTE_METRICS, 200);
	resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (resp == NULL)
	{
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
							"text/plain; version=0.0.4; charset=utf-8");
	ret = MHD_queue_response(c, 200, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Add data to the request's body; false when over the limit or out of memory */
static bool
append_body(Request *r, const char *data, size_t size, size_t limit)
{
	if (size > limit || r->len > limit - size)
		return false;
	if (r->len + size + 1 > r->cap)
	{
		size_t		cap = r->cap ? r->cap : 4096;
		char	   *p;

		while (cap < r->len + size + 1)
			cap *= 2;
		if (cap > limit + 1)
			cap = limit + 1;
		p = realloc(r->body, cap);
		if (p == NULL)
			return false;
		r->body = p;
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, size);
	r->len += size;
	r->body[r->len] = '\0';
	return true;
}

/* The complete body of a POST: ingest it and answer */
static enum MHD_Result
ingest(struct MHD_Connection *c, Request *r)
{
	WhdItem		item;
	char		answer[128];
	const char *header = r->route == WHD_ROUTE_PARTOO ?
	"X-Partoo-Signature-v1" : "X-API-Key";

	if (r->len == 0)
		return reply_json(c, r->route, 400, "{\"error\":\"empty body\"}\n");
	/* a text value cannot hold NUL: no JSON body has one */
	if (memchr(r->body, '\0', r->len) != NULL)
		return reply_json(c, r->route, 400, "{\"error\":\"malformed body\"}\n");

	memset(&item, 0, sizeof(item));
	item.kind = WHD_INGEST;
	item.body = r->body;
	item.len = r->len;
	item.signature = MHD_lookup_connection_value(c, MHD_HEADER_KIND, header);
	r->in_flight = true;
	atomic_fetch_add(&in_flight, 1);
	whd_submit(&item);

	switch (item.http_status)
	{
		case 200:
			snprintf(answer, sizeof(answer), "{\"outcome\":\"%s\"}\n", item.outcome);
			break;
		case 400:
			snprintf(answer, sizeof(answer),
					 "{\"error\":\"malformed webhook body\",\"sqlstate\":\"%s\"}\n",
					 item.sqlstate);
			break;
		case 401:
			snprintf(answer, sizeof(answer),
					 "{\"error\":\"%s missing or invalid\",\"sqlstate\":\"%s\"}\n",
					 r->route == WHD_ROUTE_PARTOO ? "signature" : "API key",
					 item.sqlstate);
			break;
		case 413:
			snprintf(answer, sizeof(answer),
					 "{\"error\":\"body too large\",\"sqlstate\":\"%s\"}\n", item.sqlstate);
			break;
		default:
			if (item.sqlstate[0])
				snprintf(answer, sizeof(answer),
						 "{\"error\":\"unavailable\",\"sqlstate\":\"%s\"}\n", item.sqlstate);
			else
				snprintf(answer, sizeof(answer), "{\"error\":\"database unavailable\"}\n");
			break;
	}
	return reply_json(c, r->route, item.http_status, answer);
}

/*
 * libmicrohttpd's access handler: called once when the headers are in
 * (*req_cls NULL), then for each piece of the body, then once more with
 * *upload_data_size 0.
 */
static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url,
	   const char *method, const char *version, const char *upload_data,
	   size_t *upload_data_size, void **req_cls)
{
	Request    *r = *req_cls;

	if (r == NULL)
	{
		WhdRoute	route = route_of(url);
		bool		get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
		const char *cl;

		switch (route)
		{
			case WHD_ROUTE_OTHER:
				return reply_json(c, route, 404, "{\"error\":\"not found\"}\n");
			case WHD_ROUTE_HEALTHZ:
			case WHD_ROUTE_METRICS:
				if (!get)
					return reply(c, route, 405, "{\"error\":\"method not allowed\"}\n",
								 "application/json", "GET, HEAD");
				return route == WHD_ROUTE_HEALTHZ ? healthz(c) : metrics(c);
			default:
				if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
					return reply(c, route, 405, "{\"error\":\"method not allowed\"}\n",
								 "application/json", "POST");
				break;
		}

		cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
										 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl != NULL && strtoull(cl, NULL, 10) > whd_max_body())
			return reply_json(c, route, 413, "{\"error\":\"body too large\"}\n");

		r = calloc(1, sizeof(Request));
		if (r == NULL)
			return MHD_NO;
		r->route = route;
		*req_cls = r;
		return MHD_YES;
	}

	if (*upload_data_size > 0)
	{
		/*
		 * Only a chunked body can get here over the limit (a Content-Length
		 * over it was answered above): no answer can be queued in the
		 * middle of a body, so the connection is closed.
		 */
		if (!append_body(r, upload_data, *upload_data_size, whd_max_body()))
			return MHD_NO;
		*upload_data_size = 0;
		return MHD_YES;
	}
	return ingest(c, r);
}

static void
completed(void *cls, struct MHD_Connection *c, void **req_cls,
		  enum MHD_RequestTerminationCode toe)
{
	Request    *r = *req_cls;

	if (r == NULL)
		return;
	if (r->in_flight)
		atomic_fetch_sub(&in_flight, 1);
	free(r->body);
	free(r);
	*req_cls = NULL;
}

/*
 * Listen on addr, with TLS when tls_cert and tls_key (PEM, in memory) are
 * given.  NULL when that fails.
 */
struct MHD_Daemon *
whd_http_start(const WhdConfig *config, const struct sockaddr *addr,
			   const char *tls_cert, const char *tls_key)
{
	unsigned int flags = MHD_USE_THREAD_PER_CONNECTION |
	MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC;
	struct MHD_OptionItem opts[8];
	int			k = 0;

	if (addr->sa_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	if (tls_cert != NULL)
	{
		flags |= MHD_USE_TLS;
		opts[k++] = (struct MHD_OptionItem)
		{
			MHD_OPTION_HTTPS_MEM_CERT, 0, (void *) tls_cert
		};
		opts[k++] = (struct MHD_OptionItem)
		{
			MHD_OPTION_HTTPS_MEM_KEY, 0, (void *) tls_key
		};
	}
	opts[k++] = (struct MHD_OptionItem)
	{
		MHD_OPTION_END, 0, NULL
	};

	return MHD_start_daemon(flags, 0, NULL, NULL, handle, NULL,
							MHD_OPTION_SOCK_ADDR, addr,
							MHD_OPTION_CONNECTION_LIMIT, config->max_connections,
							MHD_OPTION_CONNECTION_TIMEOUT, config->connection_timeout,
							MHD_OPTION_THREAD_STACK_SIZE, (size_t) (512 * 1024),
							MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
							MHD_OPTION_ARRAY, opts,
							MHD_OPTION_END);
}

/*
 * Stop accepting connections, let the requests whose body is in get their
 * answer (for up to 30 s), then close every connection.
 */
void
whd_http_stop(struct MHD_Daemon *d)
{
	MHD_socket	fd = MHD_quiesce_daemon(d);
	int			i;

	for (i = 0; i < 3000 && atomic_load(&in_flight) > 0; i++)
		usleep(10 * 1000);
	MHD_stop_daemon(d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
}
