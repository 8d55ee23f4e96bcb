/*-------------------------------------------------------------------------
 *
 * message_list.h
 *		GET /messages?conversation_id=...: the path of one page and the
 *		answer parsed (message_list.c), for status reconciliation.
 *
 * Part of the protocol core (src/core/): plain C99 on top of libc, cJSON
 * and libcrypto, never postgres.h, so that it is unit-tested and fuzzed
 * without a server.  Memory handed out comes from malloc() and is released
 * with the matching *_free() function; nothing throws, nothing keeps
 * global state.
 *
 * src/core/message_list.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PARTOO_CORE_MESSAGE_LIST_H
#define PARTOO_CORE_MESSAGE_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* per_page: the API allows 1..100 */
#define PARTOO_LIST_PER_PAGE_MAX	100
/* Longest cursor accepted from an answer (it travels back in a URL) */
#define PARTOO_LIST_CURSOR_MAX_BYTES 512
/* Longest status string kept; a longer one refuses the answer */
#define PARTOO_LIST_STATUS_MAX_BYTES 255
/* Room for the longest path partoo_path_list_messages() writes */
#define PARTOO_LIST_PATH_BUFLEN \
	(64 + 3 * PARTOO_LIST_CURSOR_MAX_BYTES)

/*
 * The path of one page relative to the base URL, into buf of buflen
 * bytes: "/messages?conversation_id=N&per_page=K", then "&cursor=C" with
 * the cursor percent-encoded (every byte but A-Z a-z 0-9 - . _ ~) when
 * cursor is not NULL.  Returns the path's length, or -1 (buf then holds
 * "") for conversation_id <= 0, per_page outside 1..100, an empty cursor
 * or one over PARTOO_LIST_CURSOR_MAX_BYTES, or a buffer too small.
 */
extern int	partoo_path_list_messages(int64_t conversation_id, int per_page,
									  const char *cursor, char *buf,
									  size_t buflen);

/* One message of a page: what reconciliation needs of it */
typedef struct PartooListedMessage
{
	int64_t		id;				/* > 0 */
	char	   *status;			/* as received; NULL when absent or null */
	char	   *json;			/* the message object, compact JSON (kept as
								 * the event's payload) */
} PartooListedMessage;

/* One page of the answer */
typedef struct PartooMessageList
{
	PartooListedMessage *messages;
	int			n;
	bool		has_count;
	int64_t		count;			/* messages in the conversation, if given */
	char	   *next_cursor;	/* NULL on the last page */
} PartooMessageList;

/*
 * Parse a 2xx answer of GET /messages (len bytes, any content).  The
 * answer must be a JSON object, valid UTF-8 without NUL bytes, with
 * "messages" an array of objects, each with "id" an integer in
 * 1..2^53 and "status" a string (at most PARTOO_LIST_STATUS_MAX_BYTES,
 * no control characters) or null or absent; "count", if present and not
 * null, an integer >= 0; "next_cursor", if present and not null, a
 * non-empty string of at most PARTOO_LIST_CURSOR_MAX_BYTES printable
 * ASCII bytes.  Unknown fields, at any level, are ignored.  Returns 0
 * with *out filled, or -1 with *out empty and errbuf (errlen bytes)
 * holding a sentence that names the field, never a value from the body.
 * Free with partoo_message_list_free().  Never throws.
 */
extern int	partoo_parse_message_list(const char *body, size_t len,
									  PartooMessageList *out,
									  char *errbuf, size_t errlen);
extern void partoo_message_list_free(PartooMessageList *l);

#endif							/* PARTOO_CORE_MESSAGE_LIST_H */
