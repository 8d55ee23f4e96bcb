/*-------------------------------------------------------------------------
 *
 * webhook.h
 *		Webhook events: parsing both formats, statuses and the ordering
 *		rules (webhook_parse.c, webhook_order.c).
 *
 * Part of the protocol core (src/core/): plain C99 on top of libc, cJSON
 * and libcrypto, never postgres.h, so that it is unit-tested and fuzzed
 * without a server.  Memory handed out comes from malloc() and is released
 * with the matching *_free() function; nothing throws, nothing keeps
 * global state.
 *
 * src/core/webhook.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_CORE_WEBHOOK_H
#define PARTOO_CORE_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
 * The steps of partoo_webhook_parse(), for a caller that picks the format
 * itself (the server's table of formats).  partoo_webhook_json_open()
 * does every check that comes before the format is known (size, NUL,
 * JSON syntax, an object) and returns the parsed object, which the
 * caller frees with partoo_webhook_json_free(); NULL with *err filled
 * otherwise.  The recognisers look only at which top-level fields are
 * present (a JSON null counts as present).  The parsers take the object
 * and the body it came from, and return an event or NULL with *err
 * filled, like partoo_webhook_parse().  None of them throws.
 */
struct cJSON;
extern struct cJSON *partoo_webhook_json_open(const char *body, size_t len,
											  size_t max_len,
											  PartooWebhookError *err);
extern void partoo_webhook_json_free(struct cJSON *root);
extern bool partoo_webhook_json_has(const struct cJSON *root, const char *name);
extern bool partoo_webhook_is_partoo(const struct cJSON *root);
extern bool partoo_webhook_is_dispatch(const struct cJSON *root);
extern PartooWebhookEvent *partoo_webhook_parse_partoo(const struct cJSON *root,
													   const char *body, size_t len,
													   PartooWebhookError *err);
extern PartooWebhookEvent *partoo_webhook_parse_dispatch(const struct cJSON *root,
														 const char *body, size_t len,
														 PartooWebhookError *err);

/*
 * is_deleted (1, 0, or -1 when absent) as recorded in the dedup_key of a
 * Partoo status event, with or without the retry suffix (see
 * PartooWebhookEvent.dedup_key).  Returns false, leaving *is_deleted
 * alone, for any other string.
 */
extern bool partoo_webhook_key_is_deleted(const char *dedup_key, int *is_deleted);

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

#endif							/* PARTOO_CORE_WEBHOOK_H */
