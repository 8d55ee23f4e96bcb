/*-------------------------------------------------------------------------
 *
 * test_protocol.c
 *		Unit tests of the protocol core: names, validation, UTF-8, dates,
 *		request bodies, response parsing, failure classes, Retry-After,
 *		backoff and the rate limiter.
 *
 * Runs without a server: it links src/core/{content_type,validate,request,
 * response,ratelimit}.c directly.  Expected request bodies are spelled out byte for
 * byte, since the mock server checks bodies exactly and so does Partoo.
 * Random inputs come from a fixed-seed generator so every run is the same.
 *
 * test/core/unit/test_protocol.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/api.h"
#include "core/message.h"
#include "core/ratelimit.h"
#include "core/window.h"
#include "unit.h"

#include <limits.h>
#include <stdlib.h>

#define DATE "2026-11-23T10:00:00.000000Z"

/* splitmix64: a small deterministic source of test randomness */
static uint64_t
next_random(uint64_t *state)
{
	uint64_t	z = (*state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static bool
mem_contains(const void *hay, size_t haylen, const void *needle, size_t nlen)
{
	const char *h = hay;
	size_t		i;

	if (nlen > haylen)
		return false;
	for (i = 0; i + nlen <= haylen; i++)
		if (memcmp(h + i, needle, nlen) == 0)
			return true;
	return false;
}

static PartooMessage
text_msg(const char *content)
{
	PartooMessage m;

	memset(&m, 0, sizeof(m));
	m.conversation_id = 42;
	m.content_type = PARTOO_CT_TEXT;
	m.content = content;
	m.channel = PARTOO_CH_NONE;
	m.date = DATE;
	return m;
}

static PartooMessage
url_msg(PartooContentType ct, const char *url)
{
	PartooMessage m = text_msg(NULL);

	m.content_type = ct;
	m.url = url;
	return m;
}

static PartooMessage
upload_msg(const unsigned char *image, size_t len)
{
	PartooMessage m = text_msg(NULL);

	m.content_type = PARTOO_CT_IMAGE;
	m.image = image;
	m.image_len = len;
	return m;
}

static const unsigned char jpeg_bytes[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F'};
static const unsigned char png_bytes[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13};
static const unsigned char gif_bytes[] = {'G', 'I', 'F', '8', '9', 'a', 1, 0};

/*
 * Validate and check the outcome: rc, and for failures the kind and the
 * exact message.  want_message NULL skips the message comparison.
 */
static void
expect_invalid(const PartooMessage *m, PartooProblemKind kind,
			   const char *want_message, const char *what)
{
	PartooProblem err;
	PartooProblem warning;
	int			rc = partoo_validate_message(m, &err, &warning);

	unit_check(rc == PARTOO_NOT_VALID && err.kind == kind,
			   "%s: rejected with the right kind", what);
	if (want_message)
		unit_check_str(err.message, want_message, "%s: message", what);
	unit_check(err.hint[0] != '\0' || err.detail[0] != '\0' ||
			   strcmp(err.message, "the uploaded image is empty") == 0,
			   "%s: has a detail or hint", what);
}

static void
expect_valid(const PartooMessage *m, const char *what)
{
	PartooProblem err;
	PartooProblem warning;
	int			rc = partoo_validate_message(m, &err, &warning);

	if (!unit_check(rc == PARTOO_VALID && err.kind == PARTOO_PROBLEM_NONE &&
					err.message[0] == '\0' && warning.message[0] == '\0',
					"%s: valid", what))
		printf("#   rc %d, err \"%s\", warning \"%s\"\n", rc, err.message,
			   warning.message);
}

static void
expect_warning(const PartooMessage *m, const char *want_message,
			   const char *want_detail, const char *what)
{
	PartooProblem err;
	PartooProblem warning;
	int			rc = partoo_validate_message(m, &err, &warning);

	unit_check(rc == PARTOO_VALID_WITH_WARNING && err.message[0] == '\0',
			   "%s: valid with a warning", what);
	unit_check_str(warning.message, want_message, "%s: warning message", what);
	if (want_detail)
		unit_check_str(warning.detail, want_detail, "%s: warning detail", what);
}

static void
test_names(void)
{
	static const char *const cts[] = {"Text", "Image", "Video", "Audio", "Document"};
	static const char *const chs[] = {"Facebook", "Instagram", "SMS", "Whatsapp", "Google"};
	int			i;

	unit_note("names");
	for (i = 0; i < 5; i++)
	{
		char		lower[16];
		char		upper[16];
		int			k;

		for (k = 0; cts[i][k]; k++)
		{
			lower[k] = (char) (cts[i][k] | 0x20);
			upper[k] = (char) (cts[i][k] & ~0x20);
		}
		lower[k] = upper[k] = '\0';
		unit_check_int(partoo_content_type_from_name(cts[i]), i, "content type %s", cts[i]);
		unit_check_int(partoo_content_type_from_name(lower), i, "content type %s", lower);
		unit_check_int(partoo_content_type_from_name(upper), i, "content type %s", upper);
		unit_check_str(partoo_content_type_name((PartooContentType) i), cts[i],
					   "canonical name of content type %d", i);
	}
	unit_check_int(partoo_content_type_from_name(NULL), PARTOO_CT_INVALID, "content type NULL");
	unit_check_int(partoo_content_type_from_name(""), PARTOO_CT_INVALID, "content type empty");
	unit_check_int(partoo_content_type_from_name("Text "), PARTOO_CT_INVALID, "content type with a space");
	unit_check_int(partoo_content_type_from_name("Gif"), PARTOO_CT_INVALID, "content type Gif");
	unit_check_str(partoo_content_type_name(PARTOO_CT_INVALID), NULL, "no name for an invalid content type");
	unit_check_str(partoo_content_type_name((PartooContentType) 5), NULL, "no name out of range");

	for (i = 0; i < 5; i++)
	{
		char		lower[16];
		int			k;

		for (k = 0; chs[i][k]; k++)
			lower[k] = (char) (chs[i][k] | 0x20);
		lower[k] = '\0';
		unit_check_int(partoo_channel_from_name(chs[i]), i + 1, "channel %s", chs[i]);
		unit_check_int(partoo_channel_from_name(lower), i + 1, "channel %s", lower);
		unit_check_str(partoo_channel_name((PartooChannel) (i + 1)), chs[i],
					   "canonical name of channel %d", i + 1);
	}
	unit_check_int(partoo_channel_from_name("WhatsApp"), PARTOO_CH_WHATSAPP, "channel WhatsApp");
	unit_check_int(partoo_channel_from_name(NULL), PARTOO_CH_NONE, "channel NULL is none");
	unit_check_int(partoo_channel_from_name(""), PARTOO_CH_INVALID, "channel empty is invalid");
	unit_check_int(partoo_channel_from_name("Telegram"), PARTOO_CH_INVALID, "channel Telegram is invalid");
	unit_check_str(partoo_channel_name(PARTOO_CH_NONE), NULL, "no name for no channel");
	unit_check_str(partoo_channel_name(PARTOO_CH_INVALID), NULL, "no name for an invalid channel");
}

/* A message that should pass for this entry: its payload, nothing else */
static PartooMessage
minimal_msg(const PartooContentTypeInfo *info, char *url, size_t urllen)
{
	PartooMessage m = text_msg(NULL);

	m.content_type = info->type;
	if (info->shape == PARTOO_BODY_TEXT)
		m.content = "hello";
	else
	{
		snprintf(url, urllen, "https://example.com/file.%s", info->extensions[0]);
		m.url = url;
	}
	return m;
}

/* One entry's own fields: names, texts, limits, file types, upload */
static void
check_table_entry(const PartooContentTypeInfo *info, int i)
{
	char		lower[32];
	int			k;

	unit_check(info->name != NULL && info->name[0] != '\0' &&
			   strlen(info->name) < sizeof(lower), "entry %d has a name", i);
	if (info->name == NULL)
		return;
	unit_check_int(info->type, i, "%s: type is its index", info->name);
	unit_check_int(partoo_content_type_from_name(info->name), i,
				   "%s: name round-trips", info->name);
	unit_check_str(partoo_content_type_name((PartooContentType) i), info->name,
				   "%s: canonical name", info->name);
	for (k = 0; info->name[k] && k < (int) sizeof(lower) - 1; k++)
		lower[k] = (char) (info->name[k] | 0x20);
	lower[k] = '\0';
	unit_check_int(partoo_content_type_from_name(lower), i,
				   "%s: lower-case name matches", info->name);
	unit_check(info->article != NULL &&
			   (strcmp(info->article, "a") == 0 || strcmp(info->article, "an") == 0),
			   "%s: article", info->name);
	unit_check(info->max_bytes > 0, "%s: has a limit", info->name);
	unit_check(info->needs != NULL && info->needs[0] != '\0' &&
			   info->needs_hint != NULL && info->needs_hint[0] != '\0',
			   "%s: says what it needs, with a hint", info->name);
	unit_check(info->channels != 0 &&
			   (info->channels & PARTOO_CHANNEL_BIT(PARTOO_CH_NONE)) == 0 &&
			   (info->channels >> (PARTOO_CH_GOOGLE + 1)) == 0,
			   "%s: accepted by some channels, all of them real", info->name);

	if (info->shape == PARTOO_BODY_TEXT)
		unit_check(info->num_extensions == 0 && info->upload == NULL,
				   "%s: text has no file types and no upload", info->name);
	else
	{
		bool		ok = info->num_extensions > 0;

		for (k = 0; ok && k < info->num_extensions; k++)
		{
			const char *e = info->extensions[k];

			ok = e != NULL && e[0] != '\0' && strlen(e) < 17 &&
				strspn(e, "abcdefghijklmnopqrstuvwxyz0123456789") == strlen(e);
		}
		unit_check(ok, "%s: recommended file types are lower-case extensions",
				   info->name);
	}

	if (info->upload != NULL)
	{
		const PartooUploadInfo *up = info->upload;
		bool		ok = up->num_recommended > 0;

		for (k = 0; ok && k < up->num_recommended; k++)
			ok = up->recommended[k].magic_len > 0 &&
				up->recommended[k].mime != NULL &&
				up->recommended[k].default_filename != NULL;
		unit_check(ok && up->part_name != NULL && up->other.mime != NULL &&
				   up->other.default_filename != NULL &&
				   up->not_recommended_warning != NULL,
				   "%s: upload fully described", info->name);
	}
}

/*
 * What validation and request building make of an entry: a minimal message
 * passes and its body names the type, in the entry's shape; a message
 * without its payload is refused with the entry's words.
 */
static void
check_table_use(const PartooContentTypeInfo *info)
{
	static const char *const shape_member[] = {
		[PARTOO_BODY_TEXT] = "\"content\":\"hello\"",
		[PARTOO_BODY_URL] = "\"url\":\"https://example.com/file.",
		[PARTOO_BODY_CONTENT_URL] = "\"content\":{\"url\":\"https://example.com/file."
	};
	char		url[64];
	char		want[160];
	PartooMessage m = minimal_msg(info, url, sizeof(url));
	PartooProblem err;
	PartooBody body;

	expect_valid(&m, info->name);
	unit_check(partoo_build_send_body(&m, &body) == 0 && body.data != NULL,
			   "%s: body built", info->name);
	snprintf(want, sizeof(want), "\"content_type\":\"%s\"", info->name);
	unit_check(body.data && strstr(body.data, want) != NULL,
			   "%s: body names the type", info->name);
	unit_check(body.data && strstr(body.data, shape_member[info->shape]) != NULL,
			   "%s: body in the entry's shape", info->name);
	partoo_body_free(&body);

	m.content = NULL;
	m.url = NULL;
	partoo_validate_message(&m, &err, NULL);
	snprintf(want, sizeof(want), "%s %s message needs %s", info->article,
			 info->name, info->needs);
	unit_check_str(err.message, want, "%s: missing payload message", info->name);
	unit_check_str(err.hint, info->needs_hint, "%s: missing payload hint", info->name);

	if (info->upload != NULL)
	{
		const PartooFileSignature *sig = &info->upload->recommended[0];

		m.image = sig->magic;
		m.image_len = sig->magic_len;
		expect_valid(&m, "upload of the first recommended format");
		unit_check(partoo_build_send_body(&m, &body) == 0,
				   "%s: upload body built", info->name);
		snprintf(want, sizeof(want), "name=\"%s\"; filename=\"%s\"\r\nContent-Type: %s\r\n",
				 info->upload->part_name, sig->default_filename, sig->mime);
		unit_check(mem_contains(body.data, body.len, want, strlen(want)),
				   "%s: upload body's file part", info->name);
		partoo_body_free(&body);
	}
}

/* Walk the content type table: every entry complete, and used as written */
static void
test_content_type_table(void)
{
	char		list[PARTOO_CT_LIST_BUFLEN];
	int			text_entries = 0;
	int			i;

	unit_note("content type table");
	for (i = 0; i < PARTOO_NUM_CONTENT_TYPES; i++)
	{
		const PartooContentTypeInfo *info =
			partoo_content_type_info((PartooContentType) i);

		if (!unit_check(info != NULL, "entry %d exists", i))
			continue;
		check_table_entry(info, i);
		if (info->name == NULL)
			continue;
		check_table_use(info);
		if (info->shape == PARTOO_BODY_TEXT)
			text_entries++;
		unit_check(info->channels & PARTOO_CHANNEL_BIT(PARTOO_CH_FACEBOOK) &&
				   info->channels & PARTOO_CHANNEL_BIT(PARTOO_CH_WHATSAPP),
				   "%s: Facebook and Whatsapp take every type", info->name);
	}
	unit_check_int(text_entries, 1, "one text entry (the content argument)");
	unit_check(partoo_content_type_info(PARTOO_CT_INVALID) == NULL &&
			   partoo_content_type_info((PartooContentType) PARTOO_NUM_CONTENT_TYPES) == NULL,
			   "no entry outside the enum");

	unit_check_int(partoo_content_type_list(PARTOO_CT_LIST_ALL, PARTOO_CH_NONE,
											" or ", list, sizeof(list)),
				   PARTOO_NUM_CONTENT_TYPES, "the list of all names counts them");
	unit_check(strlen(list) + 1 < sizeof(list), "the list of all names fits");
	partoo_content_type_list(PARTOO_CT_LIST_ALL, PARTOO_CH_NONE, ", ", list,
							 sizeof(list));
	unit_check_str(list, "Text, Image, Video, Audio, Document",
				   "list for the server's hint");
	partoo_content_type_list(PARTOO_CT_LIST_ALL, PARTOO_CH_INSTAGRAM, " and ",
							 list, sizeof(list));
	unit_check_str(list, "Text, Image, Video and Audio", "list for one channel");
	partoo_content_type_list(PARTOO_CT_LIST_UPLOAD, PARTOO_CH_NONE, " and ",
							 list, sizeof(list));
	unit_check_str(list, "Image", "list of types with an upload");
	partoo_content_type_list(PARTOO_CT_LIST_URL_ONLY, PARTOO_CH_NONE, " and ",
							 list, sizeof(list));
	unit_check_str(list, "Video, Audio and Document", "list of types by url only");
}

static void
test_validation_rules(void)
{
	PartooMessage m;
	PartooProblem err;
	PartooProblem warning;
	char	   *big;
	unsigned char *image;
	char		name[300];

	unit_note("validation rules");

	m = text_msg("hello");
	expect_valid(&m, "plain Text");

	unit_check(partoo_validate_message(NULL, &err, &warning) == PARTOO_NOT_VALID,
			   "NULL message rejected");
	unit_check(partoo_validate_message(&m, NULL, NULL) == PARTOO_VALID,
			   "NULL err and warning accepted");

	/* err and warning are reset first */
	memset(&err, 'x', sizeof(err));
	memset(&warning, 'x', sizeof(warning));
	partoo_validate_message(&m, &err, &warning);
	unit_check(err.kind == PARTOO_PROBLEM_NONE && err.message[0] == '\0' &&
			   err.detail[0] == '\0' && err.hint[0] == '\0' &&
			   warning.message[0] == '\0' && warning.hint[0] == '\0',
			   "err and warning reset");

	m.conversation_id = 0;
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "conversation_id must be positive", "conversation_id 0");
	m.conversation_id = -7;
	partoo_validate_message(&m, &err, &warning);
	unit_check_str(err.detail, "The conversation_id given is -7.", "conversation_id detail");
	m.conversation_id = INT64_MIN;
	m.content_type = PARTOO_CT_INVALID;
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "conversation_id must be positive",
				   "conversation_id checked before content type");

	m = text_msg("hello");
	m.content_type = PARTOO_CT_INVALID;
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "invalid content type", "content type invalid");
	partoo_validate_message(&m, &err, &warning);
	unit_check_str(err.hint, "Valid content types are Text, Image, Video, Audio and Document.",
				   "content type hint lists the five");
	m.content_type = (PartooContentType) 17;
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "invalid content type", "content type out of range");
	m.channel = PARTOO_CH_INVALID;
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "invalid content type",
				   "content type checked before channel");

	m = text_msg("hello");
	m.channel = PARTOO_CH_INVALID;
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "invalid channel", "channel invalid");
	partoo_validate_message(&m, &err, &warning);
	unit_check(strstr(err.hint, "Facebook, Instagram, SMS, Whatsapp and Google") != NULL,
			   "channel hint lists the channels");
	m.channel = (PartooChannel) 99;
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "invalid channel", "channel out of range");

	/* Text */
	m = text_msg(NULL);
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "a Text message needs content", "Text without content");
	partoo_validate_message(&m, &err, &warning);
	unit_check_str(err.hint, "Pass the text in the content argument.", "Text without content: hint");
	m = text_msg("");
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "a Text message needs content", "Text with empty content");

	big = malloc(PARTOO_TEXT_MAX_BYTES + 2);
	memset(big, 'a', PARTOO_TEXT_MAX_BYTES + 1);
	big[PARTOO_TEXT_MAX_BYTES] = '\0';
	m = text_msg(big);
	expect_valid(&m, "Text of exactly the limit");
	big[PARTOO_TEXT_MAX_BYTES] = 'a';
	big[PARTOO_TEXT_MAX_BYTES + 1] = '\0';
	expect_invalid(&m, PARTOO_PROBLEM_TOO_LARGE, "content is too long", "Text over the limit");
	partoo_validate_message(&m, &err, &warning);
	unit_check_str(err.detail, "The content is 65537 bytes; the limit is 65536 bytes.",
				   "Text over the limit: detail");
	free(big);

	m = text_msg("hello");
	m.url = "https://example.com/a.png";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "a Text message cannot have a url or an image",
				   "Text with a url");
	m = text_msg("hello");
	m.image = jpeg_bytes;
	m.image_len = sizeof(jpeg_bytes);
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "a Text message cannot have a url or an image",
				   "Text with an image");
	m = text_msg("hello");
	m.filename = "a.jpg";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "a file name is only used with an uploaded image",
				   "Text with a file name");

	/* media: url or image */
	m = url_msg(PARTOO_CT_IMAGE, NULL);
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "an Image message needs a url or an uploaded image",
				   "Image with neither");
	m = url_msg(PARTOO_CT_VIDEO, NULL);
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "a Video message needs a url", "Video with neither");
	m = url_msg(PARTOO_CT_AUDIO, NULL);
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "an Audio message needs a url", "Audio with neither");
	m = url_msg(PARTOO_CT_DOCUMENT, NULL);
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "a Document message needs a url", "Document with neither");

	m = url_msg(PARTOO_CT_IMAGE, "https://example.com/a.png");
	m.image = jpeg_bytes;
	m.image_len = sizeof(jpeg_bytes);
	expect_invalid(&m, PARTOO_PROBLEM_INVALID,
				   "an Image message cannot have both a url and an uploaded image", "Image with both");

	m = upload_msg(jpeg_bytes, sizeof(jpeg_bytes));
	m.content_type = PARTOO_CT_VIDEO;
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "an upload is only supported for Image", "Video upload");
	partoo_validate_message(&m, &err, &warning);
	unit_check_str(err.hint, "Give Video, Audio and Document files by url.", "Video upload: hint");
	m.content_type = PARTOO_CT_DOCUMENT;
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "an upload is only supported for Image", "Document upload");

	m = url_msg(PARTOO_CT_VIDEO, "https://example.com/a.mp4");
	m.content = "caption";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "content is for Text messages only", "Video with content");
	m = upload_msg(png_bytes, sizeof(png_bytes));
	m.content = "";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "content is for Text messages only",
				   "uploaded Image with empty content");

	/* URLs */
	m = url_msg(PARTOO_CT_IMAGE, "ftp://example.com/a.png");
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "url must start with http:// or https://", "ftp url");
	m.url = "example.com/a.png";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "url must start with http:// or https://", "url without scheme");
	m.url = "http:/example.com/a.png";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "url must start with http:// or https://", "http:/ url");
	m.url = "";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "url must start with http:// or https://", "empty url");
	m.url = "HTTPS://EXAMPLE.COM/A.PNG";
	expect_valid(&m, "upper-case url");
	m.url = "http://example.com/a.png";
	expect_valid(&m, "http url");
	m.url = "https://";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "url has no host", "url without host");
	m.url = "https:///a.png";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "url has no host", "url with empty host");
	m.url = "https://example.com/a b.png";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "url contains whitespace or control characters", "url with a space");
	partoo_validate_message(&m, &err, &warning);
	unit_check_str(err.detail, "The character at byte 21 is a space or a control character.",
				   "url with a space: detail");
	m.url = "https://example.com/a\tb.png";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "url contains whitespace or control characters", "url with a tab");
	m.url = "https://example.com/a.png\r\nX-Evil: 1";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "url contains whitespace or control characters", "url with CRLF");
	m.url = "https://example.com/\x7f.png";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "url contains whitespace or control characters", "url with DEL");

	big = malloc(PARTOO_URL_MAX_BYTES + 2);
	memcpy(big, "https://example.com/", 20);
	memset(big + 20, 'a', PARTOO_URL_MAX_BYTES - 20 - 4);
	memcpy(big + PARTOO_URL_MAX_BYTES - 4, ".png", 5);
	m.url = big;
	expect_valid(&m, "url of exactly the limit");
	memcpy(big + PARTOO_URL_MAX_BYTES - 4, "a.png", 6);
	expect_invalid(&m, PARTOO_PROBLEM_TOO_LARGE, "url is too long", "url over the limit");
	free(big);

	/* uploads */
	m = upload_msg(jpeg_bytes, 0);
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "the uploaded image is empty", "empty upload");
	image = calloc(1, PARTOO_IMAGE_MAX_BYTES + 1);
	memcpy(image, jpeg_bytes, sizeof(jpeg_bytes));
	m = upload_msg(image, PARTOO_IMAGE_MAX_BYTES);
	expect_valid(&m, "upload of exactly 5 MB");
	m.image_len = PARTOO_IMAGE_MAX_BYTES + 1;
	expect_invalid(&m, PARTOO_PROBLEM_TOO_LARGE, "the uploaded image is too large", "upload over 5 MB");
	partoo_validate_message(&m, &err, &warning);
	unit_check(strstr(err.detail, "5242881") != NULL && strstr(err.detail, "5 MB") != NULL,
			   "upload over 5 MB: detail gives size and limit");
	free(image);

	/* file names */
	m = upload_msg(jpeg_bytes, sizeof(jpeg_bytes));
	m.filename = "photo.jpg";
	expect_valid(&m, "upload with a file name");
	memset(name, 'n', 255);
	name[255] = '\0';
	m.filename = name;
	expect_valid(&m, "file name of 255 bytes");
	name[255] = 'n';
	name[256] = '\0';
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "file name is too long", "file name of 256 bytes");
	m.filename = "";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "file name is empty", "empty file name");
	m.filename = "../etc/passwd";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "file name contains characters that are not allowed",
				   "file name with a slash");
	m.filename = "a\\b.jpg";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "file name contains characters that are not allowed",
				   "file name with a backslash");
	m.filename = "a\".jpg";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "file name contains characters that are not allowed",
				   "file name with a quote");
	m.filename = "a\r\nContent-Type: text/html";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "file name contains characters that are not allowed",
				   "file name with CRLF");
	m.filename = "caf\xc3\xa9.jpg";
	expect_valid(&m, "file name in UTF-8");
	m = url_msg(PARTOO_CT_IMAGE, "https://example.com/a.png");
	m.filename = "a.png";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "a file name is only used with an uploaded image",
				   "file name with a url");

	/* encodings */
	m = text_msg("caf\xe9");
	expect_invalid(&m, PARTOO_PROBLEM_ENCODING, "content is not valid UTF-8", "Latin-1 content");
	partoo_validate_message(&m, &err, &warning);
	unit_check_str(err.detail, "The invalid byte sequence starts at byte 3.", "Latin-1 content: detail");
	m = text_msg("ok \xed\xa0\x80 surrogate");
	expect_invalid(&m, PARTOO_PROBLEM_ENCODING, "content is not valid UTF-8", "surrogate in content");
	m = url_msg(PARTOO_CT_IMAGE, "https://example.com/\xff.png");
	expect_invalid(&m, PARTOO_PROBLEM_ENCODING, "url is not valid UTF-8", "bad byte in url");
	m = upload_msg(jpeg_bytes, sizeof(jpeg_bytes));
	m.filename = "\xc0\xaf.jpg";
	expect_invalid(&m, PARTOO_PROBLEM_ENCODING, "file name is not valid UTF-8", "overlong in file name");
	m = text_msg("\xf0\x9f\x98\x80 ok");
	expect_valid(&m, "emoji content");

	/* order: the channel matrix comes before encodings */
	m = url_msg(PARTOO_CT_IMAGE, "https://example.com/\xff.png");
	m.channel = PARTOO_CH_SMS;
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "channel SMS does not support Image messages",
				   "matrix before encoding");
	/* ... and after the fields of the type */
	m.url = "ftp://example.com/a.png";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "url must start with http:// or https://",
				   "url checked before matrix");

	/* date */
	m = text_msg("hello");
	m.date = NULL;
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "message date is missing", "NULL date");
	m.date = "";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "message date is not valid", "empty date");
	m.date = "2026-11-23T10:00:00Z\r\n--x";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "message date is not valid", "date with CRLF");
	m.date = "2026-11-23T10:00:00.000000000000000000000000000000000000000000Z";
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "message date is not valid", "overlong date");
}

/* Every channel (none included) x every content type */
static void
test_matrix(void)
{
	static const bool allowed[6][5] = {
		{1, 1, 1, 1, 1},		/* none */
		{1, 1, 1, 1, 1},		/* Facebook */
		{1, 1, 1, 1, 0},		/* Instagram */
		{1, 0, 0, 0, 0},		/* SMS */
		{1, 1, 1, 1, 1},		/* Whatsapp */
		{1, 0, 0, 0, 0}			/* Google */
	};
	static const char *const urls[5] = {
		NULL, "https://example.com/a.png", "https://example.com/a.mp4",
		"https://example.com/a.aac", "https://example.com/a.pdf"
	};
	int			ch;
	int			ct;
	PartooProblem err;
	PartooProblem warning;
	char		want[128];
	PartooMessage m;

	unit_note("channel x content type matrix");
	for (ch = 0; ch < 6; ch++)
		for (ct = 0; ct < 5; ct++)
		{
			const char *chname = ch == 0 ? "none" : partoo_channel_name((PartooChannel) ch);
			const char *ctname = partoo_content_type_name((PartooContentType) ct);

			m = ct == 0 ? text_msg("hi") : url_msg((PartooContentType) ct, urls[ct]);
			m.channel = (PartooChannel) ch;
			if (allowed[ch][ct])
			{
				expect_valid(&m, ctname);
				continue;
			}
			snprintf(want, sizeof(want), "channel %s does not support %s messages", chname, ctname);
			expect_invalid(&m, PARTOO_PROBLEM_INVALID, want, want);
		}

	m = url_msg(PARTOO_CT_IMAGE, "https://example.com/a.png");
	m.channel = PARTOO_CH_SMS;
	partoo_validate_message(&m, &err, &warning);
	unit_check_str(err.hint, "SMS supports only Text messages.", "SMS hint");
	m.channel = PARTOO_CH_GOOGLE;
	partoo_validate_message(&m, &err, &warning);
	unit_check_str(err.hint, "Google supports only Text messages.", "Google hint");
	m = url_msg(PARTOO_CT_DOCUMENT, "https://example.com/a.pdf");
	m.channel = PARTOO_CH_INSTAGRAM;
	partoo_validate_message(&m, &err, &warning);
	unit_check_str(err.hint, "Instagram supports Text, Image, Video and Audio messages.",
				   "Instagram hint");
	m = upload_msg(png_bytes, sizeof(png_bytes));
	m.channel = PARTOO_CH_SMS;
	expect_invalid(&m, PARTOO_PROBLEM_INVALID, "channel SMS does not support Image messages",
				   "uploaded image on SMS");
	m.channel = PARTOO_CH_WHATSAPP;
	expect_valid(&m, "uploaded image on Whatsapp");
}

static void
test_warnings(void)
{
	PartooMessage m;

	unit_note("file type warnings");
	m = url_msg(PARTOO_CT_IMAGE, "https://example.com/anim.gif");
	expect_warning(&m, "file type \"gif\" is not among those Partoo recommends for Image messages",
				   "Partoo recommends jpeg, jpg or png files for Image messages.", "gif image");
	m.url = "https://example.com/A.JPG";
	expect_valid(&m, "JPG image (case)");
	m.url = "https://example.com/a.jpeg";
	expect_valid(&m, "jpeg image");
	m.url = "https://example.com/x/a.png?size=big.gif";
	expect_valid(&m, "query ignored");
	m.url = "https://example.com/a.png#frag.gif";
	expect_valid(&m, "fragment ignored");
	m.url = "https://example.com/a.gif?x=a.png";
	expect_warning(&m, "file type \"gif\" is not among those Partoo recommends for Image messages",
				   NULL, "gif with png in the query");
	m.url = "https://example.com/photo";
	expect_warning(&m, "the url shows no file type for this Image message",
				   "Partoo recommends jpeg, jpg or png files for Image messages.", "no extension");
	m.url = "https://example.com";
	expect_warning(&m, "the url shows no file type for this Image message", NULL, "no path");
	m.url = "https://cdn.example.com?f=a.png";
	expect_warning(&m, "the url shows no file type for this Image message", NULL, "query without path");
	m.url = "https://example.com/dir.png/photo";
	expect_warning(&m, "the url shows no file type for this Image message", NULL, "dot in a directory");
	m.url = "https://example.com/photo.";
	expect_warning(&m, "the url shows no file type for this Image message", NULL, "trailing dot");

	m = url_msg(PARTOO_CT_VIDEO, "https://example.com/v.mp4");
	expect_valid(&m, "mp4 video");
	m.url = "https://example.com/v.mov";
	expect_warning(&m, "file type \"mov\" is not among those Partoo recommends for Video messages",
				   "Partoo recommends mp4 files for Video messages.", "mov video");

	m = url_msg(PARTOO_CT_AUDIO, "https://example.com/a.aac");
	expect_valid(&m, "aac audio");
	m.url = "https://example.com/a.mp4";
	expect_valid(&m, "mp4 audio");
	m.url = "https://example.com/a.M4A";
	expect_valid(&m, "m4a audio");
	m.url = "https://example.com/a.mp3";
	expect_warning(&m, "file type \"mp3\" is not among those Partoo recommends for Audio messages",
				   "Partoo recommends aac, mp4 or m4a files for Audio messages.", "mp3 audio");

	m = url_msg(PARTOO_CT_DOCUMENT, "https://example.com/d.pdf");
	expect_valid(&m, "pdf document");
	m.url = "https://example.com/d.XLSX";
	expect_valid(&m, "xlsx document");
	m.url = "https://example.com/d.doc";
	expect_warning(&m, "file type \"doc\" is not among those Partoo recommends for Document messages",
				   "Partoo recommends xls, xlsx, docx, pdf, ppt or pptx files for Document messages.",
				   "doc document");

	m = upload_msg(jpeg_bytes, sizeof(jpeg_bytes));
	expect_valid(&m, "JPEG upload");
	m = upload_msg(png_bytes, sizeof(png_bytes));
	expect_valid(&m, "PNG upload");
	m = upload_msg(gif_bytes, sizeof(gif_bytes));
	expect_warning(&m, "the uploaded image is neither JPEG nor PNG",
				   "Partoo recommends jpeg, jpg or png files for Image messages.", "GIF upload");
	m = upload_msg(jpeg_bytes, 2);
	expect_warning(&m, "the uploaded image is neither JPEG nor PNG", NULL, "2-byte upload");
	m = upload_msg(png_bytes, 7);
	expect_warning(&m, "the uploaded image is neither JPEG nor PNG", NULL, "truncated PNG signature");
}

static void
test_utf8(void)
{
	static const struct
	{
		const char *bytes;
		size_t		len;
		bool		valid;
		const char *what;
	}			cases[] = {
		{"", 0, true, "empty"},
		{"plain ascii", 11, true, "ASCII"},
		{"\x00", 1, true, "NUL with explicit length"},
		{"\xc3\xa9", 2, true, "2-byte"},
		{"\xe2\x82\xac", 3, true, "3-byte"},
		{"\xf0\x9f\x98\x80", 4, true, "4-byte"},
		{"\xf4\x8f\xbf\xbf", 4, true, "U+10FFFF"},
		{"\xed\x9f\xbf", 3, true, "U+D7FF"},
		{"\xee\x80\x80", 3, true, "U+E000"},
		{"\xc2\x80", 2, true, "U+0080"},
		{"\xe0\xa0\x80", 3, true, "U+0800"},
		{"\xf0\x90\x80\x80", 4, true, "U+10000"},
		{"\xf4\x90\x80\x80", 4, false, "above U+10FFFF"},
		{"\xc0\x80", 2, false, "overlong NUL"},
		{"\xc1\xbf", 2, false, "overlong C1"},
		{"\xe0\x80\x80", 3, false, "overlong 3-byte"},
		{"\xe0\x9f\xbf", 3, false, "overlong 3-byte U+07FF"},
		{"\xf0\x80\x80\x80", 4, false, "overlong 4-byte"},
		{"\xf0\x8f\xbf\xbf", 4, false, "overlong 4-byte U+FFFF"},
		{"\xed\xa0\x80", 3, false, "high surrogate"},
		{"\xed\xbf\xbf", 3, false, "low surrogate"},
		{"\xed\xa0\xbd\xed\xb8\x80", 6, false, "CESU-8 pair"},
		{"\xc3", 1, false, "truncated 2-byte"},
		{"\xe2\x82", 2, false, "truncated 3-byte"},
		{"\xf0\x9f\x98", 3, false, "truncated 4-byte"},
		{"\xe2\x82\x41", 3, false, "bad continuation"},
		{"\x80", 1, false, "lone continuation"},
		{"a\xbf", 2, false, "continuation after ASCII"},
		{"\xf5\x80\x80\x80", 4, false, "F5 lead"},
		{"\xfe", 1, false, "FE"},
		{"\xff", 1, false, "FF"},
		{"\xf8\x88\x80\x80\x80", 5, false, "5-byte form"},
	};
	size_t		i;

	unit_note("UTF-8");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		unit_check(partoo_utf8_valid(cases[i].bytes, cases[i].len) == cases[i].valid,
				   "utf8: %s %s", cases[i].what, cases[i].valid ? "valid" : "invalid");
	unit_check(partoo_utf8_valid(NULL, 0), "utf8: NULL of length 0");
	unit_check(!partoo_utf8_valid(NULL, 1), "utf8: NULL of length 1");
	unit_check(partoo_utf8_valid("\xe2\x82\xac\xe2\x82", 3), "utf8: length bounds the check");
}

/* The one sanitiser of text for messages and error texts */
static void
test_sanitize(void)
{
	char		out[16];
	size_t		n;
	size_t		used;
	const char *s;

	unit_note("sanitising text");
	s = "a\tb\r\nc\x01\x7f \xc3\xa9 \xff\xc3";
	used = partoo_sanitize_text(s, strlen(s), out, sizeof(out), true, &n);
	unit_check_str(out, "a b  c?? \xc3\xa9 ??", "controls, UTF-8 kept, bad bytes");
	unit_check(used == strlen(s) && n == strlen(out), "all consumed, length reported");
	used = partoo_sanitize_text(s, strlen(s), out, sizeof(out), false, &n);
	unit_check_str(out, "a b  c?? ?? ??", "without UTF-8: every non-ASCII byte is '?'");
	s = "ab\xe2\x82\xac";
	used = partoo_sanitize_text(s, strlen(s), out, 5, true, &n);
	unit_check(used == 2 && n == 2 && strcmp(out, "ab") == 0,
			   "a character that does not fit whole is not cut");
	used = partoo_sanitize_text(s, strlen(s), out, 6, true, &n);
	unit_check(used == 5 && n == 5 && strcmp(out, s) == 0, "it fits with room for the NUL");
	used = partoo_sanitize_text("xyz", 3, out, 1, true, &n);
	unit_check(used == 0 && n == 0 && out[0] == '\0', "capacity 1: only the NUL");
}

static void
test_dates(void)
{
	char		buf[PARTOO_DATE_BUFLEN];

	unit_note("dates");
	partoo_format_date(0, buf);
	unit_check_str(buf, "1970-01-01T00:00:00.000000Z", "epoch");
	partoo_format_date(INT64_C(1795428000123456), buf);
	unit_check_str(buf, "2026-11-23T10:00:00.123456Z", "a date with microseconds");
	partoo_format_date(-1, buf);
	unit_check_str(buf, "1969-12-31T23:59:59.999999Z", "one microsecond before the epoch");
	partoo_format_date(INT64_C(951782400000000), buf);
	unit_check_str(buf, "2000-02-29T00:00:00.000000Z", "leap day");
	partoo_format_date(INT64_C(-62167219200000000), buf);
	unit_check_str(buf, "0000-01-01T00:00:00.000000Z", "year 0");
	partoo_format_date(INT64_C(-62167219200000000) - 1, buf);
	unit_check_str(buf, "-0001-12-31T23:59:59.999999Z", "year -1");
	partoo_format_date(INT64_C(253402300800000000), buf);
	unit_check_str(buf, "+10000-01-01T00:00:00.000000Z", "year 10000");
	partoo_format_date(INT64_MAX, buf);
	unit_check_str(buf, "+294247-01-10T04:00:54.775807Z", "INT64_MAX");
	partoo_format_date(INT64_MIN, buf);
	unit_check_str(buf, "-290308-12-21T19:59:05.224192Z", "INT64_MIN");

	/* the calendar: days and dates round-trip, leap years */
	{
		int64_t		d;
		int			bad = 0;

		for (d = -800000; d <= 800000; d += 7)
		{
			int64_t		y;
			int			m,
						dd;

			partoo_civil_from_days(d, &y, &m, &dd);
			if (partoo_days_from_civil(y, m, dd) != d || dd < 1 ||
				dd > partoo_days_in_month(y, m))
				bad++;
		}
		unit_check(bad == 0, "calendar: 228,572 days round-trip over 4,380 years");
	}
	unit_check(partoo_days_from_civil(2000, 3, 1) - partoo_days_from_civil(2000, 2, 28) == 2,
			   "calendar: 2000 is a leap year");
	unit_check(partoo_days_from_civil(1900, 3, 1) - partoo_days_from_civil(1900, 2, 28) == 1,
			   "calendar: 1900 is not");
	unit_check(partoo_days_in_month(2024, 2) == 29 && partoo_days_in_month(2023, 2) == 28 &&
			   partoo_days_in_month(2023, 13) == 0, "calendar: days in month");
}

/* Build a body and compare it with want as text */
static void
expect_json(const PartooMessage *m, const char *want, const char *what)
{
	PartooBody b;
	int			rc = partoo_build_send_body(m, &b);

	unit_check(rc == 0 && b.data != NULL && b.len == strlen(b.data),
			   "%s: built", what);
	unit_check_str(b.data, want, "%s: exact JSON", what);
	unit_check_str(b.content_type, "application/json", "%s: content type", what);
	partoo_body_free(&b);
}

static void
test_json_bodies(void)
{
	PartooMessage m;
	PartooBody	b;

	unit_note("JSON bodies");
	m = text_msg("Hello");
	expect_json(&m, "{\"conversation_id\":42,\"content_type\":\"Text\",\"content\":\"Hello\",\"date\":\"" DATE "\"}",
				"Text");
	m = url_msg(PARTOO_CT_IMAGE, "https://example.com/a.png");
	expect_json(&m, "{\"conversation_id\":42,\"content_type\":\"Image\",\"url\":\"https://example.com/a.png\",\"date\":\"" DATE "\"}",
				"Image by url");
	m = url_msg(PARTOO_CT_VIDEO, "https://example.com/a.mp4");
	expect_json(&m, "{\"conversation_id\":42,\"content_type\":\"Video\",\"content\":{\"url\":\"https://example.com/a.mp4\"},\"date\":\"" DATE "\"}",
				"Video");
	m = url_msg(PARTOO_CT_AUDIO, "https://example.com/a.aac");
	expect_json(&m, "{\"conversation_id\":42,\"content_type\":\"Audio\",\"content\":{\"url\":\"https://example.com/a.aac\"},\"date\":\"" DATE "\"}",
				"Audio");
	m = url_msg(PARTOO_CT_DOCUMENT, "https://example.com/a.pdf");
	expect_json(&m, "{\"conversation_id\":42,\"content_type\":\"Document\",\"content\":{\"url\":\"https://example.com/a.pdf\"},\"date\":\"" DATE "\"}",
				"Document");
	m = url_msg(PARTOO_CT_IMAGE, "https://example.com/a.gif?x=\"y\"&z=1");
	expect_json(&m, "{\"conversation_id\":42,\"content_type\":\"Image\",\"url\":\"https://example.com/a.gif?x=\\\"y\\\"&z=1\",\"date\":\"" DATE "\"}",
				"url with quotes, and a warning");

	m = text_msg("He said \"hi\"\nbye \\ tab\t\x01 caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 </script>");
	expect_json(&m, "{\"conversation_id\":42,\"content_type\":\"Text\",\"content\":\"He said \\\"hi\\\"\\nbye \\\\ tab\\t\\u0001 caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 </script>\",\"date\":\"" DATE "\"}",
				"escaping");

	m = text_msg("x");
	m.conversation_id = INT64_C(9007199254740993);
	expect_json(&m, "{\"conversation_id\":9007199254740993,\"content_type\":\"Text\",\"content\":\"x\",\"date\":\"" DATE "\"}",
				"conversation_id above 2^53");
	m.conversation_id = INT64_MAX;
	expect_json(&m, "{\"conversation_id\":9223372036854775807,\"content_type\":\"Text\",\"content\":\"x\",\"date\":\"" DATE "\"}",
				"conversation_id INT64_MAX");

	/* a message that would not validate gives no body */
	memset(&b, 'x', sizeof(b));
	m = text_msg("");
	unit_check(partoo_build_send_body(&m, &b) == -1 && b.data == NULL && b.len == 0 &&
			   b.content_type[0] == '\0', "invalid message: -1 and zeroed body");
	unit_check(partoo_build_send_body(NULL, &b) == -1 && b.data == NULL, "NULL message: -1");
	m = text_msg("x");
	unit_check(partoo_build_send_body(&m, NULL) == -1, "NULL body: -1");
	partoo_body_free(&b);
	partoo_body_free(&b);
	partoo_body_free(NULL);
	unit_check(true, "partoo_body_free twice and on NULL");
}

/*
 * Check the exact multipart text of an upload, rebuilding it from the
 * boundary the body announces.
 */
static void
expect_multipart(const PartooMessage *m, const char *want_filename,
				 const char *want_mime, const char *what)
{
	PartooBody	b;
	const char *prefix = "multipart/form-data; boundary=";
	const char *boundary;
	char		head[2048];
	char		tail[128];
	size_t		headlen;
	size_t		taillen;
	size_t		i;
	bool		hex = true;
	char		id[32];

	if (!unit_check(partoo_build_send_body(m, &b) == 0 && b.data != NULL,
					"%s: built", what))
		return;
	unit_check(strncmp(b.content_type, prefix, strlen(prefix)) == 0,
			   "%s: multipart content type", what);
	boundary = b.content_type + strlen(prefix);
	for (i = 7; boundary[i]; i++)
		hex = hex && ((boundary[i] >= '0' && boundary[i] <= '9') ||
					  (boundary[i] >= 'a' && boundary[i] <= 'f'));
	unit_check(strncmp(boundary, "partoo-", 7) == 0 && strlen(boundary) == 39 && hex,
			   "%s: boundary is partoo- and 32 hex digits", what);

	snprintf(id, sizeof(id), "%lld", (long long) m->conversation_id);
	headlen = (size_t) snprintf(head, sizeof(head),
								"--%s\r\n"
								"Content-Disposition: form-data; name=\"conversation_id\"\r\n"
								"\r\n"
								"%s\r\n"
								"--%s\r\n"
								"Content-Disposition: form-data; name=\"content_type\"\r\n"
								"\r\n"
								"Image\r\n"
								"--%s\r\n"
								"Content-Disposition: form-data; name=\"date\"\r\n"
								"\r\n"
								"%s\r\n"
								"--%s\r\n"
								"Content-Disposition: form-data; name=\"image\"; filename=\"%s\"\r\n"
								"Content-Type: %s\r\n"
								"\r\n",
								boundary, id, boundary, boundary, m->date, boundary,
								want_filename, want_mime);
	taillen = (size_t) snprintf(tail, sizeof(tail), "\r\n--%s--\r\n", boundary);

	unit_check(b.len == headlen + m->image_len + taillen, "%s: length", what);
	unit_check(b.len == headlen + m->image_len + taillen &&
			   memcmp(b.data, head, headlen) == 0 &&
			   memcmp(b.data + headlen, m->image, m->image_len) == 0 &&
			   memcmp(b.data + headlen + m->image_len, tail, taillen) == 0,
			   "%s: exact structure, image bytes intact", what);
	unit_check(!mem_contains(m->image, m->image_len, boundary, strlen(boundary)),
			   "%s: boundary not in the image", what);
	partoo_body_free(&b);
}

static void
test_multipart(void)
{
	PartooMessage m;
	PartooBody	b1;
	PartooBody	b2;
	unsigned char tricky[200];
	unsigned char *big;
	size_t		n = 0;
	uint64_t	rnd = 7;
	size_t		i;
	int			k;
	bool		all_absent = true;

	unit_note("multipart bodies");

	/* JPEG magic, then NUL, CR LF, and text that looks like a boundary */
	memcpy(tricky, jpeg_bytes, sizeof(jpeg_bytes));
	n = sizeof(jpeg_bytes);
	memcpy(tricky + n, "\0\r\n\r\n--partoo-0123456789abcdef0123456789abcdef\r\n--\r\n", 52);
	n += 52;
	memcpy(tricky + n, "\xff\x00\x0d\x0a", 4);
	n += 4;

	m = upload_msg(tricky, n);
	expect_multipart(&m, "image.jpg", "image/jpeg", "JPEG with tricky bytes");
	m = upload_msg(png_bytes, sizeof(png_bytes));
	expect_multipart(&m, "image.png", "image/png", "PNG");
	m = upload_msg(gif_bytes, sizeof(gif_bytes));
	expect_multipart(&m, "image.bin", "application/octet-stream", "GIF");
	m = upload_msg(jpeg_bytes, sizeof(jpeg_bytes));
	m.filename = "holiday photo \xc3\xa9t\xc3\xa9.jpeg";
	expect_multipart(&m, "holiday photo \xc3\xa9t\xc3\xa9.jpeg", "image/jpeg", "given file name");
	m = upload_msg(png_bytes, sizeof(png_bytes));
	m.filename = "looks.jpg";
	expect_multipart(&m, "looks.jpg", "image/png", "Content-Type follows the bytes");
	m = upload_msg(jpeg_bytes, 1);
	expect_multipart(&m, "image.bin", "application/octet-stream", "one byte");
	m = upload_msg(jpeg_bytes, sizeof(jpeg_bytes));
	m.conversation_id = INT64_C(9007199254740993);
	expect_multipart(&m, "image.jpg", "image/jpeg", "big conversation_id");

	/* the same message gives the same bytes; another image another boundary */
	m = upload_msg(tricky, n);
	partoo_build_send_body(&m, &b1);
	partoo_build_send_body(&m, &b2);
	unit_check(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0 &&
			   strcmp(b1.content_type, b2.content_type) == 0, "multipart is deterministic");
	partoo_body_free(&b2);
	m = upload_msg(tricky, n - 1);
	partoo_build_send_body(&m, &b2);
	unit_check(strcmp(b1.content_type, b2.content_type) != 0,
			   "a different image gets a different boundary");
	partoo_body_free(&b1);
	partoo_body_free(&b2);

	/* random images: the boundary never occurs in them */
	for (k = 0; k < 200; k++)
	{
		unsigned char img[64];
		const char *boundary;

		for (i = 0; i < sizeof(img); i++)
			img[i] = (unsigned char) next_random(&rnd);
		m = upload_msg(img, 1 + (size_t) k % sizeof(img));
		if (partoo_build_send_body(&m, &b1) != 0)
		{
			all_absent = false;
			break;
		}
		boundary = strstr(b1.content_type, "boundary=") + 9;
		all_absent = all_absent && !mem_contains(img, m.image_len, boundary, strlen(boundary));
		partoo_body_free(&b1);
	}
	unit_check(all_absent, "200 random images: boundary absent each time");

	/* the largest upload */
	big = malloc(PARTOO_IMAGE_MAX_BYTES);
	for (i = 0; i < PARTOO_IMAGE_MAX_BYTES; i++)
		big[i] = (unsigned char) (i * 2654435761u >> 13);
	memcpy(big, png_bytes, sizeof(png_bytes));
	m = upload_msg(big, PARTOO_IMAGE_MAX_BYTES);
	expect_multipart(&m, "image.png", "image/png", "5 MB upload");
	free(big);
}

static void
test_paths(void)
{
	char		buf[64];
	char		small[5];

	unit_note("paths");
	unit_check_str(partoo_path_send(buf, sizeof(buf)), "/messages", "send path");
	unit_check_str(partoo_path_retry(123, buf, sizeof(buf)), "/messages/123/retry", "retry path");
	unit_check_str(partoo_path_retry(INT64_MAX, buf, sizeof(buf)),
				   "/messages/9223372036854775807/retry", "retry path, big id");
	unit_check_str(partoo_path_retry(123, small, sizeof(small)), "/mes", "retry path truncated");
	unit_check(partoo_path_send(NULL, 0) == NULL, "send path into NULL");
}

/* Parse body (as a buffer with no terminating NUL) and return the result */
static PartooApiResult
parse(long status, const char *body)
{
	PartooApiResult r;
	size_t		len = body ? strlen(body) : 0;
	char	   *copy = malloc(len ? len : 1);

	if (len)
		memcpy(copy, body, len);
	partoo_parse_api_response(status, body ? copy : NULL, len, &r);
	free(copy);
	return r;
}

static void
expect_id(const char *body, bool has, int64_t id, const char *what)
{
	PartooApiResult r = parse(200, body);

	unit_check(r.has_message_id == has && (!has || r.message_id == id),
			   "message_id %s", what);
	if (r.has_message_id != has || (has && r.message_id != id))
		printf("#   has %d, id %lld\n", r.has_message_id, (long long) r.message_id);
	partoo_api_result_free(&r);
}

static void
expect_error_text(long status, const char *body, const char *want, const char *what)
{
	PartooApiResult r = parse(status, body);

	unit_check(r.body_is_json && !r.success, "%s: JSON, not success", what);
	unit_check_str(r.error_text, want, "%s: error_text", what);
	partoo_api_result_free(&r);
}

static void
test_responses(void)
{
	PartooApiResult r;
	char	   *huge;
	size_t		i;
	size_t		len;
	static const char binary[] = "\x00\xff{\"status\"\x00:\x01\x02";

	unit_note("response parsing");

	r = parse(200, "{\"status\":\"success\",\"message_id\":123}");
	unit_check(r.http_status == 200 && r.body_is_json && r.success && r.has_message_id &&
			   r.message_id == 123 && r.error_text == NULL, "send success with id");
	partoo_api_result_free(&r);
	r = parse(200, "{\"status\": \"success\"}");
	unit_check(r.success && !r.has_message_id && r.error_text == NULL, "retry success without id");
	partoo_api_result_free(&r);
	r = parse(201, " \r\n{\"status\":\"success\"}\n");
	unit_check(r.success, "201 with whitespace around the body");
	partoo_api_result_free(&r);
	r = parse(200, "{\"status\":\"failure\"}");
	unit_check(r.body_is_json && !r.success, "200 with another status");
	partoo_api_result_free(&r);
	r = parse(200, "{\"status\":\"Success\"}");
	unit_check(!r.success, "status is matched exactly");
	partoo_api_result_free(&r);
	r = parse(500, "{\"status\":\"success\"}");
	unit_check(!r.success, "500 is never success");
	partoo_api_result_free(&r);
	r = parse(200, "{}");
	unit_check(r.body_is_json && !r.success, "200 with an empty object");
	partoo_api_result_free(&r);
	r = parse(200, "[\"status\",\"success\"]");
	unit_check(r.body_is_json && !r.success && r.error_text == NULL, "top-level array");
	partoo_api_result_free(&r);

	/* message_id forms */
	expect_id("{\"status\":\"success\",\"message_id\":\"456\"}", true, 456, "as a string");
	expect_id("{\"message_id\":\"-12\"}", true, -12, "as a negative string");
	expect_id("{\"message_id\":\" 456\"}", false, 0, "string with a space");
	expect_id("{\"message_id\":\"45a\"}", false, 0, "string with a letter");
	expect_id("{\"message_id\":\"\"}", false, 0, "empty string");
	expect_id("{\"message_id\":\"9223372036854775808\"}", false, 0, "string beyond int64");
	expect_id("{\"message_id\":9007199254740993}", true, INT64_C(9007199254740993), "2^53 + 1 exactly");
	expect_id("{\"message_id\":9223372036854775807}", true, INT64_MAX, "INT64_MAX");
	expect_id("{\"message_id\":-9223372036854775808}", true, INT64_MIN, "INT64_MIN");
	expect_id("{\"message_id\":9223372036854775808}", false, 0, "beyond INT64_MAX");
	expect_id("{\"message_id\":123456789012345678901234567890}", false, 0, "huge");
	expect_id("{\"message_id\":-5}", true, -5, "negative");
	expect_id("{\"message_id\":0}", true, 0, "zero");
	expect_id("{\"message_id\":1.5}", false, 0, "float");
	expect_id("{\"message_id\":2.0}", true, 2, "integral float");
	expect_id("{\"message_id\":1e3}", true, 1000, "exponent");
	expect_id("{\"message_id\":1e300}", false, 0, "huge exponent");
	expect_id("{\"message_id\":1e19}", false, 0, "exponent beyond int64");
	expect_id("{\"message_id\":true}", false, 0, "boolean");
	expect_id("{\"message_id\":null}", false, 0, "null");
	expect_id("{\"message_id\":[1]}", false, 0, "array");
	expect_id("{\"message_id\":{\"id\":1}}", false, 0, "object");
	expect_id("{\"Message_Id\":1}", false, 0, "key case matters");
	expect_id("{\"message_id\":7,\"message_id\":8}", true, 7, "first of duplicate keys");
	expect_id("{\"a\":{\"message_id\":1},\"b\":\"message_id\",\"message_id\" : 9007199254740995 }",
			  true, INT64_C(9007199254740995), "nested decoys before the real key");
	expect_id("{\"message\\u005fid\":9007199254740993}", true, INT64_C(9007199254740993),
			  "escaped key");
	expect_id("\xef\xbb\xbf{\"message_id\":9007199254740993}", true, INT64_C(9007199254740993),
			  "after a BOM");

	/* error bodies */
	expect_error_text(401, "{\"errors\":{\"authentication\":\"User not authenticated\"}}",
					  "authentication: User not authenticated", "seed 401");
	expect_error_text(403, "{\"errors\":{\"authorization\":\"Operation not allowed\"}}",
					  "authorization: Operation not allowed", "seed 403");
	expect_error_text(400, "{\"errors\":{\"json\":{\"conversation_id\":[\"Missing data for required field.\"],"
					  "\"content\":[\"Not a valid string.\",\"Too long.\"]}}}",
					  "json.conversation_id: Missing data for required field.; "
					  "json.content: Not a valid string., Too long.", "seed 400 with field errors");
	expect_error_text(400, "{\"errors\":{\"json\":{\"content\":{\"url\":[\"Not a valid URL.\"]}}}}",
					  "json.content.url: Not a valid URL.", "deeper field error");
	expect_error_text(400, "{\"errors\":{\"a\":[[\"x\",\"y\"],[\"z\"],[]],\"n\":3,\"b\":true,\"c\":null}}",
					  "a: x, y, z, ; n: 3; b: true; c: null", "nested arrays and scalars");
	expect_error_text(400, "{\"errors\":\"plain text\"}", "plain text", "errors as a string");
	expect_error_text(400, "{\"errors\":[\"one\",\"two\"]}", "one, two", "errors as an array");
	expect_error_text(429, "{\"error\":{\"code\":\"RATE_LIMITED\",\"message\":\"Too many requests\"}}",
					  "Too many requests (code RATE_LIMITED)", "error with code and message");
	expect_error_text(404, "{\"error\":{\"message\":\"Not found\"}}", "Not found", "error with message");
	expect_error_text(500, "{\"error\":{\"code\":500,\"message\":\"Oops\"}}", "Oops (code 500)",
					  "error with a numeric code");
	expect_error_text(400, "{\"error\":{\"detail\":\"bad\",\"status\":400}}", "detail: bad; status: 400",
					  "error object without message");
	expect_error_text(400, "{\"error\":\"bad thing\"}", "bad thing", "error as a string");
	expect_error_text(400, "{\"errors\":{},\"error\":\"fallback\"}", "fallback", "empty errors falls back to error");
	expect_error_text(400, "{\"errors\":{\"a\":\"line1\\nline2\\u0000tail\"}}", "a: line1 line2",
					  "control characters and NUL");
	expect_error_text(400, "{\"errors\":{\"a\":\"bad \xff\xfe byte \xc3\xa9\"}}", "a: bad ?? byte \xc3\xa9",
					  "invalid UTF-8 replaced");
	expect_error_text(400, "{\"errors\":{\"a\":[{\"b\":\"c\"},{\"d\":[1,2]}]}}", "a: {b: c}, {d: 1, 2}",
					  "objects in arrays");
	expect_error_text(400, "{\"status\":\"error\"}", NULL, "no errors member");

	/* long error text: capped at 1024 bytes on a character boundary */
	len = 3 * 100000;
	huge = malloc(len + 64);
	strcpy(huge, "{\"errors\":{\"k\":\"");
	for (i = strlen(huge); i < len; i += 2)
		memcpy(huge + i, "\xc3\xa9", 2);
	strcpy(huge + i, "\"}}");
	r = parse(400, huge);
	unit_check(r.error_text != NULL && strlen(r.error_text) <= 1024 &&
			   strlen(r.error_text) >= 1000 &&
			   strcmp(r.error_text + strlen(r.error_text) - 3, "...") == 0 &&
			   partoo_utf8_valid(r.error_text, strlen(r.error_text)),
			   "long error text capped, marked, valid UTF-8");
	partoo_api_result_free(&r);
	partoo_api_result_free(&r);
	free(huge);

	/* many members: the cap stops the walk */
	len = 2000000;
	huge = malloc(len + 64);
	strcpy(huge, "{\"errors\":{");
	for (i = strlen(huge); i < len; i += 8)
		memcpy(huge + i, "\"k\":\"v\",", 8);
	strcpy(huge + i, "\"z\":1}}");
	r = parse(400, huge);
	unit_check(r.body_is_json && r.error_text != NULL && strlen(r.error_text) <= 1024,
			   "2 MB of error members");
	partoo_api_result_free(&r);
	free(huge);

	/* deep nesting, within and beyond cJSON's limit */
	len = 2 * 900 + 64;
	huge = malloc(len);
	strcpy(huge, "{\"errors\":");
	for (i = 0; i < 900; i++)
		strcat(huge, "[");
	for (i = 0; i < 900; i++)
		strcat(huge, "]");
	strcat(huge, "}");
	r = parse(400, huge);
	unit_check(r.body_is_json && !r.success, "900 nested arrays");
	partoo_api_result_free(&r);
	free(huge);
	huge = malloc(20 * 1000 + 64);
	strcpy(huge, "{\"errors\":");
	for (i = 0; i < 990; i++)
		strcat(huge, "{\"e\":");
	strcat(huge, "1");
	for (i = 0; i < 990; i++)
		strcat(huge, "}");
	strcat(huge, "}");
	r = parse(400, huge);
	unit_check(r.body_is_json && r.error_text != NULL && strlen(r.error_text) <= 1024,
			   "990 nested objects in errors: %s", r.error_text ? r.error_text : "NULL");
	partoo_api_result_free(&r);
	strcpy(huge, "{\"errors\":");
	for (i = 0; i < 1000; i++)
		strcat(huge, "{\"e\":");
	strcat(huge, "1");
	for (i = 0; i < 1000; i++)
		strcat(huge, "}");
	strcat(huge, "}");
	r = parse(400, huge);
	unit_check(!r.body_is_json && r.error_text == NULL,
			   "beyond cJSON's nesting limit: not JSON, no crash");
	partoo_api_result_free(&r);
	free(huge);

	/* not JSON */
	r = parse(502, "<html><body>Bad Gateway</body></html>");
	unit_check(r.http_status == 502 && !r.body_is_json && !r.success && !r.has_message_id &&
			   r.error_text == NULL, "HTML body");
	partoo_api_result_free(&r);
	r = parse(200, "");
	unit_check(!r.body_is_json && !r.success, "empty body");
	partoo_api_result_free(&r);
	r = parse(0, NULL);
	unit_check(r.http_status == 0 && !r.body_is_json && r.error_text == NULL, "no body");
	partoo_api_result_free(&r);
	r = parse(200, "{\"status\":\"success\"} trailing");
	unit_check(!r.body_is_json && !r.success, "trailing garbage is not JSON");
	partoo_api_result_free(&r);
	r = parse(200, "{\"status\":\"succ");
	unit_check(!r.body_is_json && !r.success, "truncated JSON");
	partoo_api_result_free(&r);
	partoo_parse_api_response(200, binary, sizeof(binary) - 1, &r);
	unit_check(!r.body_is_json && !r.success, "binary body");
	partoo_api_result_free(&r);
	partoo_parse_api_response(200, "{\"status\":\"success\"}\0garbage", 29, &r);
	unit_check(!r.body_is_json, "NUL then garbage after JSON");
	partoo_api_result_free(&r);
	partoo_parse_api_response(200, "{\"status\":\"success\"}xyz", 20, &r);
	unit_check(r.success, "length bounds the body");
	partoo_api_result_free(&r);
	partoo_parse_api_response(200, "{}", 2, NULL);
	partoo_api_result_free(NULL);
	unit_check(true, "NULL out and NULL free are harmless");
}

static void
test_classify(void)
{
	static const struct
	{
		long		status;
		PartooFailureClass fc;
	}			cases[] = {
		{0, PARTOO_FC_RETRYABLE}, {-1, PARTOO_FC_RETRYABLE}, {100, PARTOO_FC_RETRYABLE},
		{199, PARTOO_FC_RETRYABLE}, {200, PARTOO_FC_OK}, {201, PARTOO_FC_OK},
		{204, PARTOO_FC_OK}, {299, PARTOO_FC_OK}, {300, PARTOO_FC_RETRYABLE},
		{301, PARTOO_FC_RETRYABLE}, {400, PARTOO_FC_REJECTED}, {401, PARTOO_FC_REJECTED},
		{402, PARTOO_FC_RETRYABLE}, {403, PARTOO_FC_REJECTED}, {404, PARTOO_FC_REJECTED},
		{405, PARTOO_FC_RETRYABLE}, {408, PARTOO_FC_RETRYABLE}, {409, PARTOO_FC_REJECTED},
		{410, PARTOO_FC_REJECTED}, {413, PARTOO_FC_REJECTED}, {415, PARTOO_FC_REJECTED},
		{418, PARTOO_FC_RETRYABLE}, {422, PARTOO_FC_REJECTED}, {429, PARTOO_FC_RATE_LIMITED},
		{500, PARTOO_FC_RETRYABLE}, {502, PARTOO_FC_RETRYABLE}, {503, PARTOO_FC_RETRYABLE},
		{504, PARTOO_FC_RETRYABLE}, {599, PARTOO_FC_RETRYABLE}, {600, PARTOO_FC_RETRYABLE},
		{LONG_MAX, PARTOO_FC_RETRYABLE}, {LONG_MIN, PARTOO_FC_RETRYABLE},
	};
	size_t		i;

	unit_note("failure classes");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		unit_check_int(partoo_classify_status(cases[i].status), cases[i].fc,
					   "classify %ld", cases[i].status);
}

static void
test_retry_after(void)
{
	const int64_t fixdate = 784111777;	/* Sun, 06 Nov 1994 08:49:37 GMT */
	const char *d = "Sun, 06 Nov 1994 08:49:37 GMT";

	unit_note("Retry-After");
	unit_check_int(partoo_parse_retry_after("120", 0), 120, "delta seconds");
	unit_check_int(partoo_parse_retry_after("0", 0), 0, "zero");
	unit_check_int(partoo_parse_retry_after("  30 \t", 0), 30, "surrounding whitespace");
	unit_check_int(partoo_parse_retry_after("30\r\n", 0), 30, "trailing CRLF");
	unit_check_int(partoo_parse_retry_after("007", 0), 7, "leading zeros");
	unit_check_int(partoo_parse_retry_after("86400", 0), 86400, "exactly the cap");
	unit_check_int(partoo_parse_retry_after("86401", 0), 86400, "capped");
	unit_check_int(partoo_parse_retry_after("99999999999999999999999999", 0), 86400, "huge, capped");
	unit_check_int(partoo_parse_retry_after("", 0), -1, "empty");
	unit_check_int(partoo_parse_retry_after("   ", 0), -1, "blank");
	unit_check_int(partoo_parse_retry_after(NULL, 0), -1, "NULL");
	unit_check_int(partoo_parse_retry_after("-5", 0), -1, "negative");
	unit_check_int(partoo_parse_retry_after("+5", 0), -1, "plus sign");
	unit_check_int(partoo_parse_retry_after("1.5", 0), -1, "fraction");
	unit_check_int(partoo_parse_retry_after("5 s", 0), -1, "unit");
	unit_check_int(partoo_parse_retry_after("abc", 0), -1, "garbage");
	unit_check_int(partoo_parse_retry_after("0x10", 0), -1, "hex");

	unit_check_int(partoo_parse_retry_after(d, fixdate - 100), 100, "IMF-fixdate 100 s ahead");
	unit_check_int(partoo_parse_retry_after(" Sun, 06 Nov 1994 08:49:37 GMT ", fixdate - 1), 1,
				   "IMF-fixdate with spaces");
	unit_check_int(partoo_parse_retry_after(d, fixdate), 0, "IMF-fixdate now");
	unit_check_int(partoo_parse_retry_after(d, fixdate + 5000), 0, "IMF-fixdate in the past");
	unit_check_int(partoo_parse_retry_after(d, fixdate - 200000), 86400, "IMF-fixdate far ahead, capped");
	unit_check_int(partoo_parse_retry_after(d, INT64_MIN), 86400, "now INT64_MIN");
	unit_check_int(partoo_parse_retry_after(d, INT64_MAX), 0, "now INT64_MAX");
	unit_check_int(partoo_parse_retry_after("Tue, 29 Feb 2000 00:00:10 GMT", 951782400), 10, "leap day");
	unit_check_int(partoo_parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", -3), 3, "epoch");
	unit_check_int(partoo_parse_retry_after("sun, 06 nov 1994 08:49:37 gmt", fixdate - 2), 2, "lower case names");
	unit_check_int(partoo_parse_retry_after("Sun, 06 Nov 1994 08:49:37 UTC", 0), -1, "UTC instead of GMT");
	unit_check_int(partoo_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", 0), -1, "RFC 850 form");
	unit_check_int(partoo_parse_retry_after("Sun Nov  6 08:49:37 1994", 0), -1, "asctime form");
	unit_check_int(partoo_parse_retry_after("Sun, 31 Feb 1994 08:49:37 GMT", 0), -1, "31 February");
	unit_check_int(partoo_parse_retry_after("Mon, 29 Feb 1900 00:00:00 GMT", 0), -1, "29 February 1900");
	unit_check_int(partoo_parse_retry_after("Sun, 06 Nov 1994 24:00:00 GMT", 0), -1, "hour 24");
	unit_check_int(partoo_parse_retry_after("Sun, 06 Nov 1994 08:60:00 GMT", 0), -1, "minute 60");
	unit_check_int(partoo_parse_retry_after("Sun, 00 Nov 1994 08:49:37 GMT", 0), -1, "day 0");
	unit_check_int(partoo_parse_retry_after("Xyz, 06 Nov 1994 08:49:37 GMT", 0), -1, "bad weekday");
	unit_check_int(partoo_parse_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", 0), -1, "bad month");
	unit_check_int(partoo_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMTX", 0), -1, "trailing letter");
	unit_check_int(partoo_parse_retry_after("Sun, 0a Nov 1994 08:49:37 GMT", 0), -1, "letter in day");
}

static void
test_backoff(void)
{
	uint64_t	rnd = 12345;
	int64_t		v;
	int64_t		lo = INT64_MAX;
	int64_t		hi = INT64_MIN;
	double		sum = 0;
	int			below_half = 0;
	int			buckets[8] = {0};
	int			i;
	bool		in_range = true;
	bool		monotone = true;
	const int	n = 200000;

	unit_note("backoff");
	unit_check_int(partoo_backoff_ms(1, 100, 10000, 0), 0, "smallest draw is 0");
	unit_check_int(partoo_backoff_ms(1, 100, 10000, UINT64_MAX), 100, "attempt 1 reaches base");
	unit_check_int(partoo_backoff_ms(3, 100, 10000, UINT64_MAX), 400, "attempt 3 reaches 4 x base");
	unit_check_int(partoo_backoff_ms(8, 100, 10000, UINT64_MAX), 10000, "attempt 8 capped at max");
	unit_check_int(partoo_backoff_ms(100, 100, 10000, UINT64_MAX), 10000, "attempt 100 capped");
	unit_check_int(partoo_backoff_ms(INT_MAX, 100, 10000, UINT64_MAX), 10000, "attempt INT_MAX capped");
	unit_check(partoo_backoff_ms(INT_MAX, 100, 10000, UINT64_MAX / 2) <= 5001, "attempt INT_MAX, middle draw");
	unit_check_int(partoo_backoff_ms(0, 100, 10000, UINT64_MAX), 100, "attempt 0 counts as 1");
	unit_check_int(partoo_backoff_ms(INT_MIN, 100, 10000, UINT64_MAX), 100, "attempt INT_MIN counts as 1");
	unit_check_int(partoo_backoff_ms(5, 0, 10000, UINT64_MAX), 0, "base 0");
	unit_check_int(partoo_backoff_ms(5, -10, 10000, UINT64_MAX), 0, "negative base");
	unit_check_int(partoo_backoff_ms(5, 100, 0, UINT64_MAX), 0, "max 0");
	unit_check_int(partoo_backoff_ms(5, 100, -1, UINT64_MAX), 0, "negative max");
	unit_check_int(partoo_backoff_ms(1, 5000, 1000, UINT64_MAX), 1000, "base above max");
	unit_check_int(partoo_backoff_ms(63, 1, INT64_MAX, UINT64_MAX), INT64_C(1) << 62, "attempt 63, base 1");
	unit_check_int(partoo_backoff_ms(64, 1, INT64_MAX, UINT64_MAX), INT64_MAX, "attempt 64, max INT64_MAX");
	unit_check_int(partoo_backoff_ms(2, INT64_MAX, INT64_MAX, UINT64_MAX), INT64_MAX, "base INT64_MAX");

	for (i = 1; i < 70; i++)
		monotone = monotone && partoo_backoff_ms(i, 7, 1000000, UINT64_MAX) >=
			partoo_backoff_ms(i - 1 > 0 ? i - 1 : 1, 7, 1000000, UINT64_MAX);
	unit_check(monotone, "the ceiling never shrinks as attempts grow");

	/* attempt 4, base 100: uniform on [0, 800] */
	for (i = 0; i < n; i++)
	{
		v = partoo_backoff_ms(4, 100, 60000, next_random(&rnd));
		in_range = in_range && v >= 0 && v <= 800;
		if (v < lo)
			lo = v;
		if (v > hi)
			hi = v;
		sum += (double) v;
		below_half += v < 400;
		buckets[v * 8 / 801]++;
	}
	unit_check(in_range, "all draws within [0, 800]");
	unit_check(lo <= 2 && hi >= 798, "draws reach both ends (min %lld, max %lld)",
			   (long long) lo, (long long) hi);
	unit_check(sum / n > 396 && sum / n < 404, "mean near 400 (%.1f)", sum / n);
	unit_check(below_half > n * 0.49 && below_half < n * 0.51, "half below 400 (%d)", below_half);
	for (i = 0; i < 8; i++)
		unit_check(buckets[i] > n / 8 * 0.95 && buckets[i] < n / 8 * 1.05,
				   "eighth %d holds about 1/8 (%d)", i, buckets[i]);
}

/*
 * Greedy acquisition for duration_ms: acquire until refused, then jump
 * exactly the wait returned.  Checks every wait is exact (refused one
 * millisecond earlier, allowed at the time given), then that no sliding
 * 60 s window holds more than per_minute sends and no 1 s window more
 * than burst plus what a second refills.
 */
static void
greedy(int per_minute, int burst, int64_t start, int64_t duration_ms,
	   int min_sends, const char *what)
{
	int			eff_burst = burst > 0 ? burst : (per_minute / 60 > 1 ? per_minute / 60 : 1);
	int			cap = (int) ((int64_t) per_minute * (duration_ms / 60000 + 1)) + eff_burst + 16;
	PartooRateLimiter *rl = partoo_ratelimit_create(per_minute, burst, start);
	int64_t    *sends = malloc(sizeof(int64_t) * (size_t) cap);
	int			nsends = 0;
	int64_t		now = start;
	bool		exact = true;
	int			max_minute = 0;
	int			max_second = 0;
	int			lo1 = 0,
				lo60 = 0;
	int			i;

	while (now < start + duration_ms && nsends < cap - 2)
	{
		int64_t		w = partoo_ratelimit_acquire(rl, now);

		if (w == 0)
		{
			sends[nsends++] = now;
			continue;
		}
		if (w < 1)
		{
			exact = false;
			break;
		}
		if (w > 1 && partoo_ratelimit_acquire(rl, now + w - 1) == 0)
		{
			exact = false;		/* allowed earlier than promised */
			sends[nsends++] = now + w - 1;
		}
		now += w;
		if (partoo_ratelimit_acquire(rl, now) != 0)
			exact = false;		/* refused when promised */
		else
			sends[nsends++] = now;
	}
	for (i = 0; i < nsends; i++)
	{
		while (sends[lo60] <= sends[i] - 60000)
			lo60++;
		while (sends[lo1] <= sends[i] - 1000)
			lo1++;
		if (i - lo60 + 1 > max_minute)
			max_minute = i - lo60 + 1;
		if (i - lo1 + 1 > max_second)
			max_second = i - lo1 + 1;
	}
	unit_check(exact, "%s: every wait is exact", what);
	unit_check(max_minute <= per_minute, "%s: at most %d in any 60 s window (max %d)",
			   what, per_minute, max_minute);
	unit_check(max_second <= eff_burst + (per_minute + 59) / 60,
			   "%s: at most burst %d + refill in any 1 s window (max %d)",
			   what, eff_burst, max_second);
	unit_check(nsends >= min_sends, "%s: throughput, %d sends", what, nsends);
	free(sends);
	partoo_ratelimit_free(rl);
}

/*
 * The in-flight window (window.c): Little's law over the limited accounts
 * with its margin, the cap and the sockets bounding it, the latency's
 * estimate following the samples.
 */
static void
test_window(void)
{
	PartooLatency l;
	int			i;

	partoo_latency_init(&l);
	unit_check_int(partoo_latency_us(&l), PARTOO_LATENCY_UNKNOWN,
				   "no sample yet: not known");
	partoo_latency_add(&l, 100000);
	partoo_latency_add(&l, 300000);
	unit_check_int(partoo_latency_us(&l), 200000, "first samples: their mean");
	partoo_latency_add(&l, -5);
	unit_check_int(partoo_latency_us(&l), 200000, "a negative sample is ignored");
	for (i = 0; i < 400; i++)
		partoo_latency_add(&l, 50000);
	unit_check(llabs(partoo_latency_us(&l) - 50000) < 100,
			   "the estimate follows a new latency (%lld us)",
			   (long long) partoo_latency_us(&l));
	for (i = 0; i < 100; i++)
		partoo_latency_add(&l, 50000 + (i % 2 ? 10000 : -10000));
	unit_check(llabs(partoo_latency_us(&l) - 50000) < 1000,
			   "a spread around the mean keeps it (%lld us)",
			   (long long) partoo_latency_us(&l));

	/* 200 accounts at 300/minute over a 200 ms API: 1,000/s x 0.2 s x 1.5 + 8 */
	unit_check_int(partoo_window_size(200 * 5.0, false, 200000, -1, 1000, 100000), 308,
				   "200 accounts x 5/s at 200 ms: 308 slots");
	unit_check_int(partoo_window_size(200 * 5.0, false, 200000, -1, 64, 100000), 64,
				   "never more than the cap");
	unit_check_int(partoo_window_size(200 * 5.0, false, 200000, -1, 1000, 100), 100,
				   "never more than the sockets left");
	unit_check_int(partoo_window_size(200 * 5.0, false, 200000, -1, 1000, 0), 1,
				   "no socket left still gives one slot");
	unit_check_int(partoo_window_size(5.0, false, 1000, -1, 1000, 100000), 9,
				   "one account on loopback: the spare slots");
	unit_check_int(partoo_window_size(0, false, 200000, -1, 1000, 100000), PARTOO_WINDOW_SPARE,
				   "no limited account: the spare slots");
	unit_check_int(partoo_window_size(5.0, true, 200000, -1, 500, 100000), 500,
				   "an unlimited account takes the cap");
	unit_check_int(partoo_window_size(5.0, true, 200000, -1, 500, 300), 300,
				   "an unlimited account within the sockets left");
	unit_check_int(partoo_window_size(200 * 5.0, false, PARTOO_LATENCY_UNKNOWN, -1, 1000, 100000),
				   PARTOO_WINDOW_INITIAL,
				   "before any answer: the initial window, not a guess of the need");
	unit_check_int(partoo_window_size(200 * 5.0, false, PARTOO_LATENCY_UNKNOWN, -1, 10, 100000), 10,
				   "the initial window within the cap");
	unit_check_int(partoo_window_size(5.0, true, PARTOO_LATENCY_UNKNOWN, -1, 500, 100000),
				   PARTOO_WINDOW_INITIAL,
				   "before any answer an unlimited account gets the initial window too");
	unit_check_int(partoo_window_size(0, true, 1000, -1, 1000, 100000), PARTOO_WINDOW_INITIAL,
				   "an unlimited account on loopback (1 ms): the initial window, not the cap");
	unit_check_int(partoo_window_size(0, true, 50000, -1, 1000, 100000), 758,
				   "an unlimited account at 50 ms: 10,000/s x 0.05 s x 1.5 + 8");
	unit_check_int(partoo_window_size(1000.0, true, 50000, -1, 1000, 100000), 833,
				   "with limited accounts beside it: their rates add up");
	unit_check_int(partoo_window_size(0, true, 80000, 1000, 1000, 100000), PARTOO_WINDOW_INITIAL,
				   "an unlimited account sized at the floor (1 ms), not the busy mean (80 ms)");
	unit_check_int(partoo_window_size(1000.0, true, 200000, 150000, 1000, 100000), 1000,
				   "limited accounts at the mean, the unlimited one at the floor");
	unit_check_int(partoo_window_size(1000.0, true, 50000, 5000, 1000, 100000), 158,
				   "... 1,000/s x 50 ms + 10,000/s x 5 ms, x 1.5 + 8");

	/* the floor: the least recent sample */
	partoo_latency_init(&l);
	unit_check_int(partoo_latency_floor_us(&l), PARTOO_LATENCY_UNKNOWN, "no floor before a sample");
	partoo_latency_add(&l, 5000);
	partoo_latency_add(&l, 900);
	partoo_latency_add(&l, 7000);
	unit_check_int(partoo_latency_floor_us(&l), 900, "the floor is the least sample");
	for (i = 0; i < PARTOO_FLOOR_RUN; i++)
		partoo_latency_add(&l, 50000);
	unit_check_int(partoo_latency_floor_us(&l), 900, "and is kept for a run");
	for (i = 0; i < PARTOO_FLOOR_RUN; i++)
		partoo_latency_add(&l, 50000);
	unit_check_int(partoo_latency_floor_us(&l), 50000, "then forgotten: the API got farther");
	unit_check_int(partoo_window_size(-3, false, 200000, -1, 10, 10), PARTOO_WINDOW_SPARE,
				   "a negative rate counts as 0");
}

static void
test_ratelimit(void)
{
	PartooRateLimiter *rl;
	uint64_t	rnd = 99;
	int			round;
	bool		ok;

	unit_note("rate limiter");
	unit_check(partoo_ratelimit_create(-1, 0, 0) == NULL, "negative per_minute refused");

	/* minimums allow for the window log's 500 ms guard (60 s / 60.5 s) */
	greedy(300, 10, 0, 600000, 2960, "300/min burst 10, 10 minutes");
	greedy(300, 300, 0, 600000, 2960, "300/min burst 300, 10 minutes");
	greedy(300, 0, 1000000, 600000, 2960, "300/min default burst");
	greedy(60, 1, -300000, 600000, 593, "60/min burst 1, negative clock");
	greedy(1, 1, 0, 600000, 10, "1/min");
	greedy(7, 3, 0, 600000, 70, "7/min burst 3");
	greedy(100000, 50, 0, 600000, 990000, "100000/min burst 50");

	/* default burst and exact waits */
	rl = partoo_ratelimit_create(60, 0, 0);
	unit_check_int(partoo_ratelimit_acquire(rl, 0), 0, "60/min: first send");
	unit_check_int(partoo_ratelimit_acquire(rl, 0), 1000, "60/min: default burst 1, next in 1000 ms");
	unit_check_int(partoo_ratelimit_acquire(rl, 999), 1, "60/min: 1 ms before");
	unit_check_int(partoo_ratelimit_acquire(rl, 1000), 0, "60/min: on time");

	/* release gives back the token and the window entry */
	partoo_ratelimit_release(rl, 1000);
	unit_check_int(partoo_ratelimit_acquire(rl, 1000), 0, "release: token back");
	unit_check_int(partoo_ratelimit_acquire(rl, 1000), 1000, "release: only one token back");
	partoo_ratelimit_free(rl);

	rl = partoo_ratelimit_create(2, 2, 0);
	unit_check(partoo_ratelimit_acquire(rl, 0) == 0 && partoo_ratelimit_acquire(rl, 10) == 0,
			   "2/min: two sends");
	unit_check_int(partoo_ratelimit_acquire(rl, 20), 60480, "2/min: third waits for the window (60 s plus the 500 ms guard)");
	partoo_ratelimit_release(rl, 30);
	unit_check_int(partoo_ratelimit_acquire(rl, 30), 0, "2/min: release frees the window");
	unit_check_int(partoo_ratelimit_acquire(rl, 40), 60460, "2/min: window full again");
	partoo_ratelimit_release(rl, 50);
	partoo_ratelimit_release(rl, 50);
	partoo_ratelimit_release(rl, 50);
	unit_check_int(partoo_ratelimit_acquire(rl, 50), 0, "2/min: releases beyond sends are harmless");
	unit_check_int(partoo_ratelimit_acquire(rl, 50), 0, "2/min: but never exceed the burst");
	unit_check(partoo_ratelimit_acquire(rl, 50) > 0, "2/min: third refused");
	partoo_ratelimit_free(rl);

	/* pause */
	rl = partoo_ratelimit_create(0, 0, 0);
	ok = true;
	for (round = 0; round < 100000; round++)
		ok = ok && partoo_ratelimit_acquire(rl, 5) == 0;
	unit_check(ok, "unlimited: 100000 sends at once");
	unit_check_int(partoo_ratelimit_paused_until(rl), 0, "never paused: 0");
	partoo_ratelimit_pause_until(rl, 5000);
	unit_check_int(partoo_ratelimit_paused_until(rl), 5000, "paused until 5000");
	unit_check_int(partoo_ratelimit_acquire(rl, 1000), 4000, "unlimited but paused: wait");
	unit_check_int(partoo_ratelimit_acquire(rl, 4999), 1, "paused: 1 ms left");
	partoo_ratelimit_pause_until(rl, 3000);
	unit_check_int(partoo_ratelimit_paused_until(rl), 5000, "a shorter pause does not shorten");
	unit_check_int(partoo_ratelimit_acquire(rl, 5000), 0, "pause over");
	partoo_ratelimit_pause_until(rl, 8000);
	unit_check_int(partoo_ratelimit_acquire(rl, 6000), 2000, "paused again");
	partoo_ratelimit_free(rl);

	rl = partoo_ratelimit_create(60, 1, 0);
	partoo_ratelimit_acquire(rl, 0);
	partoo_ratelimit_pause_until(rl, 300);
	unit_check_int(partoo_ratelimit_acquire(rl, 100), 900, "pause shorter than the token wait");
	partoo_ratelimit_pause_until(rl, 5000);
	unit_check_int(partoo_ratelimit_acquire(rl, 100), 4900, "pause longer than the token wait");
	unit_check_int(partoo_ratelimit_acquire(rl, 5000), 0, "after the pause");
	partoo_ratelimit_free(rl);

	/* configure */
	rl = partoo_ratelimit_create(10, 10, 0);
	ok = true;
	for (round = 0; round < 10; round++)
		ok = ok && partoo_ratelimit_acquire(rl, round) == 0;
	unit_check(ok, "configure: 10 sends");
	unit_check_int(partoo_ratelimit_configure(rl, 5, 5, 100), 0, "configure to 5/min");
	unit_check_int(partoo_ratelimit_acquire(rl, 100), 60405,
				   "configure down: the 5 most recent sends (5..9) are kept");
	unit_check_int(partoo_ratelimit_configure(rl, 20, 20, 100), 0, "configure to 20/min");
	unit_check_int(partoo_ratelimit_acquire(rl, 100), 2950,
				   "configure up: the window has room, the bucket decides");
	unit_check_int(partoo_ratelimit_configure(rl, -1, 0, 100), -1, "configure negative refused");
	unit_check_int(partoo_ratelimit_configure(rl, 0, 0, 100), 0, "configure to unlimited");
	ok = true;
	for (round = 0; round < 1000; round++)
		ok = ok && partoo_ratelimit_acquire(rl, 100) == 0;
	unit_check(ok, "unlimited after configure");
	unit_check_int(partoo_ratelimit_configure(rl, 3, 2, 200), 0, "configure unlimited to 3/min burst 2");
	unit_check(partoo_ratelimit_acquire(rl, 200) == 0 && partoo_ratelimit_acquire(rl, 200) == 0,
			   "limited again: bucket starts full");
	unit_check_int(partoo_ratelimit_acquire(rl, 200), 20000, "limited again: burst 2");
	partoo_ratelimit_free(rl);

	/* a configure must not let the window overflow with the old history */
	rl = partoo_ratelimit_create(5, 5, 0);
	for (round = 0; round < 5; round++)
		partoo_ratelimit_acquire(rl, 0);
	partoo_ratelimit_configure(rl, 10, 10, 0);
	unit_check_int(partoo_ratelimit_acquire(rl, 0), 6000, "configure up: tokens are not granted");
	partoo_ratelimit_free(rl);

	/* the clock going backwards */
	rl = partoo_ratelimit_create(60, 1, 0);
	unit_check_int(partoo_ratelimit_acquire(rl, 10000), 0, "backwards: send at 10000");
	unit_check_int(partoo_ratelimit_acquire(rl, 5000), 1000, "backwards: time stands still");
	unit_check_int(partoo_ratelimit_acquire(rl, 5999), 1, "backwards: counts from the new clock");
	unit_check_int(partoo_ratelimit_acquire(rl, 6000), 0, "backwards: one token per second still");
	unit_check_int(partoo_ratelimit_acquire(rl, 6000), 1000, "backwards: no extra send");
	partoo_ratelimit_pause_until(rl, 8000);
	unit_check_int(partoo_ratelimit_paused_until(rl), 8000, "backwards: pause in the caller's clock");
	unit_check_int(partoo_ratelimit_acquire(rl, 7000), 1000, "backwards: pause honoured");
	partoo_ratelimit_free(rl);

	/* hostile times never overflow (UBSan watches) */
	rl = partoo_ratelimit_create(INT_MAX, INT_MAX, INT64_MAX);
	ok = rl != NULL;
	ok = ok && partoo_ratelimit_acquire(rl, INT64_MAX) >= 0;
	ok = ok && partoo_ratelimit_acquire(rl, INT64_MIN) >= 0;
	partoo_ratelimit_pause_until(rl, INT64_MAX);
	ok = ok && partoo_ratelimit_acquire(rl, INT64_MIN) >= 0;
	ok = ok && partoo_ratelimit_acquire(rl, INT64_MAX) >= 0;
	partoo_ratelimit_pause_until(rl, INT64_MIN);
	partoo_ratelimit_release(rl, INT64_MIN);
	ok = ok && partoo_ratelimit_configure(rl, 1, INT_MAX, INT64_MAX) == 0;
	ok = ok && partoo_ratelimit_acquire(rl, 0) >= 0;
	unit_check(ok, "extreme times and limits");
	partoo_ratelimit_free(rl);
	partoo_ratelimit_free(NULL);
	unit_check(partoo_ratelimit_acquire(NULL, 0) > 0, "NULL limiter never allows");

	/* a large per_minute does not allocate per_minute slots up front */
	rl = partoo_ratelimit_create(INT_MAX, 0, 0);
	ok = rl != NULL;
	for (round = 0; round < 5000 && ok; round++)
		ok = partoo_ratelimit_acquire(rl, round / 10) == 0;
	unit_check(ok, "INT_MAX per minute: 5000 sends");
	partoo_ratelimit_free(rl);

	/* random times, random limits, random releases: the window holds */
	ok = true;
	for (round = 0; round < 50 && ok; round++)
	{
		int			pm = 1 + (int) (next_random(&rnd) % 400);
		int			burst = (int) (next_random(&rnd) % 30);
		int64_t		now = (int64_t) (next_random(&rnd) % 100000) - 50000;
		int64_t    *sends = malloc(sizeof(int64_t) * 20000);
		int			nsends = 0;
		int			step;
		int			lo = 0;
		int			i;

		rl = partoo_ratelimit_create(pm, burst, now);
		for (step = 0; step < 20000 && nsends < 20000; step++)
		{
			now += (int64_t) (next_random(&rnd) % 500);
			if (partoo_ratelimit_acquire(rl, now) == 0)
			{
				if (next_random(&rnd) % 10 == 0)
					partoo_ratelimit_release(rl, now);
				else
					sends[nsends++] = now;
			}
		}
		for (i = 0; i < nsends && ok; i++)
		{
			while (sends[lo] <= sends[i] - 60000)
				lo++;
			if (i - lo + 1 > pm)
			{
				ok = false;
				printf("#   %d/min burst %d: %d sends in the window ending %lld\n",
					   pm, burst, i - lo + 1, (long long) sends[i]);
			}
		}
		free(sends);
		partoo_ratelimit_free(rl);
	}
	unit_check(ok, "50 random limiters: never more than per_minute in 60 s");
}

/*
 * What the fuzz targets (test/core/fuzz) found, kept so it stays fixed.  Each
 * case names its target; the exact waits of the limiter are left to
 * test_ratelimit(), only refusals are checked here.
 */
static void
test_fuzz_findings(void)
{
	PartooRateLimiter *rl;

	unit_note("fuzz findings");

	/*
	 * fuzz_response: a double of 2^53 is also the rounding of 2^53 + 1, so
	 * "9007199254740993." (cJSON takes the trailing dot) gave id 2^53.
	 */
	expect_id("{\"message_id\":9007199254740993.}", false, 0,
			  "2^53 + 1 with a trailing dot is no id");
	expect_id("{\"message_id\":9007199254740993.0}", false, 0,
			  "2^53 + 1 as a float is no id");
	expect_id("{\"message_id\":9007199254740993e0}", false, 0,
			  "2^53 + 1 with an exponent is no id");
	expect_id("{\"message_id\":-9007199254740993.0}", false, 0,
			  "-(2^53 + 1) as a float is no id");
	expect_id("{\"message_id\":9007199254740991.0}", true, INT64_C(9007199254740991),
			  "2^53 - 1 as a float");
	expect_id("{\"message_id\":9007199254740992}", true, INT64_C(9007199254740992),
			  "2^53 as digits");

	/*
	 * fuzz_request: a date of PARTOO_DATE_BUFLEN characters passed, though
	 * it does not fit the buffer partoo_format_date() fills.
	 */
	{
		char		date[PARTOO_DATE_BUFLEN + 1];
		PartooMessage m = text_msg("hello");

		memset(date, '1', PARTOO_DATE_BUFLEN);
		date[PARTOO_DATE_BUFLEN] = '\0';
		m.date = date;
		expect_invalid(&m, PARTOO_PROBLEM_INVALID, "message date is not valid",
					   "date of PARTOO_DATE_BUFLEN characters");
		date[PARTOO_DATE_BUFLEN - 1] = '\0';
		expect_valid(&m, "date of PARTOO_DATE_BUFLEN - 1 characters");
	}

	/*
	 * fuzz_ratelimit: lowering the limit dropped logged sends, so raising
	 * it again within the minute let them be sent once more.
	 */
	rl = partoo_ratelimit_create(300, 0, 0);
	unit_check(partoo_ratelimit_acquire(rl, 0) == 0 &&
			   partoo_ratelimit_acquire(rl, 0) == 0, "300/min: two sends");
	unit_check(partoo_ratelimit_configure(rl, 1, 0, 0) == 0 &&
			   partoo_ratelimit_configure(rl, 2, 0, 0) == 0,
			   "configure to 1/min, then 2/min");
	unit_check(partoo_ratelimit_acquire(rl, 0) > 0,
			   "configure down and up: the two sends still fill the window");
	unit_check(partoo_ratelimit_acquire(rl, 30000) > 0,
			   "configure down and up: for the whole minute");
	partoo_ratelimit_free(rl);
}

int
main(void)
{
	test_names();
	test_content_type_table();
	test_validation_rules();
	test_matrix();
	test_warnings();
	test_utf8();
	test_sanitize();
	test_dates();
	test_json_bodies();
	test_multipart();
	test_paths();
	test_responses();
	test_classify();
	test_retry_after();
	test_backoff();
	test_ratelimit();
	test_window();
	test_fuzz_findings();
	return unit_done();
}
