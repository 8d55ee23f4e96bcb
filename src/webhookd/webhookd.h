/*-------------------------------------------------------------------------
 *
 * webhookd.h
 *		The private header of partoo-webhookd, the webhook receiver daemon.
 *
 * partoo-webhookd is a program of its own, not part of partoo.so: it takes
 * webhooks over HTTP(S) (libmicrohttpd, http.c), hands their bodies to one
 * batcher thread (batch.c) that owns the only database connection (libpq)
 * and ingests them with partoo_ingest_webhooks(), and counts what happens
 * (metrics.c).  main.c reads the options, starts and stops the rest.
 *
 * Threads: one per HTTP connection (libmicrohttpd's thread-per-connection
 * mode), each blocked on its request until the batcher has answered it;
 * the batcher; and the main thread, which only waits for SIGTERM/SIGINT.
 * Nothing here includes postgres.h.
 *
 * src/webhookd/webhookd.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_WEBHOOKD_H
#define PARTOO_WEBHOOKD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct MHD_Daemon;

/* What a request asks the batcher for */
typedef enum WhdItemKind
{
	WHD_INGEST,					/* a webhook body */
	WHD_PING					/* /healthz: does a database connection work? */
} WhdItemKind;

/*
 * One request handed to the batcher.  Owned by the HTTP thread that made
 * it (on its stack or in its request state); the batcher only reads the
 * body and signature and writes the result fields, under the queue lock,
 * then sets done.
 */
typedef struct WhdItem
{
	WhdItemKind kind;
	const char *body;
	size_t		len;
	const char *signature;		/* header value, or NULL when absent */
	double		enqueued_at;	/* whd_now() */

	/* results, written by the batcher */
	int			http_status;	/* 200, 400, 401, 413 or 503 */
	char		outcome[16];	/* applied, duplicate, ... when 200 */
	char		sqlstate[6];	/* the error's SQLSTATE, or "" */
	bool		done;

	struct WhdItem *next;		/* queue link */
} WhdItem;

/* Settings from the command line (main.c) */
typedef struct WhdConfig
{
	const char *conninfo;		/* may be "" (libpq's environment) */
	int			batch_max;
	int			batch_wait_ms;
	size_t		max_body;		/* 0: from the server's partoo.webhook_max_bytes */
	unsigned	max_connections;
	unsigned	connection_timeout;	/* seconds */
} WhdConfig;

/* in main.c */
extern void whd_log(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern double whd_now(void);

/* in batch.c */
extern void whd_batch_start(const WhdConfig *config);
extern void whd_submit(WhdItem *item);
extern void whd_batch_stop(void);
extern size_t whd_max_body(void);

/* in http.c */
extern struct MHD_Daemon *whd_http_start(const WhdConfig *config,
										 const struct sockaddr *addr,
										 const char *tls_cert, const char *tls_key);
extern void whd_http_stop(struct MHD_Daemon *d);

/* in metrics.c */
typedef enum WhdRoute
{
	WHD_ROUTE_PARTOO,
	WHD_ROUTE_DISPATCH,
	WHD_ROUTE_HEALTHZ,
	WHD_ROUTE_METRICS,
	WHD_ROUTE_OTHER,
	WHD_ROUTE_COUNT
} WhdRoute;

extern void whd_metrics_request(WhdRoute route, unsigned status);
extern void whd_metrics_outcome(const char *outcome);
extern void whd_metrics_batch(int size);
extern void whd_metrics_latency(double seconds);
extern void whd_metrics_db_error(void);
extern void whd_metrics_db_connected(bool connected);
extern char *whd_metrics_render(size_t *len);

#endif							/* PARTOO_WEBHOOKD_H */
