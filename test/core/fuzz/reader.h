/*-------------------------------------------------------------------------
 *
 * reader.h
 *		Turning a fuzzer's bytes into structured values.
 *
 * libFuzzer hands a target an arbitrary byte string.  The targets that
 * build structured inputs (a message, a sequence of rate-limiter calls)
 * consume it front to back through a FuzzReader: every take returns a
 * value even when the input has run out (zeros then), so a short input is
 * simply a message with defaults, and a small change in the input is a
 * small change in what is built, which is what keeps mutation effective.
 *
 * Header-only, for one target per program: the helpers are static.
 *
 * test/core/fuzz/reader.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_FUZZ_READER_H
#define PARTOO_FUZZ_READER_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct FuzzReader
{
	const uint8_t *p;
	size_t		left;
} FuzzReader;

/* Stop the process in a way libFuzzer reports as a crash, with the input */
#define FUZZ_ASSERT(cond) \
	do { \
		if (!(cond)) \
			__builtin_trap(); \
	} while (0)

static inline void
fr_init(FuzzReader *r, const uint8_t *data, size_t size)
{
	r->p = data;
	r->left = size;
}

static inline uint8_t
fr_u8(FuzzReader *r)
{
	uint8_t		v;

	if (r->left == 0)
		return 0;
	v = *r->p;
	r->p++;
	r->left--;
	return v;
}

/* n bytes, little-endian, n <= 8 */
static inline uint64_t
fr_uint(FuzzReader *r, int n)
{
	uint64_t	v = 0;
	int			i;

	for (i = 0; i < n; i++)
		v |= (uint64_t) fr_u8(r) << (8 * i);
	return v;
}

/*
 * Point *out at up to want bytes of the input and return how many there
 * were.  The bytes stay in the fuzzer's buffer: copy them if they must
 * outlive the input or be NUL-terminated.
 */
static inline size_t
fr_bytes(FuzzReader *r, size_t want, const uint8_t **out)
{
	size_t		n = want < r->left ? want : r->left;

	*out = r->p;
	r->p += n;
	r->left -= n;
	return n;
}

/*
 * A byte string of plen bytes from prefix, then up to max more made of a
 * chunk (length byte, then that many bytes) repeated a number of times
 * (one byte below 0xF0, else three more bytes), so that a handful of
 * input bytes can describe megabytes while most inputs stay small and
 * fast.  *len gets the whole length; the result is malloc'd with a NUL
 * after it (not counted).  A NUL inside stays there: callers that want a
 * C string get it cut at the first one, exactly as the SQL layer's
 * strings would be.
 */
static inline char *
fr_blob_after(FuzzReader *r, const void *prefix, size_t plen, size_t max,
			  size_t *len)
{
	const uint8_t *chunk;
	size_t		chunklen = fr_bytes(r, fr_u8(r), &chunk);
	size_t		reps = fr_u8(r);
	size_t		total;
	size_t		i;
	char	   *buf;
	char	   *body;

	if (reps >= 0xF0)
		reps = (size_t) fr_uint(r, 3);
	if (reps == 0)
		reps = 1;
	if (chunklen == 0)
		total = 0;
	else if (reps > max / chunklen)
		total = max;
	else
		total = chunklen * reps;
	buf = malloc(plen + total + 1);
	if (buf == NULL)
		abort();
	memcpy(buf, prefix, plen);
	body = buf + plen;
	/* one chunk, then double what is there: few calls for megabytes */
	i = chunklen < total ? chunklen : total;
	memcpy(body, chunk, i);
	for (; i < total; i *= 2)
		memcpy(body + i, body, total - i < i ? total - i : i);
	body[total] = '\0';
	*len = plen + total;
	return buf;
}

/* The same without a prefix */
static inline char *
fr_blob(FuzzReader *r, size_t max, size_t *len)
{
	return fr_blob_after(r, "", 0, max, len);
}

#endif							/* PARTOO_FUZZ_READER_H */
