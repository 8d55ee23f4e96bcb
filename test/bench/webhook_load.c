/*-------------------------------------------------------------------------
 *
 * webhook_load.c
 *		Load generator of the partoo benchmark's webhook receiver scenario
 *		(test/bench/run.sh, scenario 8): signed message_updated webhooks
 *		posted to partoo-webhookd over HTTP, or the same bodies handed to
 *		partoo_ingest_webhooks() directly over libpq (the baseline).
 *
 *	usage: webhook_load http URL BODIES KEY [-c CONNS] [-r RATE]
 *		   webhook_load pq CONNINFO BODIES KEY [-c CONNS] [-b BATCH]
 *
 *	BODIES  a file of webhook bodies, one per line (a line is sent as is,
 *			without its newline)
 *	KEY     the Ed25519 private key (PEM) that signs them, as
 *			X-Partoo-Signature-v1 does: base64 of the signature of the body
 *	-c      concurrent connections, one thread each (default 32)
 *	-r      http: open loop at RATE requests/s (request i is due at
 *			start + i/RATE, and its latency counts from then, so a stall
 *			is not hidden by the requests it holds back); default: closed
 *			loop, each connection posts its next body as soon as the last
 *			one is answered
 *	-b      pq: bodies per partoo_ingest_webhooks() call (default 32)
 *
 * Every body is signed before the clock starts.  Each thread takes the
 * next body (http) or the next BATCH bodies (pq) from a shared counter, so
 * every body goes exactly once.  A request counts as ok when it is
 * answered 200 with an outcome (http) or the call returns one outcome per
 * body (pq); "applied" counts the outcomes "applied".  Latency: per
 * request (http: from due time or send to the 200, which the daemon sends
 * only after the commit), per call (pq: the whole call).
 *
 *	output (stdout), one line:
 *	  requests=N ok=N applied=N calls=N seconds=S per_second=R
 *	  p50_ms=X p99_ms=X max_ms=X
 *	exit status 1 when anything failed (an error, a non-200, an outcome
 *	that is not "applied"), 2 for bad usage.
 *
 * test/bench/webhook_load.c
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

typedef struct Body
{
	char	   *text;
	size_t		len;
	char	   *sig;			/* base64 */
} Body;

static Body *bodies;
static long nbodies;
static const char *target;		/* URL or conninfo */
static int	conns = 32;
static double rate = 0;			/* requests/s; 0: closed loop */
static int	batch = 32;
static bool use_http;

static atomic_long next_body;
static atomic_long n_ok;
static atomic_long n_applied;
static atomic_long n_failed;
static atomic_long n_calls;
static double *latency;			/* per request (http) or per call (pq), seconds */
static atomic_long n_latency;
static double t_start;

/*
 * The threads connect first, then wait twice at the barrier: once until
 * all are ready (main then starts the clock), once more to start.
 */
static pthread_barrier_t barrier;

static void
ready_set_go(void)
{
	pthread_barrier_wait(&barrier);
	pthread_barrier_wait(&barrier);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
sleep_until(double t)
{
	double		d = t - now_s();
	struct timespec ts;

	if (d <= 0)
		return;
	ts.tv_sec = (time_t) d;
	ts.tv_nsec = (long) ((d - ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void *
xmalloc(size_t n)
{
	void	   *p = malloc(n);

	if (p == NULL)
	{
		fprintf(stderr, "webhook_load: out of memory\n");
		exit(1);
	}
	return p;
}

static void
record_latency(double seconds)
{
	latency[atomic_fetch_add(&n_latency, 1)] = seconds;
}

/* Read BODIES and sign each line with the key in KEY */
static void
load_and_sign(const char *path, const char *key_path)
{
	FILE	   *f = fopen(path, "r");
	FILE	   *kf = fopen(key_path, "r");
	EVP_PKEY   *key;
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		n;
	long		size = 1024;

	if (f == NULL || kf == NULL)
	{
		fprintf(stderr, "webhook_load: cannot open %s: %s\n", f ? key_path : path, strerror(errno));
		exit(1);
	}
	key = PEM_read_PrivateKey(kf, NULL, NULL, NULL);
	fclose(kf);
	if (key == NULL || EVP_PKEY_id(key) != EVP_PKEY_ED25519)
	{
		fprintf(stderr, "webhook_load: %s is not an Ed25519 private key\n", key_path);
		exit(1);
	}
	bodies = xmalloc(sizeof(Body) * size);
	while ((n = getline(&line, &cap, f)) > 0)
	{
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		unsigned char sig[64];
		size_t		siglen = sizeof(sig);
		Body	   *b;

		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (n == 0)
			continue;
		if (nbodies == size)
		{
			size *= 2;
			bodies = realloc(bodies, sizeof(Body) * size);
			if (bodies == NULL)
			{
				fprintf(stderr, "webhook_load: out of memory\n");
				exit(1);
			}
		}
		b = &bodies[nbodies++];
		b->text = strdup(line);
		b->len = n;
		if (ctx == NULL || b->text == NULL ||
			EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
			EVP_DigestSign(ctx, sig, &siglen, (unsigned char *) line, n) != 1)
		{
			fprintf(stderr, "webhook_load: signing failed\n");
			exit(1);
		}
		EVP_MD_CTX_free(ctx);
		b->sig = xmalloc(4 * ((siglen + 2) / 3) + 1);
		EVP_EncodeBlock((unsigned char *) b->sig, sig, (int) siglen);
	}
	free(line);
	fclose(f);
	EVP_PKEY_free(key);
}

typedef struct Reply
{
	char		data[256];
	size_t		len;
} Reply;

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	Reply	   *r = userdata;
	size_t		n = size * nmemb;
	size_t		take = n < sizeof(r->data) - 1 - r->len ? n : sizeof(r->data) - 1 - r->len;

	memcpy(r->data + r->len, ptr, take);
	r->len += take;
	r->data[r->len] = '\0';
	return n;
}

/* One connection posting bodies until there are none left */
static void *
http_thread(void *arg)
{
	CURL	   *h = curl_easy_init();
	Reply		reply;
	char		header[160];
	long		failures = 0;

	ready_set_go();
	if (h == NULL)
	{
		atomic_fetch_add(&n_failed, 1);
		return arg;
	}
	curl_easy_setopt(h, CURLOPT_URL, target);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
	for (;;)
	{
		long		i = atomic_fetch_add(&next_body, 1);
		struct curl_slist *hdrs = NULL;
		double		start;
		long		code = 0;
		CURLcode	rc;

		if (i >= nbodies)
			break;
		if (rate > 0)
		{
			start = t_start + i / rate;
			sleep_until(start);
		}
		else
			start = now_s();
		snprintf(header, sizeof(header), "X-Partoo-Signature-v1: %s", bodies[i].sig);
		hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
		hdrs = curl_slist_append(hdrs, "Expect:");
		hdrs = curl_slist_append(hdrs, header);
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, bodies[i].text);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long) bodies[i].len);
		reply.len = 0;
		reply.data[0] = '\0';
		rc = curl_easy_perform(h);
		if (rc == CURLE_OK)
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		record_latency(now_s() - start);
		curl_slist_free_all(hdrs);
		if (rc == CURLE_OK && code == 200 && strstr(reply.data, "\"outcome\":\""))
		{
			atomic_fetch_add(&n_ok, 1);
			if (strstr(reply.data, "\"outcome\":\"applied\""))
				atomic_fetch_add(&n_applied, 1);
		}
		else
		{
			atomic_fetch_add(&n_failed, 1);
			if (failures++ < 3)
				fprintf(stderr, "webhook_load: body %ld: %s, HTTP %ld: %s\n", i,
						curl_easy_strerror(rc), code, reply.data);
		}
	}
	curl_easy_cleanup(h);
	return arg;
}

/* Append s to p as a quoted element of an array literal; returns the end */
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

/* The bodies (which 0) or signatures (1) of [from, to) as a text[] literal */
static char *
array_literal(long from, long to, int which)
{
	size_t		size = 3;
	char	   *lit,
			   *p;
	long		i;

	for (i = from; i < to; i++)
		size += strlen(which == 0 ? bodies[i].text : bodies[i].sig) * 2 + 3;
	lit = p = xmalloc(size);
	*p++ = '{';
	for (i = from; i < to; i++)
	{
		if (i > from)
			*p++ = ',';
		p = quote_element(p, which == 0 ? bodies[i].text : bodies[i].sig);
	}
	*p++ = '}';
	*p = '\0';
	return lit;
}

/* One database connection calling partoo_ingest_webhooks() until done */
static void *
pq_thread(void *arg)
{
	PGconn	   *conn = PQconnectdb(target);
	long		failures = 0;

	ready_set_go();
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "webhook_load: %s", PQerrorMessage(conn));
		atomic_fetch_add(&n_failed, 1);
		PQfinish(conn);
		return arg;
	}
	for (;;)
	{
		long		from = atomic_fetch_add(&next_body, batch);
		long		to = from + batch < nbodies ? from + batch : nbodies;
		const char *params[2];
		PGresult   *res;
		double		start;
		int			i;

		if (from >= nbodies)
			break;
		params[0] = array_literal(from, to, 0);
		params[1] = array_literal(from, to, 1);
		start = now_s();
		res = PQexecParams(conn,
						   "SELECT o FROM partoo_ingest_webhooks($1::text[], $2::text[]) AS t(o)",
						   2, NULL, params, NULL, NULL, 0);
		record_latency(now_s() - start);
		atomic_fetch_add(&n_calls, 1);
		free((void *) params[0]);
		free((void *) params[1]);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == to - from)
		{
			atomic_fetch_add(&n_ok, to - from);
			for (i = 0; i < PQntuples(res); i++)
				if (strcmp(PQgetvalue(res, i, 0), "applied") == 0)
					atomic_fetch_add(&n_applied, 1);
		}
		else
		{
			atomic_fetch_add(&n_failed, to - from);
			if (failures++ < 3)
				fprintf(stderr, "webhook_load: bodies %ld..%ld: %s", from, to - 1,
						PQresultErrorMessage(res));
		}
		PQclear(res);
	}
	PQfinish(conn);
	return arg;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* The q-quantile (nearest rank) of sorted v[0..n), in ms */
static double
quantile_ms(const double *v, long n, double q)
{
	long		k;

	if (n == 0)
		return 0;
	k = (long) (q * n + 0.999999) - 1;
	if (k < 0)
		k = 0;
	if (k >= n)
		k = n - 1;
	return v[k] * 1000.0;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: webhook_load http URL BODIES KEY [-c CONNS] [-r RATE]\n"
			"       webhook_load pq CONNINFO BODIES KEY [-c CONNS] [-b BATCH]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	pthread_t  *threads;
	double		seconds;
	long		nl;
	int			i;

	if (argc < 5)
		usage();
	if (strcmp(argv[1], "http") == 0)
		use_http = true;
	else if (strcmp(argv[1], "pq") != 0)
		usage();
	target = argv[2];
	for (i = 5; i < argc; i++)
	{
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "-c") == 0)
			conns = atoi(argv[++i]);
		else if (strcmp(argv[i], "-r") == 0 && use_http)
			rate = atof(argv[++i]);
		else if (strcmp(argv[i], "-b") == 0 && !use_http)
			batch = atoi(argv[++i]);
		else
			usage();
	}
	if (conns < 1 || conns > 1000 || batch < 1 || rate < 0)
		usage();

	load_and_sign(argv[3], argv[4]);
	if (nbodies == 0)
	{
		fprintf(stderr, "webhook_load: no body in %s\n", argv[3]);
		return 2;
	}
	latency = xmalloc(sizeof(double) * nbodies);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	threads = xmalloc(sizeof(pthread_t) * conns);

	pthread_barrier_init(&barrier, NULL, conns + 1);
	for (i = 0; i < conns; i++)
		if (pthread_create(&threads[i], NULL, use_http ? http_thread : pq_thread, NULL) != 0)
		{
			fprintf(stderr, "webhook_load: cannot start a thread\n");
			return 1;
		}
	pthread_barrier_wait(&barrier);
	t_start = now_s();
	pthread_barrier_wait(&barrier);
	for (i = 0; i < conns; i++)
		pthread_join(threads[i], NULL);
	seconds = now_s() - t_start;

	nl = atomic_load(&n_latency);
	qsort(latency, nl, sizeof(double), cmp_double);
	printf("requests=%ld ok=%ld applied=%ld calls=%ld seconds=%.3f per_second=%.1f"
		   " p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
		   nbodies, atomic_load(&n_ok), atomic_load(&n_applied),
		   use_http ? atomic_load(&n_ok) : atomic_load(&n_calls), seconds,
		   atomic_load(&n_ok) / seconds,
		   quantile_ms(latency, nl, 0.5), quantile_ms(latency, nl, 0.99),
		   nl ? latency[nl - 1] * 1000.0 : 0.0);
	curl_global_cleanup();
	return (atomic_load(&n_failed) == 0 && atomic_load(&n_applied) == nbodies) ? 0 : 1;
}
