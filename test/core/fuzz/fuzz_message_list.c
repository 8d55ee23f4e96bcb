/*-------------------------------------------------------------------------
 *
 * fuzz_message_list.c
 *		libFuzzer target: the answer of GET /messages, and the path of the
 *		next page built from its cursor.
 *
 * partoo_parse_message_list() takes a body from the network and must
 * survive anything and keep its promises: ids in 1..2^53, statuses short
 * and free of control characters, a cursor of printable ASCII that the
 * path builder turns into a query of unreserved bytes and %XX escapes
 * only, each message's JSON valid UTF-8 that parses back to an object
 * with the same id, and a refusal that leaves nothing allocated.
 *
 * Input layout: byte 0 picks per_page, byte 1 the conversation id, the
 * rest is the body (also tried, NUL-terminated, as a cursor).  A violated
 * invariant calls __builtin_trap(), which libFuzzer reports as a crash.
 *
 * test/core/fuzz/fuzz_message_list.c
 *
 *-------------------------------------------------------------------------
 */
#include "core/message.h"
#include "core/message_list.h"
#include "reader.h"

#include <stdbool.h>
#include <stdio.h>

#include <cjson/cJSON.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A path of one page: the prefix, then only unreserved bytes and %XX */
static void
check_path(const char *path, int n, int64_t conv, int per_page)
{
	char		prefix[96];
	int			k;
	int			i;

	FUZZ_ASSERT(n > 0 && (size_t) n == strlen(path) && n < PARTOO_LIST_PATH_BUFLEN);
	k = snprintf(prefix, sizeof(prefix), "/messages?conversation_id=%lld&per_page=%d",
				 (long long) conv, per_page);
	FUZZ_ASSERT(strncmp(path, prefix, k) == 0);
	if (path[k] == '\0')
		return;
	FUZZ_ASSERT(strncmp(path + k, "&cursor=", 8) == 0);
	for (i = k + 8; i < n; i++)
	{
		char		c = path[i];

		if (c == '%')
		{
			FUZZ_ASSERT(i + 2 < n);
			FUZZ_ASSERT(path[i + 1] != '\0' && strchr("0123456789ABCDEF", path[i + 1]) != NULL);
			FUZZ_ASSERT(path[i + 2] != '\0' && strchr("0123456789ABCDEF", path[i + 2]) != NULL);
			i += 2;
			continue;
		}
		FUZZ_ASSERT((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
					(c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~');
	}
}

static void
check_list(const PartooMessageList *l, int64_t conv, int per_page)
{
	int			i;

	FUZZ_ASSERT(l->n >= 0);
	FUZZ_ASSERT(l->n == 0 || l->messages != NULL);
	FUZZ_ASSERT(!l->has_count || (l->count >= 0 && l->count <= 9007199254740992LL));
	for (i = 0; i < l->n; i++)
	{
		const PartooListedMessage *m = &l->messages[i];
		cJSON	   *again;
		const cJSON *id;

		FUZZ_ASSERT(m->id >= 1 && m->id <= 9007199254740992LL);
		if (m->status != NULL)
		{
			const char *s;

			FUZZ_ASSERT(strlen(m->status) <= PARTOO_LIST_STATUS_MAX_BYTES);
			FUZZ_ASSERT(partoo_utf8_valid(m->status, strlen(m->status)));
			for (s = m->status; *s; s++)
				FUZZ_ASSERT((unsigned char) *s >= 0x20 && (unsigned char) *s != 0x7F);
		}
		FUZZ_ASSERT(m->json != NULL && partoo_utf8_valid(m->json, strlen(m->json)));
		again = cJSON_Parse(m->json);
		FUZZ_ASSERT(again != NULL && cJSON_IsObject(again));
		id = cJSON_GetObjectItemCaseSensitive(again, "id");
		FUZZ_ASSERT(cJSON_IsNumber(id) && id->valuedouble == (double) m->id);
		cJSON_Delete(again);
	}
	if (l->next_cursor != NULL)
	{
		char		path[PARTOO_LIST_PATH_BUFLEN];
		size_t		n = strlen(l->next_cursor);
		size_t		k;
		int			len;

		FUZZ_ASSERT(n > 0 && n <= PARTOO_LIST_CURSOR_MAX_BYTES);
		for (k = 0; k < n; k++)
			FUZZ_ASSERT(l->next_cursor[k] >= 0x20 && l->next_cursor[k] <= 0x7E);
		len = partoo_path_list_messages(conv, per_page, l->next_cursor, path, sizeof(path));
		check_path(path, len, conv, per_page);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	PartooMessageList l;
	PartooMessageList again;
	char		err[200];
	char		path[PARTOO_LIST_PATH_BUFLEN];
	char	   *cursor;
	int			per_page;
	int64_t		conv;
	int			rc;
	int			len;

	if (size < 2)
		return 0;
	per_page = 1 + data[0] % PARTOO_LIST_PER_PAGE_MAX;
	conv = data[1] == 0 ? 9007199254740993LL : (int64_t) data[1];

	/* the body is libFuzzer's buffer itself, so ASan sees any overread */
	rc = partoo_parse_message_list((const char *) data + 2, size - 2, &l, err, sizeof(err));
	if (rc != 0)
	{
		FUZZ_ASSERT(rc == -1 && l.n == 0 && l.messages == NULL && l.next_cursor == NULL);
		FUZZ_ASSERT(err[0] != '\0' && strlen(err) < sizeof(err));
	}
	else
		check_list(&l, conv, per_page);

	/* same input, same answer */
	FUZZ_ASSERT(partoo_parse_message_list((const char *) data + 2, size - 2, &again,
										  NULL, 0) == rc);
	FUZZ_ASSERT(again.n == l.n);
	partoo_message_list_free(&again);
	partoo_message_list_free(&l);

	/* the body as a cursor: a path, or a refusal, never an overflow */
	cursor = malloc(size - 1);
	if (cursor == NULL)
		abort();
	memcpy(cursor, data + 2, size - 2);
	cursor[size - 2] = '\0';
	len = partoo_path_list_messages(conv, per_page, cursor, path, sizeof(path));
	if (strlen(cursor) == 0 || strlen(cursor) > PARTOO_LIST_CURSOR_MAX_BYTES)
		FUZZ_ASSERT(len == -1 && path[0] == '\0');
	else
		check_path(path, len, conv, per_page);
	free(cursor);
	return 0;
}
