/*-------------------------------------------------------------------------
 *
 * http.c
 *		The HTTP client: libcurl easy handles driven by a process's multi
 *		handles, waited on together with the process latch.
 *
 * This is the only file that includes curl.  Both the synchronous SQL
 * functions and the background worker go through it, so that timeouts,
 * TLS, the User-Agent, response limits and connection reuse are the same
 * everywhere.
 *
 * How waiting works: libcurl tells us (socket callback) which sockets it
 * cares about; we keep them in a private epoll set.  That epoll descriptor
 * is itself readable whenever one of its sockets is ready, so a single
 * PostgreSQL WaitEventSet holding the latch, the epoll descriptor and
 * postmaster death wakes us for network progress, for a query cancel (the
 * signal handler sets the latch), and for new work in the worker, without
 * any polling interval.
 *
 * Ownership: the multi handles, the epoll descriptor and the wait set are
 * process-local statics created on first use and kept for the life of the
 * process, so connections stay alive between calls.  Easy handles are
 * kept too, in a small pool: a finished transfer's handle serves the next
 * request with only the per-request options set again (making and
 * configuring a handle per request showed in partoo_send's profile).  A
 * PartooHttpRequest
 * and everything hanging off it is malloc'd and belongs to the caller, who
 * must free it with partoo_http_request_free() on every path; freeing a
 * request in flight detaches it from the multi handle first.  Nothing in
 * this file ereports between acquiring a libcurl resource and attaching it
 * to its request.
 *
 * Timeouts are ours, not libcurl's, and run on the time this process
 * spends in partoo_http_wait() (attended_us), not on the wall clock.  NB:
 * libcurl checks a transfer's total timeout before it reads the socket,
 * so a process that comes back after being busy elsewhere for longer than
 * the timeout (the worker in a slow transaction) would find requests that
 * got their answer meanwhile timed out, and the worker would send them
 * again.  Here the answers that arrived are read first, and the time the
 * process was away does not count: a request times out only after
 * partoo.timeout of waiting for it.
 *
 * src/http/http.c
 *
 *-------------------------------------------------------------------------
 */

#include "postgres.h"
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "core/message.h"
#include "http/http.h"
#include "server/compat.h"	/* the one server header: PostgreSQL version shims */

char	   *partoo_ca_file = NULL;
int			partoo_timeout_ms = 10000;
int			partoo_connect_timeout_ms = 5000;

/*
 * Define partoo.ca_file, partoo.timeout and partoo.connect_timeout.
 * Called once from _PG_init (partoo.c).
 */
void
partoo_http_define_gucs(void)
{
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
}

/*
 * Two multi handles, each with its own connections: AGENT_PLAIN for hosts
 * not known to speak HTTP/2, AGENT_H2 for those whose last answer came
 * over HTTP/2.  libcurl (7.88, at least) waits for a connection whose
 * protocol is not known yet before opening another (CURLOPT_PIPEWAIT), but
 * once a host is known to multiplex, every request that finds that host's
 * connections full of streams opens a connection of its own: a window of
 * 761 requests opened 652 TLS connections to nginx, each used once.  So the
 * HTTP/2 handle limits the connections per host to what the largest window
 * needs at H2_STREAMS_ASSUMED streams each (servers allow 100 to 256,
 * nginx 128), and libcurl queues the requests beyond them onto the streams
 * that free up.  The limit is per multi handle, which is why HTTP/1.x hosts,
 * where each request in flight needs a connection, have a handle of their
 * own.  A host moves to AGENT_H2 at an answer over HTTP/2 (the connection
 * that answer came over is not carried over: one extra), and back at an
 * answer over HTTP/1.x.
 *
 * Until a host has answered, its protocol is not known, and the same
 * burst of connections would happen on the plain handle when a large
 * window is started at once towards a host that turns out to speak
 * HTTP/2 (a new account's, with the window already sized for others).  So
 * one request goes first (the probe) and the others to that host wait,
 * attached to no handle, until its answer says which handle they go to, or
 * until it ends without one (then they all go to the plain handle, as they
 * would have).  They wait on their connect deadline like any request still
 * connecting.
 */
#define AGENT_PLAIN 0
#define AGENT_H2 1
#define N_AGENTS 2
#define H2_STREAMS_ASSUMED 32
#define MAX_ORIGINS 32
static CURLM *multis[N_AGENTS];
static int64 curl_deadline_us[N_AGENTS] = {-1, -1};	/* libcurl's timers */
static long max_connections = 1024;	/* CURLMOPT_MAXCONNECTS */
typedef enum
{
	PROTO_UNKNOWN = 0,
	PROTO_HTTP1,
	PROTO_HTTP2
} OriginProto;
typedef struct
{
	char	   *name;			/* "scheme://authority", malloc'd */
	OriginProto proto;			/* of its last answer */
	bool		probing;		/* a request to it is out, the others wait */
} Origin;
static Origin origins[MAX_ORIGINS];
static int	n_origins = 0;

/*
 * Keep up to max_connections idle connections on each handle, and let the
 * HTTP/2 one open at most what max_connections requests need per host.
 */
static void
set_connection_limits(void)
{
	int			agent;

	for (agent = 0; agent < N_AGENTS; agent++)
		if (multis[agent] != NULL)
			curl_multi_setopt(multis[agent], CURLMOPT_MAXCONNECTS, max_connections);
	if (multis[AGENT_H2] != NULL)
		curl_multi_setopt(multis[AGENT_H2], CURLMOPT_MAX_HOST_CONNECTIONS,
						  (max_connections + H2_STREAMS_ASSUMED - 1) / H2_STREAMS_ASSUMED + 1);
}
static int	epoll_fd = -1;
static WaitEventSet *wait_set = NULL;
static PartooHttpRequest *done_head = NULL;
static PartooHttpRequest *done_tail = NULL;

/* Requests attached to libcurl, and the clock of their deadlines */
static PartooHttpRequest *running = NULL;
static int64 attended_us = 0;	/* time spent in partoo_http_wait() */
static int64 next_deadline_us = -1; /* earliest deadline there, or -1 */

/*
 * Idle easy handles.  A handle's fixed options depend on partoo.ca_file;
 * when that changes, the generation moves on and handles made before are
 * not reused.
 */
#define EASY_POOL_SIZE 64
static CURL *easy_pool[EASY_POOL_SIZE];
static int	easy_pool_len = 0;
static uint32 easy_generation = 0;
static char *easy_ca_file = NULL;	/* partoo.ca_file the generation has */

int64
partoo_monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * libcurl's socket callback: mirror its interest in our epoll set.  A
 * descriptor may already be registered (MOD) or not (ADD); REMOVE is sent
 * before libcurl closes a socket.
 */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		epoll_ctl(epoll_fd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}

	memset(&ev, 0, sizeof(ev));
	/* the socket, and in the high half the multi handle it belongs to */
	ev.data.u64 = ((uint64) (uintptr_t) userp << 32) | (uint32) s;
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		ev.events |= EPOLLIN;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		ev.events |= EPOLLOUT;

	/*
	 * socketp is what we assigned to the socket: non-NULL once it is in
	 * the set (libcurl forgets it with the REMOVE).  Whatever it says, a
	 * descriptor libcurl closed and reopened behind our back is handled
	 * by falling back to the other operation.
	 */
	if (socketp == NULL)
	{
		if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, s, &ev) != 0 &&
			(errno != EEXIST || epoll_ctl(epoll_fd, EPOLL_CTL_MOD, s, &ev) != 0))
			return -1;
		curl_multi_assign(multis[(uintptr_t) userp], s, &epoll_fd);
	}
	else if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, s, &ev) != 0 &&
			 (errno != ENOENT || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, s, &ev) != 0))
		return -1;
	return 0;
}

/* libcurl's timer callback: remember when it wants to be called back */
static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	uintptr_t	agent = (uintptr_t) userp;

	if (timeout_ms < 0)
		curl_deadline_us[agent] = -1;
	else
		curl_deadline_us[agent] = partoo_monotonic_us() + (int64) timeout_ms * 1000;
	return 0;
}

/*
 * Create the process's multi handles, epoll set and wait set on first use.
 * Can ereport; on error nothing is left half made.
 */
static void
ensure_agent(void)
{
	uintptr_t	agent;

	if (multis[N_AGENTS - 1] != NULL)
		return;

	if (epoll_fd < 0)
	{
		epoll_fd = epoll_create1(EPOLL_CLOEXEC);
		if (epoll_fd < 0)
			ereport(ERROR,
					(errcode_for_socket_access(),
					 errmsg("could not create epoll descriptor: %m")));
	}

	if (wait_set == NULL)
	{
		WaitEventSet *set = PartooCreateWaitEventSet(3);

		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_SOCKET_READABLE, epoll_fd, NULL, NULL);
		if (IsUnderPostmaster)
			AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET,
							  NULL, NULL);
		wait_set = set;
	}

	for (agent = 0; agent < N_AGENTS; agent++)
	{
		CURLM	   *m;

		if (multis[agent] != NULL)
			continue;
		m = curl_multi_init();
		if (m == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("Could not create a libcurl multi handle.")));
		curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, socket_cb);
		curl_multi_setopt(m, CURLMOPT_SOCKETDATA, (void *) agent);
		curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, timer_cb);
		curl_multi_setopt(m, CURLMOPT_TIMERDATA, (void *) agent);
		curl_multi_setopt(m, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
		multis[agent] = m;
	}
	set_connection_limits();
}

/*
 * Keep up to n idle connections open for reuse: as many as the worker may
 * have requests in flight, so that a full window never closes a
 * connection only to open (and, over TLS, handshake) another.
 */
void
partoo_http_set_max_connections(long n)
{
	max_connections = Max(n, 64);
	set_connection_limits();
}

/*
 * The origin of a URL, "scheme://authority", into buf; false when it does
 * not fit or the URL has no "://".
 */
static bool
url_origin(const char *url, char *buf, size_t size)
{
	const char *p = strstr(url, "://");
	size_t		len;

	if (p == NULL)
		return false;
	p += 3;
	len = (p - url) + strcspn(p, "/?#");
	if (len >= size)
		return false;
	memcpy(buf, url, len);
	buf[len] = '\0';
	return true;
}

/*
 * The index of url's origin in origins, added if new; -1 when it cannot be
 * told or remembered (more than MAX_ORIGINS, out of memory): such a host
 * is served by the plain handle, without a probe.
 */
static int
origin_of(const char *url)
{
	char		name[512];
	int			i;

	if (!url_origin(url, name, sizeof(name)))
		return -1;
	for (i = 0; i < n_origins; i++)
		if (strcmp(origins[i].name, name) == 0)
			return i;
	if (n_origins == MAX_ORIGINS || (origins[n_origins].name = strdup(name)) == NULL)
		return -1;
	origins[n_origins].proto = PROTO_UNKNOWN;
	origins[n_origins].probing = false;
	return n_origins++;
}

/* Attach a request to the multi handle its origin says; false on failure */
static bool
attach(PartooHttpRequest *req)
{
	req->agent = (req->origin >= 0 && origins[req->origin].proto == PROTO_HTTP2) ?
		AGENT_H2 : AGENT_PLAIN;
	req->waiting = false;
	return curl_multi_add_handle(multis[req->agent], (CURL *) req->easy) == CURLM_OK;
}

/* Free a request's header list, once libcurl no longer holds it */
static void
drop_headers(PartooHttpRequest *req)
{
	if (req->headers != NULL)
	{
		curl_slist_free_all((struct curl_slist *) req->headers);
		req->headers = NULL;
	}
}

static void fail_early(PartooHttpRequest *req, CURLcode code);
static void unlink_running(PartooHttpRequest *req);

/*
 * The probe to origin o has ended (answered, failed, timed out or
 * aborted): attach the requests that waited for it.  Does not ereport.
 * NB: may unlink requests from the running list.
 */
static void
release_origin(int o)
{
	PartooHttpRequest *req;
	PartooHttpRequest *next;

	origins[o].probing = false;
	for (req = running; req != NULL; req = next)
	{
		next = req->run_next;
		if (!req->waiting || req->origin != o)
			continue;
		if (!attach(req))
		{
			curl_easy_cleanup((CURL *) req->easy);
			req->easy = NULL;
			unlink_running(req);
			drop_headers(req);
			fail_early(req, CURLE_FAILED_INIT);
		}
	}
}

/* Call when a request ends in any way: what its probe held back goes */
static void
probe_ended(PartooHttpRequest *req)
{
	if (!req->probe)
		return;
	req->probe = false;
	release_origin(req->origin);
}

/* What the protocol of an answer says of its host (see AGENT_H2) */
static void
note_protocol(PartooHttpRequest *req, CURL *easy)
{
#if LIBCURL_VERSION_NUM >= 0x073200
	long		version = 0;

	if (req->origin < 0 ||
		curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version) != CURLE_OK ||
		version == 0)
		return;
	origins[req->origin].proto =
		(version == CURL_HTTP_VERSION_1_0 || version == CURL_HTTP_VERSION_1_1) ?
		PROTO_HTTP1 : PROTO_HTTP2;
#else
	/* without CURLINFO_HTTP_VERSION: everything on the plain handle */
	if (req->origin >= 0)
		origins[req->origin].proto = PROTO_HTTP1;
#endif
}

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	PartooHttpRequest *req = (PartooHttpRequest *) userdata;
	size_t		n = size * nmemb;

	if (req->resp_len + n > PARTOO_MAX_RESPONSE_BYTES)
	{
		req->too_large = true;
		return 0;				/* makes libcurl fail with CURLE_WRITE_ERROR */
	}
	if (req->resp_len + n + 1 > req->resp_cap)
	{
		size_t		cap = req->resp_cap ? req->resp_cap : 512;
		char	   *p;

		while (cap < req->resp_len + n + 1)
			cap *= 2;
		p = realloc(req->resp, cap);
		if (p == NULL)
			return 0;
		req->resp = p;
		req->resp_cap = cap;
	}
	memcpy(req->resp + req->resp_len, ptr, n);
	req->resp_len += n;
	req->resp[req->resp_len] = '\0';
	return n;
}

/* Keep the Retry-After header; every other header is ignored */
static size_t
header_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	PartooHttpRequest *req = (PartooHttpRequest *) userdata;
	size_t		n = size * nitems;
	static const char name[] = "retry-after:";

	if (n > sizeof(name) - 1 &&
		pg_strncasecmp(buffer, name, sizeof(name) - 1) == 0)
	{
		const char *v = buffer + sizeof(name) - 1;
		const char *end = buffer + n;
		size_t		len;

		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		while (end > v && (end[-1] == '\r' || end[-1] == '\n' ||
						   end[-1] == ' ' || end[-1] == '\t'))
			end--;
		len = Min((size_t) (end - v), sizeof(req->retry_after) - 1);
		memcpy(req->retry_after, v, len);
		req->retry_after[len] = '\0';
	}
	return n;
}

/*
 * A new easy handle with the options that are the same for every request,
 * or NULL when out of memory.
 */
static CURL *
new_easy(void)
{
	CURL	   *easy = curl_easy_init();

	if (easy == NULL)
		return NULL;
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, PARTOO_USER_AGENT);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (easy_ca_file != NULL)
		curl_easy_setopt(easy, CURLOPT_CAINFO, easy_ca_file);
	return easy;
}

/*
 * An easy handle for a new request: an idle one if its options are
 * current, else a new one.  NULL when out of memory.
 */
static CURL *
get_easy(uint32 *generation)
{
	const char *ca = (partoo_ca_file != NULL && partoo_ca_file[0] != '\0') ?
		partoo_ca_file : NULL;

	if ((ca == NULL) != (easy_ca_file == NULL) ||
		(ca != NULL && strcmp(ca, easy_ca_file) != 0))
	{
		char	   *copy = NULL;

		if (ca != NULL && (copy = strdup(ca)) == NULL)
			return NULL;
		free(easy_ca_file);
		easy_ca_file = copy;
		easy_generation++;
		while (easy_pool_len > 0)
			curl_easy_cleanup(easy_pool[--easy_pool_len]);
	}
	*generation = easy_generation;
	if (easy_pool_len > 0)
		return easy_pool[--easy_pool_len];
	return new_easy();
}

/*
 * Take a handle back from a request that is no longer attached to the
 * multi handle.  Pointers into the request are cleared, so that an idle
 * handle refers to nothing freed.  A handle of an old generation, or one
 * too many, is freed.
 */
static void
release_easy(CURL *easy, uint32 generation)
{
	if (generation != easy_generation || easy_pool_len == EASY_POOL_SIZE)
	{
		curl_easy_cleanup(easy);
		return;
	}
	curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, NULL);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, NULL);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
	easy_pool[easy_pool_len++] = easy;
}

/*
 * Make a request for POST {base_url}{path}.  The body is moved into the
 * request (the caller's struct is zeroed); NULL body means an empty POST.
 * Returns NULL when out of memory, having freed the body.  Does not
 * ereport.
 */
PartooHttpRequest *
partoo_http_request_new(const char *base_url, const char *path,
						const char *api_key, PartooBody *body)
{
	PartooHttpRequest *req;
	size_t		blen = strlen(base_url);
	static const char hdr[] = "x-APIKey: ";

	while (blen > 0 && base_url[blen - 1] == '/')
		blen--;

	req = calloc(1, sizeof(PartooHttpRequest));
	if (req == NULL)
		goto oom;
	req->url = malloc(blen + strlen(path) + 1);
	req->auth_header = malloc(sizeof(hdr) + strlen(api_key));
	if (req->url == NULL || req->auth_header == NULL)
		goto oom;
	memcpy(req->url, base_url, blen);
	strcpy(req->url + blen, path);
	strcpy(req->auth_header, hdr);
	strcat(req->auth_header, api_key);
	if (body != NULL)
	{
		req->body = *body;
		memset(body, 0, sizeof(PartooBody));
	}
	return req;

oom:
	if (body != NULL)
		partoo_body_free(body);
	partoo_http_request_free(req);
	return NULL;
}

/*
 * Make a request for GET {base_url}{path} (path holds the query string),
 * otherwise like partoo_http_request_new().
 */
PartooHttpRequest *
partoo_http_request_new_get(const char *base_url, const char *path,
							const char *api_key)
{
	PartooHttpRequest *req = partoo_http_request_new(base_url, path, api_key, NULL);

	if (req != NULL)
		req->is_get = true;
	return req;
}

static void
unlink_done(PartooHttpRequest *req)
{
	PartooHttpRequest *prev = NULL;
	PartooHttpRequest *cur;

	for (cur = done_head; cur != NULL; prev = cur, cur = cur->next)
	{
		if (cur != req)
			continue;
		if (prev)
			prev->next = cur->next;
		else
			done_head = cur->next;
		if (done_tail == cur)
			done_tail = prev;
		cur->next = NULL;
		return;
	}
}

static void
link_running(PartooHttpRequest *req)
{
	int64		first;

	req->run_prev = NULL;
	req->run_next = running;
	if (running != NULL)
		running->run_prev = req;
	running = req;
	first = Min(req->deadline_us, req->connect_deadline_us);
	if (next_deadline_us < 0 || first < next_deadline_us)
		next_deadline_us = first;
}

static void
unlink_running(PartooHttpRequest *req)
{
	if (req->run_prev != NULL)
		req->run_prev->run_next = req->run_next;
	else if (running == req)
		running = req->run_next;
	if (req->run_next != NULL)
		req->run_next->run_prev = req->run_prev;
	req->run_prev = req->run_next = NULL;
}

/* Detach a request from libcurl, if attached.  Safe to call twice. */
void
partoo_http_abort(PartooHttpRequest *req)
{
	if (req == NULL)
		return;
	if (req->easy != NULL)
	{
		/* NB: not back to the pool: it may be in the middle of a transfer */
		curl_multi_remove_handle(multis[req->agent], (CURL *) req->easy);
		curl_easy_cleanup((CURL *) req->easy);
		req->easy = NULL;
		req->waiting = false;
		unlink_running(req);
		probe_ended(req);
	}
	drop_headers(req);
}

/* Free a request in any state.  NULL is fine.  Does not ereport. */
void
partoo_http_request_free(PartooHttpRequest *req)
{
	if (req == NULL)
		return;
	partoo_http_abort(req);
	unlink_done(req);
	if (req->auth_header != NULL)
	{
		explicit_bzero(req->auth_header, strlen(req->auth_header));
		free(req->auth_header);
	}
	free(req->url);
	free(req->resp);
	partoo_body_free(&req->body);
	free(req);
}

static void
push_done(PartooHttpRequest *req)
{
	req->done = true;
	req->next = NULL;
	if (done_tail)
		done_tail->next = req;
	else
		done_head = req;
	done_tail = req;
}

static void
fail_early(PartooHttpRequest *req, CURLcode code)
{
	req->status = 0;
	req->curl_code = code;
	strlcpy(req->errbuf, curl_easy_strerror(code), sizeof(req->errbuf));
	push_done(req);
}

/*
 * Start a request.  It completes later, seen through partoo_http_wait()
 * and partoo_http_next_done(); a request that cannot even start is put on
 * the done list at once with its libcurl error.  Can ereport only before
 * touching the request (when the agent cannot be created).
 */
void
partoo_http_start(PartooHttpRequest *req, int timeout_ms, int connect_timeout_ms)
{
	CURL	   *easy;
	struct curl_slist *h = NULL;
	struct curl_slist *t;
	char		ctype[sizeof(req->body.content_type) + 16];

	ensure_agent();

	req->done = false;
	req->status = 0;
	req->curl_code = CURLE_OK;
	req->errbuf[0] = '\0';
	req->retry_after[0] = '\0';
	req->resp_len = 0;
	req->elapsed_us = 0;
	req->too_large = req->timed_out = req->connect_failed = false;
	req->probe = req->waiting = false;
	req->origin = -1;
	req->timeout_ms = timeout_ms;
	req->connect_timeout_ms = connect_timeout_ms;
	req->deadline_us = attended_us + (int64) timeout_ms * 1000;
	req->connect_deadline_us = attended_us + (int64) connect_timeout_ms * 1000;

	easy = get_easy(&req->easy_generation);
	if (easy == NULL)
	{
		fail_early(req, CURLE_OUT_OF_MEMORY);
		return;
	}
	req->easy = easy;

	if (req->body.content_type[0] != '\0')
		snprintf(ctype, sizeof(ctype), "Content-Type: %s", req->body.content_type);
	else
		strlcpy(ctype, "Content-Type:", sizeof(ctype));	/* no default */

#define APPEND(s) \
	do { t = curl_slist_append(h, (s)); if (t == NULL) goto oom; h = t; } while (0)
	APPEND(req->auth_header);
	APPEND(ctype);
	APPEND("Accept: application/json");
	APPEND("Expect:");			/* no 100-continue round trip for uploads */
#undef APPEND
	req->headers = h;

	/* the options that differ between requests (new_easy sets the rest) */
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	if (req->is_get)
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	else
	{
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body.data ? req->body.data : "");
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body.len);
	}
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h);
	/* our own deadlines (see the banner); libcurl keeps its defaults */
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 0L);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 0L);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);

	/* the first request to a host not answered yet goes alone (see above) */
	req->origin = origin_of(req->url);
	if (req->origin >= 0 && origins[req->origin].proto == PROTO_UNKNOWN)
	{
		if (origins[req->origin].probing)
		{
			req->waiting = true;
			req->agent = AGENT_PLAIN;
			link_running(req);
			return;
		}
		origins[req->origin].probing = true;
		req->probe = true;
	}
	if (!attach(req))
	{
		/* undo, leaving the request detached but alive */
		if (req->probe)
		{
			req->probe = false;
			origins[req->origin].probing = false;
		}
		curl_easy_cleanup(easy);
		req->easy = NULL;
		fail_early(req, CURLE_FAILED_INIT);
		return;
	}
	link_running(req);
	return;

oom:
	curl_slist_free_all(h);
	release_easy(easy, req->easy_generation);
	req->easy = NULL;
	fail_early(req, CURLE_OUT_OF_MEMORY);
}

/* Move the finished transfers of multi handle m to our done list */
static void
collect_done_of(CURLM *m)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(m, &left)) != NULL)
	{
		PartooHttpRequest *req = NULL;
		CURL	   *easy = msg->easy_handle;
		CURLcode	code = msg->data.result;
		long		status = 0;
		curl_off_t	total = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &req);
		curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total);
		req->elapsed_us = (int64) total;

		req->curl_code = code;
		req->status = (code == CURLE_OK || req->too_large) ? status : 0;
		req->timed_out = (code == CURLE_OPERATION_TIMEDOUT);
		req->connect_failed = (code == CURLE_COULDNT_CONNECT ||
							   code == CURLE_COULDNT_RESOLVE_HOST ||
							   code == CURLE_COULDNT_RESOLVE_PROXY);
		if (req->timed_out)
		{
			long		sent = 0;

			/* a timeout before any byte of the request went out */
			curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &sent);
			if (sent == 0)
				req->connect_failed = true;
		}
		if (code != CURLE_OK && req->errbuf[0] == '\0')
			strlcpy(req->errbuf, curl_easy_strerror(code), sizeof(req->errbuf));
		if (code == CURLE_OK)
			note_protocol(req, easy);

		curl_multi_remove_handle(m, easy);
		release_easy(easy, req->easy_generation);
		req->easy = NULL;
		unlink_running(req);
		drop_headers(req);
		push_done(req);
		probe_ended(req);
	}
}

/* Move finished transfers from libcurl to our done list */
static void
collect_done(void)
{
	int			agent;

	for (agent = 0; agent < N_AGENTS; agent++)
		collect_done_of(multis[agent]);
}

/*
 * End the running requests whose deadline has passed on the attended
 * clock: still connecting (no byte of the request sent) after the connect
 * timeout, or unfinished after the total timeout.  They go to the done
 * list as timed out.  Called after the sockets were read, so an answer
 * that is there is never taken for a timeout.
 */
static void
expire_overdue(void)
{
	PartooHttpRequest *req;
	PartooHttpRequest *next;
	int64		earliest = -1;
	bool		release[MAX_ORIGINS];
	bool		any_release = false;
	int			o;

	if (next_deadline_us < 0 || attended_us < next_deadline_us)
		return;
	memset(release, 0, sizeof(release));
	for (req = running; req != NULL; req = next)
	{
		CURL	   *easy = (CURL *) req->easy;
		long		sent = 0;
		bool		connecting;
		int64		due;

		next = req->run_next;
		curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &sent);
		connecting = (sent == 0 || req->waiting);
		due = connecting ? Min(req->connect_deadline_us, req->deadline_us) : req->deadline_us;
		if (attended_us < due)
		{
			if (earliest < 0 || due < earliest)
				earliest = due;
			continue;
		}

		curl_multi_remove_handle(multis[req->agent], easy);
		curl_easy_cleanup(easy);	/* mid-transfer: not back to the pool */
		req->easy = NULL;
		req->waiting = false;
		unlink_running(req);
		if (req->probe)
		{
			/* released after this loop, which release_origin would upset */
			req->probe = false;
			release[req->origin] = any_release = true;
		}
		drop_headers(req);
		req->status = 0;
		req->curl_code = CURLE_OPERATION_TIMEDOUT;
		req->timed_out = true;
		req->connect_failed = connecting;
		if (connecting && attended_us >= req->connect_deadline_us)
			snprintf(req->errbuf, sizeof(req->errbuf),
					 "Connection timed out after %d milliseconds", req->connect_timeout_ms);
		else
			snprintf(req->errbuf, sizeof(req->errbuf),
					 "Operation timed out after %d milliseconds", req->timeout_ms);
		push_done(req);
	}
	next_deadline_us = earliest;
	for (o = 0; any_release && o < n_origins; o++)
		if (release[o])
			release_origin(o);
}

/*
 * Wait until the latch is set, a socket libcurl watches is ready, libcurl's
 * timer fires, a request's deadline passes, or timeout_ms passes (-1: no
 * limit of our own), then let libcurl make progress.  Returns PARTOO_WAKE_* flags.  The caller resets
 * the latch and checks for interrupts.  Exits the process if the
 * postmaster died.
 */
int
partoo_http_wait(long timeout_ms)
{
	WaitEvent	events[3];
	int			n;
	int			i;
	int			result = 0;
	int			still_running;
	int			agent;
	long		wait_ms = timeout_ms;
	int64		entered_us;

	ensure_agent();
	entered_us = partoo_monotonic_us();

	for (agent = 0; agent < N_AGENTS; agent++)
	{
		int64		left;
		long		left_ms;

		if (curl_deadline_us[agent] < 0)
			continue;
		left = curl_deadline_us[agent] - entered_us;
		left_ms = left <= 0 ? 0 : (long) ((left + 999) / 1000);
		if (wait_ms < 0 || left_ms < wait_ms)
			wait_ms = left_ms;
	}
	if (next_deadline_us >= 0)
	{
		int64		left = next_deadline_us - attended_us;
		long		left_ms = left <= 0 ? 0 : (long) ((left + 999) / 1000);

		if (wait_ms < 0 || left_ms < wait_ms)
			wait_ms = left_ms;
	}

	if (wait_ms == 0 && timeout_ms != 0)
	{
		/*
		 * libcurl's timer is due (typically just after a request was
		 * added): no waiting, only look at the sockets.  A latch set
		 * meanwhile stays set for the next wait to see.
		 */
		result |= PARTOO_WAKE_TIMEOUT | PARTOO_WAKE_IO;
	}
	else
	{
		n = WaitEventSetWait(wait_set, wait_ms, events, lengthof(events),
							 PG_WAIT_EXTENSION);
		if (n == 0)
			result |= PARTOO_WAKE_TIMEOUT;
		for (i = 0; i < n; i++)
		{
			if (events[i].events & WL_LATCH_SET)
				result |= PARTOO_WAKE_LATCH;
			if (events[i].events & WL_SOCKET_READABLE)
				result |= PARTOO_WAKE_IO;
		}
	}

	if (result & PARTOO_WAKE_IO)
	{
		struct epoll_event ready[64];
		int			k;

		k = epoll_wait(epoll_fd, ready, lengthof(ready), 0);
		for (i = 0; i < k; i++)
		{
			int			flags = 0;

			if (ready[i].events & EPOLLIN)
				flags |= CURL_CSELECT_IN;
			if (ready[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (ready[i].events & (EPOLLERR | EPOLLHUP))
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(multis[ready[i].data.u64 >> 32],
									 (curl_socket_t) (uint32) ready[i].data.u64,
									 flags, &still_running);
		}
	}

	for (agent = 0; agent < N_AGENTS; agent++)
	{
		if (curl_deadline_us[agent] >= 0 &&
			partoo_monotonic_us() >= curl_deadline_us[agent])
		{
			curl_deadline_us[agent] = -1;
			curl_multi_socket_action(multis[agent], CURL_SOCKET_TIMEOUT, 0, &still_running);
		}
	}

	collect_done();
	attended_us += partoo_monotonic_us() - entered_us;
	expire_overdue();
	return result;
}

/* Pop the oldest finished request, or NULL */
PartooHttpRequest *
partoo_http_next_done(void)
{
	PartooHttpRequest *req = done_head;

	if (req != NULL)
	{
		done_head = req->next;
		if (done_head == NULL)
			done_tail = NULL;
		req->next = NULL;
	}
	return req;
}

/*
 * Run one request to completion, synchronously, honouring query cancel,
 * statement_timeout and termination: the signal handlers set the latch,
 * which wakes the wait at once, and CHECK_FOR_INTERRUPTS() throws.  The
 * caller must free req in a PG_FINALLY (or PG_CATCH) block: an interrupt
 * leaves it attached to libcurl, and freeing detaches it.
 */
void
partoo_http_perform(PartooHttpRequest *req)
{
	partoo_http_start(req, partoo_timeout_ms, partoo_connect_timeout_ms);
	for (;;)
	{
		int			rc;

		if (req->done)
		{
			unlink_done(req);
			return;
		}
		rc = partoo_http_wait(-1);
		if (rc & PARTOO_WAKE_LATCH)
			ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}
