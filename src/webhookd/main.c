/*-------------------------------------------------------------------------
 *
 * main.c
 *		partoo-webhookd: receive Partoo's webhooks over HTTP(S) and ingest
 *		them into PostgreSQL with partoo_ingest_webhooks().
 *
 *   partoo-webhookd --listen HOST:PORT --dbname CONNINFO
 *                   [--tls-cert FILE --tls-key FILE] [--max-body BYTES]
 *                   [--max-connections N] [--connection-timeout S]
 *                   [--batch-max N] [--batch-wait-ms MS]
 *
 * This file reads the options, starts the batcher (batch.c) and the HTTP
 * side (http.c), then waits for SIGTERM or SIGINT and stops them in that
 * order: no new connection, the requests under way answered, what is
 * queued ingested, exit 0.  The signals are blocked in every thread and
 * taken with sigwait() here, so no code runs in a signal handler.
 *
 * Nothing secret comes on the command line: the database password comes
 * from PGPASSWORD or ~/.pgpass (libpq), and the signature and key checks
 * happen in the database.  Logs go to stderr, one line per start, stop
 * and database trouble, never a body, a signature or a key.
 *
 * src/webhookd/main.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "webhookd.h"

#define DEFAULT_MAX_CONNECTIONS 256
#define DEFAULT_CONNECTION_TIMEOUT 10
#define DEFAULT_BATCH_MAX 100
/*
 * 0: no wait.  Under load the bodies gather anyway while the statement
 * before runs; a wait only held each batch back (make bench, scenario 8:
 * 2 ms cost a sixth of the throughput at 32 connections and tripled the
 * median latency at 1,000 webhooks/s).
 */
#define DEFAULT_BATCH_WAIT_MS 0
/* what one text[] element and the statement can carry, with room to spare */
#define MAX_BODY_LIMIT (64 * 1024 * 1024)

static void
usage(FILE *f)
{
	fprintf(f,
			"partoo-webhookd receives Partoo webhooks over HTTP(S) and ingests them\n"
			"into PostgreSQL with partoo_ingest_webhooks().\n\n"
			"Usage:\n"
			"  partoo-webhookd --listen HOST:PORT [--dbname CONNINFO] [OPTION]...\n\n"
			"Options:\n"
			"  --listen HOST:PORT        address to listen on ([::1]:8080 for IPv6; port 0: any free port)\n"
			"  --dbname CONNINFO         libpq connection string or URI (default: empty, the PG* variables)\n"
			"  --tls-cert FILE           serve HTTPS with this PEM certificate (chain)...\n"
			"  --tls-key FILE            ...and this PEM private key\n"
			"  --max-body BYTES          largest body accepted (default: the server's\n"
			"                            partoo.webhook_max_bytes, else 1048576)\n"
			"  --max-connections N       concurrent connections (default %d)\n"
			"  --connection-timeout S    idle seconds before a connection is closed (default %d)\n"
			"  --batch-max N             bodies per partoo_ingest_webhooks() call (default %d)\n"
			"  --batch-wait-ms MS        how long a batch waits for more bodies after the\n"
			"                            first, when the connection is idle (default %d)\n"
			"  --help, --version\n\n"
			"Routes: POST /partoo (X-Partoo-Signature-v1), POST /dispatch (X-API-Key),\n"
			"GET /healthz, GET /metrics.  Passwords: PGPASSWORD or ~/.pgpass, never an option.\n",
			DEFAULT_MAX_CONNECTIONS, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_BATCH_MAX,
			DEFAULT_BATCH_WAIT_MS);
}

static void
fail(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));

static void
fail(const char *fmt,...)
{
	va_list		ap;

	fputs("partoo-webhookd: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static unsigned long long
parse_number(const char *opt, const char *s, unsigned long long min,
			 unsigned long long max)
{
	char	   *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v < min || v > max)
		fail("%s must be an integer from %llu to %llu, not \"%s\"", opt, min, max, s);
	return v;
}

/* The whole of a file, NUL-terminated, malloc'd */
static char *
read_file(const char *path)
{
	FILE	   *f = fopen(path, "rb");
	char	   *data = NULL;
	size_t		len = 0,
				cap = 0,
				n;

	if (f == NULL)
		fail("could not open \"%s\": %s", path, strerror(errno));
	do
	{
		if (cap - len < 4096)
		{
			cap = cap ? cap * 2 : 8192;
			data = realloc(data, cap);
			if (data == NULL)
				fail("out of memory");
		}
		n = fread(data + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	if (ferror(f))
		fail("could not read \"%s\"", path);
	fclose(f);
	data[len] = '\0';
	return data;
}

/*
 * HOST:PORT ([HOST]:PORT for IPv6; "*" or an empty HOST for every
 * address) into *res, for the caller to freeaddrinfo().
 */
static void
resolve_listen(const char *listen, struct addrinfo **res)
{
	char	   *copy = strdup(listen);
	char	   *host,
			   *port,
			   *colon;
	struct addrinfo hints;
	int			rc;

	if (copy == NULL)
		fail("out of memory");
	colon = strrchr(copy, ':');
	if (colon == NULL)
		fail("--listen must be HOST:PORT, not \"%s\"", listen);
	*colon = '\0';
	host = copy;
	port = colon + 1;
	if (host[0] == '[' && host[strlen(host) - 1] == ']')
	{
		host[strlen(host) - 1] = '\0';
		host++;
	}
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		host = NULL;
	(void) parse_number("--listen's port", port, 0, 65535);

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, res);
	if (rc != 0)
		fail("could not resolve \"%s\": %s", listen, gai_strerror(rc));
	free(copy);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"dbname", required_argument, NULL, 'd'},
		{"tls-cert", required_argument, NULL, 'c'},
		{"tls-key", required_argument, NULL, 'k'},
		{"max-body", required_argument, NULL, 'b'},
		{"max-connections", required_argument, NULL, 'm'},
		{"connection-timeout", required_argument, NULL, 't'},
		{"batch-max", required_argument, NULL, 'n'},
		{"batch-wait-ms", required_argument, NULL, 'w'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	WhdConfig	cfg;
	const char *listen = NULL;
	const char *cert_path = NULL;
	const char *key_path = NULL;
	char	   *cert = NULL;
	char	   *key = NULL;
	struct addrinfo *ai;
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	char		host[NI_MAXHOST];
	sigset_t	sigs;
	int			sig;
	int			opt;

	memset(&cfg, 0, sizeof(cfg));
	cfg.conninfo = "";
	cfg.batch_max = DEFAULT_BATCH_MAX;
	cfg.batch_wait_ms = DEFAULT_BATCH_WAIT_MS;
	cfg.max_connections = DEFAULT_MAX_CONNECTIONS;
	cfg.connection_timeout = DEFAULT_CONNECTION_TIMEOUT;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1)
	{
		switch (opt)
		{
			case 'l':
				listen = optarg;
				break;
			case 'd':
				cfg.conninfo = optarg;
				break;
			case 'c':
				cert_path = optarg;
				break;
			case 'k':
				key_path = optarg;
				break;
			case 'b':
				cfg.max_body = parse_number("--max-body", optarg, 1, MAX_BODY_LIMIT);
				break;
			case 'm':
				cfg.max_connections = parse_number("--max-connections", optarg, 1, 100000);
				break;
			case 't':
				cfg.connection_timeout = parse_number("--connection-timeout", optarg, 1, 3600);
				break;
			case 'n':
				cfg.batch_max = parse_number("--batch-max", optarg, 1, 10000);
				break;
			case 'w':
				cfg.batch_wait_ms = parse_number("--batch-wait-ms", optarg, 0, 10000);
				break;
			case 'h':
				usage(stdout);
				return 0;
			case 'V':
				printf("partoo-webhookd %s\n", PARTOO_VERSION);
				return 0;
			default:
				usage(stderr);
				return 2;
		}
	}
	if (optind < argc)
		fail("unexpected argument \"%s\" (see --help)", argv[optind]);
	if (listen == NULL)
		fail("--listen HOST:PORT is required (see --help)");
	if ((cert_path == NULL) != (key_path == NULL))
		fail("--tls-cert and --tls-key go together");
	if (cert_path != NULL)
	{
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
			fail("this libmicrohttpd was built without TLS");
		cert = read_file(cert_path);
		key = read_file(key_path);
	}
	resolve_listen(listen, &ai);

	/*
	 * Every thread started from here on inherits this mask: SIGTERM, SIGINT
	 * and SIGHUP only ever reach the sigwait() below.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	whd_batch_start(&cfg);
	d = whd_http_start(&cfg, ai->ai_addr, cert, key);
	if (d == NULL)
	{
		whd_log("could not listen on %s", listen);
		whd_batch_stop();
		return 1;
	}
	if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof(host), NULL, 0,
					NI_NUMERICHOST) != 0)
		snprintf(host, sizeof(host), "?");
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	whd_log("listening on %s://%s%s%s:%u (max body %zu bytes, %u connections, batches of up to %d)",
			cert ? "https" : "http",
			ai->ai_family == AF_INET6 ? "[" : "", host,
			ai->ai_family == AF_INET6 ? "]" : "",
			info ? (unsigned) info->port : 0u,
			whd_max_body(), cfg.max_connections, cfg.batch_max);
	freeaddrinfo(ai);

	for (;;)
	{
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig != SIGHUP)
			break;
	}
	whd_log("received %s, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	whd_http_stop(d);
	whd_batch_stop();
	free(cert);
	free(key);
	whd_log("stopped");
	return 0;
}
