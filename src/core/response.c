/*-------------------------------------------------------------------------
 *
 * response.c
 *		What the Partoo API answered, and what to do about it.
 *
 * Parses response bodies into a PartooApiResult, classifies HTTP statuses
 * into the outbox's failure classes (DESIGN.md section 5), reads
 * Retry-After headers and computes retry delays.
 *
 * A response body is untrusted input of any size and content: these
 * functions never fail and never read outside [body, body + len).  The
 * summary of an error body is bounded (ERROR_TEXT_MAX bytes), always valid
 * UTF-8, and on one line, because it ends up in an errdetail and in the
 * outbox table.  The caller keeps the raw body if it wants it; error_text
 * is only a readable digest.
 *
 * src/core/response.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/api.h"
#include "core/message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* Longest error_text, in bytes, "..." included */
#define ERROR_TEXT_MAX		1024
/* How deep nested error objects and arrays are flattened */
#define ERROR_MAX_DEPTH		8
/* Longest dotted key path ("json.content.url") we keep */
#define ERROR_PATH_MAX		128

#define RETRY_AFTER_MAX		86400

/* Doubles represent every integer up to 2^53 exactly */
#define EXACT_DOUBLE_LIMIT	9007199254740992.0

/*
 * A bounded text accumulator.  Appends past ERROR_TEXT_MAX set overflow
 * and are dropped; bytes are sanitised on the way in so the content is
 * always valid UTF-8 without control characters.
 */
typedef struct TextBuf
{
	char		data[ERROR_TEXT_MAX + 1];
	size_t		len;
	bool		overflow;
} TextBuf;

/*
 * Append s[0..n) as one line of sanitised text (partoo_sanitize_text);
 * what does not fit sets overflow and is dropped.
 */
static void
tb_append_n(TextBuf *tb, const char *s, size_t n)
{
	size_t		written;

	if (tb->overflow)
		return;
	if (partoo_sanitize_text(s, n, tb->data + tb->len, ERROR_TEXT_MAX - tb->len + 1,
							 true, &written) < n)
		tb->overflow = true;
	tb->len += written;
}

static void
tb_append(TextBuf *tb, const char *s)
{
	tb_append_n(tb, s, strlen(s));
}

/*
 * Hand out the text as a malloc'd string, "..." marking a cut, or NULL if
 * there is no text (or no memory: error_text is optional).
 */
static char *
tb_finish(TextBuf *tb)
{
	char	   *out;

	if (tb->len == 0)
		return NULL;
	if (tb->overflow)
	{
		size_t		cut = tb->len < ERROR_TEXT_MAX - 3 ? tb->len : ERROR_TEXT_MAX - 3;

		/* step back over continuation bytes to a character boundary */
		while (cut > 0 && cut < tb->len &&
			   ((unsigned char) tb->data[cut] & 0xC0) == 0x80)
			cut--;
		memcpy(tb->data + cut, "...", 3);
		tb->len = cut + 3;
	}
	out = malloc(tb->len + 1);
	if (out == NULL)
		return NULL;
	memcpy(out, tb->data, tb->len);
	out[tb->len] = '\0';
	return out;
}

static void render_members(TextBuf *tb, const cJSON *obj, char *path,
						   size_t pathlen, int depth, bool *first);

/* Append a JSON value as text: strings bare, arrays joined with ", " */
static void
render_value(TextBuf *tb, const cJSON *v, int depth)
{
	char		num[40];
	const cJSON *c;
	char		path[ERROR_PATH_MAX + 1];
	bool		first = true;

	if (depth > ERROR_MAX_DEPTH)
	{
		tb_append(tb, "...");
		return;
	}
	if (cJSON_IsString(v))
		tb_append(tb, v->valuestring);
	else if (cJSON_IsNumber(v))
	{
		double		d = v->valuedouble;

		if (d > -EXACT_DOUBLE_LIMIT && d < EXACT_DOUBLE_LIMIT && d == (double) (int64_t) d)
			snprintf(num, sizeof(num), "%.0f", d);
		else
			snprintf(num, sizeof(num), "%.17g", d);
		tb_append(tb, num);
	}
	else if (cJSON_IsTrue(v))
		tb_append(tb, "true");
	else if (cJSON_IsFalse(v))
		tb_append(tb, "false");
	else if (cJSON_IsNull(v))
		tb_append(tb, "null");
	else if (cJSON_IsArray(v))
	{
		for (c = v->child; c != NULL && !tb->overflow; c = c->next)
		{
			if (c != v->child)
				tb_append(tb, ", ");
			render_value(tb, c, depth + 1);
		}
	}
	else if (cJSON_IsObject(v))
	{
		tb_append(tb, "{");
		path[0] = '\0';
		render_members(tb, v, path, 0, depth + 1, &first);
		tb_append(tb, "}");
	}
}

/*
 * Append an object's members as "key: value" joined by "; ", descending
 * into nested objects with dotted keys, which is how the API reports
 * field errors: {"json": {"url": ["Not a valid URL."]}} becomes
 * "json.url: Not a valid URL.".  path[0..pathlen) is the key prefix; its
 * buffer has ERROR_PATH_MAX + 1 bytes and is restored before returning.
 */
static void
render_members(TextBuf *tb, const cJSON *obj, char *path, size_t pathlen,
			   int depth, bool *first)
{
	const cJSON *c;

	for (c = obj->child; c != NULL && !tb->overflow; c = c->next)
	{
		size_t		newlen = pathlen;
		const char *key = c->string ? c->string : "";
		size_t		keylen = strlen(key);

		if (newlen > 0 && newlen < ERROR_PATH_MAX)
			path[newlen++] = '.';
		if (keylen > ERROR_PATH_MAX - newlen)
			keylen = ERROR_PATH_MAX - newlen;
		memcpy(path + newlen, key, keylen);
		newlen += keylen;
		path[newlen] = '\0';

		if (cJSON_IsObject(c) && c->child != NULL && depth < ERROR_MAX_DEPTH)
			render_members(tb, c, path, newlen, depth + 1, first);
		else
		{
			if (!*first)
				tb_append(tb, "; ");
			*first = false;
			tb_append_n(tb, path, newlen);
			tb_append(tb, ": ");
			render_value(tb, c, depth + 1);
		}
		path[pathlen] = '\0';
	}
}

/*
 * Summarise "errors" (the seed's shape) or, failing that, "error"
 * (Partoo's error guide: {"error": {"code": ..., "message": ...}}).
 */
static char *
summarise_errors(const cJSON *root)
{
	TextBuf		tb;
	const cJSON *errors = cJSON_GetObjectItemCaseSensitive(root, "errors");
	const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
	char		path[ERROR_PATH_MAX + 1];
	bool		first = true;

	tb.len = 0;
	tb.overflow = false;
	path[0] = '\0';

	if (cJSON_IsObject(errors))
		render_members(&tb, errors, path, 0, 0, &first);
	else if (errors != NULL && !cJSON_IsNull(errors))
		render_value(&tb, errors, 0);

	if (tb.len == 0 && cJSON_IsObject(error))
	{
		const cJSON *message = cJSON_GetObjectItemCaseSensitive(error, "message");
		const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");

		if (cJSON_IsString(message) && message->valuestring[0] != '\0')
		{
			tb_append(&tb, message->valuestring);
			if (code != NULL && !cJSON_IsNull(code))
			{
				tb_append(&tb, " (code ");
				render_value(&tb, code, 0);
				tb_append(&tb, ")");
			}
		}
		else
			render_members(&tb, error, path, 0, 0, &first);
	}
	else if (tb.len == 0 && error != NULL && !cJSON_IsNull(error))
		render_value(&tb, error, 0);

	return tb_finish(&tb);
}

/*
 * Parse "-?[0-9]+" in s[0..len) exactly into an int64.  False on anything
 * else, including values out of range.
 */
static bool
parse_int64_exact(const char *s, size_t len, int64_t *out)
{
	bool		neg = false;
	uint64_t	v = 0;
	uint64_t	limit = (uint64_t) INT64_MAX;
	size_t		i = 0;

	if (len > 0 && s[0] == '-')
	{
		neg = true;
		limit = (uint64_t) INT64_MAX + 1;
		i = 1;
	}
	if (i == len)
		return false;
	for (; i < len; i++)
	{
		unsigned	d;

		if (s[i] < '0' || s[i] > '9')
			return false;
		d = (unsigned) (s[i] - '0');
		if (v > (limit - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (neg)
		*out = (v == (uint64_t) INT64_MAX + 1) ? INT64_MIN : -(int64_t) v;
	else
		*out = (int64_t) v;
	return true;
}

/* cJSON's notion of whitespace: every byte up to and including space */
static size_t
skip_ws(const char *s, size_t len, size_t i)
{
	while (i < len && (unsigned char) s[i] <= 32)
		i++;
	return i;
}

/* Past the string starting at the quote at s[i] */
static size_t
skip_string(const char *s, size_t len, size_t i)
{
	for (i++; i < len && s[i] != '"'; i++)
		if (s[i] == '\\')
			i++;
	return i < len ? i + 1 : len;
}

/* Past the value starting at s[i] */
static size_t
skip_value(const char *s, size_t len, size_t i)
{
	int			depth = 0;

	if (i < len && s[i] != '"' && s[i] != '{' && s[i] != '[')
	{
		while (i < len && (unsigned char) s[i] > 32 && s[i] != ',' &&
			   s[i] != '}' && s[i] != ']')
			i++;
		return i;
	}
	while (i < len)
	{
		if (s[i] == '"')
		{
			i = skip_string(s, len, i);
			if (depth == 0)
				return i;
			continue;
		}
		if (s[i] == '{' || s[i] == '[')
			depth++;
		else if (s[i] == '}' || s[i] == ']')
		{
			if (--depth == 0)
				return i + 1;
		}
		i++;
	}
	return len;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Does the JSON string whose opening quote is at s[i] decode to key?
 * Decoding stops at a NUL, as cJSON's C strings do, so that we agree
 * with cJSON on which member is which.
 */
static bool
string_equals(const char *s, size_t len, size_t i, const char *key)
{
	size_t		klen = strlen(key);
	size_t		k = 0;
	bool		ended = false;

	for (i++; i < len && s[i] != '"'; i++)
	{
		int			c = (unsigned char) s[i];

		if (c == '\\' && i + 1 < len)
		{
			i++;
			switch (s[i])
			{
				case 'b':
					c = '\b';
					break;
				case 'f':
					c = '\f';
					break;
				case 'n':
					c = '\n';
					break;
				case 'r':
					c = '\r';
					break;
				case 't':
					c = '\t';
					break;
				case 'u':
					{
						int			h,
									n;

						if (i + 4 >= len)
							return false;
						c = 0;
						for (n = 1; n <= 4; n++)
						{
							h = hexval(s[i + n]);
							if (h < 0)
								return false;
							c = c * 16 + h;
						}
						if (c >= 0x80)
							c = 0x100;	/* not ASCII: matches no key of ours */
						i += 4;
						break;
					}
				default:
					c = (unsigned char) s[i];
					break;
			}
		}
		if (ended)
			continue;
		if (c == 0)
		{
			ended = true;
			continue;
		}
		if (k >= klen || c != (unsigned char) key[k])
			return false;
		k++;
	}
	return k == klen;
}

/*
 * Find the text of the first member named key in the top-level object of
 * s[0..len), which cJSON has already accepted.  Needed because cJSON keeps
 * numbers only as doubles, and message ids may exceed 2^53.
 */
static bool
find_member_text(const char *s, size_t len, const char *key,
				 const char **text, size_t *textlen)
{
	size_t		i = 0;

	if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		i = 3;
	i = skip_ws(s, len, i);
	if (i >= len || s[i] != '{')
		return false;
	i++;
	for (;;)
	{
		size_t		keypos;
		size_t		vstart;

		i = skip_ws(s, len, i);
		if (i >= len || s[i] != '"')
			return false;
		keypos = i;
		i = skip_ws(s, len, skip_string(s, len, i));
		if (i >= len || s[i] != ':')
			return false;
		vstart = skip_ws(s, len, i + 1);
		i = skip_value(s, len, vstart);
		if (string_equals(s, len, keypos, key))
		{
			*text = s + vstart;
			*textlen = i - vstart;
			return true;
		}
		i = skip_ws(s, len, i);
		if (i >= len || s[i] != ',')
			return false;
		i++;
	}
}

/*
 * message_id: an integer (exactly, from its text), a number with an
 * integral value small enough for a double to hold exactly, or a string
 * of digits.  Anything else is no id: a wrong id is worse than none.
 */
static bool
extract_message_id(const cJSON *root, const char *s, size_t len, int64_t *id)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "message_id");

	if (cJSON_IsString(item))
		return parse_int64_exact(item->valuestring, strlen(item->valuestring), id);
	if (cJSON_IsNumber(item))
	{
		const char *text;
		size_t		textlen;
		double		d = item->valuedouble;

		/* Cross-check with cJSON's double so we never disagree on the member */
		if (find_member_text(s, len, "message_id", &text, &textlen) &&
			parse_int64_exact(text, textlen, id) &&
			(double) *id == d)
			return true;
		/*
		 * NB: strictly inside +/- 2^53: 2^53 itself is also what
		 * 9007199254740993.0 or 9007199254740993e0 round to.
		 */
		if (d > -EXACT_DOUBLE_LIMIT && d < EXACT_DOUBLE_LIMIT &&
			d == (double) (int64_t) d)
		{
			*id = (int64_t) d;
			return true;
		}
	}
	return false;
}

/*
 * See core/api.h.  The body is copied to a NUL-terminated buffer first so
 * that no parser, ours or cJSON's, can ever look one byte past it.  A
 * body is JSON only if all of it is: cJSON by itself accepts trailing
 * garbage after the first value.
 */
void
partoo_parse_api_response(long http_status, const char *body, size_t len,
						  PartooApiResult *out)
{
	char	   *copy;
	cJSON	   *root;
	const char *end = NULL;
	const cJSON *status;

	if (out == NULL)
		return;
	memset(out, 0, sizeof(*out));
	out->http_status = http_status;
	out->error_text = NULL;

	if (body == NULL || len == 0 || len == SIZE_MAX)
		return;
	copy = malloc(len + 1);
	if (copy == NULL)
		return;
	memcpy(copy, body, len);
	copy[len] = '\0';

	root = cJSON_ParseWithLengthOpts(copy, len, &end, false);
	if (root != NULL && end != NULL &&
		skip_ws(copy, len, (size_t) (end - copy)) != len)
	{
		cJSON_Delete(root);
		root = NULL;
	}
	if (root == NULL)
	{
		free(copy);
		return;
	}
	out->body_is_json = true;

	if (cJSON_IsObject(root))
	{
		status = cJSON_GetObjectItemCaseSensitive(root, "status");
		out->success = http_status >= 200 && http_status <= 299 &&
			cJSON_IsString(status) && strcmp(status->valuestring, "success") == 0;
		out->has_message_id = extract_message_id(root, copy, len, &out->message_id);
		if (!out->has_message_id)
			out->message_id = 0;
		out->error_text = summarise_errors(root);
	}
	cJSON_Delete(root);
	free(copy);
}

void
partoo_api_result_free(PartooApiResult *r)
{
	if (r == NULL)
		return;
	free(r->error_text);
	r->error_text = NULL;
}

/* See core/api.h and DESIGN.md section 5 */
PartooFailureClass
partoo_classify_status(long http_status)
{
	if (http_status >= 200 && http_status <= 299)
		return PARTOO_FC_OK;
	switch (http_status)
	{
		case 429:
			return PARTOO_FC_RATE_LIMITED;
		case 400:
		case 401:
		case 403:
		case 404:
		case 409:
		case 410:
		case 413:
		case 415:
		case 422:
			return PARTOO_FC_REJECTED;
		default:
			return PARTOO_FC_RETRYABLE;
	}
}

/* n decimal digits at s as an int, or -1 */
static int
digits(const char *s, int n)
{
	int			v = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static bool
name_at(const char *s, const char *name)
{
	int			i;

	for (i = 0; i < 3; i++)
	{
		char		a = s[i];
		char		b = name[i];

		if (a >= 'A' && a <= 'Z')
			a = (char) (a - 'A' + 'a');
		if (b >= 'A' && b <= 'Z')
			b = (char) (b - 'A' + 'a');
		if (a != b)
			return false;
	}
	return true;
}

/*
 * Parse an IMF-fixdate of exactly 29 bytes, "Sun, 06 Nov 1994 08:49:37
 * GMT", into Unix seconds.  Names are matched without regard to case
 * (be liberal in what you accept); the weekday is not checked against the
 * date, since the date is what counts.
 */
static bool
parse_imf_fixdate(const char *s, size_t len, int64_t *out)
{
	static const char *const wkdays[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
	static const char *const months[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	int			i;
	int			day,
				mon = -1,
				year,
				hour,
				min,
				sec;
	bool		wk = false;

	if (len != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' ||
		s[11] != ' ' || s[16] != ' ' || s[19] != ':' || s[22] != ':' ||
		s[25] != ' ' || !name_at(s + 26, "GMT"))
		return false;
	for (i = 0; i < 7; i++)
		wk = wk || name_at(s, wkdays[i]);
	for (i = 0; i < 12 && mon < 0; i++)
		if (name_at(s + 8, months[i]))
			mon = i;
	day = digits(s + 5, 2);
	year = digits(s + 12, 4);
	hour = digits(s + 17, 2);
	min = digits(s + 20, 2);
	sec = digits(s + 23, 2);
	if (!wk || mon < 0 || day < 1 || year < 0 || hour < 0 || hour > 23 ||
		min < 0 || min > 59 || sec < 0 || sec > 60)
		return false;
	if (day > partoo_days_in_month(year, mon + 1))
		return false;
	*out = partoo_days_from_civil(year, mon + 1, day) * 86400 +
		hour * 3600 + min * 60 + sec;
	return true;
}

/* See core/api.h */
long
partoo_parse_retry_after(const char *value, int64_t now_unix)
{
	size_t		start = 0;
	size_t		end;
	size_t		i;
	int64_t		when;

	if (value == NULL)
		return -1;
	end = strlen(value);
	while (start < end && (value[start] == ' ' || value[start] == '\t'))
		start++;
	while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t' ||
						   value[end - 1] == '\r' || value[end - 1] == '\n'))
		end--;
	if (start == end)
		return -1;

	if (value[start] >= '0' && value[start] <= '9')
	{
		long		secs = 0;

		for (i = start; i < end; i++)
		{
			if (value[i] < '0' || value[i] > '9')
				return -1;
			/* saturate rather than overflow on absurd lengths */
			if (secs < RETRY_AFTER_MAX)
				secs = secs * 10 + (value[i] - '0');
		}
		return secs < RETRY_AFTER_MAX ? secs : RETRY_AFTER_MAX;
	}

	if (!parse_imf_fixdate(value + start, end - start, &when))
		return -1;
	/* when is within years 0..9999, so these never overflow */
	if (when <= now_unix)
		return 0;
	if (now_unix < when - RETRY_AFTER_MAX)
		return RETRY_AFTER_MAX;
	return (long) (when - now_unix);
}

/*
 * High 64 bits of a 64x64-bit product, in portable C.  Used to map a
 * random 64-bit value onto [0, n) without the bias of a modulo.
 */
static uint64_t
mul_high64(uint64_t a, uint64_t b)
{
	uint64_t	a_lo = a & 0xFFFFFFFFu,
				a_hi = a >> 32;
	uint64_t	b_lo = b & 0xFFFFFFFFu,
				b_hi = b >> 32;
	uint64_t	lo_lo = a_lo * b_lo;
	uint64_t	hi_lo = a_hi * b_lo;
	uint64_t	lo_hi = a_lo * b_hi;
	uint64_t	hi_hi = a_hi * b_hi;
	uint64_t	cross = (lo_lo >> 32) + (hi_lo & 0xFFFFFFFFu) + lo_hi;

	return hi_hi + (hi_lo >> 32) + (cross >> 32);
}

/*
 * See core/api.h.  The ceiling base_ms * 2^(attempt-1) is computed by
 * comparing before shifting, so any attempt up to INT_MAX is safe; an
 * attempt below 1 counts as 1, and a non-positive base or max means no
 * delay at all.
 */
int64_t
partoo_backoff_ms(int attempt, int64_t base_ms, int64_t max_ms, uint64_t random)
{
	int64_t		ceiling;
	int			shift;

	if (base_ms <= 0 || max_ms <= 0)
		return 0;
	shift = attempt > 1 ? attempt - 1 : 0;
	if (base_ms >= max_ms || shift >= 63 || base_ms > (max_ms >> shift))
		ceiling = max_ms;
	else
		ceiling = base_ms << shift;
	/* ceiling <= INT64_MAX, so ceiling + 1 fits in a uint64_t */
	return (int64_t) mul_high64(random, (uint64_t) ceiling + 1);
}
