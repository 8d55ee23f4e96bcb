/*-------------------------------------------------------------------------
 *
 * message_list.c
 *		GET /messages?conversation_id=...: the path of one page and the
 *		answer parsed.
 *
 * Partoo's reference documents GET /messages as a paginated list of a
 * conversation's messages: per_page (up to 100) and an opaque cursor in
 * the query; the answer {"messages": [...], "count": N, "next_cursor":
 * "..." or null}, each message with its "id" and "status".  The worker
 * reads statuses from it for messages whose webhook never came
 * (reconciliation, server/reconcile.c).
 *
 * The answer is untrusted bytes: it is never read outside [body, body +
 * len), its types are checked strictly (an id that is not an integer
 * refuses the whole page: a status applied to the wrong message is worse
 * than none), unknown fields are ignored, and no error message repeats a
 * value from it.  The cursor goes back into a URL, percent-encoded.
 *
 * src/core/message_list.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/message.h"
#include "core/message_list.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

/* Doubles represent every integer up to 2^53 exactly */
#define EXACT_DOUBLE_LIMIT	9007199254740992.0

static bool
unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

int
partoo_path_list_messages(int64_t conversation_id, int per_page,
						  const char *cursor, char *buf, size_t buflen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		clen;
	size_t		k;
	size_t		i;
	int			n;

	if (buf == NULL || buflen == 0)
		return -1;
	buf[0] = '\0';
	if (conversation_id <= 0 || per_page < 1 || per_page > PARTOO_LIST_PER_PAGE_MAX)
		return -1;
	n = snprintf(buf, buflen, "/messages?conversation_id=%" PRId64 "&per_page=%d",
				 conversation_id, per_page);
	if (n < 0 || (size_t) n >= buflen)
	{
		buf[0] = '\0';
		return -1;
	}
	if (cursor == NULL)
		return n;
	clen = strlen(cursor);
	if (clen == 0 || clen > PARTOO_LIST_CURSOR_MAX_BYTES)
	{
		buf[0] = '\0';
		return -1;
	}
	k = (size_t) n;
	if (k + strlen("&cursor=") >= buflen)
	{
		buf[0] = '\0';
		return -1;
	}
	memcpy(buf + k, "&cursor=", strlen("&cursor="));
	k += strlen("&cursor=");
	for (i = 0; i < clen; i++)
	{
		unsigned char c = (unsigned char) cursor[i];
		size_t		need = unreserved(c) ? 1 : 3;

		if (k + need >= buflen)
		{
			buf[0] = '\0';
			return -1;
		}
		if (need == 1)
			buf[k++] = (char) c;
		else
		{
			buf[k++] = '%';
			buf[k++] = hex[c >> 4];
			buf[k++] = hex[c & 0x0F];
		}
	}
	buf[k] = '\0';
	return (int) k;
}

static void set_error(char *errbuf, size_t errlen, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static void
set_error(char *errbuf, size_t errlen, const char *fmt,...)
{
	va_list		ap;

	if (errbuf == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
}

/* A member that is absent or JSON null: NULL */
static const cJSON *
member(const cJSON *obj, const char *name)
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, name);

	return (f == NULL || cJSON_IsNull(f)) ? NULL : f;
}

/* An integer number in [min, 2^53] */
static bool
get_integer(const cJSON *f, double min, int64_t *out)
{
	double		v;

	if (!cJSON_IsNumber(f))
		return false;
	v = f->valuedouble;
	if (!isfinite(v) || v != floor(v) || v < min || v > EXACT_DOUBLE_LIMIT)
		return false;
	*out = (int64_t) v;
	return true;
}

/* bytes 0x20..0x7E only (a cursor), or no byte below 0x20 nor 0x7F (a status) */
static bool
clean_string(const char *s, bool ascii_only)
{
	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if (c < 0x20 || c == 0x7F || (ascii_only && c > 0x7E))
			return false;
	}
	return true;
}

static char *
copy_string(const char *s)
{
	size_t		n = strlen(s);
	char	   *p = malloc(n + 1);

	if (p != NULL)
		memcpy(p, s, n + 1);
	return p;
}

/*
 * Integers up to 2^53 under node written as their exact digits.  NB:
 * cJSON prints numbers with 15 significant digits, which would change a
 * Partoo id of 16 digits in the JSON kept; it parsed them exactly.
 * Returns false when out of memory.
 */
static bool
exact_integers(cJSON *node)
{
	cJSON	   *child = node->child;

	while (child != NULL)
	{
		cJSON	   *next = child->next;

		if (cJSON_IsNumber(child) && isfinite(child->valuedouble) &&
			child->valuedouble == floor(child->valuedouble) &&
			fabs(child->valuedouble) <= EXACT_DOUBLE_LIMIT)
		{
			char		digits[32];
			cJSON	   *raw;

			snprintf(digits, sizeof(digits), "%" PRId64, (int64_t) child->valuedouble);
			raw = cJSON_CreateRaw(digits);
			if (raw == NULL)
				return false;
			/* the member's name moves over, with its allocation and flag */
			raw->string = child->string;
			raw->type |= child->type & cJSON_StringIsConst;
			child->string = NULL;
			if (!cJSON_ReplaceItemViaPointer(node, child, raw))
				return false;	/* cannot happen: child is node's */
		}
		else if ((cJSON_IsObject(child) || cJSON_IsArray(child)) && !exact_integers(child))
			return false;
		child = next;
	}
	return true;
}

/*
 * A message object printed compactly, in memory of our own: cJSON
 * allocates through hooks anyone in the process may have replaced.
 * Changes obj's numbers into raw text (exact_integers).
 */
static char *
print_compact(cJSON *obj)
{
	char	   *printed;
	char	   *p;

	if (!exact_integers(obj))
		return NULL;
	printed = cJSON_PrintUnformatted(obj);
	if (printed == NULL)
		return NULL;
	p = copy_string(printed);
	cJSON_free(printed);
	return p;
}

void
partoo_message_list_free(PartooMessageList *l)
{
	int			i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++)
	{
		free(l->messages[i].status);
		free(l->messages[i].json);
	}
	free(l->messages);
	free(l->next_cursor);
	memset(l, 0, sizeof(*l));
}

/* One element of "messages" into m; false with errbuf set */
static bool
parse_message(cJSON *item, int index, PartooListedMessage *m,
			  char *errbuf, size_t errlen)
{
	const cJSON *f;

	if (!cJSON_IsObject(item))
	{
		set_error(errbuf, errlen, "Element %d of \"messages\" is not an object.", index);
		return false;
	}
	f = member(item, "id");
	if (f == NULL)
	{
		set_error(errbuf, errlen, "Element %d of \"messages\" has no \"id\".", index);
		return false;
	}
	if (!get_integer(f, 1, &m->id))
	{
		set_error(errbuf, errlen,
				  "Field \"id\" of element %d of \"messages\" is not a positive integer.", index);
		return false;
	}
	f = member(item, "status");
	if (f != NULL)
	{
		if (!cJSON_IsString(f) || f->valuestring == NULL)
		{
			set_error(errbuf, errlen,
					  "Field \"status\" of element %d of \"messages\" is not a string.", index);
			return false;
		}
		if (strlen(f->valuestring) > PARTOO_LIST_STATUS_MAX_BYTES ||
			!clean_string(f->valuestring, false))
		{
			set_error(errbuf, errlen,
					  "Field \"status\" of element %d of \"messages\" is longer than %d bytes or holds control characters.",
					  index, PARTOO_LIST_STATUS_MAX_BYTES);
			return false;
		}
		m->status = copy_string(f->valuestring);
		if (m->status == NULL)
		{
			set_error(errbuf, errlen, "Out of memory.");
			return false;
		}
	}
	m->json = print_compact(item);
	if (m->json == NULL)
	{
		set_error(errbuf, errlen, "Out of memory.");
		return false;
	}
	return true;
}

/* "count" and "next_cursor" of the answer into out */
static bool
parse_paging(const cJSON *root, PartooMessageList *out, char *errbuf,
			 size_t errlen)
{
	const cJSON *f = member(root, "count");

	if (f != NULL)
	{
		if (!get_integer(f, 0, &out->count))
		{
			set_error(errbuf, errlen, "Field \"count\" is not an integer >= 0.");
			return false;
		}
		out->has_count = true;
	}
	f = member(root, "next_cursor");
	if (f != NULL)
	{
		size_t		n;

		if (!cJSON_IsString(f) || f->valuestring == NULL)
		{
			set_error(errbuf, errlen, "Field \"next_cursor\" is not a string.");
			return false;
		}
		n = strlen(f->valuestring);
		if (n == 0 || n > PARTOO_LIST_CURSOR_MAX_BYTES || !clean_string(f->valuestring, true))
		{
			set_error(errbuf, errlen,
					  "Field \"next_cursor\" is empty, longer than %d bytes, or not printable ASCII.",
					  PARTOO_LIST_CURSOR_MAX_BYTES);
			return false;
		}
		out->next_cursor = copy_string(f->valuestring);
		if (out->next_cursor == NULL)
		{
			set_error(errbuf, errlen, "Out of memory.");
			return false;
		}
	}
	return true;
}

int
partoo_parse_message_list(const char *body, size_t len, PartooMessageList *out,
						  char *errbuf, size_t errlen)
{
	cJSON	   *root;
	cJSON	   *msgs;
	cJSON	   *item;
	const char *end = NULL;
	int			count;
	int			i;
	bool		ok = false;

	memset(out, 0, sizeof(*out));
	if (errbuf != NULL && errlen > 0)
		errbuf[0] = '\0';
	if (body == NULL || len == 0)
	{
		set_error(errbuf, errlen, "The answer is empty.");
		return -1;
	}
	if (memchr(body, '\0', len) != NULL || !partoo_utf8_valid(body, len))
	{
		set_error(errbuf, errlen, "The answer is not valid UTF-8 text.");
		return -1;
	}
	root = cJSON_ParseWithLengthOpts(body, len, &end, false);
	if (root != NULL)
	{
		size_t		k = (size_t) (end - body);

		while (k < len && (body[k] == ' ' || body[k] == '\t' ||
						   body[k] == '\r' || body[k] == '\n'))
			k++;
		if (k != len)
		{
			cJSON_Delete(root);
			root = NULL;
		}
	}
	if (root == NULL)
	{
		set_error(errbuf, errlen, "The answer is not JSON.");
		return -1;
	}
	if (!cJSON_IsObject(root))
	{
		set_error(errbuf, errlen, "The answer is not a JSON object.");
		goto done;
	}
	msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
	if (msgs == NULL || !cJSON_IsArray(msgs))
	{
		set_error(errbuf, errlen, "Field \"messages\" is missing or not an array.");
		goto done;
	}
	count = cJSON_GetArraySize(msgs);
	out->messages = calloc(count > 0 ? (size_t) count : 1, sizeof(PartooListedMessage));
	if (out->messages == NULL)
	{
		set_error(errbuf, errlen, "Out of memory.");
		goto done;
	}
	i = 0;
	cJSON_ArrayForEach(item, msgs)
	{
		if (i >= count)
			break;
		/* counted before parsing, so that a failure frees what it made */
		out->n = i + 1;
		if (!parse_message(item, i, &out->messages[i], errbuf, errlen))
			goto done;
		i++;
	}
	out->n = i;
	ok = parse_paging(root, out, errbuf, errlen);

done:
	cJSON_Delete(root);
	if (!ok)
	{
		partoo_message_list_free(out);
		return -1;
	}
	return 0;
}
