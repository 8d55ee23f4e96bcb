/*-------------------------------------------------------------------------
 *
 * fuzz_ratelimit.c
 *		libFuzzer target: the per-account rate limiter.
 *
 * The input is a limiter's settings and a sequence of calls: acquires as
 * time moves on, releases of sends that were not made, pauses, new
 * settings, jumps of the clock forwards and (rarely) backwards.  A model
 * beside the limiter keeps every send that was made and checks, at each
 * successful acquire:
 *
 * - the window: no 60,000 ms window holds more than per_minute sends;
 * - the bucket: no interval [a, b] within one setting holds more than
 *   burst + (b - a) * per_minute / 60000 sends;
 * - the pause: nothing is sent before a pause ends;
 * and at each refusal, that the wait is at least the pause left, at most
 * about a window, and exact: asking again after it succeeds.
 *
 * Time is the limiter's own: the caller's clock, clamped to +/- 2^61 ms,
 * standing still when the caller's clock steps back (core/ratelimit.h leaves
 * the clock to the caller; ratelimit.c's header documents this reading).
 * Sends made while unlimited are not counted once a limit is set, which
 * is what partoo_ratelimit_configure() documents.  A release gives back
 * the latest send, and only one acquired since the last other call, as
 * the worker does with the tokens it reserved but did not use.
 *
 * test/core/fuzz/fuzz_ratelimit.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/api.h"
#include "core/message.h"
#include "core/ratelimit.h"
#include "reader.h"

#include <limits.h>
#include <stdbool.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define lengthof(a) (sizeof(a) / sizeof((a)[0]))

#define WINDOW_MS		60000
#define TIME_LIMIT		((int64_t) 1 << 61)
/* Far enough below TIME_LIMIT that waiting is still possible */
#define TIME_LIVE		(TIME_LIMIT - ((int64_t) 1 << 40))
/* How many past sends the bucket check looks at per acquire */
#define BUCKET_LOOKBACK	4096
#define MAX_OPS			20000

static const int per_minutes[] = {1, 2, 3, 7, 60, 61, 300, 1000, 0, 100000, INT_MAX, -1};
static const int bursts[] = {0, 1, 2, 3, 10, 300, -1, INT_MAX, INT_MIN};
static const int64_t starts[] = {
	0, INT64_C(1763892000000), INT64_C(-5000000000000),
	TIME_LIMIT - 1000000, -TIME_LIMIT, INT64_MAX - 10, INT64_MIN
};
static const int64_t steps[] = {1, 10, 100, 1000};

typedef struct Model
{
	int			per_minute;
	int			burst;			/* effective */
	size_t		epoch;			/* sends[epoch] is the first under these
								 * settings */
	int64_t		vlast;			/* virtual time of the latest call */
	int64_t		off;			/* virtual = clamped caller time + off */
	bool		paused;
	int64_t		pause_end;		/* virtual */
	int64_t    *sends;			/* virtual times of sends made, in order */
	size_t		nsends;
	size_t		cap;
	int			batch;			/* acquires that may still be released */
} Model;

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
	return t < -TIME_LIMIT ? -TIME_LIMIT : t > TIME_LIMIT ? TIME_LIMIT : t;
}

/* The caller's clock moves on by delta, saturating */
static int64_t
clock_add(int64_t now, int64_t delta)
{
	int64_t		r;

	if (__builtin_add_overflow(now, delta, &r))
		return delta > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

/* The virtual time of a call at caller time now */
static int64_t
model_time(Model *md, int64_t now)
{
	int64_t		n = clamp_time(now);
	int64_t		t = n + md->off;

	if (t < md->vlast)
	{
		md->off = md->vlast - n;
		t = md->vlast;
	}
	if (t > TIME_LIMIT)
		t = TIME_LIMIT;
	md->vlast = t;
	return t;
}

static void
model_send(Model *md, int64_t t)
{
	if (md->nsends == md->cap)
	{
		md->cap = md->cap ? md->cap * 2 : 256;
		md->sends = realloc(md->sends, md->cap * sizeof(int64_t));
		if (md->sends == NULL)
			abort();
	}
	md->sends[md->nsends++] = t;
}

/* A send at t was just allowed: check it against every rule */
static void
check_send(const Model *md, int64_t t)
{
	size_t		k = 0;
	size_t		j;

	FUZZ_ASSERT(!md->paused || t >= md->pause_end);
	if (md->per_minute == 0)
		return;

	/* the window (t - 60000, t], this send included */
	for (j = md->nsends; j > 0 && md->sends[j - 1] > t - WINDOW_MS; j--)
		k++;
	FUZZ_ASSERT(k <= (size_t) md->per_minute);

	/* the bucket, over each interval [sends[j], t] of this epoch */
	k = 0;
	for (j = md->nsends; j > 0 && md->nsends - j < BUCKET_LOOKBACK; j--)
	{
		int64_t		s = md->sends[j - 1];
		int64_t		d = t - s;

		if (j - 1 < md->epoch || d > ((int64_t) 1 << 32))
			break;
		k++;
		FUZZ_ASSERT((int64_t) k <= md->burst + d * md->per_minute / WINDOW_MS);
	}
}

/*
 * A refusal: the wait must cover the pause, and be no longer than the
 * pause or a window.  The window is allowed a second more, since the
 * limiter looks back a little more than a minute (LOG_GUARD_MS).
 */
static void
check_wait(const Model *md, int64_t t, int64_t wait)
{
	int64_t		bound = md->per_minute > 0 ? WINDOW_MS + 1000 : 0;

	FUZZ_ASSERT(wait >= 1);
	if (md->paused && md->pause_end > t)
	{
		FUZZ_ASSERT(wait >= md->pause_end - t);
		if (md->pause_end - t > bound)
			bound = md->pause_end - t;
	}
	FUZZ_ASSERT(wait <= bound);
}

static int64_t
acquire(PartooRateLimiter *rl, Model *md, int64_t now)
{
	int64_t		wait = partoo_ratelimit_acquire(rl, now);
	int64_t		t = model_time(md, now);

	if (wait == 0)
	{
		if (md->per_minute > 0)
		{
			model_send(md, t);
			check_send(md, t);
			md->batch++;
		}
		else
			check_send(md, t);
	}
	else
		check_wait(md, t, wait);
	return wait;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzReader	r;
	Model		md;
	PartooRateLimiter *rl;
	int64_t		now;
	int			pm;
	int			burst;
	int			ops = 0;

	fr_init(&r, data, size);
	pm = per_minutes[fr_u8(&r) % lengthof(per_minutes)];
	burst = bursts[fr_u8(&r) % lengthof(bursts)];
	now = starts[fr_u8(&r) % lengthof(starts)];

	rl = partoo_ratelimit_create(pm, burst, now);
	if (pm < 0)
	{
		FUZZ_ASSERT(rl == NULL);
		return 0;
	}
	FUZZ_ASSERT(rl != NULL);
	memset(&md, 0, sizeof(md));
	md.per_minute = pm;
	md.burst = effective_burst(pm, burst);
	md.vlast = clamp_time(now);

	while (r.left > 0 && ops++ < MAX_OPS)
	{
		uint8_t		op = fr_u8(&r);
		int64_t		wait;

		switch (op & 7)
		{
			case 0:
			case 1:
			case 2:
				/* time moves on a little, then a send is asked for */
				now = clock_add(now, (int64_t) fr_u8(&r) * steps[(op >> 3) & 3]);
				acquire(rl, &md, now);
				continue;		/* a batch goes on */

			case 3:
				/* ask, wait as told, ask again: the wait must be exact */
				wait = acquire(rl, &md, now);
				if (wait > 0)
				{
					bool		live = now > -TIME_LIMIT && md.vlast < TIME_LIVE;

					now = clock_add(now, wait);
					wait = acquire(rl, &md, now);
					if (live && now < TIME_LIVE)
						FUZZ_ASSERT(wait == 0);
				}
				continue;

			case 4:
				if (md.batch > 0)
				{
					/* the latest send was not made after all */
					partoo_ratelimit_release(rl, now);
					model_time(&md, now);
					md.nsends--;
					md.batch--;
					continue;
				}
				break;

			case 5:
				/* a 429 asks for a pause, in seconds, from now */
				{
					int64_t		until_ms = clock_add(now, (int64_t) fr_u8(&r) * 1000 - 10000);
					int64_t		until = clamp_time(until_ms) + md.off;

					partoo_ratelimit_pause_until(rl, until_ms);
					if (until > TIME_LIMIT)
						until = TIME_LIMIT;
					if (!md.paused || until > md.pause_end)
						md.pause_end = until;
					md.paused = true;
					FUZZ_ASSERT(partoo_ratelimit_paused_until(rl) == md.pause_end - md.off);
				}
				break;

			case 6:
				{
					int			npm = per_minutes[fr_u8(&r) % lengthof(per_minutes)];
					int			nburst = bursts[fr_u8(&r) % lengthof(bursts)];
					int			rc = partoo_ratelimit_configure(rl, npm, nburst, now);

					if (npm < 0)
					{
						FUZZ_ASSERT(rc == -1);
						break;
					}
					FUZZ_ASSERT(rc == 0);
					model_time(&md, now);
					if (md.per_minute == 0 || npm == 0)
						md.nsends = 0;	/* history starts afresh */
					md.per_minute = npm;
					md.burst = effective_burst(npm, nburst);
					md.epoch = md.nsends;
				}
				break;

			case 7:
				{
					uint8_t		how = fr_u8(&r);
					int64_t		amount = (int64_t) fr_uint(&r, 2);

					if (how < 200)
						now = clock_add(now, amount * 1000);	/* minutes on */
					else if (how < 250)
						now = clock_add(now, -amount);	/* the clock steps back */
					else
						now = starts[how % lengthof(starts)];
				}
				break;
		}
		md.batch = 0;
	}

	partoo_ratelimit_free(rl);
	free(md.sends);
	return 0;
}
