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
	l->floor_now_us = -1;
	l->floor_last_us = -1;
}

void
partoo_latency_add(PartooLatency *l, int64_t elapsed_us)
{
	if (elapsed_us < 0)
		return;
	if (l->samples % PARTOO_FLOOR_RUN == 0)
	{
		l->floor_last_us = l->floor_now_us;
		l->floor_now_us = -1;
	}
	if (l->floor_now_us < 0 || elapsed_us < l->floor_now_us)
		l->floor_now_us = elapsed_us;
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

int64_t
partoo_latency_floor_us(const PartooLatency *l)
{
	if (l->samples == 0)
		return PARTOO_LATENCY_UNKNOWN;
	if (l->floor_last_us >= 0 && l->floor_last_us < l->floor_now_us)
		return l->floor_last_us;
	return l->floor_now_us;
}

int
partoo_window_size(double per_second, bool any_unlimited, int64_t latency_us,
				   int64_t floor_us, int cap, int fd_room)
{
	double		need;
	int			limit = cap < fd_room ? cap : fd_room;

	if (limit < 1)
		limit = 1;
	if (latency_us < 0)
		return PARTOO_WINDOW_INITIAL < limit ? PARTOO_WINDOW_INITIAL : limit;
	if (per_second < 0)
		per_second = 0;
	if (floor_us < 0 || floor_us > latency_us)
		floor_us = latency_us;
	need = per_second * ((double) latency_us / 1e6);
	if (any_unlimited)
		need += PARTOO_UNLIMITED_RATE * ((double) floor_us / 1e6);
	need = ceil(need * WINDOW_MARGIN) + PARTOO_WINDOW_SPARE;
	if (any_unlimited && need < PARTOO_WINDOW_INITIAL)
		need = PARTOO_WINDOW_INITIAL;
	return need < (double) limit ? (int) need : limit;
}
