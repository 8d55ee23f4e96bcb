/*-------------------------------------------------------------------------
 *
 * message.h
 *		A message as the API knows it: channels, limits, validation, text
 *		sanitising, dates, request bodies and paths (validate.c,
 *		request.c).  Content types are described in core/content_type.h.
 *
 * Part of the protocol core (src/core/): plain C99 on top of libc, cJSON
 * and libcrypto, never postgres.h, so that it is unit-tested and fuzzed
 * without a server.  Memory handed out comes from malloc() and is released
 * with the matching *_free() function; nothing throws, nothing keeps
 * global state.
 *
 * src/core/message.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_CORE_MESSAGE_H
#define PARTOO_CORE_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/content_type.h"

/* Our own limits */
#define PARTOO_URL_MAX_BYTES		2048
#define PARTOO_FILENAME_MAX_BYTES	255

typedef enum PartooChannel
{
	PARTOO_CH_INVALID = -1,
	PARTOO_CH_NONE = 0,			/* not given: no channel check */
	PARTOO_CH_FACEBOOK,
	PARTOO_CH_INSTAGRAM,
	PARTOO_CH_SMS,
	PARTOO_CH_WHATSAPP,
	PARTOO_CH_GOOGLE
} PartooChannel;

/*
 * Names are matched case-insensitively (ASCII only, partoo_ascii_caseeq);
 * partoo_channel_name() gives the canonical spelling the API uses
 * ("Whatsapp", ...).  NULL maps to PARTOO_CH_NONE.  The content types'
 * names are in core/content_type.h.
 */
extern PartooChannel partoo_channel_from_name(const char *name);
extern const char *partoo_channel_name(PartooChannel ch);

/*
 * One outgoing message, as the SQL layer hands it over.  All strings are
 * NUL-terminated and expected to be UTF-8 (validation checks that); the
 * struct does not own them.
 */
typedef struct PartooMessage
{
	int64_t		conversation_id;
	PartooContentType content_type;
	const char *content;		/* Text: the text; NULL otherwise */
	const char *url;			/* media given by URL, or NULL */
	const unsigned char *image; /* Image upload bytes, or NULL */
	size_t		image_len;
	const char *filename;		/* upload's file name, or NULL */
	PartooChannel channel;
	const char *date;			/* ISO 8601 UTC, see partoo_format_date() */
} PartooMessage;

/* What a problem maps to on the SQL side */
typedef enum PartooProblemKind
{
	PARTOO_PROBLEM_NONE = 0,
	PARTOO_PROBLEM_INVALID,		/* 22023 invalid_parameter_value */
	PARTOO_PROBLEM_ENCODING,	/* 22021 character_not_in_repertoire */
	PARTOO_PROBLEM_TOO_LARGE	/* 54000 program_limit_exceeded */
} PartooProblemKind;

/*
 * A user-facing problem.  message is lower case without a trailing period
 * (PostgreSQL's errmsg style); detail and hint are full sentences or empty.
 */
typedef struct PartooProblem
{
	PartooProblemKind kind;
	char		message[256];
	char		detail[512];
	char		hint[512];
} PartooProblem;

#define PARTOO_VALID				0
#define PARTOO_VALID_WITH_WARNING	1
#define PARTOO_NOT_VALID			(-1)

/*
 * Check a message against the API contract before anything is sent or
 * queued: content type, Text has non-empty content, media has exactly one
 * of url/image, image only for Image, channel x content-type matrix, sizes,
 * URL scheme and length, UTF-8 of every string, conversation_id > 0.
 *
 * Returns PARTOO_VALID, PARTOO_NOT_VALID (err filled), or
 * PARTOO_VALID_WITH_WARNING (warning filled: a file type outside the
 * recommended list, judged from the URL path's extension or the upload's
 * magic bytes).  err and warning are always reset first.
 */
extern int	partoo_validate_message(const PartooMessage *m,
									PartooProblem *err,
									PartooProblem *warning);

/* True if buf[0..len) is well-formed UTF-8 (no overlongs, no surrogates) */
extern bool partoo_utf8_valid(const char *buf, size_t len);

/*
 * The one sanitiser of text that goes into messages and error texts: copy
 * src[0..srclen) into dst (capacity dstcap, always NUL-terminated) as one
 * line of printable text.  Well-formed UTF-8 sequences are kept when
 * keep_utf8 (otherwise each of their bytes becomes '?'); tab, CR and LF
 * become spaces; other control characters and the bytes of malformed
 * sequences become '?'.  Whole characters only.  Returns how many bytes of
 * src were consumed (fewer than srclen when dst is full); *dstlen (if not
 * NULL) gets the bytes written.
 */
extern size_t partoo_sanitize_text(const char *src, size_t srclen, char *dst,
								   size_t dstcap, bool keep_utf8,
								   size_t *dstlen);

/*
 * The one calendar of the protocol core: proleptic Gregorian, days counted
 * from 1970-01-01.
 */
extern int64_t partoo_days_from_civil(int64_t y, int m, int d);
extern void partoo_civil_from_days(int64_t days, int64_t *y, int *m, int *d);
extern bool partoo_is_leap_year(int64_t y);
extern int	partoo_days_in_month(int64_t y, int m);

/*
 * Format a Unix time in microseconds as ISO 8601 UTC with microseconds:
 * "2026-11-23T10:00:00.123456Z".  buf needs PARTOO_DATE_BUFLEN bytes.
 */
#define PARTOO_DATE_BUFLEN 40
extern void partoo_format_date(int64_t unix_usec, char *buf);

/*
 * A request body ready for the wire.  data is malloc'd and owned by the
 * struct; content_type is the Content-Type header value.
 */
typedef struct PartooBody
{
	char	   *data;
	size_t		len;
	char		content_type[128];
} PartooBody;

/*
 * Build the POST /messages body for a validated message: JSON in the
 * content type's PartooBodyShape (today Text: "content"; Image by URL:
 * top-level "url"; Audio/Video/Document: "content": {"url": ...}), or for
 * an upload multipart/form-data with parts conversation_id, content_type,
 * date and the content type's file part ("image" for an uploaded image).
 * Returns 0 on success, -1 on failure (out of memory, or a message that
 * would not validate), with out zeroed.  Free with partoo_body_free().
 */
extern int	partoo_build_send_body(const PartooMessage *m, PartooBody *out);
extern void partoo_body_free(PartooBody *b);

/*
 * Path of an endpoint relative to the base URL, into buf of buflen bytes:
 * "/messages" and "/messages/<id>/retry".  Returns buf.
 */
extern char *partoo_path_send(char *buf, size_t buflen);
extern char *partoo_path_retry(int64_t message_id, char *buf, size_t buflen);

#endif							/* PARTOO_CORE_MESSAGE_H */
