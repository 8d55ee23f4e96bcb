/*-------------------------------------------------------------------------
 *
 * protocol.h
 *		The Partoo protocol core: names, validation, request bodies,
 *		response and error parsing, failure classes, backoff and rate
 *		limiting.
 *
 * NB: this header and the files implementing it (validate.c, request.c,
 * response.c, ratelimit.c) must never include postgres.h.  They are plain
 * C99 on top of libc and cJSON so that they can be unit-tested and fuzzed
 * without a server.  Memory they hand out comes from malloc() and is
 * released with the matching *_free() function; nothing here throws, and
 * nothing here keeps global state.
 *
 * src/protocol.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_PROTOCOL_H
#define PARTOO_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits from the API documentation (shared/seeds/partoo-send-message.md) */
#define PARTOO_IMAGE_MAX_BYTES		(5 * 1024 * 1024)
#define PARTOO_VIDEO_MAX_BYTES		(16 * 1024 * 1024)
#define PARTOO_AUDIO_MAX_BYTES		(16 * 1024 * 1024)
#define PARTOO_DOCUMENT_MAX_BYTES	(100 * 1024 * 1024)
/* Our own limits */
#define PARTOO_URL_MAX_BYTES		2048
#define PARTOO_TEXT_MAX_BYTES		(64 * 1024)
#define PARTOO_FILENAME_MAX_BYTES	255

typedef enum PartooContentType
{
	PARTOO_CT_INVALID = -1,
	PARTOO_CT_TEXT = 0,
	PARTOO_CT_IMAGE,
	PARTOO_CT_VIDEO,
	PARTOO_CT_AUDIO,
	PARTOO_CT_DOCUMENT
} PartooContentType;

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
 * Names are matched case-insensitively; the *_name() functions give the
 * canonical spelling the API uses ("Text", "Whatsapp", ...).  NULL maps to
 * PARTOO_CT_INVALID and PARTOO_CH_NONE respectively.
 */
extern PartooContentType partoo_content_type_from_name(const char *name);
extern const char *partoo_content_type_name(PartooContentType ct);
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
 * Build the POST /messages body for a validated message: JSON for Text,
 * Image-by-URL (top-level "url"), Audio/Video/Document ("content":
 * {"url": ...}); multipart/form-data with parts conversation_id,
 * content_type, date and a file part "image" for an uploaded image.
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

/* Parsed answer from the API */
typedef struct PartooApiResult
{
	long		http_status;	/* 0 when the transport failed */
	bool		body_is_json;
	bool		success;		/* 2xx and "status": "success" */
	bool		has_message_id;
	int64_t		message_id;
	char	   *error_text;		/* malloc'd one-line summary of an "errors"
								 * or "error" object, e.g.
								 * "authentication: User not authenticated";
								 * NULL if the body has none */
} PartooApiResult;

/*
 * Parse a response body of any size and content (it may be empty, not
 * JSON, or hostile).  Never fails; out is always initialised.  Free with
 * partoo_api_result_free().
 */
extern void partoo_parse_api_response(long http_status, const char *body,
									  size_t len, PartooApiResult *out);
extern void partoo_api_result_free(PartooApiResult *r);

/* How the outbox treats an outcome (DESIGN.md section 5) */
typedef enum PartooFailureClass
{
	PARTOO_FC_OK,				/* 2xx */
	PARTOO_FC_RETRYABLE,		/* transport failure (status 0), timeout,
								 * 408, 5xx, and any status not listed */
	PARTOO_FC_RATE_LIMITED,		/* 429 */
	PARTOO_FC_REJECTED			/* 400, 401, 403, 404, 409, 410, 413, 415,
								 * 422: retrying cannot fix it */
} PartooFailureClass;

extern PartooFailureClass partoo_classify_status(long http_status);

/*
 * Parse a Retry-After header value: delta-seconds or an IMF-fixdate
 * ("Sun, 06 Nov 1994 08:49:37 GMT") relative to now_unix.  Returns seconds
 * to wait (>= 0, capped at 86400), or -1 when the value is unusable.
 */
extern long partoo_parse_retry_after(const char *value, int64_t now_unix);

/*
 * Exponential backoff with full jitter: a delay uniformly drawn from
 * [0, min(max_ms, base_ms * 2^(attempt-1))], using random as the source
 * (any 64-bit value).  attempt >= 1.  Never overflows.
 */
extern int64_t partoo_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms,
								 uint64_t random);

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

#endif							/* PARTOO_PROTOCOL_H */
