/*-------------------------------------------------------------------------
 *
 * window.h
 *		How many requests the worker keeps in flight (window.c).
 *
 * Part of the protocol core (src/core/): plain C99, never postgres.h, so
 * that it is unit-tested without a server.  No allocation, no global
 * state: the caller owns the structs.
 *
 * Little's law: requests in flight = rate x latency.  An account limited
 * to R requests a second, over an API that answers in L seconds, needs
 * R x L slots to use its whole allowance; the window is the sum of that
 * over the limited accounts, with a margin for the latency's spread.  An
 * account without a limit counts as PARTOO_UNLIMITED_RATE.  Either way the window never exceeds the
 * cap (partoo.max_in_flight) nor the number of sockets the process can
 * open.
 *
 * src/core/window.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_CORE_WINDOW_H
#define PARTOO_CORE_WINDOW_H

#include <stdbool.h>
#include <stdint.h>

/* The latency before any request has been answered: not known yet */
#define PARTOO_LATENCY_UNKNOWN (-1)
/*
 * The window of limited accounts while the latency is not known: the old
 * fixed window, so that a worker never opens hundreds of connections on
 * a guess; the first answers size it.
 */
#define PARTOO_WINDOW_INITIAL 64
/*
 * The rate an account without a limit is taken to accept: about what one
 * worker can send (the drain on loopback reaches some 10,000 a second), so
 * that more slots would only be idle connections.  Such an account's share
 * of the window is this rate x the latency's floor (see below), and at
 * least PARTOO_WINDOW_INITIAL
 * (on loopback, where the latency is a millisecond).
 */
#define PARTOO_UNLIMITED_RATE 10000.0
/* Slots a window keeps beyond what the rates need (and its least size) */
#define PARTOO_WINDOW_SPARE 8

/*
 * The observed latency: the mean of the first samples, then an
 * exponentially weighted mean (weight 1/16 for each new sample), so that
 * it follows a change of the API's latency within some tens of answers.
 */
typedef struct PartooLatency
{
	double		mean_us;
	int64_t		samples;
	/* the least sample of this run of PARTOO_FLOOR_RUN and of the last one */
	int64_t		floor_now_us;
	int64_t		floor_last_us;
} PartooLatency;

/* samples in a run of the floor (the recent least latency) */
#define PARTOO_FLOOR_RUN 256

extern void partoo_latency_init(PartooLatency *l);
/* Add one answered request's duration; negative values are ignored */
extern void partoo_latency_add(PartooLatency *l, int64_t elapsed_us);
/* The estimate, or PARTOO_LATENCY_UNKNOWN until a sample came */
extern int64_t partoo_latency_us(const PartooLatency *l);

/*
 * The floor: the least of the last 256 to 512 samples, or
 * PARTOO_LATENCY_UNKNOWN.  An answer that comes while the worker is busy
 * with the database is seen late, so a busy worker observes a longer
 * mean latency than the API's; the floor is the API's own.  It sizes the
 * share of accounts without a limit, whose window would otherwise grow
 * with the worker's own load (more requests in flight, more load).
 */
extern int64_t partoo_latency_floor_us(const PartooLatency *l);

/*
 * The window for accounts whose limits add up to per_second requests a
 * second (0: none is limited), any_unlimited when an account has no
 * limit (it counts as PARTOO_UNLIMITED_RATE, at floor_us), at latency_us
 * (PARTOO_LATENCY_UNKNOWN: PARTOO_WINDOW_INITIAL); at most cap and at
 * most fd_room (the sockets the process can still open), at least 1.
 */
extern int	partoo_window_size(double per_second, bool any_unlimited,
							   int64_t latency_us, int64_t floor_us,
							   int cap, int fd_room);

#endif							/* PARTOO_CORE_WINDOW_H */
