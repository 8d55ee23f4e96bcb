/*-------------------------------------------------------------------------
 *
 * ratelimit.h
 *		The per-account rate limiter (ratelimit.c).
 *
 * Part of the protocol core (src/core/): plain C99 on top of libc, cJSON
 * and libcrypto, never postgres.h, so that it is unit-tested and fuzzed
 * without a server.  Memory handed out comes from malloc() and is released
 * with the matching *_free() function; nothing throws, nothing keeps
 * global state.
 *
 * src/core/ratelimit.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_CORE_RATELIMIT_H
#define PARTOO_CORE_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Per-account rate limiter: a token bucket (rate per_minute/60 per second,
 * capacity burst) combined with an exact sliding-window log so that no
 * 60-second window ever holds more than per_minute sends, plus a pause
 * (from a 429's Retry-After) that blocks every send until it ends.
 * per_minute = 0 means unlimited (only pauses apply).  Times are
 * milliseconds on a monotonic clock chosen by the caller.
 */
typedef struct PartooRateLimiter PartooRateLimiter;

/* burst <= 0 picks the default: max(1, per_minute / 60) */
extern PartooRateLimiter *partoo_ratelimit_create(int per_minute, int burst,
												  int64_t now_ms);
extern void partoo_ratelimit_free(PartooRateLimiter *rl);
/* Change limits, keeping the history of recent sends */
extern int	partoo_ratelimit_configure(PartooRateLimiter *rl, int per_minute,
									   int burst, int64_t now_ms);
/*
 * Returns 0 and consumes one send if allowed now; otherwise the number of
 * milliseconds (>= 1) after which a send may be allowed.
 */
extern int64_t partoo_ratelimit_acquire(PartooRateLimiter *rl, int64_t now_ms);
/* Give back a send acquired but never made (keeps the window exact) */
extern void partoo_ratelimit_release(PartooRateLimiter *rl, int64_t now_ms);
extern void partoo_ratelimit_pause_until(PartooRateLimiter *rl,
										 int64_t until_ms);
extern int64_t partoo_ratelimit_paused_until(const PartooRateLimiter *rl);

#endif							/* PARTOO_CORE_RATELIMIT_H */
