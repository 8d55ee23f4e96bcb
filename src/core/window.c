/*-------------------------------------------------------------------------
 *
 * window.c
 *		How many requests the worker keeps in flight: the observed latency
 *		and the window it gives (see window.h).
 *
 * src/core/window.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/window.h"

#include <math.h>

/* samples averaged plainly before the weighted mean takes over */
#define LATENCY_WARMUP 16

/*
 * The rates' share of the window is rate x latency times this: the mean
 * latency hides a spread (an API answering in 200 +/- 50 ms holds some
 * requests for 250 ms), and a token bucket lets a burst go at once.
 */
#define WINDOW_MARGIN 1.5

void
partoo_latency_init(PartooLatency *l)
{
	l->mean_us = 0;
	l->samples = 0;
}

void
partoo_latency_add(PartooLatency *l, int64_t elapsed_us)
{
	if (elapsed_us < 0)
		return;
	l->samples++;
	if (l->samples <= LATENCY_WARMUP)
		l->mean_us += ((double) elapsed_us - l->mean_us) / (double) l->samples;
	else
		l->mean_us += ((double) elapsed_us - l->mean_us) / LATENCY_WARMUP;
}

int64_t
partoo_latency_us(const PartooLatency *l)
{
	if (l->samples == 0)
		return PARTOO_LATENCY_UNKNOWN;
	return (int64_t) llround(l->mean_us);
}

int
partoo_window_size(double per_second, bool any_unlimited, int64_t latency_us,
				   int cap, int fd_room)
{
	double		need;
	int			limit = cap < fd_room ? cap : fd_room;

	if (limit < 1)
		limit = 1;
	if (latency_us < 0)
		return PARTOO_WINDOW_INITIAL < limit ? PARTOO_WINDOW_INITIAL : limit;
	if (per_second < 0)
		per_second = 0;
	if (any_unlimited)
		per_second += PARTOO_UNLIMITED_RATE;
	need = ceil(per_second * ((double) latency_us / 1e6) * WINDOW_MARGIN) +
		PARTOO_WINDOW_SPARE;
	if (any_unlimited && need < PARTOO_WINDOW_INITIAL)
		need = PARTOO_WINDOW_INITIAL;
	return need < (double) limit ? (int) need : limit;
}
