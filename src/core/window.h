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
 * of the window is this rate x latency, and at least PARTOO_WINDOW_INITIAL
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
} PartooLatency;

extern void partoo_latency_init(PartooLatency *l);
/* Add one answered request's duration; negative values are ignored */
extern void partoo_latency_add(PartooLatency *l, int64_t elapsed_us);
/* The estimate, or PARTOO_LATENCY_UNKNOWN until a sample came */
extern int64_t partoo_latency_us(const PartooLatency *l);

/*
 * The window for accounts whose limits add up to per_second requests a
 * second (0: none is limited), any_unlimited when an account has no
 * limit (it counts as PARTOO_UNLIMITED_RATE), at latency_us
 * (PARTOO_LATENCY_UNKNOWN: PARTOO_WINDOW_INITIAL); at most cap and at
 * most fd_room (the sockets the process can still open), at least 1.
 */
extern int	partoo_window_size(double per_second, bool any_unlimited,
							   int64_t latency_us, int cap, int fd_room);

#endif							/* PARTOO_CORE_WINDOW_H */
