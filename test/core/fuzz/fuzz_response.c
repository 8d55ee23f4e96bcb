/*-------------------------------------------------------------------------
 *
 * fuzz_response.c
 *		libFuzzer target: what the Partoo API answers.
 *
 * A response body is the one input partoo takes from the network without
 * any say in its shape, so partoo_parse_api_response() must survive
 * anything and keep its promises about what it hands back: error_text is
 * bounded, valid UTF-8 and on one line (it goes into an errdetail and the
 * outbox), success means a 2xx with "status": "success", and a message_id
 * is never a wrong one.  The same bytes, NUL-terminated, are also a
 * Retry-After header value (its dates checked against timegm()), and the
 * status a failure class.
 *
 * Input layout: byte 0 picks the HTTP status, byte 1 the "now" Retry-After
 * dates are measured from, the rest is the body.  A violated invariant
 * calls __builtin_trap(), which libFuzzer reports as a crash and saves.
 *
 * test/core/fuzz/fuzz_response.c
 *
 *-------------------------------------------------------------------------
 */
/* timegm() is a GNU and BSD extension */
#define _GNU_SOURCE

#include "core/api.h"
#include "core/message.h"
#include "core/ratelimit.h"
#include "reader.h"

#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include <cjson/cJSON.h>

#define ERROR_TEXT_MAX		1024
#define RETRY_AFTER_MAX		86400
#define TWO_POW_53			9007199254740992.0

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Statuses that mean something to partoo; other selectors spread widely */
static const long statuses[] = {
	200, 201, 204, 299, 0, 400, 401, 403, 404, 408, 409, 410, 413, 415,
	422, 429, 500, 502, 503, 504, 100, 199, 300, 301, 600, -1,
	LONG_MIN, LONG_MAX
};

static const int64_t nows[] = {
	1763892000,					/* 2025-11-23 */
	0,
	784111777,					/* the RFC's Sun, 06 Nov 1994 08:49:37 GMT */
	784111777 - 1,
	784111777 - RETRY_AFTER_MAX,
	253402300799,				/* 9999-12-31T23:59:59Z */
	-62167219200,				/* 0000-01-01T00:00:00Z */
	INT64_MAX,
	INT64_MIN,
	-1
};

#define lengthof(a) (sizeof(a) / sizeof((a)[0]))

static long
pick_status(uint8_t b)
{
	if (b < lengthof(statuses))
		return statuses[b];
	return (long) b * 3 - 100;
}

static int64_t
pick_now(uint8_t b)
{
	if (b < lengthof(nows))
		return nows[b];
	return (int64_t) 1763892000 + ((int64_t) b - 128) * 3600;
}

/*
 * Well-formed UTF-8 by decoding, the slow and obvious way, to check
 * partoo_utf8_valid()'s table-driven version against.
 */
static bool
ref_utf8_valid(const uint8_t *s, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		uint32_t	c = s[i];
		uint32_t	min;
		size_t		k,
					j;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0)
		{
			k = 1;
			c &= 0x1F;
			min = 0x80;
		}
		else if ((c & 0xF0) == 0xE0)
		{
			k = 2;
			c &= 0x0F;
			min = 0x800;
		}
		else if ((c & 0xF8) == 0xF0)
		{
			k = 3;
			c &= 0x07;
			min = 0x10000;
		}
		else
			return false;
		if (n - i - 1 < k)
			return false;
		for (j = 1; j <= k; j++)
		{
			if ((s[i + j] & 0xC0) != 0x80)
				return false;
			c = (c << 6) | (s[i + j] & 0x3F);
		}
		if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
			return false;
		i += k + 1;
	}
	return true;
}

/* The failure classes as core/api.h lists them */
static void
check_classify(long status)
{
	PartooFailureClass fc = partoo_classify_status(status);

	if (status >= 200 && status <= 299)
		FUZZ_ASSERT(fc == PARTOO_FC_OK);
	else if (status == 429)
		FUZZ_ASSERT(fc == PARTOO_FC_RATE_LIMITED);
	else if (status == 400 || status == 401 || status == 403 ||
			 status == 404 || status == 409 || status == 410 ||
			 status == 413 || status == 415 || status == 422)
		FUZZ_ASSERT(fc == PARTOO_FC_REJECTED);
	else
		FUZZ_ASSERT(fc == PARTOO_FC_RETRYABLE);
}

/* n decimal digits at s, which the parser has already checked */
static int
fixed_digits(const char *s, int n)
{
	int			v = 0;

	while (n-- > 0)
		v = v * 10 + (*s++ - '0');
	return v;
}

/*
 * An IMF-fixdate the parser accepted ("Sun, 06 Nov 1994 08:49:37 GMT",
 * 29 bytes at s) must give the wait glibc's timegm() gives for it.
 */
static void
check_imf_date(const char *s, size_t len, int64_t now, long got)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	struct tm	tm;
	char		mon[4];
	const char *hit;
	int64_t		when;
	long		want;
	int			i;

	FUZZ_ASSERT(len == 29);
	for (i = 0; i < 3; i++)
		mon[i] = (char) (s[8 + i] | 0x20);
	mon[3] = '\0';
	hit = strstr(months, mon);
	FUZZ_ASSERT(hit != NULL && (hit - months) % 3 == 0);

	memset(&tm, 0, sizeof(tm));
	tm.tm_mday = fixed_digits(s + 5, 2);
	tm.tm_mon = (int) ((hit - months) / 3);
	tm.tm_year = fixed_digits(s + 12, 4) - 1900;
	tm.tm_hour = fixed_digits(s + 17, 2);
	tm.tm_min = fixed_digits(s + 20, 2);
	tm.tm_sec = fixed_digits(s + 23, 2);
	when = (int64_t) timegm(&tm);

	if (when <= now)
		want = 0;
	else if (now < when - RETRY_AFTER_MAX)
		want = RETRY_AFTER_MAX;
	else
		want = (long) (when - now);
	FUZZ_ASSERT(got == want);
}

/*
 * Retry-After: always -1 or 0..86400; delta-seconds (digits only, after
 * trimming blanks) must give exactly their value, capped, and a date the
 * same wait as timegm() says.
 */
static void
check_retry_after(const char *value, int64_t now)
{
	long		got = partoo_parse_retry_after(value, now);
	size_t		start = 0;
	size_t		end = strlen(value);
	size_t		i;
	bool		all_digits;
	long		want = 0;

	FUZZ_ASSERT(got == -1 || (got >= 0 && got <= RETRY_AFTER_MAX));

	while (start < end && (value[start] == ' ' || value[start] == '\t'))
		start++;
	while (end > start && strchr(" \t\r\n", value[end - 1]) != NULL)
		end--;
	if (start == end)
	{
		FUZZ_ASSERT(got == -1);
		return;
	}
	all_digits = true;
	for (i = start; i < end; i++)
	{
		if (value[i] < '0' || value[i] > '9')
			all_digits = false;
		else if (want <= RETRY_AFTER_MAX)
			want = want * 10 + (value[i] - '0');
	}
	if (all_digits)
		FUZZ_ASSERT(got == (want < RETRY_AFTER_MAX ? want : RETRY_AFTER_MAX));
	else if (value[start] >= '0' && value[start] <= '9')
		FUZZ_ASSERT(got == -1);	/* digits then something else */
	else if (got != -1)
		check_imf_date(value + start, end - start, now, got);
}

/*
 * s[0..len), if it is "-?[0-9]+", written the way printf would write its
 * value (no leading zeros, no "-0") into out; false for anything else or
 * too many digits.
 */
static bool
normalise_integer(const char *s, size_t len, char *out, size_t outlen)
{
	bool		neg = len > 0 && s[0] == '-';
	size_t		i = neg ? 1 : 0;
	size_t		k;

	if (i == len)
		return false;
	for (k = i; k < len; k++)
		if (s[k] < '0' || s[k] > '9')
			return false;
	while (len - i > 1 && s[i] == '0')
		i++;
	if (len - i + 2 > outlen)
		return false;
	if (len - i == 1 && s[i] == '0')
		neg = false;
	snprintf(out, outlen, "%s%.*s", neg ? "-" : "", (int) (len - i), s + i);
	return true;
}

/*
 * Does the body hold a JSON number token whose text is exactly the integer
 * id (leading zeros allowed, as cJSON allows them)?  For ids a double
 * cannot hold, that text is the only place an exact id can have come from.
 */
static bool
body_has_number_text(const char *body, size_t len, int64_t id)
{
	char		want[32];
	char		norm[32];
	size_t		i = 0;

	snprintf(want, sizeof(want), "%" PRId64, id);
	while (i < len)
	{
		size_t		n = 0;

		if (strchr("+-0123456789.eE", body[i]) == NULL || body[i] == '\0')
		{
			i++;
			continue;
		}
		while (i + n < len && body[i + n] != '\0' &&
			   strchr("+-0123456789.eE", body[i + n]) != NULL)
			n++;
		if (normalise_integer(body + i, n, norm, sizeof(norm)) &&
			strcmp(norm, want) == 0)
			return true;
		i += n;
	}
	return false;
}

/* A message_id handed out must be the one the body holds */
static void
check_message_id(const PartooApiResult *r, const cJSON *root,
				 const char *body, size_t len)
{
	const cJSON *item;

	if (!r->has_message_id)
	{
		FUZZ_ASSERT(r->message_id == 0);
		return;
	}
	FUZZ_ASSERT(root != NULL && cJSON_IsObject(root));
	item = cJSON_GetObjectItemCaseSensitive(root, "message_id");
	FUZZ_ASSERT(item != NULL);
	if (cJSON_IsString(item))
	{
		char		text[32];
		char		want[32];

		snprintf(text, sizeof(text), "%" PRId64, r->message_id);
		FUZZ_ASSERT(normalise_integer(item->valuestring, strlen(item->valuestring),
									  want, sizeof(want)));
		FUZZ_ASSERT(strcmp(text, want) == 0);
		return;
	}
	FUZZ_ASSERT(cJSON_IsNumber(item));
	FUZZ_ASSERT((double) r->message_id == item->valuedouble);

	/*
	 * Doubles from -2^53 to 2^53 stand for one integer each, except the
	 * two ends, which are also the roundings of their neighbours: beyond
	 * that, the id must have been read exactly from the text.
	 */
	if (!(item->valuedouble > -TWO_POW_53 && item->valuedouble < TWO_POW_53))
		FUZZ_ASSERT(body_has_number_text(body, len, r->message_id));
}

/* What partoo_parse_api_response() promises, whatever the body */
static void
check_result(const PartooApiResult *r, long status, const char *body,
			 size_t len)
{
	char	   *copy;
	cJSON	   *root;
	const char *end = NULL;
	bool		is_json = false;

	FUZZ_ASSERT(r->http_status == status);

	/* the same verdict on "is it JSON" as cJSON on the whole body */
	copy = malloc(len + 1);
	if (copy == NULL)
		abort();
	memcpy(copy, body, len);
	copy[len] = '\0';
	root = len > 0 ? cJSON_ParseWithLengthOpts(copy, len, &end, false) : NULL;
	if (root != NULL)
	{
		size_t		i = (size_t) (end - copy);

		while (i < len && (unsigned char) copy[i] <= 32)
			i++;
		is_json = i == len;
		if (!is_json)
		{
			cJSON_Delete(root);
			root = NULL;
		}
	}
	FUZZ_ASSERT(r->body_is_json == is_json);

	if (r->success)
	{
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "status");

		FUZZ_ASSERT(status >= 200 && status <= 299);
		FUZZ_ASSERT(partoo_classify_status(status) == PARTOO_FC_OK);
		FUZZ_ASSERT(cJSON_IsString(st) && strcmp(st->valuestring, "success") == 0);
	}
	else if (cJSON_IsObject(root) && status >= 200 && status <= 299)
	{
		const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "status");

		FUZZ_ASSERT(!(cJSON_IsString(st) && strcmp(st->valuestring, "success") == 0));
	}

	check_message_id(r, root, body, len);

	if (r->error_text != NULL)
	{
		size_t		n = strlen(r->error_text);
		size_t		i;

		FUZZ_ASSERT(n > 0 && n <= ERROR_TEXT_MAX);
		FUZZ_ASSERT(partoo_utf8_valid(r->error_text, n));
		for (i = 0; i < n; i++)
			FUZZ_ASSERT((unsigned char) r->error_text[i] >= 0x20 &&
						(unsigned char) r->error_text[i] != 0x7F);
		FUZZ_ASSERT(cJSON_IsObject(root));
		FUZZ_ASSERT(cJSON_GetObjectItemCaseSensitive(root, "errors") != NULL ||
					cJSON_GetObjectItemCaseSensitive(root, "error") != NULL);
	}
	cJSON_Delete(root);
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	long		status;
	int64_t		now;
	const char *body;
	size_t		len;
	char	   *value;
	PartooApiResult r;
	PartooApiResult again;

	if (size < 2)
		return 0;
	status = pick_status(data[0]);
	now = pick_now(data[1]);
	body = (const char *) data + 2;
	len = size - 2;

	/*
	 * The body is passed as libFuzzer's buffer itself, not NUL-terminated,
	 * so ASan sees any read past its end.
	 */
	partoo_parse_api_response(status, len > 0 ? body : NULL, len, &r);
	check_result(&r, status, body, len);

	/* same input, same answer */
	partoo_parse_api_response(status, len > 0 ? body : NULL, len, &again);
	FUZZ_ASSERT(again.success == r.success &&
				again.body_is_json == r.body_is_json &&
				again.has_message_id == r.has_message_id &&
				again.message_id == r.message_id);
	FUZZ_ASSERT((again.error_text == NULL) == (r.error_text == NULL));
	FUZZ_ASSERT(r.error_text == NULL || strcmp(again.error_text, r.error_text) == 0);
	partoo_api_result_free(&again);
	partoo_api_result_free(&r);
	FUZZ_ASSERT(r.error_text == NULL);

	FUZZ_ASSERT(partoo_utf8_valid(body, len) ==
				ref_utf8_valid((const uint8_t *) body, len));

	check_classify(status);
	check_classify((long) len - 1000);

	value = malloc(len + 1);
	if (value == NULL)
		abort();
	memcpy(value, body, len);
	value[len] = '\0';
	check_retry_after(value, now);
	free(value);
	return 0;
}
