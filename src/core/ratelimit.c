/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *		Per-account send limiter: token bucket, sliding window, pause.
 *
 * Partoo allows a number of requests per minute per organisation and
 * answers 429 beyond it.  A token bucket alone smooths sends but can let
 * per_minute + burst through in a minute; the window log makes the limit
 * exact: a send is allowed only when a token is available AND fewer than
 * per_minute sends happened in (now - 60500, now] (see LOG_GUARD_MS).  A pause set from a
 * 429's Retry-After blocks everything until it ends.
 *
 * Invariants: tokens are kept in fixed point (TOKEN_UNIT units per token,
 * refilled per_minute units per millisecond) so refill is exact integer
 * arithmetic; the ring holds the most recent sends, oldest at head, at
 * most per_minute of them (more only after a configure lowered the limit,
 * see there), so the window check looks at one entry, the per_minute-th
 * most recent.  The
 * ring grows by doubling up to per_minute as traffic needs it, which
 * keeps acquire O(1) amortised without allocating per_minute slots for a
 * limit that is never reached.
 *
 * Times are the caller's milliseconds.  Internally they are shifted by an
 * offset that absorbs any step backwards of the caller's clock (time then
 * simply stands still for the limiter), and clamped to +/- TIME_LIMIT so
 * no sum or difference can overflow whatever the caller passes.
 *
 * The limiter is not thread-safe; the worker owns one per account.
 *
 * src/core/ratelimit.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/ratelimit.h"

#include <stdlib.h>
#include <string.h>

#define WINDOW_MS			60000
/*
 * The window log looks back a little more than a minute.  NB: the server
 * counts requests when they arrive, we count them when we take the token;
 * the delay between the two varies from one request to the next, so an
 * exact 60 s window here could still be 121 requests in 60 s there.  The
 * guard costs under 1% of the allowed rate.
 */
#define LOG_GUARD_MS		500
#define LOG_WINDOW_MS		(WINDOW_MS + LOG_GUARD_MS)
/* One token, in refill units: per_minute units arrive each millisecond */
#define TOKEN_UNIT			((int64_t) WINDOW_MS)
/* Ring slots allocated up front; more are added when traffic needs them */
#define RING_INITIAL		64
/* About 73 million years of milliseconds; keeps all arithmetic in range */
#define TIME_LIMIT			((int64_t) 1 << 61)

struct PartooRateLimiter
{
	int			per_minute;		/* 0: unlimited */
	int			burst;
	int64_t		tokens;			/* in TOKEN_UNITs; full when unlimited */
	int64_t		capacity;		/* burst * TOKEN_UNIT */
	int64_t		last;			/* internal time of the latest call */
	int64_t		offset;			/* internal time = caller's time + offset */
	bool		paused;			/* pause_until() was ever called */
	int64_t		pause_end;		/* internal time */
	int64_t    *ring;			/* send times, internal */
	int			ring_cap;
	int			ring_len;
	int			ring_head;		/* index of the oldest entry */
};

static int
effective_burst(int per_minute, int burst)
{
	if (burst > 0)
		return burst;
	return per_minute / 60 > 1 ? per_minute / 60 : 1;
}

static int64_t
clamp_time(int64_t t)
{
	if (t < -TIME_LIMIT)
		return -TIME_LIMIT;
	if (t > TIME_LIMIT)
		return TIME_LIMIT;
	return t;
}

/*
 * Bring the limiter to the caller's now: map it to internal time (never
 * going backwards) and refill the bucket for the time that passed.
 * Returns the internal now.
 */
static int64_t
advance(PartooRateLimiter *rl, int64_t now_ms)
{
	int64_t		n = clamp_time(now_ms);
	int64_t		t = n + rl->offset;
	int64_t		elapsed;

	if (t < rl->last)
	{
		rl->offset = rl->last - n;
		t = rl->last;
	}
	if (t > TIME_LIMIT)
		t = TIME_LIMIT;
	elapsed = t - rl->last;
	rl->last = t;

	if (rl->per_minute > 0 && elapsed > 0)
	{
		/* compare first: elapsed * per_minute could overflow */
		if (elapsed >= (rl->capacity - rl->tokens) / rl->per_minute + 1)
			rl->tokens = rl->capacity;
		else
			rl->tokens += elapsed * rl->per_minute;
	}
	return t;
}

/*
 * Replace the ring by one of new_cap slots holding the most recent
 * min(ring_len, new_cap) entries, oldest first.  Returns false, leaving
 * the ring untouched, when memory runs out.
 */
static bool
resize_ring(PartooRateLimiter *rl, int new_cap)
{
	int64_t    *ring = NULL;
	int			keep = rl->ring_len < new_cap ? rl->ring_len : new_cap;
	int			skip = rl->ring_len - keep;
	int			i;

	if (new_cap > 0)
	{
		ring = malloc(sizeof(int64_t) * (size_t) new_cap);
		if (ring == NULL)
			return false;
		for (i = 0; i < keep; i++)
			ring[i] = rl->ring[(rl->ring_head + skip + i) % rl->ring_cap];
	}
	free(rl->ring);
	rl->ring = ring;
	rl->ring_cap = new_cap;
	rl->ring_len = keep;
	rl->ring_head = 0;
	return true;
}

static int
initial_ring_cap(int per_minute)
{
	return per_minute < RING_INITIAL ? per_minute : RING_INITIAL;
}

PartooRateLimiter *
partoo_ratelimit_create(int per_minute, int burst, int64_t now_ms)
{
	PartooRateLimiter *rl;

	if (per_minute < 0)
		return NULL;
	rl = calloc(1, sizeof(*rl));
	if (rl == NULL)
		return NULL;
	rl->per_minute = per_minute;
	rl->burst = effective_burst(per_minute, burst);
	rl->capacity = (int64_t) rl->burst * TOKEN_UNIT;
	rl->tokens = rl->capacity;
	rl->last = clamp_time(now_ms);
	if (!resize_ring(rl, initial_ring_cap(per_minute)))
	{
		free(rl);
		return NULL;
	}
	return rl;
}

void
partoo_ratelimit_free(PartooRateLimiter *rl)
{
	if (rl == NULL)
		return;
	free(rl->ring);
	free(rl);
}

/*
 * See core/ratelimit.h.  The bucket is refilled at the old rate up to now, then
 * keeps its tokens (capped by the new burst): changing limits grants no
 * free sends, except when going from unlimited to limited, where the
 * bucket starts full as a new one would.  Sends are not logged while
 * unlimited, so that history starts empty.  Returns 0, or -1 (nothing
 * changed) for a negative per_minute or when memory runs out.
 */
int
partoo_ratelimit_configure(PartooRateLimiter *rl, int per_minute, int burst,
						   int64_t now_ms)
{
	int			new_cap;
	int64_t		capacity;

	if (rl == NULL || per_minute < 0)
		return -1;
	advance(rl, now_ms);

	/*
	 * Keep every logged send, even beyond a lowered per_minute: the limit
	 * may be raised again while they are still in the window, and then
	 * they count again.  (Dropping them let a lower-then-higher pair of
	 * reloads allow more than per_minute sends in a minute.)  The ring
	 * holds at most the largest per_minute in force during the last
	 * window, and the extra entries leave as they expire.
	 */
	if (per_minute == 0)
		new_cap = 0;
	else
	{
		new_cap = rl->ring_len;
		if (new_cap < initial_ring_cap(per_minute))
			new_cap = initial_ring_cap(per_minute);
	}
	if (!resize_ring(rl, new_cap))
		return -1;

	capacity = (int64_t) effective_burst(per_minute, burst) * TOKEN_UNIT;
	if (rl->per_minute == 0 || rl->tokens > capacity)
		rl->tokens = capacity;
	rl->per_minute = per_minute;
	rl->burst = effective_burst(per_minute, burst);
	rl->capacity = capacity;
	return 0;
}

/*
 * Make room in the ring for one more send at internal time t, which the
 * caller has checked the window allows.  The oldest entry may be
 * overwritten once it has left the window, since it can never matter
 * again; otherwise the ring doubles (up to per_minute).  NB: a full ring
 * whose oldest entry is still in the window holds fewer than per_minute
 * entries (or the window would not have allowed this send), so growing
 * never shrinks it.  Returns false only when growing fails for lack of
 * memory.
 */
static bool
ring_make_room(PartooRateLimiter *rl, int64_t t)
{
	int			new_cap;

	if (rl->ring_len < rl->ring_cap)
		return true;
	if (rl->ring[rl->ring_head] + LOG_WINDOW_MS <= t)
	{
		rl->ring_head = (rl->ring_head + 1) % rl->ring_cap;
		rl->ring_len--;
		return true;
	}
	new_cap = rl->ring_cap > rl->per_minute / 2 ? rl->per_minute : rl->ring_cap * 2;
	return resize_ring(rl, new_cap);
}

/*
 * See core/ratelimit.h.  The wait returned is the exact time until every
 * condition holds at once: the pause has ended, a token has been refilled
 * and the oldest of the last per_minute sends has left the window.  Each
 * only moves forward as time passes, so their maximum is exact.
 */
int64_t
partoo_ratelimit_acquire(PartooRateLimiter *rl, int64_t now_ms)
{
	int64_t		t;
	int64_t		ready;

	if (rl == NULL)
		return 1;
	t = advance(rl, now_ms);
	ready = t;

	if (rl->paused && rl->pause_end > ready)
		ready = rl->pause_end;

	if (rl->per_minute > 0)
	{
		if (rl->tokens < TOKEN_UNIT)
		{
			int64_t		token_ready = t + (TOKEN_UNIT - rl->tokens + rl->per_minute - 1) /
				rl->per_minute;

			if (token_ready > ready)
				ready = token_ready;
		}
		if (rl->ring_len >= rl->per_minute)
		{
			/* the per_minute-th most recent send must have left the window */
			int64_t		nth = rl->ring[(rl->ring_head + rl->ring_len - rl->per_minute) %
									   rl->ring_cap];

			if (nth + LOG_WINDOW_MS > ready)
				ready = nth + LOG_WINDOW_MS;
		}
	}

	if (ready > t)
		return ready - t;
	if (rl->per_minute == 0)
		return 0;

	if (!ring_make_room(rl, t))
	{
		/* out of memory: wait for the oldest entry to leave instead */
		ready = rl->ring[rl->ring_head] + LOG_WINDOW_MS;
		return ready > t ? ready - t : 1;
	}
	rl->ring[(rl->ring_head + rl->ring_len) % rl->ring_cap] = t;
	rl->ring_len++;
	rl->tokens -= TOKEN_UNIT;
	return 0;
}

/*
 * See core/ratelimit.h.  The latest entry is the one to drop: the caller
 * releases right after the acquire that failed to turn into a request.
 */
void
partoo_ratelimit_release(PartooRateLimiter *rl, int64_t now_ms)
{
	if (rl == NULL)
		return;
	advance(rl, now_ms);
	if (rl->per_minute == 0)
		return;
	rl->tokens += TOKEN_UNIT;
	if (rl->tokens > rl->capacity)
		rl->tokens = rl->capacity;
	if (rl->ring_len > 0)
		rl->ring_len--;
}

/*
 * See core/ratelimit.h.  A pause is only ever extended: 429s answered to
 * concurrent requests arrive in any order, and the latest-processed one
 * must not shorten the wait another one asked for.
 */
void
partoo_ratelimit_pause_until(PartooRateLimiter *rl, int64_t until_ms)
{
	int64_t		until;

	if (rl == NULL)
		return;
	until = clamp_time(until_ms) + rl->offset;
	if (until > TIME_LIMIT)
		until = TIME_LIMIT;
	if (!rl->paused || until > rl->pause_end)
		rl->pause_end = until;
	rl->paused = true;
}

/* In the caller's clock; 0 if never paused */
int64_t
partoo_ratelimit_paused_until(const PartooRateLimiter *rl)
{
	if (rl == NULL || !rl->paused)
		return 0;
	return rl->pause_end - rl->offset;
}
