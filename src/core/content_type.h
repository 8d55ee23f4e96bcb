/*-------------------------------------------------------------------------
 *
 * content_type.h
 *		The content types of a message (Text, Image, ...) and the one table
 *		that describes each of them (content_type.c).
 *
 * Validation (validate.c), request building (request.c) and the hints of
 * the SQL functions (server/message.c) all read what they need about a
 * content type from its PartooContentTypeInfo entry, so that a content
 * type is added, or its rules changed, in one place.  Part of the protocol
 * core: plain C99, no postgres.h, no mutable state.
 *
 * src/core/content_type.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_CORE_CONTENT_TYPE_H
#define PARTOO_CORE_CONTENT_TYPE_H

#include <stdbool.h>
#include <stddef.h>

/* Size limits from the API documentation (shared/seeds/partoo-send-message.md) */
#define PARTOO_MIB					(1024 * 1024)
#define PARTOO_IMAGE_MAX_BYTES		(5 * PARTOO_MIB)
#define PARTOO_VIDEO_MAX_BYTES		(16 * PARTOO_MIB)
#define PARTOO_AUDIO_MAX_BYTES		(16 * PARTOO_MIB)
#define PARTOO_DOCUMENT_MAX_BYTES	(100 * PARTOO_MIB)
/* Our own limit on the content of a Text message */
#define PARTOO_TEXT_MAX_BYTES		(64 * 1024)

/*
 * The values are the indexes of the entries in the table of content_type.c,
 * in the same order.
 */
typedef enum PartooContentType
{
	PARTOO_CT_INVALID = -1,
	PARTOO_CT_TEXT = 0,
	PARTOO_CT_IMAGE,
	PARTOO_CT_VIDEO,
	PARTOO_CT_AUDIO,
	PARTOO_CT_DOCUMENT
} PartooContentType;

#define PARTOO_NUM_CONTENT_TYPES	5

/*
 * How the JSON body of POST /messages carries the message's payload, after
 * "conversation_id" and "content_type" and before "date" (the seed
 * partoo-send-message.md; README.md, partoo_send).  An upload is always
 * multipart/form-data instead.
 */
typedef enum PartooBodyShape
{
	PARTOO_BODY_TEXT,			/* "content": "<the text>" */
	PARTOO_BODY_URL,			/* "url": "<url>" at the top level */
	PARTOO_BODY_CONTENT_URL		/* "content": {"url": "<url>"} */
} PartooBodyShape;

/*
 * A file format recognised by its first bytes: what an upload is sent as
 * (Content-Type of the file part, and its file name when the caller gave
 * none).
 */
typedef struct PartooFileSignature
{
	const unsigned char *magic;
	size_t		magic_len;
	const char *mime;
	const char *default_filename;
} PartooFileSignature;

/*
 * How a content type is uploaded rather than given by URL: the multipart
 * part that carries the bytes, the formats Partoo recommends (by magic
 * bytes), what an upload of another format is sent as, and the warning
 * for it.
 */
typedef struct PartooUploadInfo
{
	const char *part_name;		/* name="..." of the file part */
	const PartooFileSignature *recommended;
	int			num_recommended;
	PartooFileSignature other;	/* magic unused */
	const char *not_recommended_warning;
} PartooUploadInfo;

/* Bit of a PartooChannel in PartooContentTypeInfo.channels */
#define PARTOO_CHANNEL_BIT(ch)		(1u << (unsigned) (ch))

/*
 * Everything partoo knows about one content type.  The texts are pieces of
 * PostgreSQL-style messages: article and needs go into an errmsg ("an
 * Image message needs a url or an uploaded image"), needs_hint is the
 * errhint that goes with it.
 */
typedef struct PartooContentTypeInfo
{
	PartooContentType type;		/* equal to the entry's index */
	const char *name;			/* canonical spelling the API uses */
	const char *article;		/* "a" or "an", before the name */
	PartooBodyShape shape;		/* its JSON body; PARTOO_BODY_TEXT = Text */
	unsigned	channels;		/* PARTOO_CHANNEL_BIT of each channel taking it */

	/*
	 * The largest payload in bytes.  Enforced on what partoo holds itself (a
	 * Text's content, an upload); a file given by URL is fetched by Partoo,
	 * which applies its own limit.
	 */
	size_t		max_bytes;

	/* Recommended file types, lower-case URL extensions; none for Text */
	const char *const *extensions;
	int			num_extensions;

	const PartooUploadInfo *upload; /* NULL: no upload, URL only */

	const char *needs;			/* "content", "a url", ... */
	const char *needs_hint;		/* errhint when that is missing */
} PartooContentTypeInfo;

/*
 * The entry of a content type, or NULL for PARTOO_CT_INVALID and any value
 * outside the enum.
 */
extern const PartooContentTypeInfo *partoo_content_type_info(PartooContentType ct);

/*
 * Names are matched case-insensitively (ASCII only); partoo_content_type_name()
 * gives the canonical spelling ("Text", ...), NULL for PARTOO_CT_INVALID or
 * any value outside the enum.  NULL maps to PARTOO_CT_INVALID.
 */
/* ASCII-only case-insensitive equality, the same in every locale (content_type.c) */
extern bool partoo_ascii_caseeq(const char *a, const char *b);
extern PartooContentType partoo_content_type_from_name(const char *name);
extern const char *partoo_content_type_name(PartooContentType ct);

/*
 * The recommended format of upload whose first bytes data[0..len) match,
 * or NULL when none does.
 */
extern const PartooFileSignature *partoo_upload_format(const PartooUploadInfo *upload,
													   const unsigned char *data,
													   size_t len);

/* Which entries partoo_content_type_list() names */
typedef enum PartooContentTypeFilter
{
	PARTOO_CT_LIST_ALL,
	PARTOO_CT_LIST_MEDIA,		/* every shape but PARTOO_BODY_TEXT */
	PARTOO_CT_LIST_UPLOAD,		/* with an upload */
	PARTOO_CT_LIST_URL_ONLY		/* media without an upload */
} PartooContentTypeFilter;

/* Room for a list of every name (test_protocol checks that it fits) */
#define PARTOO_CT_LIST_BUFLEN		96

/*
 * Write the names of the entries that pass filter (and, when channel is
 * not PARTOO_CH_NONE, that channel accepts) into buf, in table order,
 * separated by ", " with last_sep before the last: "Text, Image, Video,
 * Audio and Document".  Always NUL-terminates (buflen > 0); returns the
 * number of names.
 */
extern int	partoo_content_type_list(PartooContentTypeFilter filter, int channel,
									 const char *last_sep, char *buf,
									 size_t buflen);

#endif							/* PARTOO_CORE_CONTENT_TYPE_H */
