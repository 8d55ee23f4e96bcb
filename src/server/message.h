/*-------------------------------------------------------------------------
 *
 * message.h
 *		A message as the SQL functions receive it, checked and converted
 *		for the wire (message.c).
 *
 * src/server/message.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_SERVER_MESSAGE_H
#define PARTOO_SERVER_MESSAGE_H

#include "fmgr.h"
#include "datatype/timestamp.h"

#include "core/message.h"


/*
 * A message as the SQL functions receive it.  The caller fills the "as
 * given" fields (NULL for SQL NULL); partoo_message_prepare() checks them,
 * converts the strings to UTF-8 for the wire and fills msg, names and date.
 */
typedef struct PartooMessageInput
{
	/* as given */
	int64		conversation_id;
	bool		conversation_id_isnull;
	text	   *content;
	char	   *content_type_arg;
	text	   *url;
	bytea	   *image;
	text	   *filename;
	char	   *channel_arg;
	char	   *account;		/* NULL: the default account */
	Datum		metadata;		/* jsonb */
	bool		has_metadata;

	/* filled by partoo_message_prepare() */
	PartooMessage msg;			/* what goes on the wire, UTF-8 */
	const char *content_type;	/* canonical name */
	const char *channel;		/* canonical name, or NULL */
	TimestampTz created_at;
	char		date[PARTOO_DATE_BUFLEN];
} PartooMessageInput;

extern char *partoo_arg_cstring(FunctionCallInfo fcinfo, int i);
extern void partoo_message_from_args(FunctionCallInfo fcinfo, int metadata_arg,
									 PartooMessageInput *in);
extern void partoo_message_prepare(PartooMessageInput *in);
extern void partoo_report_problem(int elevel, const PartooProblem *p);
extern char *partoo_printable(const char *s, size_t len, size_t max);

#endif							/* PARTOO_SERVER_MESSAGE_H */
