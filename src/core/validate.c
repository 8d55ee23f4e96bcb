/*-------------------------------------------------------------------------
 *
 * validate.c
 *		Names, validation and dates for outgoing Partoo messages; and the
 *		protocol core's shared text and calendar helpers (UTF-8 checking
 *		and sanitising, the proleptic Gregorian calendar).
 *
 * Everything a message must satisfy before it is sent or queued is decided
 * here, once, so that partoo_send() and partoo_enqueue() reject the same
 * things with the same words, and so that a queued message never fails
 * later for a reason we could have seen at enqueue time.  The rules come
 * from the API contract (shared/seeds/partoo-send-message.md) plus limits
 * of our own (URL, text and file name lengths); what differs between
 * content types (payload, channels, limits, recommended file types) is
 * read from their table in content_type.c.  A message that passes may
 * still carry a warning: a file type Partoo does not recommend is allowed,
 * since Partoo documents it as "optimal support", not as a requirement.
 *
 * This file is part of the protocol core: no PostgreSQL headers, no global
 * mutable state, no allocation.  Problems are reported in caller-owned
 * PartooProblem structs in PostgreSQL's message style (errmsg lower case
 * without a trailing period, detail and hint full sentences), and never
 * echo user-supplied strings except a short, already validated file
 * extension, so a message can always be shown safely.
 *
 * src/core/validate.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/message.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define NUM_CHANNELS		6	/* including PARTOO_CH_NONE */

/* Indexed by PartooChannel; PARTOO_CH_NONE has no name */
static const char *const channel_names[NUM_CHANNELS] = {
	NULL, "Facebook", "Instagram", "SMS", "Whatsapp", "Google"
};

/* The URL schemes check_url() accepts, lower case */
#define HTTP_PREFIX		"http://"
#define HTTPS_PREFIX	"https://"

/*
 * Room for the lower-cased extension url_extension() finds (longer ones are
 * no file type anyone would recognise), and for a content type's list of
 * recommended ones.
 */
#define EXTENSION_BUFLEN	17
#define RECOMMENDED_BUFLEN	96

/* ASCII-only lower-casing: locale must not change what a name means */
static int
ascii_tolower(int c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

PartooChannel
partoo_channel_from_name(const char *name)
{
	int			i;

	if (name == NULL)
		return PARTOO_CH_NONE;
	for (i = 1; i < NUM_CHANNELS; i++)
		if (partoo_ascii_caseeq(name, channel_names[i]))
			return (PartooChannel) i;
	return PARTOO_CH_INVALID;
}

/* NULL for PARTOO_CH_NONE, PARTOO_CH_INVALID or any value outside the enum */
const char *
partoo_channel_name(PartooChannel ch)
{
	if ((int) ch < 0 || (int) ch >= NUM_CHANNELS)
		return NULL;
	return channel_names[ch];
}

/*
 * Length of the well-formed UTF-8 prefix of buf[0..len): equal to len when
 * the whole buffer is valid, else the offset of the first bad sequence.
 * The second-byte ranges exclude overlongs (E0, F0), surrogates (ED) and
 * code points above U+10FFFF (F4); C0, C1 and F5..FF never start a
 * sequence.
 */
static size_t
utf8_valid_prefix(const unsigned char *s, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		unsigned char lo = 0x80,
					hi = 0xBF;
		size_t		n,
					k;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF)
			n = 2;
		else if (c >= 0xE0 && c <= 0xEF)
		{
			n = 3;
			if (c == 0xE0)
				lo = 0xA0;
			else if (c == 0xED)
				hi = 0x9F;
		}
		else if (c >= 0xF0 && c <= 0xF4)
		{
			n = 4;
			if (c == 0xF0)
				lo = 0x90;
			else if (c == 0xF4)
				hi = 0x8F;
		}
		else
			return i;

		if (len - i < n)
			return i;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return i;
		for (k = 2; k < n; k++)
			if (s[i + k] < 0x80 || s[i + k] > 0xBF)
				return i;
		i += n;
	}
	return len;
}

bool
partoo_utf8_valid(const char *buf, size_t len)
{
	if (buf == NULL)
		return len == 0;
	return utf8_valid_prefix((const unsigned char *) buf, len) == len;
}

/* Length of the UTF-8 sequence a lead byte announces, 0 if none */
static size_t
utf8_seq_len(unsigned char c)
{
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return 2;
	if (c >= 0xE0 && c <= 0xEF)
		return 3;
	if (c >= 0xF0 && c <= 0xF4)
		return 4;
	return 0;
}

/* See core/message.h */
size_t
partoo_sanitize_text(const char *src, size_t srclen, char *dst, size_t dstcap,
					 bool keep_utf8, size_t *dstlen)
{
	size_t		i = 0;
	size_t		o = 0;

	while (i < srclen)
	{
		unsigned char c = (unsigned char) src[i];
		size_t		seq = utf8_seq_len(c);

		if (keep_utf8 && seq > 1 && seq <= srclen - i &&
			utf8_valid_prefix((const unsigned char *) src + i, seq) == seq)
		{
			if (o + seq >= dstcap)
				break;
			memcpy(dst + o, src + i, seq);
			o += seq;
			i += seq;
			continue;
		}
		if (o + 1 >= dstcap)
			break;
		if (c == '\t' || c == '\n' || c == '\r')
			dst[o++] = ' ';
		else if (c < 0x20 || c >= 0x7F)
			dst[o++] = '?';
		else
			dst[o++] = (char) c;
		i++;
	}
	if (dstcap > 0)
		dst[o] = '\0';
	if (dstlen != NULL)
		*dstlen = o;
	return i;
}

/* ----------------------------------------------------------------
 * The calendar: proleptic Gregorian, days counted from 1970-01-01
 * ----------------------------------------------------------------
 */

/*
 * Days since 1970-01-01 of y-m-d, counting in 400-year eras of 146097
 * days with years starting in March, so that the leap day falls at the
 * end.  Our own arithmetic rather than timegm() or gmtime_r(), which are
 * not C99 and depend on the TZ machinery and the width of time_t.
 */
int64_t
partoo_days_from_civil(int64_t y, int m, int d)
{
	int64_t		era;
	int64_t		yoe;
	int64_t		doy;
	int64_t		doe;

	if (m <= 2)
		y--;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* The inverse of partoo_days_from_civil */
void
partoo_civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	int64_t		era;
	int64_t		doe;
	int64_t		yoe;
	int64_t		doy;
	int64_t		mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int) (doy - (153 * mp + 2) / 5 + 1);
	*m = (int) (mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

bool
partoo_is_leap_year(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days in month m (1..12) of year y */
int
partoo_days_in_month(int64_t y, int m)
{
	static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (m < 1 || m > 12)
		return 0;
	return mdays[m - 1] + (m == 2 && partoo_is_leap_year(y) ? 1 : 0);
}

/*
 * Fill a problem and return PARTOO_NOT_VALID, so a check can end with
 * "return set_problem(...)".  detail and hint may be NULL for "none".
 * The strings are copied, not formatted: callers format values into a
 * local buffer first, which keeps user input out of format strings.
 */
static int
set_problem(PartooProblem *p, PartooProblemKind kind, const char *message,
			const char *detail, const char *hint)
{
	p->kind = kind;
	snprintf(p->message, sizeof(p->message), "%s", message);
	snprintf(p->detail, sizeof(p->detail), "%s", detail ? detail : "");
	snprintf(p->hint, sizeof(p->hint), "%s", hint ? hint : "");
	return PARTOO_NOT_VALID;
}

static void
reset_problem(PartooProblem *p)
{
	memset(p, 0, sizeof(*p));
	p->kind = PARTOO_PROBLEM_NONE;
}

/*
 * Write "Instagram supports Text, Image, Video and Audio messages." (or
 * "SMS supports only Text messages.") into buf, from the content type
 * table, so the hint can never disagree with the rule.
 */
static void
describe_channel_support(PartooChannel ch, char *buf, size_t buflen)
{
	char		names[PARTOO_CT_LIST_BUFLEN];
	int			n;

	n = partoo_content_type_list(PARTOO_CT_LIST_ALL, ch, " and ", names,
								 sizeof(names));
	snprintf(buf, buflen, "%s supports %s%s messages.", channel_names[ch],
			 n == 1 ? "only " : "", names);
}

/* "jpeg, jpg or png": the recommended extensions of a content type */
static void
describe_recommended(const PartooContentTypeInfo *info, char *buf,
					 size_t buflen)
{
	int			n = info->num_extensions;
	int			i;
	size_t		used = 0;

	buf[0] = '\0';
	for (i = 0; i < n && used < buflen; i++)
	{
		const char *sep = (i == 0) ? "" : (i == n - 1) ? " or " : ", ";

		used += (size_t) snprintf(buf + used, buflen - used, "%s%s", sep,
								  info->extensions[i]);
	}
}

static bool
starts_with_ci(const char *s, const char *prefix)
{
	while (*prefix)
	{
		if (ascii_tolower((unsigned char) *s) != *prefix)
			return false;
		s++;
		prefix++;
	}
	return true;
}

/*
 * Check a media URL's form; the caller has made sure url is not NULL.
 * We only insist on what makes the request well-formed and the URL
 * fetchable by Partoo: an http(s) scheme, a host, no whitespace or control
 * characters (which would need encoding we cannot guess), and a bounded
 * length.
 */
static int
check_url(const char *url, PartooProblem *err)
{
	const char *rest;
	size_t		i;
	size_t		len;
	char		detail[160];

	if (starts_with_ci(url, HTTP_PREFIX))
		rest = url + strlen(HTTP_PREFIX);
	else if (starts_with_ci(url, HTTPS_PREFIX))
		rest = url + strlen(HTTPS_PREFIX);
	else
		return set_problem(err, PARTOO_PROBLEM_INVALID,
						   "url must start with http:// or https://",
						   "Partoo fetches media from the web, so only http and https URLs work.",
						   "Give the full address of the file, such as https://example.com/photo.jpg.");

	for (i = 0; url[i] != '\0'; i++)
	{
		unsigned char c = (unsigned char) url[i];

		if (c <= 0x20 || c == 0x7F)
		{
			snprintf(detail, sizeof(detail),
					 "The character at byte %zu is a space or a control character.", i);
			return set_problem(err, PARTOO_PROBLEM_INVALID,
							   "url contains whitespace or control characters",
							   detail,
							   "Percent-encode such characters, for example a space as %20.");
		}
	}
	len = i;

	if (len > PARTOO_URL_MAX_BYTES)
	{
		snprintf(detail, sizeof(detail),
				 "The url is %zu bytes; the limit is %d bytes.",
				 len, PARTOO_URL_MAX_BYTES);
		return set_problem(err, PARTOO_PROBLEM_TOO_LARGE, "url is too long",
						   detail, "Use a shorter address for the file.");
	}

	if (*rest == '\0' || *rest == '/' || *rest == '?' || *rest == '#')
		return set_problem(err, PARTOO_PROBLEM_INVALID, "url has no host",
						   NULL,
						   "Give the full address of the file, such as https://example.com/photo.jpg.");
	return PARTOO_VALID;
}

/*
 * Check an upload's file name, which goes verbatim into a quoted
 * Content-Disposition parameter: quotes, backslashes and control characters
 * would break the header, and a slash would make it a path.
 */
static int
check_filename(const char *filename, PartooProblem *err)
{
	size_t		len = strlen(filename);
	size_t		i;
	char		detail[160];

	if (len == 0)
		return set_problem(err, PARTOO_PROBLEM_INVALID, "file name is empty",
						   NULL, "Pass NULL to let partoo choose a file name.");
	if (len > PARTOO_FILENAME_MAX_BYTES)
	{
		snprintf(detail, sizeof(detail),
				 "The file name is %zu bytes; the limit is %d bytes.",
				 len, PARTOO_FILENAME_MAX_BYTES);
		return set_problem(err, PARTOO_PROBLEM_INVALID, "file name is too long",
						   detail, "Use a shorter file name.");
	}
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) filename[i];

		if (c < 0x20 || c == 0x7F || c == '/' || c == '\\' || c == '"')
			return set_problem(err, PARTOO_PROBLEM_INVALID,
							   "file name contains characters that are not allowed",
							   "A file name cannot contain \"/\", \"\\\", double quotes or control characters.",
							   "Pass a plain file name such as photo.jpg.");
	}
	return PARTOO_VALID;
}

/* Report a string that is not UTF-8; what names it ("content", "url") */
static int
check_utf8(const char *s, const char *what, PartooProblem *err)
{
	size_t		len;
	size_t		bad;
	char		message[64];
	char		detail[128];

	if (s == NULL)
		return PARTOO_VALID;
	len = strlen(s);
	bad = utf8_valid_prefix((const unsigned char *) s, len);
	if (bad == len)
		return PARTOO_VALID;
	snprintf(message, sizeof(message), "%s is not valid UTF-8", what);
	snprintf(detail, sizeof(detail),
			 "The invalid byte sequence starts at byte %zu.", bad);
	return set_problem(err, PARTOO_PROBLEM_ENCODING, message, detail,
					   "Partoo takes text in UTF-8; convert the value before sending it.");
}

/*
 * The date is set by the SQL layer (partoo_format_date), never by the
 * user, but it is copied verbatim into a multipart part, so insist on a
 * short printable ASCII string rather than trust it.
 */
static int
check_date(const char *date, PartooProblem *err)
{
	size_t		i;

	if (date == NULL)
		return set_problem(err, PARTOO_PROBLEM_INVALID, "message date is missing",
						   "The date of a message is set by partoo itself; this is an internal error.",
						   NULL);
	/* at most what a PARTOO_DATE_BUFLEN buffer holds, NUL included */
	for (i = 0; i < PARTOO_DATE_BUFLEN - 1 && date[i] != '\0'; i++)
		if ((unsigned char) date[i] <= 0x20 || (unsigned char) date[i] >= 0x7F)
			break;
	if (i == 0 || date[i] != '\0')
		return set_problem(err, PARTOO_PROBLEM_INVALID, "message date is not valid",
						   "The date must be an ISO 8601 time such as 2026-11-23T10:00:00.000000Z.",
						   NULL);
	return PARTOO_VALID;
}

/*
 * Find the lower-cased extension of the last path segment of a URL that
 * check_url() accepted, ignoring query and fragment.  Returns false when
 * there is none, or when it is not a short run of letters and digits
 * (then it is not a file type anyone would recognise).
 */
static bool
url_extension(const char *url, char *ext, size_t extlen)
{
	const char *p = strstr(url, "://");
	const char *path_end;
	const char *seg;
	const char *dot = NULL;
	const char *q;
	size_t		n;
	size_t		i;

	if (p == NULL)
		return false;
	p += 3;
	p += strcspn(p, "/?#");
	if (*p != '/')
		return false;			/* no path at all */
	path_end = p + strcspn(p, "?#");

	seg = p;
	for (q = p; q < path_end; q++)
		if (*q == '/')
			seg = q + 1;
	for (q = seg; q < path_end; q++)
		if (*q == '.')
			dot = q;
	if (dot == NULL)
		return false;
	n = (size_t) (path_end - dot - 1);
	if (n == 0 || n >= extlen)
		return false;
	for (i = 0; i < n; i++)
	{
		int			c = ascii_tolower((unsigned char) dot[1 + i]);

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			return false;
		ext[i] = (char) c;
	}
	ext[n] = '\0';
	return true;
}

/*
 * Fill warning when the file type is outside Partoo's recommended list.
 * Returns PARTOO_VALID_WITH_WARNING or PARTOO_VALID.
 */
static int
warn_file_type(const char *message, const char *detail, PartooProblem *warning)
{
	set_problem(warning, PARTOO_PROBLEM_NONE, message, detail,
				"The message is sent anyway; check that it reaches the customer.");
	return PARTOO_VALID_WITH_WARNING;
}

/*
 * Is the file of a media message of a type Partoo recommends: an upload
 * judged by its magic bytes, a URL by its path's extension.  A message
 * without a file (Text) is always fine.  Returns PARTOO_VALID, or
 * PARTOO_VALID_WITH_WARNING with warning filled.
 */
static int
check_file_type(const PartooMessage *m, const PartooContentTypeInfo *info,
				PartooProblem *warning)
{
	char		recommended[RECOMMENDED_BUFLEN];
	char		detail[256];
	char		message[160];
	char		ext[EXTENSION_BUFLEN];
	int			i;

	if (info->shape == PARTOO_BODY_TEXT)
		return PARTOO_VALID;

	describe_recommended(info, recommended, sizeof(recommended));
	snprintf(detail, sizeof(detail),
			 "Partoo recommends %s files for %s messages.", recommended,
			 info->name);

	if (m->image != NULL)
	{
		if (partoo_upload_format(info->upload, m->image, m->image_len) != NULL)
			return PARTOO_VALID;
		return warn_file_type(info->upload->not_recommended_warning, detail,
							  warning);
	}

	if (!url_extension(m->url, ext, sizeof(ext)))
	{
		snprintf(message, sizeof(message),
				 "the url shows no file type for this %s message", info->name);
		return warn_file_type(message, detail, warning);
	}
	for (i = 0; i < info->num_extensions; i++)
		if (strcmp(ext, info->extensions[i]) == 0)
			return PARTOO_VALID;
	snprintf(message, sizeof(message),
			 "file type \"%s\" is not among those Partoo recommends for %s messages",
			 ext, info->name);
	return warn_file_type(message, detail, warning);
}

/* "a Text message needs content": the payload of the type is missing */
static int
report_missing(const PartooContentTypeInfo *info, PartooProblem *err)
{
	char		message[160];

	snprintf(message, sizeof(message), "%s %s message needs %s",
			 info->article, info->name, info->needs);
	return set_problem(err, PARTOO_PROBLEM_INVALID, message, NULL,
					   info->needs_hint);
}

/* Rules for a message whose payload is text (PARTOO_BODY_TEXT) */
static int
check_text(const PartooMessage *m, const PartooContentTypeInfo *info,
		   PartooProblem *err)
{
	size_t		len;
	char		message[160];
	char		detail[160];
	char		hint[160];
	char		media[PARTOO_CT_LIST_BUFLEN];

	if (m->content == NULL || m->content[0] == '\0')
		return report_missing(info, err);
	len = strlen(m->content);
	if (len > info->max_bytes)
	{
		snprintf(detail, sizeof(detail),
				 "The content is %zu bytes; the limit is %zu bytes.",
				 len, info->max_bytes);
		return set_problem(err, PARTOO_PROBLEM_TOO_LARGE, "content is too long",
						   detail, "Split the text into several messages.");
	}
	if (m->url != NULL || m->image != NULL)
	{
		snprintf(message, sizeof(message),
				 "%s %s message cannot have a url or an image",
				 info->article, info->name);
		partoo_content_type_list(PARTOO_CT_LIST_MEDIA, PARTOO_CH_NONE, " or ",
								 media, sizeof(media));
		snprintf(hint, sizeof(hint), "Use content type %s to send a file.", media);
		return set_problem(err, PARTOO_PROBLEM_INVALID, message, NULL, hint);
	}
	if (m->filename != NULL)
	{
		snprintf(hint, sizeof(hint), "Leave the file name NULL for %s messages.",
				 info->name);
		return set_problem(err, PARTOO_PROBLEM_INVALID,
						   "a file name is only used with an uploaded image",
						   NULL, hint);
	}
	return PARTOO_VALID;
}

/*
 * An uploaded file: not empty, within the type's limit, and a file name
 * fit for the multipart header.
 *
 * NB: the texts speak of an image, since Image is the only content type
 * with an upload (see the table in content_type.c).
 */
static int
check_upload(const PartooMessage *m, const PartooContentTypeInfo *info,
			 PartooProblem *err)
{
	char		detail[256];
	char		hint[160];

	if (m->image_len == 0)
		return set_problem(err, PARTOO_PROBLEM_INVALID,
						   "the uploaded image is empty", NULL, NULL);
	if (m->image_len > info->max_bytes)
	{
		snprintf(detail, sizeof(detail),
				 "The image is %zu bytes; Partoo accepts images of at most %zu MB (%zu bytes).",
				 m->image_len, info->max_bytes / PARTOO_MIB, info->max_bytes);
		snprintf(hint, sizeof(hint), "Reduce the image to %zu MB or less.",
				 info->max_bytes / PARTOO_MIB);
		return set_problem(err, PARTOO_PROBLEM_TOO_LARGE,
						   "the uploaded image is too large", detail, hint);
	}
	if (m->filename != NULL && check_filename(m->filename, err) != PARTOO_VALID)
		return PARTOO_NOT_VALID;
	return PARTOO_VALID;
}

/* A file given by URL: a well-formed URL, and no file name */
static int
check_media_url(const PartooMessage *m, PartooProblem *err)
{
	if (check_url(m->url, err) != PARTOO_VALID)
		return PARTOO_NOT_VALID;
	if (m->filename != NULL)
		return set_problem(err, PARTOO_PROBLEM_INVALID,
						   "a file name is only used with an uploaded image",
						   "A file given by url keeps the name it has there.",
						   "Leave the file name NULL when you give a url.");
	return PARTOO_VALID;
}

/*
 * Rules for a message whose payload is a file (Image, Video, Audio,
 * Document): exactly one of url and upload, an upload only where the type
 * has one, no content; then the rules of the url or of the upload.
 */
static int
check_media(const PartooMessage *m, const PartooContentTypeInfo *info,
			PartooProblem *err)
{
	char		message[160];
	char		detail[256];
	char		hint[160];
	char		names[PARTOO_CT_LIST_BUFLEN];

	if (m->url == NULL && m->image == NULL)
		return report_missing(info, err);
	if (m->url != NULL && m->image != NULL)
	{
		snprintf(message, sizeof(message),
				 "%s %s message cannot have both a url and an uploaded image",
				 info->article, info->name);
		return set_problem(err, PARTOO_PROBLEM_INVALID, message, NULL,
						   "Pass either the url or the image, not both.");
	}
	if (m->image != NULL && info->upload == NULL)
	{
		partoo_content_type_list(PARTOO_CT_LIST_UPLOAD, PARTOO_CH_NONE, " and ",
								 names, sizeof(names));
		snprintf(message, sizeof(message), "an upload is only supported for %s",
				 names);
		partoo_content_type_list(PARTOO_CT_LIST_URL_ONLY, PARTOO_CH_NONE, " and ",
								 names, sizeof(names));
		snprintf(hint, sizeof(hint), "Give %s files by url.", names);
		return set_problem(err, PARTOO_PROBLEM_INVALID, message,
						   "The Partoo API accepts file uploads for images only.",
						   hint);
	}
	if (m->content != NULL)
	{
		/*
		 * XXX: "A" for every type but Image, so Audio reads "A Audio message
		 * takes ..."; kept as it was, since issue 13 changes no message.
		 * The fix is to capitalise info->article.
		 */
		snprintf(detail, sizeof(detail),
				 "%s %s message takes its file from the url%s.",
				 info->type == PARTOO_CT_IMAGE ? "An" : "A", info->name,
				 info->upload != NULL ? " or the image" : "");
		return set_problem(err, PARTOO_PROBLEM_INVALID,
						   "content is for Text messages only", detail,
						   "Leave content NULL for media messages.");
	}
	if (m->url != NULL)
		return check_media_url(m, err);
	return check_upload(m, info, err);
}

/* Does the channel (if any) take messages of this content type? */
static int
check_channel(PartooChannel ch, const PartooContentTypeInfo *info,
			  PartooProblem *err)
{
	char		message[160];
	char		hint[160];

	if (ch == PARTOO_CH_NONE || (info->channels & PARTOO_CHANNEL_BIT(ch)) != 0)
		return PARTOO_VALID;
	snprintf(message, sizeof(message), "channel %s does not support %s messages",
			 channel_names[ch], info->name);
	describe_channel_support(ch, hint, sizeof(hint));
	return set_problem(err, PARTOO_PROBLEM_INVALID, message,
					   ch == PARTOO_CH_GOOGLE ?
					   "Partoo documents no media support for Google, so partoo allows only Text there." :
					   "This is a limitation of the channel, documented by Partoo.",
					   hint);
}

/*
 * See core/message.h.  The order of the checks is part of the contract: the
 * structure of the message first (ids, type, channel), then the fields of
 * its type, then the channel matrix, then encodings, so that the first
 * problem reported is the one a user should fix first.
 */
int
partoo_validate_message(const PartooMessage *m, PartooProblem *err,
						PartooProblem *warning)
{
	PartooProblem scratch_err;
	PartooProblem scratch_warning;
	const PartooContentTypeInfo *info;
	int			rc;
	char		hint[160];
	char		names[PARTOO_CT_LIST_BUFLEN];

	if (err == NULL)
		err = &scratch_err;
	if (warning == NULL)
		warning = &scratch_warning;
	reset_problem(err);
	reset_problem(warning);

	if (m == NULL)
		return set_problem(err, PARTOO_PROBLEM_INVALID, "no message given",
						   NULL, NULL);

	if (m->conversation_id <= 0)
	{
		char		detail[96];

		snprintf(detail, sizeof(detail), "The conversation_id given is %" PRId64 ".",
				 m->conversation_id);
		return set_problem(err, PARTOO_PROBLEM_INVALID,
						   "conversation_id must be positive", detail,
						   "Pass the id of an existing Partoo conversation.");
	}
	info = partoo_content_type_info(m->content_type);
	if (info == NULL)
	{
		partoo_content_type_list(PARTOO_CT_LIST_ALL, PARTOO_CH_NONE, " and ",
								 names, sizeof(names));
		snprintf(hint, sizeof(hint), "Valid content types are %s.", names);
		return set_problem(err, PARTOO_PROBLEM_INVALID, "invalid content type",
						   NULL, hint);
	}
	if ((int) m->channel < 0 || (int) m->channel >= NUM_CHANNELS)
		return set_problem(err, PARTOO_PROBLEM_INVALID, "invalid channel", NULL,
						   "Valid channels are Facebook, Instagram, SMS, Whatsapp and Google; pass NULL to skip the channel check.");

	if (info->shape == PARTOO_BODY_TEXT)
		rc = check_text(m, info, err);
	else
		rc = check_media(m, info, err);
	if (rc != PARTOO_VALID)
		return rc;

	if (check_channel(m->channel, info, err) != PARTOO_VALID)
		return PARTOO_NOT_VALID;

	if (check_utf8(m->content, "content", err) != PARTOO_VALID ||
		check_utf8(m->url, "url", err) != PARTOO_VALID ||
		check_utf8(m->filename, "file name", err) != PARTOO_VALID)
		return PARTOO_NOT_VALID;

	if (check_date(m->date, err) != PARTOO_VALID)
		return PARTOO_NOT_VALID;

	return check_file_type(m, info, warning);
}

/*
 * See core/message.h.  Years outside 0..9999 are written with a sign, as ISO
 * 8601's expanded representation does; any int64 input fits (years
 * -290308 to +294247, at most 30 bytes).
 */
void
partoo_format_date(int64_t unix_usec, char *buf)
{
	int64_t		secs = unix_usec / 1000000;
	int64_t		usec = unix_usec % 1000000;
	int64_t		days;
	int64_t		rem;
	int64_t		year;
	int			month;
	int			day;

	/* C99 division truncates toward zero; we want the floor */
	if (usec < 0)
	{
		usec += 1000000;
		secs -= 1;
	}
	days = secs / 86400;
	rem = secs % 86400;
	if (rem < 0)
	{
		rem += 86400;
		days -= 1;
	}
	partoo_civil_from_days(days, &year, &month, &day);
	snprintf(buf, PARTOO_DATE_BUFLEN,
			 (year >= 0 && year <= 9999) ?
			 "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d.%06dZ" :
			 "%+05" PRId64 "-%02d-%02dT%02d:%02d:%02d.%06dZ",
			 year, month, day, (int) (rem / 3600), (int) (rem / 60 % 60),
			 (int) (rem % 60), (int) usec);
}
