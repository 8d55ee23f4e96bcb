/*-------------------------------------------------------------------------
 *
 * log.c
 *		partoo-webhookd's log lines and clock, used by every other file of
 *		the daemon (and calling none of them).
 *
 * src/webhookd/log.c
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "webhookd.h"

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

/* One line on stderr, with the time (UTC) and the pid */
void
whd_log(const char *fmt,...)
{
	va_list		ap;
	char		stamp[32];
	time_t		t = time(NULL);
	struct tm	tm;

	gmtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S UTC", &tm);
	pthread_mutex_lock(&log_lock);
	fprintf(stderr, "%s partoo-webhookd[%d]: ", stamp, (int) getpid());
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	pthread_mutex_unlock(&log_lock);
}

/* Seconds on the monotonic clock */
double
whd_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}
