/*-------------------------------------------------------------------------
 *
 * request.c
 *		Request bodies and paths for the Partoo messages API.
 *
 * One function turns a validated PartooMessage into the exact bytes of a
 * POST /messages body: JSON for Text and for media given by URL (three
 * different shapes, see DESIGN.md section 5), multipart/form-data for an
 * uploaded image; which shape, and what an upload's file part says, come
 * from the content type's entry in content_type.c.  The body is complete
 * and self-contained: the caller sends data[0..len) with the given
 * Content-Type and frees it with partoo_body_free().  The output is a pure
 * function of the message, so the same message always yields the same
 * bytes (the multipart boundary included), which keeps tests and the mock
 * server's checks exact.
 *
 * NB: conversation_id is printed from the int64 itself, never through a
 * double, since cJSON numbers are doubles and would round ids above 2^53.
 *
 * src/core/request.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/message.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* "partoo-" plus 32 hex digits */
#define BOUNDARY_PREFIX		"partoo-"
#define BOUNDARY_LEN		(sizeof(BOUNDARY_PREFIX) - 1 + 32)
/* Attempts at a boundary absent from the data; one nearly always suffices */
#define BOUNDARY_TRIES		1000

static void
zero_body(PartooBody *out)
{
	out->data = NULL;
	out->len = 0;
	out->content_type[0] = '\0';
}

void
partoo_body_free(PartooBody *b)
{
	if (b == NULL)
		return;
	free(b->data);
	zero_body(b);
}

/*
 * Copy a string printed by cJSON into memory of our own.  cJSON allocates
 * through hooks that anyone in the process may have replaced (with palloc,
 * say), while partoo_body_free() must be able to use free().
 */
static char *
take_cjson_string(char *printed, size_t *len)
{
	char	   *copy;

	if (printed == NULL)
		return NULL;
	*len = strlen(printed);
	copy = malloc(*len + 1);
	if (copy != NULL)
		memcpy(copy, printed, *len + 1);
	cJSON_free(printed);
	return copy;
}

/*
 * Add the message's payload to the JSON body, in the shape its content
 * type's entry names.  Returns false when out of memory.
 */
static bool
add_payload(cJSON *root, const PartooMessage *m)
{
	cJSON	   *content;

	switch (partoo_content_type_info(m->content_type)->shape)
	{
		case PARTOO_BODY_TEXT:
			return cJSON_AddStringToObject(root, "content", m->content) != NULL;
		case PARTOO_BODY_URL:
			return cJSON_AddStringToObject(root, "url", m->url) != NULL;
		case PARTOO_BODY_CONTENT_URL:
			content = cJSON_AddObjectToObject(root, "content");
			return content != NULL &&
				cJSON_AddStringToObject(content, "url", m->url) != NULL;
	}
	return false;
}

/*
 * Build the JSON body of a validated message.  Members are added in the
 * order the API documents them, so the text is predictable:
 * conversation_id, content_type, then the payload (content or url), then
 * date.
 */
static int
build_json(const PartooMessage *m, PartooBody *out)
{
	cJSON	   *root;
	cJSON	   *item;
	char		id[32];
	char	   *printed;
	bool		ok;

	root = cJSON_CreateObject();
	if (root == NULL)
		return -1;

	snprintf(id, sizeof(id), "%" PRId64, m->conversation_id);
	item = cJSON_CreateRaw(id);
	ok = item != NULL && cJSON_AddItemToObject(root, "conversation_id", item);
	if (!ok)
		cJSON_Delete(item);		/* not owned by root when adding failed */

	ok = ok && cJSON_AddStringToObject(root, "content_type",
									   partoo_content_type_name(m->content_type)) != NULL;

	ok = ok && add_payload(root, m);
	ok = ok && cJSON_AddStringToObject(root, "date", m->date) != NULL;

	printed = ok ? cJSON_PrintUnformatted(root) : NULL;
	cJSON_Delete(root);
	out->data = take_cjson_string(printed, &out->len);
	if (out->data == NULL)
		return -1;
	snprintf(out->content_type, sizeof(out->content_type), "application/json");
	return 0;
}

/* 64-bit FNV-1a, continuing from h */
static uint64_t
fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t		i;

	for (i = 0; i < len; i++)
	{
		h ^= p[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

/*
 * A final avalanche (splitmix64's), because FNV-1a lets a change in the
 * last bytes hashed (our counter) reach the high bits only weakly.
 */
static uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/*
 * Does needle occur in hay?  memchr to each 'p', then memcmp: linear in
 * practice, and never worse than BOUNDARY_LEN compares per byte.
 */
static bool
contains(const void *hay, size_t haylen, const char *needle, size_t nlen)
{
	const unsigned char *h = hay;
	const unsigned char *end;
	const unsigned char *p;

	if (hay == NULL || haylen < nlen)
		return false;
	end = h + (haylen - nlen) + 1;
	for (p = h; p < end; p++)
	{
		p = memchr(p, (unsigned char) needle[0], (size_t) (end - p));
		if (p == NULL)
			return false;
		if (memcmp(p, needle, nlen) == 0)
			return true;
	}
	return false;
}

/*
 * Derive a boundary that occurs in no part of the body: a hash of the
 * parts' contents and a counter, re-derived until absent.  Deterministic,
 * so the same message gives the same body; a boundary present in the
 * data would need the data to contain a hash of itself.  Returns false
 * only if BOUNDARY_TRIES candidates all occur, which cannot happen with
 * data below PARTOO_IMAGE_MAX_BYTES short of a hash collision per try.
 */
static bool
make_boundary(const PartooMessage *m, const char *id, const char *filename,
			  char *boundary)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t	base;
	uint32_t	counter;

	base = fnv1a(UINT64_C(0xcbf29ce484222325), m->image, m->image_len);
	base = fnv1a(base, id, strlen(id));
	base = fnv1a(base, m->date, strlen(m->date));
	base = fnv1a(base, filename, strlen(filename));

	for (counter = 0; counter < BOUNDARY_TRIES; counter++)
	{
		uint64_t	h[2];
		unsigned char c[4];
		int			i;

		c[0] = (unsigned char) counter;
		c[1] = (unsigned char) (counter >> 8);
		c[2] = (unsigned char) (counter >> 16);
		c[3] = (unsigned char) (counter >> 24);
		h[0] = mix64(fnv1a(base, c, 4));
		h[1] = mix64(fnv1a(base ^ UINT64_C(0x9e3779b97f4a7c15), c, 4));

		memcpy(boundary, BOUNDARY_PREFIX, sizeof(BOUNDARY_PREFIX) - 1);
		for (i = 0; i < 32; i++)
			boundary[sizeof(BOUNDARY_PREFIX) - 1 + i] =
				hex[(h[i / 16] >> (60 - 4 * (i % 16))) & 0xF];
		boundary[BOUNDARY_LEN] = '\0';

		if (!contains(m->image, m->image_len, boundary, BOUNDARY_LEN) &&
			!contains(id, strlen(id), boundary, BOUNDARY_LEN) &&
			!contains(m->date, strlen(m->date), boundary, BOUNDARY_LEN) &&
			!contains(filename, strlen(filename), boundary, BOUNDARY_LEN))
			return true;
	}
	return false;
}

/*
 * What the file part of an upload says about the file: its Content-Type
 * always follows the magic bytes, since Partoo looks at it; its file name
 * is the caller's, or else the format's default.
 */
static void
describe_upload(const PartooMessage *m, const PartooUploadInfo *upload,
				const char **mime, const char **filename)
{
	const PartooFileSignature *format;

	format = partoo_upload_format(upload, m->image, m->image_len);
	if (format == NULL)
		format = &upload->other;
	*mime = format->mime;
	*filename = m->filename != NULL ? m->filename : format->default_filename;
}

/*
 * Everything before the uploaded bytes and everything after them.  The
 * arguments of MULTIPART_HEAD, in order: boundary, conversation_id,
 * boundary, content type name, boundary, date, boundary, file part name,
 * file name, Content-Type of the file.
 */
#define MULTIPART_HEAD \
	"--%s\r\n" \
	"Content-Disposition: form-data; name=\"conversation_id\"\r\n" \
	"\r\n" \
	"%s\r\n" \
	"--%s\r\n" \
	"Content-Disposition: form-data; name=\"content_type\"\r\n" \
	"\r\n" \
	"%s\r\n" \
	"--%s\r\n" \
	"Content-Disposition: form-data; name=\"date\"\r\n" \
	"\r\n" \
	"%s\r\n" \
	"--%s\r\n" \
	"Content-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n" \
	"Content-Type: %s\r\n" \
	"\r\n"
#define MULTIPART_TAIL "\r\n--%s--\r\n"

/*
 * Build the multipart/form-data body of an upload (RFC 7578): CRLF line
 * ends, each part's content followed by CRLF and the next delimiter, a
 * closing delimiter with "--".  Head and tail are printed once to learn
 * their lengths and once into the body.
 */
static int
build_multipart(const PartooMessage *m, PartooBody *out)
{
	const PartooContentTypeInfo *info = partoo_content_type_info(m->content_type);
	const char *filename;
	const char *mime;
	char		id[32];
	char		boundary[BOUNDARY_LEN + 1];
	char	   *head;
	char	   *tail;
	int			headlen;
	int			taillen;
	size_t		total;

	describe_upload(m, info->upload, &mime, &filename);
	snprintf(id, sizeof(id), "%" PRId64, m->conversation_id);
	if (!make_boundary(m, id, filename, boundary))
		return -1;

	headlen = snprintf(NULL, 0, MULTIPART_HEAD, boundary, id, boundary,
					   info->name, boundary, m->date, boundary,
					   info->upload->part_name, filename, mime);
	taillen = snprintf(NULL, 0, MULTIPART_TAIL, boundary);
	if (headlen < 0 || taillen < 0)
		return -1;
	total = (size_t) headlen + m->image_len + (size_t) taillen;

	/* snprintf writes a NUL after the tail, hence the extra byte */
	out->data = malloc(total + 1);
	if (out->data == NULL)
		return -1;
	head = out->data;
	snprintf(head, (size_t) headlen + 1, MULTIPART_HEAD, boundary, id, boundary,
			 info->name, boundary, m->date, boundary,
			 info->upload->part_name, filename, mime);
	memcpy(head + headlen, m->image, m->image_len);
	tail = head + headlen + m->image_len;
	snprintf(tail, (size_t) taillen + 1, MULTIPART_TAIL, boundary);
	out->len = total;
	snprintf(out->content_type, sizeof(out->content_type),
			 "multipart/form-data; boundary=%s", boundary);
	return 0;
}

/*
 * See core/message.h.  The message is validated again here: a body is only
 * ever built for a message that would pass, whatever the caller did.
 */
int
partoo_build_send_body(const PartooMessage *m, PartooBody *out)
{
	int			rc;

	if (out == NULL)
		return -1;
	zero_body(out);
	if (m == NULL || partoo_validate_message(m, NULL, NULL) == PARTOO_NOT_VALID)
		return -1;

	if (m->image != NULL)
		rc = build_multipart(m, out);
	else
		rc = build_json(m, out);
	if (rc != 0)
		partoo_body_free(out);
	return rc;
}

char *
partoo_path_send(char *buf, size_t buflen)
{
	if (buf != NULL && buflen > 0)
		snprintf(buf, buflen, "/messages");
	return buf;
}

char *
partoo_path_retry(int64_t message_id, char *buf, size_t buflen)
{
	if (buf != NULL && buflen > 0)
		snprintf(buf, buflen, "/messages/%" PRId64 "/retry", message_id);
	return buf;
}
