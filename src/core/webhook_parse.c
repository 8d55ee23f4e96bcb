/*-------------------------------------------------------------------------
 *
 * webhook_parse.c
 *		Webhook bodies into events.
 *
 * Two formats reach partoo_ingest_webhook() (DESIGN.md section 6):
 *
 *	 Partoo:   {"type": "message_updated", "payload": {"message": {...},
 *			   "conversation": {...}, "org_id": N}}
 *	 dispatch: {"dispatchId": "...", "channelIdentifier": "...",
 *			   "messagePart": 1, "messageTotalParts": 2, "status": "READ",
 *			   "statusDate": "...", "statusOrder": 3, ...}
 *
 * partoo_webhook_parse() turns either into a PartooWebhookEvent, checking
 * the type of every documented field it meets so that a broken sender is
 * told so (and nothing is recorded) rather than half understood.  Its
 * steps are exported too: partoo_webhook_json_open() checks the body and
 * parses the JSON, partoo_webhook_is_partoo()/_is_dispatch() recognise a
 * format, partoo_webhook_parse_partoo()/_dispatch() read one; the server
 * side calls them through its table of formats (src/server/
 * webhook_format.h), so that a format recognises and parses its own
 * bodies.  Values
 * a future API version may add (event types, statuses, content types,
 * sender types) are accepted and kept.  The body is untrusted bytes: it is
 * never read outside [body, body + len), and no error message repeats a
 * value from it.
 *
 * The rules that order the events are in webhook_order.c.
 *
 * Memory comes from malloc() and belongs to the returned event; nothing
 * here throws or keeps state between calls.
 *
 * src/core/webhook_parse.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/message.h"
#include "core/webhook.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>

/* Doubles represent every integer up to 2^53 exactly */
#define EXACT_DOUBLE_LIMIT	9007199254740992.0

#define lengthof(a) (sizeof(a) / sizeof((a)[0]))

static void set_error(PartooWebhookError *err, PartooWebhookErrorKind kind,
					  const char *message, const char *fmt,...)
			__attribute__((format(printf, 4, 5)));

static void
set_error(PartooWebhookError *err, PartooWebhookErrorKind kind,
		  const char *message, const char *fmt,...)
{
	va_list		ap;

	/* keep the first error: it is the one that explains the others */
	if (err->kind != PARTOO_WHE_NONE)
		return;
	err->kind = kind;
	snprintf(err->message, sizeof(err->message), "%s", message);
	va_start(ap, fmt);
	vsnprintf(err->detail, sizeof(err->detail), fmt, ap);
	va_end(ap);
}

static void
no_memory(PartooWebhookError *err)
{
	set_error(err, PARTOO_WHE_NO_MEMORY, "out of memory",
			  "Parsing the webhook payload ran out of memory.");
}

/*
 * True if the body holds a raw NUL byte or a \u0000 escape.  Either would
 * cut a C string short (so two different ids could look the same), and
 * PostgreSQL's text and jsonb refuse both.  A backslash outside a string
 * is invalid JSON anyway, so skipping the character after each backslash
 * is enough to tell "\u0000" from "\\u0000".
 */
static bool
has_nul(const char *s, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
	{
		if (s[i] == '\0')
			return true;
		if (s[i] == '\\' && i + 1 < len)
		{
			if (s[i + 1] == 'u' && i + 5 < len &&
				s[i + 2] == '0' && s[i + 3] == '0' &&
				s[i + 4] == '0' && s[i + 5] == '0')
				return true;
			i++;
		}
	}
	return false;
}

/* ----------------------------------------------------------------
 * Dates
 * ----------------------------------------------------------------
 */

/* Read exactly n digits at *p into *out, advancing *p */
static bool
read_digits(const char **p, int n, int *out)
{
	int			v = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		char		c = (*p)[i];

		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return true;
}

bool
partoo_parse_datetime(const char *s, int64_t *unix_usec)
{
	const char *p = s;
	int			year,
				month,
				day,
				hour,
				minute,
				second = 0;
	int64_t		usec = 0;
	int64_t		offset_s = 0;
	int64_t		t;

	if (s == NULL)
		return false;
	if (!read_digits(&p, 4, &year) || *p++ != '-' ||
		!read_digits(&p, 2, &month) || *p++ != '-' ||
		!read_digits(&p, 2, &day))
		return false;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return false;
	p++;
	if (!read_digits(&p, 2, &hour) || *p++ != ':' ||
		!read_digits(&p, 2, &minute))
		return false;
	if (*p == ':')
	{
		p++;
		if (!read_digits(&p, 2, &second))
			return false;
		if (*p == '.' || *p == ',')
		{
			int64_t		scale = 100000;
			int			ndigits = 0;

			p++;
			while (*p >= '0' && *p <= '9')
			{
				if (ndigits < 6)
				{
					usec += (*p - '0') * scale;
					scale /= 10;
				}
				ndigits++;
				p++;
			}
			if (ndigits < 1 || ndigits > 9)
				return false;
		}
	}
	if (*p == 'Z' || *p == 'z')
		p++;
	else if (*p == '+' || *p == '-')
	{
		int			sign = *p == '-' ? -1 : 1;
		int			oh,
					om = 0;

		p++;
		if (!read_digits(&p, 2, &oh))
			return false;
		if (*p == ':')
		{
			p++;
			if (!read_digits(&p, 2, &om))
				return false;
		}
		else if (*p >= '0' && *p <= '9')
		{
			if (!read_digits(&p, 2, &om))
				return false;
		}
		if (oh > 23 || om > 59)
			return false;
		offset_s = sign * (oh * 3600 + om * 60);
	}
	if (*p != '\0')
		return false;

	if (year < 1 || month < 1 || month > 12 || day < 1 ||
		day > partoo_days_in_month(year, month) ||
		hour > 23 || minute > 59 || second > 59)
		return false;

	t = partoo_days_from_civil(year, month, day) * 86400 +
		hour * 3600 + minute * 60 + second - offset_s;
	*unix_usec = t * 1000000 + usec;
	return true;
}

/* ----------------------------------------------------------------
 * Base64
 * ----------------------------------------------------------------
 */

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

long
partoo_base64_decode(const char *in, size_t inlen, unsigned char *out,
					 size_t outcap)
{
	size_t		start = 0;
	size_t		end = inlen;
	size_t		npad = 0;
	size_t		ndata;
	size_t		outlen;
	size_t		i;
	uint32_t	acc = 0;
	int			bits = 0;
	size_t		o = 0;

	if (in == NULL)
		return -1;
	while (start < end && is_space(in[start]))
		start++;
	while (end > start && is_space(in[end - 1]))
		end--;
	while (end > start && in[end - 1] == '=' && npad < 2)
	{
		end--;
		npad++;
	}
	ndata = end - start;
	if (ndata == 0 || ndata % 4 == 1)
		return -1;
	/* padding, when present, must complete the last quantum */
	if (npad > 0 && (ndata + npad) % 4 != 0)
		return -1;
	outlen = ndata / 4 * 3 + (ndata % 4 == 0 ? 0 : ndata % 4 - 1);
	if (outlen > outcap)
		return -1;

	for (i = start; i < end; i++)
	{
		int			v = b64_value((unsigned char) in[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t) v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			out[o++] = (unsigned char) (acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* the unused low bits of the last character must be zero */
	if (acc != 0)
		return -1;
	return (long) o;
}

/* ----------------------------------------------------------------
 * Field access with type checks.  Each returns false with *err set when
 * the field has the wrong type; an absent field and JSON null are the
 * same thing.  path is the field's dotted name for the error message.
 * ----------------------------------------------------------------
 */

static void
wrong_type(PartooWebhookError *err, const char *path, const char *what)
{
	set_error(err, PARTOO_WHE_INVALID, "webhook payload has a field of the wrong type",
			  "Field \"%s\" must be %s.", path, what);
}

static const cJSON *
field(const cJSON *obj, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);

	return (f == NULL || cJSON_IsNull(f)) ? NULL : f;
}

/* A string field, copied; *out stays NULL when absent */
static bool
get_string(const cJSON *obj, const char *name, const char *path,
		   size_t maxlen, bool required, char **out, PartooWebhookError *err)
{
	const cJSON *f = field(obj, name);
	size_t		len;

	*out = NULL;
	if (f == NULL)
	{
		if (required)
		{
			set_error(err, PARTOO_WHE_INVALID, "webhook payload lacks a required field",
					  "Field \"%s\" is required.", path);
			return false;
		}
		return true;
	}
	if (!cJSON_IsString(f) || f->valuestring == NULL)
	{
		wrong_type(err, path, "a string");
		return false;
	}
	len = strlen(f->valuestring);
	if (maxlen > 0 && len > maxlen)
	{
		set_error(err, PARTOO_WHE_INVALID, "webhook payload has a field that is too long",
				  "Field \"%s\" is longer than %zu bytes.", path, maxlen);
		return false;
	}
	if (required && len == 0)
	{
		set_error(err, PARTOO_WHE_INVALID, "webhook payload has an empty required field",
				  "Field \"%s\" must not be empty.", path);
		return false;
	}
	*out = strdup(f->valuestring);
	if (*out == NULL)
	{
		no_memory(err);
		return false;
	}
	return true;
}

/* An integer field in [min, max]; *present tells whether it was there */
static bool
get_int(const cJSON *obj, const char *name, const char *path,
		int64_t min, int64_t max, int64_t *out, bool *present,
		PartooWebhookError *err)
{
	const cJSON *f = field(obj, name);
	double		v;

	*present = false;
	if (f == NULL)
		return true;
	if (!cJSON_IsNumber(f))
	{
		wrong_type(err, path, "an integer");
		return false;
	}
	v = f->valuedouble;
	if (!isfinite(v) || v != floor(v) || fabs(v) > EXACT_DOUBLE_LIMIT)
	{
		wrong_type(err, path, "an integer");
		return false;
	}
	if (v < (double) min || v > (double) max)
	{
		set_error(err, PARTOO_WHE_INVALID, "webhook payload has a number out of range",
				  "Field \"%s\" must be between %" PRId64 " and %" PRId64 ".",
				  path, min, max);
		return false;
	}
	*out = (int64_t) v;
	*present = true;
	return true;
}

static bool
check_bool(const cJSON *obj, const char *name, const char *path, int *out,
		   PartooWebhookError *err)
{
	const cJSON *f = field(obj, name);

	*out = -1;
	if (f == NULL)
		return true;
	if (!cJSON_IsBool(f))
	{
		wrong_type(err, path, "a boolean");
		return false;
	}
	*out = cJSON_IsTrue(f) ? 1 : 0;
	return true;
}

/* An object field (or absent): *out is NULL when absent */
static bool
get_object(const cJSON *obj, const char *name, const char *path,
		   bool required, const cJSON **out, PartooWebhookError *err)
{
	const cJSON *f = field(obj, name);

	*out = NULL;
	if (f == NULL)
	{
		if (required)
		{
			set_error(err, PARTOO_WHE_INVALID, "webhook payload lacks a required field",
					  "Field \"%s\" is required.", path);
			return false;
		}
		return true;
	}
	if (!cJSON_IsObject(f))
	{
		wrong_type(err, path, "an object");
		return false;
	}
	*out = f;
	return true;
}

static bool
get_date(const cJSON *obj, const char *name, const char *path, bool required,
		 int64_t *out, bool *present, PartooWebhookError *err)
{
	char	   *s;
	bool		ok;

	*present = false;
	if (!get_string(obj, name, path, 64, required, &s, err))
		return false;
	if (s == NULL)
		return true;
	ok = partoo_parse_datetime(s, out);
	free(s);
	if (!ok)
	{
		set_error(err, PARTOO_WHE_INVALID, "webhook payload has an invalid date",
				  "Field \"%s\" must be an ISO 8601 date-time such as \"2023-01-31 16:22:17.327878+00:00\".",
				  path);
		return false;
	}
	*present = true;
	return true;
}

/* malloc'd printf; NULL when out of memory */
static char *
mprintf(const char *fmt,...)
			__attribute__((format(printf, 1, 2)));

static char *
mprintf(const char *fmt,...)
{
	va_list		ap;
	int			n;
	char	   *buf;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	buf = malloc((size_t) n + 1);
	if (buf == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(buf, (size_t) n + 1, fmt, ap);
	va_end(ap);
	return buf;
}

/*
 * Key of an event that concerns no status: the SHA-256 of the body with
 * the whitespace outside strings removed.  NB: not of cJSON's re-print,
 * which rounds numbers beyond 15 significant digits and would make two
 * different events look the same.  The body has been parsed, so it is
 * valid JSON: outside strings, a backslash cannot occur.
 */
static char *
canonical_hash_key(const char *body, size_t len)
{
	char	   *compact = malloc(len + 1);
	size_t		n = 0;
	size_t		i;
	bool		in_string = false;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char		hex[2 * EVP_MAX_MD_SIZE + 1];
	int			ok;

	if (compact == NULL)
		return NULL;
	for (i = 0; i < len; i++)
	{
		char		c = body[i];

		if (in_string)
		{
			compact[n++] = c;
			if (c == '\\' && i + 1 < len)
				compact[n++] = body[++i];
			else if (c == '"')
				in_string = false;
		}
		else if (!is_space(c))
		{
			compact[n++] = c;
			if (c == '"')
				in_string = true;
		}
	}
	ok = EVP_Digest(compact, n, md, &mdlen, EVP_sha256(), NULL);
	free(compact);
	if (!ok)
		return NULL;
	for (i = 0; i < mdlen; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	return mprintf("partoo/ignored/%s", hex);
}

/* ----------------------------------------------------------------
 * The two formats
 * ----------------------------------------------------------------
 */

static bool
parse_partoo(const cJSON *root, const char *body, size_t len,
			 PartooWebhookEvent *ev, PartooWebhookError *err)
{
	const cJSON *payload;
	const cJSON *msg;
	const cJSON *conv;
	const cJSON *f;
	int64_t		n;
	bool		present;
	bool		is_status_event;
	char	   *sender_label = NULL;
	bool		consumer = false;

	ev->source = PARTOO_SOURCE_PARTOO;
	ev->is_deleted = -1;
	if (!get_string(root, "type", "type", PARTOO_WEBHOOK_FIELD_MAX_BYTES, true,
					&ev->event_type, err) ||
		!get_object(root, "payload", "payload", true, &payload, err))
		return false;

	is_status_event = strcmp(ev->event_type, "message_updated") == 0 ||
		strcmp(ev->event_type, "message_created") == 0;
	if (is_status_event)
	{
		if (!get_object(payload, "message", "payload.message", true, &msg, err) ||
			!get_int(msg, "id", "payload.message.id", 1, INT64_C(9007199254740992),
					 &ev->partoo_id, &present, err))
			return false;
		if (!present)
		{
			set_error(err, PARTOO_WHE_INVALID, "webhook payload lacks a required field",
					  "Field \"%s\" is required.", "payload.message.id");
			return false;
		}
		if (!get_int(msg, "conversation_id", "payload.message.conversation_id",
					 INT64_MIN, INT64_MAX, &n, &present, err) ||
			!get_date(msg, "date", "payload.message.date", false,
					  &ev->event_at, &ev->has_event_at, err) ||
			!get_string(msg, "content_type", "payload.message.content_type",
						PARTOO_WEBHOOK_FIELD_MAX_BYTES, false, &ev->content_type, err) ||
			!get_string(msg, "sender_type", "payload.message.sender_type",
						PARTOO_WEBHOOK_FIELD_MAX_BYTES, false, &ev->sender_type, err) ||
			!get_string(msg, "sender_label", "payload.message.sender_label",
						0, false, &sender_label, err) ||
			!get_string(msg, "status", "payload.message.status",
						PARTOO_WEBHOOK_FIELD_MAX_BYTES, false, &ev->status_raw, err) ||
			!check_bool(msg, "is_deleted", "payload.message.is_deleted",
						&ev->is_deleted, err))
		{
			free(sender_label);
			return false;
		}
		free(sender_label);
		f = field(msg, "user_id");
		if (f != NULL && !cJSON_IsString(f) && !cJSON_IsNumber(f))
		{
			wrong_type(err, "payload.message.user_id", "a string or a number");
			return false;
		}
		if (!get_object(payload, "conversation", "payload.conversation", false,
						&conv, err))
			return false;
		if (conv != NULL &&
			(!get_int(conv, "id", "payload.conversation.id", INT64_MIN, INT64_MAX,
					  &n, &present, err) ||
			 !get_string(conv, "messaging_partner",
						 "payload.conversation.messaging_partner",
						 PARTOO_WEBHOOK_FIELD_MAX_BYTES, false, &ev->channel, err)))
			return false;
		if (!get_int(payload, "org_id", "payload.org_id", INT64_MIN, INT64_MAX,
					 &n, &present, err))
			return false;

		ev->status = partoo_status_from_name(ev->status_raw);
		consumer = ev->sender_type != NULL &&
			partoo_ascii_caseeq(ev->sender_type, "Consumer");
	}

	/*
	 * A consumer's message was not sent by partoo, and a status partoo
	 * does not know cannot be ordered: both are recorded as ignored.
	 */
	ev->concerns_status = is_status_event && !consumer &&
		ev->status != PARTOO_STATUS_UNKNOWN;
	if (ev->concerns_status)
		ev->dedup_key = mprintf("partoo/%s/%" PRId64 "/%s/%c",
								ev->event_type, ev->partoo_id,
								partoo_status_name(ev->status),
								ev->is_deleted == 1 ? 't' :
								ev->is_deleted == 0 ? 'f' : '-');
	else
		ev->dedup_key = canonical_hash_key(body, len);
	if (ev->dedup_key == NULL)
	{
		no_memory(err);
		return false;
	}
	return true;
}

static bool
parse_dispatch(const cJSON *root, PartooWebhookEvent *ev, PartooWebhookError *err)
{
	const cJSON *meta;
	const cJSON *rmeta;
	int64_t		n;
	bool		present;
	char		date[PARTOO_DATE_BUFLEN];

	ev->source = PARTOO_SOURCE_DISPATCH;
	ev->is_deleted = -1;
	if (!get_string(root, "dispatchId", "dispatchId", PARTOO_WEBHOOK_FIELD_MAX_BYTES,
					true, &ev->dispatch_id, err) ||
		!get_string(root, "channelIdentifier", "channelIdentifier",
					PARTOO_WEBHOOK_FIELD_MAX_BYTES, true, &ev->recipient, err) ||
		!get_string(root, "status", "status", PARTOO_WEBHOOK_FIELD_MAX_BYTES,
					true, &ev->status_raw, err) ||
		!get_date(root, "statusDate", "statusDate", true, &ev->event_at,
				  &ev->has_event_at, err) ||
		!get_string(root, "event", "event", PARTOO_WEBHOOK_FIELD_MAX_BYTES,
					false, &ev->event_type, err) ||
		!get_string(root, "module", "module", PARTOO_WEBHOOK_FIELD_MAX_BYTES,
					false, &ev->module, err) ||
		!get_string(root, "messageId", "messageId", PARTOO_WEBHOOK_FIELD_MAX_BYTES,
					false, &ev->message_id, err) ||
		!get_string(root, "channel", "channel", PARTOO_WEBHOOK_FIELD_MAX_BYTES,
					false, &ev->channel, err))
		return false;

	ev->part = 1;
	if (!get_int(root, "messagePart", "messagePart", 1, PARTOO_DISPATCH_MAX_PARTS,
				 &n, &present, err))
		return false;
	if (present)
		ev->part = (int32_t) n;
	ev->total_parts = ev->part;
	if (!get_int(root, "messageTotalParts", "messageTotalParts", 1,
				 PARTOO_DISPATCH_MAX_PARTS, &n, &present, err))
		return false;
	if (present)
		ev->total_parts = (int32_t) n;
	if (ev->part > ev->total_parts)
	{
		set_error(err, PARTOO_WHE_INVALID, "webhook payload has a part number out of range",
				  "Field \"messagePart\" must not exceed \"messageTotalParts\".");
		return false;
	}
	if (!get_int(root, "statusOrder", "statusOrder", INT32_MIN, INT32_MAX,
				 &n, &present, err))
		return false;
	ev->status_order = present ? (int32_t) n : 0;

	if (!get_object(root, "dispatchMetadata", "dispatchMetadata", false, &meta, err) ||
		!get_object(root, "recipientMetadata", "recipientMetadata", false, &rmeta, err))
		return false;
	if (meta != NULL)
	{
		char	   *s = cJSON_PrintUnformatted(meta);

		/* keep it in our malloc world: the caller frees with free() */
		if (s != NULL)
		{
			ev->dispatch_metadata = strdup(s);
			cJSON_free(s);
		}
		if (ev->dispatch_metadata == NULL)
		{
			no_memory(err);
			return false;
		}
	}

	ev->dispatch_status = partoo_dispatch_status_from_name(ev->status_raw);
	ev->concerns_status = true;
	partoo_format_date(ev->event_at, date);
	snprintf(ev->order_key, sizeof(ev->order_key), "%s#%" PRId32,
			 date, ev->status_order);
	ev->dedup_key = mprintf("dispatch/%zu:%s/%zu:%s/%" PRId32 "/%s/%" PRId32 "/%zu:%s",
							strlen(ev->dispatch_id), ev->dispatch_id,
							strlen(ev->recipient), ev->recipient,
							ev->part, date, ev->status_order,
							strlen(ev->status_raw), ev->status_raw);
	if (ev->dedup_key == NULL)
	{
		no_memory(err);
		return false;
	}
	return true;
}

/*
 * A new event for parse(), or NULL with *err set.  The caller frees it
 * with partoo_webhook_event_free() when parse() fails.
 */
static PartooWebhookEvent *
new_event(PartooWebhookError *err)
{
	PartooWebhookEvent *ev = calloc(1, sizeof(PartooWebhookEvent));

	if (ev == NULL)
		no_memory(err);
	return ev;
}

PartooWebhookEvent *
partoo_webhook_parse_partoo(const struct cJSON *root, const char *body,
							size_t len, PartooWebhookError *err)
{
	PartooWebhookEvent *ev;

	memset(err, 0, sizeof(*err));
	ev = new_event(err);
	if (ev != NULL && !parse_partoo(root, body, len, ev, err))
	{
		partoo_webhook_event_free(ev);
		ev = NULL;
	}
	return ev;
}

PartooWebhookEvent *
partoo_webhook_parse_dispatch(const struct cJSON *root, const char *body,
							  size_t len, PartooWebhookError *err)
{
	PartooWebhookEvent *ev;

	memset(err, 0, sizeof(*err));
	ev = new_event(err);
	if (ev != NULL && !parse_dispatch(root, ev, err))
	{
		partoo_webhook_event_free(ev);
		ev = NULL;
	}
	return ev;
}

bool
partoo_webhook_json_has(const struct cJSON *root, const char *name)
{
	return cJSON_GetObjectItemCaseSensitive(root, name) != NULL;
}

bool
partoo_webhook_is_partoo(const struct cJSON *root)
{
	return partoo_webhook_json_has(root, "type") &&
		partoo_webhook_json_has(root, "payload");
}

bool
partoo_webhook_is_dispatch(const struct cJSON *root)
{
	return partoo_webhook_json_has(root, "dispatchId");
}

struct cJSON *
partoo_webhook_json_open(const char *body, size_t len, size_t max_len,
						 PartooWebhookError *err)
{
	cJSON	   *root;
	const char *end = NULL;

	memset(err, 0, sizeof(*err));
	if (max_len > 0 && len > max_len)
	{
		set_error(err, PARTOO_WHE_TOO_LARGE, "webhook payload is too large",
				  "The payload has %zu bytes; partoo.webhook_max_bytes allows %zu.",
				  len, max_len);
		return NULL;
	}
	if (body == NULL || len == 0)
	{
		set_error(err, PARTOO_WHE_SYNTAX, "webhook payload is not valid JSON",
				  "The payload is empty.");
		return NULL;
	}
	if (has_nul(body, len))
	{
		set_error(err, PARTOO_WHE_SYNTAX, "webhook payload is not valid JSON",
				  "The payload contains a NUL character or a \\u0000 escape, which partoo does not accept.");
		return NULL;
	}

	root = cJSON_ParseWithLengthOpts(body, len, &end, false);
	if (root == NULL)
	{
		size_t		at = (end != NULL && end >= body && end <= body + len) ?
			(size_t) (end - body) : 0;

		set_error(err, PARTOO_WHE_SYNTAX, "webhook payload is not valid JSON",
				  "Parsing failed at byte %zu.", at);
		return NULL;
	}
	/* only whitespace may follow the value */
	while (end != NULL && end < body + len && is_space(*end))
		end++;
	if (end == NULL || end != body + len)
	{
		cJSON_Delete(root);
		set_error(err, PARTOO_WHE_SYNTAX, "webhook payload is not valid JSON",
				  "Unexpected characters follow the JSON value at byte %zu.",
				  end != NULL ? (size_t) (end - body) : 0);
		return NULL;
	}
	if (!cJSON_IsObject(root))
	{
		cJSON_Delete(root);
		set_error(err, PARTOO_WHE_INVALID, "webhook payload is not a JSON object",
				  "Both webhook formats are JSON objects.");
		return NULL;
	}
	return root;
}

void
partoo_webhook_json_free(struct cJSON *root)
{
	cJSON_Delete(root);
}

PartooWebhookEvent *
partoo_webhook_parse(const char *body, size_t len, size_t max_len,
					 PartooWebhookError *err)
{
	cJSON	   *root;
	PartooWebhookEvent *ev;

	root = partoo_webhook_json_open(body, len, max_len, err);
	if (root == NULL)
		return NULL;
	if (partoo_webhook_is_partoo(root))
		ev = partoo_webhook_parse_partoo(root, body, len, err);
	else if (partoo_webhook_is_dispatch(root))
		ev = partoo_webhook_parse_dispatch(root, body, len, err);
	else
	{
		set_error(err, PARTOO_WHE_INVALID, "webhook payload is in no known format",
				  "A Partoo event has the fields \"type\" and \"payload\"; a dispatch status notification has \"dispatchId\".");
		ev = NULL;
	}
	cJSON_Delete(root);
	return ev;
}

/*
 * is_deleted as a Partoo status event's dedup_key records it:
 * "partoo/<type>/<id>/<Status>/<t|f|->", optionally followed by the
 * retry suffix "/r<usec>".
 */
bool
partoo_webhook_key_is_deleted(const char *dedup_key, int *is_deleted)
{
	static const char prefix[] = "partoo/";
	size_t		len;
	size_t		i;
	int			slashes = 0;

	if (dedup_key == NULL || strncmp(dedup_key, prefix, strlen(prefix)) != 0 ||
		strncmp(dedup_key, "partoo/ignored/", strlen("partoo/ignored/")) == 0)
		return false;
	len = strlen(dedup_key);

	/* strip the retry suffix: "/r", an optional '-', digits */
	i = len;
	while (i > 0 && dedup_key[i - 1] >= '0' && dedup_key[i - 1] <= '9')
		i--;
	if (i < len)
	{
		if (i > 0 && dedup_key[i - 1] == '-')
			i--;
		if (i < 2 || dedup_key[i - 1] != 'r' || dedup_key[i - 2] != '/')
			return false;
		len = i - 2;
	}

	/* "partoo/<type>/<id>/<Status>/<flag>": four slashes before the flag */
	if (len < 2 || dedup_key[len - 2] != '/')
		return false;
	for (i = 0; i < len - 1; i++)
		if (dedup_key[i] == '/')
			slashes++;
	if (slashes != 4)
		return false;
	switch (dedup_key[len - 1])
	{
		case 't':
			*is_deleted = 1;
			return true;
		case 'f':
			*is_deleted = 0;
			return true;
		case '-':
			*is_deleted = -1;
			return true;
		default:
			return false;
	}
}

void
partoo_webhook_event_free(PartooWebhookEvent *ev)
{
	if (ev == NULL)
		return;
	free(ev->event_type);
	free(ev->status_raw);
	free(ev->channel);
	free(ev->dedup_key);
	free(ev->content_type);
	free(ev->sender_type);
	free(ev->module);
	free(ev->dispatch_id);
	free(ev->message_id);
	free(ev->recipient);
	free(ev->dispatch_metadata);
	free(ev);
}
