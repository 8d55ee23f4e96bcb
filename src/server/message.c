/*-------------------------------------------------------------------------
 *
 * message.c
 *		From SQL arguments to a validated message.
 *
 * partoo_send, partoo_enqueue and the trigger function all describe a
 * message with the same arguments; this file turns them into the protocol
 * core's PartooMessage, converting text to UTF-8 for the wire, and raises
 * the core's validation problems as PostgreSQL errors and warnings.  It
 * runs before anything is sent or stored, so a bad message changes
 * nothing.
 *
 * src/server/message.c
 *
 *-------------------------------------------------------------------------
 */

#include "server/partoo.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "core/message.h"
#include "server/message.h"

/* A text argument as a C string, or NULL */
char *
partoo_arg_cstring(FunctionCallInfo fcinfo, int i)
{
	return PG_ARGISNULL(i) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(i));
}

/*
 * Fill in from the arguments partoo_send and partoo_enqueue share:
 * conversation_id, content, content_type, url, image, filename, channel
 * and account are arguments 0 to 7, metadata is metadata_arg.
 */
void
partoo_message_from_args(FunctionCallInfo fcinfo, int metadata_arg,
						 PartooMessageInput *in)
{
	memset(in, 0, sizeof(*in));
	in->conversation_id_isnull = PG_ARGISNULL(0);
	in->conversation_id = in->conversation_id_isnull ? 0 : PG_GETARG_INT64(0);
	in->content = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	in->content_type_arg = partoo_arg_cstring(fcinfo, 2);
	in->url = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	in->image = PG_ARGISNULL(4) ? NULL : PG_GETARG_BYTEA_PP(4);
	in->filename = PG_ARGISNULL(5) ? NULL : PG_GETARG_TEXT_PP(5);
	in->channel_arg = partoo_arg_cstring(fcinfo, 6);
	in->account = partoo_arg_cstring(fcinfo, 7);
	in->has_metadata = !PG_ARGISNULL(metadata_arg);
	in->metadata = in->has_metadata ? PG_GETARG_DATUM(metadata_arg) : (Datum) 0;
}

/* Map a core problem kind to a SQLSTATE */
static int
problem_errcode(PartooProblemKind kind)
{
	switch (kind)
	{
		case PARTOO_PROBLEM_ENCODING:
			return ERRCODE_CHARACTER_NOT_IN_REPERTOIRE;
		case PARTOO_PROBLEM_TOO_LARGE:
			return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		default:
			return ERRCODE_INVALID_PARAMETER_VALUE;
	}
}

/* Raise a core problem at elevel (ERROR does not return) */
void
partoo_report_problem(int elevel, const PartooProblem *p)
{
	ereport(elevel,
			(errcode(elevel >= ERROR ? problem_errcode(p->kind) : ERRCODE_WARNING),
			 errmsg("%s", p->message),
			 p->detail[0] ? errdetail("%s", p->detail) : 0,
			 p->hint[0] ? errhint("%s", p->hint) : 0));
}

/*
 * Copy at most max bytes of s into a palloc'd string that is safe to put
 * in an error message whatever s holds (partoo_sanitize_text): valid UTF-8
 * sequences are kept in a UTF-8 database, every other non-ASCII byte and
 * control character becomes '?', tabs and line ends spaces.  Appends
 * "..." when cut.
 */
char *
partoo_printable(const char *s, size_t len, size_t max)
{
	size_t		cap;
	char	   *out;
	size_t		used;
	size_t		written;

	if (s == NULL)
		return pstrdup("");
	cap = Min(len, max) + 1;
	out = palloc(cap + 3);
	used = partoo_sanitize_text(s, len, out, cap,
								GetDatabaseEncoding() == PG_UTF8, &written);
	if (used < len)
		memcpy(out + written, "...", 4);
	return out;
}

/* text in the server encoding to a NUL-terminated UTF-8 string, or NULL */
static const char *
to_utf8(text *t)
{
	char	   *s;

	if (t == NULL)
		return NULL;
	s = text_to_cstring(t);
	return pg_server_to_any(s, strlen(s), PG_UTF8);
}

/* "Use one of Text, Image, ...": the errhint for a content type we lack */
static char *
content_type_hint(void)
{
	char		names[PARTOO_CT_LIST_BUFLEN];

	partoo_content_type_list(PARTOO_CT_LIST_ALL, PARTOO_CH_NONE, ", ", names,
							 sizeof(names));
	return psprintf("Use one of %s.", names);
}

/*
 * Check the message described by in and fill in->msg and the derived
 * fields.  ereports (ERROR) on the first problem, WARNING for a file type
 * outside Partoo's recommendations.
 */
void
partoo_message_prepare(PartooMessageInput *in)
{
	PartooMessage *m = &in->msg;
	PartooProblem err;
	PartooProblem warning;
	int			rc;

	if (in->conversation_id_isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("conversation_id must not be null"),
				 errhint("Pass the id of an existing Partoo conversation.")));
	if (in->content_type_arg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("content_type must not be null"),
				 errhint("%s", content_type_hint())));

	memset(m, 0, sizeof(*m));
	m->conversation_id = in->conversation_id;
	m->content_type = partoo_content_type_from_name(in->content_type_arg);
	if (m->content_type == PARTOO_CT_INVALID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown content type \"%s\"",
						partoo_printable(in->content_type_arg,
										 strlen(in->content_type_arg), 64)),
				 errhint("%s", content_type_hint())));
	in->content_type = partoo_content_type_name(m->content_type);

	m->channel = partoo_channel_from_name(in->channel_arg);
	if (m->channel == PARTOO_CH_INVALID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown channel \"%s\"",
						partoo_printable(in->channel_arg,
										 strlen(in->channel_arg), 64)),
				 errhint("Use one of Facebook, Instagram, SMS, Whatsapp, Google, or NULL to skip the channel check.")));
	in->channel = (m->channel == PARTOO_CH_NONE) ? NULL :
		partoo_channel_name(m->channel);

	if (in->account != NULL && in->account[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("account name must not be empty"),
				 errhint("Pass NULL to use the default account.")));

	m->content = to_utf8(in->content);
	m->url = to_utf8(in->url);
	m->filename = to_utf8(in->filename);
	if (in->image != NULL)
	{
		m->image = (const unsigned char *) VARDATA_ANY(in->image);
		m->image_len = VARSIZE_ANY_EXHDR(in->image);
	}

	in->created_at = GetCurrentTimestamp();
	partoo_format_date(partoo_timestamptz_to_unix_us(in->created_at), in->date);
	m->date = in->date;

	rc = partoo_validate_message(m, &err, &warning);
	if (rc == PARTOO_NOT_VALID)
		partoo_report_problem(ERROR, &err);
	if (rc == PARTOO_VALID_WITH_WARNING)
		partoo_report_problem(WARNING, &warning);
}
