/*-------------------------------------------------------------------------
 *
 * content_type.c
 *		The table of content types, their names, and the lists of names
 *		that hints show.
 *
 * Each content type the API takes is one entry of content_types[] below;
 * validate.c, request.c and server/message.c read its rules from there
 * rather than testing for a particular type.  The values come from the
 * API contract (shared/seeds/partoo-send-message.md) unless a comment says
 * they are our own reading of it.
 *
 * src/core/content_type.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/content_type.h"
#include "core/message.h"

#include <stdio.h>
#include <string.h>

/* ASCII-only lower-casing: locale must not change what a name means */
static int
ascii_tolower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* ASCII-only case-insensitive equality, the same in every locale */
bool
partoo_ascii_caseeq(const char *a, const char *b)
{
	while (*a && *b)
	{
		if (ascii_tolower((unsigned char) *a) != ascii_tolower((unsigned char) *b))
			return false;
		a++;
		b++;
	}
	return *a == *b;
}

#define lengthof(array)		((int) (sizeof(array) / sizeof((array)[0])))

/* Channels by bit, to write the channel sets of the table */
#define FACEBOOK	PARTOO_CHANNEL_BIT(PARTOO_CH_FACEBOOK)
#define INSTAGRAM	PARTOO_CHANNEL_BIT(PARTOO_CH_INSTAGRAM)
#define SMS			PARTOO_CHANNEL_BIT(PARTOO_CH_SMS)
#define WHATSAPP	PARTOO_CHANNEL_BIT(PARTOO_CH_WHATSAPP)
#define GOOGLE		PARTOO_CHANNEL_BIT(PARTOO_CH_GOOGLE)

/*
 * Recommended file types, as lower-case extensions of the URL's path.
 * The seed says "jpeg, png" for images; "jpg" is the same format and far
 * more common in URLs, and "m4a" is the usual extension of AAC in MP4.
 */
static const char *const image_extensions[] = {"jpeg", "jpg", "png"};
static const char *const video_extensions[] = {"mp4"};
static const char *const audio_extensions[] = {"aac", "mp4", "m4a"};
static const char *const document_extensions[] = {"xls", "xlsx", "docx", "pdf", "ppt", "pptx"};

/* The formats Partoo recommends for an uploaded image, by magic bytes */
static const unsigned char jpeg_magic[] = {0xFF, 0xD8, 0xFF};
static const unsigned char png_magic[] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};

static const PartooFileSignature image_formats[] = {
	{jpeg_magic, sizeof(jpeg_magic), "image/jpeg", "image.jpg"},
	{png_magic, sizeof(png_magic), "image/png", "image.png"}
};

static const PartooUploadInfo image_upload = {
	"image",
	image_formats, lengthof(image_formats),
	{NULL, 0, "application/octet-stream", "image.bin"},
	"the uploaded image is neither JPEG nor PNG"
};

/*
 * The content types, indexed by PartooContentType.
 *
 * To add a content type, add an entry here and its value to the enum in
 * core/content_type.h (at the same position; PARTOO_NUM_CONTENT_TYPES
 * counts them).  For a type given by URL that is all the C code needs;
 * then document it in README.md (the content_type table of partoo_send)
 * and teach the mock server (test/mock/partoo_mock.c) to accept it.  A
 * second type with an upload would also need the words about uploads in
 * validate.c (check_media, check_upload) reviewed: they speak of an image,
 * since Image is the only type with an upload today, as do PartooMessage's
 * upload fields (image, image_len).
 *
 * Channels: the seed lists Facebook, Instagram, SMS and Whatsapp; Google
 * is absent, so we take the conservative reading and allow only Text
 * there.  Text is allowed on every channel.
 */
static const PartooContentTypeInfo content_types[PARTOO_NUM_CONTENT_TYPES] = {
	{
		PARTOO_CT_TEXT, "Text", "a", PARTOO_BODY_TEXT,
		FACEBOOK | INSTAGRAM | SMS | WHATSAPP | GOOGLE,
		PARTOO_TEXT_MAX_BYTES,
		NULL, 0,
		NULL,
		"content", "Pass the text in the content argument."
	},
	{
		PARTOO_CT_IMAGE, "Image", "an", PARTOO_BODY_URL,
		FACEBOOK | INSTAGRAM | WHATSAPP,
		PARTOO_IMAGE_MAX_BYTES,
		image_extensions, lengthof(image_extensions),
		&image_upload,
		"a url or an uploaded image", "Pass either the url of the image or its bytes."
	},
	{
		PARTOO_CT_VIDEO, "Video", "a", PARTOO_BODY_CONTENT_URL,
		FACEBOOK | INSTAGRAM | WHATSAPP,
		PARTOO_VIDEO_MAX_BYTES,
		video_extensions, lengthof(video_extensions),
		NULL,
		"a url", "Pass the address of the file in the url argument."
	},
	{
		PARTOO_CT_AUDIO, "Audio", "an", PARTOO_BODY_CONTENT_URL,
		FACEBOOK | INSTAGRAM | WHATSAPP,
		PARTOO_AUDIO_MAX_BYTES,
		audio_extensions, lengthof(audio_extensions),
		NULL,
		"a url", "Pass the address of the file in the url argument."
	},
	{
		PARTOO_CT_DOCUMENT, "Document", "a", PARTOO_BODY_CONTENT_URL,
		FACEBOOK | WHATSAPP,
		PARTOO_DOCUMENT_MAX_BYTES,
		document_extensions, lengthof(document_extensions),
		NULL,
		"a url", "Pass the address of the file in the url argument."
	}
};

const PartooContentTypeInfo *
partoo_content_type_info(PartooContentType ct)
{
	if ((int) ct < 0 || (int) ct >= PARTOO_NUM_CONTENT_TYPES)
		return NULL;
	return &content_types[ct];
}

PartooContentType
partoo_content_type_from_name(const char *name)
{
	int			i;

	if (name == NULL)
		return PARTOO_CT_INVALID;
	for (i = 0; i < PARTOO_NUM_CONTENT_TYPES; i++)
		if (partoo_ascii_caseeq(name, content_types[i].name))
			return content_types[i].type;
	return PARTOO_CT_INVALID;
}

const char *
partoo_content_type_name(PartooContentType ct)
{
	const PartooContentTypeInfo *info = partoo_content_type_info(ct);

	return info ? info->name : NULL;
}

/* See core/content_type.h */
const PartooFileSignature *
partoo_upload_format(const PartooUploadInfo *upload, const unsigned char *data,
					 size_t len)
{
	int			i;

	for (i = 0; i < upload->num_recommended; i++)
	{
		const PartooFileSignature *sig = &upload->recommended[i];

		if (len >= sig->magic_len && memcmp(data, sig->magic, sig->magic_len) == 0)
			return sig;
	}
	return NULL;
}

/* Does partoo_content_type_list() name this entry? */
static bool
passes_filter(const PartooContentTypeInfo *info, PartooContentTypeFilter filter,
			  int channel)
{
	bool		is_media = info->shape != PARTOO_BODY_TEXT;

	if (channel != PARTOO_CH_NONE &&
		(info->channels & PARTOO_CHANNEL_BIT(channel)) == 0)
		return false;
	switch (filter)
	{
		case PARTOO_CT_LIST_ALL:
			return true;
		case PARTOO_CT_LIST_MEDIA:
			return is_media;
		case PARTOO_CT_LIST_UPLOAD:
			return info->upload != NULL;
		case PARTOO_CT_LIST_URL_ONLY:
			return is_media && info->upload == NULL;
	}
	return false;
}

/* See core/content_type.h */
int
partoo_content_type_list(PartooContentTypeFilter filter, int channel,
						 const char *last_sep, char *buf, size_t buflen)
{
	const char *names[PARTOO_NUM_CONTENT_TYPES];
	int			n = 0;
	int			i;
	size_t		used = 0;

	for (i = 0; i < PARTOO_NUM_CONTENT_TYPES; i++)
		if (passes_filter(&content_types[i], filter, channel))
			names[n++] = content_types[i].name;

	buf[0] = '\0';
	for (i = 0; i < n && used < buflen; i++)
	{
		const char *sep = (i == 0) ? "" : (i == n - 1) ? last_sep : ", ";

		used += (size_t) snprintf(buf + used, buflen - used, "%s%s", sep, names[i]);
	}
	return n;
}
