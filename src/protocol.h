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
extern bool partoo_ascii_caseeq(const char *a, const char *b);
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

/* ---------------------------------------------------------------------
 * Webhooks: parsing both formats into one event, the ordering rules, and
 * signatures (webhook_parse.c, webhook_order.c, signature.c).
 *
 * Two formats arrive (DESIGN.md section 6): Partoo's message_updated and
 * message_created events, and the dispatch API's per-part status
 * notifications.  Both become a PartooWebhookEvent.  The rules that decide
 * whether an event changes a message are pure functions here, so that
 * the SQL side only fetches state, asks, and writes the answer.
 * ---------------------------------------------------------------------
 */

/* Longest dispatchId, channelIdentifier, messageId, type or status */
#define PARTOO_WEBHOOK_FIELD_MAX_BYTES	255
/* Largest dispatch messageTotalParts (an SMS of 1,000 parts is 150 kB) */
#define PARTOO_DISPATCH_MAX_PARTS		1000

typedef enum PartooWebhookSource
{
	PARTOO_SOURCE_PARTOO = 1,	/* {"type": ..., "payload": {...}} */
	PARTOO_SOURCE_DISPATCH		/* {"dispatchId": ..., "status": ...} */
} PartooWebhookSource;

/* A Partoo message status; the first value also means "none yet" */
typedef enum PartooStatus
{
	PARTOO_STATUS_UNKNOWN = 0,
	PARTOO_STATUS_SENDING,
	PARTOO_STATUS_SUCCESS,
	PARTOO_STATUS_FAILED
} PartooStatus;

/* A dispatch part status; anything else is kept as PARTOO_DS_OTHER */
typedef enum PartooDispatchStatus
{
	PARTOO_DS_OTHER = 0,
	PARTOO_DS_DELIVERED,
	PARTOO_DS_READ,
	PARTOO_DS_NOSENT,
	PARTOO_DS_FAILED
} PartooDispatchStatus;

/*
 * One webhook event.  Made by partoo_webhook_parse() with malloc(), every
 * string owned by the struct; free it with partoo_webhook_event_free().
 * Strings are NUL-terminated, never contain a NUL, and are NULL when the
 * field was absent or JSON null.
 */
typedef struct PartooWebhookEvent
{
	PartooWebhookSource source;
	bool		concerns_status;	/* false: the outcome is "ignored" */
	char	   *event_type;		/* Partoo "type"; dispatch "event" */
	char	   *status_raw;		/* "status" as received */
	char	   *channel;		/* dispatch "channel"; Partoo
								 * conversation.messaging_partner */
	bool		has_event_at;
	int64_t		event_at;		/* dispatch statusDate; Partoo message date
								 * (Unix microseconds) */

	/*
	 * The duplicate-recognition key, built from parsed fields only, so
	 * that the same event with other whitespace or escapes gets the same
	 * key.  Partoo: "partoo/<type>/<id>/<Status>/<t|f|->" (is_deleted true,
	 * false, absent); the SQL side appends "/r<usec>" when a retry of the
	 * message has been recorded, because Partoo resends identical bodies
	 * for every attempt.  Dispatch: "dispatch/<n>:<dispatchId>/<n>:
	 * <channelIdentifier>/<part>/<statusDate>/<statusOrder>/<n>:<status>",
	 * <n> being the byte length of the string after it.  Events that
	 * concern no status: "partoo/ignored/<sha256 of the body without the
	 * whitespace outside strings>".
	 */
	char	   *dedup_key;

	/* Partoo format */
	int64_t		partoo_id;		/* payload.message.id, 0 if none */
	PartooStatus status;
	int			is_deleted;		/* 1, 0, or -1 when absent */
	char	   *content_type;	/* stored as received, never checked */
	char	   *sender_type;

	/* dispatch format */
	char	   *module;
	char	   *dispatch_id;
	char	   *message_id;
	char	   *recipient;		/* channelIdentifier */
	int32_t		part;			/* messagePart, default 1 */
	int32_t		total_parts;	/* messageTotalParts, default part */
	int32_t		status_order;	/* statusOrder, default 0 */
	PartooDispatchStatus dispatch_status;
	char	   *dispatch_metadata;	/* dispatchMetadata as compact JSON */
	char		order_key[96];	/* "<statusDate>#<statusOrder>", readable */
} PartooWebhookEvent;

/* What a malformed payload maps to on the SQL side */
typedef enum PartooWebhookErrorKind
{
	PARTOO_WHE_NONE = 0,
	PARTOO_WHE_SYNTAX,			/* 22P02 invalid_text_representation */
	PARTOO_WHE_INVALID,			/* 22023 invalid_parameter_value */
	PARTOO_WHE_TOO_LARGE,		/* 54000 program_limit_exceeded */
	PARTOO_WHE_NO_MEMORY
} PartooWebhookErrorKind;

/*
 * Why a payload was refused: message lower case without a trailing
 * period, detail a full sentence.  Field names may appear, values never
 * do (they are untrusted).
 */
typedef struct PartooWebhookError
{
	PartooWebhookErrorKind kind;
	char		message[160];
	char		detail[320];
} PartooWebhookError;

/*
 * Parse a raw webhook body of len bytes (any bytes; it need not be
 * NUL-terminated).  max_len > 0 refuses longer bodies (TOO_LARGE) before
 * looking at them.  Returns the event, or NULL with *err filled.  Refused:
 * not JSON, a \u0000 escape, not an object, neither format, a field of
 * the wrong type, an id or a date that does not parse, a dispatch part
 * outside 1..messageTotalParts, more than PARTOO_DISPATCH_MAX_PARTS parts.  Unknown event types, statuses, content
 * types and sender types are accepted.  Never throws; no global state.
 */
extern PartooWebhookEvent *partoo_webhook_parse(const char *body, size_t len,
												size_t max_len,
												PartooWebhookError *err);
extern void partoo_webhook_event_free(PartooWebhookEvent *ev);

/*
 * Parse an ISO 8601 date-time with a 'T' or a space between date and
 * time: "2023-01-31 16:22:17.327878+00:00", "2023-01-31T16:22:17Z",
 * 1 to 9 fraction digits (kept to the microsecond), offsets "Z", "+HH",
 * "+HHMM", "+HH:MM", or none (UTC).  Years 0001 to 9999.  Returns true
 * and sets *unix_usec, or false.
 */
extern bool partoo_parse_datetime(const char *s, int64_t *unix_usec);

/*
 * Decode base64 (standard or URL-safe alphabet, padding optional,
 * surrounding ASCII whitespace ignored) into out (outcap bytes).  Returns
 * the decoded length, or -1 when the input is not base64 or does not fit.
 */
extern long partoo_base64_decode(const char *in, size_t inlen,
								 unsigned char *out, size_t outcap);

/* Partoo statuses: names ("Sending"), local states ("sent") */
extern PartooStatus partoo_status_from_name(const char *name);
extern const char *partoo_status_name(PartooStatus s);
extern const char *partoo_status_local_state(PartooStatus s);
extern PartooDispatchStatus partoo_dispatch_status_from_name(const char *name);

/*
 * A Partoo message's status as the ordering rules see it.  retried: a
 * retry was requested after the status was recorded (retry_requested_at >
 * status_at).
 */
typedef struct PartooStatusState
{
	PartooStatus status;		/* UNKNOWN: none recorded */
	bool		retried;
	bool		is_deleted;
} PartooStatusState;

typedef enum PartooVerdict
{
	PARTOO_VERDICT_STALE = 0,	/* older than what is recorded */
	PARTOO_VERDICT_CONFIRM,		/* the status recorded, again */
	PARTOO_VERDICT_APPLY		/* a new status (or a new attempt) */
} PartooVerdict;

/*
 * Apply a Partoo event (status, is_deleted 1/0/-1) to *st and say what
 * it did to the status.  Partoo sends no event time, so the order is the
 * life cycle: Sending, then Success or Failed, which are final; a retry
 * recorded after the final status opens a new attempt.  So:
 *	 - nothing recorded: APPLY;
 *	 - the same status: CONFIRM, or APPLY if a retry came since;
 *	 - Sending -> Success or Failed: APPLY;
 *	 - Success or Failed -> Sending: APPLY only if a retry came since;
 *	 - Success -> Failed: APPLY only if a retry came since;
 *	 - Failed -> Success: APPLY (only a retry, recorded here or not yet,
 *	   can make a failed message succeed);
 *	 - otherwise STALE.
 * is_deleted is sticky: true is kept whatever the verdict, and never goes
 * back.  On APPLY, st->status is the incoming status and st->retried is
 * cleared (the caller stamps status_at).  *deleted_changed tells whether
 * is_deleted went from false to true.  An UNKNOWN incoming status is
 * STALE.
 */
extern PartooVerdict partoo_status_apply(PartooStatusState *st,
										 PartooStatus incoming,
										 int incoming_deleted,
										 bool *deleted_changed);

/*
 * The ordering key of a dispatch part status: (statusDate, statusOrder),
 * ties broken by the status's rank (other < DELIVERED < READ < NOSENT <
 * FAILED) and then by the raw text, so that the newest status of a part
 * never depends on the order notifications arrive in.
 */
typedef struct PartooDispatchOrder
{
	int64_t		status_date;	/* Unix microseconds */
	int32_t		status_order;
	PartooDispatchStatus status;
	const char *status_raw;		/* may be NULL (sorts first) */
} PartooDispatchOrder;

/* <0, 0, >0 like strcmp; an incoming status applies when it is > 0 */
extern int	partoo_dispatch_order_cmp(const PartooDispatchOrder *a,
									  const PartooDispatchOrder *b);

/*
 * The local state of a dispatch message from the newest status of each
 * of its n parts (part numbers in parts[], all distinct): "failed" if a
 * part is FAILED or NOSENT, else "read" if a part is READ, else
 * "delivered" if parts 1..total_parts are all DELIVERED or READ, else
 * "sent".
 */
extern const char *partoo_dispatch_state(const PartooDispatchStatus *statuses,
										 const int32_t *parts, int n,
										 int32_t total_parts);

/*
 * Ed25519 signatures (signature.c, OpenSSL libcrypto).  A key is loaded
 * from base64 SubjectPublicKeyInfo DER, the form Partoo publishes
 * ("MCowBQYDK2VwAyEA..."); loading refuses anything but Ed25519.
 */
typedef struct PartooPublicKey PartooPublicKey;

typedef enum PartooSignatureResult
{
	PARTOO_SIG_VALID = 0,
	PARTOO_SIG_INVALID,			/* well-formed, does not verify */
	PARTOO_SIG_MALFORMED,		/* not base64 of 64 bytes */
	PARTOO_SIG_ERROR			/* libcrypto failed (out of memory) */
} PartooSignatureResult;

/* NULL with errbuf filled (a sentence, never the key) when unusable */
extern PartooPublicKey *partoo_public_key_load(const char *spki_base64,
											   char *errbuf, size_t errlen);
extern void partoo_public_key_free(PartooPublicKey *key);

/* Verify base64 signature sig (sig_len bytes) over body[0..len) */
extern PartooSignatureResult partoo_signature_verify(const PartooPublicKey *key,
													 const char *sig,
													 size_t sig_len,
													 const void *body,
													 size_t len);

/*
 * Compare a secret given by a caller with the expected one in constant
 * time: both are hashed (SHA-256) and the digests compared with
 * CRYPTO_memcmp, so neither the content nor the length of the expected
 * secret shows in the timing.  An empty expected secret never matches.
 */
extern bool partoo_secret_equal(const char *given, size_t given_len,
								const char *expected, size_t expected_len);

#endif							/* PARTOO_PROTOCOL_H */
