/*-------------------------------------------------------------------------
 *
 * fuzz_request.c
 *		libFuzzer target: validating messages and building request bodies.
 *
 * The input is decoded into a PartooMessage of any shape: content types
 * and channels in and out of range, conversation ids from INT64_MIN to
 * INT64_MAX, strings cut at a NUL or not valid UTF-8, URLs with and
 * without a scheme or a file type, uploads of a few bytes to a few
 * megabytes, file names, dates.  Then:
 *
 * - partoo_validate_message() must agree with an independent reading of
 *   the rules in core/message.h, and what it reports must be safe to show
 *   (printable ASCII, PostgreSQL's message style, no user input echoed);
 * - a valid message must always build, and an invalid one never;
 * - a JSON body must parse with cJSON, hold exactly the documented keys
 *   (DESIGN.md section 5) with the message's values, and carry the
 *   conversation id as exact digits;
 * - a multipart body must parse as RFC 7578 form data with the parts
 *   conversation_id, content_type, date and image, the image bytes exactly
 *   once, and a boundary that occurs nowhere inside the image.
 *
 * A violated invariant calls __builtin_trap(), which libFuzzer reports as
 * a crash and saves.
 *
 * test/core/fuzz/fuzz_request.c
 *
 *-------------------------------------------------------------------------
 */
/* memmem() is a GNU extension */
#define _GNU_SOURCE

#include "core/api.h"
#include "core/message.h"
#include "core/ratelimit.h"
#include "reader.h"

#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <strings.h>

#include <cjson/cJSON.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define lengthof(a) (sizeof(a) / sizeof((a)[0]))

/* Big enough to cross every limit, small enough to stay fast */
#define CONTENT_MAX		(PARTOO_TEXT_MAX_BYTES + 4096)
#define URL_BODY_MAX	(PARTOO_URL_MAX_BYTES + 256)
#define IMAGE_MAX		(PARTOO_IMAGE_MAX_BYTES + 1024 * 1024)
#define FILENAME_MAX_FUZZ (PARTOO_FILENAME_MAX_BYTES + 64)

static const int64_t conversation_ids[] = {
	1, 42, 0, -1, INT64_MAX, INT64_MIN, INT64_C(9007199254740993),
	INT64_C(-9007199254740993)
};

static const char *const url_prefixes[] = {
	"https://", "http://", "HTTPS://", "Http://", "ftp://", "", "https:/",
	"https://example.com/", "http://h/a.b/", "https://?", "https:///x",
	"javascript:", "https://example.com/media/photo"
};

static const char *const url_suffixes[] = {
	"", ".jpg", ".jpeg", ".png", ".mp4", ".aac", ".m4a", ".pdf", ".docx",
	".xlsx", ".pptx", ".JPG", ".exe", ".tar.gz", "?q=1.png", "#x.jpg",
	".jpg?size=2", ".", ".0123456789abcdefg", "/"
};

/* Upload prefixes: the magic numbers partoo sniffs, whole and cut short */
static const struct
{
	const char *bytes;
	size_t		len;
}			magics[] = {
	{"", 0},
	{"\xFF\xD8\xFF\xE0", 4},
	{"\x89PNG\r\n\x1A\n", 8},
	{"\xFF\xD8", 2},
	{"\x89PNG\r\n\x1A", 7},
	{"GIF89a", 6},
	{"--partoo-", 9},
	{"\r\n--partoo-0123456789abcdef0123456789abcdef--\r\n", 47}
};

/* The pieces a message is made of; everything malloc'd, freed at the end */
typedef struct FuzzMessage
{
	PartooMessage m;
	char	   *content;
	char	   *url;
	unsigned char *image;
	char	   *filename;
	char	   *date;
	char		date_buf[PARTOO_DATE_BUFLEN];
} FuzzMessage;

static int
pick_enum(FuzzReader *r, int lo, int hi)
{
	uint8_t		b = fr_u8(r);

	if (b == 0xFF)
		return INT_MIN;
	if (b == 0xFE)
		return INT_MAX;
	if (b >= 0xC0)
		return (int8_t) b;		/* -64 .. -3 */
	return lo + b % (hi - lo + 1);
}

static char *
concat3(const char *a, const char *b, size_t blen, const char *c)
{
	size_t		alen = strlen(a);
	size_t		clen = strlen(c);
	char	   *s = malloc(alen + blen + clen + 1);

	if (s == NULL)
		abort();
	memcpy(s, a, alen);
	memcpy(s + alen, b, blen);
	memcpy(s + alen + blen, c, clen + 1);
	return s;
}

static char *
make_url(FuzzReader *r)
{
	const char *prefix = url_prefixes[fr_u8(r) % lengthof(url_prefixes)];
	const char *suffix = url_suffixes[fr_u8(r) % lengthof(url_suffixes)];
	size_t		len;
	char	   *body = fr_blob(r, URL_BODY_MAX, &len);
	char	   *url = concat3(prefix, body, len, suffix);

	free(body);
	return url;
}

static unsigned char *
make_image(FuzzReader *r, size_t *len)
{
	uint8_t		sel = fr_u8(r);
	size_t		mlen = magics[sel % lengthof(magics)].len;
	unsigned char *image;

	image = (unsigned char *) fr_blob_after(r, magics[sel % lengthof(magics)].bytes,
											mlen, IMAGE_MAX - mlen, len);
	/* the high bit of the selector asks for an image of length zero */
	if (sel & 0x80)
		*len = 0;
	return image;
}

/*
 * Decode the input.  The first byte picks a shape: one of the five
 * content types with the fields it needs, or (6, 7) every field drawn
 * independently.  Then come the flags, which add or drop fields whatever
 * the shape, so that every combination is reachable but most inputs are
 * close to valid, where building bodies gets exercised.
 */
static void
decode_message(FuzzReader *r, FuzzMessage *fm)
{
	uint8_t		shape = fr_u8(r) % 8;
	uint8_t		flags = fr_u8(r);
	uint8_t		idsel = fr_u8(r);
	size_t		len;

	memset(fm, 0, sizeof(*fm));

	if (idsel < lengthof(conversation_ids))
		fm->m.conversation_id = conversation_ids[idsel];
	else if (idsel < 0x80)
		fm->m.conversation_id = (int64_t) (idsel - lengthof(conversation_ids) + 1);
	else
		fm->m.conversation_id = (int64_t) fr_uint(r, 8);

	if (shape < 5)
		fm->m.content_type = (PartooContentType) shape;
	else
		fm->m.content_type = (PartooContentType) pick_enum(r, -1, 5);
	fm->m.channel = (PartooChannel) pick_enum(r, -1, 6);

	/* flags: 1 content, 2 url, 4 image, 8 filename, 16/32 date, 64 invert */
	if (shape == PARTOO_CT_TEXT)
		flags ^= 1;
	else if (shape == PARTOO_CT_IMAGE)
		flags ^= (flags & 64) ? 4 : 2;
	else if (shape < 5)
		flags ^= 2;

	if (flags & 1)
	{
		fm->content = fr_blob(r, CONTENT_MAX, &len);
		fm->m.content = fm->content;
	}
	if (flags & 2)
	{
		fm->url = make_url(r);
		fm->m.url = fm->url;
	}
	if (flags & 4)
	{
		fm->image = make_image(r, &fm->m.image_len);
		fm->m.image = fm->image;
	}
	if (flags & 8)
	{
		fm->filename = fr_blob(r, FILENAME_MAX_FUZZ, &len);
		fm->m.filename = fm->filename;
	}
	switch ((flags >> 4) & 3)
	{
		case 0:
		case 1:
			partoo_format_date((int64_t) fr_uint(r, 8), fm->date_buf);
			FUZZ_ASSERT(strlen(fm->date_buf) < PARTOO_DATE_BUFLEN);
			FUZZ_ASSERT(fm->date_buf[strlen(fm->date_buf) - 1] == 'Z');
			fm->m.date = fm->date_buf;
			break;
		case 2:
			fm->m.date = NULL;
			break;
		case 3:
			fm->date = fr_blob(r, 64, &len);
			fm->m.date = fm->date;
			break;
	}
}

/*
 * The name lookups, on the file name's bytes: a name is recognised only
 * if it is the canonical one but for ASCII case, and names round-trip.
 */
static void
check_names(const char *s)
{
	PartooContentType ct = partoo_content_type_from_name(s);
	PartooChannel ch = partoo_channel_from_name(s);

	if (ct != PARTOO_CT_INVALID)
		FUZZ_ASSERT(strcasecmp(s, partoo_content_type_name(ct)) == 0 &&
					partoo_content_type_from_name(partoo_content_type_name(ct)) == ct);
	if (s == NULL)
		FUZZ_ASSERT(ch == PARTOO_CH_NONE);
	else if (ch != PARTOO_CH_INVALID)
		FUZZ_ASSERT(strcasecmp(s, partoo_channel_name(ch)) == 0 &&
					partoo_channel_from_name(partoo_channel_name(ch)) == ch);
}

static void
free_message(FuzzMessage *fm)
{
	free(fm->content);
	free(fm->url);
	free(fm->image);
	free(fm->filename);
	free(fm->date);
}

static bool
utf8_ok(const char *s)
{
	return s == NULL || partoo_utf8_valid(s, strlen(s));
}

static bool
prefix_ci(const char *s, const char *prefix)
{
	for (; *prefix; s++, prefix++)
		if (*s == '\0' || (*s | 0x20) != *prefix)
			return false;
	return true;
}

/*
 * The rules of partoo_validate_message(), read from core/message.h and the
 * validation contract, written independently: true if the message is
 * valid (with or without a warning).
 */
static bool
model_valid(const PartooMessage *m)
{
	/* Text, Image, Video, Audio, Document by channel, as validate.c's card */
	static const bool matrix[6][5] = {
		{1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}, {1, 1, 1, 1, 0},
		{1, 0, 0, 0, 0}, {1, 1, 1, 1, 1}, {1, 0, 0, 0, 0}
	};
	int			ct = (int) m->content_type;
	int			ch = (int) m->channel;
	size_t		i;

	if (m->conversation_id <= 0 || ct < 0 || ct > 4 || ch < 0 || ch > 5)
		return false;
	if (ct == PARTOO_CT_TEXT)
	{
		if (m->content == NULL || m->content[0] == '\0' ||
			strlen(m->content) > PARTOO_TEXT_MAX_BYTES ||
			m->url != NULL || m->image != NULL || m->filename != NULL)
			return false;
	}
	else
	{
		if ((m->url == NULL) == (m->image == NULL) || m->content != NULL)
			return false;
		if (m->image != NULL &&
			(ct != PARTOO_CT_IMAGE || m->image_len == 0 ||
			 m->image_len > PARTOO_IMAGE_MAX_BYTES))
			return false;
		if (m->url != NULL)
		{
			const char *host;

			if (m->filename != NULL)
				return false;
			if (prefix_ci(m->url, "http://"))
				host = m->url + 7;
			else if (prefix_ci(m->url, "https://"))
				host = m->url + 8;
			else
				return false;
			if (strlen(m->url) > PARTOO_URL_MAX_BYTES)
				return false;
			for (i = 0; m->url[i]; i++)
				if ((unsigned char) m->url[i] <= ' ' || m->url[i] == 0x7F)
					return false;
			if (*host == '\0' || strchr("/?#", *host) != NULL)
				return false;
		}
		if (m->filename != NULL)
		{
			size_t		n = strlen(m->filename);

			if (n == 0 || n > PARTOO_FILENAME_MAX_BYTES)
				return false;
			for (i = 0; i < n; i++)
			{
				unsigned char c = (unsigned char) m->filename[i];

				if (c < ' ' || c == 0x7F || c == '/' || c == '\\' || c == '"')
					return false;
			}
		}
	}
	if (!matrix[ch][ct])
		return false;
	if (!utf8_ok(m->content) || !utf8_ok(m->url) || !utf8_ok(m->filename))
		return false;
	if (m->date == NULL || m->date[0] == '\0' ||
		strnlen(m->date, PARTOO_DATE_BUFLEN) >= PARTOO_DATE_BUFLEN)
		return false;
	for (i = 0; m->date[i]; i++)
		if ((unsigned char) m->date[i] <= ' ' || (unsigned char) m->date[i] >= 0x7F)
			return false;
	return true;
}

/*
 * A problem's strings are shown to users as errmsg, errdetail and errhint:
 * terminated inside their buffers, printable ASCII (nothing the user gave
 * is echoed but lengths, offsets and a checked file extension), errmsg
 * starting lower case without a trailing period, the others full
 * sentences.
 */
static void
check_text_field(const char *s, size_t size, bool sentence)
{
	size_t		n = strnlen(s, size);
	size_t		i;

	FUZZ_ASSERT(n < size);
	for (i = 0; i < n; i++)
		FUZZ_ASSERT(s[i] >= ' ' && s[i] < 0x7F);
	if (n == 0)
		return;
	if (sentence)
		FUZZ_ASSERT(s[n - 1] == '.');
	else
		FUZZ_ASSERT(s[n - 1] != '.' && !(s[0] >= 'A' && s[0] <= 'Z'));
}

static void
check_problem(const PartooProblem *p, bool expect_set)
{
	check_text_field(p->message, sizeof(p->message), false);
	check_text_field(p->detail, sizeof(p->detail), true);
	check_text_field(p->hint, sizeof(p->hint), true);
	if (!expect_set)
		FUZZ_ASSERT(p->message[0] == '\0' && p->detail[0] == '\0' &&
					p->hint[0] == '\0');
	else
		FUZZ_ASSERT(p->message[0] != '\0');
}

static void
expect_string(const cJSON *item, const char *want)
{
	FUZZ_ASSERT(cJSON_IsString(item));
	FUZZ_ASSERT(strcmp(item->valuestring, want) == 0);
}

/* The JSON body: exactly the documented members, in order, with our values */
static void
check_json_body(const PartooMessage *m, const PartooBody *b)
{
	const char *end = NULL;
	cJSON	   *root;
	const cJSON *c;
	const char *third;
	char		head[64];
	int			n = 0;

	FUZZ_ASSERT(strcmp(b->content_type, "application/json") == 0);
	FUZZ_ASSERT(b->data != NULL && b->len == strlen(b->data));
	root = cJSON_ParseWithLengthOpts(b->data, b->len + 1, &end, true);
	FUZZ_ASSERT(root != NULL && cJSON_IsObject(root));
	FUZZ_ASSERT(end == b->data + b->len);

	third = m->content_type == PARTOO_CT_TEXT ? "content" :
		m->content_type == PARTOO_CT_IMAGE ? "url" : "content";
	for (c = root->child; c != NULL; c = c->next, n++)
	{
		static const char *const keys[4] = {"conversation_id", "content_type", NULL, "date"};
		const char *key = n == 2 ? third : n < 4 ? keys[n] : NULL;

		FUZZ_ASSERT(key != NULL && c->string != NULL && strcmp(c->string, key) == 0);
	}
	FUZZ_ASSERT(n == 4);

	/* the id as exact digits, never through a double */
	snprintf(head, sizeof(head), "{\"conversation_id\":%" PRId64 ",", m->conversation_id);
	FUZZ_ASSERT(strncmp(b->data, head, strlen(head)) == 0);
	FUZZ_ASSERT(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(root, "conversation_id")));

	expect_string(cJSON_GetObjectItemCaseSensitive(root, "content_type"),
				  partoo_content_type_name(m->content_type));
	expect_string(cJSON_GetObjectItemCaseSensitive(root, "date"), m->date);
	c = cJSON_GetObjectItemCaseSensitive(root, third);
	if (m->content_type == PARTOO_CT_TEXT)
		expect_string(c, m->content);
	else if (m->content_type == PARTOO_CT_IMAGE)
		expect_string(c, m->url);
	else
	{
		FUZZ_ASSERT(cJSON_IsObject(c) && c->child != NULL && c->child->next == NULL);
		FUZZ_ASSERT(strcmp(c->child->string, "url") == 0);
		expect_string(c->child, m->url);
	}
	cJSON_Delete(root);
}

/* Offset of the first needle in hay[from..len), or len if none */
static size_t
find(const char *hay, size_t len, size_t from, const char *needle, size_t nlen)
{
	const char *p;

	if (nlen == 0 || from > len)
		return len;
	p = memmem(hay + from, len - from, needle, nlen);
	return p ? (size_t) (p - hay) : len;
}

/*
 * One part of a multipart body starting at *pos, just after a delimiter
 * "--boundary".  Checks its headers are exactly the disposition of the
 * given name (and, for the file, the file name and type), and returns its
 * content through *content and *clen; *pos moves to the next delimiter.
 */
static void
next_part(const PartooBody *b, const char *delim, size_t *pos,
		  const char *name, const char *filename, const char *type,
		  const char **content, size_t *clen)
{
	char		headers[512];
	size_t		hlen;
	size_t		start;
	size_t		end;

	if (filename)
		hlen = (size_t) snprintf(headers, sizeof(headers),
								 "\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\nContent-Type: %s\r\n\r\n",
								 name, filename, type);
	else
		hlen = (size_t) snprintf(headers, sizeof(headers),
								 "\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n",
								 name);
	FUZZ_ASSERT(hlen < sizeof(headers));
	FUZZ_ASSERT(b->len - *pos >= hlen && memcmp(b->data + *pos, headers, hlen) == 0);
	start = *pos + hlen;
	end = find(b->data, b->len, start, delim, strlen(delim));
	FUZZ_ASSERT(end < b->len);
	*content = b->data + start;
	*clen = end - start;
	*pos = end + strlen(delim);
}

/*
 * The multipart body, parsed as a receiver would: split at the delimiter
 * CRLF "--" boundary, four parts in order, then the closing "--" CRLF and
 * nothing after it.  The boundary comes from the Content-Type; RFC 2046
 * wants 1 to 70 characters, which must not occur in any part.
 */
static void
check_multipart_body(const PartooMessage *m, const PartooBody *b)
{
	static const char ct_prefix[] = "multipart/form-data; boundary=";
	const char *boundary;
	size_t		blen;
	char		delim[128];
	char		id[32];
	const char *filename;
	const char *type;
	const char *content;
	size_t		clen;
	size_t		pos;
	size_t		i;

	FUZZ_ASSERT(strncmp(b->content_type, ct_prefix, strlen(ct_prefix)) == 0);
	boundary = b->content_type + strlen(ct_prefix);
	blen = strlen(boundary);
	FUZZ_ASSERT(blen >= 1 && blen <= 70);
	for (i = 0; i < blen; i++)
		FUZZ_ASSERT(strchr("0123456789abcdefghijklmnopqrstuvwxyz"
						   "ABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?",
						   boundary[i]) != NULL);
	FUZZ_ASSERT(find((const char *) m->image, m->image_len, 0, boundary, blen) ==
				m->image_len);

	if (m->image_len >= 3 && memcmp(m->image, "\xFF\xD8\xFF", 3) == 0)
	{
		type = "image/jpeg";
		filename = "image.jpg";
	}
	else if (m->image_len >= 8 && memcmp(m->image, "\x89PNG\r\n\x1A\n", 8) == 0)
	{
		type = "image/png";
		filename = "image.png";
	}
	else
	{
		type = "application/octet-stream";
		filename = "image.bin";
	}
	if (m->filename != NULL)
		filename = m->filename;

	/* the body opens with a delimiter without the leading CRLF */
	snprintf(delim, sizeof(delim), "--%s", boundary);
	FUZZ_ASSERT(b->len > strlen(delim) && memcmp(b->data, delim, strlen(delim)) == 0);
	pos = strlen(delim);
	snprintf(delim, sizeof(delim), "\r\n--%s", boundary);

	snprintf(id, sizeof(id), "%" PRId64, m->conversation_id);
	next_part(b, delim, &pos, "conversation_id", NULL, NULL, &content, &clen);
	FUZZ_ASSERT(clen == strlen(id) && memcmp(content, id, clen) == 0);
	next_part(b, delim, &pos, "content_type", NULL, NULL, &content, &clen);
	FUZZ_ASSERT(clen == 5 && memcmp(content, "Image", 5) == 0);
	next_part(b, delim, &pos, "date", NULL, NULL, &content, &clen);
	FUZZ_ASSERT(clen == strlen(m->date) && memcmp(content, m->date, clen) == 0);
	next_part(b, delim, &pos, "image", filename, type, &content, &clen);
	FUZZ_ASSERT(clen == m->image_len && memcmp(content, m->image, clen) == 0);

	FUZZ_ASSERT(b->len - pos == 4 && memcmp(b->data + pos, "--\r\n", 4) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FuzzReader	r;
	FuzzMessage fm;
	PartooProblem err;
	PartooProblem warning;
	PartooBody	body;
	int			rc;
	bool		valid;

	fr_init(&r, data, size);
	decode_message(&r, &fm);
	check_names(fm.filename);

	/* poison the problems: validation must reset them */
	memset(&err, 'x', sizeof(err));
	memset(&warning, 'x', sizeof(warning));
	rc = partoo_validate_message(&fm.m, &err, &warning);
	FUZZ_ASSERT(rc == PARTOO_VALID || rc == PARTOO_VALID_WITH_WARNING ||
				rc == PARTOO_NOT_VALID);
	valid = rc != PARTOO_NOT_VALID;
	FUZZ_ASSERT(valid == model_valid(&fm.m));

	FUZZ_ASSERT(warning.kind == PARTOO_PROBLEM_NONE);
	check_problem(&warning, rc == PARTOO_VALID_WITH_WARNING);
	FUZZ_ASSERT((err.kind != PARTOO_PROBLEM_NONE) == !valid);
	check_problem(&err, !valid);
	FUZZ_ASSERT(partoo_validate_message(&fm.m, NULL, NULL) == rc);

	memset(&body, 'x', sizeof(body));
	if (partoo_build_send_body(&fm.m, &body) != 0)
	{
		/* a valid message always builds; a failure leaves nothing behind */
		FUZZ_ASSERT(!valid);
		FUZZ_ASSERT(body.data == NULL && body.len == 0 && body.content_type[0] == '\0');
	}
	else
	{
		FUZZ_ASSERT(valid);
		if (fm.m.image != NULL)
			check_multipart_body(&fm.m, &body);
		else
			check_json_body(&fm.m, &body);
	}
	partoo_body_free(&body);
	FUZZ_ASSERT(body.data == NULL && body.len == 0);
	partoo_body_free(&body);

	free_message(&fm);
	return 0;
}
