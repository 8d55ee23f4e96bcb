/*-------------------------------------------------------------------------
 *
 * trickle.c
 *		Commit-to-request latency probe for the partoo benchmark
 *		(test/bench/run.sh, scenario 2).
 *
 * Calls partoo_enqueue() at a steady rate, one call per transaction
 * (autocommit), and prints, for each call, its sequence number and
 * CLOCK_REALTIME in microseconds taken right after the COMMIT returned.
 * The content of message i is "PREFIX-i", so that the benchmark can match
 * each line with the mock server's /_mock/accepted record (whose time_us
 * is the same clock, taken when the request arrived) and compute the
 * latency the worker added.
 *
 *	usage: trickle CONNINFO RATE SECONDS PREFIX [CONVERSATION]
 *	output (stdout): seq <TAB> commit_us <TAB> message_id, one line a call
 *
 * Calls are scheduled on an absolute CLOCK_MONOTONIC timetable, so a slow
 * call does not shift the ones after it.  Exits 1 on any error.
 *
 * test/bench/trickle.c
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

static int64_t
clock_us(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	PGresult   *res;
	double		rate;
	double		seconds;
	const char *prefix;
	const char *conversation;
	long		n;
	long		i;
	int64_t    *commit_us;
	char	  **ids;
	struct timespec start;

	if (argc < 5 || argc > 6)
	{
		fprintf(stderr, "usage: %s CONNINFO RATE SECONDS PREFIX [CONVERSATION]\n", argv[0]);
		return 2;
	}
	rate = atof(argv[2]);
	seconds = atof(argv[3]);
	prefix = argv[4];
	conversation = argc == 6 ? argv[5] : "12345";
	if (rate <= 0 || seconds <= 0)
	{
		fprintf(stderr, "trickle: RATE and SECONDS must be positive\n");
		return 2;
	}
	n = (long) (rate * seconds + 0.5);

	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "trickle: %s", PQerrorMessage(conn));
		return 1;
	}
	res = PQprepare(conn, "enq", "SELECT partoo_enqueue($1::bigint, $2::text)", 2, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "trickle: prepare: %s", PQerrorMessage(conn));
		return 1;
	}
	PQclear(res);

	commit_us = calloc(n, sizeof(int64_t));
	ids = calloc(n, sizeof(char *));
	if (commit_us == NULL || ids == NULL)
	{
		fprintf(stderr, "trickle: out of memory\n");
		return 1;
	}

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (i = 0; i < n; i++)
	{
		int64_t		off_ns = (int64_t) ((double) i * 1e9 / rate);
		struct timespec at = start;
		char		content[256];
		const char *params[2];

		at.tv_sec += off_ns / 1000000000;
		at.tv_nsec += off_ns % 1000000000;
		if (at.tv_nsec >= 1000000000)
		{
			at.tv_sec++;
			at.tv_nsec -= 1000000000;
		}
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
			;

		snprintf(content, sizeof(content), "%s-%ld", prefix, i);
		params[0] = conversation;
		params[1] = content;
		res = PQexecPrepared(conn, "enq", 2, params, NULL, NULL, 0);
		/* the statement ran in its own transaction: it has committed now */
		commit_us[i] = clock_us(CLOCK_REALTIME);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			fprintf(stderr, "trickle: call %ld: %s", i, PQerrorMessage(conn));
			return 1;
		}
		ids[i] = strdup(PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	PQfinish(conn);

	for (i = 0; i < n; i++)
		printf("%ld\t%lld\t%s\n", i, (long long) commit_us[i], ids[i] ? ids[i] : "");
	return fflush(stdout) == 0 ? 0 : 1;
}
